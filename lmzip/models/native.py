"""The native backend of the integer models, in C, with the very integers numpy and torch give:

- ``NativeOps``: numpy for the elementwise work, int8_gemm.c for the products (AVX2, AVX-512 VNNI
  or portable C, chosen at run time) with int8 weights (``Int8Weight``);
- ``NativeLlama``: the integer llama's whole layer stack in one call of llama_step.c, over any
  (stream, position, token) rows (``NativeLlamaRows``): steps, whole-chunk passes, guessed positions.

The library is compiled from the C sources shipped in the package, once per machine, into the
lmzip cache (``make install`` does it ahead of time), and checked against numpy when it loads.
Where there is no C compiler, or not even its portable kernel passes the check, the native backend
is simply absent: the integer models compute with numpy and torch instead, which give the very
same integers (so the same files), only slower.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .intops import NumpyOps

SOURCES = [Path(__file__).with_name(name) for name in ("int8_gemm.c", "llama_step.c")]
# IEEE's arithmetic, one rounding an operation: no -ffast-math, no FMA contraction
FLAGS = ["-O3", "-shared", "-fPIC", "-ffp-contract=off", "-fno-fast-math"]
KERNELS = ("portable C", "AVX2", "AVX-512 VNNI")
MAX_INNER = 65536  # 127 * 127 * 65536 < 2^31: the int32 sums cannot overflow
_POINTER = ctypes.c_void_p


class NativeUnavailable(RuntimeError):
    """Why the native library cannot be used here (one line)."""


class NativeBroken(NativeUnavailable):
    """The library was compiled here and is wrong: it does not build, or even its portable kernel
    disagrees with numpy. lmzip still works without it; its tests fail rather than skip."""


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
    def from_columns(cls, w, library: "NativeLibrary | None" = None) -> "Int8Weight":
        """Packed by ``library`` where given (lmz_pack_panels: SmolLM2's head in 0.04 s against
        numpy's 0.54, AVX2 EPYC), else by numpy: the same panels (tests compare them; the library's
        load-time check runs a model packed by it)."""
        w = np.asarray(w)
        if w.dtype != np.int8:
            if np.abs(w).max(initial=0) > 127 or not np.array_equal(w, np.round(w)):
                raise ValueError("an int8 weight holds integers in [-127, 127]")
            w = w.astype(np.int8)
        if library is not None:
            return library._packed(w)
        K, N = w.shape
        G, S = cls.GROUP, cls.STEP
        rows = np.zeros((-(-N // G) * G, -(-K // S) * S), np.int8)  # (out, in), zero padded
        rows[:N, :K] = w.T
        panels = rows.reshape(rows.shape[0] // G, G, rows.shape[1] // S, S).transpose(0, 2, 1, 3)
        return cls(np.ascontiguousarray(panels).reshape(-1), w.sum(axis=0, dtype=np.int32), (N, K))


class NativeLibrary:
    def __init__(self, path: Path, threads: int):
        self.path, self.threads = path, threads
        self.lib = ctypes.CDLL(str(path))
        self.lib.lmz_best_kernel.restype = ctypes.c_int
        self.lib.lmz_int8_gemm.restype = ctypes.c_int
        self.lib.lmz_int8_gemm.argtypes = [_POINTER, ctypes.c_int64, ctypes.c_int64, _POINTER, ctypes.c_int64,
                                           _POINTER, _POINTER, _POINTER, ctypes.c_int, ctypes.c_int]
        self.lib.lmz_gemm_wide.restype = ctypes.c_int
        self.lib.lmz_gemm_wide.argtypes = [_POINTER, ctypes.c_int64, ctypes.c_int64, _POINTER, ctypes.c_int64,
                                           _POINTER, ctypes.c_int, ctypes.c_int]
        self.lib.lmz_pack_panels.restype = None
        self.lib.lmz_pack_panels.argtypes = [_POINTER, ctypes.c_int64, ctypes.c_int64, _POINTER, _POINTER]
        self.lib.lmz_llama_hidden.restype = ctypes.c_int
        self.lib.lmz_llama_hidden.argtypes = [_POINTER, ctypes.c_int64, _POINTER, _POINTER, _POINTER, _POINTER]
        self.lib.lmz_llama_frequencies.restype = ctypes.c_int
        self.lib.lmz_llama_frequencies.argtypes = [_POINTER, ctypes.c_int64, _POINTER, _POINTER]
        self.kernel = self.lib.lmz_best_kernel()

    def _packed(self, w: np.ndarray) -> Int8Weight:
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

    def self_check(self) -> None:
        """Keep the best kernel that gives numpy's exact integers on the extremes (every value
        +-127) and random values, at shapes with and without tails, at 1 and 2 threads: a kernel
        that differs is never used (the next one down is tried). Raises NativeUnavailable when not
        even the portable one agrees."""
        while not self._agrees_with_numpy(self.kernel):
            if self.kernel == 0:
                raise NativeBroken("the native kernels failed their check against numpy")
            self.kernel -= 1

    def _agrees_with_numpy(self, kernel: int) -> bool:
        saved, self.kernel = self.kernel, kernel
        try:
            return self._gemm_agrees(kernel) and self._wide_gemm_agrees(kernel) and _tiny_llama_agrees(self)
        finally:
            self.kernel = saved

    def _gemm_agrees(self, kernel: int) -> bool:
        rng = np.random.default_rng(0)
        # K = 96: a last 64 of the inner dimension with 32 weights (the VNNI tile's second half empty)
        for M, K, N in ((1, 576, 70), (5, 100, 9), (33, 1536, 130), (4, 64, 4), (3, 96, 7)):
            for a, w in ((np.full((M, K), 127.0) * rng.choice([-1, 1], (M, 1)),
                          np.full((K, N), 127) * rng.choice([-1, 1], (1, N))),
                         (rng.integers(-127, 128, (M, K)), rng.integers(-127, 128, (K, N)))):
                expected = (a.astype(np.int64) @ w.astype(np.int64)).astype(np.float32)
                weight = Int8Weight.from_columns(w.astype(np.int8))
                for threads in (1, 2):
                    if not np.array_equal(self.gemm(a.astype(np.float32), weight, kernel, threads), expected):
                        return False
        return True

    def _wide_gemm_agrees(self, kernel: int) -> bool:
        """The wide GEMM (where the kernel has one) on the extremes (sums beyond 2^31 with K = 1,536)
        and random values, rounded as float64's exact sum rounded to float32."""
        from .intgpt import WIDE_ROWS

        rng = np.random.default_rng(2)
        limit = int(WIDE_ROWS)
        for M, K, N in ((1, 576, 70), (5, 1536, 9), (6, 100, 13), (7, 100, 13)):  # bands of 4, 1, 2 and 3 rows
            for a, w in ((np.full((M, K), limit) * rng.choice([-1, 1], (M, 1)),
                          np.full((K, N), 127) * rng.choice([-1, 1], (1, N))),
                         (rng.integers(-limit, limit + 1, (M, K)), rng.integers(-127, 128, (K, N)))):
                expected = (a.astype(np.int64) @ w.astype(np.int64)).astype(np.float64).astype(np.float32)
                weight = Int8Weight.from_columns(w.astype(np.int8))
                for threads in (1, 2):
                    got = self.gemm_wide(a, weight, kernel, threads)
                    if got is not None and not np.array_equal(got, expected):
                        return False
        return True


def _tiny_llama_agrees(library: NativeLibrary) -> bool:
    """A random one-layer llama with SmolLM2's head shape (64 wide, 3 query heads a KV head): its
    native pass and steps against numpy's, on the library's current kernel."""
    from .intllama import RECIPES, IntLlama, IntLlamaStepper

    rng = np.random.default_rng(1)
    C, F, V, T = 192, 64, 40, 12
    config = dict(num_hidden_layers=1, hidden_size=C, intermediate_size=F, num_attention_heads=3,
                  num_key_value_heads=1, max_position_embeddings=T, rms_norm_eps=1e-5, vocab_size=V)
    w = {"embed.e": rng.integers(-3000, 3000, (V, C)).astype(np.int32),
         "rope.cos": rng.uniform(-1, 1, (T, 64)).astype(np.float32),
         "rope.sin": rng.uniform(-1, 1, (T, 64)).astype(np.float32),
         "sigmoid": np.linspace(0, 1, 8193, dtype=np.float32),
         "attention_exp": np.append(np.round(2.0 ** 20 * np.exp(-np.arange(200) / 128)), 0).astype(np.float32),
         "exp_table": np.round(2.0 ** 24 * np.exp(-np.arange(300) / 128)).astype(np.int64)}
    for name in ("layers.0.norm1.g", "layers.0.norm2.g", "norm_f.g"):
        w[name] = rng.integers(2000, 6000, C).astype(np.float64)
    for name, (k, n) in {"layers.0.qkv": (C, 5 * 64), "layers.0.o": (C, C), "layers.0.gate_up": (C, 2 * F),
                         "layers.0.down": (F, C), "head": (C, V)}.items():
        w[f"{name}.w"] = rng.integers(-127, 128, (k, n)).astype(np.int8)
        w[f"{name}.s"] = rng.uniform(1e-4, 1e-3, n).astype(np.float32)
        w[f"{name}.sr"] = (w[f"{name}.s"] * 1024).astype(np.float32)
    idx = rng.integers(0, V, (2, T))
    reference = IntLlama(w, config, NumpyOps())
    on_native = NativeLlama(IntLlama(w, config, NativeOps(library)))
    for recipe in RECIPES:
        reference.use_recipe(recipe)
        on_native.use_recipe(recipe)
        if not np.array_equal(on_native.forward(idx), reference.forward(idx)):
            return False
        steps, reference_steps = on_native.stepper(2, T), IntLlamaStepper(reference, 2, T)
        if not all(np.array_equal(steps.step(idx[:, t]), reference_steps.step(idx[:, t])) for t in range(T)):
            return False
    return True


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    return None


def library_path() -> Path:
    """Where this source's library lives in the lmzip cache (named by the source and flags)."""
    from .base import cache_dir

    digest = hashlib.sha256(b"".join(p.read_bytes() for p in SOURCES) + " ".join(FLAGS).encode()).hexdigest()[:16]
    return cache_dir() / "native" / f"lmzip-{digest}.so"


def build() -> Path:
    """Compile the library into the cache (atomically: a temporary file renamed into place)."""
    target = library_path()
    if target.exists():
        return target
    compiler = _compiler()
    if compiler is None:
        raise NativeUnavailable("no C compiler (cc, gcc or clang) to build the native int8 GEMM")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        for openmp in (["-fopenmp"], []):  # threads where OpenMP is installed, else one thread
            result = subprocess.run([compiler, *FLAGS, *openmp, "-o", tmp, *map(str, SOURCES), "-lm"], capture_output=True, text=True)
            if result.returncode == 0:
                os.replace(tmp, target)
                return target
        last = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise NativeBroken(f"{compiler} could not build the native int8 GEMM: {last}")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@functools.cache
def load() -> NativeLibrary:
    """The checked library, built on first use; raises NativeUnavailable saying why not."""
    if os.environ.get("LMZIP_NATIVE", "1") == "0":
        raise NativeUnavailable("turned off by LMZIP_NATIVE=0")
    try:
        library = NativeLibrary(build(), threads=len(os.sched_getaffinity(0)))
    except OSError as e:
        raise NativeUnavailable(f"the native int8 GEMM does not load: {e}") from None
    library.self_check()
    return library


def status() -> tuple[bool, str]:
    """(usable, one line saying which kernel or why not), for ``lmzip --version``."""
    try:
        library = load()
    except NativeUnavailable as e:
        return False, str(e)
    return True, f"{library.kernel_name} kernel, {library.threads} threads, {library.path}"


def available() -> bool:
    return status()[0]


class NativeOps(NumpyOps):
    """numpy for the elementwise work, the native library for int8 GEMMs with int8 weights."""

    integer_gemm = True  # one exact int32 sum per output: no inner dimension needs splitting

    def __init__(self, library: NativeLibrary | None = None):
        self.library = library or load()

    def weight(self, w):
        return Int8Weight.from_columns(w, self.library)

    def int8_matmul(self, values, weight):
        """(M, K) integer-valued float32 @ an Int8Weight: float32, exact."""
        return self.library.gemm(values, weight)

    def exact_int8_matmul(self, values, weight):
        """The same as float64: the int32 sums, whatever the inner dimension."""
        return self.library.gemm(values, weight, sums=True).astype(np.float64)


# -- the integer llama's step in one call (llama_step.c) ---------------------------------------

_I64, _F64 = ctypes.c_int64, ctypes.c_double


class _Linear(ctypes.Structure):
    _fields_ = [("w", _POINTER), ("sums", _POINTER), ("scale", _POINTER)]


class _Layer(ctypes.Structure):
    _fields_ = [("norm1", _POINTER), ("norm2", _POINTER), ("qkv", _Linear), ("o", _Linear), ("gate_up", _Linear),
                ("down", _Linear), ("qkv_bias", _POINTER), ("q_norm", _POINTER), ("k_norm", _POINTER),
                ("post_attention", _POINTER), ("post_ffw", _POINTER), ("rope_cos", _POINTER), ("rope_sin", _POINTER),
                ("window", _I64), ("k", _POINTER), ("v", _POINTER), ("ks", _POINTER), ("vs", _POINTER),
                ("vmax", _POINTER)]


class _Model(ctypes.Structure):
    _fields_ = [(name, _I64) for name in ("C", "H", "KV", "D", "F", "V", "n_layer", "length", "streams")] + [
        ("norm_eps", _F64), ("float_norm_eps", _F64), ("score_factor", _F64), ("residual_limit", _F64),
        ("residual_bits", _I64), ("square_shift", _I64),
        ("gain_bits", _I64), ("attention_one", _I64), ("sigmoid_steps", _I64), ("sigmoid_range", _I64),
        ("embed16", _POINTER), ("embed32", _POINTER), ("gate", _POINTER),
        ("attention_exp", _POINTER), ("attention_last", _F64), ("norm_f", _POINTER), ("head", _Linear),
        ("table_plus_one", _POINTER), ("table_last", _F64), ("exp_steps", _F64), ("layers", _POINTER),
        ("kernel", ctypes.c_int), ("threads", ctypes.c_int), ("wide_levels", _F64)]


def _pointer(array: np.ndarray, dtype) -> int:
    if array.dtype != dtype or not array.flags.c_contiguous:
        raise TypeError(f"native step: expected a contiguous {np.dtype(dtype)} array, got {array.dtype}")
    return array.ctypes.data


class NativeLlamaRows:
    """An integer llama's rows -- (stream, position, token) -- through llama_step.c with an int8 KV
    cache of ``n_streams`` x ``length`` positions: the frequencies IntLlamaStepper and IntLlama.hidden
    give, bit for bit (tests compare them), however the positions are grouped into calls. It is a
    stepper (``step``) as well: one row per stream at the next position."""

    def __init__(self, model, n_streams: int, length: int):
        from . import intllama as L
        from .intgpt import EXP_STEPS_PER_NAT

        self.model, self.pos, self.length, self.n_streams = model, 0, length, n_streams
        self.vocab, self.width = model.cfg["vocab_size"], model.cfg["hidden_size"]
        self.filled = np.zeros(n_streams, dtype=np.int64)  # positions cached, per stream
        library, w = model.ops.library, model.w
        KV, D = model.n_kv, model.head_dim
        # np.zeros maps its pages lazily: a long cache costs memory only as it fills
        self.k = [np.zeros((n_streams, KV, length, D), np.int8) for _ in range(model.n_layer)]
        self.v = [np.zeros((n_streams, KV, length, D), np.int8) for _ in range(model.n_layer)]
        self.ks, self.vs, self.vmax = ([np.zeros((n_streams, KV, length), np.float32) for _ in range(model.n_layer)]
                                       for _ in range(3))

        embed = w["embed.e"]  # int16 where it fits (runtime_arrays), else int32
        layers = (_Layer * model.n_layer)()
        for i in range(model.n_layer):
            layers[i] = self._layer(i)
        self._layers = layers  # the struct points into it: keep it alive
        self._struct = _Model(
            C=self.width, H=model.n_head, KV=KV, D=D, F=model.cfg["intermediate_size"], V=self.vocab,
            n_layer=model.n_layer, length=length, streams=n_streams, norm_eps=model.norm_eps,
            float_norm_eps=model.float_norm_eps, score_factor=float(EXP_STEPS_PER_NAT * model.attention_scale),
            residual_limit=L.RESIDUAL_LIMIT, residual_bits=model.residual_bits, square_shift=L.SQUARE_SHIFT,
            gain_bits=model.gain_bits, attention_one=L.ATTENTION_ONE, sigmoid_steps=L.SIGMOID_STEPS,
            sigmoid_range=L.SIGMOID_RANGE,
            embed16=_pointer(embed, np.int16) if embed.dtype == np.int16 else None,
            embed32=_pointer(embed, np.int32) if embed.dtype != np.int16 else None,
            gate=_pointer(model.gate_table, np.float32),
            attention_exp=_pointer(model.attention_exp, np.float32), attention_last=model.attention_last,
            norm_f=_pointer(w["norm_f.g"], np.float64), head=self._linear("head", "s"),
            table_plus_one=_pointer(model.table_plus_one, np.int32), table_last=model.table_last,
            exp_steps=float(EXP_STEPS_PER_NAT), layers=ctypes.cast(layers, _POINTER),
            kernel=library.kernel, threads=library.threads)
        self._lib = library.lib

    def _linear(self, name: str, scale: str) -> _Linear:
        weight, w = self.model.w[f"{name}.w"], self.model.w
        return _Linear(_pointer(weight.panels, np.int8), _pointer(weight.sums, np.int32),
                       _pointer(w[f"{name}.{scale}"], np.float32))

    def _layer(self, i: int) -> _Layer:
        """Layer i's weights and this cache's arrays, for llama_step.c."""
        model, w, p = self.model, self.model.w, f"layers.{i}"
        local = i in model.local_layers
        tables = "rope_local" if local else "rope"
        def into_residual(norm):  # a sublayer normed before it joins the residual (gemma3): real units till then
            return "s" if f"{p}.{norm}.hg" in w else "sr"

        def optional(name):  # an architecture's extra float32 vector, or NULL
            return _pointer(w[name], np.float32) if name in w else None

        return _Layer(_pointer(w[f"{p}.norm1.g"], np.float64), _pointer(w[f"{p}.norm2.g"], np.float64),
                      self._linear(f"{p}.qkv", "s"), self._linear(f"{p}.o", into_residual("post_attention")),
                      self._linear(f"{p}.gate_up", "s"), self._linear(f"{p}.down", into_residual("post_ffw")),
                      optional(f"{p}.qkv.b"), optional(f"{p}.q_norm.hg"), optional(f"{p}.k_norm.hg"),
                      optional(f"{p}.post_attention.hg"), optional(f"{p}.post_ffw.hg"),
                      _pointer(w[f"{tables}.cos"], np.float32), _pointer(w[f"{tables}.sin"], np.float32),
                      model.window if local else 0, _pointer(self.k[i], np.int8), _pointer(self.v[i], np.int8),
                      _pointer(self.ks[i], np.float32), _pointer(self.vs[i], np.float32),
                      _pointer(self.vmax[i], np.float32))

    def hidden(self, streams, positions, tokens) -> np.ndarray:
        """The final residual stream (n, C) float64 of n rows. A stream's rows come in consecutive
        positions starting at most at its cached length (earlier: the later positions are redone,
        as a decoder does after a wrong draft)."""
        streams, positions, tokens = (np.ascontiguousarray(a, dtype=np.int64) for a in (streams, positions, tokens))
        self._check(streams, positions, tokens)
        x = np.empty((len(tokens), self.width), dtype=np.float64)
        self._follow_recipe()
        if self._lib.lmz_llama_hidden(ctypes.byref(self._struct), len(tokens), streams.ctypes.data,
                                      positions.ctypes.data, tokens.ctypes.data, x.ctypes.data):
            raise MemoryError("the native llama ran out of memory")
        for stream, position in zip(streams, positions):
            self.filled[stream] = position + 1
        return x

    def frequencies(self, x: np.ndarray) -> np.ndarray:
        """(n, C) final residual -> (n, V) int32 frequencies."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        freqs = np.empty((len(x), self.vocab), dtype=np.int32)
        self._follow_recipe()
        if self._lib.lmz_llama_frequencies(ctypes.byref(self._struct), len(x), x.ctypes.data, freqs.ctypes.data):
            raise MemoryError("the native llama ran out of memory")
        return freqs

    def _follow_recipe(self) -> None:
        """The model's recipe as it is now (a decoder adopts each file's): wide rows' largest value, or 0."""
        self._struct.wide_levels = self.model.row_levels if self.model.wide_rows else 0.0

    def step(self, tokens: np.ndarray) -> np.ndarray:
        """The first len(tokens) streams (finished streams are dropped from the end) -> frequencies."""
        n = len(tokens)
        x = self.hidden(np.arange(n), np.full(n, self.pos), tokens)
        self.pos += 1
        return self.frequencies(x)

    def join(self, n_streams: int, end: int | None = None) -> None:
        """Streams 1 .. n_streams-1 take stream 0's cache up to position ``end`` (default: the
        current step's; rows computed ahead, under guesses, are not its context yet)."""
        self.take_context(self, slice(1, n_streams), self.pos if end is None else end)

    def take_context(self, source: "NativeLlamaRows", streams: slice, end: int) -> None:
        """``streams`` of this cache take ``source``'s stream 0 up to position ``end``."""
        for mine, theirs in zip((self.k, self.v, self.ks, self.vs, self.vmax),
                                (source.k, source.v, source.ks, source.vs, source.vmax)):
            for layer, source_layer in zip(mine, theirs):
                layer[streams, :, :end] = source_layer[0:1, :, :end]
        self.filled[streams] = end

    def _check(self, streams, positions, tokens) -> None:
        """What would make the native code read or write out of bounds, or see a cache it never filled."""
        if not len(streams) == len(positions) == len(tokens):
            raise ValueError("streams, positions and tokens differ in length")
        if not len(tokens):
            return
        if tokens.min() < 0 or tokens.max() >= self.vocab:
            raise ValueError("a token outside the model's vocabulary")
        if streams.min() < 0 or streams.max() >= self.n_streams:
            raise ValueError("a stream beyond the cache's streams")
        if positions.min() < 0 or positions.max() >= self.length:
            raise ValueError("a position beyond the cache (chunk longer than the KV cache)")
        expected = {}
        for stream, position in zip(streams.tolist(), positions.tolist()):
            if position > expected.get(stream, self.filled[stream]):
                raise ValueError(f"stream {stream} skips to position {position}")
            expected[stream] = position + 1


class NativeLlama:
    """An IntLlama on the native backend whose whole-chunk passes (``hidden``, ``frequencies``, as
    IntLlama's) and steps (``stepper``) run in llama_step.c: the same integers, one call a layer
    stack instead of ~30 numpy operations a layer."""

    def __init__(self, model):
        if model.attention_exp[-1] != 0:
            # the native attention skips the positions numpy masks: equal only where they weigh 0
            raise ValueError("an attention table that does not end in 0")
        if model.head_dim > 512:  # llama_step.c keeps a head's rotation and sums on the stack
            raise ValueError(f"heads of {model.head_dim} wide (the native llama takes up to 512)")
        self.model, self.ops, self.cfg, self.context = model, model.ops, model.cfg, model.context
        self._head = NativeLlamaRows(model, 1, 1)  # the head needs no cache

    def hidden(self, idx: np.ndarray) -> np.ndarray:
        """idx (B, T) from position 0 -> the final residual stream (B, T, C)."""
        B, T = idx.shape
        out = np.empty((B, T, self.cfg["hidden_size"]))
        for b in range(B):
            out[b] = NativeLlamaRows(self.model, 1, T).hidden(np.zeros(T), np.arange(T), idx[b])
        return out

    def lead_rows(self, idx: np.ndarray) -> NativeLlamaRows:
        """A one-stream cache of the positions of ``idx`` (from position 0), for ``hidden_after``."""
        rows = NativeLlamaRows(self.model, 1, len(idx))
        rows.hidden(np.zeros(len(idx)), np.arange(len(idx)), idx)
        return rows

    def hidden_after(self, lead: NativeLlamaRows, idx: np.ndarray) -> np.ndarray:
        """The final residual stream (T, C) of the positions after ``lead``'s, reading ``idx`` (T,):
        what ``hidden`` gives for them on the lead's inputs followed by ``idx``, without computing
        the lead's positions again (a block's chunks share them: layout.py)."""
        start = lead.length
        rows = NativeLlamaRows(self.model, 1, start + len(idx))
        rows.take_context(lead, slice(0, 1), start)
        return rows.hidden(np.zeros(len(idx)), np.arange(start, start + len(idx)), idx)

    def frequencies(self, x: np.ndarray) -> np.ndarray:
        return self._head.frequencies(x.reshape(-1, x.shape[-1])).reshape(*x.shape[:-1], -1)

    def use_recipe(self, recipe: int) -> None:
        self.model.use_recipe(recipe)  # its rows read the model's recipe at each call

    def forward(self, idx: np.ndarray) -> np.ndarray:
        return self.frequencies(self.hidden(idx))

    def stepper(self, n_streams: int, n_steps: int) -> NativeLlamaRows:
        return NativeLlamaRows(self.model, n_streams, n_steps)
