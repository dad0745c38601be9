"""The commands that code files: compress, decompress, test, info."""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
import threading
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import FormatError, InputOutputError
from ..models import DEFAULT_MODEL, model_and_chunk, model_to_load
from .app import (BackendOpt, ChunkOpt, ClusterOpt, DeviceOpt, DtypeOpt, ForceOpt, JsonOpt, KeepOpt, LEVEL_HELP,
                  LeadOpt, ModelOpt, OutputOpt, QuietOpt, RecursiveOpt, RemoveOpt, StdoutOpt, StreamsOpt, ThreadsOpt,
                  WorkersOpt, app, help_at_a_terminal)
from .files import (SUFFIX, atomic_output, copy_metadata, list_inputs, open_input, remove_input, strip_suffix,
                    target_of)
from .running import ProgressBar, each_file, errors_as_messages, report, worker_pool

OnlineOpt = typer.Option(False, "--online", help="learn while coding: from a seeded init (default) or, with "
                         "--model fast, from the shipped fast model")
PortableOpt = typer.Option(False, "--portable", help="insist on an integer-exact model (the default models are): "
                           "the file decodes on any machine, library, thread count or device")
NoFallbackOpt = typer.Option(False, "--no-fallback", help="code every block with the model, even where xz -9e or "
                             "storing the bytes would be smaller")
NoMixOpt = typer.Option(False, "--no-mix", help="the model alone: no context models (n-grams, match) mixed in "
                        "(integer models mix by default; --json gives both costs as nll_bits and lm_nll_bits)")
IndependentOpt = typer.Option(False, "--independent", "-i", help="blocks with their own history: they decode in "
                              "parallel (with --workers) and a damaged block spoils no other, at some cost in "
                              "ratio on long files (always so with --workers)")
AdaptOpt = typer.Option(None, "--adapt/--no-adapt", help="integer models: the head learns from the file while "
                        "it codes, exactly, so the file still decodes anywhere (a bias on the logits, "
                        "docs/adapt.md)")
LevelOpt = typer.Option(None, "--level", "-l", min=1, max=9, help=f"preset, also -1 .. -9 (--model and --chunk "
                        f"override it): {LEVEL_HELP}")


@app.command()
def compress(
    ctx: typer.Context,
    files: Optional[List[Path]] = typer.Argument(None, help="files to compress; - or nothing for stdin"),
    output: Optional[Path] = OutputOpt,
    stdout: bool = StdoutOpt,
    remove: bool = RemoveOpt,
    keep: bool = KeepOpt,
    force: bool = ForceOpt,
    model: Optional[str] = ModelOpt,
    device: Optional[str] = DeviceOpt,
    dtype: Optional[str] = DtypeOpt,
    threads: Optional[int] = ThreadsOpt,
    chunk: Optional[int] = ChunkOpt,
    streams: Optional[int] = StreamsOpt,
    lead: Optional[int] = LeadOpt,
    online: bool = OnlineOpt,
    portable: bool = PortableOpt,
    backend: Optional[str] = BackendOpt,
    no_fallback: bool = NoFallbackOpt,
    no_mix: bool = NoMixOpt,
    independent: bool = IndependentOpt,
    adapt: Optional[bool] = AdaptOpt,
    level: Optional[int] = LevelOpt,
    recursive: bool = RecursiveOpt,
    workers: Optional[int] = WorkersOpt,
    cluster: Optional[str] = ClusterOpt,
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
):
    """Compress each FILE to FILE.lmz."""
    from .. import api

    help_at_a_terminal(ctx, files)
    with errors_as_messages():
        if level is not None:
            model, chunk = model_and_chunk(model, chunk, level)
        model = model_to_load(model, online, portable)
    threads = 1 if (workers or cluster) and threads is None else threads  # workers, not threads, use the cores
    shared = _SharedModel(model or DEFAULT_MODEL, dict(dtype=dtype, device=device, threads=threads, backend=backend,
                                                       adapt=adapt))

    def one(file: Optional[Path], top: Optional[Path]):
        if file is not None and str(file).endswith(SUFFIX) and not force:
            raise InputOutputError(f"{file} already has the {SUFFIX} suffix (use -f to compress it anyway)")
        target = target_of(file, top, output, stdout, lambda p: p.with_name(p.name + SUFFIX))
        with open_input(file) as source, atomic_output(target, force) as dest, \
                ProgressBar("compressing", quiet) as progress:
            predictor = shared.get()  # after the input opened
            stats = api.compress_stream(source, dest, predictor, chunk=chunk, streams=streams, lead=lead,
                                        progress=progress, fallback=not no_fallback, mix=not no_mix,
                                        independent=independent, workers=pool, load=shared.load)
        copy_metadata(file, target)
        remove_input(file, remove)
        _report_compressed(stats, predictor, file, as_json, quiet, target is None)
        return stats

    with errors_as_messages():
        inputs = list_inputs(files, recursive, lambda path: not path.name.endswith(SUFFIX))
    with worker_pool(workers, cluster, threads) as pool:
        each_file(inputs, output, stdout, recursive, one, pool, as_json, quiet)


class _SharedModel:
    """The one model a run's files share, loaded once, by the first file once its input opened
    (an online model goes back to its first weights for every file)."""

    def __init__(self, name: str, options: dict):
        from ..models import load_predictor

        self.load = functools.partial(load_predictor, name, **options)  # also how workers load it
        self._model, self._lock = None, threading.Lock()

    def get(self):
        with self._lock:
            if self._model is None:
                self._model = self.load()
            return self._model


def _report_compressed(stats, predictor, file: Optional[Path], as_json: bool, quiet: bool, to_stdout: bool) -> None:
    if predictor.capabilities.learns:  # it sends no weights: the file plus the code that trains describes the data
        from ..models.float.online import code_bytes

        stats.extra["code_bytes"] = code_bytes()
        stats.extra["description_bytes"] = stats.compressed_bytes + stats.extra["code_bytes"]
    label = stats.extra["file"] = str(file) if file else "stdin"
    report(stats, as_json, quiet, to_stdout,
           f"{label}: {stats.original_bytes:,} -> {stats.compressed_bytes:,} bytes, "
           f"{stats.bits_per_byte:.3f} bits/byte ({stats.model}, {stats.tokens_per_second:,.0f} tokens/s)")


@app.command()
def decompress(
    ctx: typer.Context,
    files: Optional[List[Path]] = typer.Argument(None, help="files .lmz to decompress; - or nothing for stdin"),
    output: Optional[Path] = OutputOpt,
    stdout: bool = StdoutOpt,
    remove: bool = RemoveOpt,
    keep: bool = KeepOpt,
    force: bool = ForceOpt,
    model: Optional[str] = typer.Option(None, "--model", "-m", help="where to find the file's model, if not where it was"),
    device: Optional[str] = DeviceOpt,
    backend: Optional[str] = BackendOpt,
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="integer models' files: any count "
                                          "(other files use the count they were made with)"),
    recursive: bool = RecursiveOpt,
    workers: Optional[int] = WorkersOpt,
    cluster: Optional[str] = ClusterOpt,
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
):
    """Decompress each FILE.lmz to FILE."""
    from .. import api

    help_at_a_terminal(ctx, files)
    loaded = {}  # each model loaded once across the files

    def one(file: Optional[Path], top: Optional[Path]):
        target = target_of(file, top, output, stdout, strip_suffix)
        overwrite = force or (target is None and sys.stdout.isatty())  # to a terminal, as with gzip -dc
        with open_input(file) as source, atomic_output(target, overwrite) as dest, \
                ProgressBar("decompressing", quiet) as progress:
            stats = api.decompress_stream(source, dest, model, progress=progress, loaded=loaded, workers=pool,
                                          device=device, backend=backend, threads=threads)
        copy_metadata(file, target)
        remove_input(file, remove)
        stats.extra["file"] = str(file or "stdin")
        in_order = ""
        if stats.extra.get("blocks_in_order"):
            in_order = ", in order in this process: its blocks share mixing's history"
        report(stats, as_json, quiet, target is None,
                f"{file or 'stdin'}: {stats.original_bytes:,} bytes ({stats.tokens_per_second:,.0f} tokens/s){in_order}")
        return stats

    with errors_as_messages():
        inputs = list_inputs(files, recursive, lambda path: path.name.endswith(SUFFIX))
    with worker_pool(workers, cluster, threads) as pool:
        each_file(inputs, output, stdout, recursive, one, pool, as_json, quiet)


@app.command()
def test(
    file: Path = typer.Argument(..., help="file.lmz to check"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="where to find the file's model"),
    backend: Optional[str] = BackendOpt,
    quiet: bool = QuietOpt,
):
    """Decode FILE.lmz and verify its checksum, writing nothing."""
    from .. import api

    class _Sink:
        def write(self, data):
            return len(data)

    with errors_as_messages():
        with open_input(file) as source, ProgressBar("testing", quiet) as progress:
            stats = api.decompress_stream(source, _Sink(), model, progress=progress, backend=backend)
        if not quiet:
            print(f"{file}: OK ({stats.original_bytes:,} bytes)", file=sys.stderr)


@app.command()
def info(
    file: Path = typer.Argument(..., help="file.lmz"),
    as_json: bool = JsonOpt,
):
    """Show the header of FILE.lmz."""
    from .. import container

    with errors_as_messages():
        size = file.stat().st_size if file.exists() else None
        with open_input(file) as source:
            reader = container.Reader(source)
            header = reader.header
            try:
                blocks = reader.method_counts()
            except FormatError as e:
                blocks = f"unreadable ({e})"
        fields = {
            "model": header.model, "portable": header.portable,
            "weights_hash": None if header.weights_hash is None else header.weights_hash.hex(),
            "settings": {k: v for k, v in dataclasses.asdict(header.settings).items() if v is not None},
            "mix": header.mix,
            "versions_crc": None if header.versions_crc is None else f"{header.versions_crc:08x}",
            "fingerprint": f"{header.joint_fingerprint():08x}", "chunk": header.chunk, "streams": header.streams,
            "lead": header.lead, "original_bytes": header.original_length, "tokens": header.n_tokens,
            "checksum": f"{header.checksum:08x}", "format_version": header.version, "blocks": blocks,
            "compressed_bytes": size,
            "bits_per_byte": 8 * size / header.original_length if size and header.original_length else None,
        }
        if as_json:
            print(json.dumps(fields))
        else:
            for key, value in fields.items():
                print(f"{key:>16}: {value}")


@app.command()
def models(as_json: bool = JsonOpt):
    """List the models: what each is, its size, integer or float, where it lives, whether it is ready here."""
    from ..models.inventory import listings

    with errors_as_messages():
        found = listings()
    if as_json:
        print(json.dumps([dataclasses.asdict(m) for m in found]))
        return
    width = max(15, *(len(m.name) for m in found))
    for m in found:
        size = f"{m.parameters / 1e6:,.1f}M" if m.parameters else "-"
        print(f"{m.name:<{width}} {m.family:<32} {size:>7}  {m.arithmetic:<9} {m.state:<38} {m.where}")
