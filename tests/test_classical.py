import os

import pytest

import lmzip
from lmzip import api
import io

DATA = [b"", b"z", b"abracadabra " * 200, os.urandom(5000), bytes(range(256)) * 4]


@pytest.mark.parametrize("model", ["uniform", "order0", "order2"])
@pytest.mark.parametrize("index", range(len(DATA)))
def test_classical_round_trip(model, index):
    data = DATA[index]
    assert lmzip.decompress(lmzip.compress(data, model=model)) == data


def test_uniform_costs_eight_bits_per_byte():
    data = os.urandom(20000)
    out = io.BytesIO()
    stats = api.compress_stream(io.BytesIO(data), out, "uniform")
    assert abs(stats.nll_bits / (8 * len(data)) - 1) < 1e-3
    header_bytes = len(api.read_header(io.BytesIO(out.getvalue())).to_bytes())
    payload_bits = 8 * (stats.compressed_bytes - header_bytes)
    assert abs(payload_bits / (8 * len(data)) - 1) < 1e-3


def test_order2_learns_repetition():
    data = b"the cat sat on the mat. " * 400
    blob = lmzip.compress(data, model="order2", fallback=False)  # the models themselves, not xz
    assert len(blob) < len(data) / 10
    order0 = lmzip.compress(data, model="order0", fallback=False)
    assert len(blob) < len(order0)
