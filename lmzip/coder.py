"""Stage 3: range coding of symbols under rows of probabilities (constriction).

One coder serves all lockstep streams of a block: each call codes one symbol
per row, rows in order. Contract (constriction 0.5, 24-bit precision):
probability rows must be C-contiguous float32; they need not sum to 1 exactly
(constriction normalises); a zero entry still gets the minimum probability.
The coded words are little-endian uint32; up to three trailing zero bytes of
the last word are dropped and restored on reading.
"""

from __future__ import annotations

import numpy as np
import constriction

from .errors import FormatError

_FAMILY = constriction.stream.model.Categorical(perfect=False)  # perfect=True is ~1000x slower


def _check_rows(probs: np.ndarray) -> None:
    # constriction silently misreads Fortran-ordered arrays: refuse them here.
    if probs.dtype != np.float32 or not probs.flags.c_contiguous or probs.ndim != 2:
        raise ValueError("probability rows must be a C-contiguous float32 (n, V) array")


class Encoder:
    def __init__(self):
        self._coder = constriction.stream.queue.RangeEncoder()

    def encode(self, symbols: np.ndarray, probs: np.ndarray) -> None:
        _check_rows(probs)
        self._coder.encode(np.ascontiguousarray(symbols, dtype=np.int32), _FAMILY, probs)

    def finish(self) -> bytes:
        raw = self._coder.get_compressed().astype("<u4").tobytes()
        keep = len(raw)
        while keep > len(raw) - 3 and keep > 0 and raw[keep - 1] == 0:
            keep -= 1
        return raw[:keep]


class Decoder:
    def __init__(self, data: bytes):
        padded = data + b"\0" * (-len(data) % 4)
        self._coder = constriction.stream.queue.RangeDecoder(np.frombuffer(padded, dtype="<u4").astype(np.uint32))

    def decode(self, probs: np.ndarray) -> np.ndarray:
        _check_rows(probs)
        try:
            return self._coder.decode(_FAMILY, probs)
        except Exception as exc:  # constriction reports damaged words as errors
            raise FormatError(f"damaged compressed data ({exc})") from None
