"""Between the model and the coder: a match model over the block's history, mixed with the LM.

The language model sees one chunk; a file repeats itself beyond that (names, headers, markup).
The match model finds the latest earlier occurrence of a stream's last ``MIN_MATCH`` tokens in
the block's **history** and predicts the token that followed it. The history at step t is every
token of every stream of the block at steps < t: in lockstep both the encoder and the decoder
know exactly those (``MatchModel`` is fed nothing else), and blocks stay independent of each
other, so they can still be coded in any order, on any worker.

Mixing is coded as two decisions, which costs exactly what linear mixing
``p(x) = (1 - w) p_lm(x) + w [x = predicted]`` costs, without widening the LM's totals:

1. a binary flag "the token is the predicted one", with probability ``(1 - w) p_lm(pred) + w``;
2. if not, the token under the LM's frequencies with the predicted token's taken out.

The weight ``w`` is learned online per match length (gradient steps on the flag's log-loss) and
starts at 0, so with nothing to go on the output is the LM's. Everything is Python integers: the
same bits on every machine. ``MIX_VERSION`` names this recipe in headers.
"""

from __future__ import annotations

import numpy as np

MIX_VERSION = "match1"
MIN_MATCH = 3  # tokens of context that start a match
BUCKETS = 16  # weights by match length 0..15+ (tokens predicted right since the match began)
WEIGHT_ONE = 1 << 12  # w in units of 1/4096
WEIGHT_MAX = WEIGHT_ONE - 64  # the LM keeps at least 1/64 of the mass
PROB_ONE = 1 << 16  # the flag's probability in units of 2^-16
LEARNING_SHIFT = 8  # w moves by gradient / 256 (gradient in WEIGHT_ONE units; tuned on the train corpus)


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
                lengths[s] = min(self.length[s], BUCKETS - 1)
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


class Mixer:
    """The flag's probability from the LM's and the match weight; the weights' online updates."""

    def __init__(self):
        self.weights = [0] * BUCKETS

    def flag_probability(self, bucket: int, lm_frequency: int, lm_total: int) -> int:
        """P(token = predicted) in units of 2^-16, within [1, 2^16 - 1]."""
        p_lm = lm_frequency * PROB_ONE // lm_total
        w = self.weights[bucket]
        p = ((WEIGHT_ONE - w) * p_lm + w * PROB_ONE) // WEIGHT_ONE
        return min(max(p, 1), PROB_ONE - 1)

    def update(self, bucket: int, hit: bool, lm_frequency: int, lm_total: int, p_flag: int) -> None:
        """One gradient step on the flag's log-loss: d/dw log p = (1 - p_lm) / p on a hit, and
        -(1 - p_lm) / (1 - p) on a miss."""
        room = PROB_ONE - lm_frequency * PROB_ONE // lm_total  # (1 - p_lm) in 2^-16 units
        gradient = room * WEIGHT_ONE // (p_flag if hit else PROB_ONE - p_flag)
        w = self.weights[bucket] + ((gradient if hit else -gradient) >> LEARNING_SHIFT)
        self.weights[bucket] = min(max(w, 0), WEIGHT_MAX)


def match_grid(chunks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The encoder's view: every position's prediction and match length, (B, T) each (-1: none).
    They depend on the tokens alone, so the encoder, who has them all, can know them in advance;
    they are computed by the very ``MatchModel`` the decoder runs step by step."""
    lengths = [len(c) for c in chunks]
    predicted = np.full((len(chunks), max(lengths)), -1, dtype=np.int64)
    buckets = np.zeros_like(predicted)
    match = MatchModel(len(chunks))
    for t in range(max(lengths)):
        active = sum(n > t for n in lengths)  # chunks come longest first
        predicted[:active, t], buckets[:active, t] = match.predict(t, active)
        match.update(t, np.array([c[t] for c in chunks[:active]], dtype=np.int64))
    return predicted, buckets


def mixed_intervals(mixer: Mixer, tokens, low, size, total, f_pred, predicted, buckets):
    """One step's coder intervals (low, size, total lists, in coding order) for tokens whose LM
    intervals are given, with the match flags between them; also the bits of each token."""
    lows, sizes, totals, bits = [], [], [], []
    for x, lo, sz, tot, fp, pred, b in zip(*(np.asarray(a).tolist() for a in
                                            (tokens, low, size, total, f_pred, predicted, buckets))):
        if pred < 0:
            lows.append(lo), sizes.append(sz), totals.append(tot)
            bits.append(_log2(tot) - _log2(sz))
            continue
        p = mixer.flag_probability(b, fp, tot)
        hit = x == pred
        mixer.update(b, hit, fp, tot, p)
        lows.append(0 if hit else p), sizes.append(p if hit else PROB_ONE - p), totals.append(PROB_ONE)
        if hit:
            bits.append(16 - _log2(p))
            continue
        lows.append(lo - (fp if pred < x else 0)), sizes.append(sz), totals.append(tot - fp)
        bits.append(16 - _log2(PROB_ONE - p) + _log2(tot - fp) - _log2(sz))
    return lows, sizes, totals, bits


def decode_mixed(mixer: Mixer, decoder, freqs: np.ndarray, predicted: np.ndarray, buckets: np.ndarray) -> np.ndarray:
    """One step's tokens from the LM's frequency rows and the match predictions, decoding the
    flags and tokens in the order ``mixed_intervals`` codes them."""
    out = np.empty(len(freqs), dtype=np.int64)
    for i, (row, pred, b) in enumerate(zip(freqs, predicted.tolist(), buckets.tolist())):
        if pred < 0:
            out[i] = decoder.decode(row[None])[0]
            continue
        total, fp = int(row.sum(dtype=np.int64)), int(row[pred])
        p = mixer.flag_probability(b, fp, total)
        hit = bool(decoder.decode(np.array([[p, PROB_ONE - p]], dtype=np.int64))[0] == 0)
        mixer.update(b, hit, fp, total, p)
        if hit:
            out[i] = pred
            continue
        rest = row.astype(np.int64, copy=True)
        rest[pred] = 0  # the predicted token is out: it was not this one
        out[i] = decoder.decode(rest[None])[0]
    return out


def _log2(n: int) -> float:
    return float(np.log2(n))
