"""Coding a step's mixed decisions: the coder intervals of known tokens (encoding), the tokens
from a decoder (decoding), both in one order and both counting each token's bits."""

from __future__ import annotations

import numpy as np

from .context import CANDIDATES, MATCH_STATES, ORDERS
from .mixer import PROB_BITS, PROB_ONE, Mixer


def candidate_frequencies(freqs: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Each row's frequencies of the tokens the context models propose ((n, K) ids, -1 for none:
    0): the LM's opinion of each proposal, which the mixer weighs."""
    rows = np.arange(len(freqs))
    return np.where(candidates >= 0, freqs[rows[:, None], np.maximum(candidates, 0)], 0).astype(np.int64)


def mixed_intervals(mixer: Mixer, tokens, low, size, total, f_candidates, candidates, states):
    """One step's coder intervals (lows, sizes, totals arrays, in coding order) for tokens (n,)
    whose LM intervals are given, with the candidates' decisions before them; and each token's bits."""
    tokens, low, size, total = (np.asarray(a, dtype=np.int64) for a in (tokens, low, size, total))
    f_candidates = np.where(candidates >= 0, f_candidates, 0)
    p, mixed = mixer.probabilities(states, f_candidates, total)
    valid = candidates >= 0
    hits = valid & (candidates == tokens[:, None])
    hit_at = np.where(hits.any(axis=1), hits.argmax(axis=1), CANDIDATES)
    reached = valid & (np.arange(CANDIDATES) <= hit_at[:, None])
    mixer.update(mixed, reached, hits)
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
    valid = candidates >= 0
    f_candidates = candidate_frequencies(freqs, candidates)
    totals = freqs.sum(axis=1, dtype=np.int64)
    p, mixed = mixer.probabilities(states, f_candidates, totals)
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
    mixer.update(mixed, reached, hits)
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
