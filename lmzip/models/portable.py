"""The portable predictor: integer frequencies from intgpt.py, identical on any backend and machine."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ModelNotAvailable
from ..tokenize import load_tokenizer
from .base import Capabilities, Predictor, hash_files
from .intgpt import INTEGER_FORMAT, IntGPT, IntStepper, load_portable
from .intops import BACKENDS, NumpyOps, TorchOps

PORTABLE_DIR = Path(__file__).resolve().parents[1] / "data" / "fast-portable"


class PortablePredictor(Predictor):
    """Integer frequencies from the portable model, identical on any backend and machine."""

    capabilities = Capabilities(integer=True, teacher_forced=True)
    default_streams = 128

    def __init__(self, directory: Path, name: str | None = None, backend: str = "torch",
                 threads: int | None = None, device: str | None = None):
        if backend not in BACKENDS:
            raise ModelNotAvailable(f"unknown backend {backend!r} (use {', '.join(BACKENDS)})")
        self.directory = Path(directory)
        if not (self.directory / "model.safetensors").exists():
            raise ModelNotAvailable(f"no portable model in {self.directory}")
        self.name = name or str(self.directory.resolve())
        weights, config = load_portable(self.directory)
        self.threads, self.device = threads, device or "cpu"
        ops = TorchOps(self.device) if backend == "torch" else NumpyOps()
        self.model = IntGPT(weights, config, ops)
        self.tokenizer = load_tokenizer(self.directory, config, config["vocab_size"])
        self.vocab_size = config["vocab_size"]
        self.default_chunk = self.max_chunk = config["context"]
        self._hash = hash_files([self.directory / "model.safetensors"]
                                + [p for p in [self.directory / "tokenizer.json"] if p.exists()])

    @property
    def weights_hash(self) -> bytes:
        return self._hash

    def versions(self) -> str:
        return f"lmzip integer model {INTEGER_FORMAT}"  # no library: any numpy/torch/BLAS decodes it

    def running(self):
        """torch's thread count as asked (speed only: the integers do not depend on it), TF32 off."""
        if isinstance(self.model.ops, NumpyOps):
            return super().running()
        from .torch_base import torch_state

        return torch_state(self.threads, self.device)

    def start(self, n_streams: int, n_steps: int) -> None:
        self.stepper = IntStepper(self.model, n_streams)

    def step(self, tokens: np.ndarray) -> np.ndarray:
        return self.stepper.step(tokens)

    def coded_intervals(self, chunks: list[np.ndarray], batch: int = 4):
        """Teacher-forced: for each chunk, (low, size, total) of its tokens' coder intervals.

        Exactness makes the whole-sequence pass give the very integers stepping
        gives, so the encoder may use it while the decoder steps.
        """
        for i in range(0, len(chunks), batch):
            group = chunks[i : i + batch]
            T = max(len(c) for c in group)
            idx = np.full((len(group), T), self.bos_id, dtype=np.int64)
            for row, chunk in zip(idx, group):
                row[1 : len(chunk)] = chunk[:-1]
            freqs = self.model.forward(idx)
            for row, chunk in zip(freqs, group):
                n = len(chunk)
                cum = np.cumsum(row[:n], axis=1, dtype=np.int64)
                size = row[np.arange(n), chunk]
                high = cum[np.arange(n), chunk]
                yield high - size, size, cum[:, -1]


def load_fast_portable(**options) -> PortablePredictor:
    return load_directory(PORTABLE_DIR, "fast-portable", **options)


def load_directory(directory: Path, name: str, backend: str | None = None, threads: int | None = None,
                   device: str | None = None, **_) -> PortablePredictor:
    return PortablePredictor(directory, name=name, backend=backend or "torch", threads=threads, device=device)
