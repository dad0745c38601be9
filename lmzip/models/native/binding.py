"""The ctypes binding of the native library: its functions' signatures, the int8 weights' panels,
and the integer llama's structs, checked field by field against the library's own at load."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..integer.adapt import STEP_LIMIT
from .toolchain import NativeBroken

KERNELS = ("portable C", "AVX2", "AVX-512 VNNI")
MAX_INNER = 65536  # 127 * 127 * 65536 < 2^31: the int32 sums cannot overflow
POINTER, I64, F64 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double
# lmzip_native.h's widest head and the statuses of lmz_llama_hidden and lmz_llama_frequencies
# (checked against the library's own at load, with the structs)
MAX_HEAD_DIM, OUT_OF_RANGE, NO_MEMORY, HEAD_TOO_WIDE = 512, -1, -2, -3


@dataclass
class Int8Weight:
    """An (in, out) int8 weight in int8_gemm.c's panels -- the outputs in groups of GROUP, each
    group's inner dimension in steps of STEP, the group's columns one after another within a step,
    zeros where the shape does not fill a group or a step -- and each output's weight sum (the
    AVX-512 VNNI kernel subtracts 128 times it)."""
    panels: np.ndarray  # int8, (out padded to GROUP) x (in padded to STEP) values
    sums: np.ndarray  # (out,) int32
    shape: tuple[int, int]  # (out, in)

    GROUP, STEP = 4, 32  # int8_gemm.c's

    @classmethod
    def from_columns(cls, w, library: NativeLibrary | None = None) -> Int8Weight:
        """Packed by ``library`` where given (lmz_pack_panels: SmolLM2's head in 0.04 s against
        numpy's 0.54, AVX2 EPYC), else by numpy: the same panels (tests compare them; the library's
        load-time check runs a model packed by it)."""
        w = np.asarray(w)
        if w.dtype != np.int8:
            if np.abs(w).max(initial=0) > 127 or not np.array_equal(w, np.round(w)):
                raise ValueError("an int8 weight holds integers in [-127, 127]")
            w = w.astype(np.int8)
        if library is not None:
            return library.packed(w)
        K, N = w.shape
        G, S = cls.GROUP, cls.STEP
        rows = np.zeros((-(-N // G) * G, -(-K // S) * S), np.int8)  # (out, in), zero padded
        rows[:N, :K] = w.T
        panels = rows.reshape(rows.shape[0] // G, G, rows.shape[1] // S, S).transpose(0, 2, 1, 3)
        return cls(np.ascontiguousarray(panels).reshape(-1), w.sum(axis=0, dtype=np.int32), (N, K))


# -- the integer llama's structs (lmzip_native.h), in its declaration order ----------------------

class LinearStruct(ctypes.Structure):
    _fields_ = [("w", POINTER), ("sums", POINTER), ("scale", POINTER)]


class LayerStruct(ctypes.Structure):
    _fields_ = [("norm1", POINTER), ("norm2", POINTER), ("qkv", LinearStruct), ("o", LinearStruct),
                ("gate_up", LinearStruct), ("down", LinearStruct), ("qkv_bias", POINTER), ("q_norm", POINTER),
                ("k_norm", POINTER), ("post_attention", POINTER), ("post_ffw", POINTER), ("rope_cos", POINTER),
                ("rope_sin", POINTER), ("window", I64), ("k", POINTER), ("v", POINTER), ("ks", POINTER),
                ("vs", POINTER), ("vmax", POINTER)]


class ModelStruct(ctypes.Structure):
    _fields_ = [(name, I64) for name in ("C", "H", "KV", "D", "F", "V", "n_layer", "length", "streams")] + [
        ("norm_eps", F64), ("float_norm_eps", F64), ("score_factor", F64), ("residual_limit", F64),
        ("residual_bits", I64), ("square_shift", I64),
        ("gain_bits", I64), ("attention_one", I64), ("sigmoid_steps", I64), ("sigmoid_range", I64),
        ("embed16", POINTER), ("embed32", POINTER), ("gate", POINTER),
        ("attention_exp", POINTER), ("attention_last", F64), ("norm_f", POINTER), ("head", LinearStruct),
        ("table_plus_one", POINTER), ("table_last", F64), ("exp_steps", F64), ("layers", POINTER),
        ("kernel", ctypes.c_int), ("threads", ctypes.c_int), ("wide_levels", F64), ("head_bias", POINTER)]


STRUCTS = (LinearStruct, LayerStruct, ModelStruct)


def binding_layout() -> list[int]:
    """What lmz_layout reports, as this binding has it: each struct's size, then its fields' offsets
    in declaration order; then the header's limits and statuses."""
    out = []
    for struct in STRUCTS:
        out += [ctypes.sizeof(struct)] + [getattr(struct, name).offset for name, _ in struct._fields_]
    return out + [MAX_HEAD_DIM, OUT_OF_RANGE, NO_MEMORY, HEAD_TOO_WIDE, STEP_LIMIT]


def pointer(array: np.ndarray, dtype) -> int:
    """The address of a contiguous array of ``dtype`` (anything else would be read wrongly)."""
    if array.dtype != dtype or not array.flags.c_contiguous:
        raise TypeError(f"native step: expected a contiguous {np.dtype(dtype)} array, got {array.dtype}")
    return array.ctypes.data


class NativeLibrary:
    """The loaded library: its GEMMs, the kernel they run (the best one the load-time check keeps,
    check.py) and the threads they use."""

    def __init__(self, path: Path, threads: int):
        self.path, self.threads = path, threads
        self.lib = ctypes.CDLL(str(path))
        self._declare()
        self.check_layout()
        self.kernel = self.lib.lmz_best_kernel()

    def _declare(self) -> None:
        lib = self.lib
        lib.lmz_best_kernel.restype = ctypes.c_int
        lib.lmz_int8_gemm.restype = ctypes.c_int
        lib.lmz_int8_gemm.argtypes = [POINTER, I64, I64, POINTER, I64, POINTER, POINTER, POINTER, ctypes.c_int,
                                      ctypes.c_int]
        lib.lmz_gemm_wide.restype = ctypes.c_int
        lib.lmz_gemm_wide.argtypes = [POINTER, I64, I64, POINTER, I64, POINTER, ctypes.c_int, ctypes.c_int]
        lib.lmz_pack_panels.restype = None
        lib.lmz_pack_panels.argtypes = [POINTER, I64, I64, POINTER, POINTER]
        lib.lmz_llama_hidden.restype = ctypes.c_int
        lib.lmz_llama_hidden.argtypes = [POINTER, I64, POINTER, POINTER, POINTER, POINTER]
        lib.lmz_llama_frequencies.restype = ctypes.c_int
        lib.lmz_llama_frequencies.argtypes = [POINTER, I64, POINTER, POINTER]
        lib.lmz_layout.restype = I64
        lib.lmz_layout.argtypes = [POINTER, I64]

    def check_layout(self) -> None:
        """Raise NativeBroken where the library's structs differ from this binding's copy."""
        expected = binding_layout()
        got = np.zeros(len(expected) + 1, np.int64)  # one more: a field the binding lacks shows
        count = self.lib.lmz_layout(got.ctypes.data, len(got))
        if count != len(expected) or got[:count].tolist() != expected:
            raise NativeBroken("the native library's structs or limits differ from native/binding.py's (sizes, offsets)")

    def packed(self, w: np.ndarray) -> Int8Weight:
        """An (in, out) int8 weight, already checked by Int8Weight.from_columns, in panels with its
        column sums."""
        w = np.ascontiguousarray(w, dtype=np.int8)
        (K, N), G, S = w.shape, Int8Weight.GROUP, Int8Weight.STEP
        panels = np.empty(-(-N // G) * G * (-(-K // S) * S), np.int8)
        sums = np.empty(N, np.int32)
        self.lib.lmz_pack_panels(w.ctypes.data, K, N, panels.ctypes.data, sums.ctypes.data)
        return Int8Weight(panels, sums, (N, K))

    def gemm(self, values: np.ndarray, weight: Int8Weight, kernel: int | None = None,
             threads: int | None = None, sums: bool = False) -> np.ndarray:
        """(M, K) float32 integers in [-127, 127] @ an (K, N) int8 weight -> (M, N) float32, exact
        (each int32 sum rounded once), or with ``sums`` the int32 sums themselves."""
        values = np.ascontiguousarray(values, dtype=np.float32)
        (M, K), N = values.shape, weight.shape[0]
        if K != weight.shape[1]:
            raise ValueError(f"inner dimensions differ: {K} and {weight.shape[1]}")
        if K > MAX_INNER:
            raise ValueError(f"an inner dimension over {MAX_INNER} could overflow the int32 sums")
        out = np.empty((M, N), dtype=np.int32 if sums else np.float32)
        status = self.lib.lmz_int8_gemm(values.ctypes.data, M, K, weight.panels.ctypes.data, N,
                                        weight.sums.ctypes.data, None if sums else out.ctypes.data,
                                        out.ctypes.data if sums else None,
                                        self.kernel if kernel is None else kernel, threads or self.threads)
        if status == -1:
            raise ValueError("int8 GEMM activations must be integers in [-127, 127]")
        if status:
            raise MemoryError("int8 GEMM: inner dimension too wide or out of memory")
        return out

    def gemm_wide(self, values: np.ndarray, weight: Int8Weight, kernel: int | None = None,
                  threads: int | None = None) -> np.ndarray | None:
        """(M, K) integers to +-127*128 @ an (K, N) int8 weight -> (M, N) float32, each exact sum
        rounded once; None where the kernel has no wide GEMM (llama_step.c then makes two int8
        products of each row: the same numbers)."""
        values = np.ascontiguousarray(values, dtype=np.int16)
        (M, K), N = values.shape, weight.shape[0]
        if K != weight.shape[1]:
            raise ValueError(f"inner dimensions differ: {K} and {weight.shape[1]}")
        out = np.empty((M, N), dtype=np.float32)
        status = self.lib.lmz_gemm_wide(values.ctypes.data, M, K, weight.panels.ctypes.data, N, out.ctypes.data,
                                        self.kernel if kernel is None else kernel, threads or self.threads)
        return None if status else out

    @property
    def kernel_name(self) -> str:
        return KERNELS[self.kernel]
