import io
import json

import pytest

from lmzip import api
from lmzip.explain import explain, render_html
from lmzip.models import load_predictor
from conftest import SAMPLE_TEXT

DATA = SAMPLE_TEXT.encode()[:1500] + b"\xff tail"


@pytest.mark.parametrize("spec", ["order2", "tiny"])
def test_explain_total_equals_compress_nll(spec, tiny_gpt_dir):
    name = str(tiny_gpt_dir) if spec == "tiny" else spec
    predictor = load_predictor(name, threads=1) if spec == "tiny" else load_predictor(name)
    result = explain(DATA, predictor, chunk=50 if spec == "tiny" else None, streams=4)
    stats = api.compress_stream(io.BytesIO(DATA), io.BytesIO(), predictor, chunk=50 if spec == "tiny" else None,
                                streams=4, fallback=False)  # the model's own bits, not xz's
    assert result.total_bits == pytest.approx(stats.nll_bits, rel=1e-9)
    assert b"".join(t.text for t in result.tokens) == DATA
    assert 8 * stats.compressed_bytes > result.total_bits


def test_explain_outputs(tiny_gpt_dir):
    predictor = load_predictor(str(tiny_gpt_dir), threads=1)
    result = explain(b"<b>tags & quotes\"</b>", predictor)
    page = render_html(result)
    assert page.startswith("<!doctype html>") and "&lt;" in page and "&amp;" in page and "title=" in page
    doc = json.loads(json.dumps(result.to_dict()))
    assert len(doc["tokens"]) == len(result.tokens)
    assert all(len(t["top"]) == 5 for t in doc["tokens"])


def test_explain_names_the_models_that_carried_the_tokens_of_a_mixed_file():
    data = (SAMPLE_TEXT[:500] * 3).encode()
    predictor = load_predictor("fast")
    result = explain(data, predictor, chunk=48, streams=8)
    stats = api.compress_stream(io.BytesIO(data), io.BytesIO(), predictor, chunk=48, streams=8, fallback=False)
    assert result.total_bits == pytest.approx(stats.nll_bits, rel=1e-9)
    carriers = result.by_carrier()
    assert list(carriers)[0] == "LM" and "match" in carriers and len(carriers) > 2
    assert sum(n for n, _ in carriers.values()) == len(result.tokens)
    assert sum(bits for _, bits in carriers.values()) == pytest.approx(result.total_bits)
    assert carriers["match"][1] / carriers["match"][0] < carriers["LM"][1] / carriers["LM"][0]  # repeats are cheap
    assert {t.carrier for t in explain(data, predictor, chunk=48, streams=8, mix=False).tokens} == {"LM"}
