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
    """A file made with another learning rate, schedule, group and the older training (foreach
    AdamW, a recomputed window of context, SDPA over bucketed spans, float32 updates) decodes with a
    default predictor."""
    data = SAMPLE_TEXT.encode()[:2500]
    from lmzip.online import OnlinePredictor

    encoder = OnlinePredictor("scratch", threads=1, lr=2e-3, decay=10, group=8, window=32, fused=False,
                              cached_context=False, exact_spans=False, mixed=False)
    assert encoder.settings()["train"] == "lr0.002.g8.w32.s0.d10"  # as older files have it
    blob = lmzip.compress(data, model=encoder, chunk=64, streams=3)
    decoder = small("scratch")
    assert decoder.lr != 2e-3 and decoder.fused and decoder.cached_context and decoder.exact_spans and decoder.mixed
    assert decoder.settings()["train"].endswith(".f1.c1.a1.m1")
    assert lmzip.decompress(blob, model=decoder) == data
    assert (decoder.lr, decoder.decay, decoder.group, decoder.window) == (2e-3, 10.0, 8, 32)
    assert not decoder.fused and not decoder.cached_context and not decoder.exact_spans and not decoder.mixed
    assert encoder.weights_digest() == decoder.weights_digest()


def test_training_with_cached_context_sees_what_a_full_pass_sees():
    """Online training attends to the stepper's cached keys/values of earlier positions; with
    the same weights that is the full teacher-forced pass, restricted to the new positions."""
    import torch

    from lmzip.models.gpt import GPT, GPTConfig, KVStepper

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50, context=24, n_layer=2, n_head=2, n_embd=16)).eval()
    ids = torch.randint(0, 50, (3, 20))
    stepper = KVStepper(model, 3, torch.float32)
    for t in range(20):
        stepper.step(ids[:, t])
    start = 12
    past = [(k[:, :, :start], v[:, :, :start]) for k, v in zip(stepper.k, stepper.v)]
    with torch.no_grad():
        full = model(ids)[:, start:]
        cached = model(ids[:, start:], pos_offset=start, past=past)
        no_past = model(ids[:, start:], pos_offset=start)
    torch.testing.assert_close(cached, full, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(no_past, full, rtol=1e-4, atol=1e-4)  # the context does matter


def test_stepping_over_exact_spans_matches_bucketed_sdpa():
    """Online stepping attends over exactly the positions so far with plain products; it
    computes what SDPA over a masked bucket computes (up to rounding)."""
    import torch

    from lmzip.models.gpt import GPT, GPTConfig, KVStepper

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50, context=24, n_layer=2, n_head=2, n_embd=16)).eval()
    ids = torch.randint(0, 50, (3, 20))
    bucketed, exact = KVStepper(model, 3, torch.float32), KVStepper(model, 3, torch.float32, exact_spans=True)
    for t in range(20):
        torch.testing.assert_close(exact.step(ids[:, t]), bucketed.step(ids[:, t]), rtol=1e-5, atol=1e-5)


def test_one_online_predictor_codes_several_files_from_its_first_weights():
    """A reused online predictor (the CLI loads a model once for many files) starts every file
    from its first weights, so each file decodes on its own, in any order."""
    first, second = SAMPLE_TEXT.encode()[:1500], SAMPLE_TEXT.encode()[1500:3000]
    encoder = small("scratch")
    blob_first = lmzip.compress(first, model=encoder, chunk=64, streams=3)
    blob_second = lmzip.compress(second, model=encoder, chunk=64, streams=3)
    assert blob_second == lmzip.compress(second, model=small("scratch"), chunk=64, streams=3)
    decoder = small("scratch")
    assert lmzip.decompress(blob_second, model=decoder) == second
    assert lmzip.decompress(blob_first, model=decoder) == first


def test_cli_online_model_over_several_files(tmp_path):
    import subprocess
    import sys

    names = ["a.txt", "b.txt"]
    for i, name in enumerate(names):
        (tmp_path / name).write_bytes(SAMPLE_TEXT.encode()[i * 1200 : (i + 1) * 1200])
    cli = [sys.executable, "-m", "lmzip.cli"]
    r = subprocess.run(cli + ["compress", *names, "--model", "online-scratch", "--threads", "1", "-q"],
                       cwd=tmp_path, capture_output=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(cli + ["decompress", "b.txt.lmz", "-c"], cwd=tmp_path, capture_output=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout == (tmp_path / "b.txt").read_bytes()


def test_mixed_updates_are_recorded_only_where_they_run():
    """bf16 updates use CPU autocast; the header's ".m1" says so only for a CPU model."""
    from lmzip.online import OnlinePredictor

    assert OnlinePredictor("scratch", threads=1).settings()["train"].endswith(".m1")
    assert not OnlinePredictor("scratch", threads=1, mixed=False).settings()["train"].endswith(".m1")
