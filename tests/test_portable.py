"""The portable model: integer frequencies identical across backends, threads,
batch sizes and stepping vs whole-sequence passes; files decode with either backend."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import lmzip
import lmzip.api
from lmzip import container, layout
from lmzip.coder import IntegerDecoder, IntegerEncoder
from lmzip.models import load_predictor
from lmzip.mixing import mix_setting
from lmzip.settings import Settings
from lmzip.models.integer.gpt import IntGPT, IntStepper
from lmzip.models.integer.stored import read_stored
from lmzip.models.integer.ops import NumpyOps, TorchOps, int8_gemm_is_exact
from lmzip.models.gguf.quantize import convert_gpt_dir
from lmzip.models.base import torch_state

from conftest import SAMPLE_TEXT


@pytest.fixture(scope="session")
def portable_dir(tiny_gpt_dir, tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny-portable")
    rng = np.random.default_rng(0)
    vocab = load_predictor(str(tiny_gpt_dir), threads=1).vocab_size
    convert_gpt_dir(tiny_gpt_dir, directory, rng.integers(0, vocab, size=(4, 64)))
    return directory


def _models(directory):
    weights, config = read_stored(directory)
    return IntGPT(weights, config, TorchOps()), IntGPT(weights, config, NumpyOps())


def _stepped(model, idx):
    stepper = IntStepper(model, idx.shape[0])
    prev = np.concatenate([np.zeros((idx.shape[0], 1), dtype=np.int64), idx[:, :-1]], axis=1)
    return np.stack([stepper.step(prev[:, t]) for t in range(idx.shape[1])], axis=1)


def test_backends_steps_and_sequences_agree_bit_for_bit(portable_dir):
    torch_model, numpy_model = _models(portable_dir)
    rng = np.random.default_rng(1)
    idx = rng.integers(0, torch_model.cfg["vocab_size"], size=(3, 40))
    inputs = np.concatenate([np.zeros((3, 1), dtype=np.int64), idx[:, :-1]], axis=1)
    reference = torch_model.forward(inputs)
    assert np.issubdtype(reference.dtype, np.integer) and (reference >= 1).all()
    assert len(np.unique(reference)) > 100  # real distributions, not a constant
    np.testing.assert_array_equal(numpy_model.forward(inputs), reference)
    np.testing.assert_array_equal(_stepped(torch_model, idx), reference)
    np.testing.assert_array_equal(_stepped(numpy_model, idx), reference)
    one_stream = _stepped(numpy_model, idx[1:2])  # another batch size: the same rows
    np.testing.assert_array_equal(one_stream[0], reference[1])


def test_thread_counts_give_the_same_integers(portable_dir):
    weights, config = read_stored(portable_dir)
    idx = np.random.default_rng(2).integers(0, config["vocab_size"], size=(5, 33))
    results = []
    for threads in (1, 2):
        with torch_state(threads):
            results.append(IntGPT(weights, config, TorchOps()).forward(idx))
    np.testing.assert_array_equal(results[0], results[1])


def test_the_gemm_kernel_choice_never_changes_the_integers(portable_dir):
    """TorchOps picks int8 _int_mm or a float32 GEMM by measured speed; both give the same integers."""
    if not int8_gemm_is_exact():
        pytest.skip("torch's int8 GEMM is not exact on this CPU: it is never chosen")
    weights, config = read_stored(portable_dir)
    idx = np.random.default_rng(3).integers(0, config["vocab_size"], size=(3, 30))
    tables = []
    for integer_gemm in (False, True):
        ops = TorchOps()
        ops.integer_gemm = integer_gemm
        tables.append(IntGPT(weights, config, ops).forward(idx))
    np.testing.assert_array_equal(tables[0], tables[1])


def test_the_gemm_choice_is_measured_once_and_cached(tmp_path, monkeypatch):
    import json

    import torch

    from lmzip.models.integer import ops as intops

    monkeypatch.setenv("LMZIP_CACHE", str(tmp_path))
    monkeypatch.setattr(intops, "int8_gemm_is_exact", lambda: True)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")  # not settled by hardware
    intops.int8_gemm_pays.cache_clear()
    try:
        chosen = intops.int8_gemm_pays()
        cached = json.loads((tmp_path / "kernels.json").read_text())
        (key, entry), = cached.items()
        assert key.startswith("int8 GEMM, AVX2") and entry["value"] == chosen and entry["margin"] >= 1
        monkeypatch.setattr(intops, "_int8_gemm_time", lambda: pytest.fail("measured twice"))
        intops.int8_gemm_pays.cache_clear()
        assert intops.int8_gemm_pays() == chosen
    finally:
        intops.int8_gemm_pays.cache_clear()


def test_hardware_with_vnni_settles_the_gemm_choice_without_measuring(tmp_path, monkeypatch):
    import torch

    from lmzip.models.integer import ops as intops

    monkeypatch.setenv("LMZIP_CACHE", str(tmp_path))
    monkeypatch.setattr(intops, "int8_gemm_is_exact", lambda: True)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    monkeypatch.setattr(torch.cpu, "_is_vnni_supported", lambda: True)
    monkeypatch.setattr(intops, "_int8_gemm_time", lambda: pytest.fail("measured"))
    intops.int8_gemm_pays.cache_clear()
    try:
        assert intops.int8_gemm_pays() is True
    finally:
        intops.int8_gemm_pays.cache_clear()


def test_a_saturating_int8_gemm_is_not_used(monkeypatch):
    def saturating_int_mm(a, b):
        """oneDNN's pre-VNNI scheme: (a + 128) as u8 times b, adjacent products summed in
        int16 with saturation (vpmaddubsw), then 128 * column sums subtracted."""
        shifted, b = a.long() + 128, b.long()
        products = shifted[:, :, None] * b[None, :, :]
        pairs = products.reshape(a.shape[0], -1, 2, b.shape[1]).sum(2).clamp(-32768, 32767)
        return (pairs.sum(1) - 128 * b.sum(0)).int()

    sample = torch.randint(-127, 128, (3, 8), dtype=torch.int8), torch.randint(-60, 60, (8, 5), dtype=torch.int8)
    assert torch.equal(saturating_int_mm(*sample), torch._int_mm(*sample))  # exact while nothing saturates
    monkeypatch.setattr(torch, "_int_mm", saturating_int_mm)
    assert int8_gemm_is_exact.__wrapped__() is False


@pytest.mark.parametrize("encode_backend,decode_backend", [("torch", "numpy"), ("numpy", "torch")])
def test_files_decode_with_the_other_backend(portable_dir, encode_backend, decode_backend):
    data = SAMPLE_TEXT.encode()[:1500] + bytes(range(256))
    encoder = load_predictor(str(portable_dir), backend=encode_backend, threads=1)
    blob = lmzip.compress(data, model=encoder, chunk=48, streams=5)
    header = container.Header.read(io.BytesIO(blob))
    # nothing of the machine; tables sized for the history (the file's tokens), carried across blocks
    assert header.portable and header.settings == Settings() and header.mix == mix_setting(header.n_tokens) == "cm2-t15-c"
    decoder = load_predictor(str(portable_dir), backend=decode_backend, threads=1)
    assert lmzip.decompress(blob, model=decoder) == data


def test_teacher_forced_encoding_writes_the_stepped_bytes(portable_dir):
    """Compression uses whole-chunk passes; explain's record hook forces stepping: same bytes."""
    from lmzip import engine

    predictor = load_predictor(str(portable_dir), threads=1)
    ids = predictor.tokenizer.encode(SAMPLE_TEXT.encode()[:600])
    chunks = next(layout.FileLayout.of(len(ids), 40, 4).split(np.asarray(ids)))
    fast = engine.encode_block(predictor, chunks)
    stepped = engine.encode_block(predictor, chunks, record=lambda *args: None)
    assert fast.data == stepped.data
    assert fast.nll_bits == pytest.approx(stepped.nll_bits, rel=1e-12)


def test_integer_coder_round_trips_and_costs_the_nll():
    rng = np.random.default_rng(3)
    freqs = rng.integers(1, 1 << 20, size=(400, 300)).astype(np.int64)
    freqs[::3, 7] = 1 << 36  # some near-certain symbols
    symbols = rng.integers(0, 300, size=400)
    symbols[::3] = 7
    encoder = IntegerEncoder()
    for start in range(0, 400, 9):
        encoder.encode(symbols[start : start + 9], freqs[start : start + 9])
    data = encoder.finish()
    decoder = IntegerDecoder(data)
    decoded = np.concatenate([decoder.decode(freqs[s : s + 9]) for s in range(0, 400, 9)])
    np.testing.assert_array_equal(decoded, symbols)
    nll_bytes = -np.log2(freqs[np.arange(400), symbols] / freqs.sum(axis=1)).sum() / 8
    assert nll_bytes <= len(data) <= nll_bytes + 10


def test_integer_coder_refuses_zero_frequencies():
    with pytest.raises(ValueError, match="frequencies must be >= 1"):
        IntegerEncoder().encode(np.array([0]), np.array([[0, 5]], dtype=np.int64))


def test_shipped_portable_model_crosses_backends_in_fresh_processes(tmp_path):
    """CLI: --portable with torch and 1 thread; decoded by numpy with 2 threads in another process."""
    source = tmp_path / "text.txt"
    source.write_bytes(SAMPLE_TEXT.encode()[:1200])
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    cli = [sys.executable, "-m", "lmzip.cli"]
    subprocess.run(cli + ["compress", "-q", "--model", "fast", "--portable", "--threads", "1", "--streams", "3",
                          "--backend", "torch", "--no-fallback",
                          str(source)],
                   check=True, env=env)
    packed = tmp_path / "text.txt.lmz"
    info = subprocess.run(cli + ["info", "--json", str(packed)], check=True, capture_output=True, text=True)
    assert '"portable": true' in info.stdout and '"model": "fast"' in info.stdout
    assert '"blocks": {"model": 1, "stored": 0, "xz": 0}' in info.stdout
    subprocess.run(cli + ["decompress", "-q", "--backend", "numpy", "--threads", "2", str(packed),
                          "-o", str(tmp_path / "back.txt")], check=True, env=env)
    assert (tmp_path / "back.txt").read_bytes() == source.read_bytes()


def test_portable_refuses_float_only_models(tmp_path):
    """--portable turns a -float name into its integer model and refuses what has none (--online)."""
    source = tmp_path / "a.txt"
    source.write_text("hello")
    result = subprocess.run([sys.executable, "-m", "lmzip.cli", "compress", "--portable", "--online",
                             str(source)], capture_output=True, text=True)
    assert result.returncode == 1 and "does not decode on every machine" in result.stderr
    assert not (tmp_path / "a.txt.lmz").exists()


def test_shipped_portable_model_predicts_like_the_float_one():
    """The integer model must cost little more than the float model it came from."""
    data = SAMPLE_TEXT.encode()[:600] + b"It was the best of times, it was the worst of times. " * 8
    out = {}
    for name in ("fast-float", "fast"):
        stream = io.BytesIO()
        stats = lmzip.api.compress_stream(io.BytesIO(data), stream, name, threads=1, dtype="f32")
        out[name] = stats.nll_bits
    assert out["fast"] <= 1.03 * out["fast-float"]


def test_files_of_earlier_versions_find_their_models():
    """0.2.0 and 0.3.0 named the float models "fast" and "smollm2" and the integer fast "fast-portable";
    the header's integer flag tells which model a name meant."""
    from lmzip.models import model_for_file

    assert [model_for_file("fast", False), model_for_file("smollm2", False)] == ["fast-float", "smollm2-float"]
    assert [model_for_file("fast", True), model_for_file("fast-portable", True)] == ["fast", "fast"]
    assert model_for_file("order2", False) == "order2"


def test_float_fast_files_name_their_model():
    data = SAMPLE_TEXT.encode()[:300]
    blob = lmzip.compress(data, model="fast-float", threads=1, dtype="f32")
    header = lmzip.api.read_header(io.BytesIO(blob))
    assert (header.model, header.portable, header.settings.dtype) == ("fast-float", False, "f32")
    assert lmzip.decompress(blob) == data


def test_stored_tensors_load_with_a_safetensors_that_has_no_pread_backend(tmp_path, monkeypatch):
    """safetensors before 0.8 has no ``backend`` argument: the file is mapped, as before."""
    import safetensors.numpy as st

    from lmzip.models.integer.stored import _read_tensors

    tensors = {"a.w": np.arange(-6, 6, dtype=np.int8).reshape(3, 4), "e": np.arange(5, dtype=np.int32)}
    st.save_file(tensors, str(tmp_path / "model.safetensors"))
    real, asked = st.load_file, []

    def before_0_8(filename):  # the old signature: a backend argument is a TypeError
        asked.append(filename)
        return real(filename)

    for load in (real, before_0_8):
        monkeypatch.setattr(st, "load_file", load)
        got = _read_tensors(tmp_path / "model.safetensors")
        assert got.keys() == tensors.keys() and all(np.array_equal(got[k], v) for k, v in tensors.items())
    assert asked  # the fallback ran
