"""Blocks the model would code in more bytes than xz or than the data itself
fall back to xz or stored bytes; learning models never fall back."""

import io
import lzma
import os
import random

import pytest

import lmzip
from lmzip import api, container
from lmzip.models.float.gpt_predictor import FAST_DIR
from conftest import SAMPLE_TEXT

pytestmark = pytest.mark.fallback


def _methods(blob: bytes) -> dict[str, int]:
    return container.Reader(io.BytesIO(blob)).method_counts()


def test_random_bytes_are_stored_and_barely_grow(tiny_gpt_dir):
    data = os.urandom(3000)
    blob = lmzip.compress(data, model=str(tiny_gpt_dir), threads=1, chunk=64, streams=8)
    header_bytes = len(api.read_header(io.BytesIO(blob)).to_bytes())
    assert _methods(blob)["model"] == 0 and _methods(blob)["stored"] >= 1
    assert len(blob) <= len(data) + header_bytes + 3 * _methods(blob)["stored"]
    assert lmzip.decompress(blob) == data


def test_repetitive_bytes_go_to_xz_and_no_fallback_keeps_the_model(tiny_gpt_dir):
    data = bytes(range(256)) * 40  # a random model pays ~8 bits a byte; xz almost nothing
    blob = lmzip.compress(data, model=str(tiny_gpt_dir), threads=1)
    assert _methods(blob)["model"] == 0 and _methods(blob)["xz"] >= 1
    assert len(blob) < len(data) // 10
    assert lmzip.decompress(blob) == data
    model_only = lmzip.compress(data, model=str(tiny_gpt_dir), threads=1, fallback=False)
    assert _methods(model_only)["xz"] == 0 and len(model_only) > 5 * len(blob)
    assert lmzip.decompress(model_only) == data


@pytest.mark.skipif(not (FAST_DIR / "model.safetensors").exists(), reason="fast model missing")
def test_text_the_model_codes_well_stays_model_coded():
    data = open(api.__file__, "rb").read()[:6000]  # prose-like code, nothing repeated
    stats = api.compress_stream(io.BytesIO(data), out := io.BytesIO(), "fast", threads=1)
    assert stats.extra["fallback_blocks"] == 0 and _methods(out.getvalue())["model"] >= 1


def test_mixed_blocks_round_trip(tiny_gpt_dir):
    # skewed bytes order2 codes below xz, then noise only storing can hold: per block beats xz overall
    skewed = bytes(random.Random(0).choices(b"etao", weights=[70, 10, 10, 10], k=6000))
    data = skewed + os.urandom(2000)
    blob = lmzip.compress(data, model="order2", chunk=400, streams=2)
    methods = _methods(blob)
    assert methods["model"] >= 1 and methods["xz"] + methods["stored"] >= 1
    assert lmzip.decompress(blob) == data


def test_whole_file_xz_replaces_blocks_where_smaller():
    """Per-block xz sees one block at a time; where xz over the whole file is smaller, the file
    becomes one xz block (same format: the header's stream count covers every chunk)."""
    data = SAMPLE_TEXT.encode()[:2000] + os.urandom(2000) + b"abc" * 2000
    stats = api.compress_stream(io.BytesIO(data), out := io.BytesIO(), "order2", chunk=400, streams=2)
    blob = out.getvalue()
    header = api.read_header(io.BytesIO(blob))
    assert stats.extra["whole_file_fallback"] and stats.compressed_bytes == len(blob)
    assert _methods(blob) == {"model": 0, "stored": 0, "xz": 1}
    assert header.streams == -(-header.n_tokens // 400) == stats.streams
    assert len(blob) <= len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)) + len(header.to_bytes())
    assert lmzip.decompress(blob) == data


def test_format_version_1_files_still_decode():
    data = SAMPLE_TEXT.encode()[:3000]
    blob = lmzip.compress(data, model="order0", chunk=500, streams=2, fallback=False)
    source = io.BytesIO(blob)
    header = api.read_header(source)
    old = io.BytesIO()
    header.version = 1
    old.write(header.to_bytes())
    while source.tell() < len(blob):  # version 1: a plain byte count before each block
        method, block = container.read_block(source, 2, limit=len(blob))
        assert method == container.BLOCK_MODEL
        old.write(container.write_varint(len(block)) + block)
    assert old.getvalue() != blob and lmzip.decompress(old.getvalue()) == data
    assert _methods(old.getvalue())["model"] == 3


def test_cli_info_counts_block_methods(tmp_path):
    import json
    import subprocess
    import sys

    src = tmp_path / "mixed.bin"
    src.write_bytes(os.urandom(5000))
    run = [sys.executable, "-m", "lmzip.cli"]
    subprocess.run(run + ["compress", "-q", "--model", "order0", str(src)], check=True)
    info = json.loads(subprocess.run(run + ["info", "--json", str(src) + ".lmz"], check=True,
                                     capture_output=True, text=True).stdout)
    assert info["format_version"] == 2 and info["blocks"] == {"model": 0, "stored": 1, "xz": 0}
