"""Predictors by name: built-ins (smollm2, fast, fast-portable, uniform, order0, order2) or a path."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ModelNotAvailable
from .base import Predictor
from .classical import CLASSICAL

DEFAULT_MODEL = "smollm2"
BUILT_IN = ("smollm2", "fast", "fast-portable", *CLASSICAL)
PORTABLE_OF = {"fast": "fast-portable"}  # what --portable turns a model name into


def load_predictor(spec: str = DEFAULT_MODEL, dtype: str | None = None, device: str | None = None,
                   threads: int | None = None, backend: str | None = None) -> Predictor:
    """The predictor a model spec names, ready to ``start``/``step``.

    ``backend`` (torch or numpy) only applies to portable models, whose numbers
    are the same on either.
    """
    torch_options = {k: v for k, v in {"dtype": dtype, "device": device, "threads": threads}.items() if v}
    if spec in CLASSICAL:
        return CLASSICAL[spec]()
    if spec == "fast-portable":
        from .portable import PORTABLE_DIR, PortablePredictor

        return PortablePredictor(PORTABLE_DIR, name=spec, backend=backend or "torch", threads=threads, device=device)
    if spec == "fast":
        from .own import FAST_DIR, GPTPredictor

        if not (FAST_DIR / "model.safetensors").exists():
            raise ModelNotAvailable(f"the fast model's weights are missing from {FAST_DIR}")
        return GPTPredictor(FAST_DIR, name="fast", **torch_options)
    if spec.startswith("online-"):
        from ..online import OnlinePredictor

        return OnlinePredictor(spec.removeprefix("online-"), **torch_options)
    if spec == "smollm2":
        from .smollm2 import SmolLM2Predictor

        return SmolLM2Predictor(**torch_options)
    return _load_from_path(spec, torch_options, backend)


def _load_from_path(spec: str, torch_options: dict, backend: str | None = None) -> Predictor:
    from .hf import HFPredictor, resolve_hf_dir

    directory = resolve_hf_dir(spec)
    config_path = directory / "config.json"
    if not config_path.exists():
        raise ModelNotAvailable(f"{directory} has no config.json: not a model directory")
    name = str(Path(spec).expanduser().resolve()) if Path(spec).expanduser().is_dir() else spec
    model_type = json.loads(config_path.read_text()).get("model_type")
    if model_type == "lmzip-gpt-int8":
        from .portable import PortablePredictor

        return PortablePredictor(directory, name=name, backend=backend or "torch",
                                 threads=torch_options.get("threads"), device=torch_options.get("device"))
    if model_type == "lmzip-gpt":
        from .own import GPTPredictor

        return GPTPredictor(directory, name=name, **torch_options)
    return HFPredictor(directory, name=name, **torch_options)


__all__ = ["BUILT_IN", "DEFAULT_MODEL", "PORTABLE_OF", "Predictor", "load_predictor"]
