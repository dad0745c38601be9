"""The match model mixed with integer models: exact round trips both ways, the same bytes from
whole-chunk passes and from stepping, gains on repeats, and the LM's cost as the floor."""

from __future__ import annotations

import dataclasses
import io
import random

import numpy as np
import pytest

import lmzip
from lmzip import api, container
from lmzip.errors import ModelError
from lmzip.mixing import MIX_VERSION, Mixer, WEIGHT_MAX, match_grid

from conftest import SAMPLE_TEXT

REPEATS = (SAMPLE_TEXT[:900] * 4).encode()  # repeats far beyond a 48-token chunk
LAYOUT = dict(chunk=48, streams=8)


def _compress(data: bytes, model, **options) -> tuple[bytes, api.Stats]:
    out = io.BytesIO()
    stats = api.compress_stream(io.BytesIO(data), out, model, **LAYOUT, **options)
    return out.getvalue(), stats


@pytest.mark.parametrize("model", ["fast", "llama"])
def test_mixed_files_round_trip_and_whole_chunk_passes_write_the_stepped_bytes(model, tiny_int_llama_dir):
    model = str(tiny_int_llama_dir) if model == "llama" else model
    data = REPEATS + bytes(range(256))  # bytes a llama's vocabulary has no token for, too
    blob, stats = _compress(data, model)
    stepped, _ = _compress(data, model, record=lambda *step: None)  # record forces lockstep stepping
    assert stepped == blob
    assert api.read_header(io.BytesIO(blob)).settings.mix == MIX_VERSION
    assert lmzip.decompress(blob) == data
    assert stats.nll_bits < stats.lm_nll_bits  # repeats beyond the chunk: the match model pays


def test_repeats_cost_much_less_mixed_and_no_mix_is_the_model_alone():
    mixed, stats = _compress(REPEATS, "fast")
    alone, alone_stats = _compress(REPEATS, "fast", mix=False)
    assert api.read_header(io.BytesIO(alone)).settings.mix is None
    assert alone_stats.nll_bits == alone_stats.lm_nll_bits == stats.lm_nll_bits
    assert stats.nll_bits < 0.8 * stats.lm_nll_bits
    assert len(mixed) < 0.85 * len(alone)
    assert 8 * len(mixed) < stats.nll_bits * 1.01 + 8 * 64  # the coder pays what the mixture costs
    assert lmzip.decompress(alone) == REPEATS


def test_text_without_repeats_costs_at_most_a_trace_more():
    rng = random.Random(7)
    words = SAMPLE_TEXT.split()
    data = " ".join(rng.choice(words) + rng.choice("abcdefghij") for _ in range(700)).encode()
    _, stats = _compress(data, "fast")
    assert stats.nll_bits <= stats.lm_nll_bits * 1.005


def test_the_match_model_sees_only_earlier_steps():
    """Two streams with the same period-4 tokens. The context at step t (tokens t-3..t-1) recurs
    from t = 7 on; neither stream may use the other's token of the same step, which would give
    stream 1 a prediction at t = 3 (stream 0's 5 6 7 is followed by its 8 at that very step)."""
    row = np.array([5, 6, 7, 8, 5, 6, 7, 8, 5, 6, 7], dtype=np.int64)
    predicted, lengths = match_grid([row, row.copy()])
    assert (predicted[:, :7] == -1).all()
    assert (predicted[:, 7:] == row[7:]).all()
    assert lengths[0, -1] == 3  # right three times since the match began


def test_the_weights_learn_towards_a_good_match_and_stay_bounded():
    mixer = Mixer()
    for _ in range(500):
        p = mixer.flag_probability(3, 100, 1 << 16)
        mixer.update(3, True, 100, 1 << 16, p)
    assert mixer.weights[3] == WEIGHT_MAX and mixer.weights[0] == 0
    for _ in range(500):
        p = mixer.flag_probability(3, 100, 1 << 16)
        mixer.update(3, False, 100, 1 << 16, p)
    assert mixer.weights[3] < WEIGHT_MAX // 8


def test_a_file_of_an_unknown_mixer_is_refused():
    blob, _ = _compress(REPEATS[:600], "fast")
    header = api.read_header(io.BytesIO(blob))
    forged = dataclasses.replace(header, settings=dataclasses.replace(header.settings, mix="match9"))
    with pytest.raises(ModelError, match="newer lmzip"):
        lmzip.decompress(forged.to_bytes() + blob[len(header.to_bytes()):])


def test_match_model_streams_that_end_early_are_never_followed():
    """The short last chunk's context 1 2 3 has no token after it: the long stream's, which has
    (a 4), must stay the one its later 1 2 3 finds."""
    long, short = np.array([1, 2, 3, 4, 1, 2, 3, 9, 1, 2, 3], dtype=np.int64), np.array([1, 2, 3], dtype=np.int64)
    predicted, _ = match_grid([long, short])
    assert predicted[0, 7] == 4 and (predicted[1, 3:] == -1).all()


def test_float_models_are_not_mixed(tiny_gpt_dir):
    blob = lmzip.compress(REPEATS[:500], str(tiny_gpt_dir), threads=1)
    assert api.read_header(io.BytesIO(blob)).settings.mix is None
    assert container.Header.read(io.BytesIO(blob)).settings.mix is None
