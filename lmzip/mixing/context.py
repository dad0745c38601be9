"""The context models: token n-grams and a match model over the history, and the candidates they
propose for each step (the decoder's, step by step; the encoder's, for a whole block at once)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..layout import Schedule
from .setting import TABLE_BITS


ORDERS = 5  # n-gram orders 1..5
CANDIDATES = 3  # decisions per token at most
MIN_MATCH = 3  # tokens of context that start a match
MATCH_LENGTHS = 16  # match lengths 0..15+ (tokens predicted right since the match began)
# n-gram states: (quantized count of the (context, candidate) pair, quantized count of the context)
_QUANTIZE = np.array([0, 1, 2, 3, 4, 4, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7], dtype=np.int64)  # n -> 0..7 (16+: 7)
NGRAM_STATES = 64
# match states: 0 no match; 1..16 the candidate is the match's prediction (by length); 17 it is not
MATCH_STATES = MATCH_LENGTHS + 2
CONTEXT_INPUTS = ORDERS + 1  # the inputs besides the LM's: one per n-gram order, and the match model
_SENTINEL = np.uint64(0xFFFFFFFF)  # "before the chunk's start" in a context
_PRIMES = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F), np.uint64(0x165667B19E3779F9))


class MatchModel:
    """Predictions for a block's streams from its history; fed the tokens of each step in order.

    ``predict(t, n)`` gives, for the first ``n`` streams at step ``t``, the predicted token (-1:
    none) and the match length; ``update(t, tokens)`` records what they turned out to be. A stream
    reads its own tokens so far, however many steps it waited before its first (layout.Schedule):
    ``t`` is kept for ContextModels' interface, not read.
    """

    def __init__(self, n_streams: int):
        self.rows: list[list[int]] = [[] for _ in range(n_streams)]  # each stream's tokens so far
        self.table: dict[tuple, tuple[int, int]] = {}  # context -> (stream, step) of the token after it
        self.pointer: list[tuple[int, int] | None] = [None] * n_streams
        self.length = [0] * n_streams
        self.pending: list = []  # contexts whose following token is coded at the current step

    def predict(self, t: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        predicted = np.full(n, -1, dtype=np.int64)
        lengths = np.zeros(n, dtype=np.int64)
        for s in range(n):
            pointer, seen = self.pointer[s], len(self.rows[s])
            if pointer is not None and pointer[1] >= len(self.rows[pointer[0]]):
                pointer = self.pointer[s] = None  # the matched stream ended: no token followed
            if pointer is None and seen >= MIN_MATCH:
                pointer = self.pointer[s] = self.table.get(tuple(self.rows[s][seen - MIN_MATCH :]))
                self.length[s] = 0
            if pointer is not None:
                predicted[s] = self.rows[pointer[0]][pointer[1]]
                lengths[s] = min(self.length[s], MATCH_LENGTHS - 1)
        return predicted, lengths

    def update(self, t: int, tokens: np.ndarray) -> None:
        """The tokens of step ``t`` of the first len(tokens) streams."""
        for s, token in enumerate(tokens.tolist()):
            self.rows[s].append(token)
            pointer = self.pointer[s]
            if pointer is not None:
                hit = self.rows[pointer[0]][pointer[1]] == token
                self.pointer[s] = (pointer[0], pointer[1] + 1) if hit else None
                self.length[s] = self.length[s] + 1 if hit else 0
        # contexts that ended a step ago: the token after them (this step's) is now known to both sides
        for key, (s, at) in self.pending:
            if at < len(self.rows[s]):
                self.table[key] = (s, at)
        self.pending = [(tuple(self.rows[s][-MIN_MATCH:]), (s, len(self.rows[s])))
                        for s in range(len(tokens)) if len(self.rows[s]) >= MIN_MATCH]


class Contexts(NamedTuple):
    """Each order's context of some streams at one step: (ORDERS, n) each."""
    hashes: np.ndarray  # 64-bit hashes of the last 1..ORDERS tokens
    slots: np.ndarray  # the hashes' table slots
    tops: np.ndarray  # the contexts' most frequent next tokens (-1 where none)


class NGrams:
    """Hashed token n-gram statistics of orders 1..ORDERS over the history.

    Per order, tables indexed by a hash: the context's count, the (context, token) pair's count,
    and the context's most frequent next token by a majority vote (token and confidence). They
    are zeros to start with (calloc'd: memory is touched only where a block writes).
    A context reaching before the chunk's start reads the missing tokens as a sentinel.
    """

    def __init__(self, n_streams: int, table_bits: int):
        size, self.shift = 1 << table_bits, np.uint64(64 - table_bits)
        self.recent = np.full((n_streams, ORDERS), _SENTINEL, dtype=np.uint64)  # last tokens, latest first
        self.contexts = np.zeros((ORDERS, size), dtype=np.int32)
        self.pairs = np.zeros((ORDERS, size), dtype=np.int32)
        self.top = np.zeros((ORDERS, size), dtype=np.int32)  # token + 1 (0: none), so zeros are untouched memory
        self.votes = np.zeros((ORDERS, size), dtype=np.int32)
        self.orders = np.arange(ORDERS)[:, None]

    def _hashes(self, n: int) -> np.ndarray:
        """(ORDERS, n) 64-bit hashes of each stream's last 1..ORDERS tokens."""
        hashes = np.empty((ORDERS, n), dtype=np.uint64)
        h = np.full(n, _PRIMES[2], dtype=np.uint64)
        for k in range(ORDERS):
            h = (h ^ self.recent[:n, k]) * _PRIMES[0]
            hashes[k] = h
        return hashes

    def _pair_slots(self, hashes: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """Slots of (context, token) pairs: hashes (ORDERS, n), tokens (n, ...) -> (ORDERS, n, ...)."""
        extra = (slice(None), slice(None)) + (None,) * (tokens.ndim - 1)
        mixed = (hashes[extra] ^ ((tokens.astype(np.uint64) + np.uint64(1)) * _PRIMES[1])) * _PRIMES[0]
        return (mixed >> self.shift).astype(np.int64)

    def lookup(self, n: int) -> Contexts:
        """The first ``n`` streams' contexts now: hashes, slots and top tokens."""
        hashes = self._hashes(n)
        slots = (hashes >> self.shift).astype(np.int64)
        return Contexts(hashes, slots, self.top[self.orders, slots].astype(np.int64) - 1)

    def states(self, contexts: Contexts, candidates: np.ndarray) -> np.ndarray:
        """(n, K, ORDERS) states of candidates (n, K) in ``contexts``."""
        pair_slots = self._pair_slots(contexts.hashes, np.maximum(candidates, 0))
        pairs = self.pairs[self.orders[:, :, None], pair_slots]
        seen = self.contexts[self.orders, contexts.slots][:, :, None]
        states = _QUANTIZE[np.minimum(pairs, 16)] * 8 + _QUANTIZE[np.minimum(seen, 16)]
        return np.moveaxis(states, 0, -1)

    def next_block(self, n_streams: int) -> None:
        """Keep the counts; the next block's streams start with no context."""
        self.recent = np.full((n_streams, ORDERS), _SENTINEL, dtype=np.uint64)

    def update(self, tokens: np.ndarray) -> None:
        """Count the tokens that followed the first len(tokens) streams' contexts, and move those on."""
        n = len(tokens)
        hashes = self._hashes(n)
        slots = (hashes >> self.shift).astype(np.int64)
        np.add.at(self.contexts, (self.orders, slots), 1)
        np.add.at(self.pairs, (self.orders, self._pair_slots(hashes, tokens)), 1)
        # the vote: where streams share a slot in one step, the first one votes
        keys = (self.orders * self.contexts.shape[1] + slots).reshape(-1)
        unique, first = np.unique(keys, return_index=True)
        voted = tokens[first % n] + 1
        top, votes = self.top.reshape(-1), self.votes.reshape(-1)
        same = top[unique] == voted
        before = votes[unique]
        votes[unique] = np.where(same, np.minimum(before + 1, 255), np.maximum(before - 1, 0))
        take = ~same & (before == 0)
        top[unique[take]] = voted[take]
        votes[unique[take]] = 1
        self.recent[:n, 1:] = self.recent[:n, :-1]
        self.recent[:n, 0] = tokens.astype(np.uint64)


class ContextModels:
    """The history's models together: candidates for each step and what every model says of them.

    ``predict(t, n)`` -> (candidates (n, K), -1 padded at the end; states (n, K, CONTEXT_INPUTS)); then
    ``update(t, tokens)`` with the step's tokens. The encoder runs it over the tokens it has
    (``proposal_grid``), the decoder step by step: the same class, so they see the same history.
    """

    def __init__(self, n_streams: int, table_bits: int = TABLE_BITS):
        self.match = MatchModel(n_streams)
        self.ngrams = NGrams(n_streams, table_bits)

    def predict(self, t: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        predicted, lengths = self.match.predict(t, n)
        contexts = self.ngrams.lookup(n)
        proposals = np.concatenate([predicted[:, None], contexts.tops[::-1].T], axis=1)  # match, order 5, ..., 1
        candidates = _first_distinct(proposals, CANDIDATES)
        states = np.empty((n, CANDIDATES, CONTEXT_INPUTS), dtype=np.int64)
        states[:, :, :ORDERS] = self.ngrams.states(contexts, candidates)
        is_predicted = (candidates == predicted[:, None]) & (predicted[:, None] >= 0)
        states[:, :, ORDERS] = np.where(predicted[:, None] < 0, 0,
                                        np.where(is_predicted, 1 + lengths[:, None], MATCH_STATES - 1))
        return candidates, states

    def update(self, t: int, tokens: np.ndarray) -> None:
        self.match.update(t, tokens)
        self.ngrams.update(tokens)

    def next_block(self, n_streams: int) -> None:
        """Carry the n-grams into the file's next block (of ``n_streams`` streams); the match model
        starts afresh."""
        self.match = MatchModel(n_streams)
        self.ngrams.next_block(n_streams)


def _first_distinct(proposals: np.ndarray, k: int) -> np.ndarray:
    """Each row's first ``k`` distinct non-negative values, in order, padded with -1."""
    proposals = proposals.copy()
    for j in range(1, proposals.shape[1]):
        repeated = (proposals[:, :j] == proposals[:, j : j + 1]).any(axis=1)
        proposals[repeated, j] = -1
    order = np.argsort(proposals < 0, axis=1, kind="stable")
    return np.take_along_axis(proposals, order, axis=1)[:, :k]


def proposal_grid(chunks: list[np.ndarray], models: ContextModels | None = None,
                  schedule: Schedule | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The encoder's view of a block: every step's candidates (B, T, K) and states (B, T, K,
    CONTEXT_INPUTS), from ``models`` (fresh ones by default), which it feeds the block's tokens in
    the ``schedule``'s order (all streams together by default). They depend on the tokens alone,
    so the encoder, who has them all, knows them in advance; they are computed by the very
    ``ContextModels`` the decoder runs step by step."""
    schedule = schedule or Schedule.of([len(c) for c in chunks])
    grid = schedule.grid(chunks)
    candidates = np.full((*grid.shape, CANDIDATES), -1, dtype=np.int64)
    states = np.zeros((*grid.shape, CANDIDATES, CONTEXT_INPUTS), dtype=np.int16)
    models = ContextModels(len(chunks)) if models is None else models
    for t in range(grid.shape[1]):
        active = schedule.active(t)
        candidates[:active, t], states[:active, t] = models.predict(t, active)
        models.update(t, grid[:active, t])
    return candidates, states
