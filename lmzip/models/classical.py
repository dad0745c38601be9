"""Classical byte predictors behind the same interface as the language models.

They make the ladder of models visible (uniform -> order0 -> order2 -> LMs)
and round-trip through the same coder and container. Pure numpy integer
counts and IEEE divisions: the same bits on every machine.
"""

from __future__ import annotations

import numpy as np

from ..tokenize import ByteTokenizer
from .base import Predictor

N_BYTES = 256
VOCAB = ByteTokenizer.vocab_size  # 256 bytes + the start token (never coded)


class _BytePredictor(Predictor):
    default_chunk = 1 << 20  # adaptive models learn along the stream: keep chunks long
    default_streams = 16

    def __init__(self, **_):  # loader options (dtype, threads...) do not apply
        self.tokenizer = ByteTokenizer()
        self.vocab_size = VOCAB

    @property
    def weights_hash(self) -> bytes:
        return self.name.encode()[:4].ljust(4, b"\0")

    def _rows(self, probs_256: np.ndarray) -> np.ndarray:
        out = np.zeros((probs_256.shape[0], VOCAB), dtype=np.float32)
        out[:, :N_BYTES] = probs_256
        return out


class UniformPredictor(_BytePredictor):
    """Every byte 1/256: exactly 8 bits a byte, the baseline of no model at all."""

    name = "uniform"

    def start(self, n_streams: int, n_steps: int) -> None:
        self._row = self._rows(np.full((n_streams, N_BYTES), 1.0 / N_BYTES))

    def step(self, tokens: np.ndarray) -> np.ndarray:
        return self._row.copy()


class Order0Predictor(_BytePredictor):
    """Adaptive byte frequencies (Laplace: every count starts at 1)."""

    name = "order0"

    def start(self, n_streams: int, n_steps: int) -> None:
        self.counts = np.ones((n_streams, N_BYTES), dtype=np.float64)

    def step(self, tokens: np.ndarray) -> np.ndarray:
        seen = np.flatnonzero(tokens < N_BYTES)
        self.counts[seen, tokens[seen]] += 1
        return self._rows(self.counts / self.counts.sum(axis=1, keepdims=True))


class Order2Predictor(_BytePredictor):
    """Adaptive context model over the previous two bytes.

    Orders 2, 1 and 0 are blended Witten-Bell style: a context that has seen
    n bytes of u distinct values gives c(x)/(n+u) to each seen byte and
    u/(n+u) to the next lower order, so unseen contexts cost little.
    """

    name = "order2"

    def start(self, n_streams: int, n_steps: int) -> None:
        self.order0 = np.zeros((n_streams, N_BYTES), dtype=np.float64)
        self.order1 = np.zeros((n_streams, N_BYTES, N_BYTES), dtype=np.float64)
        self.order2 = [dict() for _ in range(n_streams)]
        self.history = np.full((n_streams, 2), -1, dtype=np.int64)  # (older, newer); -1: none

    def _update(self, stream: int, byte: int) -> None:
        older, newer = self.history[stream]
        self.order0[stream, byte] += 1
        if newer >= 0:
            self.order1[stream, newer, byte] += 1
            if older >= 0:
                table = self.order2[stream]
                key = int(older) * N_BYTES + int(newer)
                if key not in table:
                    table[key] = np.zeros(N_BYTES, dtype=np.float64)
                table[key][byte] += 1
        self.history[stream] = (newer, byte)

    @staticmethod
    def _blend(counts: np.ndarray | None, lower: np.ndarray) -> np.ndarray:
        if counts is None:
            return lower
        n = counts.sum()
        if n == 0:
            return lower
        distinct = np.count_nonzero(counts)
        return (counts + distinct * lower) / (n + distinct)

    def step(self, tokens: np.ndarray) -> np.ndarray:
        rows = np.empty((len(tokens), N_BYTES), dtype=np.float64)
        uniform = np.full(N_BYTES, 1.0 / N_BYTES)
        for s, token in enumerate(tokens):
            if token < N_BYTES:
                self._update(s, int(token))
            older, newer = self.history[s]
            p = self._blend(self.order0[s], uniform)
            if newer >= 0:
                p = self._blend(self.order1[s, newer], p)
                if older >= 0:
                    p = self._blend(self.order2[s].get(int(older) * N_BYTES + int(newer)), p)
            rows[s] = p
        return self._rows(rows)
