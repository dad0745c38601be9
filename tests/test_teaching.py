"""Teaching: the decoder as a generator (lmzip generate) and two models side by side (explain --compare)."""

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from lmzip import api, engine
from lmzip.explain import compare, explain, render_compare_html
from lmzip.generate import Tempered, generate, noise
from lmzip.models import load_predictor
from conftest import SAMPLE_TEXT
from test_cli import run_in_process

GOLDEN = Path(__file__).parent / "golden" / "generate-fast-seed7.txt"


@pytest.fixture(scope="module")
def fast():
    return load_predictor("fast")


def test_an_integer_model_writes_the_same_sample_for_a_seed_everywhere(fast):
    """The golden text was generated once; every machine and backend must decode the same from seed 7."""
    sample = generate(fast, 80, seed=7, prompt=b"The model")
    assert sample.text == GOLDEN.read_bytes()
    assert generate(load_predictor("fast", backend="numpy"), 80, seed=7, prompt=b"The model").text == sample.text
    assert generate(fast, 80, seed=8, prompt=b"The model").text != sample.text


def test_scalar_kernels_in_a_fresh_process_write_the_golden_sample(tmp_path):
    code = ("from lmzip.models import load_predictor; from lmzip.generate import generate; import sys; "
            "sys.stdout.buffer.write(generate(load_predictor('fast'), 80, seed=7, prompt=b'The model').text)")
    env = {"ATEN_CPU_CAPABILITY": "default", "LMZIP_NATIVE": "0", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-500:]
    assert out.stdout == GOLDEN.read_bytes()


@pytest.mark.parametrize("mix", [True, False])
def test_compressing_a_sample_costs_the_bits_generate_reported(fast, mix):
    for seed in (1,):
        sample = generate(fast, 200, seed=seed, mix=mix)
        stats = api.compress_stream(io.BytesIO(sample.text), io.BytesIO(), fast, mix=mix, fallback=False)
        assert 8 * stats.compressed_bytes <= sample.bits * 1.01 + 8 * 64
        assert stats.nll_bits == pytest.approx(sample.bits, rel=0.05)  # the text may be cut into other tokens


def test_encoding_the_sampled_tokens_gives_back_the_random_bits(fast):
    """Decoding noise and encoding the result are inverses: the sample's code is the noise itself."""
    sample = generate(fast, 150, seed=3, mix=False)
    ids = fast.tokenizer.encode(sample.text)
    code = engine.encode_block(fast, [ids]).data
    same = next((i for i, (a, b) in enumerate(zip(code, noise(3, len(code)))) if a != b), len(code))
    assert same >= len(code) - 9  # all but the coder's last bytes, which close the final interval
    assert abs(8 * same - sample.bits) < 80


def test_a_tempered_sample_counts_its_bits_under_the_tempered_model(fast):
    cold = generate(fast, 120, seed=4, temperature=0.5, mix=False)
    warm = generate(fast, 120, seed=4, mix=False)
    assert cold.bits < warm.bits
    tempered = Tempered(fast, 0.5)
    record = []
    engine.encode_block(tempered, [fast.tokenizer.encode(cold.text)],
                        record=lambda t, symbols, probs, bits, carried: record.append(bits.sum()))
    assert sum(record) == pytest.approx(cold.bits, rel=0.05)
    with pytest.raises(ValueError, match="above 0"):
        Tempered(fast, 0.0)


def test_the_prompt_conditions_the_sample_and_any_bytes_work(fast):
    prompt = b"caf\xc3\xa9 \xff\x00 bytes\r\n"
    sample = generate(fast, 30, seed=5, prompt=prompt)
    assert sample.prompt == prompt and len(sample.text) > 0
    assert generate(fast, 30, seed=5).text != sample.text
    assert generate(fast, 30, seed=5, prompt=b"caf\xc3\xa9 \xfe\x00 bytes\r\n").text != sample.text  # one byte


def test_a_seed_s_sample_does_not_depend_on_how_long_it_is(fast):
    short, longer = generate(fast, 40, seed=9), generate(fast, 90, seed=9)
    assert longer.text.startswith(short.text[: len(short.text) // 2])


def test_progress_counts_the_generated_tokens(fast):
    seen = []
    generate(fast, 25, seed=1, prompt=b"Once", progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (25, 25) and all(total == 25 for _, total in seen) and seen == sorted(seen)


def test_generate_on_the_command_line():
    r = run_in_process("generate", "-m", "fast", "-n", "20", "--seed", "7", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["tokens"] == 20 and doc["bits"] > 0 and doc["model"] == "fast"
    nothing = run_in_process("generate", "-m", "fast", "-n", "0")
    assert nothing.returncode == 0 and nothing.stdout == b""
    refused = run_in_process("generate", "-m", "online-fast", "-n", "5")
    assert refused.returncode == 1 and b"learns from what it codes" in refused.stderr
    for args in (["-t", "0"], ["-t", "inf"], ["-n", "600"], ["-p", "word " * 600]):  # fast sees 512 tokens
        bad = run_in_process("generate", "-m", "fast", "-n", "10", *args)
        assert bad.returncode == 1 and bad.stderr.count(b"\n") == 1 and b"Traceback" not in bad.stderr, args
    assert b"the prompt is" in run_in_process("generate", "-m", "fast", "-p", "word " * 600).stderr


def test_a_prompt_of_bytes_that_are_not_utf8_reaches_the_model_unchanged():
    code = "from lmzip.cli import main; main()"
    out = subprocess.run([sys.executable, "-c", code, "generate", "-m", "order0", "-n", "4", "-q", "-p", b"\xff\xfeA"],
                         capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(b"\xff\xfeA")


DATA = (SAMPLE_TEXT[:400] * 2).encode() + b"\xff tail"


@pytest.mark.parametrize("other", ["fast --no-mix", "order2"])  # one tokenizer, then bytes against tokens
def test_compare_totals_are_each_models_compression_bits(fast, other):
    second, mix = (fast, False) if other == "fast --no-mix" else (load_predictor(other), True)
    comparison = compare(explain(DATA, fast), explain(DATA, second, mix=mix))
    for predictor, mixed, total in ((fast, True, comparison.first.total_bits),
                                    (second, mix, comparison.second.total_bits)):
        stats = api.compress_stream(io.BytesIO(DATA), io.BytesIO(), predictor, fallback=False, mix=mixed)
        assert total == pytest.approx(stats.nll_bits, rel=1e-6)
    assert b"".join(s.text for s in comparison.spans) == DATA
    for side, explanation in enumerate((comparison.first, comparison.second)):
        assert sum(s.bits[side] for s in comparison.spans) == pytest.approx(explanation.total_bits)
    if second is fast:  # one tokenizer: a span per token
        assert len(comparison.spans) == len(comparison.first.tokens)
    else:
        assert len(comparison.spans) < len(comparison.second.tokens)


def test_compare_names_the_savings_and_renders(fast):
    comparison = compare(explain(DATA, load_predictor("order2")), explain(DATA, fast))
    doc = comparison.to_dict()
    assert doc["models"] == ["order2", "fast"]
    assert doc["top_savings"] and all(r["saving_bits"] > 0 for r in doc["top_savings"])
    assert all(r["saving_bits"] < 0 for r in doc["top_losses"])
    assert doc["top_savings"] == sorted(doc["top_savings"], key=lambda r: -r["saving_bits"])
    page = render_compare_html(comparison)
    assert page.startswith("<!doctype html>") and "saves most" in page and page.count("<span") > len(comparison.spans)


def test_explain_compare_on_the_command_line(tmp_path):
    source = tmp_path / "text.txt"
    source.write_bytes(DATA[:600])
    page = tmp_path / "compare.html"
    r = run_in_process("explain", source, "-m", "order2", "--compare", "fast", "--json", "--html", page)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["models"] == ["order2", "fast"] and len(doc["total_bits"]) == 2
    assert all(len(span["bits"]) == 2 for span in doc["spans"])
    assert "<table>" in page.read_text()
