"""The native backend (models/native: int8_gemm.c, attention.c, llama_step.c) gives the integers numpy gives: every
GEMM kernel this CPU runs at 1 and 2 threads, the integer GPT and llama on it, the llama's one-call
step against the numpy stepper and the whole-chunk pass, and the same files. Where it cannot be
built or is turned off, lmzip works without it."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lmzip
from lmzip.models import load_predictor, native
from lmzip.models.integer.gpt import IntGPT, IntStepper
from lmzip.models.integer.llama import RECIPES, IntLlama, IntLlamaStepper, runtime_arrays
from lmzip.models.integer.ops import NumpyOps
from lmzip.models.integer.stored import read_stored
from lmzip.models.native import toolchain
from lmzip.models.native.check import keep_the_best_agreeing_kernel

from conftest import CONFIG

try:
    LIBRARY, BROKEN = native.load(), None
except native.NativeBroken as why:  # compiled here and wrong: its tests fail (below), not skip
    LIBRARY, BROKEN = None, str(why)
except native.NativeUnavailable as why:  # no compiler, or turned off: the rest of the suite covers lmzip
    pytest.skip(f"native backend unavailable: {why}", allow_module_level=True)

GOLDEN = Path(__file__).resolve().parent / "golden"


def test_the_library_builds_and_passes_its_load_time_check():
    assert BROKEN is None, BROKEN


@pytest.fixture(autouse=True)
def _a_library_to_test(request):
    """Every other test needs the library; where it is broken, the test above says why."""
    if BROKEN is not None and request.function is not test_the_library_builds_and_passes_its_load_time_check:
        pytest.skip("the native library is broken here: see test_the_library_builds_and_passes_its_load_time_check")


@pytest.mark.parametrize("M,K,N", [(1, 576, 70), (3, 100, 7), (4, 64, 128), (7, 33, 65), (33, 1536, 130),
                                   (70, 95, 3)])
def test_every_kernel_gives_numpys_integers(M, K, N):
    """Tiles of 4, 3, 2 and 1 rows, column blocks with remainders, K tails of every kernel's width, the
    extremes (+-127 everywhere: the largest sums, and vpmaddubsw's worst pairs) and random values."""
    rng = np.random.default_rng(M * K + N)
    signs = rng.choice([-1, 1], (M, 1)), rng.choice([-1, 1], (1, N))
    cases = [(np.full((M, K), 127) * signs[0], np.full((K, N), 127) * signs[1]),
             (np.full((M, K), -127), np.full((K, N), 127)),
             (rng.integers(-127, 128, (M, K)), rng.integers(-127, 128, (K, N)))]
    for a, w in cases:
        expected = (a.astype(np.int64) @ w.astype(np.int64)).astype(np.float32)
        weight = native.Int8Weight.from_columns(w.astype(np.int8))
        for kernel in range(LIBRARY.kernel + 1):
            for threads in (1, 2):
                got = LIBRARY.gemm(a.astype(np.float32), weight, kernel, threads)
                np.testing.assert_array_equal(got, expected, err_msg=f"{native.KERNELS[kernel]}, {threads} threads")
                sums = LIBRARY.gemm(a.astype(np.float32), weight, kernel, threads, sums=True)  # wide rows' halves
                assert sums.dtype == np.int32
                np.testing.assert_array_equal(sums, a.astype(np.int64) @ w.astype(np.int64))


@pytest.mark.parametrize("M,K,N", [(1, 576, 70), (2, 1536, 9), (5, 33, 66), (7, 64, 13), (9, 100, 130), (3, 8240, 5)])
def test_the_wide_gemm_gives_the_exact_sums_rounded_once(M, K, N):
    """Recipe 2's rows (to +-127*128) times int8 weights, where the kernel has a wide GEMM (AVX2):
    tiles of 4, 3, 2 and 1 rows, K tails, the extremes (sums beyond 2^31), an inner dimension past one
    8,192 block of int32 lanes, and random values."""
    from lmzip.models.integer.arithmetic import WIDE_ROWS

    limit = int(WIDE_ROWS)
    rng = np.random.default_rng(M + K + N)
    cases = [(np.full((M, K), limit) * rng.choice([-1, 1], (M, 1)), np.full((K, N), 127) * rng.choice([-1, 1], (1, N))),
             (rng.integers(-limit, limit + 1, (M, K)), rng.integers(-127, 128, (K, N)))]
    ran = False
    for a, w in cases:
        expected = (a.astype(np.int64) @ w.astype(np.int64)).astype(np.float64).astype(np.float32)
        weight = native.Int8Weight.from_columns(w.astype(np.int8))
        for kernel in range(LIBRARY.kernel + 1):
            for threads in (1, 2):
                got = LIBRARY.gemm_wide(a, weight, kernel, threads)
                if got is not None:
                    ran = True
                    np.testing.assert_array_equal(got, expected, err_msg=f"{native.KERNELS[kernel]}, {threads} threads")
    assert ran or LIBRARY.kernel != 1  # an AVX2 machine has the wide GEMM
    assert LIBRARY.gemm_wide(cases[1][0], native.Int8Weight.from_columns(cases[1][1].astype(np.int8)), 0) is None


@pytest.mark.parametrize("K,N", [(1, 1), (31, 5), (33, 4), (64, 7), (576, 70), (100, 130)])
def test_the_library_packs_the_panels_numpy_packs(K, N):
    """lmz_pack_panels: the same panels, padding and column sums as numpy's packing, at the
    extremes and at shapes that fill neither a step of 32 nor a group of 4."""
    rng = np.random.default_rng(K * N)
    for w in (rng.integers(-127, 128, (K, N)), np.full((K, N), -127)):
        by_numpy, by_library = native.Int8Weight.from_columns(w), native.Int8Weight.from_columns(w, LIBRARY)
        np.testing.assert_array_equal(by_library.panels, by_numpy.panels)
        np.testing.assert_array_equal(by_library.sums, by_numpy.sums)
        assert by_library.shape == by_numpy.shape


def test_the_best_kernel_this_cpu_runs_passes_the_load_time_check():
    """A kernel that disagrees with numpy is dropped at load time (below), and everything still
    agrees on the next one down: this is what fails when the best kernel's code is wrong."""
    assert LIBRARY.kernel == LIBRARY.lib.lmz_best_kernel(), f"{native.KERNELS[LIBRARY.kernel]} in use"


def test_a_kernel_that_disagrees_with_numpy_is_not_used(monkeypatch):
    library = native.NativeLibrary(LIBRARY.path, threads=2)
    real = library.gemm

    def wrong_but_portable(values, weight, kernel=None, threads=None):
        out = real(values, weight, kernel, threads)
        return out + 1 if kernel else out

    monkeypatch.setattr(library, "gemm", wrong_but_portable)
    keep_the_best_agreeing_kernel(library)
    assert library.kernel == 0
    monkeypatch.setattr(library, "gemm", lambda *a, **k: real(*a, **k) + 1)
    with pytest.raises(native.NativeBroken, match="failed their check against numpy"):
        keep_the_best_agreeing_kernel(library)


def test_a_library_whose_structs_differ_from_the_binding_is_not_used(monkeypatch):
    """The ctypes copy of the C structs is checked against the library's own sizes and offsets."""
    from lmzip.models.native import binding

    assert binding.binding_layout()[0] == 24  # Linear: three pointers
    real = binding.binding_layout
    monkeypatch.setattr(binding, "binding_layout", lambda: [real()[0], real()[1] + 8, *real()[2:]])  # a field moved
    with pytest.raises(native.NativeBroken, match="structs or limits differ"):
        native.NativeLibrary(LIBRARY.path, threads=2)
    monkeypatch.setattr(binding, "binding_layout", lambda: real()[:-1])  # a number the binding lacks
    with pytest.raises(native.NativeBroken, match="structs or limits differ"):
        native.NativeLibrary(LIBRARY.path, threads=2)


def test_activations_that_are_not_int8_integers_are_refused():
    weight = native.Int8Weight.from_columns(np.ones((4, 2), np.int8))
    for bad in (128.0, -128.0, 0.5, np.nan):
        with pytest.raises(ValueError, match="integers in \\[-127, 127\\]"):
            LIBRARY.gemm(np.full((1, 4), bad, np.float32), weight)
    with pytest.raises(ValueError, match="integers in \\[-127, 127\\]"):
        native.Int8Weight.from_columns(np.full((4, 2), 128.0))


def test_the_integer_gpt_computes_the_same_on_native():
    weights, config = read_stored(Path(lmzip.__file__).parent / "data" / "fast-portable")
    idx = np.random.default_rng(1).integers(0, config["vocab_size"], size=(2, 24))
    on_numpy, on_native = IntGPT(weights, config, NumpyOps()), IntGPT(weights, config, native.NativeOps(native.load()))
    np.testing.assert_array_equal(on_native.forward(idx), on_numpy.forward(idx))
    steppers = IntStepper(on_numpy, 2), IntStepper(on_native, 2)
    for t in range(6):
        np.testing.assert_array_equal(steppers[1].step(idx[:, t]), steppers[0].step(idx[:, t]))


# SmolLM2's head width (64, a multiple of 32: the AVX2 attention) and grouping (3 query heads a KV head)
WIDE = dict(CONFIG, hidden=192, heads=3, kv_heads=1)


# qwen3's heads: 128 wide, their 256 attention channels wider than the 96 of the residual stream;
# gemma3: six layers, five of them windowed (8 positions of the 40 the tests step through)
ARCHITECTURES = {"qwen2": CONFIG, "qwen3": dict(CONFIG, heads=2, kv_heads=1, head_dim=128),
                 "gemma3": dict(CONFIG, layers=6, heads=2, kv_heads=1, head_dim=64, window=8)}
# seven query heads a KV head: the AVX2 attention takes its heads three at a time (3 + 3 + 1)
SEVEN_HEADS = dict(CONFIG, hidden=448, heads=7, kv_heads=1)


@pytest.fixture(scope="module", params=["head_dim 24", "head_dim 64", "seven heads a KV head", "int32 embeddings",
                                        "qwen2", "qwen3", "gemma3"])
def tiny_llamas(request, tiny_int_llama, tmp_path_factory):
    """A tiny llama on numpy and on native (NativeLlama: passes and steps in llama_step.c); its heads
    as conftest's (24 wide: the portable attention) or as SmolLM2's (64: AVX2 where the CPU has it);
    its embeddings int16 as SmolLM2's, or beyond int16 (kept int32: the other path in C); qwen2's
    q/k/v biases; qwen3's q/k norms on heads wider than the residual stream over the heads; gemma3's
    windows, two RoPE tables, sublayer norms and GELU gates."""
    from conftest import write_tiny_gguf

    from lmzip.models.gguf.derive import convert_gguf

    if BROKEN is not None:
        pytest.skip("the native library is broken here: see test_the_library_builds_and_passes_its_load_time_check")
    if request.param == "head_dim 24":
        weights, config = tiny_int_llama
    elif request.param == "int32 embeddings":
        weights, config = tiny_int_llama
        embed = weights["embed.e"].astype(np.int64)
        weights = dict(weights, **{"embed.e": (embed * (40_000 // max(1, np.abs(embed).max()) + 1)).astype(np.int32)})
        assert np.abs(weights["embed.e"]).max() >= 1 << 15 and runtime_arrays(weights)["embed.e"].dtype == np.int32
    else:
        path = tmp_path_factory.mktemp("wide") / "wide.gguf"
        architecture = request.param if request.param in ARCHITECTURES else "llama"
        config = SEVEN_HEADS if request.param == "seven heads a KV head" else ARCHITECTURES.get(request.param, WIDE)
        write_tiny_gguf(path, seed=1, config=config, architecture=architecture)
        weights, config = convert_gguf(path)
    runtime = runtime_arrays(weights)
    return IntLlama(runtime, config, NumpyOps()), native.NativeLlama(IntLlama(runtime, config, native.NativeOps(native.load())))


@pytest.mark.parametrize("recipe", sorted(RECIPES))
@pytest.mark.parametrize("threads,kernel", [(1, "best"), (2, "best"), (2, "portable")])
def test_the_native_llama_is_the_numpy_llama_bit_for_bit(tiny_llamas, threads, kernel, recipe, monkeypatch):
    """Whole-chunk passes, and one native call a step = numpy's ~30 operations a layer, as streams
    finish and drop out of the batch, at 1 and 2 threads, with this CPU's kernels and the portable C,
    by every recipe (the first's int8 rows, the second's wide ones)."""
    monkeypatch.setattr(LIBRARY, "threads", threads)
    if kernel == "portable":
        monkeypatch.setattr(LIBRARY, "kernel", 0)
    on_numpy, on_native = tiny_llamas
    on_numpy.use_recipe(recipe)
    on_native.use_recipe(recipe)
    idx = np.random.default_rng(3).integers(0, CONFIG["vocab"], size=(3, 40))
    whole = on_numpy.forward(idx)
    assert len(np.unique(whole[0, -1])) > 3  # a model that predicts: not a flat row
    np.testing.assert_array_equal(on_native.forward(idx), whole)
    # the head was built before the kernel was chosen here: it runs the kernel chosen now
    assert (on_native.head_rows.kernel_in_use, on_native.head_rows.threads_in_use) == (LIBRARY.kernel, threads)
    reference, fused = IntLlamaStepper(on_numpy, 3, 40), on_native.stepper(3, 40)
    for t in range(40):
        active = 3 if t < 25 else (2 if t < 33 else 1)
        step = fused.step(idx[:active, t])
        np.testing.assert_array_equal(step, reference.step(idx[:active, t]))
        np.testing.assert_array_equal(step, whole[:active, t])


def test_rows_grouped_any_way_and_redone_give_the_same_frequencies(tiny_llamas):
    """What a decoder checking drafts does: several positions of a stream in one call, positions
    redone after a wrong guess (from a wrong token), streams at different positions."""
    on_numpy, on_native = tiny_llamas
    rng = np.random.default_rng(7)
    idx = rng.integers(0, CONFIG["vocab"], size=(2, 30))
    whole = on_numpy.forward(idx)
    rows = on_native.stepper(2, 30)
    done = [0, 0]
    while min(done) < 30:
        streams, positions, tokens = [], [], []
        for s in range(2):
            n = min(int(rng.integers(1, 5)), 30 - done[s])
            guess_wrong = n > 1 and rng.random() < 0.5  # the last row's token is a wrong draft
            for p in range(done[s], done[s] + n):
                wrong = guess_wrong and p == done[s] + n - 1
                streams.append(s), positions.append(p)
                tokens.append((idx[s, p] + 1) % CONFIG["vocab"] if wrong else idx[s, p])
            done[s] += n - 1 if guess_wrong else n
        freqs = rows.frequencies(rows.hidden(streams, positions, tokens))
        for r, (s, p, token) in enumerate(zip(streams, positions, tokens)):
            if token == idx[s, p]:
                np.testing.assert_array_equal(freqs[r], whole[s, p])


def test_native_rows_refuse_what_would_read_out_of_bounds(tiny_llamas):
    vocab = CONFIG["vocab"]
    rows = tiny_llamas[1].stepper(2, 3)
    cases = [("vocabulary", ([0], [0], [vocab])), ("stream", ([2], [0], [0])), ("beyond the cache", ([0], [3], [0])),
             ("skips", ([0], [1], [0])), ("skips", ([0, 0], [0, 2], [0, 0])), ("vocabulary", ([0], [0], [-1]))]
    for why, (streams, positions, tokens) in cases:
        with pytest.raises(ValueError, match=why):
            rows.hidden(streams, positions, tokens)
    for _ in range(3):
        rows.step(np.zeros(2, dtype=np.int64))
    with pytest.raises(ValueError, match="beyond the cache"):
        rows.step(np.zeros(2, dtype=np.int64))


def test_the_c_code_refuses_out_of_bounds_rows_itself(tiny_llamas, monkeypatch):
    """The binding's checks are not the only guard: llama_step.c checks every row's token, stream
    and position before it reads or writes."""
    vocab = CONFIG["vocab"]
    rows = tiny_llamas[1].stepper(2, 3)
    monkeypatch.setattr(rows, "_check", lambda *args: None)
    for streams, positions, tokens in (([0], [0], [vocab]), ([0], [0], [-1]), ([2], [0], [0]), ([0], [3], [0])):
        with pytest.raises(ValueError, match="refused by the native llama"):
            rows.hidden(streams, positions, tokens)
    rows.hidden([0], [0], [0])  # a row within bounds still runs
    rows._struct.D = 1024  # as a model with heads wider than the attention's buffers would be
    with pytest.raises(ValueError, match="heads wider than 512"):
        rows.hidden([0], [1], [0])


def test_native_writes_the_file_numpy_writes_and_each_decodes_the_other(tiny_int_llama_dir):
    from lmzip.models import load_predictor

    data = b"\x00 the native backend \xff\r\n" * 40
    blobs = {b: lmzip.compress(data, model=load_predictor(str(tiny_int_llama_dir), backend=b), chunk=60, streams=3,
                             fallback=False)
             for b in ("native", "numpy")}
    assert blobs["native"] == blobs["numpy"]
    for backend in ("native", "numpy"):
        assert lmzip.decompress(blobs["native"], model=load_predictor(str(tiny_int_llama_dir), backend=backend)) == data


def test_a_settled_backend_holds_the_weights_once_and_another_reads_them_again(tiny_int_llama_dir):
    """Memory: once the backend is settled the stored int8 arrays are let go (the native model holds
    its own (out, in) copies: SmolLM2's weights were held twice, +134 MB); a backend wanted later
    is built from the file again and computes the same integers."""
    from lmzip.models import load_predictor

    predictor = load_predictor(str(tiny_int_llama_dir), backend="native")
    assert predictor._weights is None
    idx = np.random.default_rng(5).integers(0, 256, size=(2, 30))
    np.testing.assert_array_equal(predictor.model_on("numpy").forward(idx), predictor.model.forward(idx))
    auto = load_predictor(str(tiny_int_llama_dir))
    auto.fastest("chunks")
    assert auto._weights is None and list(auto._models.values()) == [auto.model]


# test_golden.py decodes every golden file with the backend measured fastest (native wherever it
# builds, on 2 cores and more): two of them here, whatever was measured; the rest with the slow tests
_QUICK = ("fast.carried.book2-4k.lmz", "portable-fast.alice29-2k.lmz")


@pytest.mark.parametrize("name", [n if n in _QUICK else pytest.param(n, marks=pytest.mark.slow)
                                  for n in sorted(os.listdir(GOLDEN)) if n.startswith(("fast.", "portable-"))]
                         + [pytest.param("smollm2.mixed.paper1-1k.lmz", marks=pytest.mark.slow)])
def test_golden_files_decode_on_the_native_backend(name):
    sums = dict(reversed(line.split()) for line in (GOLDEN / "SHA256SUMS").read_text().splitlines() if line)
    original = sums.get(name) or sums[name.split(".", 1)[1].removesuffix(".lmz")]
    out = lmzip.decompress((GOLDEN / name).read_bytes(), backend="native")
    assert hashlib.sha256(out).hexdigest() == original


def test_without_the_native_library_lmzip_still_works(tmp_path):
    """LMZIP_NATIVE=0 stands for a machine without a compiler: --version says why, and a file made
    with the native backend decodes through numpy/torch to the same bytes."""
    env = {**os.environ, "LMZIP_NATIVE": "0"}
    cli = [sys.executable, "-m", "lmzip.cli"]
    version = subprocess.run(cli + ["--version"], capture_output=True, text=True, env=env)
    assert "native: not used: turned off by LMZIP_NATIVE=0" in version.stdout
    data = b"The same bytes with or without native code. " * 20
    (tmp_path / "a.txt").write_bytes(data)
    (tmp_path / "a.txt.lmz").write_bytes(lmzip.compress(data, model=load_predictor("fast", backend="native")))
    r = subprocess.run(cli + ["decompress", "-c", "-q", str(tmp_path / "a.txt.lmz")], capture_output=True, env=env)
    assert r.returncode == 0 and r.stdout == data
    r = subprocess.run(cli + ["decompress", "-c", "-q", "--backend", "native", str(tmp_path / "a.txt.lmz")],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 3 and "native" in r.stderr and "Traceback" not in r.stderr


def test_without_a_working_compiler_nothing_is_built_and_it_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv("LMZIP_CACHE", str(tmp_path))
    monkeypatch.setattr(toolchain, "find_compiler", lambda: None)
    with pytest.raises(native.NativeUnavailable, match="no C compiler"):
        native.build()
    monkeypatch.setattr(toolchain, "find_compiler", lambda: "false")  # a compiler that fails
    with pytest.raises(native.NativeUnavailable, match="could not build"):
        native.build()
    assert not list(tmp_path.rglob("*.so")) and not list(tmp_path.rglob("*.tmp*"))
