"""Peak memory against input size: does it stay flat as the file grows?

Compresses and decompresses the first 2 MB of Silesia ``dickens`` and a 20 MB
file (dickens twice) with the fast model through the command line, file to
file and stdin -> stdout, under ``/usr/bin/time -v``; checks the exact bytes
and prints peak RSS, time and bits per byte.

    python benchmarks/memory_scaling.py [--sizes 2,20] [--model fast]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DICKENS = ROOT.parent / "shared" / "corpus" / "eval" / "silesia" / "dickens"
LMZIP = [sys.executable, "-m", "lmzip.cli"]
MB = 1 << 20


def make_input(path: Path, size: int) -> None:
    data = DICKENS.read_bytes()
    with open(path, "wb") as out:
        left = size
        while left:
            piece = data[:left]
            out.write(piece)
            left -= len(piece)


def timed(command: str) -> tuple[float, float]:
    """Run a shell command under /usr/bin/time -v: (seconds, peak RSS in MB) of its largest process."""
    result = subprocess.run(["/usr/bin/time", "-v", "bash", "-c", command], capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"failed: {command}\n{result.stderr[-2000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr).group(1)) / 1024
    wall = re.search(r"Elapsed \(wall clock\) time .*: (\S+)", result.stderr).group(1)
    seconds = sum(float(part) * 60 ** i for i, part in enumerate(reversed(wall.split(":"))))
    return seconds, rss


def measure(size_mb: int, model: str, pipe: bool, tmp: Path) -> dict:
    source = tmp / f"in{size_mb}"
    if not source.exists():
        make_input(source, size_mb * MB)
    packed, back = tmp / f"in{size_mb}.lmz", tmp / f"out{size_mb}"
    cli = " ".join(LMZIP)
    if pipe:
        c_cmd = f"{cli} compress -q --model {model} -c < {source} > {packed}"
        d_cmd = f"cat {packed} | {cli} decompress -q -c > {back}"
    else:
        c_cmd = f"{cli} compress -q -f -k --model {model} {source} -o {packed}"
        d_cmd = f"{cli} decompress -q -f -k {packed} -o {back}"
    c_sec, c_rss = timed(c_cmd)
    d_sec, d_rss = timed(d_cmd)
    exact = source.read_bytes() == back.read_bytes()
    if not exact:
        raise SystemExit(f"round trip differs for {size_mb} MB")
    packed_bytes = packed.stat().st_size
    row = {"size_mb": size_mb, "mode": "stdin->stdout" if pipe else "file", "model": model,
           "compressed_bytes": packed_bytes, "bits_per_byte": 8 * packed_bytes / (size_mb * MB),
           "compress_s": c_sec, "compress_rss_mb": c_rss, "decompress_s": d_sec, "decompress_rss_mb": d_rss,
           "exact": exact}
    packed.unlink()
    back.unlink()
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="2,20", help="input sizes in MB")
    ap.add_argument("--model", default="fast")
    ap.add_argument("--pipe-sizes", default="2", help="sizes also run stdin -> stdout")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "memory.md")
    ap.add_argument("--append", action="store_true", help="keep the stored rows of other sizes")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    pipes = {int(s) for s in args.pipe_sizes.split(",") if s}
    json_path = args.out.with_suffix(".json")
    keep = json.loads(json_path.read_text()) if args.append and json_path.exists() else []
    rows = [r for r in keep if r["size_mb"] not in sizes]
    header = ("| input | mode | compressed | bits/byte | compress s | compress peak RSS | "
              "decompress s | decompress peak RSS |\n|---|---|---|---|---|---|---|---|")
    print(header, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            for pipe in ([False, True] if size in pipes else [False]):
                row = measure(size, args.model, pipe, Path(tmp))
                rows.append(row)
                line = _line(row)
                print(line, flush=True)
                args.out.write_text(f"Peak memory against input size (model {args.model}, exact round trips)\n\n"
                                    + header + "\n" + "\n".join(_line(r) for r in rows) + "\n")
                json_path.write_text(json.dumps(rows, indent=1))


def _line(row: dict) -> str:
    return (f"| dickens {row['size_mb']} MB | {row['mode']} | {row['compressed_bytes']:,} | "
            f"{row['bits_per_byte']:.3f} | {row['compress_s']:.0f} | {row['compress_rss_mb']:.0f} MB | "
            f"{row['decompress_s']:.0f} | {row['decompress_rss_mb']:.0f} MB |")


if __name__ == "__main__":
    main()
