"""What ``lmzip models`` lists: every model of the registry, whether it can run here, where it lives,
its size, and whether it codes in integers (files that decode anywhere) or in floats. Nothing is
converted, and weights are only looked at (their files' headers); the one model without weight
files, online-scratch, is made from its seed to count its parameters."""

from __future__ import annotations

import importlib
import importlib.util
import json
import struct
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelNotAvailable

SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # GGUF value types -> bytes
STRING, ARRAY = 8, 9


@dataclass
class Listing:
    name: str
    family: str
    parameters: int | None  # None: a model without weights (the classical ones adapt counts)
    arithmetic: str  # "integer", "float" or "classical"
    where: str
    state: str  # "ready", "converted on first use (about 30 s)", or why it cannot run


def safetensors_parameters(path: Path) -> int:
    """The number of values in a safetensors file, from its JSON header alone."""
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
    return sum(_product(t["shape"]) for name, t in header.items() if name != "__metadata__")


def gguf_parameters(path: Path) -> int:
    return gguf_summary(path)[0]


def gguf_summary(path: Path, wanted: tuple[str, ...] = ()) -> tuple[int, dict[str, str]]:
    """The number of values in a GGUF file's tensors, from its tensor table, and the ``wanted``
    string fields. Not gguf.GGUFReader: it builds every metadata field first (4.6 s for SmolLM2's
    49k-token vocabulary); this skips them."""
    try:
        return _gguf_summary(path, wanted)
    except (struct.error, KeyError, OSError, UnicodeDecodeError) as exc:
        raise ModelNotAvailable(f"{path}: not a readable GGUF file ({type(exc).__name__}: {exc})") from None


def _gguf_summary(path: Path, wanted: tuple[str, ...]) -> tuple[int, dict[str, str]]:
    found = {}
    with open(path, "rb") as f:
        magic, _version, tensors, fields = struct.unpack("<4sIQQ", f.read(24))
        if magic != b"GGUF":
            raise ModelNotAvailable(f"{path} is not a GGUF file")
        for _ in range(fields):
            name = _read_string(f)
            (kind,) = struct.unpack("<I", f.read(4))
            if name in wanted and kind == STRING:
                found[name] = _read_string(f)
            else:
                _skip_value(f, kind)
        total = 0
        for _ in range(tensors):
            _skip_string(f)
            (dims,) = struct.unpack("<I", f.read(4))
            total += _product(struct.unpack(f"<{dims}Q", f.read(8 * dims)))
            f.read(12)  # the type and the offset
        return total, found


def _read_string(f) -> str:
    (length,) = struct.unpack("<Q", f.read(8))
    return f.read(length).decode("utf-8")


def _skip_string(f) -> None:
    (length,) = struct.unpack("<Q", f.read(8))
    f.seek(length, 1)


def _skip_value(f, kind: int) -> None:
    if kind == STRING:
        _skip_string(f)
    elif kind == ARRAY:
        item, count = struct.unpack("<IQ", f.read(12))
        if item in SIZES:
            f.seek(SIZES[item] * count, 1)
        else:
            for _ in range(count):
                _skip_value(f, item)
    else:
        f.seek(SIZES[kind], 1)


def _product(shape) -> int:
    out = 1
    for n in shape:
        out *= int(n)
    return out


def listings() -> list[Listing]:
    from . import MODELS
    from .gguf.files import named_ggufs

    return [describe(name) for name in MODELS] + [describe_gguf(path) for path in named_ggufs()]


def describe_gguf(path: Path) -> Listing:
    """A GGUF of $LMZIP_MODELS: usable by its name (the file's, without .gguf) if lmzip derives it."""
    from .gguf.files import TOKENIZERS, converted_for
    from .gguf.derive import ARCHITECTURES

    keys = ("general.architecture", "tokenizer.ggml.model")
    try:
        parameters, found = gguf_summary(path, keys)
    except ModelNotAvailable as exc:
        return Listing(path.stem, "GGUF", None, "integer", str(path), str(exc))
    arch, tokenizer = (found.get(key) for key in keys)
    if arch not in ARCHITECTURES:
        state = f"not supported: architecture {arch!r}"
    elif tokenizer not in TOKENIZERS:
        state = f"not supported: tokenizer {tokenizer!r}"
    else:
        converted = converted_for(path)
        return Listing(path.stem, f"{arch} (GGUF)", parameters, "integer", str(converted or path),
                       "ready" if converted else "converted on first use")
    return Listing(path.stem, f"{arch} (GGUF)", parameters, "integer", str(path), state)


def describe(name: str) -> Listing:
    """One registry model, as it stands on this machine."""
    from .gguf.files import PACKAGED
    from .float.gpt_predictor import FAST_DIR
    from .integer_predictor import PORTABLE_DIR

    if name in ("uniform", "order0", "order2"):
        return Listing(name, "byte context model", None, "classical", "lmzip/models/classical.py", "ready")
    if name in ("smollm2", "smollm2-float"):
        return _smollm2(name)
    if name in PACKAGED:  # a registered GGUF from a pip package
        return _packaged(name)
    directory = PORTABLE_DIR if name == "fast" else FAST_DIR
    weights = directory / "model.safetensors"
    if name == "online-scratch":
        from . import load_predictor

        model = load_predictor(name, threads=1).model  # a few million seeded weights: quick to make
        return Listing(name, "lmzip GPT, learns while coding", sum(p.numel() for p in model.parameters()), "float",
                       "seeded at start (no weights sent or stored)", "ready")
    family = "lmzip GPT" + (", learns while coding" if name == "online-fast" else "")
    arithmetic = "integer" if name == "fast" else "float"
    network = FAST_DIR / "model.safetensors"  # the float weights: the integer file adds scales and tables
    if not (weights.exists() and network.exists()):
        return Listing(name, family, None, arithmetic, str(weights), "missing from the package: reinstall lmzip")
    return Listing(name, family, safetensors_parameters(network), arithmetic, str(weights), "ready")


def _packaged(name: str) -> Listing:
    """A registered GGUF that a pip package ships (gemma3-270m), listed as describe_gguf lists GGUFs."""
    from .gguf.files import PACKAGED, converted_record

    packaged = PACKAGED[name]
    family = f"{packaged.record.architecture} (GGUF)"
    if importlib.util.find_spec(packaged.module) is None:
        converted = converted_record(packaged.record)
        if converted:  # it loads from the cache all the same (as a decoder does)
            return Listing(name, family, None, "integer", str(converted), "ready (its package is not installed)")
        return Listing(name, family, None, "integer", "-", f"not installed: {packaged.install}")
    path = importlib.import_module(packaged.module).default_output_path()  # where the package assembles it
    if not path.exists():
        return Listing(name, family, None, "integer", str(path), "assembled and converted on first use")
    listing = describe_gguf(path)
    return Listing(name, listing.family, listing.parameters, listing.arithmetic, listing.where, listing.state)


def _smollm2(name: str) -> Listing:
    from .gguf.files import file_sha256
    from .gguf.smollm2 import converted_path, find_gguf

    integer = name == "smollm2"
    try:
        gguf = find_gguf()
    except ModelNotAvailable as exc:
        return Listing(name, "llama (SmolLM2-135M)", None, "integer" if integer else "float", "-", str(exc))
    converted = converted_path(file_sha256(gguf), integer)
    ready = (converted / "weights.hash").exists()
    return Listing(name, "llama (SmolLM2-135M)", gguf_parameters(gguf), "integer" if integer else "float",
                   str(converted if ready else gguf), "ready" if ready else "converted on first use (about 30 s)")
