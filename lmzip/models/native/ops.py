"""The native array backend: numpy's elementwise work (integer/ops.py), the library's int8 GEMMs."""

from __future__ import annotations

import numpy as np

from ..integer.ops import NumpyOps
from .binding import Int8Weight, NativeLibrary


class NativeOps(NumpyOps):
    """numpy for the elementwise work, the native library for int8 GEMMs with int8 weights."""

    integer_gemm = True  # one exact int32 sum per output: no inner dimension needs splitting

    def __init__(self, library: NativeLibrary):
        self.library = library

    def weight(self, w):
        return Int8Weight.from_columns(w, self.library)

    def int8_matmul(self, values, weight):
        """(M, K) integer-valued float32 @ an Int8Weight: float32, exact."""
        return self.library.gemm(values, weight)

    def exact_int8_matmul(self, values, weight):
        """The same as float64: the int32 sums, whatever the inner dimension."""
        return self.library.gemm(values, weight, sums=True).astype(np.float64)
