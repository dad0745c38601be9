"""The Python API, like ``gzip``'s: ``compress(data)`` / ``decompress(blob)``.

The stream functions, which the command line uses, read and write file objects
block by block, so memory holds the token ids and one block, not the output.
They run the pipeline's stages in order: tokenize, code each block in the
engine's lockstep loop, write or read the container.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import io
import threading
import time
import zlib
from dataclasses import asdict, dataclass, field
from typing import BinaryIO, Callable, Iterator

import numpy as np

from . import container, engine, layout
from .blocks import block_bytes
from .errors import ChecksumError, FingerprintMismatch, ModelError
from .fingerprint import coded_versions, fingerprint
from .mixing import History, mix_setting_for
from .models import check_load_options, load_predictor, model_and_chunk, model_for_file
from .models.base import Predictor
from .models.legacy import checksum_failure_reason
from .tokenize import read_tokens
from .workers import Task, WorkerPool, check_splittable, load_key

Progress = Callable[[int, int], None]  # (tokens done, tokens total)
# Held while a file's predictor is set up and its header made: files coded in parallel threads share
# one loaded predictor, and plan()/adopt() change it.
_setup_lock = threading.RLock()
# Held while a file is coded in this process: coding changes the predictor (its steppers, the recipe
# and learning a file adopts, a learning head's bias), so one file at a time is coded here; files
# whose blocks go to workers run in parallel.
_coding_lock = threading.RLock()


@dataclass
class Stats:
    model: str
    original_bytes: int = 0
    compressed_bytes: int = 0
    tokens: int = 0
    nll_bits: float = 0.0  # what the tokens cost as coded
    lm_nll_bits: float = 0.0  # what they would cost under the model alone (mixing off)
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


class _StepCounter:
    """The engine's per-step callback, turned into (tokens done, total) progress."""

    def __init__(self, progress: Progress | None, total: int):
        self.progress, self.total, self.done = progress, total, 0

    def __call__(self, active: int) -> None:
        self.done += active
        if self.progress:
            self.progress(self.done, self.total)


def compress_stream(source: BinaryIO, dest: BinaryIO, model: str | Predictor | None = None,
                    chunk: int | None = None, streams: int | None = None,
                    progress: Progress | None = None, record=None, fallback: bool = True, mix: bool = True,
                    independent: bool = False, workers: WorkerPool | None = None,
                    load: Callable[[], Predictor] | None = None, lead: int | None = None,
                    level: int | None = None, **options) -> Stats:
    """Compress ``source`` into ``dest``; ``record(t, symbols, probs, bits, carriers)`` sees every
    step (engine.encode_block).

    ``level`` (1 .. 9, as gzip's) picks the model and chunk that ``model`` and ``chunk`` do not
    (models.LEVELS); neither: the default model. ``options`` are the loader's (models.LOAD_OPTIONS).

    With ``workers`` (a ``WorkerPool``), its actors code the blocks: the same file, byte for byte,
    for an exact model. They load the model by name, or by ``load()`` where ``model`` is loaded.

    With ``fallback``, a block the model codes in more bytes than xz -9e or than the block itself
    is written that way instead (never for learning models). With ``mix``, an integer model's
    predictions are mixed with context models over the history (mixing); the header records it.
    The history runs across the file's blocks, so they decode in order, unless ``independent``
    (always with ``workers``): each block has its own, at some cost in ratio, and they decode in
    parallel. ``lead`` (layout.py): tokens each block's streams read first; None: the model's.
    """
    with _coding_lock if workers is None else contextlib.nullcontext():
        return _compress(source, dest, model, chunk, streams, progress, record, fallback, mix, independent, workers,
                         load, lead, level, options)


def _compress(source: BinaryIO, dest: BinaryIO, model: str | Predictor | None, chunk: int | None,
              streams: int | None, progress: Progress | None, record, fallback: bool, mix: bool, independent: bool,
              workers: WorkerPool | None, load, lead: int | None, level: int | None, options: dict) -> Stats:
    start_time = time.perf_counter()
    check_load_options(options, "compress_stream")
    model, chunk = model_and_chunk(model, chunk, level)
    predictor = _as_predictor(model, **options)
    predictor.begin_file()
    chunk = chunk or predictor.default_chunk
    streams = streams or predictor.default_streams
    if predictor.max_chunk and chunk > predictor.max_chunk:
        raise ValueError(f"chunk length {chunk} exceeds the model's context ({predictor.max_chunk})")
    lead = predictor.lead_for(chunk, lead, streams)
    ids, length, crc = read_tokens(predictor.tokenizer, source)
    plan = layout.FileLayout.of(len(ids), chunk, streams, lead)
    if workers is not None and record is not None:
        raise ValueError("record sees every step of one process: it cannot run with workers")
    # a carried history would make each block wait for the one before it: workers code independent blocks
    independent = independent or workers is not None
    mixed = mix_setting_for(predictor.capabilities.integer, len(ids), chunk, streams, mix, independent)
    with _setup_lock:
        predictor.plan(plan.first_block_streams)
        task = None if workers is None else _worker_task(workers, predictor, model, load, options,
                                                         plan=plan.first_block_streams, mix=mixed, lead=lead)
        header = _header(predictor, mixed, chunk, streams, lead, length, len(ids), crc)
    writer = container.Writer(dest, header, fallback=fallback and not predictor.capabilities.learns)
    stats = Stats(model=predictor.name, original_bytes=length, tokens=len(ids), chunk=chunk)
    on_step = _StepCounter(progress, len(ids))
    coding_start = time.perf_counter()
    if workers is None:
        _encode_blocks(predictor, plan.split(ids), lead, writer, stats, on_step, record,
                       History(mixed) if mixed else None)
    else:
        _encode_on_workers(workers, task, predictor, plan, ids, writer, stats, on_step)
    stats.compressed_bytes = writer.close()
    stats.streams = writer.header.streams
    stats.extra.update(header_bytes=writer.header_bytes, fallback_blocks=writer.fallback_blocks)
    if writer.whole_file:
        stats.extra["whole_file_fallback"] = True
    stats.finish(start_time, coding_start)
    return stats


def _header(predictor: Predictor, mixed: str | None, chunk: int, streams: int, lead: int, length: int,
            n_tokens: int, crc: int) -> container.Header:
    """What a decoder needs besides the blocks: the model and how it computed, the layout, the sizes."""
    return container.Header(
        model=predictor.name, weights_hash=predictor.weights_hash,
        settings=predictor.settings(), mix=mixed,
        versions_crc=container.versions_crc(coded_versions(predictor)), chunk=chunk, streams=streams, lead=lead,
        original_length=length, n_tokens=n_tokens, checksum=crc,
        flags=container.FLAG_PORTABLE if predictor.capabilities.integer else 0)


def _encode_blocks(predictor: Predictor, blocks: Iterator[list[np.ndarray]], lead: int,
                   writer: container.Writer, stats: Stats, on_step, record, history: History | None) -> None:
    """Code the blocks in order in this process. A block that falls back (xz, stored) leaves a
    carried history as it found it: the decoder never sees that block's tokens."""
    for chunks in blocks:
        saved = history.save() if history is not None and history.carried and writer.fallback else None
        block = engine.encode_block(predictor, chunks, on_step, record=record, history=history, lead=lead)
        if _add_block(writer, stats, predictor, chunks, block) != container.BLOCK_MODEL and saved is not None:
            history.restore(saved)


def _encode_on_workers(workers: WorkerPool, task: Task, predictor: Predictor, plan: layout.FileLayout,
                       ids: np.ndarray, writer: container.Writer, stats: Stats, on_step) -> None:
    """Code the blocks on the workers, written in order as they come back."""
    coded = _counted(workers.map("encode", task, ((c,) for c in plan.split(ids))), on_step, plan.block_tokens())
    for chunks, block in zip(plan.split(ids), coded):
        _add_block(writer, stats, predictor, chunks, block)


def _add_block(writer: container.Writer, stats: Stats, predictor: Predictor, chunks, block) -> int:
    stats.nll_bits += block.nll_bits
    stats.lm_nll_bits += block.lm_nll_bits
    return writer.add(block.data, predictor.tokenizer.decode(np.concatenate(chunks)) if writer.fallback else None)


def read_header(source: BinaryIO) -> container.Header:
    return container.Header.read(source)


def predictor_for(header: container.Header, model: str | Predictor | None = None,
                  loaded: dict | None = None, **options) -> Predictor:
    """Load the file's model and make it compute exactly as the encoder did, or refuse.

    ``loaded`` (name -> predictor) lets a run over several files load each model
    once (online predictors go back to their first weights for every file: ``begin_file``).
    """
    name, load_options = _decoder_load_args(header, model, options)
    if loaded is not None and not isinstance(model, Predictor) and name in loaded:
        model = loaded[name]
    predictor = model if isinstance(model, Predictor) else load_predictor(name, **load_options)
    _check_fingerprint(header, predictor)
    if loaded is not None:
        loaded[name] = predictor
    return predictor


def _check_fingerprint(header: container.Header, predictor: Predictor) -> None:
    """Refuse a model that would decode other bytes: other weights, or other library versions where
    the numbers depend on them. A full header checks each; a compact one keeps one CRC of both."""
    if header.weights_hash is not None and predictor.weights_hash != header.weights_hash:
        raise FingerprintMismatch(
            f"model weights differ from the ones that made this file (model {header.model!r}, "
            f"file {header.weights_hash.hex()}, here {predictor.weights_hash.hex()})")
    predictor.adopt(header.settings)
    if header.lead:
        try:
            predictor.lead_for(header.chunk, header.lead)  # refuses a lead this model cannot compute
        except ValueError as exc:
            raise ModelError(f"cannot decode this file: {exc}") from None
    versions = container.versions_crc(coded_versions(predictor))
    if header.versions_crc is not None and versions != header.versions_crc:
        raise FingerprintMismatch(
            f"library versions differ from the ones that made this file (here: {coded_versions(predictor)}); "
            "decompress with the versions used to compress")
    here = container.joint_fingerprint(predictor.weights_hash, versions)
    if header.fingerprint is not None and here != header.fingerprint:
        raise FingerprintMismatch(
            f"model weights or library versions differ from the ones that made this file (model "
            f"{header.model!r}: file fingerprint {header.fingerprint:08x}, here {here:08x}, weights "
            f"{predictor.weights_hash.hex()}, versions {coded_versions(predictor)})")


def _decoder_load_args(header: container.Header, model, options: dict) -> tuple[str, dict]:
    """The model name and load options that decode a file: as the encoder loaded it, rather than
    converting later (a float model's dtype and threads are the header's unless given)."""
    name = model if isinstance(model, str) else model_for_file(header.model, header.portable)
    given = {k: v for k, v in options.items() if v is not None}
    return name, {"dtype": header.settings.dtype, "threads": header.settings.threads, **given}


def _worker_task(workers: WorkerPool, predictor: Predictor, model, load, options: dict, **setup) -> Task:
    """The Task every block of this file is sent with: how the workers load the model and what it must compute."""
    check_splittable(predictor)
    if load is None:
        if not isinstance(model, str):
            raise ValueError("workers load the model by name: pass the name, or load=")
        load = functools.partial(load_predictor, model, **{k: v for k, v in options.items() if v is not None})
    return Task(model_key=load_key(load), load=load, fingerprint=fingerprint(predictor), **setup)


def _counted(results: Iterator, on_step, sizes: Iterator[int]) -> Iterator:
    """``results`` as they come, with ``on_step`` told each block's token count."""
    for result, size in zip(results, sizes):
        on_step(size)
        yield result


def decompress_stream(source: BinaryIO, dest: BinaryIO, model: str | Predictor | None = None,
                      progress: Progress | None = None, loaded: dict | None = None,
                      workers: WorkerPool | None = None, load: Callable[[], Predictor] | None = None,
                      **options) -> Stats:
    """Decompress ``source`` into ``dest``; with ``workers``, its blocks are decoded by the pool's
    actors, unless they share a carried history (mixing): those decode in order, here."""
    check_load_options(options, "decompress_stream")
    reader = container.Reader(source)
    history = History(reader.header.mix) if reader.header.mix else None
    in_order = workers is not None and history is not None and history.carried  # each block needs the ones before
    with _coding_lock if workers is None or in_order else contextlib.nullcontext():
        return _decompress(reader, history, in_order, dest, model, progress, loaded, None if in_order else workers,
                           load, options)


def _decompress(reader: container.Reader, history: History | None, in_order: bool, dest: BinaryIO, model,
                progress: Progress | None, loaded: dict | None, workers: WorkerPool | None, load, options) -> Stats:
    start_time = time.perf_counter()
    header = reader.header
    with _setup_lock:
        predictor = predictor_for(header, model, loaded, **options)
        predictor.begin_file()
        if workers is not None:
            name, load_options = _decoder_load_args(header, model, options)
            task = _worker_task(workers, predictor, name, load, load_options, adopt=header.settings.to_header(),
                                mix=header.mix, lead=header.lead)
    stats = Stats(model=header.model, original_bytes=header.original_length, tokens=header.n_tokens,
                  chunk=header.chunk, streams=header.streams)
    if in_order:
        stats.extra["blocks_in_order"] = True  # workers were given, and not used: say so
    crc, length = 0, 0
    on_step = _StepCounter(progress, header.n_tokens)
    coding_start = time.perf_counter()
    if workers is None:
        decoded = (block_bytes(predictor, header.original_length, method, data, lengths, on_step, history, header.lead)
                   for lengths, method, data in reader.blocks())
    else:
        blocks = ((method, data, lengths, header.original_length) for lengths, method, data in reader.blocks())
        decoded = _counted(workers.map("decode", task, blocks), on_step, reader.layout.block_tokens())
    try:
        for block in decoded:
            for out in block:
                crc, length = zlib.crc32(out, crc), length + len(out)
                if length > header.original_length:
                    raise ChecksumError("damaged file (decoded more bytes than stored)")
                dest.write(out)
        if length != header.original_length or crc != header.checksum:
            raise ChecksumError("checksum mismatch: the decoded data differs from the original")
    except ChecksumError as exc:  # not a structural error (truncation, a bad block length)
        reason = checksum_failure_reason(header.settings)
        if reason:
            raise ChecksumError(f"cannot decode ({exc}): {reason}") from None
        raise
    stats.extra.update(predictor.stepping_report())
    stats.finish(start_time, coding_start)
    return stats


def _loader_options(options: dict, stream_function: Callable) -> dict:
    """The options that ``stream_function`` does not take itself: its loader's."""
    own = inspect.signature(stream_function).parameters
    return {k: v for k, v in options.items() if k not in own}


def compress(data: bytes, model: str | Predictor | None = None, level: int | None = None, **options) -> bytes:
    """Compress bytes with a language model; like ``gzip.compress`` (``level`` 1 .. 9 as its
    ``compresslevel``; options as ``compress_stream``'s, any other a TypeError)."""
    check_load_options(_loader_options(options, compress_stream), "compress")
    out = io.BytesIO()
    compress_stream(io.BytesIO(data), out, model, level=level, **options)
    return out.getvalue()


def decompress(blob: bytes, model: str | Predictor | None = None, **options) -> bytes:
    """Decompress an .lmz blob; the model is found from its header unless given."""
    check_load_options(_loader_options(options, decompress_stream), "decompress")
    source, out = io.BytesIO(blob), io.BytesIO()
    decompress_stream(source, out, model, **options)
    return out.getvalue()
