"""Context models (n-grams, a match model) mixed with integer models: exact round trips both ways,
the same bytes from whole-chunk passes and from stepping, gains on repeats, the LM's cost as the
floor, and a history that holds only earlier steps."""

from __future__ import annotations

import dataclasses
import io
import random
import sys
from pathlib import Path

import numpy as np
import pytest

import lmzip
from lmzip import api, container
from lmzip.errors import ModelError
from lmzip import engine, layout
from lmzip.mixing import (CANDIDATES, CONTEXT_INPUTS, ORDERS, ContextModels, MatchModel, Mixer, MixSetting, NGrams,
                          mix_setting, parse_mix_setting, proposal_grid)
from lmzip.mixing.mixer import WEIGHT_LIMIT
from lmzip.models import load_predictor

from conftest import SAMPLE_TEXT

REPEATS = (SAMPLE_TEXT[:900] * 4).encode()  # repeats far beyond a 48-token chunk
LAYOUT = dict(chunk=48, streams=8)


def _blocks(ids, chunk: int, streams: int):
    return layout.FileLayout.of(len(ids), chunk, streams).split(np.asarray(ids))


def _compress(data: bytes, model, fallback: bool = False, **options) -> tuple[bytes, api.Stats]:
    """Every block model-coded unless ``fallback``: these tests measure the model and the mixing."""
    out = io.BytesIO()
    stats = api.compress_stream(io.BytesIO(data), out, model, fallback=fallback, **LAYOUT, **options)
    return out.getvalue(), stats


@pytest.mark.parametrize("model", ["fast", "llama"])
def test_mixed_files_round_trip_and_whole_chunk_passes_write_the_stepped_bytes(model, tiny_int_llama_dir):
    model = str(tiny_int_llama_dir) if model == "llama" else model
    data = REPEATS + bytes(range(256))  # bytes a llama's vocabulary has no token for, too
    blob, stats = _compress(data, model)
    stepped, _ = _compress(data, model, record=lambda *step: None)  # record forces lockstep stepping
    assert stepped == blob
    assert api.read_header(io.BytesIO(blob)).mix == mix_setting(stats.tokens)  # carried: the file's tokens
    assert lmzip.decompress(blob) == data
    assert stats.nll_bits < stats.lm_nll_bits  # repeats beyond the chunk: the match model pays


def test_repeats_cost_much_less_mixed_and_no_mix_is_the_model_alone():
    mixed, stats = _compress(REPEATS, "fast")
    alone, alone_stats = _compress(REPEATS, "fast", mix=False)
    assert api.read_header(io.BytesIO(alone)).mix is None
    assert alone_stats.nll_bits == alone_stats.lm_nll_bits == stats.lm_nll_bits
    assert stats.nll_bits < 0.8 * stats.lm_nll_bits
    assert len(mixed) < 0.85 * len(alone)
    blocks = -(-stats.tokens // (LAYOUT["chunk"] * LAYOUT["streams"]))
    coded = 8 * (len(mixed) - stats.extra["header_bytes"])
    assert coded < stats.nll_bits * 1.01 + 8 * 8 * blocks  # the coder pays what the mixture costs
    assert lmzip.decompress(alone) == REPEATS


def test_text_without_repeats_costs_at_most_a_trace_more():
    rng = random.Random(7)
    words = SAMPLE_TEXT.split()
    data = " ".join(rng.choice(words) + rng.choice("abcdefghij") for _ in range(700)).encode()
    _, stats = _compress(data, "fast")
    assert stats.nll_bits <= stats.lm_nll_bits * 1.005


def _match_grid(chunks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    match, out = MatchModel(len(chunks)), []
    for t in range(max(len(c) for c in chunks)):
        active = sum(len(c) > t for c in chunks)
        out.append(match.predict(t, active))
        match.update(t, np.array([c[t] for c in chunks[:active]], dtype=np.int64))
    return out


def test_the_match_model_sees_only_earlier_steps():
    """Two streams with the same period-4 tokens. The context at step t (tokens t-3..t-1) recurs
    from t = 7 on; neither stream may use the other's token of the same step, which would give
    stream 1 a prediction at t = 3 (stream 0's 5 6 7 is followed by its 8 at that very step)."""
    row = np.array([5, 6, 7, 8, 5, 6, 7, 8, 5, 6, 7], dtype=np.int64)
    steps = _match_grid([row, row.copy()])
    assert all((predicted == -1).all() for predicted, _ in steps[:7])
    assert all((predicted == row[t]).all() for t, (predicted, _) in enumerate(steps) if t >= 7)
    assert steps[-1][1][0] == 3  # right three times since the match began


def test_no_model_sees_a_step_before_it_is_coded():
    """Streams that repeat one another, with a token at every step that no earlier step had: any
    candidate that hit would have seen another stream's token of the same step."""
    rng = np.random.default_rng(3)
    rows = [np.concatenate([rng.integers(0, 50, 6), 1000 + np.arange(40)])] * 4
    candidates, states = proposal_grid(rows)
    fresh = np.stack(rows)[:, 6:]
    assert not (candidates[:, 6:] == fresh[..., None]).any()
    assert candidates.shape == (4, 46, CANDIDATES) and states.shape == (4, 46, CANDIDATES, CONTEXT_INPUTS)


def test_candidates_come_from_the_history_and_tables_are_bounded():
    tokens = np.tile(np.array([4, 8, 15, 16, 23, 42]), 30)
    candidates, _ = proposal_grid([tokens], ContextModels(1, 12))
    hits = (candidates[0, :, 0] == tokens)[12:]
    assert hits.all()  # a period the n-grams and the match model both know after two rounds
    ngrams = NGrams(3, 12)
    assert ngrams.pairs.shape == ngrams.contexts.shape == (ORDERS, 1 << 12)


def test_the_mixer_learns_a_good_candidate_and_unlearns_a_bad_one():
    mixer = Mixer()
    states = np.zeros((1, CANDIDATES, CONTEXT_INPUTS), dtype=np.int64)
    states[0, 0] = [7 * 8 + 7] * ORDERS + [16]  # every order has seen it 16+ times, a long match
    f, total = np.array([[100, 0, 0]]), np.array([1 << 16])
    reached, hit = np.array([[True, False, False]]), np.array([[True, False, False]])
    first = mixer.probabilities(states, f, total)[0][0, 0]
    assert abs(first - 100) <= 4  # nothing learned yet: the LM's probability (100 / 65536), up to the APM's nodes
    for _ in range(300):
        mixer.update(mixer.probabilities(states, f, total)[1], reached, hit)
    learned = mixer.probabilities(states, f, total)[0][0, 0]
    assert learned > 60000
    for _ in range(300):
        mixer.update(mixer.probabilities(states, f, total)[1], reached, ~hit & reached)
    assert mixer.probabilities(states, f, total)[0][0, 0] < 5000
    assert (np.abs(mixer.weights) <= WEIGHT_LIMIT).all()


def test_a_file_of_an_unknown_mixer_is_refused():
    blob, _ = _compress(REPEATS[:600], "fast")
    header = api.read_header(io.BytesIO(blob))
    for mix, message in [("cm9-t20", "newer lmzip"), ("cm2-t99", "newer lmzip"), ("cm2-t20-x", "newer lmzip"),
                         ("match1", "lmzip 0.5"), ("cm1-t20-c", "lmzip 0.7")]:
        forged = dataclasses.replace(header, mix=mix)
        with pytest.raises(ModelError, match=message):
            lmzip.decompress(forged.to_bytes() + blob[len(header.to_bytes()):])


def test_the_table_size_is_the_header_s():
    """A block coded with smaller tables decodes with them (the header's setting is what counts);
    compression sizes them by the tokens the history holds, 16 slots a token, from 2^12 to 2^20."""
    assert [mix_setting(n, carried=False) for n in (1, 256, 257, 4096, 65536, 10**6)] == \
        ["cm2-t12", "cm2-t12", "cm2-t13", "cm2-t16", "cm2-t20", "cm2-t20"]
    assert mix_setting(300) == "cm2-t13-c" and parse_mix_setting("cm2-t13-c") == MixSetting(13, carried=True)
    predictor = load_predictor("fast")
    chunks = next(_blocks(predictor.tokenizer.encode(REPEATS), 48, 8))
    small, default = (engine.encode_block(predictor, chunks, history=engine.History(mix))
                      for mix in ("cm2-t10", mix_setting()))
    assert parse_mix_setting("cm2-t10") == MixSetting(10, carried=False) and small.data != default.data
    decoded = engine.decode_block(predictor, small.data, [len(c) for c in chunks], history=engine.History("cm2-t10"))
    assert all((a == b).all() for a, b in zip(decoded, chunks))


def test_match_model_streams_that_end_early_are_never_followed():
    """The short last chunk's context 1 2 3 has no token after it: the long stream's, which has
    (a 4), must stay the one its later 1 2 3 finds."""
    long, short = np.array([1, 2, 3, 4, 1, 2, 3, 9, 1, 2, 3], dtype=np.int64), np.array([1, 2, 3], dtype=np.int64)
    steps = _match_grid([long, short])
    assert steps[7][0][0] == 4


def test_float_models_are_not_mixed(tiny_gpt_dir):
    blob = lmzip.compress(REPEATS[:500], str(tiny_gpt_dir), threads=1)
    assert api.read_header(io.BytesIO(blob)).mix is None
    assert container.Header.read(io.BytesIO(blob)).mix is None


def test_the_mixing_curve_counts_what_compression_pays():
    """benchmarks/mixing_curve.py's figure: its mixed and LM-alone bits are the coder's."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from mixing_curve import block_bits

    predictor = load_predictor("fast")
    chunks = next(_blocks(predictor.tokenizer.encode(REPEATS), 48, 8))
    bits = block_bits(predictor, chunks, engine.History(mix_setting()), Mixer())
    coded = engine.encode_block(predictor, chunks, history=engine.History(mix_setting()))
    assert bits["mixed"].sum() == pytest.approx(coded.nll_bits) and bits["lm"].sum() == pytest.approx(coded.lm_nll_bits)
    assert 0 < bits["adaptive"].sum() and np.isfinite(bits["adaptive"]).all()


def test_a_carried_history_runs_across_blocks_and_independent_blocks_have_their_own():
    """Blocks of 8 x 48 tokens: a carried history knows the earlier blocks' text (the header says
    so), an independent one starts afresh in every block, as 0.6.0 wrote them; both round-trip."""
    carried, stats = _compress(REPEATS, "fast")
    independent, alone = _compress(REPEATS, "fast", independent=True)
    assert stats.tokens > 3 * 48 * 8
    assert api.read_header(io.BytesIO(carried)).mix.endswith("-c")
    assert api.read_header(io.BytesIO(independent)).mix == mix_setting(48 * 8, carried=False)
    assert stats.nll_bits < 0.9 * alone.nll_bits and stats.lm_nll_bits == alone.lm_nll_bits
    assert lmzip.decompress(carried) == lmzip.decompress(independent) == REPEATS


@pytest.mark.fallback
def test_a_block_that_falls_back_leaves_a_carried_history_as_it_was():
    """Random bytes between two texts: their blocks are stored, and the decoder never sees their
    tokens, so the encoder's history must forget them too, or the text after them cannot decode."""
    text = (Path(__file__).resolve().parents[1] / "demo" / "sample.txt").read_bytes()  # xz cannot crush it
    data = text[:1500] + random.Random(5).randbytes(3000) + text[1500:]
    blob, stats = _compress(data, "fast", fallback=True)
    assert stats.extra["fallback_blocks"] >= 2 and not stats.extra.get("whole_file_fallback")
    assert container.Reader(io.BytesIO(blob)).header.mix.endswith("-c")
    assert lmzip.decompress(blob) == data
