"""The array backends of the integer models: numpy (OpenBLAS) and torch (MKL / oneDNN, CUDA);
``models/native`` adds a third, numpy with native int8 GEMMs.

The integer arithmetic (arithmetic.py) is written once against this small interface;
every operation it uses gives the same numbers on each backend (see arithmetic.py
for which operations qualify and why).
"""

from __future__ import annotations

import functools

import numpy as np


class NumpyOps:
    """OpenBLAS takes its thread count from the environment; the results do not depend on it."""

    @staticmethod
    def array(a, dtype: str):
        return np.asarray(a, dtype={"f32": np.float32, "f64": np.float64, "i16": np.int16, "i32": np.int32,
                                  "i64": np.int64}[dtype])

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
        return np.asarray(w, dtype=np.float32)  # int8 values, exact in float32

    @staticmethod
    def int8_matmul(values, weight):
        """(M, K) integer-valued float32 @ a ``weight``: float32, exact (every partial sum < 2^24)."""
        return values @ weight

    @staticmethod
    def exact_int8_matmul(values, weight):
        """The same as float64 (a whole weight here is narrow enough for exact float32 sums)."""
        return (values @ weight).astype(np.float64)

    @staticmethod
    def take(table, index):
        return np.take(table, index)

    @staticmethod
    def concat(parts, axis=-1):
        return np.concatenate(parts, axis=axis)

    @staticmethod
    def permute(x, axes):
        return x.transpose(axes)

    maximum = staticmethod(np.maximum)

    @staticmethod
    def cummax(x):
        return np.maximum.accumulate(x, axis=-1)


class TorchOps:
    def __init__(self, device: str = "cpu"):
        import torch

        self.torch, self.device = torch, device
        self._dtypes = {"f32": torch.float32, "f64": torch.float64, "i16": torch.int16, "i32": torch.int32,
                        "i64": torch.int64}
        # CPU: a true int8 x int8 -> int32 GEMM where it proves exact and is the faster one (AMX:
        # ~2.5x the float32 GEMM; an AVX2 EPYC: 25-40x slower); elsewhere the float32 GEMM, which
        # gives the same integers. The choice changes the speed, never the numbers.
        self.integer_gemm = device == "cpu" and int8_gemm_pays()

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

    def exact_int8_matmul(self, values, weight):
        """The same as float64: the int8 GEMM's int32 sums (a whole weight of any width), or the
        float32 GEMM's (whole only where narrow enough for exact sums)."""
        if self.integer_gemm:
            return self.torch._int_mm(values.to(self.torch.int8), weight).double()
        return (values @ weight).double()

    @staticmethod
    def take(table, index):
        return table.index_select(0, index.reshape(-1)).reshape(index.shape)

    def concat(self, parts, axis=-1):
        return self.torch.cat(parts, dim=axis)

    @staticmethod
    def permute(x, axes):
        return x.permute(axes)

    def maximum(self, a, b):
        return self.torch.maximum(a, b)

    @staticmethod
    def cummax(x):
        return x.cummax(dim=-1).values


BACKENDS = ("native", "numpy", "torch")  # native: models/native's int8 GEMMs, where they build and check


@functools.cache
def int8_gemm_pays() -> bool:
    """Whether torch's int8 GEMM is exact here and faster than a float32 GEMM of the same integers,
    at the integer models' typical shapes. Where torch runs AVX-512 kernels on a CPU with VNNI
    (or AMX) the hardware settles it (int8 is several times faster); elsewhere it is measured
    (measured_choice: kept, and measured again when old or close), keyed by CPU kernel path,
    torch version and thread count."""
    import torch

    from ..base import Measured, measured_choice

    if not int8_gemm_is_exact():
        return False
    if torch.backends.cpu.get_cpu_capability().lower().startswith("avx512") and (
            torch.cpu._is_vnni_supported() or torch.cpu._is_amx_tile_supported()):
        return True

    def measure() -> Measured:
        int8, float32 = _int8_gemm_time(), _float32_gemm_time()
        return Measured(int8 < float32, max(int8, float32) / min(int8, float32))

    key = f"int8 GEMM, {torch.backends.cpu.get_cpu_capability()}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    return bool(measured_choice(key, measure))


GEMM_SHAPES = ((128, 256, 768), (128, 1024, 256))  # (rows, inner, columns) of a lockstep step's layers


def _gemm_seconds(multiply, operands) -> float:
    import time

    for a, b in operands:
        multiply(a, b)  # warm up (kernel selection, first-touch)
    start = time.perf_counter()
    for _ in range(3):
        for a, b in operands:
            multiply(a, b)
    return time.perf_counter() - start


def _int8_gemm_time() -> float:
    import torch

    operands = [(torch.ones(m, k, dtype=torch.int8), torch.ones(k, n, dtype=torch.int8)) for m, k, n in GEMM_SHAPES]
    return _gemm_seconds(torch._int_mm, operands)


def _float32_gemm_time() -> float:
    import torch

    operands = [(torch.ones(m, k), torch.ones(k, n)) for m, k, n in GEMM_SHAPES]
    return _gemm_seconds(torch.matmul, operands)


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
