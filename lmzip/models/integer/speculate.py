"""Speculative steps: a stepper that guesses each stream's next tokens and checks the guesses in the
same pass that computes the row it needs, so that a right guess makes the next step free.

An integer model gives the very same rows however its positions are grouped into passes (a row
at position p depends on the stream's tokens up to p alone), so a row computed ahead under a
guessed token is the row a plain step would compute, whenever the guess was right; a wrong guess
only costs the rows computed for it, which the next pass overwrites. The files do not change: the
encoder need not know the decoder guessed.

The guesses come from a match model over the tokens stepped so far (every stream of the file):
the tokens that followed the last earlier occurrence of the stream's latest ``ORDER`` tokens. How
many to check follows the measured acceptance at each depth and the measured cost of the extra
rows on this machine, so a text that is never guessed right costs next to nothing (one guessed row
every ``EXPLORE`` passes keeps measuring).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

ORDER = 2  # tokens of context a guess matches
MAX_DRAFT = 4  # tokens guessed ahead at most
PRIOR = (1.0, 2.0)  # (right, checked) before any evidence: a depth is tried until it proves useless
EXPLORE = 16  # where guessing does not pay, one guess every 16th pass still measures whether it would


class MatchDrafter:
    """Each stream's history of tokens, and for every ORDER-gram the place that last followed it."""

    def __init__(self):
        self.histories: list[list[int]] = []
        self.base = 0  # history index of the current block's stream 0
        self.followers: dict[tuple[int, ...], tuple[int, int]] = {}  # gram -> (history, index after it)

    def next_block(self, n_streams: int) -> None:
        self.base = len(self.histories)
        self.histories += [[] for _ in range(n_streams)]

    def feed(self, stream: int, token: int) -> None:
        history = self.histories[self.base + stream]
        history.append(token)
        if len(history) > ORDER:
            self.followers[tuple(history[-ORDER - 1 : -1])] = (self.base + stream, len(history) - 1)

    def draft(self, stream: int, n: int) -> list[int]:
        """Up to n guesses of the stream's next tokens."""
        history = self.histories[self.base + stream]
        if n <= 0 or len(history) < ORDER:
            return []
        where = self.followers.get(tuple(history[-ORDER:]))
        if where is None:
            return []
        source, start = where
        return self.histories[source][start : start + n]


@dataclass
class Acceptance:
    """Guesses checked and right at each depth (depth d: the (d+1)-th token guessed ahead, checked
    only when the d before it were right), and every guess computed: what a decode reports."""
    checked: np.ndarray = field(default_factory=lambda: np.zeros(MAX_DRAFT))
    right: np.ndarray = field(default_factory=lambda: np.zeros(MAX_DRAFT))
    drafted: int = 0
    passes: int = 0
    used: bool = False  # a speculative stepper stepped (even if it never found it worth guessing)

    def rates(self) -> np.ndarray:
        return (self.right + PRIOR[0]) / (self.checked + PRIOR[1])

    def expected_extra(self, n: int) -> float:
        """Tokens beyond the first that a pass guessing n tokens ahead is expected to give."""
        return float(np.cumprod(self.rates()[:n]).sum())

    def report(self) -> dict:
        right = int(self.right.sum())
        return {"drafted_tokens": self.drafted, "accepted_tokens": right,
                "acceptance_rate": round(right / self.drafted, 4) if self.drafted else 0.0}


def draft_length(acceptance: Acceptance, row_cost: float) -> int:
    """The number of guesses that maximizes tokens per unit of time: a pass of 1 + n rows a stream
    costs 1 + n * row_cost of a plain step and gives 1 + expected_extra(n) tokens."""
    return max(range(MAX_DRAFT + 1), key=lambda n: (1 + acceptance.expected_extra(n)) / (1 + n * row_cost))


class SpeculativeStepper:
    """A stepper over a rows model (``hidden(streams, positions, tokens)``, ``frequencies(x)``,
    ``length``): a plain stepper's rows, computed fewer times where guesses are right."""

    def __init__(self, rows, n_streams: int, drafter: MatchDrafter, acceptance: Acceptance, row_cost: float):
        self.rows, self.pos = rows, 0
        self.drafter, self.acceptance, self.row_cost = drafter, acceptance, row_cost
        drafter.next_block(n_streams)
        acceptance.used = True
        # per stream: the guessed inputs at positions pos+1, pos+2, ..., the rows computed under
        # them, and how many of them have been met so far
        self.guesses: list[list[int]] = [[] for _ in range(n_streams)]
        self.ahead: list[np.ndarray | None] = [None] * n_streams
        self.depth = [0] * n_streams

    def step(self, tokens: np.ndarray) -> np.ndarray:
        """The first len(tokens) streams' previous tokens -> their rows (as a plain stepper's)."""
        out: list[np.ndarray | None] = [None] * len(tokens)
        missing = []
        for b, token in enumerate(tokens.tolist()):
            self.drafter.feed(b, token)
            out[b] = self._guessed_row(b, token)
            if out[b] is None:
                missing.append(b)
        if missing:
            self._compute(missing, tokens, out)
        self.pos += 1
        return np.stack(out)

    def join(self, n_streams: int) -> None:
        """As the rows model's ``join``: streams 1.. start from stream 0's context (no guesses yet)."""
        self.rows.join(n_streams, self.pos)

    def _guessed_row(self, b: int, token: int) -> np.ndarray | None:
        """The row computed ahead for stream b, if its guess for this position was ``token``."""
        d = self.depth[b]
        if d >= len(self.guesses[b]):
            return None
        self.acceptance.checked[d] += 1
        if self.guesses[b][d] != token:
            self.guesses[b] = []
            return None
        self.acceptance.right[d] += 1
        self.depth[b] += 1
        return self.ahead[b][d]

    def _compute(self, missing: list[int], tokens: np.ndarray, out: list) -> None:
        """One pass: each missing stream's row at this position, and rows ahead under its guesses."""
        t, acceptance = self.pos, self.acceptance
        acceptance.passes += 1
        n_draft = draft_length(acceptance, self.row_cost) or int(acceptance.passes % EXPLORE == 0)
        n_draft = min(n_draft, self.rows.length - 1 - t)
        streams, positions, inputs, starts = [], [], [], []
        for b in missing:
            guesses = self.drafter.draft(b, n_draft)
            starts.append(len(inputs))
            streams += [b] * (1 + len(guesses))
            positions += range(t, t + 1 + len(guesses))
            inputs += [int(tokens[b])] + guesses
            self.guesses[b], self.depth[b] = guesses, 0
            self.acceptance.drafted += len(guesses)
        freqs = self.rows.frequencies(self.rows.hidden(streams, positions, inputs))
        for b, start in zip(missing, starts):
            out[b], self.ahead[b] = freqs[start], freqs[start + 1 : start + 1 + len(self.guesses[b])]


def extra_row_cost(rows_model, n_streams: int, rounds: int = 5) -> float:
    """What one more row a stream costs, as a fraction of a plain step of ``n_streams`` streams:
    passes of n and of n * (1 + MAX_DRAFT) rows, timed in alternation (so that a moment of load
    elsewhere falls on both), the best of ``rounds`` each, after a warm-up."""
    def timer(per_stream: int):
        rows = rows_model.stepper(n_streams, per_stream + 1)
        streams = np.repeat(np.arange(n_streams), per_stream)
        positions = np.tile(np.arange(per_stream), n_streams)
        tokens = np.zeros(len(streams), dtype=np.int64)

        def seconds() -> float:  # each pass redoes positions 0.. of every stream
            start = time.perf_counter()
            rows.frequencies(rows.hidden(streams, positions, tokens))
            return time.perf_counter() - start
        return seconds

    plain, wide = timer(1), timer(1 + MAX_DRAFT)
    plain(), wide()
    best_plain = best_wide = float("inf")
    for _ in range(rounds):
        best_plain, best_wide = min(best_plain, plain()), min(best_wide, wide())
    return max(0.0, (best_wide / best_plain - 1) / MAX_DRAFT)
