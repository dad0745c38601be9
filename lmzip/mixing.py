"""Between the model and the coder: adaptive context models over the block's history, mixed with the LM.

The language model sees one chunk; a file repeats itself beyond that (names, phrases, markup).
Two kinds of adaptive models learn the file as it is coded, from its **history**: at step t of a
block, every token of every stream of the block at steps < t, and, where the history is
**carried** (the default), every token of the file's earlier blocks. In lockstep the encoder and
the decoder both know exactly those (``ContextModels`` is fed nothing else). A carried history
makes a file's blocks depend on the ones before them (they decode in order); an independent one
(``--independent``) lets them be coded in any order, on any worker.

- token n-grams of orders 1-5: hashed counts of each context and of each (context, token) pair,
  and each context's most frequent next token (a majority vote), in tables of ``2^TABLE_BITS``
  entries per order;
- a match model: the latest earlier occurrence of the stream's last ``MIN_MATCH`` tokens in the
  block, followed as long as it predicts right (it restarts with every block: its memory grows
  with what it indexes, the n-grams' tables do not).

They **propose candidates**: up to ``CANDIDATES`` tokens (the match's prediction, then each order's
top token, longest context first). A token is coded as a chain of binary decisions "it is
candidate i" (given that it is none of the earlier ones) and, if it is none, under the LM's
frequencies with the candidates' taken out. Each decision's probability mixes, in the logistic
domain, the LM's own probability of that candidate with what the n-grams and the match say of it
(paq's mixing: two sets of learned weights, each chosen by its own small context, averaged; adaptive
state maps; a final APM). The chain costs
exactly the product of its decisions, and totals stay the LM's: the whole-chunk encoder only needs,
besides each token's interval, the LM's frequency of each candidate, gathered in the same pass.

The LM's weight starts at 1 and every other at 0, so with nothing learned yet the output is the
LM's. Everything is integer arithmetic (tables from ``decimal``, which rounds the same everywhere):
the same bits on every machine and backend. The header records ``MIX_VERSION``, the tables' size
and whether the history is carried: ``cm2-t20-c`` (``cm2-t20``: independent blocks). lmzip 0.6 and
0.7 wrote recipe ``cm1`` (four orders, one weight set, a fixed learning rate), refused here.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from .errors import ModelError
from .layout import active_streams, padded_grid

MIX_VERSION = "cm2"
TABLE_BITS = 20  # entries per n-gram table at most (a block holds 64K tokens by default): 4 MB each
ORDERS = 5  # n-gram orders 1..5
CANDIDATES = 3  # decisions per token at most
MIN_MATCH = 3  # tokens of context that start a match
MATCH_LENGTHS = 16  # match lengths 0..15+ (tokens predicted right since the match began)

PROB_BITS = 16  # decisions are coded with 16-bit probabilities
PROB_ONE = 1 << PROB_BITS
STRETCH_MAX = 2815  # the logistic domain, in 1/256 nats: probabilities down to ~2^-16
WEIGHT_ONE = 1 << 16  # mixer weights in 16.16 fixed point
WEIGHT_LIMIT = 16 * WEIGHT_ONE  # |weight| at most 16
# mixer: weight += input * error * rate >> 22 (input in 1/256 nats, error in 2^-16); a weight set's
# rate falls from 256 (2^-14) as it is used, as RATE_START * RATE_HALF / (RATE_HALF + updates), to
# RATE_END (2^-17): quick to learn on a small file, steady on a large one
LEARNING_SHIFT = 22
RATE_START, RATE_HALF, RATE_END = 256, 512, 32
MAP_LIMIT = 1023  # state maps: the adaptation rate falls as 1/n down to 1/(MAP_LIMIT+1)
# the final stage (an APM): the mixed probability refined by the candidate's order-2 state, on 33
# nodes across the logistic domain; it gets 3/4 of the output, and moves 1/64 of the way per outcome
APM_NODES, APM_STEP, APM_RATE, APM_SHARE = 33, 176, 64, 3

# n-gram states: (quantized count of the (context, candidate) pair, quantized count of the context)
_QUANTIZE = np.array([0, 1, 2, 3, 4, 4, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7], dtype=np.int64)  # n -> 0..7 (16+: 7)
NGRAM_STATES = 64
# match states: 0 no match; 1..16 the candidate is the match's prediction (by length); 17 it is not
MATCH_STATES = MATCH_LENGTHS + 2
CONTEXT_INPUTS = ORDERS + 1  # the inputs besides the LM's: one per n-gram order, and the match model
_SENTINEL = np.uint64(0xFFFFFFFF)  # "before the chunk's start" in a context
_PRIMES = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F), np.uint64(0x165667B19E3779F9))


CARRIED = "-c"  # the setting's suffix for a history carried across blocks
# recipes of earlier releases, refused with one line: what made the file, and the lmzip that decodes it
RETIRED = {"match1": ("lmzip 0.5's match model", "0.5"), "cm1": ("lmzip 0.6-0.7's recipe cm1", "0.7")}


@dataclass(frozen=True)
class MixSetting:
    table_bits: int  # 2^table_bits entries per n-gram table
    carried: bool  # the history runs across the file's blocks (else every block starts afresh)


def mix_setting(history_tokens: int | None = None, carried: bool = True) -> str:
    """The header's ``m=`` value: the recipe, its tables' size and the history's scope. Tables hold
    2^TABLE_BITS entries, or fewer where the history holds fewer tokens (16 slots a token, at least
    2^12): a small file does not pay for clearing tables it would never fill."""
    bits = TABLE_BITS if history_tokens is None else min(TABLE_BITS, max(12, (16 * history_tokens - 1).bit_length()))
    return f"{MIX_VERSION}-t{bits}{CARRIED if carried else ''}"


def parse_mix_setting(text: str) -> MixSetting:
    """A header's mix setting, or ModelError for a mixer this lmzip does not know."""
    version, _, tables = text.partition("-t")
    if version in RETIRED:
        made_by, decoder = RETIRED[version]
        raise ModelError(f"the file was mixed by {made_by}, which this lmzip no longer decodes: "
                         f"decompress it with lmzip {decoder}")
    carried = tables.endswith(CARRIED)
    tables = tables.removesuffix(CARRIED)
    if version != MIX_VERSION or not tables.isdigit() or not 8 <= int(tables) <= 26:
        raise ModelError(f"the file mixes with {text!r}, which this lmzip does not know: "
                         "it was made by a newer lmzip")
    return MixSetting(int(tables), carried)


# ---------------------------------------------------------------- the logistic domain, in integers

@cache
def squash_table() -> np.ndarray:
    """squash(d) = 2^16 / (1 + e^(-d/256)) for d in [-STRETCH_MAX, STRETCH_MAX], rounded, within [1, 2^16-1].
    ``decimal`` computes it: correctly rounded, so the same integers on every machine."""
    from decimal import ROUND_HALF_EVEN, Decimal, localcontext

    with localcontext() as context:
        context.prec = 28
        half = [int((Decimal(PROB_ONE) / (1 + (Decimal(-d) / 256).exp())).to_integral_value(ROUND_HALF_EVEN))
                for d in range(STRETCH_MAX + 1)]
    upper = np.array(half, dtype=np.int64)
    table = np.concatenate([PROB_ONE - upper[:0:-1], upper])  # squash(-d) = 1 - squash(d)
    return np.clip(table, 1, PROB_ONE - 1)


@cache
def stretch_table() -> np.ndarray:
    """stretch(p) for p in [0, 2^16): the least d with squash(d) >= p (squash's inverse)."""
    return np.searchsorted(squash_table(), np.arange(PROB_ONE), side="left").astype(np.int64) - STRETCH_MAX


# ---------------------------------------------------------------- the history's models

class MatchModel:
    """Predictions for a block's streams from its history; fed the tokens of each step in order.

    ``predict(t, n)`` gives, for the first ``n`` streams at step ``t``, the predicted token (-1:
    none) and the match length; ``update(t, tokens)`` records what they turned out to be.
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
            pointer = self.pointer[s]
            if pointer is not None and pointer[1] >= len(self.rows[pointer[0]]):
                pointer = self.pointer[s] = None  # the matched stream ended: no token followed
            if pointer is None and t >= MIN_MATCH:
                pointer = self.pointer[s] = self.table.get(tuple(self.rows[s][t - MIN_MATCH : t]))
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
        # contexts that ended at step t-1: the token after them (step t) is now known to both sides
        for key, (s, step) in self.pending:
            if step < len(self.rows[s]):
                self.table[key] = (s, step)
        self.pending = [(tuple(self.rows[s][t + 1 - MIN_MATCH :]), (s, t + 1))
                        for s in range(len(tokens)) if t + 1 >= MIN_MATCH]


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

    def lookup(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Each order's context slots (ORDERS, n) and top tokens (ORDERS, n; -1 where none)."""
        self._current = hashes = self._hashes(n)
        slots = (hashes >> self.shift).astype(np.int64)
        return slots, self.top[self.orders, slots].astype(np.int64) - 1

    def states(self, slots: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """(n, K, ORDERS) states of candidates (n, K) after ``lookup``."""
        pairs = self.pairs[self.orders[:, :, None], self._pair_slots(self._current, np.maximum(candidates, 0))]
        seen = self.contexts[self.orders, slots][:, :, None]
        states = _QUANTIZE[np.minimum(pairs, 16)] * 8 + _QUANTIZE[np.minimum(seen, 16)]
        return np.moveaxis(states, 0, -1)

    def next_block(self, n_streams: int) -> None:
        """Keep the counts; the next block's streams start with no context."""
        self.recent = np.full((n_streams, ORDERS), _SENTINEL, dtype=np.uint64)

    def update(self, tokens: np.ndarray) -> None:
        """Count the tokens that followed the contexts of the last ``lookup``, and move the contexts on."""
        n = len(tokens)
        hashes = self._current[:, :n]
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
        slots, tops = self.ngrams.lookup(n)
        proposals = np.concatenate([predicted[:, None], tops[::-1].T], axis=1)  # match, order 4, ..., 1
        candidates = _first_distinct(proposals, CANDIDATES)
        states = np.empty((n, CANDIDATES, CONTEXT_INPUTS), dtype=np.int64)
        states[:, :, :ORDERS] = self.ngrams.states(slots, candidates)
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


def proposal_grid(chunks: list[np.ndarray], models: ContextModels | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The encoder's view of a block: every position's candidates (B, T, K) and states (B, T, K,
    CONTEXT_INPUTS), from ``models`` (fresh ones by default), which it feeds the block's tokens. They depend
    on the tokens alone, so the encoder, who has them all, knows them in advance; they are computed
    by the very ``ContextModels`` the decoder runs step by step."""
    lengths = np.array([len(c) for c in chunks])
    grid = padded_grid(chunks)
    candidates = np.full((*grid.shape, CANDIDATES), -1, dtype=np.int64)
    states = np.zeros((*grid.shape, CANDIDATES, CONTEXT_INPUTS), dtype=np.int16)
    models = ContextModels(len(chunks)) if models is None else models
    for t in range(grid.shape[1]):
        active = active_streams(lengths, t)
        candidates[:active, t], states[:active, t] = models.predict(t, active)
        models.update(t, grid[:active, t])
    return candidates, states


# ---------------------------------------------------------------- the mixer

def _initial_maps() -> np.ndarray:
    """State maps' starting probabilities (2^-16 units): an n-gram state's count ratio, the match's
    a rising confidence with its length."""
    middle = np.array([0, 1, 2, 3, 4.5, 7, 12, 20])
    pairs, seen = np.meshgrid(middle, middle, indexing="ij")
    ngram = np.round(PROB_ONE * (np.minimum(pairs, seen) + 0.1) / (seen + 0.5)).reshape(-1)
    maps = np.full((CONTEXT_INPUTS, NGRAM_STATES), PROB_ONE // 2, dtype=np.int64)
    maps[:ORDERS] = np.clip(ngram, 64, PROB_ONE - 64).astype(np.int64)
    maps[ORDERS, :MATCH_STATES] = [PROB_ONE // 64] + [PROB_ONE * (i + 2) // (i + 3) for i in range(MATCH_LENGTHS)] \
        + [PROB_ONE // 64]
    return maps


# Two weight sets mix each decision, each chosen by its own context, and their outputs are
# averaged: one by the decision (which candidate), the match's view of it and the LM's confidence in
# it; one by the decision and the longest n-gram order that has seen the candidate follow its context.
_LM_BUCKETS = np.array([PROB_ONE // 64, PROB_ONE // 8, PROB_ONE // 2, PROB_ONE * 7 // 8])  # bucket edges
SETS_BY_MATCH = CANDIDATES * 3 * (len(_LM_BUCKETS) + 1)
WEIGHT_SETS = SETS_BY_MATCH + CANDIDATES * (ORDERS + 1)


class Mixer:
    """Each decision's probability from the LM and the models' states; online updates of the
    weights (gradient steps on the decision's log-loss), the state maps and the APM (running
    averages of outcomes)."""

    def __init__(self):
        self.squash, self.stretch = squash_table(), stretch_table()
        self.weights = np.zeros((WEIGHT_SETS, CONTEXT_INPUTS + 2), dtype=np.int64)
        self.weights[:, 0] = WEIGHT_ONE  # the LM's input: the output is the LM's until something is learned
        self.updates = np.zeros(WEIGHT_SETS, dtype=np.int64)  # decisions each set has learned from
        self.maps = _initial_maps()
        self.seen = np.zeros_like(self.maps)
        nodes = self.squash[np.minimum(np.arange(APM_NODES) * APM_STEP, 2 * STRETCH_MAX)]  # node j: at j * APM_STEP
        self.apm = np.tile(nodes, (NGRAM_STATES * CANDIDATES, 1))  # starts as the identity

    def probabilities(self, states: np.ndarray, f_candidates: np.ndarray, totals: np.ndarray) -> np.ndarray:
        """P(token = candidate i | not an earlier one), (n, K) in 2^-16 units, from the LM's
        frequencies of the candidates (n, K; 0 where none) and totals (n,)."""
        n, k = f_candidates.shape
        remaining = totals[:, None] - np.cumsum(f_candidates, axis=1) + f_candidates
        p_lm = np.clip(f_candidates * PROB_ONE // np.maximum(remaining, 1), 1, PROB_ONE - 1)
        inputs = np.empty((n, k, CONTEXT_INPUTS + 2), dtype=np.int64)
        inputs[..., 0] = self.stretch[p_lm]
        inputs[..., 1 : CONTEXT_INPUTS + 1] = self.stretch[self.maps[np.arange(CONTEXT_INPUTS), states]]
        inputs[..., CONTEXT_INPUTS + 1] = 256  # a bias
        match_state = states[..., ORDERS]  # 0 none, 1 the match predicts this candidate, 2 another one
        match = np.where(match_state == MATCH_STATES - 1, 2, np.minimum(match_state, 1))
        by_match = (np.arange(k) * 3 + match) * (len(_LM_BUCKETS) + 1) + np.searchsorted(_LM_BUCKETS, p_lm, side="right")
        longest = ((states[..., :ORDERS] >= 8) * np.arange(1, ORDERS + 1)).max(axis=-1)  # the pair seen: count >= 1
        sets = np.stack([by_match, SETS_BY_MATCH + np.arange(k) * (ORDERS + 1) + longest], axis=-1)  # (n, K, 2)
        dots = (self.weights[sets] * inputs[..., None, :]).sum(axis=-1) >> 16
        outputs = np.clip(dots, -STRETCH_MAX, STRETCH_MAX) + STRETCH_MAX  # each set's, (n, K, 2)
        mixed = outputs.sum(axis=-1) >> 1
        # the APM, by the candidate's order-2 state and its place in the chain: interpolated
        # between the two nodes around the mixed value, and trained at the nearer one
        contexts = states[..., 1] * k + np.arange(k)
        node, offset = mixed // APM_STEP, mixed % APM_STEP
        refined = (self.apm[contexts, node] * (APM_STEP - offset) + self.apm[contexts, node + 1] * offset) // APM_STEP
        squashed = self.squash[mixed]
        p = np.clip((squashed * (4 - APM_SHARE) + refined * APM_SHARE) >> 2, 1, PROB_ONE - 1)
        nearer = contexts * APM_NODES + node + (2 * offset >= APM_STEP)
        each_p = self.squash[outputs]  # what each set alone says: its error trains it
        self._last = inputs, sets, states, each_p, nearer
        return p

    def update(self, reached: np.ndarray, hits: np.ndarray) -> None:
        """Learn from the decisions taken (``reached``, (n, K)) and their outcomes (``hits``)."""
        inputs, sets, states, each_p, nearer = (a[reached] for a in self._last)
        y = hits[reached].astype(np.int64)
        # each set learns from its own output's error, at its rate as the step began
        error = (y[:, None] << PROB_BITS) - each_p
        rate = np.maximum(RATE_END, RATE_START * RATE_HALF // (RATE_HALF + self.updates[sets]))
        np.add.at(self.weights, sets.reshape(-1),
                  (inputs[:, None, :] * (error * rate)[..., None]).reshape(-1, inputs.shape[-1]) >> LEARNING_SHIFT)
        np.add.at(self.updates, sets.reshape(-1), 1)
        np.clip(self.weights, -WEIGHT_LIMIT, WEIGHT_LIMIT, out=self.weights)
        _average_in(self.apm.reshape(-1), nearer, y, APM_RATE)
        # each used state of each model moves towards its outcomes, at 1/n down to 1/MAP_LIMIT
        slots = (np.arange(CONTEXT_INPUTS) * NGRAM_STATES + states).reshape(-1)
        seen = self.seen.reshape(-1)
        live, used = _average_in(self.maps.reshape(-1), slots, np.repeat(y, CONTEXT_INPUTS), seen + 1)
        seen[live] = np.minimum(seen[live] + used, MAP_LIMIT)
        np.clip(self.maps, 32, PROB_ONE - 32, out=self.maps)


def _average_in(table: np.ndarray, slots: np.ndarray, outcomes: np.ndarray, extra) -> tuple[np.ndarray, np.ndarray]:
    """Move each used slot of ``table`` (probabilities) towards the outcomes it saw this step:
    by used / (used + extra) of the way. Streams of one step sharing a slot count as one batch,
    so their order does not matter. Returns the slots moved and their uses."""
    used = np.bincount(slots, minlength=len(table))
    live = np.flatnonzero(used)
    ones = np.bincount(slots, weights=outcomes, minlength=len(table)).astype(np.int64)[live]
    extra = extra[live] if isinstance(extra, np.ndarray) else extra
    table[live] += (ones * PROB_ONE - used[live] * table[live]) // (used[live] + extra)
    return live, used[live]


# ---------------------------------------------------------------- coding a step

def mixed_intervals(mixer: Mixer, tokens, low, size, total, f_candidates, candidates, states):
    """One step's coder intervals (lows, sizes, totals arrays, in coding order) for tokens (n,)
    whose LM intervals are given, with the candidates' decisions before them; and each token's bits."""
    tokens, low, size, total = (np.asarray(a, dtype=np.int64) for a in (tokens, low, size, total))
    f_candidates = np.where(candidates >= 0, f_candidates, 0)
    p = mixer.probabilities(states, f_candidates, total)
    valid = candidates >= 0
    hits = valid & (candidates == tokens[:, None])
    hit_at = np.where(hits.any(axis=1), hits.argmax(axis=1), CANDIDATES)
    reached = valid & (np.arange(CANDIDATES) <= hit_at[:, None])
    mixer.update(reached, hits)
    n = len(tokens)
    lows = np.where(hits, 0, p)
    sizes = np.where(hits, p, PROB_ONE - p)
    missed = hit_at == CANDIDATES  # coded by the LM, without the candidates
    out = np.zeros((n, CANDIDATES + 1, 3), dtype=np.int64)
    out[:, :CANDIDATES] = np.stack([lows, sizes, np.full_like(p, PROB_ONE)], axis=-1)
    below = (f_candidates * (valid & (candidates < tokens[:, None]))).sum(axis=1)
    out[:, CANDIDATES] = np.stack([low - below, size, total - f_candidates.sum(axis=1)], axis=-1)
    coded = np.concatenate([reached, missed[:, None]], axis=1)
    flat = out[coded]
    bits = _mixed_bits(p, reached, hits, size, out[:, CANDIDATES, 2])
    return flat[:, 0], flat[:, 1], flat[:, 2], bits


def _mixed_bits(p: np.ndarray, reached: np.ndarray, hits: np.ndarray, size: np.ndarray,
                rest_total: np.ndarray) -> np.ndarray:
    """Each token's bits as mixing codes it: its decisions (p of a hit, 1 - p of a miss, in 2^-16
    units), then, where no candidate was it, the LM's frequency ``size`` out of ``rest_total`` (the
    row without the candidates)."""
    with np.errstate(divide="ignore"):
        decision_bits = np.where(reached, PROB_BITS - np.log2(np.where(hits, p, PROB_ONE - p)), 0.0).sum(axis=1)
        missed = ~hits.any(axis=1)
        return decision_bits + np.where(missed, np.log2(rest_total) - np.log2(size), 0.0)


def decode_mixed(mixer: Mixer, decoder, freqs: np.ndarray, candidates: np.ndarray,
                 states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One step's tokens from the LM's frequency rows, decoding the decisions and tokens in the
    order ``mixed_intervals`` codes them; and each token's bits, as ``mixed_intervals`` counts them."""
    n = len(freqs)
    rows = np.arange(n)[:, None]
    valid = candidates >= 0
    f_candidates = np.where(valid, freqs[rows, np.maximum(candidates, 0)], 0).astype(np.int64)
    totals = freqs.sum(axis=1, dtype=np.int64)
    p = mixer.probabilities(states, f_candidates, totals)
    reached, hits = np.zeros_like(valid), np.zeros_like(valid)
    out = np.empty(n, dtype=np.int64)
    for s, (row_p, row_candidates) in enumerate(zip(p.tolist(), candidates.tolist())):
        hit = False
        for i, candidate in enumerate(row_candidates):
            if candidate < 0:
                break  # candidates are packed at the front
            reached[s, i] = True
            if decoder.decode_binary(row_p[i], PROB_ONE):
                hits[s, i], out[s], hit = True, candidate, True
                break
        if not hit:
            out[s] = _decode_rest(decoder, freqs[s], candidates[s])
    mixer.update(reached, hits)
    size = freqs[np.arange(n), out].astype(np.int64)
    return out, _mixed_bits(p, reached, hits, size, totals - f_candidates.sum(axis=1))


def carriers(tokens: np.ndarray, candidates: np.ndarray, states: np.ndarray) -> np.ndarray:
    """Which model carried each token, for explain: -1 the LM alone (no candidate was it), 0 the
    match model (it predicted the token), else the longest n-gram order that had seen it there."""
    hits = candidates == tokens[:, None]
    hit = np.where(hits.any(axis=1), hits.argmax(axis=1), -1)
    chosen = states[np.arange(len(tokens)), np.maximum(hit, 0)]  # (n, CONTEXT_INPUTS)
    seen = chosen[:, :ORDERS] >= 8  # the pair's count is at least 1
    longest = np.where(seen.any(axis=1), ORDERS - np.argmax(seen[:, ::-1], axis=1), -1)
    by_match = (chosen[:, ORDERS] > 0) & (chosen[:, ORDERS] < MATCH_STATES - 1)
    return np.where(hit < 0, -1, np.where(by_match, 0, longest))


CARRIER_NAMES = {-1: "LM", 0: "match", **{k: f"order {k}" for k in range(1, ORDERS + 1)}}


def _decode_rest(decoder, row: np.ndarray, candidates: np.ndarray) -> int:
    rest = row.astype(np.int64, copy=True)
    rest[candidates[candidates >= 0]] = 0  # the candidates are out: it was none of them
    return int(decoder.decode(rest[None])[0])
