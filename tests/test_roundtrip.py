"""Exact round trips through the whole pipeline with tiny seeded models."""

import io
import os

import pytest

import lmzip
from lmzip import api
from conftest import SAMPLE_TEXT

RANDOM = os.urandom(64 * 1024)
TEXTS = {
    "empty": b"",
    "one byte": b"x",
    "unicode": "na\u00efve caf\u00e9 \u4e2d\u6587 \U0001F600\n".encode() * 30,
    "crlf": b"line one\r\nline two\r\n" * 40,
    "invalid utf8": b"text \xff\xfe more \xc3(\xa0\xa1 text" * 30,
    "text": SAMPLE_TEXT.encode(),
}


@pytest.mark.parametrize("name", list(TEXTS))
def test_gpt_round_trip(tiny_gpt_dir, name):
    data = TEXTS[name]
    blob = lmzip.compress(data, model=str(tiny_gpt_dir), chunk=37, streams=5, threads=1)
    assert lmzip.decompress(blob) == data


def test_random_binary_64k(tiny_byte_gpt_dir):
    blob = lmzip.compress(RANDOM, model=str(tiny_byte_gpt_dir), chunk=32, streams=256, threads=1)
    assert lmzip.decompress(blob) == RANDOM


@pytest.mark.parametrize("chunk,streams", [(1, 1), (7, 3), (64, 2), (64, 100)])
def test_lengths_not_multiple_of_chunk_or_streams(tiny_gpt_dir, chunk, streams):
    data = SAMPLE_TEXT.encode()[:1001]
    blob = lmzip.compress(data, model=str(tiny_gpt_dir), chunk=chunk, streams=streams, threads=1)
    assert lmzip.decompress(blob) == data


@pytest.mark.parametrize("fixture", ["tiny_llama_dir", "tiny_gpt2_dir"])
def test_hugging_face_round_trip(request, fixture):
    directory = request.getfixturevalue(fixture)
    data = TEXTS["unicode"] + TEXTS["invalid utf8"]
    blob = lmzip.compress(data, model=str(directory), chunk=40, streams=4, threads=1)
    assert lmzip.decompress(blob) == data


@pytest.mark.parametrize("dtype", ["f32", "bf16"])
def test_dtypes_round_trip(tiny_gpt_dir, dtype):
    data = SAMPLE_TEXT.encode()[:2000]
    blob = lmzip.compress(data, model=str(tiny_gpt_dir), dtype=dtype, chunk=64, streams=8, threads=1)
    assert lmzip.decompress(blob) == data


def test_compressed_size_tracks_nll(tiny_gpt_dir):
    data = SAMPLE_TEXT.encode() * 4
    out = io.BytesIO()
    stats = api.compress_stream(io.BytesIO(data), out, str(tiny_gpt_dir), chunk=64, streams=16, threads=1,
                                fallback=False)  # the model's bits, not xz's
    assert stats.compressed_bytes == len(out.getvalue())
    header_bytes = len(api.read_header(io.BytesIO(out.getvalue())).to_bytes())
    n_blocks = -(-stats.tokens // (64 * 16))
    payload_bits = 8 * (stats.compressed_bytes - header_bytes - 3 * n_blocks)
    # the range coder adds ~0.04 % and at most 4 bytes per block over the model's NLL
    assert stats.nll_bits * 0.999 <= payload_bits <= stats.nll_bits * 1.002 + 32 * n_blocks


def test_api_accepts_predictor_objects(tiny_gpt_dir):
    from lmzip.models import load_predictor

    predictor = load_predictor(str(tiny_gpt_dir), threads=1)
    data = b"the same predictor object can be used twice"
    blob = lmzip.compress(data, model=predictor)
    assert lmzip.decompress(blob, model=predictor) == data


def test_llama_stepper_matches_transformers_llama(tiny_llama_dir):
    """lmzip's lean llama stepper computes what transformers' LlamaForCausalLM computes."""
    import torch
    from transformers import LlamaForCausalLM

    from lmzip.models.float.llama import LlamaStepper, load_llama, rope_tables

    cfg, weights = load_llama(tiny_llama_dir, torch.float32, "cpu")
    reference = LlamaForCausalLM.from_pretrained(tiny_llama_dir, attn_implementation="eager",
                                                 dtype=torch.float32).eval()
    ids = torch.randint(0, cfg.vocab_size, (3, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = reference(ids).logits
    stepper = LlamaStepper(cfg, weights, 3, 40, rope_tables(cfg, 40, torch.float32, "cpu"), torch.float32, "cpu")
    stepped = torch.stack([stepper.step(ids[:, t]) for t in range(40)], dim=1)
    assert expected.abs().max() > 0.1  # a real distribution, not zeros
    torch.testing.assert_close(stepped, expected, rtol=1e-4, atol=1e-4)


def test_float_dtype_is_the_faster_one_for_the_files_streams(tiny_gpt_dir, tmp_path, monkeypatch):
    """With no dtype asked for, a float model codes in whichever of float32 and bf16 stepped faster
    at the file's stream count, measured once per machine; the header says which, the decoder adopts
    it. An explicit dtype is never second-guessed."""
    from lmzip.models import load_predictor
    from lmzip.models.float.torch_base import TorchPredictor

    monkeypatch.setenv("LMZIP_CACHE", str(tmp_path))
    measured = []

    def fake_seconds(self, n_streams, steps=4):
        measured.append((self.dtype_name, n_streams))
        return {"f32": 2.0, "bf16": 1.0}[self.dtype_name] if n_streams <= 2 else {"f32": 1.0, "bf16": 2.0}[self.dtype_name]

    monkeypatch.setattr(TorchPredictor, "_step_seconds", fake_seconds)
    data = SAMPLE_TEXT.encode()[:1500]
    few = lmzip.compress(data[:100], model=str(tiny_gpt_dir), chunk=64, threads=1)  # 1 stream
    many = lmzip.compress(data, model=str(tiny_gpt_dir), chunk=64, threads=1)  # 13 streams, measured as 16
    assert api.read_header(io.BytesIO(few)).settings.dtype == "bf16"
    assert api.read_header(io.BytesIO(many)).settings.dtype == "f32"
    assert sorted(measured) == [("bf16", 1), ("bf16", 16), ("f32", 1), ("f32", 16)]
    again = lmzip.compress(data[:100], model=str(tiny_gpt_dir), chunk=64, threads=1)
    assert again == few and len(measured) == 4  # cached: not measured again
    assert lmzip.decompress(few) == data[:100] and lmzip.decompress(many) == data
    explicit = load_predictor(str(tiny_gpt_dir), dtype="f32", threads=1)
    assert api.read_header(io.BytesIO(lmzip.compress(data[:100], model=explicit, chunk=64))).settings.dtype == "f32"
    assert len(measured) == 4
