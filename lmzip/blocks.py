"""A container block back to its bytes: through the engine for a model-coded block, unpacked for a
stored or xz one. The API decodes a file's blocks with it, and so do workers, one block each."""

from __future__ import annotations

from typing import Iterator

from . import container, engine
from .errors import ChecksumError, FormatError
from .mixing import History
from .models.base import Predictor


def block_bytes(predictor: Predictor, original_length: int, method: int, data: bytes,
                lengths: list[int], on_step, history: History | None = None, lead: int = 0) -> Iterator[bytes]:
    """The original bytes of one block, chunk by chunk for model-coded blocks (a block that fell
    back leaves the history as it was, as it did when it was encoded)."""
    if method != container.BLOCK_MODEL:
        if predictor.capabilities.learns:
            raise FormatError("damaged file (a learning model's block is not model-coded)")
        yield container.unpack_block(method, data, original_length)
        on_step(sum(lengths))
        return
    for chunk_ids in engine.decode_block(predictor, data, lengths, on_step, history, lead):
        try:
            yield predictor.tokenizer.decode(chunk_ids)
        except (ValueError, IndexError, OverflowError):
            raise ChecksumError("damaged file (decoded an impossible token)") from None
