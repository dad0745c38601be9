"""Stage 2 contract: a predictor steps B streams in lockstep.

``start(n_streams, n_steps)`` resets every stream for a block of at most
``n_steps`` steps; ``step(tokens)`` takes the previous token of each stream
(``bos_id`` at a chunk's start, int64 array of shape (B,)) and returns the
next token's distribution for every stream, a C-contiguous (B, V) array:
float32 probabilities for the constriction coder, or, for predictors with
``capabilities.integer``, integer frequencies (each >= 1) for the integer coder.
The same sequence of calls must give bit-identical arrays in any process with
the same ``settings()``: that is what lets the decoder replay the encoder.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import FingerprintMismatch
from ..settings import Settings


@dataclass(frozen=True)
class Capabilities:
    # step() gives integer frequencies that are the same on every machine, library and
    # thread count (coded by the integer range coder); False: float32 probabilities
    integer: bool = False
    # teacher_forced_rows() gives, from whole-chunk passes, the very rows stepping gives:
    # the encoder may use it (much faster), the decoder steps
    teacher_forced: bool = False
    # learns from the tokens it codes: every block goes through it, in order (no fallback)
    learns: bool = False


class Predictor(ABC):
    name: str  # how the header names the model ("fast", "smollm2", a path)
    tokenizer = None
    vocab_size: int  # width of a probability row
    default_chunk = 512  # tokens per stream (L)
    default_streams = 64  # lockstep streams per block (B)
    max_chunk: int | None = None
    default_lead = 0  # tokens a block's streams read first (layout.py), where the context leaves room
    shares_leads = False  # whether ``join`` can give streams a lead (exact models' steppers)
    capabilities = Capabilities()

    @property
    def bos_id(self) -> int:
        return self.tokenizer.bos_id

    @property
    @abstractmethod
    def weights_hash(self) -> bytes:
        """Identity of the weights and tokenizer (4 bytes in the header)."""

    def settings(self) -> Settings:
        """Everything besides the weights that changes the probabilities' bits."""
        return Settings()

    def versions(self) -> str:
        """Library versions whose arithmetic the probabilities depend on."""
        return f"numpy {np.__version__}"

    def adopt(self, settings: Settings) -> None:
        """Make this predictor compute like the one that wrote a file, or refuse.
        Subclasses change what they can (thread count, dtype), then call this."""
        diffs = settings.differences(self.settings())
        if diffs:
            raise FingerprintMismatch(f"model settings differ from the file's ({'; '.join(diffs)})")

    def begin_file(self) -> None:
        """Called before each file is coded either way (online models go back to their first weights)."""

    def plan(self, n_streams: int) -> None:
        """Called by the encoder once it knows a file's stream count, before the header is written:
        a predictor may pick settings that change only its speed (a float model's dtype). The
        header records them and the decoder adopts them."""

    def running(self) -> contextlib.AbstractContextManager:
        """Held while a block is coded: process-wide state the predictor needs (torch's thread
        count, TF32 off), put back as it was afterwards, as a library should."""
        return contextlib.nullcontext()

    @abstractmethod
    def start(self, n_streams: int, n_steps: int) -> None: ...

    @abstractmethod
    def step(self, tokens: np.ndarray) -> np.ndarray: ...

    def lead_for(self, chunk: int, asked: int | None = None, streams: int | None = None) -> int:
        """The lead a file of ``chunk``-token chunks takes (layout.py): ``asked``, or by default the
        model's where its context holds a first chunk that long; none on one stream (nothing to
        lead), after ``asked`` is checked."""
        if asked is None:
            fits = not self.max_chunk or chunk + self.default_lead <= self.max_chunk
            return self.default_lead if fits and streams != 1 else 0
        if asked and not self.shares_leads:
            raise ValueError(f"{self.name} cannot share a lead between streams (its numbers depend on the batch)")
        if asked < 0 or (self.max_chunk and chunk + asked > self.max_chunk):
            raise ValueError(f"a lead of {asked} tokens does not fit chunks of {chunk} in the model's context "
                             f"({self.max_chunk})")
        return asked if streams != 1 else 0

    def join(self, n_streams: int) -> None:
        """Streams 1 .. n_streams-1 take a copy of stream 0's context so far (a block's lead,
        layout.Schedule): their next step reads what stream 0's does. Only models that
        ``shares_leads`` (their numbers do not depend on the batch) can: the others take no lead."""
        raise ValueError(f"{self.name} cannot share a lead between streams")

    def stepping_report(self) -> dict:
        """Figures about this file's steps for a decode's --json (a speculative stepper's guesses)."""
        return {}

    def observe(self, coded: np.ndarray, n_active: int) -> None:
        """The tokens just coded for the first ``n_active`` streams (online models learn here)."""

    def teacher_forced_rows(self, chunks: list[np.ndarray], lead: int = 0):
        """With ``capabilities.teacher_forced``: (chunk index, first row, integer frequency rows)
        pieces covering every token of every chunk, in order, from whole-chunk passes; with a
        ``lead``, chunks 1.. are read after chunks[0]'s first ``lead`` tokens (layout.Schedule)."""
        raise NotImplementedError(f"{self.name} has no teacher-forced pass")


def hash_files(paths, extra: bytes = b"") -> bytes:
    digest = hashlib.sha256(extra)
    for path in paths:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.digest()[:4]


MEASURED_LIFETIME_S = 30 * 86400  # a measured choice is measured again after 30 days
CLOSE_MARGIN = 1.15  # ... or after a day, where the loser was within 15 % of the winner
CLOSE_LIFETIME_S = 86400


@dataclass(frozen=True)
class Measured:
    """What a speed measurement chose, and by how much: the loser's time over the winner's (None
    where there is no loser, e.g. a measured cost)."""
    value: object
    margin: float | None = None


def measured_choice(key: str, measure: Callable[[], Measured | object]):
    """A choice that changes only speed (a GEMM kernel, a float dtype, a backend), measured on this
    machine and kept in the lmzip cache's kernels.json with when it was measured and its margin.

    A measurement taken while other work ran can be wrong, so none sticks forever: an entry is
    measured again after MEASURED_LIFETIME_S, or after CLOSE_LIFETIME_S where the options were
    within CLOSE_MARGIN of each other (entries written before lmzip 0.9.0, without a date, at once).
    """
    path = cache_dir() / "kernels.json"
    try:
        choices = json.loads(path.read_text())
    except (OSError, ValueError):
        choices = {}
    entry = choices.get(key)
    if not _still_good(entry):
        got = measure()
        got = got if isinstance(got, Measured) else Measured(got)
        entry = choices[key] = {"value": got.value, "measured": round(time.time()), "margin": got.margin}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(choices, indent=1))
            os.replace(tmp, path)  # another process may write meanwhile: the last one wins, both are right
        except OSError:
            pass  # a read-only cache: measured again next time
    return entry["value"]


def _still_good(entry) -> bool:
    if not isinstance(entry, dict) or "measured" not in entry:
        return False
    age = time.time() - entry["measured"]
    close = entry.get("margin") is not None and entry["margin"] < CLOSE_MARGIN
    return age < (CLOSE_LIFETIME_S if close else MEASURED_LIFETIME_S)


def measured_choices() -> dict[str, dict]:
    """Every measured choice in force on this machine (kernels.json), for ``lmzip --version``."""
    try:
        choices = json.loads((cache_dir() / "kernels.json").read_text())
    except (OSError, ValueError):
        return {}
    return {key: entry for key, entry in choices.items() if _still_good(entry)}


def torch_dispatch() -> str:
    """The vector kernels torch's CPU dispatch picks here and torch's version ("AVX2, torch
    2.13.0+cpu"), found as ATen finds them -- its ATEN_CPU_CAPABILITY override, else the CPU's
    flags -- without importing torch: an integer model on the native backend never needs torch
    (200 MB and ~2 s a start), yet its measured choices name the torch they were measured
    against. It only names a cache entry: a wrong guess costs one measurement, never a byte."""
    import sys

    if "torch" in sys.modules:  # already paid for: ask it
        torch = sys.modules["torch"]
        return f"{torch.backends.cpu.get_cpu_capability()}, torch {torch.__version__}"
    return f"{_aten_capability(_cpu_flags())}, torch {_installed_torch()}"


@functools.cache
def _installed_torch() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return "absent"


@functools.cache  # the CPU does not change while lmzip runs; a key is made for every block
def _cpu_flags() -> set[str] | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def _aten_capability(flags: set[str] | None) -> str:
    """ATen's compute_cpu_capability: ATEN_CPU_CAPABILITY, when it is exactly one of its names, is
    taken as it is (torch does not check it against the CPU); otherwise AVX512 needs avx512vl/bw/dq
    and FMA, AVX2 needs avx2 and FMA. Unknown flags (not Linux): ask torch itself."""
    asked = os.environ.get("ATEN_CPU_CAPABILITY")
    if asked in ("default", "avx2", "avx512"):
        return asked.upper()
    if flags is None:
        import torch

        return torch.backends.cpu.get_cpu_capability()
    if {"avx2", "fma"} <= flags:
        return "AVX512" if {"avx512vl", "avx512bw", "avx512dq"} <= flags else "AVX2"
    return "DEFAULT"


def cache_dir() -> Path:
    root = os.environ.get("LMZIP_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "lmzip")
    return Path(root)


@contextlib.contextmanager
def torch_state(threads: int | None, device: str = "cpu"):
    """torch's thread count (and, on CUDA, TF32 off) while coding; put back afterwards. Here, not
    with the float models: the integer models' torch backend sets the same."""
    import torch

    cuda = device.startswith("cuda")
    before = (torch.get_num_threads(), torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    if threads and threads != before[0]:
        torch.set_num_threads(threads)
    if cuda:  # TF32 would round the products differently from the file's maker
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        if threads and threads != before[0]:
            torch.set_num_threads(before[0])
        if cuda:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before[1:]
