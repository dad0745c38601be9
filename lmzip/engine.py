"""Stage 4: the one loop that both compression and decompression run.

Token ids are cut into chunks of L tokens; chunks are grouped into blocks of
up to B streams. Each block resets the predictor and steps its streams in
lockstep: at step t every stream feeds its previous token (the start token at
t=0) and gets the distribution of its token t. Streams that have finished feed
the start token and are not coded (integer models drop them from the batch). Because the encoder and decoder call
``lockstep`` with the same lengths, the predictor sees the very same inputs and
shapes in both directions. Blocks are independent of each other.

With ``mix`` (integer models), a match model over the block's history is mixed into
every step's distribution (mixing.py); it, too, is fed the same tokens both ways.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from .coder import Decoder, Encoder, IntegerDecoder, IntegerEncoder
from .errors import ModelError
from .mixing import MIX_VERSION, MatchModel, Mixer, decode_mixed, match_grid, mixed_intervals
from .models.base import Predictor


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
    nll_bits: float  # what the block's tokens cost as coded (mixed, where mixing is on)
    lm_nll_bits: float = 0.0  # what the model alone would have cost them


def encode_block(predictor: Predictor, chunks: list[np.ndarray],
                 on_step: Callable[[int], None] | None = None, record=None, mix: str | None = None) -> BlockResult:
    """Code one block's chunks; ``record(t, symbols, probs, bits)`` sees every step (forces stepping).
    ``mix`` (integer models): the match model mixed in (mixing.py), by its version name."""
    if record is None and predictor.capabilities.teacher_forced:
        return encode_block_teacher_forced(predictor, chunks, on_step, mix)
    encoder = IntegerEncoder() if predictor.capabilities.integer else Encoder()
    nll_bits = lm_nll_bits = 0.0
    grid = np.zeros((len(chunks), max(len(c) for c in chunks)), dtype=np.int64)
    for row, chunk in zip(grid, chunks):
        row[: len(chunk)] = chunk
    mixing = _Mixing(predictor, len(chunks), mix)

    def code_step(probs: np.ndarray, t: int) -> np.ndarray:
        nonlocal nll_bits, lm_nll_bits
        symbols = grid[: len(probs), t]
        p = probs[np.arange(len(symbols)), symbols].astype(np.float64)
        lm_bits = -np.log2(p / probs.sum(axis=1, dtype=np.float64))
        bits = lm_bits
        if mixing.on:
            cum = np.cumsum(probs, axis=1, dtype=np.int64)
            rows = np.arange(len(symbols))
            predicted, buckets = mixing.match.predict(t, len(symbols))
            f_pred = np.where(predicted >= 0, probs[rows, np.maximum(predicted, 0)], 0)
            lows, sizes, totals, bits = mixed_intervals(mixing.mixer, symbols, cum[rows, symbols] - p.astype(np.int64),
                                                        p.astype(np.int64), cum[:, -1], f_pred, predicted, buckets)
            encoder.encode_intervals(np.array(lows), np.array(sizes), np.array(totals))
            mixing.match.update(t, symbols)
            bits = np.array(bits)
        else:
            encoder.encode(symbols, probs)
        nll_bits += float(bits.sum())
        lm_nll_bits += float(lm_bits.sum())
        if record is not None:
            record(t, symbols, probs, bits)
        return symbols

    lockstep(predictor, [len(c) for c in chunks], code_step, on_step)
    return BlockResult(encoder.finish(), nll_bits, lm_nll_bits)


class _Mixing:
    """A block's match model and mixer, or nothing where mixing is off."""

    def __init__(self, predictor: Predictor, n_streams: int, mix: str | None):
        if mix is not None and not predictor.capabilities.integer:
            raise ValueError("mixing needs an integer model (its frequencies are what it mixes)")
        if mix not in (None, MIX_VERSION):
            raise ModelError(f"the file mixes with {mix!r}, which this lmzip does not know: it was made by a newer lmzip")
        self.on = mix is not None
        self.match, self.mixer = MatchModel(n_streams), Mixer()


def encode_block_teacher_forced(predictor: Predictor, chunks: list[np.ndarray],
                                on_step: Callable[[int], None] | None = None, mix: str | None = None) -> BlockResult:
    """Exact (integer) predictors only: whole-chunk passes, then coding in lockstep order.

    The bytes are those ``encode_block`` would write, because the predictor's
    teacher-forced pass gives the very integers its stepping gives, and the match
    model's predictions depend on the tokens alone (known in advance here).
    """
    mixing = _Mixing(predictor, len(chunks), mix)
    shape = (len(chunks), max(len(c) for c in chunks))
    predicted, buckets = match_grid(chunks) if mixing.on else (np.full(shape, -1, dtype=np.int64), None)
    grid = np.ones((4, *shape), dtype=np.int64)  # low, size, total, the predicted token's frequency
    tokens = np.zeros(shape, dtype=np.int64)
    with predictor.running():
        for i, intervals in enumerate(predictor.coded_intervals(chunks, predicted)):
            grid[:, i, : len(intervals[0])] = intervals
            tokens[i, : len(chunks[i])] = chunks[i]
            if on_step:
                on_step(len(intervals[0]))
    lengths = np.array([len(c) for c in chunks])
    encoder = IntegerEncoder()
    nll_bits = 0.0
    for t in range(shape[1]):
        active = int(np.count_nonzero(lengths > t))
        if not mixing.on:
            encoder.encode_intervals(*grid[:3, :active, t])
            continue
        lows, sizes, totals, bits = mixed_intervals(mixing.mixer, tokens[:active, t], *grid[:, :active, t],
                                                    predicted[:active, t], buckets[:active, t])
        encoder.encode_intervals(np.array(lows), np.array(sizes), np.array(totals))
        nll_bits += sum(bits)
    coded = np.arange(shape[1]) < lengths[:, None]
    lm_nll_bits = float(-np.log2(grid[1][coded] / grid[2][coded]).sum())
    return BlockResult(encoder.finish(), nll_bits if mixing.on else lm_nll_bits, lm_nll_bits)


def decode_block(predictor: Predictor, data: bytes, lengths: list[int],
                 on_step: Callable[[int], None] | None = None, mix: str | None = None) -> list[np.ndarray]:
    decoder = IntegerDecoder(data) if predictor.capabilities.integer else Decoder(data)
    mixing = _Mixing(predictor, len(lengths), mix)

    def code_step(probs: np.ndarray, t: int) -> np.ndarray:
        if not mixing.on:
            return decoder.decode(probs)
        symbols = decode_mixed(mixing.mixer, decoder, probs, *mixing.match.predict(t, len(probs)))
        mixing.match.update(t, symbols)
        return symbols

    tokens = lockstep(predictor, lengths, code_step, on_step)
    return [tokens[i, :n] for i, n in enumerate(lengths)]


def split_blocks(ids: np.ndarray, chunk: int, streams: int) -> Iterator[list[np.ndarray]]:
    start = 0
    for lengths in block_layout(len(ids), chunk, streams):
        chunks = []
        for n in lengths:
            chunks.append(ids[start : start + n])
            start += n
        yield chunks
