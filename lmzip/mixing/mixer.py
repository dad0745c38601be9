"""The mixer: each decision's probability from the LM's and the context models' inputs in the
logistic domain (stretch/squash tables), two learned weight sets, state maps and an APM; all integers."""

from __future__ import annotations

from functools import cache
from typing import NamedTuple

import numpy as np

from .context import CANDIDATES, CONTEXT_INPUTS, MATCH_LENGTHS, MATCH_STATES, NGRAM_STATES, ORDERS


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


class Mixed(NamedTuple):
    """A step's mixing as ``Mixer.update`` learns from it, (n, K, ...) each."""
    inputs: np.ndarray  # the stretched inputs
    sets: np.ndarray  # the two weight sets chosen
    states: np.ndarray  # the context models' states
    each_p: np.ndarray  # what each set alone said
    nearer: np.ndarray  # the APM node trained


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

    def probabilities(self, states: np.ndarray, f_candidates: np.ndarray,
                      totals: np.ndarray) -> tuple[np.ndarray, Mixed]:
        """P(token = candidate i | not an earlier one), (n, K) in 2^-16 units, from the LM's
        frequencies of the candidates (n, K; 0 where none) and totals (n,); and what ``update``
        learns from once the outcomes are known."""
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
        return p, Mixed(inputs, sets, states, each_p, nearer)

    def update(self, mixed: Mixed, reached: np.ndarray, hits: np.ndarray) -> None:
        """Learn from the decisions taken (``reached``, (n, K)) of the step ``mixed`` came from, and
        their outcomes (``hits``)."""
        inputs, sets, states, each_p, nearer = (a[reached] for a in mixed)
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
