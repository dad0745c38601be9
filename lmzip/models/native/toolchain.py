"""The native library: compiled from the C sources shipped here, once per machine, into the lmzip
cache (``make install`` does it ahead of time), and the errors that say why it cannot be used."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..base import cache_dir

HERE = Path(__file__).parent
SOURCES = [HERE / name for name in ("int8_gemm.c", "attention.c", "llama_step.c")]
HEADERS = [HERE / "lmzip_native.h"]
# IEEE's arithmetic, one rounding an operation: no -ffast-math, no FMA contraction
FLAGS = ["-O3", "-shared", "-fPIC", "-ffp-contract=off", "-fno-fast-math"]


class NativeUnavailable(RuntimeError):
    """Why the native library cannot be used here (one line)."""


class NativeBroken(NativeUnavailable):
    """The library was compiled here and is wrong: it does not build, its structs differ from the
    binding's, or even its portable kernel disagrees with numpy. lmzip still works without it; its
    tests fail rather than skip."""


def find_compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    return None


def library_path() -> Path:
    """Where this source's library lives in the lmzip cache (named by the sources and flags)."""
    text = b"".join(p.read_bytes() for p in SOURCES + HEADERS) + " ".join(FLAGS).encode()
    return cache_dir() / "native" / f"lmzip-{hashlib.sha256(text).hexdigest()[:16]}.so"


def build() -> Path:
    """Compile the library into the cache (atomically: a temporary file renamed into place)."""
    target = library_path()
    if target.exists():
        return target
    cc = find_compiler()
    if cc is None:
        raise NativeUnavailable("no C compiler (cc, gcc or clang) to build the native int8 GEMM")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        for openmp in (["-fopenmp"], []):  # threads where OpenMP is installed, else one thread
            command = [cc, *FLAGS, *openmp, "-o", tmp, *map(str, SOURCES), "-lm"]
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode == 0:
                os.replace(tmp, target)
                return target
        last = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise NativeBroken(f"{cc} could not build the native int8 GEMM: {last}")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
