"""Stage 4: the one loop that both compression and decompression run.

Token ids are cut into chunks of L tokens; chunks are grouped into blocks of
up to B streams. Each block resets the predictor and steps its streams in
lockstep: at step t every stream feeds its previous token (the start token at
t=0) and gets the distribution of its token t. Streams that have finished feed
the start token and are not coded (integer models drop them from the batch). Because the encoder and decoder call
``lockstep`` with the same lengths, the predictor sees the very same inputs and
shapes in both directions. Blocks are independent of each other.

With ``mix`` (integer models), adaptive models over the block's history (n-grams and a
match model) are mixed into every step's distribution (mixing.py); they, too, are fed the
same tokens both ways.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from .coder import Decoder, Encoder, IntegerDecoder, IntegerEncoder
from .mixing import (ContextModels, Mixer, carriers, decode_mixed, mix_setting, mixed_intervals, parse_mix_setting,
                     proposal_grid)
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
    """Code one block's chunks; ``record(t, symbols, probs, bits, carriers)`` sees every step (forces
    stepping); ``carriers``: which context model carried each token (``mixing.carriers``), -1 the LM.
    ``mix`` (integer models): the header's mix setting (mixing.py), or None for the model alone."""
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
        bits, carried = lm_bits, np.full(len(symbols), -1)
        if mixing.on:
            cum = np.cumsum(probs, axis=1, dtype=np.int64)
            rows = np.arange(len(symbols))
            candidates, states = mixing.models.predict(t, len(symbols))
            f_candidates = probs[rows[:, None], np.maximum(candidates, 0)].astype(np.int64)
            lows, sizes, totals, bits = mixed_intervals(mixing.mixer, symbols, cum[rows, symbols] - p.astype(np.int64),
                                                        p.astype(np.int64), cum[:, -1], f_candidates, candidates, states)
            encoder.encode_intervals(lows, sizes, totals)
            mixing.models.update(t, symbols)
            carried = carriers(symbols, candidates, states)
        else:
            encoder.encode(symbols, probs)
        nll_bits += float(bits.sum())
        lm_nll_bits += float(lm_bits.sum())
        if record is not None:
            record(t, symbols, probs, bits, carried)
        return symbols

    lockstep(predictor, [len(c) for c in chunks], code_step, on_step)
    return BlockResult(encoder.finish(), nll_bits, lm_nll_bits)


class _Mixing:
    """A block's context models and mixer, or nothing where mixing is off."""

    def __init__(self, predictor: Predictor, n_streams: int, mix: str | None):
        if mix is not None and not predictor.capabilities.integer:
            raise ValueError("mixing needs an integer model (its frequencies are what it mixes)")
        self.on = mix is not None
        if self.on:
            self.table_bits = parse_mix_setting(mix)
            self.models, self.mixer = ContextModels(n_streams, self.table_bits), Mixer()


def encode_block_teacher_forced(predictor: Predictor, chunks: list[np.ndarray],
                                on_step: Callable[[int], None] | None = None, mix: str | None = None) -> BlockResult:
    """Exact (integer) predictors only: whole-chunk passes, then coding in lockstep order.

    The bytes are those ``encode_block`` would write, because the predictor's
    teacher-forced pass gives the very integers its stepping gives, and the context
    models' candidates depend on the tokens alone (known in advance here).
    """
    mixing = _Mixing(predictor, len(chunks), mix)
    candidates, states = proposal_grid(chunks, mixing.table_bits) if mixing.on else (None, None)
    pass_ = whole_chunk_pass(predictor, chunks, candidates, on_step)
    encoder = IntegerEncoder()
    nll_bits = 0.0
    for t in range(pass_.tokens.shape[1]):
        active = int(np.count_nonzero(pass_.lengths > t))
        if not mixing.on:
            encoder.encode_intervals(*pass_.intervals[:, :active, t])
            continue
        lows, sizes, totals, bits = mixed_intervals(
            mixing.mixer, pass_.tokens[:active, t], *pass_.intervals[:, :active, t], pass_.f_candidates[:active, t],
            candidates[:active, t], states[:active, t].astype(np.int64))
        encoder.encode_intervals(lows, sizes, totals)
        nll_bits += float(bits.sum())
    return BlockResult(encoder.finish(), nll_bits if mixing.on else pass_.lm_nll_bits, pass_.lm_nll_bits)


@dataclass
class WholeChunkPass:
    """A block's tokens (B, T), their coder intervals under the model (3, B, T: low, size, total)
    and, given candidates (B, T, K), the model's frequencies of those (B, T, K)."""
    tokens: np.ndarray
    lengths: np.ndarray
    intervals: np.ndarray
    f_candidates: np.ndarray | None

    @property
    def lm_nll_bits(self) -> float:
        coded = np.arange(self.tokens.shape[1]) < self.lengths[:, None]
        return float(-np.log2(self.intervals[1][coded] / self.intervals[2][coded]).sum())


def whole_chunk_pass(predictor: Predictor, chunks: list[np.ndarray], candidates: np.ndarray | None = None,
                     on_step: Callable[[int], None] | None = None) -> WholeChunkPass:
    """An exact predictor's teacher-forced passes over a block's chunks, laid out in lockstep order."""
    shape = (len(chunks), max(len(c) for c in chunks))
    intervals = np.ones((3, *shape), dtype=np.int64)
    f_candidates = None if candidates is None else np.zeros(candidates.shape, dtype=np.int64)
    tokens = np.zeros(shape, dtype=np.int64)
    with predictor.running():
        for i, coded in enumerate(predictor.coded_intervals(chunks, candidates)):
            n = len(chunks[i])
            intervals[:, i, :n] = coded[:3]
            if f_candidates is not None:
                f_candidates[i, :n] = coded[3]
            tokens[i, :n] = chunks[i]
            if on_step:
                on_step(n)
    return WholeChunkPass(tokens, np.array([len(c) for c in chunks]), intervals, f_candidates)


def mix_setting_for(predictor: Predictor, n_tokens: int, chunk: int, streams: int, mix: bool) -> str | None:
    """The header's mix setting for a file, or None: only integer models are mixed (their
    frequencies are what the mixer reads), with tables sized to the tokens a block holds."""
    return mix_setting(min(n_tokens, chunk * streams)) if mix and predictor.capabilities.integer else None


def decode_block(predictor: Predictor, data: bytes, lengths: list[int],
                 on_step: Callable[[int], None] | None = None, mix: str | None = None) -> list[np.ndarray]:
    decoder = IntegerDecoder(data) if predictor.capabilities.integer else Decoder(data)
    mixing = _Mixing(predictor, len(lengths), mix)

    def code_step(probs: np.ndarray, t: int) -> np.ndarray:
        if not mixing.on:
            return decoder.decode(probs)
        symbols = decode_mixed(mixing.mixer, decoder, probs, *mixing.models.predict(t, len(probs)))
        mixing.models.update(t, symbols)
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
