"""Property-based round trips: any bytes, any model, exact."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lmzip
from lmzip.models import load_predictor

byte_strings = st.one_of(
    st.binary(max_size=2000),
    st.text(max_size=500).map(lambda s: s.encode("utf-8")),
    st.tuples(st.binary(min_size=1, max_size=8), st.integers(1, 300)).map(lambda t: t[0] * t[1]),
)


@pytest.fixture(scope="module")
def predictors(tiny_gpt_dir, tiny_byte_gpt_dir):
    return {
        "tiny-bpe": load_predictor(str(tiny_gpt_dir), threads=1),
        "tiny-bytes": load_predictor(str(tiny_byte_gpt_dir), threads=1),
        "order0": load_predictor("order0"),
        "order2": load_predictor("order2"),
    }


@pytest.mark.parametrize("name", ["tiny-bpe", "tiny-bytes", "order0", "order2"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=byte_strings)
def test_any_bytes_round_trip(predictors, name, data):
    predictor = predictors[name]
    chunk = min(predictor.default_chunk, 48)
    blob = lmzip.compress(data, model=predictor, chunk=chunk, streams=4)
    assert lmzip.decompress(blob, model=predictor) == data


@pytest.mark.slow
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(min_size=50_000, max_size=100_000))
def test_large_random_round_trip(predictors, data):
    blob = lmzip.compress(data, model=predictors["tiny-bytes"], chunk=32, streams=256)
    assert lmzip.decompress(blob, model=predictors["tiny-bytes"]) == data


@pytest.mark.fallback
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=byte_strings)
def test_any_bytes_round_trip_with_fallback_blocks(predictors, data):
    """Blocks coded by the model, by xz and stored, mixed in one file."""
    blob = lmzip.compress(data, model=predictors["order2"], chunk=64, streams=2)
    assert lmzip.decompress(blob, model=predictors["order2"]) == data
