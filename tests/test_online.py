"""Online coding: the decoder replays the encoder's training exactly."""

import io

import pytest

import lmzip
from lmzip import api, container
from lmzip.models.float.gpt_predictor import FAST_DIR
from conftest import SAMPLE_TEXT

pytestmark = pytest.mark.skipif(not (FAST_DIR / "tokenizer.json").exists(), reason="fast tokenizer missing")


TINY = dict(n_layer=1, n_head=2, n_embd=64, context=64)  # the API tests' online model: same code, 1/10 the work


def small(base):
    from lmzip.models.float.online import OnlinePredictor

    return OnlinePredictor(base, threads=1, config=TINY)


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
    """Against the same seeded model coding the same text without updates: learning must pay."""
    data = SAMPLE_TEXT.encode() * 2
    online = api.compress_stream(io.BytesIO(data), io.BytesIO(), small("scratch"), chunk=64, streams=2)
    frozen = small("scratch")
    frozen.observe = lambda coded, n_active: None  # the same predictor that never learns
    still = api.compress_stream(io.BytesIO(data), io.BytesIO(), frozen, chunk=64, streams=2)
    assert still.bits_per_byte > 3.0  # an untrained 8k-vocab model
    assert online.bits_per_byte < 0.75 * still.bits_per_byte


@pytest.mark.fallback
def test_online_blocks_never_fall_back():
    import os

    data = os.urandom(1500)  # xz or storing would beat an untrained model here
    stats = api.compress_stream(io.BytesIO(data), out := io.BytesIO(), small("scratch"), chunk=64, streams=3)
    methods = container.Reader(io.BytesIO(out.getvalue())).method_counts()
    assert methods["model"] >= 1 and methods["stored"] == methods["xz"] == 0
    assert stats.extra["fallback_blocks"] == 0
    assert lmzip.decompress(out.getvalue(), model=small("scratch")) == data


def test_decoder_adopts_the_files_training_settings():
    """A file made with another learning rate, group and float32 updates decodes with a default predictor."""
    data = SAMPLE_TEXT.encode()[:2500]
    from lmzip.models.float.online import OnlinePredictor

    encoder = OnlinePredictor("scratch", threads=1, lr=2e-3, group=8, bf16_updates=False, config=TINY)
    assert encoder.settings().train == "lr0.002.g8.w32.s0.f1.c1.a1"  # as lmzip 0.2.0 wrote recipe 1
    blob = lmzip.compress(data, model=encoder, chunk=64, streams=3)
    decoder = OnlinePredictor("scratch", threads=1, bf16_updates=True, config=TINY)
    assert decoder.settings().train == "lr0.0007.g4.w32.s0.f1.c1.a1.m1"
    assert lmzip.decompress(blob, model=decoder) == data
    assert decoder.recipe == encoder.recipe
    assert encoder.weights_digest() == decoder.weights_digest()


@pytest.mark.parametrize("train,words", [
    ("lr0.002.g8.w32.s0.d10", "older lmzip"),  # a 0.x variant: foreach AdamW, recomputed window
    ("lr0.0007.g4.w32.s0.f1.c1", "older lmzip"),  # bucketed stepping attention
    ("lr0.0007.g4.w32.s0.f1.c1.a1.r2", "newer online recipe"),
])
def test_files_of_other_recipes_are_refused_with_a_clear_message(train, words):
    import dataclasses

    from lmzip.errors import FingerprintMismatch

    blob = lmzip.compress(b"some text to learn from", model=small("scratch"), chunk=64, streams=3)
    header = api.read_header(io.BytesIO(blob))
    header.settings = dataclasses.replace(header.settings, train=train)
    forged = header.to_bytes() + blob[len(header.to_bytes()):]
    with pytest.raises(FingerprintMismatch, match=words):
        lmzip.decompress(forged, model=small("scratch"))


def test_training_with_cached_context_sees_what_a_full_pass_sees():
    """Online training attends to the stepper's cached keys/values of earlier positions; with
    the same weights that is the full teacher-forced pass, restricted to the new positions."""
    import torch

    from lmzip.models.float.gpt import GPT, GPTConfig, KVStepper

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

    from lmzip.models.float.gpt import GPT, GPTConfig, KVStepper

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


@pytest.mark.slow  # the API test above covers restarting per file; this one adds the CLI (18 s)
def test_cli_online_over_several_files_reports_json_and_decodes_each_alone(tmp_path):
    """One CLI process codes two files with the real online model (loaded once, restarted for each
    file); the size is the area under the loss curve; the second file decodes on its own."""
    import json
    import subprocess
    import sys

    names = ["a.txt", "b.txt"]
    for i, name in enumerate(names):
        (tmp_path / name).write_bytes(SAMPLE_TEXT.encode()[i * 1200 : (i + 1) * 1200])
    cli = [sys.executable, "-m", "lmzip.cli"]
    r = subprocess.run(cli + ["compress", *names, "--online", "--threads", "1", "--json", "--chunk", "64"],
                       cwd=tmp_path, capture_output=True)
    assert r.returncode == 0, r.stderr
    for stats in map(json.loads, r.stdout.decode().splitlines()):
        assert stats["model"] == "online-scratch"
        assert stats["code_bytes"] > 1000
        payload_bits = 8 * (stats["compressed_bytes"] - stats["header_bytes"])
        assert abs(payload_bits / stats["nll_bits"] - 1) < 0.02  # size = area under the loss curve (+ coder flush)
    r = subprocess.run(cli + ["decompress", "b.txt.lmz", "-c"], cwd=tmp_path, capture_output=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout == (tmp_path / "b.txt").read_bytes()


def test_mixed_updates_are_recorded_and_default_to_the_cpus_hardware():
    """bf16 updates use CPU autocast; the header's ".m1" says so. By default only where the CPU
    has bf16 in hardware (elsewhere bf16 is the slow path)."""
    from lmzip.models.float.online import OnlinePredictor
    from lmzip.models.float.torch_base import default_float_dtype

    assert OnlinePredictor("scratch", threads=1, bf16_updates=True).settings().train.endswith(".m1")
    assert not OnlinePredictor("scratch", threads=1, bf16_updates=False).settings().train.endswith(".m1")
    default = OnlinePredictor("scratch", threads=1).settings().train
    assert default.endswith(".m1") == (default_float_dtype() == "bf16")
