"""Predictor for any Hugging Face causal LM in a local directory (or the local hub cache).

Eager attention, a fixed dtype, and one KV cache stepped one token per stream:
the decoder repeats exactly the encoder's calls. Never downloads anything.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from ...errors import ModelNotAvailable
from ...tokenize import BPETokenizer
from ..base import hash_files
from .torch_base import TorchPredictor, torch_options


@contextlib.contextmanager
def quiet_transformers():
    """transformers' warnings and progress bars off while loading; its settings put back after."""
    from transformers.utils import logging

    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    tqdm = os.environ.get("TQDM_DISABLE")
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    os.environ["TQDM_DISABLE"] = "1"  # the GGUF reader's own progress bar
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()
        if tqdm is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = tqdm


def resolve_hf_dir(spec: str, built_in: str) -> Path:
    """A local directory, or a model id already in the local Hugging Face cache."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(spec, local_files_only=True))
    except Exception:
        raise ModelNotAvailable(
            f"model {spec!r} is neither a built-in name ({built_in}), "
            "a local directory, a llama .gguf file or one by name in $LMZIP_MODELS, nor in the local Hugging Face "
            "cache (lmzip never downloads)") from None


class HFPredictor(TorchPredictor):
    default_chunk = 1024
    default_streams = 32

    def __init__(self, directory: Path, name: str | None = None, dtype: str | None = None, **kw):
        super().__init__(dtype=dtype or "f32", **kw)
        self.directory = Path(directory)
        self.name = name or str(self.directory.resolve())
        config = json.loads((self.directory / "config.json").read_text())
        tok_path = self.directory / "tokenizer.json"
        if not tok_path.exists():
            raise ModelNotAvailable(f"{self.directory} has no tokenizer.json (a fast byte-level BPE is needed)")
        self._place()
        vocab = self.model.config.vocab_size
        self.set_tokenizer(BPETokenizer.from_file(tok_path, bos_id=self._bos_from(config), id_limit=vocab), vocab)
        limit = getattr(self.model.config, "max_position_embeddings", None) or getattr(
            self.model.config, "n_positions", None)
        self.max_chunk = limit
        if limit:
            self.default_chunk = min(self.default_chunk, limit)
        weight_files = sorted(self.directory.glob("*.safetensors")) or sorted(self.directory.glob("*.bin"))
        self._hash = hash_files(weight_files + [tok_path])

    @staticmethod
    def _bos_from(config: dict) -> int | None:
        bos = config.get("bos_token_id")
        return bos[0] if isinstance(bos, list) else bos

    @property
    def weights_hash(self) -> bytes:
        return self._hash

    def versions(self) -> str:
        import transformers

        return f"{super().versions()} transformers {transformers.__version__}"

    def _place(self) -> None:
        from transformers import AutoModelForCausalLM

        with quiet_transformers():
            self.model = AutoModelForCausalLM.from_pretrained(
                self.directory, attn_implementation="eager", dtype=self.dtype, local_files_only=True
            ).to(self.device).eval()

    @property
    def _new_cache_api(self) -> bool:
        import inspect

        return "cache" in inspect.signature(self.model.forward).parameters

    def start(self, n_streams: int, n_steps: int) -> None:
        self.cache = None
        self.pos = 0

    @torch.inference_mode()
    def step(self, tokens: np.ndarray) -> np.ndarray:
        ids = self.tokens_tensor(tokens)[:, None]
        positions = torch.full_like(ids, self.pos)
        # transformers 5 calls the KV cache `cache`; 4.x called it `past_key_values`
        cache_arg = "cache" if self._new_cache_api else "past_key_values"
        out = self.model(input_ids=ids, position_ids=positions, use_cache=True, **{cache_arg: self.cache})
        self.cache = getattr(out, cache_arg)
        self.pos += 1
        return self.probabilities(out.logits[:, -1])


def load_directory(directory: Path, name: str, **options) -> HFPredictor:
    return HFPredictor(directory, name=name, **torch_options(options))
