"""The portable model's figures: cost in bits against the float fast model,
speed of each backend both ways, and bit-identity across backends and threads.

    python benchmarks/portable_check.py [--speed-bytes 262144] [--texts 32768]

1. Bits: the first ``--texts`` bytes of each English eval text, compressed by
   ``fast-float`` and ``fast`` (integer).
2. Speed: ``--speed-bytes`` of Silesia dickens; compress (teacher-forced
   integer pass) and decompress (stepping) with the torch backend, decompress
   with numpy; the float fast model both ways for reference. Exact round trips.
3. Identity: frequency tables of a 4 x 512-token batch from the torch backend
   at 1 and 2 threads and from numpy, compared element by element.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import lmzip  # noqa: E402
from lmzip.models import load_predictor  # noqa: E402
from lmzip.models.integer.gpt import IntGPT  # noqa: E402
from lmzip.models.integer.stored import read_stored  # noqa: E402
from lmzip.models.integer.ops import NumpyOps, TorchOps  # noqa: E402
from lmzip.models.integer_predictor import PORTABLE_DIR  # noqa: E402
from lmzip.models.base import torch_state  # noqa: E402

EVAL = ROOT.parent / "shared" / "corpus" / "eval"
ENGLISH = ["canterbury/alice29.txt", "canterbury/asyoulik.txt", "canterbury/lcet10.txt",
           "canterbury/plrabn12.txt", "calgary/book1", "calgary/book2", "calgary/paper1", "calgary/news",
           "silesia/dickens"]


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def bits_table(n_bytes: int) -> list[dict]:
    fast, portable = load_predictor("fast-float", threads=2), load_predictor("fast", threads=2)
    rows = []
    print("| text | fast-float bits/byte | fast (integer) bits/byte | change |\n|---|---|---|---|")
    for name in ENGLISH:
        data = (EVAL / name).read_bytes()[:n_bytes]
        a, b = len(lmzip.compress(data, model=fast)), len(lmzip.compress(data, model=portable))
        rows.append({"text": name, "fast_bpb": 8 * a / len(data), "portable_bpb": 8 * b / len(data)})
        print(f"| {name.split('/')[-1]} | {8 * a / len(data):.3f} | {8 * b / len(data):.3f} | {b / a - 1:+.2%} |",
              flush=True)
    return rows


def speed_table(n_bytes: int) -> list[dict]:
    data = (EVAL / "silesia" / "dickens").read_bytes()[:n_bytes]
    rows = []
    print("| model | backend | compress tok/s | decompress tok/s | bits/byte |\n|---|---|---|---|---|")
    for model, backend in (("fast-float", None), ("fast", "torch"), ("fast", "numpy")):
        predictor = load_predictor(model, threads=2, backend=backend)
        blob, c_sec = timed(lambda: lmzip.compress(data, model=predictor))
        back, d_sec = timed(lambda: lmzip.decompress(blob, model=predictor))
        assert back == data, f"{model}/{backend}: round trip differs"
        tokens = len(predictor.tokenizer.encode(data))
        out = {"model": model, "backend": backend or "torch", "compress_tok_s": tokens / c_sec,
               "decompress_tok_s": tokens / d_sec, "bits_per_byte": 8 * len(blob) / len(data)}
        rows.append(out)
        print(f"| {model} | {out['backend']} | {out['compress_tok_s']:,.0f} | {out['decompress_tok_s']:,.0f} | "
              f"{out['bits_per_byte']:.3f} |", flush=True)
    return rows


def identity() -> dict:
    weights, config = read_stored(PORTABLE_DIR)
    tok = load_predictor("fast-portable", threads=1).tokenizer
    ids = tok.encode((EVAL / "calgary" / "book2").read_bytes()[:20000])[: 4 * 511]
    idx = np.concatenate([np.zeros((4, 1), dtype=np.int64), np.asarray(ids).reshape(4, 511)], axis=1)
    tables = {}
    for n in (1, 2):
        with torch_state(n):
            tables[f"torch, {n} thread(s)"] = IntGPT(weights, config, TorchOps()).forward(idx)
    tables["numpy"] = IntGPT(weights, config, NumpyOps()).forward(idx)
    reference = tables["torch, 1 thread(s)"]
    result = {name: int((t != reference).sum()) for name, t in tables.items()}
    print(f"frequency tables of {reference.size:,} entries; entries differing from torch/1 thread: {result}")
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--texts", type=int, default=32768)
    ap.add_argument("--speed-bytes", type=int, default=262144)
    ap.add_argument("--parts", default="identity,bits,speed")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "portable.json")
    args = ap.parse_args()
    results = {}
    parts = args.parts.split(",")
    if "identity" in parts:
        results["identity"] = identity()
    if "bits" in parts:
        results["bits"] = bits_table(args.texts)
    if "speed" in parts:
        results["speed"] = speed_table(args.speed_bytes)
    args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
