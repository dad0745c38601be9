"""Stage 4: the one loop that both compression and decompression run.

Token ids are cut into chunks of L tokens; chunks are grouped into blocks of
up to B streams. Each block resets the predictor and steps its streams in
lockstep: at step t every stream feeds its previous token (the start token at
its first step) and gets the distribution of its next token. Streams that have finished feed
the start token and are not coded (integer models drop them from the batch). With a lead
(layout.Schedule), streams 1.. wait while stream 0 codes the block's first P tokens, then join it
with a copy of its context. Because the encoder and decoder call ``lockstep`` with the same
schedule, the predictor sees the very same inputs and shapes in both directions. The model never
carries anything from one block to the next.

With mixing (integer models), adaptive models over the history (n-grams and a match model) are
mixed into every step's distribution (mixing); they, too, are fed the same tokens both ways.
A ``History`` holds them: one per file, given every block in order, where the header's setting
carries the history across blocks (the default); else each block starts afresh and blocks are
independent of each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .coder import Decoder, Encoder, IntegerDecoder, IntegerEncoder, token_intervals
from .layout import Schedule
from .mixing import History, candidate_frequencies, carriers, decode_mixed, mixed_intervals, proposal_grid
from .models.base import Predictor


# code_step(probs of the active streams (k, V), t) -> their tokens at step t (k,)
CodeStep = Callable[[np.ndarray, int], np.ndarray]


def lockstep(predictor: Predictor, schedule: Schedule, code_step: CodeStep,
             on_step: Callable[[int], None] | None = None) -> np.ndarray:
    """Run one block; returns its tokens as a (B, steps) array, each at the step that coded it."""
    n_streams = schedule.n_streams
    tokens = np.zeros((n_streams, schedule.n_steps), dtype=np.int64)
    prev = np.full(n_streams, predictor.bos_id, dtype=np.int64)
    with predictor.running():
        predictor.start(n_streams, schedule.n_steps)
        for t in range(schedule.n_steps):
            active = schedule.active(t)
            if schedule.joins(t):
                predictor.join(n_streams)  # streams 1.. read stream 0's first P tokens, and its last one next
                prev[1:] = prev[0]
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


def _check_mixable(predictor: Predictor, history: History | None) -> None:
    if history is not None and not predictor.capabilities.integer:
        raise ValueError("mixing needs an integer model (its frequencies are what it mixes)")


def model_bits(probs: np.ndarray, symbols: np.ndarray) -> np.ndarray:
    """-log2 of each symbol's probability under its row (integer frequencies or float32)."""
    p = probs[np.arange(len(symbols)), symbols].astype(np.float64)
    return -np.log2(p / probs.sum(axis=1, dtype=np.float64))


class StepCoder:
    """Codes one lockstep step either way: under the model's rows alone, or with the history's
    context models mixed in (mixing). Both directions call it with the same rows in the same
    order, so both sides' context models and mixer learn the same things. Each call also returns
    the tokens' bits as coded (mixed, where mixing is on)."""

    def __init__(self, integer: bool, history: History | None = None, data: bytes | None = None):
        """An encoder, or with ``data`` a decoder of it."""
        self.history = history
        if data is None:
            self.coder = IntegerEncoder() if integer else Encoder()
        else:
            self.coder = IntegerDecoder(data) if integer else Decoder(data)

    def encode(self, probs: np.ndarray, symbols: np.ndarray, t: int,
               lm_bits: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Code step t's symbols; returns their bits and which context model carried each (-1: the
        LM). ``lm_bits``: their bits under the model alone, where the caller has them already."""
        history = self.history
        if history is None:
            self.coder.encode(symbols, probs)
            return model_bits(probs, symbols) if lm_bits is None else lm_bits, np.full(len(symbols), -1)
        candidates, states = history.models.predict(t, len(symbols))
        lows, sizes, totals, bits = mixed_intervals(history.mixer, symbols, *token_intervals(probs, symbols),
                                                    candidate_frequencies(probs, candidates), candidates, states)
        self.coder.encode_intervals(lows, sizes, totals)
        history.models.update(t, symbols)
        return bits, carriers(symbols, candidates, states)

    def decode(self, probs: np.ndarray, t: int, with_bits: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Step t's symbols, and with ``with_bits`` their bits (decompression has no use for them)."""
        history = self.history
        if history is None:
            symbols = self.coder.decode(probs)
            return symbols, model_bits(probs, symbols) if with_bits else None
        symbols, bits = decode_mixed(history.mixer, self.coder, probs, *history.models.predict(t, len(probs)))
        history.models.update(t, symbols)
        return symbols, bits

    def finish(self) -> bytes:
        """The encoder's bytes."""
        return self.coder.finish()


def encode_block(predictor: Predictor, chunks: list[np.ndarray], on_step: Callable[[int], None] | None = None,
                 record=None, history: History | None = None, lead: int = 0) -> BlockResult:
    """Code one block's chunks; ``record(t, symbols, probs, bits, carriers)`` sees every step (forces
    stepping); ``carriers``: which context model carried each token (``mixing.carriers``), -1 the LM.
    ``history`` (integer models): the file's context models and mixer, or None for the model alone.
    ``lead``: the layout's (layout.Schedule)."""
    _check_mixable(predictor, history)
    schedule = Schedule.of([len(c) for c in chunks], lead)
    if record is None and predictor.capabilities.teacher_forced:
        return encode_block_teacher_forced(predictor, chunks, schedule, on_step, history)
    if history is not None:
        history.next_block(len(chunks))
    coder = StepCoder(predictor.capabilities.integer, history)
    nll_bits = lm_nll_bits = 0.0
    grid = schedule.grid(chunks)

    def code_step(probs: np.ndarray, t: int) -> np.ndarray:
        nonlocal nll_bits, lm_nll_bits
        symbols = grid[: len(probs), t]
        lm_bits = model_bits(probs, symbols)
        bits, carried = coder.encode(probs, symbols, t, lm_bits)
        nll_bits += float(bits.sum())
        lm_nll_bits += float(lm_bits.sum())
        if record is not None:
            record(t, symbols, probs, bits, carried)
        return symbols

    lockstep(predictor, schedule, code_step, on_step)
    return BlockResult(coder.finish(), nll_bits, lm_nll_bits)


def encode_block_teacher_forced(predictor: Predictor, chunks: list[np.ndarray], schedule: Schedule,
                                on_step: Callable[[int], None] | None = None,
                                history: History | None = None) -> BlockResult:
    """Exact (integer) predictors only: whole-chunk passes, then coding in lockstep order.

    The bytes are those ``encode_block`` would write, because the predictor's
    teacher-forced pass gives the very integers its stepping gives, and the context
    models' candidates depend on the tokens alone (known in advance here).
    """
    proposals = propose(chunks, schedule, history)
    candidates = None if proposals is None else proposals[0]
    return code_pass(whole_chunk_pass(predictor, chunks, schedule, candidates, on_step), history, proposals)


def propose(chunks: list[np.ndarray], schedule: Schedule,
            history: History | None) -> tuple[np.ndarray, np.ndarray] | None:
    """A block's candidates and states (mixing.proposal_grid) from the history, which moves on to the
    block's end; None without mixing. The first step of encoding a block, before the LM's pass."""
    return None if history is None else proposal_grid(chunks, history.next_block(len(chunks)).models, schedule)


def code_pass(pass_: WholeChunkPass, history: History | None, proposals) -> BlockResult:
    """A block's bytes from its whole-chunk pass: the LM's intervals, mixed with the history's
    proposals (from ``propose``) where mixing is on. The last step of encoding a block."""
    encoder = IntegerEncoder()
    nll_bits = 0.0
    for t in range(pass_.tokens.shape[1]):
        active = pass_.schedule.active(t)
        if history is None:
            encoder.encode_intervals(*pass_.intervals[:, :active, t])
            continue
        candidates, states = proposals
        lows, sizes, totals, bits = mixed_intervals(
            history.mixer, pass_.tokens[:active, t], *pass_.intervals[:, :active, t], pass_.f_candidates[:active, t],
            candidates[:active, t], states[:active, t].astype(np.int64))
        encoder.encode_intervals(lows, sizes, totals)
        nll_bits += float(bits.sum())
    return BlockResult(encoder.finish(), pass_.lm_nll_bits if history is None else nll_bits, pass_.lm_nll_bits)


@dataclass
class WholeChunkPass:
    """A block's tokens (B, T steps), their coder intervals under the model (3, B, T: low, size,
    total) and, given candidates (B, T, K), the model's frequencies of those (B, T, K)."""
    tokens: np.ndarray
    schedule: Schedule
    intervals: np.ndarray
    f_candidates: np.ndarray | None

    @property
    def lm_nll_bits(self) -> float:
        coded = self.schedule.coded()
        return float(-np.log2(self.intervals[1][coded] / self.intervals[2][coded]).sum())


def whole_chunk_pass(predictor: Predictor, chunks: list[np.ndarray], schedule: Schedule | None = None,
                     candidates: np.ndarray | None = None,
                     on_step: Callable[[int], None] | None = None) -> WholeChunkPass:
    """An exact predictor's teacher-forced passes over a block's chunks, laid out in lockstep order:
    each row's coder interval, and the LM's frequencies of the context models' ``candidates``."""
    schedule = schedule or Schedule.of([len(c) for c in chunks])
    tokens = schedule.grid(chunks)
    intervals = np.ones((3, *tokens.shape), dtype=np.int64)
    f_candidates = None if candidates is None else np.zeros(candidates.shape, dtype=np.int64)
    with predictor.running():
        for i, first, freqs in predictor.teacher_forced_rows(chunks, schedule.lead):
            start = schedule.starts[i] + first  # the step that codes the chunk's token ``first``
            end = start + len(freqs)
            intervals[:, i, start:end] = token_intervals(freqs, tokens[i, start:end])
            if f_candidates is not None:
                f_candidates[i, start:end] = candidate_frequencies(freqs, candidates[i, start:end])
            if on_step:
                on_step(end - start)
    return WholeChunkPass(tokens, schedule, intervals, f_candidates)


def decode_block(predictor: Predictor, data: bytes, lengths: list[int],
                 on_step: Callable[[int], None] | None = None, history: History | None = None,
                 lead: int = 0) -> list[np.ndarray]:
    """A block's chunks of tokens; ``history`` and ``lead`` as ``encode_block`` was given them."""
    _check_mixable(predictor, history)
    schedule = Schedule.of(lengths, lead)
    if history is not None:
        history.next_block(len(lengths))
    coder = StepCoder(predictor.capabilities.integer, history, data)
    return schedule.chunks(lockstep(predictor, schedule, lambda probs, t: coder.decode(probs, t)[0], on_step))
