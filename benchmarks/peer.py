"""lmzip's default against llama-zip (llama.cpp, float) with the same GGUF, on one machine, in one run.

    python benchmarks/peer.py --llama-zip PATH/llama_zip.py --python PATH/python [--bytes 32768]

llama-zip is not a dependency of lmzip: install llama-cpp-python (it builds llama.cpp from source,
~25 minutes on 2 cores) into any Python and point ``--python`` at it, with ``--llama-zip`` at
llama_zip.py from its repository (AlexBuz/llama-zip). Both tools get the first ``--bytes`` of
alice29.txt, compress and decompress it in fresh processes (wall clock, start-up included), and
each round trip is checked. llama-zip runs with ``--n-ctx 2048`` (SmolLM2's context, lmzip's
chunk) and SmolLM2-135M-Instruct Q4_1, the GGUF lmzip's default is derived from; lmzip runs at
its default level and at levels 8 and 9 (4,096- and 8,192-token chunks). Writes
benchmarks/results/peer-<torch's CPU kernel path>.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lmzip.models import LEVELS  # noqa: E402
from lmzip.models.base import torch_dispatch  # noqa: E402
from lmzip.models.gguf.smollm2 import find_gguf  # noqa: E402

ALICE = ROOT.parent / "shared" / "corpus" / "eval" / "canterbury" / "alice29.txt"
STRONGER = (8, 9)  # lmzip's stronger levels too: longer chunks, fewer streams


def timed(command: list[str], stdin: Path, stdout: Path) -> float:
    start = time.perf_counter()
    with open(stdin, "rb") as src, open(stdout, "wb") as dst:
        subprocess.run(command, stdin=src, stdout=dst, check=True)
    return time.perf_counter() - start


def round_trip(name: str, compress: list[str], decompress: list[str], original: Path, work: Path) -> dict:
    packed, unpacked = work / f"{name}.packed", work / f"{name}.out"
    seconds_in = timed(compress, original, packed)
    seconds_out = timed(decompress, packed, unpacked)
    if unpacked.read_bytes() != original.read_bytes():
        raise SystemExit(f"{name}: the round trip differs from the original")
    return {"tool": name, "bytes": packed.stat().st_size, "compress_s": seconds_in, "decompress_s": seconds_out}


def main() -> int:
    from cpu_matrix import cpu_name  # benchmarks/, this script's folder

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llama-zip", type=Path, required=True, help="llama_zip.py of AlexBuz/llama-zip")
    parser.add_argument("--python", default=sys.executable, help="a Python with llama-cpp-python installed")
    parser.add_argument("--bytes", type=int, default=32768)
    args = parser.parse_args()
    gguf = str(find_gguf())
    lmzip_cli = [sys.executable, "-m", "lmzip.cli"]
    peer = [args.python, str(args.llama_zip), gguf, "--n-ctx", "2048"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        original = work / "alice29-head.txt"
        original.write_bytes(ALICE.read_bytes()[: args.bytes])
        rows = [round_trip("lmzip (smollm2, default)", lmzip_cli + ["compress", "-c", "-"],
                           lmzip_cli + ["decompress", "-c", "-"], original, work),
                round_trip("llama-zip (llama.cpp)", peer + ["-c"], peer + ["-d"], original, work)]
        rows += [round_trip(f"lmzip -{level} (smollm2, {LEVELS[level][1]}-token chunks)",
                            lmzip_cli + ["compress", "-c", f"-{level}", "-"], lmzip_cli + ["decompress", "-c", "-"],
                            original, work) for level in STRONGER]
    kernel_path = torch_dispatch().split(",")[0].lower()
    lines = [f"# lmzip against llama-zip: {cpu_name()}, torch kernels {kernel_path}", "",
             f"`benchmarks/peer.py`: the first {args.bytes:,} bytes of alice29.txt, the same GGUF "
             f"({Path(gguf).name}); wall clock of fresh processes, start-up included; both round trips "
             "checked. llama-zip with `--n-ctx 2048`.", "",
             "| tool | compressed bytes | bits/byte | compress s | decompress s |", "|---|---|---|---|---|"]
    lines += [f"| {r['tool']} | {r['bytes']:,} | {8 * r['bytes'] / args.bytes:.3f} | {r['compress_s']:.1f} | "
              f"{r['decompress_s']:.1f} |" for r in rows]
    ours, theirs = rows[:2]
    lines += ["", f"lmzip decompresses in {ours['decompress_s'] / theirs['decompress_s']:.2f} of llama-zip's time "
              f"and compresses in {ours['compress_s'] / theirs['compress_s']:.2f}; its file is "
              f"{ours['bytes'] / theirs['bytes']:.3f} of llama-zip's size."]
    lines += [f"At -{level}: {row['decompress_s'] / theirs['decompress_s']:.2f} of llama-zip's decompression time, "
              f"{row['bytes'] / theirs['bytes']:.3f} of its size." for level, row in zip(STRONGER, rows[2:])]
    out = ROOT / "benchmarks" / "results" / f"peer-{kernel_path}.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
