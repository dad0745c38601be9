"""Stage 2 contract: a predictor steps B streams in lockstep.

``start(n_streams, n_steps)`` resets every stream for a block of at most
``n_steps`` steps; ``step(tokens)`` takes the previous
token of each stream (``bos_id`` at a chunk's start, int64 array of shape (B,))
and returns next-token probabilities as a C-contiguous float32 array (B, V)
(or, for portable predictors, integer frequencies: see ``frequencies``).
The same sequence of calls must give bit-identical arrays in any process with
the same ``settings()``: that is what lets the decoder replay the encoder.
"""

from __future__ import annotations

import hashlib
import os
import platform
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from ..errors import FingerprintMismatch


class Predictor(ABC):
    name: str  # how the header names the model ("fast", "smollm2", a path)
    tokenizer = None
    vocab_size: int  # width of a probability row
    default_chunk = 512  # tokens per stream (L)
    default_streams = 64  # lockstep streams per block (B)
    max_chunk: int | None = None
    # False: step() gives float32 probabilities for the constriction coder. True: int32/int64
    # frequencies (each >= 1) for the integer coder, identical on any machine (portable).
    frequencies = False
    # True: the predictor learns from the tokens it codes (online), so every block must go
    # through it; False: blocks are independent and a block may fall back to stored/xz bytes.
    learns = False

    @property
    def bos_id(self) -> int:
        return self.tokenizer.bos_id

    @property
    @abstractmethod
    def weights_hash(self) -> bytes:
        """Identity of the weights and tokenizer (4 bytes in the header)."""

    def settings(self) -> dict[str, str]:
        """Everything besides the weights that changes the probabilities' bits."""
        return {}

    def versions(self) -> str:
        """Library versions whose arithmetic the probabilities depend on."""
        return f"numpy {np.__version__}"

    def adopt(self, settings: dict[str, str]) -> None:
        """Make this predictor compute like the one that wrote a file, or refuse."""
        mine = self.settings()
        diffs = [f"{k}: file {settings.get(k)!r}, here {mine.get(k)!r}"
                 for k in mine if settings.get(k) != mine.get(k)]
        if diffs:
            raise FingerprintMismatch(f"model settings differ from the file's ({'; '.join(diffs)})")

    def begin_file(self) -> None:
        """Called before each file is coded either way (online models go back to their first weights)."""

    @abstractmethod
    def start(self, n_streams: int, n_steps: int) -> None: ...

    @abstractmethod
    def step(self, tokens: np.ndarray) -> np.ndarray: ...

    def observe(self, coded: np.ndarray, n_active: int) -> None:
        """The tokens just coded for the first ``n_active`` streams (online models learn here)."""


def hash_files(paths, extra: bytes = b"") -> bytes:
    digest = hashlib.sha256(extra)
    for path in paths:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.digest()[:4]


def cache_dir() -> Path:
    root = os.environ.get("LMZIP_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "lmzip")
    return Path(root)


def machine() -> str:
    return platform.machine()
