"""The llama family in integer-exact arithmetic: the forward pass, the stepper, the conversion.

One forward pass for the GGUF architectures of ``LAYER_TENSORS``: ``llama`` (SmolLM2, the default;
Llama 2/3, Mistral, TinyLlama), ``qwen2`` (biases on q/k/v), ``qwen3`` (an RMSNorm on each query and
key head) and ``gemma3`` (those norms, a norm on each sublayer's output before it joins the residual,
GELU gates, windowed layers with their own RoPE base, embeddings times sqrt(C)). What an
architecture adds is found by its arrays' names (``qkv.b``, ``q_norm.hg``, ``post_attention.hg``,
``gelu_tanh``, ``rope_local.*``) and its config (``sliding_window``, ``local_layers``).

The same rules as intgpt.py (read its docstring first): int8 weights with one
scale per output column, int8 activations with one scale per row, exact
integer GEMMs, a fixed-point residual stream, exp only through a stored
table, elementwise float operations one IEEE rounding at a time. What a llama
adds, and how it stays exact:

- **Massive activations.** SmolLM2's residual stream reaches ~23,000 in a few
  channels (Gemma 3 270M's ~104,000). The residual keeps ``RESIDUAL_BITS`` = 10
  fraction bits (Gemma 3: 8) and is clipped to +-2^26 units (+-2^16 real; Gemma 3:
  +-2^18), so every square is exact in float64; the squares are
  floored to multiples of 2^SQUARE_SHIFT before they are summed, so the sum of
  a row stays below 2^53 and is exact in any order.
- **RoPE.** cos/sin tables (float32) computed once from exact integer
  rotations (Python integers, 100 fraction bits), never by libm, so every
  machine derives the same tables.
- **SwiGLU.** silu(g) = g * sigmoid(g), sigmoid from a stored float32 table
  indexed by round(256 g), clipped to [-16, 16].
- **Grouped-query attention** by broadcasting: queries (B, KV, G, T, d)
  against keys (B, KV, 1, S, d). Values are int8 per (token, KV head); their
  scales enter the integer attention weights as ratios to the largest value
  scale seen so far (a running maximum, so stepping and whole-chunk passes see
  the same one). Weights sum to at most 2^17 (long contexts keep resolution),
  and 2^17 * 127 < 2^24 keeps the value GEMM exact.
- **The down projection** has a 1,536-wide inner dimension: its float32 GEMM
  is split in two exact halves added in float64 (an int32 GEMM needs no split).
- **Norms of float32 rows** (q/k heads, Gemma 3's sublayer outputs): the mean
  square comes from a fixed-point copy of the row (values <= 2^15), whose
  squares sum to the same integer in any order; one float32 factor a row.
- **Windows** (Gemma 3): a row of a windowed layer sees its last 512 positions.
  Whole-chunk passes mask the others (they weigh exactly 0); steps and the
  native code leave them out: the same integers.

Weights are derived from the GGUF (``convert_gguf``) by numpy operations that
are exact or correctly rounded (Q4_1/Q8_0 dequantization in float64, column
maxima, divisions, round half to even), and the tables by Python integers and
``decimal``: any machine derives the very same integers, which the header's
hash then checks.
"""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal, localcontext
from pathlib import Path
from struct import error as struct_error

import numpy as np

from ..errors import ModelNotAvailable
from .intgpt import EXP_STEPS_PER_NAT, INT8, IntegerArithmetic, exp_table

LLAMA_TYPE = "lmzip-llama-int8"
LLAMA_FORMAT = 1  # bump when the derived weights change
# The forward pass's recipes over the same derived weights. A file records the recipe that made it
# (Settings.recipe; none: 1) and decodes with it forever; new files take the newest.
RECIPES = {1: "int8 rows before every product",
           2: "wide rows (integers to 127 * 128) after each norm and in the MLP's hidden row, before the "
              "q/k/v, gate/up, down and head products: a third of the integer cost over float"}
NEWEST_RECIPE = 2
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
RESIDUAL_BITS = 10  # fraction bits of the residual stream (a config's "residual_bits" where it differs)
RESIDUAL_LIMIT = float(1 << 26)  # the residual's clip, in its units: +-65,536 real at 10 fraction bits
GEMMA3_RESIDUAL_BITS = 8  # Gemma 3 270M's residual reaches ~104,000 (float): +-262,144 at 8 bits
SQUARE_SHIFT = 10  # squares (< 2^52) floored to multiples of 2^10: a row of 576 sums below 2^53
GAIN_BITS = 12
ATTENTION_ONE = 1 << 17
ATTENTION_EXP_ONE = 1 << 20  # exp(0) in the attention's table: sums of 16 stay exact in float32
SUM_PIECE = 16  # 16 * 2^20 = 2^24
SIGMOID_STEPS = 256  # table entries per unit of the gate
SIGMOID_RANGE = 16  # gates beyond +-16 use the table's ends (sigmoid within 1.2e-7 of 0 or 1)
QUERY_BLOCK = 256  # query rows per attention pass in whole-chunk passes (speed only)
EXACT_INNER = 1024  # 127 * 127 * 1024 < 2^24: widest exact float32 GEMM of int8s
FLOAT_NORM_ONE = 32768.0  # a float32 row's mean square from values of <= 2^15: squares sum exactly
GEMMA3_LOCAL_PATTERN = 6  # gemma3: every 6th layer attends to the whole chunk, the others to a window
GEMMA3_LOCAL_THETA = 10000.0  # the windowed layers' RoPE base (llama.cpp's and transformers' default)


# -- tables computed exactly, once --------------------------------------------------

def sigmoid_table() -> np.ndarray:
    """sigmoid(i / 256) for i in [-4096, 4096], float32, from ``decimal``."""
    return _gate_table(lambda x: x)


def gelu_gate_table() -> np.ndarray:
    """The GELU (tanh) gate at i / 256: gelu(x) = x * sigmoid(2 sqrt(2/pi) (x + 0.044715 x^3)), indexed
    as sigmoid_table is."""
    root = (2 / Decimal(_PI)).sqrt()
    return _gate_table(lambda x: 2 * root * (x + Decimal("0.044715") * x ** 3))


_PI = "3.14159265358979323846264338327950288419716939937510"


def _gate_table(argument) -> np.ndarray:
    """sigmoid(argument(i / 256)) for i in [-4096, 4096], float32: ``decimal`` at 40 digits, then
    float64 and float32 (both roundings IEEE's)."""
    n = SIGMOID_RANGE * SIGMOID_STEPS
    with localcontext() as ctx:
        ctx.prec = 40
        values = [float(1 / (1 + (-argument(Decimal(i) / SIGMOID_STEPS)).exp())) for i in range(-n, n + 1)]
    return np.array(values, dtype=np.float32)


def _cos_sin(angle: Decimal, one: int) -> tuple[int, int]:
    """cos and sin of a small angle as integers scaled by ``one`` (Taylor series in decimal)."""
    cos, sin, term, k = Decimal(0), Decimal(0), Decimal(1), 0
    while abs(term) > Decimal(10) ** -45:
        if k % 2 == 0:
            cos += term if k % 4 == 0 else -term
        else:
            sin += term if k % 4 == 1 else -term
        k += 1
        term = term * angle / k
    return int((cos * one).to_integral_value()), int((sin * one).to_integral_value())


def rope_tables(theta: float, head_dim: int, length: int,
                factors: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin (length, head_dim) float32 in rotate-half layout, position p, frequency
    theta^(-2i/d) (divided by ``factors[i]`` where a GGUF gives them: Llama 3.1's long-context
    scaling): exact integer rotations by each frequency's unit step."""
    bits = 100
    one = 1 << bits
    half = head_dim // 2
    cos, sin = np.empty((length, half)), np.empty((length, half))
    with localcontext() as ctx:
        ctx.prec = 50
        log_theta = Decimal(repr(theta)).ln()
        for i in range(half):
            angle = (-log_theta * 2 * i / head_dim).exp()
            if factors is not None:
                angle /= Decimal(repr(float(factors[i])))
            c, s = _cos_sin(angle, one)
            x, y = one, 0
            for p in range(length):
                cos[p, i], sin[p, i] = x / one, y / one  # int / int: correctly rounded
                x, y = (x * c - y * s) >> bits, (x * s + y * c) >> bits
    cos, sin = cos.astype(np.float32), sin.astype(np.float32)
    return np.concatenate([cos, cos], axis=1), np.concatenate([sin, sin], axis=1)


def runtime_arrays(weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The stored arrays in the types the forward pass computes with (int8 weights, which each
    backend turns into its GEMM operand; float64 gains, int32 embeddings), converted once: backends
    built from the same result share its memory."""
    out = {}
    for name, value in weights.items():
        if name.endswith(".w"):
            out[name] = np.asarray(value, dtype=np.int8)
        elif name.endswith((".s", ".sr", ".b", ".hg", ".cos", ".sin")) or name in ("sigmoid", "gelu_tanh",
                                                                                   "attention_exp"):
            out[name] = np.asarray(value, dtype=np.float32)
        elif name == "embed.e":  # int16 where it fits (SmolLM2: |e| <= 2,008): half of 113 MB
            fits = -(1 << 15) < value.min(initial=0) and value.max(initial=0) < 1 << 15  # no |e| copy: 113 MB
            out[name] = np.asarray(value, dtype=np.int16 if fits else np.int32)
        elif name == "exp_table":
            out[name] = value
        else:
            out[name] = np.asarray(value, dtype=np.float64)  # norm gains
    return out


def query_blocks(T: int, size: int = QUERY_BLOCK) -> list[tuple[int, int]]:
    return [(r0, min(T, r0 + size)) for r0 in range(0, T, size)]


# -- the forward pass -----------------------------------------------------------------

class IntLlama(IntegerArithmetic):
    gain_bits = GAIN_BITS
    max_exact_inner = EXACT_INNER

    def __init__(self, weights: dict[str, np.ndarray], config: dict, ops):
        self.cfg, self.ops = config, ops
        self.n_layer = config["num_hidden_layers"]
        self.n_head, self.n_kv = config["num_attention_heads"], config["num_key_value_heads"]
        self.head_dim = config.get("head_dim") or config["hidden_size"] // self.n_head
        self.group = self.n_head // self.n_kv
        self.context = config["max_position_embeddings"]
        self.residual_bits = int(config.get("residual_bits", RESIDUAL_BITS))
        self.norm_eps = float(config["rms_norm_eps"]) * 4.0 ** self.residual_bits
        self.float_norm_eps = float(config["rms_norm_eps"])  # q/k heads and sublayer outputs: real units
        self.window = int(config.get("sliding_window", 0))  # 0: every layer sees the whole chunk
        self.local_layers = frozenset(config.get("local_layers", ()))
        self.w = {}
        for name, value in runtime_arrays(weights).items():
            if name.endswith(".w"):
                self.w[name] = self.split_weight(value)
            elif value.dtype == np.float32:
                self.w[name] = ops.array(value, "f32")
            elif value.dtype == np.int32:
                self.w[name] = ops.array(value, "i32")
            elif value.dtype == np.int16:
                self.w[name] = ops.array(value, "i16")
            else:
                self.w[name] = ops.array(value, "f64")
        self.set_exp_table(weights["exp_table"])
        self.w.pop("exp_table")
        self.attention_exp = self.w.pop("attention_exp")  # float32 integers <= 2^20
        self.attention_last = float(len(weights["attention_exp"]) - 1)
        self.attention_scale = float(np.float32(1.0 / np.sqrt(self.head_dim)))
        self.gate_table = self.w["gelu_tanh"] if "gelu_tanh" in self.w else self.w["sigmoid"]
        self.use_recipe(NEWEST_RECIPE)

    def use_recipe(self, recipe: int) -> None:
        """Compute by ``recipe`` of RECIPES from now on (the weights are the same for all)."""
        if recipe not in RECIPES:
            raise ValueError(f"unknown integer llama recipe {recipe}")
        self.recipe, self.wide_rows = recipe, recipe >= 2

    def mean_square(self, x):
        ops = self.ops
        squares = ops.floor_(x * x * (1.0 / (1 << SQUARE_SHIFT)))  # exact: a power of two, then floor
        return ops.sum(squares) * float(1 << SQUARE_SHIFT) / x.shape[-1]

    def exact_row_sums(self, weights):
        """float64 row sums of float32 integers <= 2^20: float32 sums of 16 (exact), then float64."""
        ops = self.ops
        n = weights.shape[-1] // SUM_PIECE * SUM_PIECE
        total = ops.f64(ops.sum(weights[..., n:]))
        if n:
            pieces = ops.sum(weights[..., :n].reshape(*weights.shape[:-1], n // SUM_PIECE, SUM_PIECE))
            total += ops.sum(ops.f64(pieces.reshape(*weights.shape[:-1], n // SUM_PIECE)))
        return total

    def embed(self, tokens):
        return self.ops.f64(self.w["embed.e"][tokens])

    def add_clipped(self, x, values, scale, name, wide: bool = False):
        return self.ops.clip_(self.add_residual(x, values, scale, name, wide), -RESIDUAL_LIMIT, RESIDUAL_LIMIT)

    def float_norm(self, x, gain):
        """RMSNorm of float32 rows, times their gain (qwen3's and gemma3's q/k heads, gemma3's
        sublayer outputs). The mean square comes from a fixed-point copy of each row (|values| <=
        2^15), whose squares sum to the same integer in any order; then float64, then one float32
        factor a row."""
        ops = self.ops
        amax = ops.clip(ops.amax(abs(x)), 1e-30, None)
        fixed = ops.f64(ops.round_(x * ops.reciprocal(amax, FLOAT_NORM_ONE)))
        unit = ops.f64(amax) * (1.0 / FLOAT_NORM_ONE)
        mean_square = ops.sum(fixed * fixed) * (unit * unit) / x.shape[-1]
        out = x * ops.f32(ops.reciprocal(ops.sqrt(mean_square + self.float_norm_eps), 1.0))
        out *= gain
        return out

    def add_output(self, x, values, scale, name, post_norm, wide: bool = False):
        """x + a sublayer's output in residual units, clipped; normed first where the model norms it
        (gemma3's post-attention and post-feed-forward norms)."""
        if post_norm not in self.w:
            return self.add_clipped(x, values, scale, name, wide)
        ops = self.ops
        out = self.float_norm(self.linear(values, scale, name, wide=wide), self.w[post_norm])
        out *= float(1 << self.residual_bits)  # exact: a power of two
        return ops.clip_(x + ops.f64(ops.round_(out)), -RESIDUAL_LIMIT, RESIDUAL_LIMIT)

    def rope(self, x, positions, layer: int):
        """x (B, T, heads, d) real float32 -> rotated: x cos + rotate_half(x) sin, one rounding each
        (gemma3's windowed layers with their own tables)."""
        half = self.head_dim // 2
        tables = "rope_local" if layer in self.local_layers else "rope"
        cos = self.w[f"{tables}.cos"][positions][:, None, :]  # (T, 1, d)
        sin = self.w[f"{tables}.sin"][positions][:, None, :]
        rotated = self.ops.concat([-x[..., half:], x[..., :half]])
        out = x * cos
        rotated *= sin
        out += rotated
        return out

    def qkv(self, layer: int, x, positions):
        """int8 queries (B, KV, G, T, d), keys and values (B, KV, 1, T, d), each with row scales."""
        prefix = f"layers.{layer}"
        B, T, _ = x.shape
        H, KV, D = self.n_head, self.n_kv, self.head_dim
        values, scale = self.norm_quantized(x, self.w[f"{prefix}.norm1.g"], self.row_levels)
        out = self.linear(values, scale, f"{prefix}.qkv", wide=self.wide_rows)
        if f"{prefix}.qkv.b" in self.w:
            out += self.w[f"{prefix}.qkv.b"]
        q = out[..., : H * D].reshape(B, T, H, D)
        k = out[..., H * D : (H + KV) * D].reshape(B, T, KV, D)
        if f"{prefix}.q_norm.hg" in self.w:
            q = self.float_norm(q, self.w[f"{prefix}.q_norm.hg"])
            k = self.float_norm(k, self.w[f"{prefix}.k_norm.hg"])
        q, k = self.rope(q, positions, layer), self.rope(k, positions, layer)
        v = out[..., (H + KV) * D :].reshape(B, T, KV, D)
        q = self.ops.permute(q.reshape(B, T, KV, self.group, D), (0, 2, 3, 1, 4))
        q, qs = self.quantize_rows(q)
        k, ks = self.quantize_rows(k.swapaxes(1, 2)[:, :, None])
        v, vs = self.quantize_rows(v.swapaxes(1, 2)[:, :, None])
        return q, qs, k, ks, v, vs

    def attend(self, q, qs, k, ks_t, v, vs_t, vmax, mask=None):
        """Attention output (B, T, C). q (B, KV, G, T, d); k, v (B, KV, 1, S, d); key and value
        scales transposed (B, KV, 1, 1, S); ``vmax`` (B, KV, 1, T, 1) the largest value scale each
        query row sees; ``mask`` (T, S) 0 or -inf, None when all S are visible."""
        ops = self.ops
        B, KV, G, T, D = q.shape
        S = k.shape[-2]
        # the G query heads of a KV head are more rows of one GEMM: (B, KV, G*T, d) @ (B, KV, d, S)
        scores = (q.reshape(B, KV, G * T, D) @ k.reshape(B, KV, S, D).swapaxes(-1, -2)).reshape(B, KV, G, T, S)
        scores *= qs * float(EXP_STEPS_PER_NAT * self.attention_scale)  # exact integers, then one scale
        scores *= ks_t
        if mask is not None:
            scores += mask
        index = ops.amax(scores) - scores  # >= 0: table steps below the row's maximum
        index = ops.index(ops.clip_(ops.round_(index), 0.0, self.attention_last))
        weights = ops.take(self.attention_exp, index)  # integers <= 2^20, exact in float32
        factor = ops.f32(ops.reciprocal(self.exact_row_sums(weights), float(ATTENTION_ONE)))
        weights *= vs_t / vmax  # value scales relative to the largest: <= 1 wherever a weight is not 0
        weights *= factor
        probs = ops.floor_(weights)  # each row sums to <= 2^17
        out = probs.reshape(B, KV, G * T, S) @ v.reshape(B, KV, S, D)  # |sum| <= 127 * 2^17 < 2^24: exact
        out = out.reshape(B, KV, G, T, D)
        out *= vmax * (1.0 / ATTENTION_ONE)
        return ops.permute(out, (0, 3, 1, 2, 4)).reshape(B, T, KV * G * D)

    def block_rest(self, layer: int, x, attention):
        """The attention output projection and the gated MLP (SwiGLU, gemma3's GELU), added to the
        residual stream."""
        ops, prefix = self.ops, f"layers.{layer}"
        values, scale = self.quantize_rows(attention)
        x = self.add_output(x, values, scale, f"{prefix}.o", f"{prefix}.post_attention.hg")
        values, scale = self.norm_quantized(x, self.w[f"{prefix}.norm2.g"], self.row_levels)
        gate_up = self.linear(values, scale, f"{prefix}.gate_up", wide=self.wide_rows)
        width = gate_up.shape[-1] // 2
        gate, up = gate_up[..., :width], gate_up[..., width:]
        index = gate * float(SIGMOID_STEPS)  # exact: a power of two
        index = ops.index(ops.clip_(ops.round_(index), -float(SIGMOID_RANGE * SIGMOID_STEPS),
                                    float(SIGMOID_RANGE * SIGMOID_STEPS)) + float(SIGMOID_RANGE * SIGMOID_STEPS))
        hidden = gate * ops.take(self.gate_table, index)  # silu(gate), or gemma3's gelu(gate)
        hidden *= up
        values, scale = self.quantize_rows(hidden, self.row_levels)
        return self.add_output(x, values, scale, f"{prefix}.down", f"{prefix}.post_ffw.hg", self.wide_rows)

    # -- whole sequences (teacher-forced) ------------------------------------
    def hidden(self, idx: np.ndarray):
        """idx (B, T) from position 0 -> the final residual stream (B, T, C), a backend array."""
        ops = self.ops
        T = idx.shape[1]
        positions = ops.array(np.arange(T), "i64")
        x = self.embed(ops.array(idx, "i64"))
        masks = {}  # (block, windowed) -> its mask, made once for all layers
        for layer in range(self.n_layer):
            q, qs, k, ks, v, vs = self.qkv(layer, x, positions)
            ks_t, vs_t = ks.swapaxes(-1, -2), vs.swapaxes(-1, -2)
            vmax = ops.cummax(vs_t).swapaxes(-1, -2)  # the largest value scale up to each row
            parts = []
            # a block of query rows needs the keys from its first row's first key to its last row
            for r0, r1 in query_blocks(T):
                k0, local = self.first_key(layer, r0), layer in self.local_layers
                if (r0, local) not in masks:
                    masks[r0, local] = self.block_mask(r0, r1, k0, local)
                parts.append(self.attend(q[..., r0:r1, :], qs[..., r0:r1, :], k[..., k0:r1, :], ks_t[..., k0:r1],
                                         v[..., k0:r1, :], vs_t[..., k0:r1], vmax[..., r0:r1, :], masks[r0, local]))
            x = self.block_rest(layer, x, parts[0] if len(parts) == 1 else ops.concat(parts, axis=1))
        return x

    def first_key(self, layer: int, position: int) -> int:
        """The first position a row at ``position`` sees: 0, or in a windowed layer (gemma3) the start
        of its window. Keys before it would weigh exactly 0: leaving them out changes no number."""
        return max(0, position + 1 - self.window) if layer in self.local_layers else 0

    def block_mask(self, r0: int, r1: int, k0: int, windowed: bool):
        """0 or -inf for query rows r0..r1 against keys k0..r1: causal, and within the window."""
        rows, keys = np.arange(r0, r1)[:, None], np.arange(k0, r1)[None, :]
        hidden = (keys > rows) | ((rows - keys >= self.window) if windowed else False)
        return self.ops.array(np.where(hidden, -np.inf, 0.0), "f32")

    def forward(self, idx: np.ndarray) -> np.ndarray:
        """idx (B, T) from position 0 -> integer frequencies (B, T, V)."""
        return self.ops.to_numpy(self.frequencies(self.hidden(idx)))


class IntLlamaStepper:
    """B streams, one token per step, with a preallocated int8 KV cache."""

    def __init__(self, model: IntLlama, n_streams: int, length: int):
        ops, KV, D = model.ops, model.n_kv, model.head_dim
        self.model, self.pos, self.length = model, 0, length
        self.k = [ops.zeros((n_streams, KV, 1, length, D), "f32") for _ in range(model.n_layer)]
        self.ks_t = [ops.zeros((n_streams, KV, 1, 1, length), "f32") for _ in range(model.n_layer)]
        self.v = [ops.zeros((n_streams, KV, 1, length, D), "f32") for _ in range(model.n_layer)]
        self.vs_t = [ops.zeros((n_streams, KV, 1, 1, length), "f32") for _ in range(model.n_layer)]
        self.vmax = [ops.zeros((n_streams, KV, 1, 1, 1), "f32") for _ in range(model.n_layer)]

    def step(self, tokens: np.ndarray) -> np.ndarray:
        """The first len(tokens) streams (finished streams are dropped from the end) -> frequencies."""
        model, ops, pos, n = self.model, self.model.ops, self.pos, len(tokens)
        if pos >= self.length:
            raise ValueError("chunk longer than the KV cache")
        span = pos + 1  # exactly the filled cache: no mask
        positions = ops.array([pos], "i64")
        x = model.embed(ops.array(tokens, "i64")[:, None])  # (n, 1, C)
        for layer in range(model.n_layer):
            first = model.first_key(layer, pos)
            q, qs, k, ks, v, vs = model.qkv(layer, x, positions)
            self.k[layer][:n, ..., pos : pos + 1, :] = k
            self.ks_t[layer][:n, ..., pos : pos + 1] = ks
            self.v[layer][:n, ..., pos : pos + 1, :] = v
            self.vs_t[layer][:n, ..., pos : pos + 1] = vs
            self.vmax[layer][:n] = ops.maximum(self.vmax[layer][:n], vs)  # the running maximum (exact)
            attention = model.attend(q, qs, self.k[layer][:n, ..., first:span, :],
                                     self.ks_t[layer][:n, ..., first:span], self.v[layer][:n, ..., first:span, :],
                                     self.vs_t[layer][:n, ..., first:span], self.vmax[layer][:n])
            x = model.block_rest(layer, x, attention)
        self.pos += 1
        return ops.to_numpy(model.frequencies(x)[:, 0])

    def join(self, n_streams: int) -> None:
        """Streams 1 .. n_streams-1 take stream 0's cache so far (the same tokens at the same
        positions: stepping them would compute the very same integers)."""
        end = self.pos
        for cache in (self.k, self.v):
            for layer in cache:
                layer[1:n_streams, ..., :end, :] = layer[0:1, ..., :end, :]
        for cache in (self.ks_t, self.vs_t):
            for layer in cache:
                layer[1:n_streams, ..., :end] = layer[0:1, ..., :end]
        for layer in self.vmax:
            layer[1:n_streams] = layer[0:1]


# -- derivation from a GGUF -------------------------------------------------------------

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
    """(in, out) float64 -> int8 and one scale per output column (exact numpy operations)."""
    scale = np.maximum(np.abs(w).max(axis=0), 1e-12) / INT8
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
