"""A block's lead (layout.py): streams 1.. read the block's first P tokens before their own chunk.

What must hold: without a lead the layout is 0.14.0's (so are the files); with one, the decoder's
streams, which take a copy of stream 0's cache (``join``), compute the very rows the encoder's
whole-chunk passes compute by reading the lead themselves, on every backend."""

from __future__ import annotations

import io

import numpy as np
import pytest

import lmzip
from lmzip import api, container
from lmzip.layout import FileLayout, Schedule, block_layout
from lmzip.models import load_predictor
from lmzip.models.integer.llama import IntLlama, IntLlamaStepper
from lmzip.models.integer.ops import NumpyOps
from lmzip.models.native import available

BACKENDS = ["numpy", "torch"] + (["native"] if available() else [])
TEXT = (b"A lead is read by every stream of a block before its own chunk; the first stream codes it. "
        b"\x00\xff control bytes and invalid UTF-8 \xfe too.\r\n") * 6


def _old_block_layout(n_tokens: int, chunk: int, streams: int) -> list[list[int]]:
    """0.14.0's layout, for comparison."""
    full, rest = divmod(n_tokens, chunk)
    lengths = [chunk] * full + ([rest] if rest else [])
    return [lengths[i : i + streams] for i in range(0, len(lengths), streams)]


@pytest.mark.parametrize("n_tokens", [0, 1, 63, 64, 65, 640, 641, 5000])
@pytest.mark.parametrize("chunk,streams", [(64, 1), (64, 4), (100, 3)])
def test_without_a_lead_the_layout_is_the_one_files_always_had(n_tokens, chunk, streams):
    assert block_layout(n_tokens, chunk, streams) == _old_block_layout(n_tokens, chunk, streams)


def test_a_lead_lengthens_each_block_s_first_chunk_and_its_streams_start_after_it():
    assert block_layout(300, 64, 3, lead=16) == [[80, 64, 64], [80, 12]]
    assert block_layout(70, 64, 3, lead=16) == [[70]]  # one chunk: nothing to lead
    assert FileLayout.of(300, 64, 3, 16).first_block_streams == 3 and FileLayout.of(0, 64, 3, 16).first_block_streams == 1
    schedule = Schedule.of([80, 64, 20], lead=16)
    assert schedule.n_steps == 80 and schedule.starts.tolist() == [0, 16, 16]
    assert [schedule.active(t) for t in (0, 15, 16, 35, 36, 79)] == [1, 1, 3, 3, 2, 2]
    assert [t for t in range(80) if schedule.joins(t)] == [16]
    chunks = [np.arange(80), np.arange(100, 164), np.arange(200, 220)]
    grid = schedule.grid(chunks)
    assert all((a == b).all() for a, b in zip(schedule.chunks(grid), chunks))
    assert schedule.coded().sum() == 164
    assert Schedule.of([70], lead=16).lead == 0
    with pytest.raises(ValueError, match="do not fit a block with lead 16"):
        Schedule.of([64, 64], lead=16)  # the first chunk must hold the lead and reach the others' ends


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mix", [True, False])
def test_files_with_a_lead_round_trip_and_passes_write_the_stepped_bytes(tiny_int_llama_dir, backend, mix):
    predictor = load_predictor(str(tiny_int_llama_dir), backend=backend, threads=1)
    layout = dict(chunk=24, streams=3, lead=8, mix=mix, fallback=False)
    blob = lmzip.compress(TEXT, model=predictor, **layout)
    stepped = lmzip.compress(TEXT, model=predictor, record=lambda *step: None, **layout)  # the decoder's joins
    assert stepped == blob
    header = api.read_header(io.BytesIO(blob))
    assert header.lead == 8 and len(block_layout(header.n_tokens, 24, 3, 8)) > 1
    for other in BACKENDS if mix else [backend]:  # the model alone: its own backend is enough
        assert lmzip.decompress(blob, model=load_predictor(str(tiny_int_llama_dir), backend=other)) == TEXT
    if backend != "numpy":
        numpy = load_predictor(str(tiny_int_llama_dir), backend="numpy")
        assert lmzip.compress(TEXT, model=numpy, **layout) == blob


def test_a_lead_changes_the_bytes_and_none_writes_what_0_14_wrote(tiny_int_llama_dir):
    predictor = load_predictor(str(tiny_int_llama_dir), backend="numpy")
    layout = dict(chunk=24, streams=3, fallback=False)
    none, led = (lmzip.compress(TEXT, model=predictor, lead=lead, **layout) for lead in (0, 8))
    assert none != led and api.read_header(io.BytesIO(none)).lead == 0
    assert b"l=" not in none[:80]


def test_a_joined_stream_computes_what_a_stream_reading_the_lead_itself_computes(tiny_int_llama):
    """The stepper level: after stream 0 steps the lead alone and the others join, each stream's next
    rows equal those of a stepper in which every stream stepped the lead."""
    model = IntLlama(*tiny_int_llama, NumpyOps())
    rng = np.random.default_rng(3)
    lead, after = rng.integers(0, 256, 10), rng.integers(0, 256, (3, 5))
    joined, read = IntLlamaStepper(model, 3, 16), IntLlamaStepper(model, 3, 16)
    for token in lead:
        joined.step(np.array([token]))
        read.step(np.full(3, token))
    joined.join(3)
    for t in range(5):
        np.testing.assert_array_equal(joined.step(after[:, t]), read.step(after[:, t]))


def test_models_that_cannot_share_a_lead_take_none(tiny_int_llama_dir):
    fast = load_predictor("fast")
    assert fast.lead_for(512) == 0
    with pytest.raises(ValueError, match="cannot share a lead"):
        fast.lead_for(512, 16)
    llama = load_predictor(str(tiny_int_llama_dir), backend="numpy")
    assert llama.lead_for(llama.max_chunk) == 0  # no room left in the context: none by default
    with pytest.raises(ValueError, match="does not fit"):
        llama.lead_for(llama.max_chunk, 8)
    with pytest.raises(ValueError, match="does not fit"):
        lmzip.compress(TEXT, model=llama, chunk=llama.max_chunk, lead=8)


def test_one_stream_takes_no_lead_and_a_damaged_extended_preset_is_refused(tiny_int_llama_dir):
    from lmzip.errors import FormatError

    predictor = load_predictor(str(tiny_int_llama_dir), backend="numpy")
    blob = lmzip.compress(TEXT, model=predictor, chunk=24, streams=1, lead=8)
    assert api.read_header(io.BytesIO(blob)).lead == 0 and lmzip.decompress(blob, model=predictor) == TEXT
    body = container.MAGIC + bytes([container.COMPACT, container.EXTENDED << 4, 14]) + bytes(10)
    with pytest.raises(FormatError, match="bad preset"):
        container.Header.read(io.BytesIO(body))
