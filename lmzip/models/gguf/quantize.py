"""Building an integer model (integer/gpt.py) from a float lmzip GPT: int8 weights, calibrated scales."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..integer.arithmetic import GAIN_BITS, INT8
from ..integer.gpt import PORTABLE_TYPE, RESIDUAL_BITS
from ..integer.tables import exp_table
from .derive import int8_columns


def quantize_gpt(model, calibration: np.ndarray) -> dict[str, np.ndarray]:
    """Integer weights from a float GPT; value scales from a calibration batch (B, T) of token ids."""
    import torch

    state = {k: v.detach().double().numpy() for k, v in model.state_dict().items()}
    cfg = model.cfg
    out: dict[str, np.ndarray] = {"exp_table": exp_table()}
    fixed = 2.0 ** RESIDUAL_BITS
    out["wte.e"] = _int16(np.round(state["wte.weight"] * fixed))
    out["wpe.e"] = _int16(np.round(state["wpe.weight"] * fixed))
    gain = 2.0 ** GAIN_BITS
    value_max = _value_ranges(model, torch.as_tensor(calibration))
    for i in range(cfg.n_layer):
        p = f"blocks.{i}"
        out[f"{p}.norm1.g"] = np.round(state[f"{p}.norm1.weight"] * gain).astype(np.int32)
        out[f"{p}.norm2.g"] = np.round(state[f"{p}.norm2.weight"] * gain).astype(np.int32)
        for name, key in (("qkv", "attn.qkv"), ("proj", "attn.proj"), ("fc", "mlp.fc"), ("mlp", "mlp.proj")):
            w, s = int8_columns(state[f"{p}.{key}.weight"].T)
            out[f"{p}.{name}.w"], out[f"{p}.{name}.s"] = w, s
            out[f"{p}.{name}.sr"] = s * fixed  # straight into residual units
        out[f"{p}.v.s"] = np.maximum(value_max[i], 1e-6) / INT8
    out["norm_f.g"] = np.round(state["norm_f.weight"] * gain).astype(np.int32)
    out["head.w"], out["head.s"] = int8_columns(state["wte.weight"].T)
    return out


def _int16(x: np.ndarray) -> np.ndarray:
    if np.abs(x).max() > 32767:
        raise ValueError("embedding too large for int16 at this fixed-point precision")
    return x.astype(np.int16)


def _value_ranges(model, calibration) -> list[np.ndarray]:
    """Largest |value| per channel per layer over the calibration tokens."""
    import torch

    found = []
    hooks = [block.attn.qkv.register_forward_hook(
        lambda mod, inp, out: found.append(out[..., 2 * model.cfg.n_embd :].abs().amax(dim=(0, 1))))
        for block in model.blocks]
    with torch.no_grad():
        model(calibration)
    for h in hooks:
        h.remove()
    return [f.double().numpy() for f in found]


def save_portable(weights: dict[str, np.ndarray], config: dict, directory: Path) -> None:
    from safetensors.numpy import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: np.ascontiguousarray(v) for k, v in weights.items()}, str(directory / "model.safetensors"))
    (directory / "config.json").write_text(json.dumps({**config, "model_type": PORTABLE_TYPE}, indent=2) + "\n")


def convert_gpt_dir(source: Path, dest: Path, calibration: np.ndarray, note: str = "") -> dict[str, np.ndarray]:
    """Write the portable variant of an lmzip-gpt directory (weights, config, tokenizer)."""
    from ..float.gpt import load_gpt

    source, dest = Path(source), Path(dest)
    model = load_gpt(source)
    weights = quantize_gpt(model, calibration)
    config = json.loads((source / "config.json").read_text())
    keep = ("vocab_size", "context", "n_layer", "n_head", "n_embd", "bos_id")
    meta = {k: config[k] for k in keep if k in config}
    meta["quantized_from"] = note or str(source)
    save_portable(weights, meta, dest)
    if (source / "tokenizer.json").exists():
        (dest / "tokenizer.json").write_text((source / "tokenizer.json").read_text())
    return weights
