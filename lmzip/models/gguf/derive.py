"""A GGUF's tensors -> an integer llama's stored arrays and config (integer/llama.py).

Dequantization in float64 (Q4_1 and Q8_0 here, exactly; other types by the gguf package's numpy
code), column maxima, divisions, round half to even: numpy operations that are exact or correctly
rounded, so any machine derives the very same integers, which the header's weights hash checks.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from struct import error as struct_error

import numpy as np

from ...errors import ModelNotAvailable
from ..integer.arithmetic import GAIN_BITS, INT8
from ..integer.llama import ATTENTION_EXP_ONE, LLAMA_FORMAT, LLAMA_TYPE, RESIDUAL_BITS
from ..integer.tables import exp_table, gelu_gate_table, rope_tables, sigmoid_table

MAX_CONTEXT = 8192  # the longest chunk a level asks for
_LLAMA_LAYER = {f"{name}.weight" for name in ("attn_norm", "ffn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                                              "ffn_gate", "ffn_up", "ffn_down")}
# GGUF general.architecture values derived here -> the tensors of a layer. llama: Llama 2/3, SmolLM,
# Mistral, TinyLlama; qwen2: biases on q/k/v; qwen3: an RMSNorm on each query and key head.
LAYER_TENSORS = {
    "llama": _LLAMA_LAYER,
    "qwen2": _LLAMA_LAYER | {"attn_q.bias", "attn_k.bias", "attn_v.bias"},
    "qwen3": _LLAMA_LAYER | {"attn_q_norm.weight", "attn_k_norm.weight"},
    # gemma3: q/k norms, a norm on each sublayer's output too, GELU (tanh) gates, local layers
    "gemma3": _LLAMA_LAYER | {"attn_q_norm.weight", "attn_k_norm.weight", "post_attention_norm.weight",
                              "post_ffw_norm.weight"},
}
ARCHITECTURES = tuple(LAYER_TENSORS)
INTERLEAVED_ROPE = ("llama",)  # llama.cpp's converter interleaves these q/k rows; the others keep halves
GEMMA3_RESIDUAL_BITS = 8  # Gemma 3 270M's residual reaches ~104,000 (float): +-262,144 at 8 bits
GEMMA3_LOCAL_PATTERN = 6  # gemma3: every 6th layer attends to the whole chunk, the others to a window
GEMMA3_LOCAL_THETA = 10000.0  # the windowed layers' RoPE base (llama.cpp's and transformers' default)


def dequantize(tensor) -> np.ndarray:
    """A GGUF tensor (gguf.GGUFReader's) as float64 (rows, columns): Q4_1, Q8_0 and F32 exactly
    here; any other type by the gguf package's numpy dequantization (float32 arithmetic, the same
    on every machine for one gguf version; the header's weights hash tells another one apart)."""
    kind, data = tensor.tensor_type.name, np.asarray(tensor.data)
    if kind == "F32":
        return data.astype(np.float64)
    rows = data.shape[0]
    if kind not in ("Q4_1", "Q8_0"):
        return _dequantized_by_gguf(tensor, data)
    if kind == "Q4_1":  # blocks of 32: f16 scale, f16 minimum, 16 bytes of 4-bit values (low nibbles first)
        blocks = data.reshape(rows, -1, 20)
        scale = blocks[..., 0:2].copy().view(np.float16).astype(np.float64)
        low = blocks[..., 2:4].copy().view(np.float16).astype(np.float64)
        packed = blocks[..., 4:]
        q = np.concatenate([packed & 0x0F, packed >> 4], axis=-1).astype(np.float64)
        return (q * scale + low).reshape(rows, -1)
    if kind == "Q8_0":  # blocks of 32: f16 scale, 32 int8 values
        blocks = data.reshape(rows, -1, 34)
        scale = blocks[..., 0:2].copy().view(np.float16).astype(np.float64)
        q = blocks[..., 2:].copy().view(np.int8).astype(np.float64)
        return (q * scale).reshape(rows, -1)
    raise AssertionError(kind)


def _dequantized_by_gguf(tensor, data: np.ndarray) -> np.ndarray:
    import gguf

    try:
        values = gguf.quants.dequantize(data, tensor.tensor_type)
    except (NotImplementedError, ValueError, KeyError) as exc:
        raise ModelNotAvailable(f"GGUF tensor {tensor.name}: weight type {tensor.tensor_type.name} is not "
                                f"supported ({exc})") from None
    values = np.asarray(values, dtype=np.float64)
    return values.reshape(data.shape[0], -1) if data.ndim > 1 else values.reshape(-1)


def unpermute_rope(w: np.ndarray, heads: int) -> np.ndarray:
    """Undo llama.cpp's interleaving of q/k rows (its RoPE pairs neighbours; this one halves)."""
    return w.reshape(heads, w.shape[0] // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def int8_columns(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(in, out) float matrix -> int8 and one float64 scale per output column (exact numpy operations)."""
    scale = np.maximum(np.abs(w).max(axis=0), 1e-12).astype(np.float64) / INT8
    return np.clip(np.round(w / scale), -127, 127).astype(np.int8), scale


def field_value(field):
    """A GGUF metadata scalar or string (the reader's parts/data layout, the same in every gguf version)."""
    import gguf

    value = field.parts[field.data[0]]
    if field.types and field.types[0] == gguf.GGUFValueType.STRING:
        return bytes(value).decode("utf-8")
    return value[0]


def read_gguf(path: Path):
    """gguf.GGUFReader of ``path``, or one line on what is wrong with the file."""
    import gguf

    try:
        return gguf.GGUFReader(str(path))
    except (ValueError, OSError, struct_error, IndexError) as exc:
        raise ModelNotAvailable(f"{path}: not a readable GGUF file ({exc})") from None


def gguf_fields(reader) -> dict:
    """The GGUF's metadata scalars and strings (not its tokenizer's lists)."""
    return {name: field_value(f) for name, f in reader.fields.items()
            if not name.startswith("tokenizer.") and len(f.data) == 1}


def convert_gguf(path: Path, reader=None) -> tuple[dict[str, np.ndarray], dict]:
    """Integer weights and config of a GGUF of ARCHITECTURES (``reader``: its gguf.GGUFReader, if
    read already)."""
    reader = reader or read_gguf(path)
    check_supported(path, reader)
    field = gguf_fields(reader)
    tensors = {t.name: t for t in reader.tensors}
    config = gguf_config(field, tensors)
    fixed = float(1 << config.get("residual_bits", RESIDUAL_BITS))
    gemma3 = config["architecture"] == "gemma3"
    out: dict[str, np.ndarray] = {"exp_table": exp_table(), "attention_exp": exp_table(ATTENTION_EXP_ONE)}
    out.update({"gelu_tanh": gelu_gate_table()} if gemma3 else {"sigmoid": sigmoid_table()})
    embedding = dequantize(tensors["token_embd.weight"])  # (vocab, C)
    out["embed.e"] = np.round(embedding * config.get("embedding_scale", 1.0) * fixed).astype(np.int32)
    for i in range(config["num_hidden_layers"]):
        out.update(convert_layer(tensors, config, i, fixed))
    out["norm_f.g"] = gains(tensors["output_norm.weight"])
    head = dequantize(tensors["output.weight"]) if "output.weight" in tensors else embedding  # tied
    out.update(int8_layer("head", head.T, fixed))
    factors = dequantize(tensors["rope_freqs.weight"]) if "rope_freqs.weight" in tensors else None
    out["rope.cos"], out["rope.sin"] = rope_tables(config["rope_theta"], config["head_dim"],
                                                   config["max_position_embeddings"], factors)
    if config.get("local_layers"):
        out["rope_local.cos"], out["rope_local.sin"] = rope_tables(
            config["local_rope_theta"], config["head_dim"], config["max_position_embeddings"])
    for name in [n for n in out if n.endswith((".s", ".sr", ".b", ".hg"))]:
        out[name] = out[name].astype(np.float32)
    return {k: np.ascontiguousarray(v) for k, v in out.items()}, config


def gguf_config(field: dict, tensors: dict) -> dict:
    arch = field["general.architecture"]
    config = {
        "model_type": LLAMA_TYPE, "format": LLAMA_FORMAT, "architecture": arch,
        "num_hidden_layers": int(field[f"{arch}.block_count"]),
        "hidden_size": int(field[f"{arch}.embedding_length"]),
        "intermediate_size": int(field[f"{arch}.feed_forward_length"]),
        "num_attention_heads": int(field[f"{arch}.attention.head_count"]),
        "num_key_value_heads": int(field[f"{arch}.attention.head_count_kv"]),
        "rms_norm_eps": float(np.float32(field[f"{arch}.attention.layer_norm_rms_epsilon"])),
        "rope_theta": float(field[f"{arch}.rope.freq_base"]),
        # RoPE tables as long as the longest chunk a level asks for (SmolLM2's own context: 8,192)
        "max_position_embeddings": min(int(field[f"{arch}.context_length"]), MAX_CONTEXT),
        "vocab_size": int(tensors["token_embd.weight"].data.shape[0]),
        "head_dim": head_size(field),
    }
    return config | (gemma3_config(field, config) if arch == "gemma3" else {})


def gemma3_config(field: dict, config: dict) -> dict:
    """gemma3's windowed layers: all but every 6th attend to the last ``sliding_window`` positions
    only, with their own RoPE base (llama.cpp's gemma3 and transformers' Gemma3 alike); embeddings
    times sqrt(C) (not the head's, though the matrix is the same); a wider residual."""
    pattern = int(field.get("gemma3.attention.sliding_window_pattern", GEMMA3_LOCAL_PATTERN))
    return {"sliding_window": int(field["gemma3.attention.sliding_window"]),
            "local_layers": [i for i in range(config["num_hidden_layers"]) if (i + 1) % pattern],
            "local_rope_theta": float(field.get("gemma3.rope.freq_base_swa", GEMMA3_LOCAL_THETA)),
            "embedding_scale": float(np.sqrt(config["hidden_size"])), "residual_bits": GEMMA3_RESIDUAL_BITS}


def gains(tensor) -> np.ndarray:
    """An RMSNorm's gains as integers of GAIN_BITS fraction bits."""
    return np.round(dequantize(tensor) * float(1 << GAIN_BITS)).astype(np.int32)


def int8_layer(name: str, w: np.ndarray, fixed: float) -> dict[str, np.ndarray]:
    """(in, out) float64 -> the int8 matrix, its column scales, and those in residual units."""
    values, scale = int8_columns(w)
    return {f"{name}.w": values, f"{name}.s": scale, f"{name}.sr": scale * fixed}


def convert_layer(tensors: dict, config: dict, i: int, fixed: float) -> dict[str, np.ndarray]:
    """Layer i's arrays: its norms' gains and int8 matrices, and what its architecture adds."""
    b, p, out = f"blk.{i}", f"layers.{i}", {}

    def rows(name, heads):  # q/k rows in rotate-half order, whichever order the GGUF keeps
        w = dequantize(tensors[name])
        return unpermute_rope(w, heads) if config["architecture"] in INTERLEAVED_ROPE else w

    def matrix(*names):  # GGUF rows are output channels: -> (in, out)
        return np.concatenate([dequantize(tensors[f"{b}.{name}.weight"]) for name in names]).T

    out[f"{p}.norm1.g"], out[f"{p}.norm2.g"] = gains(tensors[f"{b}.attn_norm.weight"]), gains(
        tensors[f"{b}.ffn_norm.weight"])
    qk = [rows(f"{b}.attn_q.weight", config["num_attention_heads"]),
          rows(f"{b}.attn_k.weight", config["num_key_value_heads"])]
    out.update(int8_layer(f"{p}.qkv", np.concatenate(qk + [dequantize(tensors[f"{b}.attn_v.weight"])]).T, fixed))
    out.update(int8_layer(f"{p}.o", matrix("attn_output"), fixed))
    out.update(int8_layer(f"{p}.gate_up", matrix("ffn_gate", "ffn_up"), fixed))
    out.update(int8_layer(f"{p}.down", matrix("ffn_down"), fixed))
    if f"{b}.attn_q.bias" in tensors:  # qwen2 (rows in halves already): added to the GEMM's output
        out[f"{p}.qkv.b"] = np.concatenate([dequantize(tensors[f"{b}.attn_{n}.bias"]) for n in "qkv"])
    float_gains = {"q_norm": "attn_q_norm", "k_norm": "attn_k_norm",  # qwen3, gemma3: every head's
                   "post_attention": "post_attention_norm", "post_ffw": "post_ffw_norm"}  # gemma3 (1 + in GGUF)
    for name, tensor in float_gains.items():
        if f"{b}.{tensor}.weight" in tensors:
            out[f"{p}.{name}.hg"] = dequantize(tensors[f"{b}.{tensor}.weight"])
    return out


def check_supported(path: Path, reader) -> None:
    """One line, exit 3, for a GGUF this derivation would compute wrongly."""
    field = gguf_fields(reader)
    arch = field.get("general.architecture")
    tensors = {t.name for t in reader.tensors}
    if arch not in ARCHITECTURES:
        raise ModelNotAvailable(f"{path.name}: architecture {arch!r} is not supported (lmzip reads "
                                f"{', '.join(ARCHITECTURES)} GGUFs)")
    head_dim = head_size(field)
    for key in (f"{arch}.rope.dimension_count", f"{arch}.attention.value_length"):
        if key in field and int(field[key]) != head_dim:
            raise ModelNotAvailable(f"{path.name}: {key} is {field[key]}, not the head size {head_dim}: "
                                    "not supported")
    capped = sorted(key for key in field if key.endswith("logit_softcapping") and float(field[key]))
    if capped:  # Gemma 2's tanh caps on scores and logits: no table here computes them
        raise ModelNotAvailable(f"{path.name}: {capped[0]} is not supported")
    scaling = field.get(f"{arch}.rope.scaling.type", "none")
    if scaling not in ("none", "") and "rope_freqs.weight" not in tensors:
        raise ModelNotAvailable(f"{path.name}: RoPE scaling {scaling!r} is not supported")
    layer = {name.split(".", 2)[2] for name in tensors if name.startswith("blk.0.")}
    if extra := sorted(layer - LAYER_TENSORS[arch]):
        raise ModelNotAvailable(f"{path.name}: tensors this {arch} derivation does not read ({', '.join(extra)}): "
                                "not supported")
    if missing := sorted(LAYER_TENSORS[arch] - layer):
        raise ModelNotAvailable(f"{path.name}: a {arch} without {', '.join(missing)}: not supported")
    if arch == "gemma3" and "gemma3.attention.sliding_window" not in field:
        raise ModelNotAvailable(f"{path.name}: a gemma3 without gemma3.attention.sliding_window: not supported")


def head_size(field: dict) -> int:
    """A head's width: the GGUF's key length where it gives one (qwen3: 128 with 1,024 channels and
    16 heads), else the channels over the heads."""
    arch = field["general.architecture"]
    key = f"{arch}.attention.key_length"
    return int(field[key]) if key in field else int(field[f"{arch}.embedding_length"]) // int(
        field[f"{arch}.attention.head_count"])


def weights_digest(weights: dict[str, np.ndarray]) -> bytes:
    """SHA-256 of the arrays' names, types, shapes and bytes: independent of any file format."""
    digest = hashlib.sha256()
    for name in sorted(weights):
        a = np.ascontiguousarray(weights[name])
        digest.update(json.dumps([name, a.dtype.str, a.shape]).encode())
        digest.update(a.tobytes())
    return digest.digest()
