"""Stage 4: the one loop that both compression and decompression run.

Token ids are cut into chunks of L tokens; chunks are grouped into blocks of
up to B streams. Each block resets the predictor and steps its streams in
lockstep: at step t every stream feeds its previous token (the start token at
t=0) and gets the distribution of its token t. Streams that have finished feed
the start token and are not coded (integer models drop them from the batch). Because the encoder and decoder call
``lockstep`` with the same lengths, the predictor sees the very same inputs and
shapes in both directions. Blocks are independent of each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from .coder import Decoder, Encoder, IntegerDecoder, IntegerEncoder
from .models.base import Predictor

LN2 = np.log(2.0)


def chunk_lengths(n_tokens: int, chunk: int) -> list[int]:
    full, rest = divmod(n_tokens, chunk)
    return [chunk] * full + ([rest] if rest else [])


def block_layout(n_tokens: int, chunk: int, streams: int) -> list[list[int]]:
    """Chunk lengths of each block: full chunks first, the short last chunk last."""
    lengths = chunk_lengths(n_tokens, chunk)
    return [lengths[i : i + streams] for i in range(0, len(lengths), streams)]


# code_step(probs of the active streams (k, V), t) -> their tokens at step t (k,)
CodeStep = Callable[[np.ndarray, int], np.ndarray]


def lockstep(predictor: Predictor, lengths: list[int], code_step: CodeStep,
             on_step: Callable[[int], None] | None = None) -> np.ndarray:
    """Run one block; returns its tokens as a (B, max length) array (padded)."""
    n_streams, n_steps = len(lengths), max(lengths)
    lengths_arr = np.asarray(lengths)
    tokens = np.zeros((n_streams, n_steps), dtype=np.int64)
    prev = np.full(n_streams, predictor.bos_id, dtype=np.int64)
    with predictor.running():
        predictor.start(n_streams, n_steps)
        for t in range(n_steps):
            active = int(np.count_nonzero(lengths_arr > t))  # chunks are sorted longest first
            # an exact model gives each stream the same numbers in any batch: finished streams are
            # dropped (a float model's numbers depend on the batch shape, so it steps them all)
            probs = predictor.step(prev[:active] if predictor.capabilities.integer else prev)
            coded = code_step(probs[:active], t)
            tokens[:active, t] = coded
            prev[:active] = coded
            prev[active:] = predictor.bos_id
            predictor.observe(coded, active)
            if on_step:
                on_step(active)
    return tokens


@dataclass
class BlockResult:
    data: bytes
    nll_bits: float


def encode_block(predictor: Predictor, chunks: list[np.ndarray],
                 on_step: Callable[[int], None] | None = None, record=None) -> BlockResult:
    """Code one block's chunks; ``record(t, symbols, probs, bits)`` sees every step (forces stepping)."""
    if record is None and predictor.capabilities.teacher_forced:
        return encode_block_teacher_forced(predictor, chunks, on_step)
    encoder = IntegerEncoder() if predictor.capabilities.integer else Encoder()
    nll_nats = 0.0
    grid = np.zeros((len(chunks), max(len(c) for c in chunks)), dtype=np.int64)
    for row, chunk in zip(grid, chunks):
        row[: len(chunk)] = chunk

    def code_step(probs: np.ndarray, t: int) -> np.ndarray:
        nonlocal nll_nats
        symbols = grid[: len(probs), t]
        encoder.encode(symbols, probs)
        p = probs[np.arange(len(symbols)), symbols].astype(np.float64)
        p = p / probs.sum(axis=1, dtype=np.float64)
        nll = -np.log(p)
        nll_nats += float(nll.sum())
        if record is not None:
            record(t, symbols, probs, nll / LN2)
        return symbols

    lockstep(predictor, [len(c) for c in chunks], code_step, on_step)
    return BlockResult(encoder.finish(), nll_nats / LN2)


def encode_block_teacher_forced(predictor: Predictor, chunks: list[np.ndarray],
                                on_step: Callable[[int], None] | None = None) -> BlockResult:
    """Exact (integer) predictors only: whole-chunk passes, then coding in lockstep order.

    The bytes are those ``encode_block`` would write, because the predictor's
    teacher-forced pass gives the very integers its stepping gives.
    """
    grid = np.ones((3, len(chunks), max(len(c) for c in chunks)), dtype=np.int64)  # low, size, total
    with predictor.running():
        for i, (low, size, total) in enumerate(predictor.coded_intervals(chunks)):
            grid[:, i, : len(low)] = low, size, total
            if on_step:
                on_step(len(low))
    lengths = np.array([len(c) for c in chunks])
    encoder = IntegerEncoder()
    for t in range(grid.shape[2]):
        active = int(np.count_nonzero(lengths > t))
        encoder.encode_intervals(*grid[:, :active, t])
    coded = np.arange(grid.shape[2]) < lengths[:, None]
    nll_bits = float(-np.log2(grid[1][coded] / grid[2][coded]).sum())
    return BlockResult(encoder.finish(), nll_bits)


def decode_block(predictor: Predictor, data: bytes, lengths: list[int],
                 on_step: Callable[[int], None] | None = None) -> list[np.ndarray]:
    decoder = IntegerDecoder(data) if predictor.capabilities.integer else Decoder(data)
    tokens = lockstep(predictor, lengths, lambda probs, t: decoder.decode(probs), on_step)
    return [tokens[i, :n] for i, n in enumerate(lengths)]


def split_blocks(ids: np.ndarray, chunk: int, streams: int) -> Iterator[list[np.ndarray]]:
    start = 0
    for lengths in block_layout(len(ids), chunk, streams):
        chunks = []
        for n in lengths:
            chunks.append(ids[start : start + n])
            start += n
        yield chunks
