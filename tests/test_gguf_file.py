"""Bring your own model: a llama GGUF given by path or by name becomes an integer-exact model whose
files name the GGUF by a record (architecture, derivation, SHA-256, size, name) and decode wherever
the same GGUF is; any weight type the gguf package reads; one line, exit 3, for what is not
supported or not here."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

import lmzip
from lmzip import api
from lmzip.errors import ModelNotAvailable
from lmzip.models import load_predictor, native
from lmzip.models.gguf.files import Record

from conftest import CONFIG, SAMPLE_TEXT, write_tiny_gguf

DATA = SAMPLE_TEXT[:1200].encode() + bytes(range(256))
# every weight type family: legacy quants, floats and K-quants (whose rows are 256 long: ffn 256)
KINDS = {"attn_q": "Q5_0", "attn_k": "Q4_0", "attn_v": "F16", "attn_output": "BF16", "ffn_gate": "Q5_1",
         "ffn_up": "Q8_0", "ffn_down": "Q6_K"}
K_CONFIG = {**CONFIG, "ffn": 256}


@pytest.fixture(scope="module")
def cache(tmp_path_factory, monkeypatch_module):
    folder = tmp_path_factory.mktemp("cache")
    monkeypatch_module.setenv("LMZIP_CACHE", str(folder))
    monkeypatch_module.delenv("LMZIP_MODELS", raising=False)
    return folder


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(scope="module")
def bpe_gguf(tmp_path_factory, cache):
    path = tmp_path_factory.mktemp("models") / "tiny-bpe.gguf"
    write_tiny_gguf(path, seed=5, config=K_CONFIG, kinds=KINDS, tokenizer="gpt2")
    return path


def test_a_gguf_by_path_codes_files_named_by_a_record_that_decode_from_the_cache(bpe_gguf, cache):
    blob = lmzip.compress(DATA, model=str(bpe_gguf), chunk=64, fallback=False)
    header = api.read_header(io.BytesIO(blob))
    record = Record.parse(header.model)
    assert header.portable and header.model.startswith("gguf:llama:")
    assert (record.name, record.size, record.architecture) == ("tiny-bpe.gguf", bpe_gguf.stat().st_size, "llama")
    assert str(bpe_gguf.parent) not in header.model  # nothing of this machine's folders
    assert lmzip.decompress(blob) == DATA  # by the record: converted in the cache already
    numpy_blob = lmzip.compress(DATA, model=load_predictor(str(bpe_gguf), backend="numpy"), chunk=64, fallback=False)
    assert numpy_blob == blob


def test_a_decoder_without_the_gguf_says_which_file_it_needs_and_finds_it_by_name(bpe_gguf, tmp_path,
                                                                                   monkeypatch):
    blob = lmzip.compress(DATA[:600], model=str(bpe_gguf), chunk=64)
    monkeypatch.setenv("LMZIP_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(ModelNotAvailable, match=r"tiny-bpe.gguf \([\d,]+ bytes, SHA-256 [0-9a-f]{16}"):
        lmzip.decompress(blob)
    other = tmp_path / "other"  # a different file under the same name is not it
    other.mkdir()
    write_tiny_gguf(other / "tiny-bpe.gguf", seed=6, config=K_CONFIG, kinds=KINDS, tokenizer="gpt2")
    monkeypatch.setenv("LMZIP_MODELS", f"{other}:{bpe_gguf.parent}")
    assert lmzip.decompress(blob) == DATA[:600]
    assert load_predictor("tiny-bpe").name == load_predictor("tiny-bpe.gguf").name  # by name, from the first folder
    assert Record.parse(load_predictor("tiny-bpe").name).sha256 != Record.parse(api.read_header(
        io.BytesIO(blob)).model).sha256


def test_the_integer_model_of_any_weight_type_predicts_like_transformers_float(bpe_gguf):
    """transformers dequantizes the GGUF with its own code: a wrong layout of any type is far off."""
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM

    from lmzip.models.float.hf import quiet_transformers

    with quiet_transformers():
        reference = AutoModelForCausalLM.from_pretrained(bpe_gguf.parent, gguf_file=bpe_gguf.name, dtype=torch.float32)
    idx = np.random.default_rng(2).integers(0, CONFIG["vocab"], size=(1, 40))
    with torch.no_grad():
        p = torch.softmax(reference(torch.as_tensor(idx)).logits[0].double(), -1).numpy()
    predictor = load_predictor(str(bpe_gguf), backend="numpy")
    freqs = predictor.model.forward(idx)[0].astype(np.float64)[:, : CONFIG["vocab"]]
    q = freqs / freqs.sum(-1, keepdims=True)
    kl = (p * np.log(p / q)).sum(-1).mean()
    kl_uniform = (p * np.log(p * CONFIG["vocab"])).sum(-1).mean()
    assert kl < 0.05 * kl_uniform, (kl, kl_uniform)


@pytest.mark.parametrize("architecture, tokenizer", [("qwen3", "gpt2"), ("llama", "llama"), ("gemma3", "llama")])
def test_other_architectures_and_sentencepiece_vocabularies_round_trip(tmp_path, cache, architecture, tokenizer):
    """qwen3's head norms (heads wider than channels over heads) with a byte-level BPE; a llama and a
    gemma3 (windows of 16 tokens, chunks of 64) with a SentencePiece-style vocabulary (▁, <0xNN>):
    files named by the architecture, decoded exactly."""
    path = tmp_path / f"tiny-{architecture}.gguf"
    write_tiny_gguf(path, seed=8, config=dict(CONFIG, heads=2, kv_heads=1, head_dim=64, window=16),
                    tokenizer=tokenizer, architecture=architecture)
    blob = lmzip.compress(DATA, model=str(path), chunk=64, fallback=False)
    assert api.read_header(io.BytesIO(blob)).model.startswith(f"gguf:{architecture}:")
    assert lmzip.decompress(blob) == DATA
    if native.available():  # the native step, with its head norms, writes the same file
        assert lmzip.compress(DATA, model=load_predictor(str(path), backend="native"), chunk=64,
                              fallback=False) == blob
    assert lmzip.compress(DATA, model=load_predictor(str(path), backend="numpy"), chunk=64, fallback=False) == blob


@pytest.mark.parametrize("change, message", [
    (dict(architecture="phi3"), "architecture 'phi3' is not supported"),
    (dict(tokenizer="t5"), "tokenizer 't5' is not supported"),
    (dict(architecture="gemma3", config=dict(CONFIG, window=8, softcap=30.0)),
     "gemma3.final_logit_softcapping is not supported"),
    (dict(architecture="qwen3", config=dict(CONFIG, omit=("attn_k_norm",))),
     "a qwen3 without attn_k_norm.weight: not supported"),
])
def test_what_is_not_supported_is_one_line_and_exit_3(tmp_path, change, message, cache):
    from test_cli import run_in_process

    path = tmp_path / "unsupported.gguf"
    write_tiny_gguf(path, **{"tokenizer": "gpt2", **change})
    with pytest.raises(ModelNotAvailable, match=message):
        load_predictor(str(path))
    (tmp_path / "a.txt").write_bytes(b"some text")
    r = run_in_process("compress", "--model", path, tmp_path / "a.txt")
    err = r.stderr.decode()
    assert r.returncode == 3 and message in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert not (tmp_path / "a.txt.lmz").exists()


def test_lmzip_models_lists_the_ggufs_of_lmzip_models_and_what_they_need(bpe_gguf, tmp_path, monkeypatch):
    from test_cli import run_in_process

    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "tiny-bpe.gguf").symlink_to(bpe_gguf)
    write_tiny_gguf(folder / "other-arch.gguf", architecture="phi3", tokenizer="gpt2")
    (folder / "broken.gguf").write_bytes(b"GGUF not really")
    monkeypatch.setenv("LMZIP_MODELS", str(folder))
    load_predictor("tiny-bpe")  # converted (in this module's cache) by name
    r = run_in_process("models", "--json")
    listed = {m["name"]: m for m in json.loads(r.stdout)}
    assert r.returncode == 0 and "smollm2" in listed
    assert listed["tiny-bpe"]["state"] == "ready" and listed["tiny-bpe"]["arithmetic"] == "integer"
    assert listed["tiny-bpe"]["parameters"] > 100_000
    assert listed["other-arch"]["state"] == "not supported: architecture 'phi3'"
    assert "not a readable GGUF" in listed["broken"]["state"]


def _tiny_package(bpe_gguf, monkeypatch, module: str = "tiny_gguf_package"):
    """The tiny GGUF as a registered, packaged model: "gemma3-270m" stands for it."""
    import sys
    import types

    from lmzip.models.gguf import files as gguf_file

    package = types.ModuleType("tiny_gguf_package")
    package.assemble = lambda: bpe_gguf
    monkeypatch.setitem(sys.modules, "tiny_gguf_package", package)
    record = Record("llama", gguf_file.LLAMA_FORMAT, gguf_file.file_sha256(bpe_gguf)[:16], bpe_gguf.stat().st_size,
                    bpe_gguf.name)
    monkeypatch.setitem(gguf_file.PACKAGED, "gemma3-270m", gguf_file.Packaged(record, module, "pip install tiny"))


def test_a_registered_gguf_names_files_by_its_registry_name_and_comes_from_its_package(bpe_gguf, tmp_path,
                                                                                        monkeypatch):
    """gemma3-270m's files name the registered model (a default run's gets the compact header); they
    decode from the cache's conversion, or from the package's GGUF on a machine without one; a file
    made from the same GGUF by path finds it in the package too."""
    _tiny_package(bpe_gguf, monkeypatch)
    blob = lmzip.compress(DATA[:700], model="gemma3-270m", chunk=64)
    by_path = lmzip.compress(DATA[:500], model=str(bpe_gguf), chunk=64)
    assert api.read_header(io.BytesIO(blob)).model == "gemma3-270m"
    monkeypatch.setenv("LMZIP_CACHE", str(tmp_path / "empty-cache"))
    assert lmzip.decompress(blob) == DATA[:700]  # converted again from the package's GGUF
    monkeypatch.setenv("LMZIP_CACHE", str(tmp_path / "another-empty-cache"))
    assert lmzip.decompress(by_path) == DATA[:500]


def test_without_its_package_a_registered_gguf_says_what_to_install(bpe_gguf, tmp_path, monkeypatch):
    blob = lmzip.compress(DATA[:500], model=str(bpe_gguf), chunk=64)
    _tiny_package(bpe_gguf, monkeypatch, module="no_such_package_here")
    monkeypatch.setenv("LMZIP_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(ModelNotAvailable, match=r"tiny-bpe.gguf \([\d,]+ bytes, .*\(or pip install tiny\)"):
        lmzip.decompress(blob)
    with pytest.raises(ModelNotAvailable, match=r"gemma3-270m needs tiny-bpe.gguf \(.*\): install it with: "
                                                r"pip install tiny"):
        load_predictor("gemma3-270m")


def test_a_registered_gguf_converted_already_is_listed_ready_without_its_package(bpe_gguf, tmp_path, monkeypatch):
    """It loads from the cache's conversion whether or not its package is installed: so says `lmzip models`."""
    from lmzip.models.inventory import describe

    monkeypatch.setenv("LMZIP_CACHE", str(tmp_path / "cache"))
    _tiny_package(bpe_gguf, monkeypatch, module="no_such_package_here")
    assert describe("gemma3-270m").state.startswith("not installed: pip install tiny")
    load_predictor(str(bpe_gguf))  # converted into the cache, as a first use by path does
    listing = describe("gemma3-270m")
    assert listing.state == "ready (its package is not installed)" and "gguf-int" in listing.where
