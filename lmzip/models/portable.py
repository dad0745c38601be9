"""The portable model: lmzip's GPT in integer-exact arithmetic.

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

The arithmetic is written once against a tiny array interface (``Ops``) and run
by two backends: torch (MKL / oneDNN) and numpy (OpenBLAS).
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import numpy as np

from ..errors import ModelNotAvailable
from ..tokenize import load_tokenizer
from .base import Predictor, hash_files

INTEGER_FORMAT = 1  # bump when the integer arithmetic below changes
RESIDUAL_BITS = 12  # fixed-point fraction bits of the residual stream and embeddings
GAIN_BITS = 12  # fraction bits of the RMSNorm gains
EXP_STEPS_PER_NAT = 128  # resolution of the exp table (error <= 1/256 nat)
EXP_ONE = 1 << 24  # exp(0) in the table
ATTENTION_ONE = 4096  # attention weights are integers summing to about this
INT8 = 127.0
NORM_EPS = 16.0  # RMSNorm epsilon in residual units squared (~1e-6 in real units)
PORTABLE_TYPE = "lmzip-gpt-int8"
PORTABLE_DIR = Path(__file__).resolve().parents[1] / "data" / "fast-portable"


def exp_table() -> np.ndarray:
    """round(2^24 * exp(-i / 128)) down to the first zero; computed once, stored with the weights."""
    n = int(math.log(2 * EXP_ONE) * EXP_STEPS_PER_NAT) + 2
    return np.array([round(EXP_ONE * math.exp(-i / EXP_STEPS_PER_NAT)) for i in range(n)], dtype=np.int64)


class NumpyOps:
    """OpenBLAS takes its thread count from the environment; the results do not depend on it."""

    @staticmethod
    def array(a, dtype: str):
        return np.asarray(a, dtype={"f32": np.float32, "f64": np.float64, "i32": np.int32, "i64": np.int64}[dtype])

    @staticmethod
    def zeros(shape, dtype: str):
        return np.zeros(shape, dtype={"f32": np.float32, "f64": np.float64}[dtype])

    @staticmethod
    def f32(x):
        return x.astype(np.float32)

    @staticmethod
    def f64(x):
        return x.astype(np.float64)

    @staticmethod
    def index(x):
        return x.astype(np.int64)

    @staticmethod
    def amax(x):
        return x.max(axis=-1, keepdims=True)

    @staticmethod
    def sum(x):
        return x.sum(axis=-1, keepdims=True)

    sqrt = staticmethod(np.sqrt)

    @staticmethod
    def clip(x, low, high):
        return np.clip(x, low, high)

    @staticmethod
    def round_(x):
        return np.round(x, out=x)

    @staticmethod
    def reciprocal(x, numerator: float):
        """numerator / x, one correctly rounded division."""
        return np.full_like(x, numerator) / x

    @staticmethod
    def clip_(x, low, high):
        return np.clip(x, low, high, out=x)

    @staticmethod
    def floor_(x):
        return np.floor(x, out=x)

    @staticmethod
    def to_numpy(x):
        return x

    @staticmethod
    def weight(w: np.ndarray):
        return w.astype(np.float32)  # int8 values, exact in float32

    @staticmethod
    def int8_matmul(values, weight):
        """(M, K) integer-valued float32 @ a ``weight``: float32, exact (every partial sum < 2^24)."""
        return values @ weight

    @staticmethod
    def take(table, index):
        return np.take(table, index)


class TorchOps:
    def __init__(self, threads: int | None = None, device: str = "cpu"):
        import torch

        self.torch, self.device = torch, device
        if threads:
            torch.set_num_threads(threads)
        torch.backends.cuda.matmul.allow_tf32 = False  # TF32 would round the integer products
        torch.backends.cudnn.allow_tf32 = False
        self._dtypes = {"f32": torch.float32, "f64": torch.float64, "i32": torch.int32, "i64": torch.int64}
        # CPU: a true int8 x int8 -> int32 GEMM (AMX / VNNI, ~2.5x the float32 one here) where it
        # proves exact; elsewhere the float32 GEMM, which gives the same integers.
        self.integer_gemm = device == "cpu" and int8_gemm_is_exact()

    def array(self, a, dtype: str):
        return self.torch.as_tensor(np.asarray(a), device=self.device).to(self._dtypes[dtype])

    def zeros(self, shape, dtype: str):
        return self.torch.zeros(shape, dtype=self._dtypes[dtype], device=self.device)

    def f32(self, x):
        return x.float()

    def f64(self, x):
        return x.double()

    def index(self, x):
        return x.int()  # int32 indices: half the bytes of int64, and index_select takes them

    @staticmethod
    def amax(x):
        return x.amax(dim=-1, keepdim=True)

    @staticmethod
    def sum(x):
        return x.sum(dim=-1, keepdim=True)

    def sqrt(self, x):
        return self.torch.sqrt(x)

    def clip(self, x, low, high):
        return self.torch.clamp(x, low, high)

    @staticmethod
    def round_(x):
        return x.round_()

    def reciprocal(self, x, numerator: float):
        """numerator / x, one correctly rounded division (not torch's reciprocal-then-multiply)."""
        return self.torch.full_like(x, numerator) / x

    @staticmethod
    def clip_(x, low, high):
        return x.clamp_(low, high)

    @staticmethod
    def floor_(x):
        return x.floor_()

    @staticmethod
    def to_numpy(x):
        return x.cpu().numpy()

    def weight(self, w: np.ndarray):
        return self.array(w, "f32").to(self.torch.int8) if self.integer_gemm else self.array(w, "f32")

    def int8_matmul(self, values, weight):
        """(M, K) integer-valued float32 @ a ``weight``: float32, exact (every partial sum < 2^24)."""
        if self.integer_gemm:
            return self.torch._int_mm(values.to(self.torch.int8), weight).float()
        return values @ weight

    @staticmethod
    def take(table, index):
        return table.index_select(0, index.reshape(-1)).reshape(index.shape)


BACKENDS = {"numpy": NumpyOps, "torch": TorchOps}


@functools.cache
def int8_gemm_is_exact() -> bool:
    """Whether torch's CPU int8 GEMM gives exact integers on this machine.

    oneDNN documents that on CPUs without VNNI its int8 kernels may saturate
    16-bit intermediate sums (vpmaddubsw), which would silently change the
    integers. Checked once on the worst case (every value +-127, the widest
    inner dimension the model uses) and random values, at several shapes.
    """
    import torch

    if not hasattr(torch, "_int_mm"):
        return False
    rng = np.random.default_rng(0)
    for m, k, n in ((1, 1024, 256), (128, 1024, 256), (128, 256, 1024), (300, 256, 768)):
        signs_a, signs_b = rng.choice([-1, 1], size=(m, 1)), rng.choice([-1, 1], size=(1, n))
        for a, b in ((np.full((m, k), 127) * signs_a, np.full((k, n), 127) * signs_b),
                     (rng.integers(-127, 128, (m, k)), rng.integers(-127, 128, (k, n)))):
            a8, b8 = torch.as_tensor(a, dtype=torch.int8), torch.as_tensor(b, dtype=torch.int8)
            try:
                got = torch._int_mm(a8, b8).numpy()
            except RuntimeError:
                return False
            if not np.array_equal(got, a.astype(np.float64) @ b.astype(np.float64)):  # exact below 2^53
                return False
    return True


def _runtime_tensors(weights: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, str]]:
    """The stored integers and scales as the forward pass uses them.

    Derived constants are computed here, once, by numpy, so both backends get
    the very same float32 values.
    """
    out = {}
    for name, value in weights.items():
        if name.endswith(".v.s"):
            out[name + "_one"] = ((value / ATTENTION_ONE).astype(np.float32), "f32")
            out[name.removesuffix(".s") + ".inverse"] = ((1.0 / value).astype(np.float32), "f32")
        elif name.endswith(".w"):
            out[name] = (value.astype(np.int8), "i8")  # each backend picks its GEMM operand type
        elif name.endswith((".s", ".sr")):
            out[name] = (value.astype(np.float32), "f32")
        elif name != "exp_table":
            out[name] = (value.astype(np.float64), "f64")  # embeddings, gains
    return out


class IntGPT:
    """The integer forward pass; ``weights`` as written by ``quantize_gpt``."""

    def __init__(self, weights: dict[str, np.ndarray], config: dict, ops):
        self.cfg, self.ops = config, ops
        self.n_layer, self.n_head = config["n_layer"], config["n_head"]
        self.head_dim = config["n_embd"] // self.n_head
        self.context = config["context"]
        self.w = {k: ops.weight(v) if dtype == "i8" else ops.array(v, dtype)
                  for k, (v, dtype) in _runtime_tensors(weights).items()}
        table = weights["exp_table"].astype(np.int64)
        self.exp_table, self.table_plus_one = ops.array(table, "f64"), ops.array(table + 1, "i32")
        self.table_last = float(len(table) - 1)
        self.attention_scale = float(np.float32(1.0 / math.sqrt(self.head_dim)))

    # -- the pieces -----------------------------------------------------------
    # float32 wherever values stay below 2^24 or only need one rounding per
    # operation; float64 for the residual stream and the norm, whose sums of
    # squares need more, and for the attention weights (integers whose sums
    # stay below 2^53, so exact in any order). Divisions are
    # tensor by tensor only: torch computes `scalar / tensor` as a reciprocal
    # times the scalar, numpy as one division, and the last bits differ.

    def quantize_rows(self, x):
        """Per-row int8 of a float32 tensor: (values, float32 scale of one unit)."""
        ops = self.ops
        amax = ops.clip(ops.amax(abs(x)), 1e-30, None)
        return ops.round_(x * ops.reciprocal(amax, INT8)), amax * (1.0 / INT8)

    def norm_quantized(self, x, gain):
        """RMSNorm(x) * gain as int8 rows; the RMS only enters the scale."""
        ops = self.ops
        rms = ops.sqrt(ops.sum(x * x) / x.shape[-1] + NORM_EPS)
        scaled = x * gain
        amax = ops.clip(ops.amax(abs(scaled)), 1.0, None)
        values = ops.f32(ops.round_(scaled * ops.reciprocal(amax, INT8)))
        return values, ops.f32(amax / (rms * (INT8 * 2.0 ** GAIN_BITS)))

    def linear(self, values, scale, name, column_scale="s"):
        """Real-valued (float32) output of an int8 layer: exact integer product, then the scales."""
        weight = self.w[name + ".w"]
        # one 2-D GEMM (numpy would loop over the leading dimensions)
        out = self.ops.int8_matmul(values.reshape(-1, values.shape[-1]), weight)
        out = out.reshape(*values.shape[:-1], weight.shape[-1])
        out *= scale
        out *= self.w[f"{name}.{column_scale}"]
        return out

    def add_residual(self, x, values, scale, name):
        """x + the layer's output in residual units (``.sr``: column scales times 2^RESIDUAL_BITS)."""
        return x + self.ops.f64(self.ops.round_(self.linear(values, scale, name, "sr")))

    def table_index(self, x):
        """In place: x -> round((max x - x) * 128) clipped to the exp table, as indices."""
        ops = self.ops
        x -= ops.amax(x)
        x *= -float(EXP_STEPS_PER_NAT)
        return ops.index(ops.clip_(ops.round_(x), 0.0, self.table_last))

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
        weights *= float(ATTENTION_ONE)
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

    def frequencies(self, x):
        """Integer next-token frequencies (each >= 1) from the final residual (the widest tensor)."""
        values, scale = self.norm_quantized(x, self.w["norm_f.g"])
        return self.ops.take(self.table_plus_one, self.table_index(self.linear(values, scale, "head")))

    def embed(self, tokens, positions):
        return self.w["wte.e"][tokens] + self.w["wpe.e"][positions]

    # -- whole sequences (teacher-forced) ------------------------------------
    def forward(self, idx: np.ndarray) -> np.ndarray:
        """idx (B, T) from position 0 -> integer frequencies (B, T, V)."""
        ops = self.ops
        T = idx.shape[1]
        x = self.embed(ops.array(idx, "i64"), ops.array(np.arange(T), "i64"))
        mask = ops.array(np.triu(np.full((T, T), -np.inf), 1), "f32")
        for layer in range(self.n_layer):
            q, qs, k, ks, v = self.qkv(layer, x)
            attention = self.attend(layer, q, qs, k, ks.swapaxes(-1, -2), v, mask)
            x = self.block_rest(layer, x, attention)
        return ops.to_numpy(self.frequencies(x))


class IntStepper:
    """B streams, one token per step, with a preallocated int8 KV cache."""

    def __init__(self, model: IntGPT, n_streams: int):
        ops, H, hd, L = model.ops, model.n_head, model.head_dim, model.context
        self.model, self.pos = model, 0
        self.k = [ops.zeros((n_streams, H, L, hd), "f32") for _ in range(model.n_layer)]
        self.ks_t = [ops.zeros((n_streams, H, 1, L), "f32") for _ in range(model.n_layer)]
        self.v = [ops.zeros((n_streams, H, L, hd), "f32") for _ in range(model.n_layer)]

    def step(self, tokens: np.ndarray) -> np.ndarray:
        model, ops, pos = self.model, self.model.ops, self.pos
        if pos >= model.context:
            raise ValueError("chunk longer than the model's context")
        span = pos + 1  # exactly the filled cache: no mask (float32 GEMMs keep no per-shape kernels)
        x = model.embed(ops.array(tokens, "i64")[:, None], ops.array([pos], "i64"))  # (B, 1, C)
        for layer in range(model.n_layer):
            q, qs, k, ks, v = model.qkv(layer, x)
            self.k[layer][:, :, pos : pos + 1] = k
            self.ks_t[layer][..., pos : pos + 1] = ks
            self.v[layer][:, :, pos : pos + 1] = v
            attention = model.attend(layer, q, qs, self.k[layer][:, :, :span], self.ks_t[layer][..., :span],
                                     self.v[layer][:, :, :span])
            x = model.block_rest(layer, x, attention)
        self.pos += 1
        return ops.to_numpy(model.frequencies(x)[:, 0])


# -- building the integer model from the float one ------------------------------

def _int8_columns(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(in, out) float matrix -> int8 matrix and one float64 scale per output column."""
    scale = np.maximum(np.abs(w).max(axis=0), 1e-12).astype(np.float64) / INT8
    return np.clip(np.round(w / scale), -127, 127).astype(np.int8), scale


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
            w, s = _int8_columns(state[f"{p}.{key}.weight"].T)
            out[f"{p}.{name}.w"], out[f"{p}.{name}.s"] = w, s
            out[f"{p}.{name}.sr"] = s * fixed  # straight into residual units
        out[f"{p}.v.s"] = np.maximum(value_max[i], 1e-6) / INT8
    out["norm_f.g"] = np.round(state["norm_f.weight"] * gain).astype(np.int32)
    out["head.w"], out["head.s"] = _int8_columns(state["wte.weight"].T)
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
    from .gpt import load_gpt

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


def load_portable(directory: Path) -> tuple[dict[str, np.ndarray], dict]:
    from safetensors.numpy import load_file

    directory = Path(directory)
    return load_file(str(directory / "model.safetensors")), json.loads((directory / "config.json").read_text())


# -- the predictor ----------------------------------------------------------------

class PortablePredictor(Predictor):
    """Integer frequencies from the portable model, identical on any backend and machine."""

    frequencies = True  # step() returns integer frequency rows for the integer range coder
    default_streams = 128

    def __init__(self, directory: Path, name: str | None = None, backend: str = "torch",
                 threads: int | None = None, device: str | None = None):
        if backend not in BACKENDS:
            raise ModelNotAvailable(f"unknown backend {backend!r} (use {', '.join(BACKENDS)})")
        self.directory = Path(directory)
        if not (self.directory / "model.safetensors").exists():
            raise ModelNotAvailable(f"no portable model in {self.directory}")
        self.name = name or str(self.directory.resolve())
        weights, config = load_portable(self.directory)
        ops = TorchOps(threads, device or "cpu") if backend == "torch" else NumpyOps()
        self.model = IntGPT(weights, config, ops)
        self.tokenizer = load_tokenizer(self.directory, config, config["vocab_size"])
        self.vocab_size = config["vocab_size"]
        self.default_chunk = self.max_chunk = config["context"]
        self._hash = hash_files([self.directory / "model.safetensors"]
                                + [p for p in [self.directory / "tokenizer.json"] if p.exists()])

    @property
    def weights_hash(self) -> bytes:
        return self._hash

    def versions(self) -> str:
        return f"lmzip integer model {INTEGER_FORMAT}"  # no library: any numpy/torch/BLAS decodes it

    def start(self, n_streams: int, n_steps: int) -> None:
        self.stepper = IntStepper(self.model, n_streams)

    def step(self, tokens: np.ndarray) -> np.ndarray:
        return self.stepper.step(tokens)

    def coded_intervals(self, chunks: list[np.ndarray], batch: int = 4):
        """Teacher-forced: for each chunk, (low, size, total) of its tokens' coder intervals.

        Exactness makes the whole-sequence pass give the very integers stepping
        gives, so the encoder may use it while the decoder steps.
        """
        for i in range(0, len(chunks), batch):
            group = chunks[i : i + batch]
            T = max(len(c) for c in group)
            idx = np.full((len(group), T), self.bos_id, dtype=np.int64)
            for row, chunk in zip(idx, group):
                row[1 : len(chunk)] = chunk[:-1]
            freqs = self.model.forward(idx)
            for row, chunk in zip(freqs, group):
                n = len(chunk)
                cum = np.cumsum(row[:n], axis=1, dtype=np.int64)
                size = row[np.arange(n), chunk]
                high = cum[np.arange(n), chunk]
                yield high - size, size, cum[:, -1]
