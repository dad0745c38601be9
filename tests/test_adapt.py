"""A head that learns while it codes (integer/adapt.py): exact on every backend and thread count,
stepping = whole-chunk passes, recorded in the header, bounded on inputs it cannot learn."""

from __future__ import annotations

import dataclasses
import io
import os

import numpy as np
import pytest

import lmzip
from lmzip import api
from lmzip.errors import ModelError
from lmzip.models import load_predictor, native
from lmzip.models.integer.adapt import ADAPT_RECIPES, BIAS_LIMIT, HeadBias, biased_index
from lmzip.models.integer.llama import IntLlama, runtime_arrays
from lmzip.models.integer.ops import NumpyOps, TorchOps

from conftest import SAMPLE_TEXT

TEXT = SAMPLE_TEXT[:600].encode() + b"\r\n\x00\xff" + SAMPLE_TEXT[:200].encode()
LAYOUT = dict(chunk=48, streams=4)
LEADS = {"llama": 8, "gpt": 0}  # lmzip's GPT cannot share a lead (its numbers depend on the batch)
# numpy and native write, torch decodes (every pair is compared somewhere: test_native, test_portable)
WRITERS = ["numpy"] + (["native"] if native.available() else [])
READERS = ["torch"] + (["native"] if native.available() else [])


def _compress(model, backend: str, adapt: bool = True, **options) -> bytes:
    directory, lead = model
    predictor = load_predictor(str(directory), backend=backend, adapt=adapt)
    return lmzip.compress(TEXT, predictor, fallback=False, lead=lead, **LAYOUT, **options)


@pytest.fixture(scope="module", params=["llama", "gpt"])
def model(request, tiny_int_llama_dir):
    """(a directory of the family, the lead it takes)"""
    from lmzip.models.integer_predictor import PORTABLE_DIR

    return (tiny_int_llama_dir if request.param == "llama" else PORTABLE_DIR), LEADS[request.param]


def test_every_backend_writes_the_same_learning_file_and_decodes_every_other_s(model):
    blobs = {backend: _compress(model, backend) for backend in WRITERS}
    assert len(set(blobs.values())) == 1, {b: len(v) for b, v in blobs.items()}
    blob = blobs["numpy"]
    assert api.read_header(io.BytesIO(blob)).settings.adapt == 1
    assert blob != _compress(model, "numpy", adapt=False)
    for backend in READERS:
        assert lmzip.decompress(blob, backend=backend) == TEXT


def test_stepping_writes_what_whole_chunk_passes_write(model):
    """The encoder's passes give the rows in lockstep order, learning after each step, as the
    decoder's steps do (a ``record`` makes the encoder step too)."""
    stepped = io.BytesIO()
    predictor = load_predictor(str(model[0]), backend="numpy", adapt=True)
    api.compress_stream(io.BytesIO(TEXT), stepped, predictor, fallback=False, record=lambda *a: None,
                        lead=model[1], **LAYOUT)
    assert stepped.getvalue() == _compress(model, "numpy")


@pytest.mark.skipif(not native.available(), reason="no native library here")
def test_the_native_head_learns_as_numpy_s_at_any_kernel_and_thread_count(tiny_int_llama, monkeypatch):
    """llama_step.c's biased rows against numpy's, with a bias of every size a block can reach."""
    weights, config = tiny_int_llama
    runtime = runtime_arrays(weights)
    on_numpy = IntLlama(runtime, config, NumpyOps())
    on_native = native.NativeLlama(IntLlama(runtime, config, native.NativeOps(native.load())))
    on_torch = IntLlama(runtime, config, TorchOps())
    rng = np.random.default_rng(5)
    idx = rng.integers(0, config["vocab_size"], size=(2, 30))
    for scale in (3, 300, BIAS_LIMIT):
        bias = rng.integers(-scale, scale + 1, config["vocab_size"]).astype(np.int32)
        for model in (on_numpy, on_native.model, on_torch):
            model.head_bias = bias
        expected = on_numpy.forward(idx)
        assert not np.array_equal(expected, IntLlama(runtime, config, NumpyOps()).forward(idx))  # the bias counts
        np.testing.assert_array_equal(on_torch.forward(idx), expected)
        library = native.load()
        for kernel, threads in ((library.kernel, 1), (library.kernel, 2), (0, 2)):
            monkeypatch.setattr(library, "kernel", kernel)
            monkeypatch.setattr(library, "threads", threads)
            np.testing.assert_array_equal(on_native.forward(idx), expected)


def test_a_head_s_rows_are_the_plain_rows_while_the_bias_is_zero():
    steps = np.array([[0, 5, 3000, 1 << 22]], dtype=np.int64)
    assert biased_index(steps, np.zeros(4, np.int32), 2000).tolist() == [[0, 5, 2000, 2000]]
    assert biased_index(steps, np.array([0, 10, 0, 0], np.int32), 2000).tolist() == [[5, 0, 2000, 2000]]


def test_the_bias_moves_toward_the_coded_tokens_and_stays_bounded():
    bias = HeadBias(4, ADAPT_RECIPES[1])
    rows = np.array([[1000, 1000, 1000, 1000]] * 2, dtype=np.int32)
    bias.learn(rows, np.array([2, 2]))
    assert bias.steps[2] > 0 and (bias.steps[[0, 1, 3]] <= 0).all()
    before = bias.accumulated.copy()
    bias.learn(rows, np.array([9, 9]))  # extra byte ids, no entry's: every entry goes down alike
    assert (bias.accumulated < before).all() and len(set((before - bias.accumulated).tolist())) == 1
    for _ in range(3000):
        bias.learn(np.array([[1, 1 << 24, 1, 1]], dtype=np.int32), np.array([0]))
    assert abs(int(bias.steps[0])) <= BIAS_LIMIT and abs(int(bias.steps[1])) <= BIAS_LIMIT
    bias.reset()
    assert not bias.accumulated.any() and not bias.steps.any()


def test_a_file_of_an_adaptation_this_lmzip_does_not_know_is_refused(tiny_int_llama_dir):
    blob = _compress((tiny_int_llama_dir, 8), "numpy")
    header = api.read_header(io.BytesIO(blob))
    forged = dataclasses.replace(header, settings=dataclasses.replace(header.settings, adapt=9))
    size = len(header.to_bytes())
    with pytest.raises(ModelError, match="adaptation recipe 9.*newer lmzip"):
        lmzip.decompress(forged.to_bytes() + blob[size:])


@pytest.mark.fallback
@pytest.mark.parametrize("data", [os.urandom(1500), b"abc" * 500], ids=["random", "repetitive"])
def test_what_the_head_cannot_learn_costs_no_more_than_the_fallback_allows(tiny_int_llama_dir, data):
    predictor = load_predictor(str(tiny_int_llama_dir), backend="numpy", adapt=True)
    blob = lmzip.compress(data, predictor, lead=8, **LAYOUT)
    assert lmzip.decompress(blob) == data
    plain = lmzip.compress(data, load_predictor(str(tiny_int_llama_dir), backend="numpy"), lead=8, **LAYOUT)
    assert len(blob) <= max(len(plain), len(data)) + 16  # a block is stored or xz where the model loses


def test_adapting_a_model_that_cannot_is_refused():
    with pytest.raises(ValueError, match="only the integer models learn"):
        load_predictor("order2", adapt=True)
