"""The integer llama (the default smollm2's arithmetic) on a tiny seeded GGUF: the derivation
from Q4_1/Q8_0 weights, agreement with transformers' float llama (and qwen2, qwen3), and
bit-exactness across backends, stepping and whole-chunk passes."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import lmzip
from lmzip.errors import ModelError
from lmzip.models import native
from lmzip.models.gguf import derive
from lmzip.models.integer import llama as integer_llama
from lmzip.models.integer import tables
from lmzip.models.integer.tables import exp_table
from lmzip.models.integer.arithmetic import WIDE_ROWS
from lmzip.models.integer.llama import IntLlama, IntLlamaStepper, RECIPES, runtime_arrays
from lmzip.models.gguf.derive import convert_gguf, weights_digest
from lmzip.models.integer.ops import NumpyOps, TorchOps, int8_gemm_is_exact

from conftest import CONFIG, write_tiny_gguf

gguf = pytest.importorskip("gguf")

@pytest.mark.parametrize("kind", ["Q4_1", "Q8_0"])
def test_dequantization_matches_the_gguf_package(kind):
    qtype = getattr(gguf.GGMLQuantizationType, kind)
    w = np.random.default_rng(5).standard_normal((6, 96)).astype(np.float32)
    packed = gguf.quants.quantize(w, qtype)

    class Tensor:  # what GGUFReader gives: a type and the raw blocks
        tensor_type, data = qtype, packed

    np.testing.assert_allclose(derive.dequantize(Tensor), gguf.quants.dequantize(packed, qtype), rtol=0, atol=1e-6)


def test_tables_are_computed_exactly():
    """decimal's exp gives libm's integers here; the rotations give cos/sin to float32 precision."""
    libm = [round(2 ** 24 * math.exp(-i / 128)) for i in range(len(exp_table()))]
    np.testing.assert_array_equal(exp_table(), libm)
    cos, sin = tables.rope_tables(10000.0, 16, 300)
    angles = np.arange(300)[:, None] * 10000.0 ** (-np.arange(0, 16, 2) / 16)
    np.testing.assert_allclose(cos[:, :8], np.cos(angles), atol=2e-7)
    np.testing.assert_allclose(sin[:, 8:], np.sin(angles), atol=2e-7)
    table = tables.sigmoid_table()
    assert table[len(table) // 2] == np.float32(0.5) and abs(table[-1] - 1) < 2e-7


def test_conversion_is_deterministic(tiny_gguf, tiny_int_llama):
    assert weights_digest(convert_gguf(tiny_gguf)[0]) == weights_digest(tiny_int_llama[0])


# qwen3's heads are 128 wide (transformers' Qwen3 reads no other width from a GGUF): wider than 96 / 2;
# gemma3's 256 (transformers scales its scores by 256^-0.5 whatever the width), 6 layers (the 6th
# attends to all positions, the others to windows of 8)
ARCHITECTURE_CONFIGS = {"qwen2": CONFIG, "qwen3": dict(CONFIG, heads=2, kv_heads=1, head_dim=128),
                        "gemma3": dict(CONFIG, layers=6, heads=2, kv_heads=1, head_dim=256, window=8)}
# KL to transformers' float model at most this share of its KL to uniform: gemma3's distributions
# are flatter (its normed sublayers), and SiLU gates instead of GELU would cost 0.011 there
KL_SHARE = {"gemma3": 0.005}


@pytest.fixture(scope="module", params=["llama", "qwen2", "qwen3", "gemma3"])
def architecture_gguf(request, tiny_gguf, tiny_int_llama, tmp_path_factory):
    """(architecture, GGUF path, its integer weights and config) of each architecture derived here."""
    if request.param == "llama":
        return request.param, tiny_gguf, tiny_int_llama
    path = tmp_path_factory.mktemp(request.param) / f"tiny-{request.param}.gguf"
    write_tiny_gguf(path, seed=3, config=ARCHITECTURE_CONFIGS[request.param], architecture=request.param)
    return request.param, path, convert_gguf(path)


def test_integer_llama_predicts_like_transformers_float_llama(architecture_gguf):
    """The same GGUF through transformers (float) and through the integer model: close
    distributions. A wrong RoPE layout, GQA grouping, MLP, a missing bias or head norm would be far off
    (without qwen2's biases or qwen3's norms the KL is 2-3x the KL to uniform, not 2%; gemma3 without
    its windows, local RoPE base, sublayer norms or q/k norms: 0.8-1.2x, not 0.2%)."""
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM

    from lmzip.models.float.hf import quiet_transformers

    architecture, path, (weights, config) = architecture_gguf
    with quiet_transformers():
        reference = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    idx = np.random.default_rng(2).integers(0, CONFIG["vocab"], size=(1, 48))
    with torch.no_grad():
        p = torch.softmax(reference(torch.as_tensor(idx)).logits[0].double(), -1).numpy()
    freqs = IntLlama(weights, config, NumpyOps()).forward(idx)[0].astype(np.float64)
    q = freqs / freqs.sum(-1, keepdims=True)
    kl = (p * np.log(p / q)).sum(-1).mean()
    kl_uniform = (p * np.log(p * CONFIG["vocab"])).sum(-1).mean()
    assert kl < KL_SHARE.get(architecture, 0.05) * kl_uniform, (kl, kl_uniform)


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_backends_steps_and_chunks_agree_bit_for_bit(architecture_gguf, recipe, monkeypatch):
    """torch = numpy = stepping = whole-chunk passes, with the down projection split for exact
    float32 sums and the query rows cut into blocks, as at SmolLM2's size, by every recipe."""
    monkeypatch.setattr(IntLlama, "max_exact_inner", 64)  # 160 inner -> three exact pieces
    monkeypatch.setattr(integer_llama, "QUERY_BLOCK", 16)
    _, _, (weights, config) = architecture_gguf
    runtime = runtime_arrays(weights)
    idx = np.random.default_rng(3).integers(0, CONFIG["vocab"], size=(3, 40))
    float32_gemm = TorchOps()
    float32_gemm.integer_gemm = False  # the split float32 GEMMs, whatever this machine's int8 GEMM does
    models = [IntLlama(runtime, config, float32_gemm), IntLlama(runtime, config, NumpyOps())]
    assert isinstance(models[0].w["layers.0.down.w"], list)
    if int8_gemm_is_exact():  # and where torch's int8 GEMM is exact (AVX-512 VNNI, AMX), with it too
        int8_gemm = TorchOps()
        int8_gemm.integer_gemm = True
        models.append(IntLlama(runtime, config, int8_gemm))
    for model in models:
        model.use_recipe(recipe)
    whole = [m.forward(idx) for m in models]
    for other in whole[1:]:
        np.testing.assert_array_equal(whole[0], other)
    assert whole[0].dtype == np.int32 and whole[0].min() >= 1
    for model in models:
        stepper = IntLlamaStepper(model, 3, 40)
        for t in range(40):
            active = 3 if t < 25 else 2  # a stream that has finished is dropped from the batch
            np.testing.assert_array_equal(stepper.step(idx[:active, t]), whole[0][:active, t])


def _wide_ops():
    """Every backend as it computes a wide row's product: numpy's and torch's float32 GEMMs (whole,
    and split at 1,024 for exact sums), torch's int8 GEMM where it is exact, native's."""
    float32_gemm = TorchOps()
    float32_gemm.integer_gemm = False
    ops = [NumpyOps(), float32_gemm]
    if int8_gemm_is_exact():
        int8_gemm = TorchOps()
        int8_gemm.integer_gemm = True
        ops.append(int8_gemm)
    if native.available():
        ops.append(native.NativeOps(native.load()))
    return ops


@pytest.mark.parametrize("K", [64, 576, 1536])
def test_wide_rows_give_the_exact_sums_rounded_once(tiny_int_llama, K):
    """Rows of integers to +-127*128 (recipe 2) times int8 weights: the exact integer sums rounded once
    to float32, on every backend, at the extremes (every product the largest: sums far beyond
    float32's exact 2^24) and on random values, with the inner dimension whole and split."""
    rng = np.random.default_rng(K)
    M, N = 5, 40
    signs = rng.choice([-1, 1], (M, 1)), rng.choice([-1, 1], (1, N))
    cases = [(np.full((M, K), WIDE_ROWS) * signs[0], np.full((K, N), 127) * signs[1]),
             (rng.integers(-int(WIDE_ROWS), int(WIDE_ROWS) + 1, (M, K)), rng.integers(-127, 128, (K, N)))]
    for rows, w in cases:
        exact = rows.astype(np.int64) @ w.astype(np.int64)
        expected = exact.astype(np.float64).astype(np.float32)
        assert K < 1024 or np.abs(exact).max() > 1 << 24  # beyond float32's exact range
        for ops in _wide_ops():
            model = IntLlama(*tiny_int_llama, ops)
            weight = model.split_weight(w.astype(np.int8))
            got = ops.to_numpy(model.wide_products(ops.array(rows, "f32"), weight))
            np.testing.assert_array_equal(got, expected, err_msg=type(ops).__name__)


def test_the_recipes_differ_and_a_file_records_its_own(tiny_int_llama_dir):
    """New files take the newest recipe and say so in their settings; a file of the first recipe
    (no recipe recorded, as 0.8.0's) decodes by it on a predictor that would write the newest."""
    from lmzip import api
    from lmzip.models import load_predictor
    from lmzip.settings import Settings

    data = "Wider rows before the widest products cut the integer cost. ".encode() * 10
    predictor = load_predictor(str(tiny_int_llama_dir))
    assert predictor.recipe == max(RECIPES)
    newest = lmzip.compress(data, model=predictor, chunk=64, fallback=False)
    predictor.use_recipe(1)
    first = lmzip.compress(data, model=predictor, chunk=64, fallback=False)
    assert newest != first
    assert api.read_header(io.BytesIO(newest)).settings.recipe == max(RECIPES)
    assert api.read_header(io.BytesIO(first)).settings == Settings()
    for blob in (newest, first):
        assert lmzip.decompress(blob, model=load_predictor(str(tiny_int_llama_dir))) == data
    # a predictor that decoded a first-recipe file writes the newest again
    shared = load_predictor(str(tiny_int_llama_dir))
    assert lmzip.decompress(first, model=shared) == data and shared.recipe == 1
    assert lmzip.compress(data, model=shared, chunk=64, fallback=False) == newest
    header = api.read_header(io.BytesIO(newest))
    later = dataclasses.replace(header, settings=Settings(recipe=max(RECIPES) + 1), version=None)
    with pytest.raises(ModelError, match="newer lmzip"):  # a later lmzip's recipe: refused, never guessed
        lmzip.decompress(later.to_bytes() + newest[len(header.to_bytes()):], model=load_predictor(str(tiny_int_llama_dir)))


def test_thread_counts_give_the_same_integers(tiny_int_llama):
    torch = pytest.importorskip("torch")
    idx = np.random.default_rng(4).integers(0, CONFIG["vocab"], size=(2, 30))
    before, results = torch.get_num_threads(), []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            results.append(IntLlama(*tiny_int_llama, TorchOps()).forward(idx))
    finally:
        torch.set_num_threads(before)
    np.testing.assert_array_equal(results[0], results[1])


def test_round_trip_with_bytes_beyond_the_vocabulary(tiny_int_llama_dir):
    """Control bytes and invalid UTF-8 round-trip; the encoder's whole-chunk pass writes the bytes
    stepping would, and the other backend decodes them."""
    from lmzip import engine
    from lmzip.models import load_predictor

    data = b"\x00\x01 integer llama \xff\xfe\r\n" * 30
    encoder = load_predictor(str(tiny_int_llama_dir), backend="torch", threads=1)
    blob = lmzip.compress(data, model=encoder, chunk=50, streams=4)
    decoder = load_predictor(str(tiny_int_llama_dir), backend="numpy")
    assert lmzip.decompress(blob, model=decoder) == data
    chunks = [np.asarray(encoder.tokenizer.encode(data[:120]), dtype=np.int64)[i : i + 50] for i in (0, 50, 100)]
    assert engine.encode_block(encoder, chunks).data == engine.encode_block(encoder, chunks, record=lambda *a: None).data


def test_files_decode_with_scalar_kernels_in_a_fresh_process(tiny_int_llama_dir, tmp_path):
    """A file made here (by the backend this machine measures fastest) decodes on torch's scalar
    kernels with oneDNN limited to AVX2; the native and numpy backends never call torch."""
    from lmzip.models import load_predictor

    data = "Integer arithmetic gives the same bits on every CPU. ".encode() * 12
    (tmp_path / "a.lmz").write_bytes(lmzip.compress(data, model=load_predictor(str(tiny_int_llama_dir)), chunk=64,
                                                    fallback=False))
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "AVX2",
           "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
    r = subprocess.run([sys.executable, "-m", "lmzip.cli", "decompress", "-c", "--json", "--backend", "torch",
                        "--threads", "1", str(tmp_path / "a.lmz")], capture_output=True, env=env)
    assert r.returncode == 0 and r.stdout == data, r.stderr


def test_the_backend_choice_is_measured_once_per_kind_and_stream_count(tiny_int_llama_dir, tmp_path, monkeypatch):
    from lmzip.models import load_predictor

    monkeypatch.setenv("LMZIP_CACHE", str(tmp_path))
    predictor = load_predictor(str(tiny_int_llama_dir))
    with predictor.running():
        predictor.fastest("chunks")
        predictor.fastest("steps", 3)
        predictor.fastest("steps", 4)  # the same bucket as 3
    keys = list(json.loads((tmp_path / "kernels.json").read_text()))
    assert [k.split(",")[0].split(" for ")[1] for k in keys if k.startswith("integer backend")] == [
        "chunks", "steps of 4 streams"]
    candidates = "native+torch+numpy" if native.available() else "torch+numpy"
    assert all(k.startswith(f"integer backend among {candidates} ") for k in keys if k.startswith("integer backend"))
