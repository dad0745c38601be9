"""The command line's files, as gzip/zstd treat them: which inputs (-r walks directories), where
each result goes (FILE -> FILE.lmz, -o, -c, stdin to stdout), output written to a temporary file
and renamed into place only when complete (an error or Ctrl-C leaves nothing half-written), an
existing output kept unless -f, the input removed only with --rm, and the input's mode and times
copied onto the output."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import List, Optional

from ..errors import InputOutputError

SUFFIX = ".lmz"


def list_inputs(files: Optional[List[Path]], recursive: bool, wanted) -> list[tuple[Optional[Path], Optional[Path]]]:
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


def target_of(file: Optional[Path], top: Optional[Path], output: Optional[Path], stdout: bool, make_name):
    """Where ``file``'s result goes: gzip's naming, or with -r -o OUTDIR the same tree under OUTDIR."""
    if top is None:
        return _output_path(file, output, stdout, make_name)
    target = make_name(file)
    if output is not None:
        target = output / target.relative_to(top)
        target.parent.mkdir(parents=True, exist_ok=True)
    return target


def _output_path(source: Optional[Path], output: Optional[Path], stdout: bool, make_name) -> Optional[Path]:
    if stdout or (output is not None and str(output) == "-"):
        return None
    if output is not None:
        return output
    if source is None or str(source) == "-":
        return None  # stdin to stdout, like gzip in a pipe
    return make_name(source)


def strip_suffix(path: Path) -> Path:
    if path.suffix != SUFFIX:
        raise InputOutputError(f"{path}: unknown suffix (expected {SUFFIX}; use -o or -c)")
    return path.with_suffix("")


def open_input(path: Optional[Path]):
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
def atomic_output(target: Optional[Path], force: bool):
    """Yield a binary stream; a file target appears only once it is complete. While data goes to
    standard output, whatever else prints there (Ray tells its driver of a dead worker on stdout)
    goes to stderr instead."""
    if target is None:
        if sys.stdout.isatty() and not force:
            raise InputOutputError("refusing to write compressed data to a terminal (use -o, or -f to force)")
        data = sys.stdout.buffer
        with contextlib.redirect_stdout(sys.stderr):
            yield data
        data.flush()
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


def remove_input(source: Optional[Path], remove: bool) -> None:
    if remove and source is not None and str(source) != "-":
        source.unlink()


def copy_metadata(source: Optional[Path], target: Optional[Path]) -> None:
    """The output gets the input's permission bits and times, as gzip, xz and zstd do."""
    if source is None or target is None or str(source) == "-":
        return
    info = source.stat()
    os.chmod(target, info.st_mode & 0o7777)
    os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))
