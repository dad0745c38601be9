"""Predictor for lmzip's own transformer directories (``model_type: lmzip-gpt``).

Used for the built-in ``fast`` model and for any directory written by
``save_gpt`` (tests build tiny seeded ones).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..tokenize import load_tokenizer
from .base import hash_files
from .gpt import KVStepper, load_gpt
from .torch_base import TorchPredictor

FAST_DIR = Path(__file__).resolve().parents[1] / "data" / "fast"


class GPTPredictor(TorchPredictor):
    default_streams = 128

    def __init__(self, directory: Path, name: str | None = None, dtype: str = "bf16", **kw):
        super().__init__(dtype=dtype, **kw)
        self.directory = Path(directory)
        self.name = name or str(self.directory.resolve())
        config = json.loads((self.directory / "config.json").read_text())
        self.model = self._load()
        self.set_tokenizer(load_tokenizer(self.directory, config, self.model.cfg.vocab_size),
                           self.model.cfg.vocab_size)
        self.default_chunk = self.max_chunk = self.model.cfg.context
        files = [self.directory / "model.safetensors"] + [
            p for p in [self.directory / "tokenizer.json"] if p.exists()]
        self._hash = hash_files(files)
        self._place()

    @property
    def weights_hash(self) -> bytes:
        return self._hash

    def _load(self):
        return load_gpt(self.directory).to(device=self.device, dtype=self.dtype)

    def _place(self) -> None:
        self.model = self._load()  # from the stored weights: never a cast of a cast

    def start(self, n_streams: int, n_steps: int) -> None:
        self.stepper = KVStepper(self.model, n_streams, self.dtype, self.device)

    def step(self, tokens: np.ndarray) -> np.ndarray:
        return self.probabilities(self.stepper.step(self.tokens_tensor(tokens)))
