"""Online coding: the decoder replays the encoder's training exactly."""

import io

import pytest

import lmzip
from lmzip import api
from lmzip.models import load_predictor
from lmzip.models.own import FAST_DIR
from conftest import SAMPLE_TEXT

pytestmark = pytest.mark.skipif(not (FAST_DIR / "tokenizer.json").exists(), reason="fast tokenizer missing")


def small(base):
    return load_predictor(f"online-{base}", threads=1)


def test_online_round_trip_replays_identical_updates():
    data = SAMPLE_TEXT.encode()[:3000] + b"\xff\xfe"
    encoder = small("scratch")
    blob = lmzip.compress(data, model=encoder, chunk=64, streams=3)
    decoder = small("scratch")
    assert lmzip.decompress(blob, model=decoder) == data
    assert len(encoder.losses) > 5
    assert encoder.weights_digest() == decoder.weights_digest()
    assert encoder.weights_digest() != small("scratch").weights_digest()  # it did learn


def test_online_learning_helps():
    data = SAMPLE_TEXT.encode() * 2
    online = api.compress_stream(io.BytesIO(data), io.BytesIO(), small("scratch"), chunk=64, streams=2)
    assert online.bits_per_byte < 6.0  # an untrained 8k-vocab model pays ~13 bits a token


def test_cli_online_json(tmp_path):
    import json
    import subprocess
    import sys

    src = tmp_path / "t.txt"
    src.write_bytes(SAMPLE_TEXT.encode()[:1500])
    r = subprocess.run([sys.executable, "-m", "lmzip.cli", "compress", str(src), "--online", "--threads", "1", "--json"], capture_output=True)
    assert r.returncode == 0, r.stderr
    stats = json.loads(r.stdout)
    assert stats["model"] == "online-scratch"
    assert stats["code_bytes"] > 1000
    payload_bits = 8 * (stats["compressed_bytes"] - stats["header_bytes"])
    assert abs(payload_bits / stats["nll_bits"] - 1) < 0.02  # size = area under the loss curve (+ coder flush)
    r = subprocess.run([sys.executable, "-m", "lmzip.cli", "decompress", str(src) + ".lmz", "-c"],
                       capture_output=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout == src.read_bytes()


@pytest.mark.fallback
def test_online_blocks_never_fall_back():
    import os

    data = os.urandom(1500)  # xz or storing would beat an untrained model here
    stats = api.compress_stream(io.BytesIO(data), out := io.BytesIO(), small("scratch"), chunk=64, streams=3)
    source = io.BytesIO(out.getvalue())
    methods = api.block_methods(source, api.read_header(source))
    assert methods["model"] >= 1 and methods["stored"] == methods["xz"] == 0
    assert stats.extra["fallback_blocks"] == 0
    assert lmzip.decompress(out.getvalue(), model=small("scratch")) == data


def test_decoder_adopts_the_files_training_settings():
    """A file made with another learning rate, schedule and group decodes with a default predictor."""
    data = SAMPLE_TEXT.encode()[:2500]
    from lmzip.online import OnlinePredictor

    encoder = OnlinePredictor("scratch", threads=1, lr=2e-3, decay=10, group=8)
    blob = lmzip.compress(data, model=encoder, chunk=64, streams=3)
    decoder = small("scratch")
    assert decoder.lr != 2e-3
    assert lmzip.decompress(blob, model=decoder) == data
    assert (decoder.lr, decoder.decay, decoder.group) == (2e-3, 10.0, 8)
    assert encoder.weights_digest() == decoder.weights_digest()
