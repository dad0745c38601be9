"""Predictor for lmzip's own transformer directories (``model_type: lmzip-gpt``).

Used for the built-in float ``fast`` model and for any directory written by
``save_gpt`` (tests build tiny seeded ones).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ...errors import ModelNotAvailable
from ...tokenize import load_tokenizer
from ..base import hash_files
from .gpt import KVStepper, load_gpt
from .torch_base import TorchPredictor, torch_options

FAST_DIR = Path(__file__).resolve().parents[2] / "data" / "fast"


class GPTPredictor(TorchPredictor):
    default_streams = 128

    def __init__(self, directory: Path, name: str | None = None, dtype: str | None = None, **kw):
        super().__init__(dtype=dtype, **kw)
        self.directory = Path(directory)
        self.name = name or str(self.directory.resolve())
        config = json.loads((self.directory / "config.json").read_text())
        self._place()
        self.set_tokenizer(load_tokenizer(self.directory, config, self.model.cfg.vocab_size),
                           self.model.cfg.vocab_size)
        self.default_chunk = self.max_chunk = self.model.cfg.context
        files = [self.directory / "model.safetensors"] + [
            p for p in [self.directory / "tokenizer.json"] if p.exists()]
        self._hash = hash_files(files)

    @property
    def weights_hash(self) -> bytes:
        return self._hash

    def _place(self) -> None:
        # from the stored weights: never a cast of a cast
        self.model = load_gpt(self.directory).to(device=self.device, dtype=self.dtype)

    def start(self, n_streams: int, n_steps: int) -> None:
        self.stepper = KVStepper(self.model, n_streams, self.dtype, self.device)

    def step(self, tokens: np.ndarray) -> np.ndarray:
        return self.probabilities(self.stepper.step(self.tokens_tensor(tokens)))


def load_fast(**options) -> GPTPredictor:
    if not (FAST_DIR / "model.safetensors").exists():
        raise ModelNotAvailable(f"the fast model's weights are missing from {FAST_DIR}")
    return GPTPredictor(FAST_DIR, name="fast-float", **torch_options(options))


def load_directory(directory: Path, name: str, **options) -> GPTPredictor:
    return GPTPredictor(directory, name=name, **torch_options(options))

