"""The native library's load-time check, and the checked library itself (``load``).

A kernel is kept only where it gives numpy's exact integers: int8 and wide GEMMs on the extremes
and random values, at shapes with and without tails, at 1 and 2 threads, and a tiny llama's
passes and steps. A kernel that differs is never used (the next one down is tried); where not even
the portable one agrees, the library is NativeBroken and lmzip computes with numpy and torch (the
same integers, only slower).
"""

from __future__ import annotations

import functools
import os

import numpy as np

from ..integer.arithmetic import WIDE_ROWS
from ..integer.llama import RECIPES, IntLlama, IntLlamaStepper
from ..integer.ops import NumpyOps
from .binding import Int8Weight, NativeLibrary
from .toolchain import NativeBroken, NativeUnavailable, build
from .llama import NativeLlama
from .ops import NativeOps


def keep_the_best_agreeing_kernel(library: NativeLibrary) -> None:
    """Lower ``library.kernel`` to the best kernel that agrees with numpy; NativeBroken where none does."""
    while not agrees_with_numpy(library, library.kernel):
        if library.kernel == 0:
            raise NativeBroken("the native kernels failed their check against numpy")
        library.kernel -= 1


def agrees_with_numpy(library: NativeLibrary, kernel: int) -> bool:
    """The GEMMs, the wide GEMMs and a tiny llama on ``kernel`` give numpy's integers."""
    saved, library.kernel = library.kernel, kernel
    try:
        return gemm_agrees(library, kernel) and wide_gemm_agrees(library, kernel) and tiny_llama_agrees(library)
    finally:
        library.kernel = saved


def gemm_agrees(library: NativeLibrary, kernel: int) -> bool:
    rng = np.random.default_rng(0)
    # K = 96: a last 64 of the inner dimension with 32 weights (the VNNI tile's second half empty)
    for M, K, N in ((1, 576, 70), (5, 100, 9), (33, 1536, 130), (4, 64, 4), (3, 96, 7)):
        for a, w in ((np.full((M, K), 127.0) * rng.choice([-1, 1], (M, 1)),
                      np.full((K, N), 127) * rng.choice([-1, 1], (1, N))),
                     (rng.integers(-127, 128, (M, K)), rng.integers(-127, 128, (K, N)))):
            expected = (a.astype(np.int64) @ w.astype(np.int64)).astype(np.float32)
            weight = Int8Weight.from_columns(w.astype(np.int8))
            for threads in (1, 2):
                if not np.array_equal(library.gemm(a.astype(np.float32), weight, kernel, threads), expected):
                    return False
    return True


def wide_gemm_agrees(library: NativeLibrary, kernel: int) -> bool:
    """The wide GEMM (where the kernel has one) on the extremes (sums beyond 2^31 with K = 1,536)
    and random values, rounded as float64's exact sum rounded to float32."""
    rng = np.random.default_rng(2)
    limit = int(WIDE_ROWS)
    for M, K, N in ((1, 576, 70), (5, 1536, 9), (6, 100, 13), (7, 100, 13)):  # bands of 4, 1, 2 and 3 rows
        for a, w in ((np.full((M, K), limit) * rng.choice([-1, 1], (M, 1)),
                      np.full((K, N), 127) * rng.choice([-1, 1], (1, N))),
                     (rng.integers(-limit, limit + 1, (M, K)), rng.integers(-127, 128, (K, N)))):
            expected = (a.astype(np.int64) @ w.astype(np.int64)).astype(np.float64).astype(np.float32)
            weight = Int8Weight.from_columns(w.astype(np.int8))
            for threads in (1, 2):
                got = library.gemm_wide(a, weight, kernel, threads)
                if got is not None and not np.array_equal(got, expected):
                    return False
    return True


def tiny_llama_agrees(library: NativeLibrary) -> bool:
    """A random one-layer llama with SmolLM2's head shape (64 wide, 3 query heads a KV head): its
    native pass and steps against numpy's, on the library's current kernel."""
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


@functools.cache
def load() -> NativeLibrary:
    """The checked library, built on first use; raises NativeUnavailable saying why not."""
    if os.environ.get("LMZIP_NATIVE", "1") == "0":
        raise NativeUnavailable("turned off by LMZIP_NATIVE=0")
    try:
        library = NativeLibrary(build(), threads=len(os.sched_getaffinity(0)))
    except OSError as e:
        raise NativeUnavailable(f"the native int8 GEMM does not load: {e}") from None
    keep_the_best_agreeing_kernel(library)
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
