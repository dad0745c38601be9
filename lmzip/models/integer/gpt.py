"""lmzip's GPT (``fast``) in integer-exact arithmetic: the forward pass and the stepper.

The rules are arithmetic.py's (read its docstring first): int8 weights and activations, exact
integer GEMMs, a fixed-point residual stream of ``RESIDUAL_BITS`` fraction bits, exp only through
a stored table. Weights as quantize.py writes them.
"""

from __future__ import annotations

import math

import numpy as np

from .arithmetic import INT8, IntegerArithmetic

INTEGER_FORMAT = 1  # bump when the integer arithmetic below changes
RESIDUAL_BITS = 12  # fixed-point fraction bits of the residual stream and embeddings
GPT_ATTENTION_ONE = 4096  # attention weights are integers summing to about this
PORTABLE_TYPE = "lmzip-gpt-int8"


def _runtime_tensors(weights: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, str]]:
    """The stored integers and scales as the forward pass uses them.

    Derived constants are computed here, once, by numpy, so both backends get
    the very same float32 values.
    """
    out = {}
    for name, value in weights.items():
        if name.endswith(".v.s"):
            out[name + "_one"] = ((value / GPT_ATTENTION_ONE).astype(np.float32), "f32")
            out[name.removesuffix(".s") + ".inverse"] = ((1.0 / value).astype(np.float32), "f32")
        elif name.endswith(".w"):
            out[name] = (value.astype(np.int8), "i8")  # each backend picks its GEMM operand type
        elif name.endswith((".s", ".sr")):
            out[name] = (value.astype(np.float32), "f32")
        elif name != "exp_table":
            out[name] = (value.astype(np.float64), "f64")  # embeddings, gains
    return out


class IntGPT(IntegerArithmetic):
    """The integer forward pass; ``weights`` as written by ``quantize_gpt``."""

    def __init__(self, weights: dict[str, np.ndarray], config: dict, ops):
        self.cfg, self.ops = config, ops
        self.n_layer, self.n_head = config["n_layer"], config["n_head"]
        self.head_dim = config["n_embd"] // self.n_head
        self.context = config["context"]
        self.w = {k: ops.weight(v) if dtype == "i8" else ops.array(v, dtype)
                  for k, (v, dtype) in _runtime_tensors(weights).items()}
        self.set_exp_table(weights["exp_table"])
        self.attention_scale = float(np.float32(1.0 / math.sqrt(self.head_dim)))

    def heads(self, x):
        """(..., T, C) -> (..., H, T, hd)"""
        *lead, T, _ = x.shape
        return x.reshape(*lead, T, self.n_head, self.head_dim).swapaxes(-2, -3)

    def merge(self, y):
        *lead, H, T, hd = y.shape
        return y.swapaxes(-2, -3).reshape(*lead, T, H * hd)

    def qkv(self, layer: int, x):
        """Quantized queries and keys (with scales) and values, each (B, H, T, hd)."""
        ops, prefix = self.ops, f"blocks.{layer}"
        values, scale = self.norm_quantized(x, self.w[f"{prefix}.norm1.g"])
        C = self.cfg["n_embd"]
        out = self.linear(values, scale, f"{prefix}.qkv")
        q, qs = self.quantize_rows(self.heads(out[..., :C]))
        k, ks = self.quantize_rows(self.heads(out[..., C : 2 * C]))
        v = ops.clip_(ops.round_(out[..., 2 * C :] * self.w[f"{prefix}.v.inverse"]), -INT8, INT8)
        return q, qs, k, ks, self.heads(v)

    def attend(self, layer: int, q, qs, k, ks_t, v, mask=None):
        """Attention output (B, T, C) from int8 q/k/v (B, H, S, hd); key scales come transposed
        (B, H, 1, S); ``mask`` (T, S) is 0 or -inf, None when all S are visible."""
        ops = self.ops
        scores = q @ k.swapaxes(-1, -2)  # exact integers
        scores *= qs
        scores *= ks_t
        scores *= self.attention_scale
        if mask is not None:
            scores += mask
        weights = ops.take(self.exp_table, self.table_index(scores))  # float64 integers; sums below 2^53: exact
        total = ops.sum(weights)
        weights *= float(GPT_ATTENTION_ONE)
        probs = ops.f32(ops.floor_(weights / total))  # sums to <= 4096
        out = self.merge(probs @ v)  # |sum| <= 127 * 4096: exact
        out *= self.w[f"blocks.{layer}.v.s_one"]
        return out

    def block_rest(self, layer: int, x, attention):
        """Attention projection and the MLP, added to the residual stream."""
        ops, prefix = self.ops, f"blocks.{layer}"
        values, scale = self.quantize_rows(attention)
        x = self.add_residual(x, values, scale, f"{prefix}.proj")
        values, scale = self.norm_quantized(x, self.w[f"{prefix}.norm2.g"])
        hidden = ops.clip_(self.linear(values, scale, f"{prefix}.fc"), 0.0, None)
        hidden *= hidden  # ReLU^2, quantized to [0, 127]
        values, scale = self.quantize_rows(hidden)
        return self.add_residual(x, values, scale, f"{prefix}.mlp")

    def embed(self, tokens, positions):
        return self.w["wte.e"][tokens] + self.w["wpe.e"][positions]

    # -- whole sequences (teacher-forced) ------------------------------------
    def hidden(self, idx: np.ndarray):
        """idx (B, T) from position 0 -> the final residual stream (B, T, C), a backend array."""
        ops = self.ops
        T = idx.shape[1]
        x = self.embed(ops.array(idx, "i64"), ops.array(np.arange(T), "i64"))
        mask = ops.array(np.triu(np.full((T, T), -np.inf), 1), "f32")
        for layer in range(self.n_layer):
            q, qs, k, ks, v = self.qkv(layer, x)
            attention = self.attend(layer, q, qs, k, ks.swapaxes(-1, -2), v, mask)
            x = self.block_rest(layer, x, attention)
        return x

    def forward(self, idx: np.ndarray) -> np.ndarray:
        """idx (B, T) from position 0 -> integer frequencies (B, T, V)."""
        return self.ops.to_numpy(self.frequencies(self.hidden(idx)))


class IntStepper:
    """B streams, one token per step, with a preallocated int8 KV cache."""

    def __init__(self, model: IntGPT, n_streams: int):
        ops, H, hd, L = model.ops, model.n_head, model.head_dim, model.context
        self.model, self.pos = model, 0
        self.k = [ops.zeros((n_streams, H, L, hd), "f32") for _ in range(model.n_layer)]
        self.ks_t = [ops.zeros((n_streams, H, 1, L), "f32") for _ in range(model.n_layer)]
        self.v = [ops.zeros((n_streams, H, L, hd), "f32") for _ in range(model.n_layer)]

    def step(self, tokens: np.ndarray) -> np.ndarray:
        """The first len(tokens) streams (finished streams are dropped from the end) -> frequencies."""
        model, ops, pos, n = self.model, self.model.ops, self.pos, len(tokens)
        if pos >= model.context:
            raise ValueError("chunk longer than the model's context")
        span = pos + 1  # exactly the filled cache: no mask (float32 GEMMs keep no per-shape kernels)
        x = model.embed(ops.array(tokens, "i64")[:, None], ops.array([pos], "i64"))  # (n, 1, C)
        for layer in range(model.n_layer):
            q, qs, k, ks, v = model.qkv(layer, x)
            self.k[layer][:n, :, pos : pos + 1] = k
            self.ks_t[layer][:n, ..., pos : pos + 1] = ks
            self.v[layer][:n, :, pos : pos + 1] = v
            attention = model.attend(layer, q, qs, self.k[layer][:n, :, :span], self.ks_t[layer][:n, ..., :span],
                                     self.v[layer][:n, :, :span])
            x = model.block_rest(layer, x, attention)
        self.pos += 1
        return ops.to_numpy(model.frequencies(x)[:, 0])
