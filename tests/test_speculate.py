"""Speculative steps (speculate.py): guessed tokens checked in the pass that computes the needed row
give exactly a plain stepper's rows, and the same decoded bytes; right guesses save passes."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest

import lmzip
from lmzip import api
from lmzip.models import native
from lmzip.models.integer.llama import IntLlama, IntLlamaStepper, runtime_arrays
from lmzip.models.integer.ops import NumpyOps
from lmzip.models.integer.speculate import MAX_DRAFT, Acceptance, MatchDrafter, SpeculativeStepper, draft_length

from conftest import CONFIG


def test_the_drafter_guesses_what_followed_the_last_occurrence():
    drafter = MatchDrafter()
    drafter.next_block(2)
    for token in [5, 6, 7, 8, 5, 6]:
        drafter.feed(0, token)
    assert drafter.draft(0, 3) == [7, 8, 5]  # after (5, 6): 7, 8, 5
    assert drafter.draft(0, 0) == []
    drafter.feed(1, 9)
    assert drafter.draft(1, 2) == []  # too short a history, and (9,) never seen
    for token in [7, 8]:
        drafter.feed(1, token)
    assert drafter.draft(1, 2) == [5, 6]  # another stream's history: (7, 8) was followed by 5, 6
    drafter.next_block(1)  # a later block of the same file keeps what was learned
    for token in [5, 6]:
        drafter.feed(0, token)
    assert drafter.draft(0, 2) == [7, 8]


def test_the_draft_length_follows_acceptance_and_cost():
    sure, never = Acceptance(), Acceptance()
    sure.checked[:], sure.right[:] = 1000, 990
    never.checked[:], never.right[:] = 1000, 0
    assert draft_length(sure, row_cost=0.1) == MAX_DRAFT
    assert draft_length(never, row_cost=0.1) == 0
    assert draft_length(sure, row_cost=1.5) == 0  # rows dearer than a whole step: guessing never pays
    assert draft_length(Acceptance(), row_cost=0.1) > 0  # no evidence yet: worth a try


try:
    native.load()
    HAS_NATIVE = True
except native.NativeUnavailable:
    HAS_NATIVE = False
needs_native = pytest.mark.skipif(not HAS_NATIVE, reason="native backend unavailable")


@needs_native
@pytest.mark.parametrize("row_cost", [0.0, 0.4])
def test_speculative_steps_are_plain_steps(tiny_int_llama, row_cost):
    """A repetitive sequence (guesses often right) and random tokens (mostly wrong), streams dropping
    out: every row equals the numpy stepper's; right guesses are counted."""
    weights, config = tiny_int_llama
    runtime = runtime_arrays(weights)
    on_numpy = IntLlama(runtime, config, NumpyOps())
    on_native = native.NativeLlama(IntLlama(runtime, config, native.NativeOps(native.load())))
    rng = np.random.default_rng(5)
    pattern = rng.integers(0, CONFIG["vocab"], 7)
    idx = np.stack([np.tile(pattern, 6)[:40], rng.integers(0, CONFIG["vocab"], 40),
                    np.tile(pattern[::-1], 6)[:40]])
    acceptance = Acceptance()
    stepper = SpeculativeStepper(on_native.stepper(3, 40 + MAX_DRAFT), 3, MatchDrafter(), acceptance, row_cost)
    reference = IntLlamaStepper(on_numpy, 3, 40)
    for t in range(40):
        active = 3 if t < 30 else 2
        np.testing.assert_array_equal(stepper.step(idx[:active, t]), reference.step(idx[:active, t]))
    report = acceptance.report()
    assert report["accepted_tokens"] > 20 and 0 < report["acceptance_rate"] <= 1


@needs_native
def test_a_decode_that_guesses_gives_the_same_bytes_and_reports_its_guesses(tiny_int_llama_dir, tmp_path,
                                                                            monkeypatch):
    from lmzip.models import integer_predictor, load_predictor

    # the tiny model's extra rows cost as much as its steps (measured): guessing would not pay, so
    # it would not guess; here rows are declared free, to make it guess
    monkeypatch.setenv("LMZIP_CACHE", str(tmp_path))
    monkeypatch.setattr(integer_predictor, "extra_row_cost", lambda model, n_streams: 0.0)

    data = b"a line that repeats, and repeats again; " * 12 + bytes(range(40))
    blob = lmzip.compress(data, model=load_predictor(str(tiny_int_llama_dir), backend="numpy"), chunk=120,
                         fallback=False)
    outs = {}
    for speculate in (False, True):
        decoder = load_predictor(str(tiny_int_llama_dir), backend="native", speculate=speculate)
        out = io.BytesIO()
        outs[speculate] = api.decompress_stream(io.BytesIO(blob), out, decoder).extra, out.getvalue()
    assert outs[False][1] == outs[True][1] == data
    assert outs[False][0] == {} and outs[True][0]["accepted_tokens"] > 0
    (tmp_path / "a.lmz").write_bytes(blob)
    r = subprocess.run([sys.executable, "-m", "lmzip.cli", "decompress", "--json", "-c", "--model",
                        str(tiny_int_llama_dir), "--backend", "native", str(tmp_path / "a.lmz")], capture_output=True)
    assert r.returncode == 0 and r.stdout == data
    report = json.loads(r.stderr)  # a fresh process measures what rows cost, and reports whatever it guessed
    assert 0 <= report["accepted_tokens"] <= report["drafted_tokens"] and 0 <= report["acceptance_rate"] <= 1
