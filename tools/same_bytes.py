"""Files are forever: does this checkout write the same bytes as an older one?

Compresses a sample of inputs (each model, mixed and not, independent blocks, several blocks, the
fallback to xz and to stored bytes, levels) with this checkout and with a reference checkout (e.g. a
``git worktree`` of lmzip 0.8.0), each in fresh processes of the same Python, and compares the bytes.
A default run's header is compact since lmzip 0.11.0 (format version 3): where the two headers'
versions differ, what must agree is what the headers say (read by this checkout: the model, its
settings and mixing, the layout, the sizes, the checksum and the fingerprint of weights and versions) and
every byte after them.

    git worktree add /tmp/lmzip-0.8.0 <0.8.0's commit>
    python tools/same_bytes.py --reference /tmp/lmzip-0.8.0 [--python /path/to/python]

The Python must not have lmzip installed in editable mode (its finder would win over PYTHONPATH):
a venv whose site-packages hold lmzip's dependencies only.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import random
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's container reads both files' headers

from lmzip import container  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus" / "eval"
SAMPLE = ROOT / "demo" / "sample.txt"

# name, compress options, input: (corpus file or "sample" or "random", bytes)
CASES = [
    ("smollm2 mixed", ["-m", "smollm2"], ("canterbury/alice29.txt", 3000)),
    ("smollm2 alone", ["-m", "smollm2", "--no-mix"], ("calgary/paper1", 3000)),
    ("smollm2 4 blocks", ["-m", "smollm2", "--chunk", "64", "--streams", "4"], ("calgary/paper2", 3000)),
    ("smollm2 independent", ["-m", "smollm2", "--chunk", "64", "--streams", "4", "-i"], ("calgary/book1", 2500)),
    ("fast mixed", ["-m", "fast"], ("calgary/news", 8000)),
    ("fast alone", ["-m", "fast", "--no-mix"], ("canterbury/asyoulik.txt", 8000)),
    ("fast carried blocks", ["-m", "fast", "--chunk", "48", "--streams", "8"], ("calgary/book2", 6000)),
    ("fast independent", ["-m", "fast", "--chunk", "48", "--streams", "8", "-i"], ("canterbury/lcet10.txt", 6000)),
    ("fast fallback (binary)", ["-m", "fast"], ("canterbury/kennedy.xls", 20000)),
    ("fast fallback (random)", ["-m", "fast"], ("random", 3000)),
    ("fast text then random", ["-m", "fast", "--chunk", "64", "--streams", "4"], ("text+random", 4000)),
    ("level 2", ["-2"], ("calgary/progc", 6000)),
    ("order2", ["-m", "order2"], ("canterbury/cp.html", 6000)),
    ("order0", ["-m", "order0"], ("calgary/trans", 4000)),
    ("uniform", ["-m", "uniform", "--no-fallback"], ("canterbury/xargs.1", 2000)),
    ("fast, empty input", ["-m", "fast"], ("sample", 0)),
]


def case_input(source: tuple[str, int]) -> bytes:
    name, size = source
    if name == "random":
        return random.Random(7).randbytes(size)
    if name == "text+random":
        text = SAMPLE.read_bytes()
        return text[: size // 2] + random.Random(8).randbytes(size // 4) + text[size // 2 : size]
    if name == "sample":
        return SAMPLE.read_bytes()[:size]
    return (CORPUS / name).read_bytes()[:size]


def compress(python: str, checkout: Path, options: list[str], data: bytes) -> bytes:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    # in the checkout's folder: `python -m` puts the working folder first on the path, so run from
    # elsewhere both runs would import the lmzip found there (up to 0.10.0 this tool compared the
    # checkout it was run from with itself)
    run = subprocess.run([python, "-m", "lmzip.cli", "compress", "-c", "-q", *options, "-"], input=data,
                         capture_output=True, env=env, cwd=checkout, timeout=1800)
    if run.returncode:
        raise RuntimeError(f"{checkout}: {run.stderr.decode(errors='replace').strip()}")
    return run.stdout


def version_of(python: str, checkout: Path) -> str:
    """The lmzip version a run in ``checkout`` imports: the check that each side runs its own code."""
    run = subprocess.run([python, "-c", "import lmzip; print(lmzip.__version__, lmzip.__file__)"], capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(checkout)}, cwd=checkout, check=True)
    return run.stdout.strip()


def _said(h) -> tuple:
    return (h.model, h.settings, h.mix, h.flags, h.chunk, h.streams, h.original_length, h.n_tokens, h.checksum,
            h.joint_fingerprint())


def same_file(ours: bytes, theirs: bytes) -> str:
    """'yes' for identical bytes, 'header only' where only the header's version differs (the same
    fields, the same blocks), else 'no'."""
    if ours == theirs:
        return "yes"
    heads = []
    for blob in (ours, theirs):
        stream = io.BytesIO(blob)
        header = container.Header.read(stream)
        heads.append((header, blob[stream.tell():]))
    (a, rest_a), (b, rest_b) = heads
    if a.version != b.version and _said(a) == _said(b) and rest_a == rest_b:
        return f"header only (version {a.version} here, {b.version} there)"
    return "no"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", type=Path, required=True, help="a checkout of the older lmzip")
    ap.add_argument("--python", default=sys.executable)
    args = ap.parse_args()
    ours, theirs = version_of(args.python, ROOT), version_of(args.python, args.reference)
    if ours == theirs:
        raise SystemExit(f"both sides import the same lmzip ({ours}): use a Python without lmzip installed")
    print(f"here: lmzip {ours}; reference: lmzip {theirs}\n")
    print("| case | input bytes | file bytes | sha-256 (first 12) | same as the reference |")
    print("|---|---|---|---|---|")
    differing = 0
    for name, options, source in CASES:
        data = case_input(source)
        ours, theirs = (compress(args.python, checkout, options, data) for checkout in (ROOT, args.reference))
        verdict = same_file(ours, theirs)
        differing += verdict == "no"
        print(f"| {name} | {len(data):,} | {len(ours):,} | {hashlib.sha256(ours).hexdigest()[:12]} | "
              f"{verdict if verdict != 'no' else f'**no** ({len(theirs):,} bytes there)'} |", flush=True)
    print(f"\n{len(CASES) - differing} of {len(CASES)} the same")
    sys.exit(1 if differing else 0)


if __name__ == "__main__":
    main()
