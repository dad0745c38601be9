"""Attention helpers shared by the steppers (gpt.py, llama.py)."""

from __future__ import annotations

import torch

# Stepping attends over the cache rounded up to a multiple of this many positions
# (later ones masked). A shape that changed every step made oneDNN build and keep
# a new bf16 kernel per step: steps slowed 3x and memory grew without bound.
ATTENTION_BUCKET = 128


def attention_span(pos: int, length: int) -> int:
    """How many cache positions a step at ``pos`` attends over (a bucket boundary)."""
    return min(length, (pos // ATTENTION_BUCKET + 1) * ATTENTION_BUCKET)


def causal_row(pos: int, span: int, dtype, device) -> torch.Tensor:
    """Additive mask (1, span) over the cache positions: 0 up to ``pos``, -inf after."""
    row = torch.zeros(1, span, dtype=dtype, device=device)
    row[:, pos + 1 :] = float("-inf")
    return row
