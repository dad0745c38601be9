"""The library owns its policies: levels, model names, one layout a file, and the options it takes."""

from __future__ import annotations

import io

import numpy as np
import pytest

import lmzip
from lmzip import api
from lmzip.layout import FileLayout, block_layout
from lmzip.models import LEVELS, load_predictor, model_and_chunk, model_to_load

TEXT = b"A level is a model and a chunk, as gzip's -1 .. -9 are. " * 8


def test_a_level_is_the_model_and_chunk_it_names():
    assert lmzip.compress(TEXT, level=1) == lmzip.compress(TEXT, model=LEVELS[1][0])
    model, chunk = LEVELS[2]
    by_level = lmzip.compress(TEXT, level=2)
    assert by_level == lmzip.compress(TEXT, model=model, chunk=chunk)
    assert lmzip.decompress(by_level) == TEXT


def test_what_is_given_overrides_the_level():
    assert model_and_chunk(None, None, 9) == LEVELS[9]
    assert model_and_chunk("fast", None, 9) == ("fast", LEVELS[9][1])
    assert model_and_chunk(None, 512, 9) == (LEVELS[9][0], 512)
    assert model_and_chunk(None, None, None) == ("smollm2", None)
    for level in (0, 10, "6", True, 1.5):
        with pytest.raises(ValueError, match=r"use 1 \.\. 9"):
            lmzip.compress(TEXT, level=level)


@pytest.mark.parametrize("name,call", [
    ("compress", lambda: lmzip.compress(TEXT, model="order2", chunck=512)),
    ("decompress", lambda: lmzip.decompress(lmzip.compress(TEXT, model="order2"), chunck=512)),
    ("compress_stream", lambda: api.compress_stream(io.BytesIO(TEXT), io.BytesIO(), "order2", chunck=512)),
    ("load_predictor", lambda: load_predictor("order2", chunck=512)),
])
def test_an_option_no_loader_takes_is_refused_by_name(name, call):
    """as ``gzip.compress(data, levle=9)`` is: a misspelt option is never silently ignored"""
    with pytest.raises(TypeError, match=rf"^{name}\(\) got an unexpected keyword argument 'chunck'"):
        call()


def test_the_stream_functions_own_options_still_pass_through_compress():
    blob = lmzip.compress(TEXT, model="order2", chunk=64, streams=2, mix=False, fallback=False)
    assert lmzip.decompress(blob, threads=1) == TEXT


def test_every_registered_loader_is_a_function_of_its_room():
    """The registry names its loaders as strings, which no import statement shows: each resolves."""
    from lmzip.models import DIRECTORY_TYPES, MODELS, function_at

    for path in [entry.loader for entry in MODELS.values()] + list(DIRECTORY_TYPES.values()) + ["float.hf:load_directory"]:
        assert callable(function_at(path)), path


def test_online_and_portable_read_a_model_name():
    assert model_to_load(None, online=True) == "online-scratch"
    assert model_to_load("fast", online=True) == "online-fast"
    assert model_to_load("smollm2-float", portable=True) == "smollm2"
    with pytest.raises(ValueError, match="--online starts from"):
        model_to_load("smollm2", online=True)
    with pytest.raises(ValueError, match="does not decode on every machine"):
        model_to_load("online-fast", portable=True)


@pytest.mark.parametrize("n_tokens,chunk,streams,lead", [(0, 8, 2, 0), (100, 8, 3, 0), (300, 64, 3, 16), (70, 64, 3, 16)])
def test_a_file_layout_is_the_block_layout_computed_once(n_tokens, chunk, streams, lead):
    ids = np.arange(n_tokens)
    plan = FileLayout.of(n_tokens, chunk, streams, lead)
    assert [list(b) for b in plan.blocks] == block_layout(n_tokens, chunk, streams, lead)
    blocks = list(plan.split(ids))
    assert [[len(c) for c in chunks] for chunks in blocks] == block_layout(n_tokens, chunk, streams, lead)
    assert np.array_equal(np.concatenate([c for chunks in blocks for c in chunks] or [ids]), ids)
    assert plan.block_tokens() == [sum(b) for b in block_layout(n_tokens, chunk, streams, lead)]
    assert plan.first_block_streams == (len(plan.blocks[0]) if n_tokens else 1)
