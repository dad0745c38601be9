"""Who codes which token when: a file's tokens cut into chunks of L tokens, chunks grouped into
blocks of up to B streams, and the streams still coding at each step of a block.

With a lead of P tokens, a block's first chunk is P tokens longer, and its other streams read those
first P tokens before their own chunk: a chunk is then no longer coded from an empty context, at
the cost of P steps in which the first stream codes alone. The other streams join it after its P
steps, each with a copy of its context (the same tokens at the same positions: an exact model
computes the same cache for each), so every stream sits at the same position at every step.

Everything here follows from (number of tokens, L, B, P) alone, which the header stores: the
encoder, the decoder and the container derive the same layout, so it is never written down.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np


def block_layout(n_tokens: int, chunk: int, streams: int, lead: int = 0) -> list[list[int]]:
    """Chunk lengths of each block: the first chunk holds the lead too, the short last chunk last."""
    blocks, left = [], n_tokens
    while left:
        lengths = [min(left, chunk + lead)]
        left -= lengths[0]
        while left and len(lengths) < streams:
            lengths.append(min(left, chunk))
            left -= lengths[-1]
        blocks.append(lengths)
    return blocks


@dataclass(frozen=True)
class FileLayout:
    """A file's blocks, computed once from (tokens, L, B, P): what the encoder plans, splits and
    counts progress by."""

    blocks: tuple[tuple[int, ...], ...]  # each block's chunk lengths (block_layout)

    @classmethod
    def of(cls, n_tokens: int, chunk: int, streams: int, lead: int = 0) -> FileLayout:
        return cls(tuple(map(tuple, block_layout(n_tokens, chunk, streams, lead))))

    @property
    def first_block_streams(self) -> int:
        """How many streams the file's first block has (at least one)."""
        return len(self.blocks[0]) if self.blocks else 1

    def block_tokens(self) -> list[int]:
        return [sum(lengths) for lengths in self.blocks]

    def split(self, ids: np.ndarray) -> Iterator[list[np.ndarray]]:
        """``ids`` cut into each block's chunks (views, no copies)."""
        start = 0
        for lengths in self.blocks:
            chunks = []
            for n in lengths:
                chunks.append(ids[start : start + n])
                start += n
            yield chunks


@dataclass(frozen=True)
class Schedule:
    """When each of a block's streams codes: stream s codes its chunk's tokens at steps
    ``starts[s]`` .. ``ends[s] - 1``, one a step; stream 0 starts at once, the others after the lead.
    At any step the streams coding are the first ones (``active``): later streams start no earlier
    and end no later."""

    starts: np.ndarray
    ends: np.ndarray
    lead: int  # the step at which streams 1.. join stream 0 (0: no lead, all start together)

    @classmethod
    def of(cls, lengths: list[int], lead: int = 0) -> "Schedule":
        lead = lead if len(lengths) > 1 else 0
        starts = np.array([0] + [lead] * (len(lengths) - 1), dtype=np.int64)
        ends = starts + np.asarray(lengths, dtype=np.int64)
        if np.any(np.diff(ends) > 0) or (lead and lengths[0] <= lead):
            raise ValueError(f"chunk lengths {lengths} do not fit a block with lead {lead}")
        return cls(starts, ends, lead)

    @property
    def n_streams(self) -> int:
        return len(self.starts)

    @property
    def n_steps(self) -> int:
        return int(self.ends.max())

    @property
    def lengths(self) -> np.ndarray:
        return self.ends - self.starts

    def active(self, t: int) -> int:
        """How many streams code a token at step t (the first ones)."""
        return int(np.count_nonzero((self.starts <= t) & (self.ends > t)))

    def joins(self, t: int) -> bool:
        """Whether streams 1.. join stream 0's context at step t."""
        return bool(self.lead) and t == self.lead

    def grid(self, chunks: list[np.ndarray]) -> np.ndarray:
        """The chunks as one (B, steps) array, each token at the step that codes it, zeros elsewhere."""
        grid = np.zeros((len(chunks), self.n_steps), dtype=np.int64)
        for row, chunk, start in zip(grid, chunks, self.starts):
            row[start : start + len(chunk)] = chunk
        return grid

    def chunks(self, grid: np.ndarray) -> list[np.ndarray]:
        """``grid``'s chunks back (the inverse of ``grid``)."""
        return [grid[s, start:end] for s, (start, end) in enumerate(zip(self.starts, self.ends))]

    def coded(self) -> np.ndarray:
        """(B, steps) booleans: where a stream codes a token."""
        steps = np.arange(self.n_steps)
        return (steps >= self.starts[:, None]) & (steps < self.ends[:, None])
