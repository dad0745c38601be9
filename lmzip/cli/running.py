"""Running the command line's work: one line on stderr and a documented exit status for every
failure, each file in turn or several in parallel (a failing file is reported and the others go on),
Ctrl-C and SIGTERM turned into exit 130 with nothing left behind, Ray workers for --workers, a
progress bar when a person is watching, and the statistics as a line or as JSON."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

import typer

from ..errors import LmzipError

def fail(message: str, code: int) -> None:
    print(f"lmzip: {message}", file=sys.stderr)
    raise typer.Exit(code)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


@contextlib.contextmanager
def errors_as_messages():
    """Every failure becomes one line on stderr and a documented exit status."""
    # SIGINT too: a shell that starts a job in the background leaves SIGINT ignored,
    # and Python then installs no KeyboardInterrupt handler of its own. (Only the main
    # thread may; files coded in parallel run in others, and the main thread reports.)
    main = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGTERM, signal.SIGINT)} if main else {}
    try:
        yield
    except LmzipError as exc:
        fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        if not main:
            raise typer.Exit(130) from None
        fail("interrupted; no output written", 130)
    except (OSError, ValueError) as exc:
        fail(str(exc), 1)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def each_file(inputs, output, stdout: bool, recursive: bool, work, pool=None, as_json=False, quiet=False) -> None:
    """Run ``work(file, top)`` for each input like gzip: a failing file is reported and skipped,
    the others still run, and the exit status is the worst one. With workers, files run in
    parallel (as many as there are workers), so that small files keep every worker busy.
    With -r, one summary line ends the run."""
    if recursive and stdout:
        fail("-r writes files, not standard output (-c)", 1)
    if not recursive and len(inputs) > 1 and (output is not None or stdout):
        fail("-o and -c take a single input file (or -r: -o names a directory)", 1)
    outcomes = []  # (stats or None, exit code)

    def run(file, top):
        try:
            with errors_as_messages():
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
        fail("interrupted; no output written", 130)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    executor.shutdown()
    if any(code == 130 for _, code in outcomes):
        fail("interrupted; no output written", 130)
    return outcomes


def _summarize(outcomes, as_json: bool, quiet: bool) -> None:
    done = [stats for stats, code in outcomes if code == 0 and stats is not None]
    size_in = sum(s.original_bytes for s in done)
    size_out = sum(s.compressed_bytes for s in done)
    summary = {"summary": True, "files": len(done), "failed": sum(code != 0 for _, code in outcomes),
               "original_bytes": size_in, "compressed_bytes": size_out,
               "bits_per_byte": 8 * size_out / size_in if size_in and size_out else None}
    if as_json:
        print_locked(json.dumps(summary), sys.stdout)
    elif not quiet:
        sizes = f", {size_in:,} -> {size_out:,} bytes" if size_out else f", {size_in:,} bytes"
        print_locked(f"lmzip: {summary['files']} files{sizes}, {summary['failed']} failed", sys.stderr)


_print_lock = threading.Lock()


def print_locked(line: str, stream) -> None:
    with _print_lock:  # threads print whole lines
        print(line, file=stream, flush=True)


def report(stats, as_json: bool, quiet: bool, to_stdout: bool, line: str) -> None:
    if as_json:
        print_locked(json.dumps(stats.to_dict()), sys.stderr if to_stdout else sys.stdout)
    elif not quiet and sys.stderr.isatty():
        print_locked(line, sys.stderr)


@contextlib.contextmanager
def worker_pool(workers: Optional[int], cluster: Optional[str], threads: Optional[int]):
    """A Ray WorkerPool for --workers / --cluster (None without them), stopped at the end."""
    if workers is None and cluster is None:
        yield None
        return
    from ..workers import WorkerPool

    with errors_as_messages():
        pool = WorkerPool(workers=workers, address=cluster, threads=threads or 1)
    try:
        yield pool
    finally:
        pool.close()


class ProgressBar:
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
