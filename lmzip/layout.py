"""Who codes which token when: a file's tokens cut into chunks of L tokens, chunks grouped into
blocks of up to B streams, and the streams still coding at each step of a block.

Everything here follows from (number of tokens, L, B) alone, which the header stores: the encoder,
the decoder and the container derive the same layout, so it is never written down.
"""

from __future__ import annotations

import numpy as np


def chunk_lengths(n_tokens: int, chunk: int) -> list[int]:
    full, rest = divmod(n_tokens, chunk)
    return [chunk] * full + ([rest] if rest else [])


def block_layout(n_tokens: int, chunk: int, streams: int) -> list[list[int]]:
    """Chunk lengths of each block: full chunks first, the short last chunk last."""
    lengths = chunk_lengths(n_tokens, chunk)
    return [lengths[i : i + streams] for i in range(0, len(lengths), streams)]


def active_streams(lengths: np.ndarray, t: int) -> int:
    """How many of a block's streams still code a token at step t (its chunks, longest first, are
    the first ones)."""
    return int(np.count_nonzero(lengths > t))


def padded_grid(chunks: list[np.ndarray]) -> np.ndarray:
    """A block's chunks as one (B, longest) array, zeros after each chunk's end."""
    grid = np.zeros((len(chunks), max(len(c) for c in chunks)), dtype=np.int64)
    for row, chunk in zip(grid, chunks):
        row[: len(chunk)] = chunk
    return grid
