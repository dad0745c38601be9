"""lmzip models: what is installed, how big, integer or float, ready or not; nothing loaded or converted."""

import json

import gguf

from lmzip.models import MODELS
from lmzip.models.inventory import gguf_parameters, safetensors_parameters
from lmzip.models.integer_predictor import PORTABLE_DIR
from test_cli import lmzip


def test_parameter_counts_come_from_the_files_headers(tiny_gguf):
    reader = gguf.GGUFReader(tiny_gguf)
    assert gguf_parameters(tiny_gguf) == sum(int(t.n_elements) for t in reader.tensors) > 0
    assert safetensors_parameters(PORTABLE_DIR / "model.safetensors") > 5_000_000


def test_models_lists_every_model_once(monkeypatch, tmp_path):
    monkeypatch.setenv("LMZIP_CACHE", str(tmp_path))  # nothing converted yet: smollm2 says so
    r = lmzip("models", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [m["name"] for m in doc] == list(MODELS)
    listed = {m["name"]: m for m in doc}
    assert listed["fast"]["arithmetic"] == "integer" and listed["fast"]["state"] == "ready"
    assert listed["fast"]["parameters"] == listed["fast-float"]["parameters"]  # one network, two arithmetics
    assert listed["fast-float"]["arithmetic"] == "float" and listed["order2"]["arithmetic"] == "classical"
    assert listed["smollm2"]["state"] in ("converted on first use (about 30 s)",) or "install" in listed["smollm2"]["state"]
    assert not list(tmp_path.iterdir())  # looked at, not converted
    assert b"fast" in lmzip("models").stdout
