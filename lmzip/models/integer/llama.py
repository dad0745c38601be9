"""The llama family in integer-exact arithmetic: the forward pass and the stepper.

One forward pass for the GGUF architectures of ``gguf/derive.py``: ``llama`` (SmolLM2, the default;
Llama 2/3, Mistral, TinyLlama), ``qwen2`` (biases on q/k/v), ``qwen3`` (an RMSNorm on each query and
key head) and ``gemma3`` (those norms, a norm on each sublayer's output before it joins the residual,
GELU gates, windowed layers with their own RoPE base, embeddings times sqrt(C)). What an
architecture adds is found by its arrays' names (``qkv.b``, ``q_norm.hg``, ``post_attention.hg``,
``gelu_tanh``, ``rope_local.*``) and its config (``sliding_window``, ``local_layers``).

The same rules as arithmetic.py (read its docstring first): int8 weights with one
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

Weights are derived from a GGUF by ``gguf/derive.py``, the tables by tables.py: exact or
correctly rounded operations only, so every machine derives the same integers, which the header's
hash then checks.
"""

from __future__ import annotations

import numpy as np

from .arithmetic import EXP_STEPS_PER_NAT, IntegerArithmetic
from .tables import SIGMOID_RANGE, SIGMOID_STEPS

LLAMA_TYPE = "lmzip-llama-int8"
LLAMA_FORMAT = 1  # bump when the derived weights change
# The forward pass's recipes over the same derived weights. A file records the recipe that made it
# (Settings.recipe; none: 1) and decodes with it forever; new files take the newest.
RECIPES = {1: "int8 rows before every product",
           2: "wide rows (integers to 127 * 128) after each norm and in the MLP's hidden row, before the "
              "q/k/v, gate/up, down and head products: a third of the integer cost over float"}
NEWEST_RECIPE = 2
RESIDUAL_BITS = 10  # fraction bits of the residual stream (a config's "residual_bits" where it differs)
RESIDUAL_LIMIT = float(1 << 26)  # the residual's clip, in its units: +-65,536 real at 10 fraction bits
SQUARE_SHIFT = 10  # squares (< 2^52) floored to multiples of 2^10: a row of 576 sums below 2^53
GAIN_BITS = 12
LLAMA_ATTENTION_ONE = 1 << 17  # attention weights are integers summing to at most this
ATTENTION_EXP_ONE = 1 << 20  # exp(0) in the attention's table: sums of 16 stay exact in float32
SUM_PIECE = 16  # 16 * 2^20 = 2^24
QUERY_BLOCK = 256  # query rows per attention pass in whole-chunk passes (speed only)
EXACT_INNER = 1024  # 127 * 127 * 1024 < 2^24: widest exact float32 GEMM of int8s
FLOAT_NORM_ONE = 32768.0  # a float32 row's mean square from values of <= 2^15: squares sum exactly


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


def query_blocks(T: int, size: int) -> list[tuple[int, int]]:
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
        factor = ops.f32(ops.reciprocal(self.exact_row_sums(weights), float(LLAMA_ATTENTION_ONE)))
        weights *= vs_t / vmax  # value scales relative to the largest: <= 1 wherever a weight is not 0
        weights *= factor
        probs = ops.floor_(weights)  # each row sums to <= 2^17
        out = probs.reshape(B, KV, G * T, S) @ v.reshape(B, KV, S, D)  # |sum| <= 127 * 2^17 < 2^24: exact
        out = out.reshape(B, KV, G, T, D)
        out *= vmax * (1.0 / LLAMA_ATTENTION_ONE)
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
            for r0, r1 in query_blocks(T, QUERY_BLOCK):  # the module's value now (tests make it small)
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
