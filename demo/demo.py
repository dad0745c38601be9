"""`make demo`: compress a sample with lmzip's default model, decompress it in a fresh process,
check the bytes, and compare the size with gzip -9 and xz -9e on the same input."""

from __future__ import annotations

import gzip
import json
import lzma
import subprocess
import sys
import time
from pathlib import Path

LMZIP = Path(sys.executable).with_name("lmzip")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(LMZIP), *args], capture_output=True, text=True)


def main() -> int:
    sample = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).with_name("sample.txt"))
    extra = sys.argv[2:]  # e.g. --model fast
    work = Path("build")
    work.mkdir(exist_ok=True)
    source = work / sample.name
    source.write_bytes(sample.read_bytes())
    packed, restored = work / (sample.name + ".lmz"), work / (sample.name + ".out")
    data = source.read_bytes()

    started = time.perf_counter()
    result = run("compress", "-f", "--json", str(source), *extra)
    if result.returncode:
        print(result.stderr.strip(), file=sys.stderr)
        return result.returncode
    compress_s = time.perf_counter() - started
    stats = json.loads(result.stdout)
    started = time.perf_counter()
    result = run("decompress", "-f", "-q", str(packed), "-o", str(restored))
    decompress_s = time.perf_counter() - started
    if result.returncode:
        print(result.stderr.strip(), file=sys.stderr)
        return result.returncode

    n = len(data)
    rows = [("gzip -9", len(gzip.compress(data, 9))),
            ("xz -9e", len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))),
            (f"lmzip ({stats['model']})", stats["compressed_bytes"])]
    print(f"\n{source}: {n:,} bytes, {stats['tokens']:,} tokens")
    print(f"{'compressor':<22} {'bytes':>7} {'bits/byte':>10}")
    for name, size in rows:
        print(f"{name:<22} {size:>7,} {8 * size / n:>10.3f}")
    print(f"lmzip: the model alone would cost {stats['lm_nll_bits'] / 8:,.1f} bytes (its NLL), mixed with the "
          f"file's own statistics {stats['nll_bits'] / 8:,.1f}; the file is {stats['compressed_bytes']:,} "
          f"({stats['header_bytes']} of them header)")
    print(f"lmzip: compressed in {compress_s:.1f} s, decompressed in {decompress_s:.1f} s "
          f"(fresh processes, model load included)")
    if restored.read_bytes() != data:
        print("round trip FAILED: the decompressed bytes differ", file=sys.stderr)
        return 1
    print(f"round trip OK: {restored} is identical to {source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
