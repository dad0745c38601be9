"""The integer models' arithmetic: the pieces every integer model is built of, and why each is exact.

Every number the forward pass makes is the same on any machine, library, thread
count or batch size, because it only uses operations whose results do not
depend on how they are computed:

- matrix products of int8 weights and int8 activations (or 12-bit attention
  weights and int8 values): a true int8 GEMM with int32 accumulation where
  torch has one that proves exact on this CPU, otherwise float32 GEMMs of the
  same integers whose every partial sum stays below 2^24 -- exact in any
  summation order, so any BLAS, blocking, thread count or device (TF32 off)
  gives the same integers;
- elementwise float64 +, -, *, /, sqrt, which IEEE 754 rounds correctly, in a
  fixed order; rounding to integers (half to even) and floor;
- sums of integers below 2^53 (exact in any order), max and table lookups;
- ``exp`` only through a table of integers stored with the weights (libm's
  ``exp`` differs in its last bits between libraries and devices).

Activations are int8 with one scale per token (per head for queries and keys),
attention values int8 with a fixed scale per channel, the residual stream a
fixed-point integer with ``RESIDUAL_BITS`` fraction bits. The output is a row
of integer frequencies (each >= 1) for the integer range coder.

The arithmetic is written once against a tiny array interface and run by three
backends: numpy (OpenBLAS) and torch (MKL / oneDNN) in ops.py, and native C
(``models/native``). The families built of it: gpt.py (lmzip's own ``fast``)
and llama.py (SmolLM2 and the GGUF architectures).
"""

from __future__ import annotations

import numpy as np

from .adapt import STEP_LIMIT, biased_index

EXP_STEPS_PER_NAT = 128  # resolution of the exp table (error <= 1/256 nat)
EXP_ONE = 1 << 24  # exp(0) in the exp table (tables.py)
INT8 = 127.0
WIDE_ROWS = 127 * 128.0  # wide rows (a llama's recipe 2): a high int8 part of 128s and a low one
GAIN_BITS = 12  # fraction bits of the RMSNorm gains
NORM_EPS = 16.0  # RMSNorm epsilon in residual units squared (~1e-6 in real units)


class IntegerArithmetic:
    """The pieces every integer model is built of (see the module docstring for why each is exact).

    A model sets ``ops``, ``w`` (its runtime tensors), ``exp_table``/``table_plus_one``/``table_last``,
    and may change the class constants below.
    """

    gain_bits = GAIN_BITS
    norm_eps = NORM_EPS
    max_exact_inner = 1 << 30  # widest inner dimension one float32 GEMM of int8s may take (see linear)
    wide_rows = False  # a llama's recipe 2: wide rows before its widest products (integer/llama.py RECIPES)
    head_bias = None  # int32 steps the head subtracts while it learns (adapt.py), or None

    @property
    def row_levels(self) -> float:
        """The largest integer of a row before a product where a model may widen its rows."""
        return WIDE_ROWS if self.wide_rows else INT8

    # -- the pieces -----------------------------------------------------------
    # float32 wherever values stay below 2^24 or only need one rounding per
    # operation; float64 for the residual stream and the norm, whose sums of
    # squares need more, and for the attention weights (integers whose sums
    # stay below 2^53, so exact in any order). Divisions are
    # tensor by tensor only: torch computes `scalar / tensor` as a reciprocal
    # times the scalar, numpy as one division, and the last bits differ.

    def quantize_rows(self, x, levels: float = INT8):
        """Per-row integers in [-levels, levels] of a float32 tensor (int8 unless a model asks for
        wide rows): (values, float32 scale of one unit)."""
        ops = self.ops
        amax = ops.clip(ops.amax(abs(x)), 1e-30, None)
        return ops.round_(x * ops.reciprocal(amax, levels)), amax * (1.0 / levels)

    def mean_square(self, x):
        """The mean of x^2 over a row (x: float64 integers whose squares sum below 2^53: exact)."""
        return self.ops.sum(x * x) / x.shape[-1]

    def norm_quantized(self, x, gain, levels: float = INT8):
        """RMSNorm(x) * gain as rows of integers in [-levels, levels] (int8 unless a model asks for
        wide rows); the RMS only enters the scale."""
        ops = self.ops
        rms = ops.sqrt(self.mean_square(x) + self.norm_eps)
        scaled = x * gain
        amax = ops.clip(ops.amax(abs(scaled)), 1.0, None)
        values = ops.f32(ops.round_(scaled * ops.reciprocal(amax, levels)))
        return values, ops.f32(amax / (rms * (levels * 2.0 ** self.gain_bits)))

    def linear(self, values, scale, name, column_scale="s", wide: bool = False):
        """Real-valued (float32) output of an int8 layer: exact integer product, then the scales.
        ``wide`` rows (integers up to ``WIDE_ROWS``) are two int8 products (``wide_products``)."""
        weight = self.w[name + ".w"]
        # one 2-D GEMM (numpy would loop over the leading dimensions)
        rows = values.reshape(-1, values.shape[-1])
        if wide:
            out = self.wide_products(rows, weight)
        elif isinstance(weight, list):  # an inner dimension too wide for exact float32 sums: split
            out = self.ops.f32(self.exact_sums(rows, weight))
        else:
            out = self.ops.int8_matmul(rows, weight)
        out = out.reshape(*values.shape[:-1], out.shape[-1])
        out *= scale
        out *= self.w[f"{name}.{column_scale}"]
        return out

    def exact_sums(self, rows, weight):
        """int8 rows @ a backend weight as exact float64 integers. A weight kept as row pieces (each
        narrow enough for exact float32 sums) has its pieces' integers added in float64."""
        ops = self.ops
        if not isinstance(weight, list):
            return ops.exact_int8_matmul(rows, weight)
        total, start = None, 0
        for piece in weight:
            part = ops.f64(ops.int8_matmul(rows[:, start : start + piece.shape[0]], piece))
            total = part if total is None else total + part
            start += piece.shape[0]
        return total

    def wide_products(self, rows, weight):
        """Rows of integers in [-WIDE_ROWS, WIDE_ROWS] @ an int8 weight: the exact sums, rounded once
        to float32. Each row is 128 * high + low (high in [-127, 127], low in [-64, 63]), so the
        product is two int8 products, made as one GEMM of twice the rows (every backend's exact
        int8 GEMM serves: a wide GEMM of int16s would overflow float32's exact range)."""
        ops = self.ops
        low = rows - ops.floor_((rows + 64.0) * (1.0 / 128)) * 128.0  # exact: integers, powers of two
        high = (rows - low) * (1.0 / 128)
        sums = self.exact_sums(ops.concat([high, low], axis=0), weight)
        n = rows.shape[0]
        return ops.f32(sums[:n] * 128.0 + sums[n:])  # exact below 2^53, then one rounding

    def split_weight(self, w):
        """A backend weight from an int8 (in, out) matrix: whole, or row pieces (see linear)."""
        if w.shape[0] <= self.max_exact_inner or getattr(self.ops, "integer_gemm", False):
            return self.ops.weight(w)
        n = -(-w.shape[0] // self.max_exact_inner)
        step = -(-w.shape[0] // n)
        return [self.ops.weight(w[i : i + step]) for i in range(0, w.shape[0], step)]

    def add_residual(self, x, values, scale, name, wide: bool = False):
        """x + the layer's output in residual units (``.sr``: column scales times 2^RESIDUAL_BITS)."""
        return x + self.ops.f64(self.ops.round_(self.linear(values, scale, name, "sr", wide)))

    def set_exp_table(self, table: np.ndarray) -> None:
        table = table.astype(np.int64)
        self.exp_table, self.table_plus_one = self.ops.array(table, "f64"), self.ops.array(table + 1, "i32")
        self.table_last = float(len(table) - 1)

    def steps_below_max(self, x):
        """In place: x -> round((max x - x) * 128), the exp table's steps below each row's maximum."""
        ops = self.ops
        x -= ops.amax(x)
        x *= -float(EXP_STEPS_PER_NAT)
        return ops.round_(x)

    def table_index(self, x):
        """In place: x -> its steps below the maximum, clipped to the exp table, as indices."""
        return self.ops.index(self.ops.clip_(self.steps_below_max(x), 0.0, self.table_last))

    def frequencies(self, x):
        """Integer next-token frequencies (each >= 1) from the final residual (the widest tensor),
        through the head's learnt bias where the model has one (``head_bias``, adapt.py)."""
        values, scale = self.norm_quantized(x, self.w["norm_f.g"], self.row_levels)
        logits = self.linear(values, scale, "head", wide=self.wide_rows)
        if self.head_bias is None:
            return self.ops.take(self.table_plus_one, self.table_index(logits))
        return self.ops.take(self.table_plus_one, self.biased_table_index(logits))

    def biased_table_index(self, x, bias=None):
        """In place: adapt.py's indices, the steps below the maximum clamped above instead of clipped,
        less ``bias`` (the model's ``head_bias`` unless given), in numpy whichever backend made x."""
        steps = self.ops.to_numpy(self.ops.clip_(self.steps_below_max(x), 0.0, float(STEP_LIMIT))).astype(np.int64)
        bias = self.head_bias if bias is None else bias
        return self.ops.array(biased_index(steps, bias, int(self.table_last)), "i64")
