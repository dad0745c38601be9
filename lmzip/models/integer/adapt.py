"""Learning while coding, exactly: a bias on the head's logits that follows the file.

The idea lmzip comes from (J. Rae, "Compression for AGI"): a model trained on the data as it codes
it pays the area under its loss curve, and the decoder replays the very same training. Here what
learns sits after the transformer body, so the body's numbers (and its caches, and compression's
whole-chunk passes) are the model's own: a bias ``b`` on every logit, in steps of the exp table
(1/128 nat). A row's frequencies are the exp table at

    clip(s_v - b_v - min_u (s_u - b_u), 0, last)

where ``s_v`` are the row's steps below its maximum logit as ``IntegerArithmetic.table_index``
computes them (without the clip). After each lockstep step, each row the step coded, in the streams'
order, moves the bias by the cross-entropy's gradient at the logits, ``y - f / F`` (y: 1 for the
coded token; f, F: the row's frequencies and their sum): integer sums and one division rounded
half up, then a decay back to zero by an arithmetic shift. Every machine computes the same integers,
so files decode anywhere. A block starts from a zero bias (blocks stay independent: one that fell
back to xz is never seen by the decoder's model, and workers code blocks apart).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STEP_LIMIT = 1 << 20  # a row's steps below its maximum are clamped here before the bias (int32-safe)
BIAS_LIMIT = 1 << 15  # the bias stays within +-2^15 steps (256 nats)


@dataclass(frozen=True)
class AdaptRecipe:
    """How the bias learns (a file records the recipe that made it, as ``Settings.adapt``)."""
    rate: int  # C: a coded row moves an entry by round(C (y - f / F)) units of 2^-fraction_bits steps
    max_vocab: int  # the widest vocabulary whose int64 sums cannot overflow at this rate (learn)
    fraction_bits: int  # K
    decay_shift: int  # after each step, a -= a >> decay_shift (0: no decay)

    def describe(self) -> str:
        lr = self.rate / (128 * 2 ** self.fraction_bits)
        decay = f", decay 2^-{self.decay_shift} a step" if self.decay_shift else ""
        return f"a bias on the logits, SGD at {lr:.3g} nat a step{decay}"


# recipe 1: SGD at 0.1 nat a step, no decay (chosen on 256 KB of the training corpus's milton.txt:
# 0.03, 0.1, 0.3 saved 1.38, 1.70, 1.42 % of the file; a decay of 2^-10 a step, 1.49; benchmarks/adaptation.py)
ADAPT_RECIPES = {1: AdaptRecipe(rate=838_861, max_vocab=1 << 18, fraction_bits=16, decay_shift=0)}
NEWEST_ADAPT = 1


class HeadBias:
    """A block's bias, in the units the head subtracts (``steps``, int32, shared with the model)."""

    def __init__(self, vocab: int, recipe: AdaptRecipe):
        if vocab > recipe.max_vocab:
            raise ValueError(f"a vocabulary of {vocab:,} is wider than this adaptation recipe takes "
                             f"({recipe.max_vocab:,}): code without --adapt")
        self.recipe = recipe
        self.accumulated = np.zeros(vocab, np.int64)  # fixed point: recipe.fraction_bits fraction bits
        self.steps = np.zeros(vocab, np.int32)  # floor(accumulated / 2^K): what the head subtracts

    def reset(self) -> None:
        self.accumulated[:] = 0
        self.steps[:] = 0

    def learn(self, freqs: np.ndarray, tokens: np.ndarray) -> None:
        """One step's rows (n, vocab) int32, as the head gave them, and the tokens they coded (a
        token beyond the vocabulary, an extra byte id, is no entry's: each only moves down)."""
        recipe, vocab = self.recipe, len(self.accumulated)
        f = freqs[:, :vocab].astype(np.int64)
        # F < (2^24 + 1) V; 2 (y F - f) C + F < 2^63 while 2 V (2^24 + 1) C < 2^63: recipe 1 (C < 2^20)
        # holds for vocabularies to 2^18 (Gemma 3's 262,144); load_directory refuses a larger one
        total = f.sum(axis=1, keepdims=True)
        numerator = f * -recipe.rate
        coded = np.flatnonzero(tokens < vocab)
        numerator[coded, tokens[coded]] += total[coded, 0] * recipe.rate
        numerator *= 2
        numerator += total
        numerator //= 2 * total  # round((y F - f) C / F), half up
        self.accumulated += numerator.sum(axis=0)
        if recipe.decay_shift:
            self.accumulated -= self.accumulated >> recipe.decay_shift
        limit = BIAS_LIMIT << recipe.fraction_bits
        np.clip(self.accumulated, -limit, limit, out=self.accumulated)
        self.steps[:] = self.accumulated >> recipe.fraction_bits


def biased_index(steps: np.ndarray, bias: np.ndarray, last: int) -> np.ndarray:
    """Table indices (n, V) from a row's unclipped steps below its maximum (int64) and the bias."""
    shifted = np.minimum(steps, STEP_LIMIT) - bias
    return np.clip(shifted - shifted.min(axis=-1, keepdims=True), 0, last)
