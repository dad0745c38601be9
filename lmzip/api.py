"""The Python API and the streaming drivers the command line uses.

``compress(data)`` / ``decompress(blob)`` work like ``gzip``'s; the stream
functions read and write file objects block by block, so memory holds the
token ids and one block, not the whole output.
"""

from __future__ import annotations

import dataclasses
import io
import time
import zlib
from dataclasses import asdict, dataclass, field
from typing import BinaryIO, Callable, Iterator

import numpy as np

from . import container, engine
from .errors import FingerprintMismatch, FormatError, ChecksumError
from .models import DEFAULT_MODEL, load_predictor
from .models.base import Predictor

READ_PIECE = 1 << 20  # bytes tokenized at a time (cut after a newline when there is one)

Progress = Callable[[int, int], None]  # (tokens done, tokens total)


@dataclass
class Stats:
    model: str
    original_bytes: int = 0
    compressed_bytes: int = 0
    tokens: int = 0
    nll_bits: float = 0.0
    seconds: float = 0.0  # the whole call: model load, tokenizing, coding
    coding_seconds: float = 0.0  # the lockstep loop alone; tokens_per_second uses this
    chunk: int = 0
    streams: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def bits_per_byte(self) -> float:
        return 8 * self.compressed_bytes / self.original_bytes if self.original_bytes else 0.0

    @property
    def overhead(self) -> float:
        return 8 * self.compressed_bytes / self.nll_bits - 1 if self.nll_bits else 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.coding_seconds if self.coding_seconds else 0.0

    def finish(self, start: float, coding_start: float) -> None:
        now = time.perf_counter()
        self.seconds, self.coding_seconds = now - start, now - coding_start

    def to_dict(self) -> dict:
        out = asdict(self)
        extra = out.pop("extra")
        out.update(bits_per_byte=self.bits_per_byte, overhead=self.overhead,
                   tokens_per_second=self.tokens_per_second,
                   nll_bits_per_byte=self.nll_bits / self.original_bytes if self.original_bytes else 0.0)
        out.update(extra)
        return out


def _as_predictor(model: str | Predictor, **options) -> Predictor:
    return model if isinstance(model, Predictor) else load_predictor(model, **options)


def read_tokens(tokenizer, source: BinaryIO) -> tuple[np.ndarray, int, int]:
    """Tokenize a stream piece by piece: (ids, byte count, CRC-32).

    Pieces end after a newline where there is one, so UTF-8 characters stay
    whole; memory holds the ids and one piece, not the input.
    """
    pieces, carry, crc, length = [], b"", 0, 0
    while data := source.read(READ_PIECE):
        crc, length = zlib.crc32(data, crc), length + len(data)
        buf = carry + data
        cut = buf.rfind(b"\n") + 1 or len(buf)
        pieces.append(tokenizer.encode(buf[:cut]))
        carry = buf[cut:]
    if carry:
        pieces.append(tokenizer.encode(carry))
    ids = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int32)
    return ids.astype(np.int32), length, crc


def compress_stream(source: BinaryIO, dest: BinaryIO, model: str | Predictor = DEFAULT_MODEL,
                    chunk: int | None = None, streams: int | None = None,
                    progress: Progress | None = None, record=None, fallback: bool = True, **options) -> Stats:
    """Compress ``source`` into ``dest``; ``record(t, symbols, probs, bits)`` sees every step.

    With ``fallback``, a block the model codes in more bytes than xz -9e or than
    the block itself is written that way instead (never for learning models).
    """
    start_time = time.perf_counter()
    predictor = _as_predictor(model, **options)
    predictor.begin_file()
    chunk = chunk or predictor.default_chunk
    streams = streams or predictor.default_streams
    if predictor.max_chunk and chunk > predictor.max_chunk:
        raise ValueError(f"chunk length {chunk} exceeds the model's context ({predictor.max_chunk})")
    ids, length, crc = read_tokens(predictor.tokenizer, source)
    header = container.Header(
        model=predictor.name, weights_hash=predictor.weights_hash, settings=predictor.settings(),
        versions_crc=container.versions_crc(_versions(predictor)), chunk=chunk, streams=streams,
        original_length=length, n_tokens=len(ids), checksum=crc,
        flags=container.FLAG_PORTABLE if predictor.frequencies else 0)
    fallback = fallback and not predictor.learns
    # with fallback the file is assembled in memory (it is at most about the input's size), so that
    # xz over the whole file can replace it where that is smaller: see _smaller_as_one_xz_block
    out = io.BytesIO() if fallback else dest
    header_bytes = header.to_bytes()
    out.write(header_bytes)
    written = len(header_bytes)
    stats = Stats(model=predictor.name, original_bytes=length, tokens=len(ids), chunk=chunk, streams=streams,
                  extra={"header_bytes": written, "fallback_blocks": 0})
    done = 0

    def on_step(active: int) -> None:
        nonlocal done
        done += active
        if progress:
            progress(done, len(ids))

    coding_start = time.perf_counter()
    raw_blocks = []  # with fallback: each block's bytes, for xz
    for chunks in engine.split_blocks(ids, chunk, streams):
        block = engine.encode_block(predictor, chunks, on_step, record=record)
        stats.nll_bits += block.nll_bits
        method, data = container.BLOCK_MODEL, block.data
        if fallback:
            raw_blocks.append(predictor.tokenizer.decode(np.concatenate(chunks)))
            method, data = container.smallest_coding(block.data, raw_blocks[-1])
            stats.extra["fallback_blocks"] += method != container.BLOCK_MODEL
        written += container.write_block(out, data, method)
    if fallback:
        blob = out.getvalue()
        # only where xz or storing already beat the model somewhere (whole-file xz -9e of a text the
        # model codes well would cost seconds and never win); one block is already its whole-file xz
        if len(raw_blocks) > 1 and stats.extra["fallback_blocks"]:
            blob = _smaller_as_one_xz_block(blob, header, b"".join(raw_blocks), stats)
        dest.write(blob)
        written = len(blob)
    stats.compressed_bytes = written
    stats.finish(start_time, coding_start)
    return stats


def _smaller_as_one_xz_block(blob: bytes, header: container.Header, raw: bytes, stats: Stats) -> bytes:
    """``blob``, or the same header with one block holding the whole file xz-compressed, whichever
    is smaller. Per-block fallback sees ~200 KB at a time; xz over the whole file can do much better
    on files the model does not know (binaries, markup). No new format: a stream count covering
    every chunk makes the file a single block, and any decoder reads that."""
    one_block = dataclasses.replace(header, streams=len(engine.chunk_lengths(header.n_tokens, header.chunk)))
    head = one_block.to_bytes()
    method, data = container.raw_coding(raw)
    packed = io.BytesIO()
    packed.write(head)
    container.write_block(packed, data, method)
    if packed.tell() >= len(blob):
        return blob
    stats.streams, stats.extra["header_bytes"] = one_block.streams, len(head)
    stats.extra["fallback_blocks"], stats.extra["whole_file_fallback"] = 1, True
    return packed.getvalue()


def _versions(predictor: Predictor) -> str:
    from importlib.metadata import version

    if predictor.frequencies:  # the integer coder and an exact model: no library's arithmetic matters
        return predictor.versions()
    return f"{predictor.versions()} constriction {version('constriction')}"  # the coder's bytes too


def read_header(source: BinaryIO) -> container.Header:
    return container.Header.read(source)


def predictor_for(header: container.Header, model: str | Predictor | None = None,
                  loaded: dict | None = None, **options) -> Predictor:
    """Load the file's model and make it compute exactly as the encoder did, or refuse.

    ``loaded`` (name -> predictor) lets a run over several files load each model
    once (online predictors go back to their first weights for every file: ``begin_file``).
    """
    name = model if isinstance(model, str) else header.model
    if loaded is not None and not isinstance(model, Predictor) and name in loaded:
        model = loaded[name]
    for key in ("dtype", "threads"):  # load as the encoder did, rather than convert later
        if header.settings.get(key) and not options.get(key) and not isinstance(model, Predictor):
            options[key] = int(header.settings[key]) if key == "threads" else header.settings[key]
    predictor = _as_predictor(model or header.model, **options)
    if predictor.weights_hash != header.weights_hash:
        raise FingerprintMismatch(
            f"model weights differ from the ones that made this file (model {header.model!r}, "
            f"file {header.weights_hash.hex()}, here {predictor.weights_hash.hex()})")
    predictor.adopt(header.settings)
    if container.versions_crc(_versions(predictor)) != header.versions_crc:
        raise FingerprintMismatch(
            f"library versions differ from the ones that made this file (here: {_versions(predictor)}); "
            "decompress with the versions used to compress")
    if loaded is not None:
        loaded[name] = predictor
    return predictor


def decompress_stream(source: BinaryIO, dest: BinaryIO, model: str | Predictor | None = None,
                      progress: Progress | None = None, loaded: dict | None = None, **options) -> Stats:
    start_time = time.perf_counter()
    header = read_header(source)
    predictor = predictor_for(header, model, loaded, **options)
    predictor.begin_file()
    stats = Stats(model=header.model, original_bytes=header.original_length, tokens=header.n_tokens,
                  chunk=header.chunk, streams=header.streams)
    crc, length, done = 0, 0, 0
    coding_start = time.perf_counter()

    def on_step(active: int) -> None:
        nonlocal done
        done += active
        if progress:
            progress(done, header.n_tokens)

    for lengths in engine.block_layout(header.n_tokens, header.chunk, header.streams):
        method, data = container.read_block(source, header.version, _block_limit(header, lengths))
        for out in _block_bytes(predictor, header, method, data, lengths, on_step):
            crc, length = zlib.crc32(out, crc), length + len(out)
            if length > header.original_length:
                raise ChecksumError("damaged file (decoded more bytes than stored)")
            dest.write(out)
    if source.read(1):
        raise FormatError("damaged file (trailing data after the last block)")
    if length != header.original_length or crc != header.checksum:
        raise ChecksumError("checksum mismatch: the decoded data differs from the original")
    stats.finish(start_time, coding_start)
    return stats


def _block_limit(header: container.Header, lengths: list[int]) -> int:
    """Most bytes a block can hold: a model block's few bytes a token, or a stored/xz block's data."""
    return 4 * sum(lengths) + 64 + header.original_length


def block_methods(source: BinaryIO, header: container.Header) -> dict[str, int]:
    """How many blocks each method coded (reads the blocks, decodes nothing)."""
    names = {container.BLOCK_MODEL: "model", container.BLOCK_STORED: "stored", container.BLOCK_XZ: "xz"}
    counts = dict.fromkeys(names.values(), 0)
    for lengths in engine.block_layout(header.n_tokens, header.chunk, header.streams):
        method, _ = container.read_block(source, header.version, _block_limit(header, lengths))
        counts[names[method]] += 1
    return counts


def _block_bytes(predictor: Predictor, header: container.Header, method: int, data: bytes,
                 lengths: list[int], on_step) -> Iterator[bytes]:
    """The original bytes of one block, chunk by chunk for model-coded blocks."""
    if method != container.BLOCK_MODEL:
        if predictor.learns:
            raise FormatError("damaged file (a learning model's block is not model-coded)")
        yield container.unpack_block(method, data, header.original_length)
        on_step(sum(lengths))
        return
    for chunk_ids in engine.decode_block(predictor, data, lengths, on_step):
        try:
            yield predictor.tokenizer.decode(chunk_ids)
        except (ValueError, IndexError, OverflowError):
            raise FormatError("damaged file (decoded an impossible token)") from None


def compress(data: bytes, model: str | Predictor = DEFAULT_MODEL, **options) -> bytes:
    """Compress bytes with a language model; like ``gzip.compress``."""
    out = io.BytesIO()
    compress_stream(io.BytesIO(data), out, model, **options)
    return out.getvalue()


def decompress(blob: bytes, model: str | Predictor | None = None, **options) -> bytes:
    """Decompress an .lmz blob; the model is found from its header unless given."""
    source, out = io.BytesIO(blob), io.BytesIO()
    decompress_stream(source, out, model, **options)
    return out.getvalue()
