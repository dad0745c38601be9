"""Scale-out on Ray: tokens/s on 1 and 2 workers against one process, the driver's cost per
block, and what that projects for larger fleets.

    python benchmarks/scale.py [--fast-bytes 1048576] [--smollm2-bytes 65536] [--models fast,smollm2]

For each model, the first bytes of dickens are compressed three ways, with the same chunks and
streams (so the same file, checked byte for byte): one process with 2 torch threads, 1 worker of
1 thread and 2 workers of 1 thread. Ray's start and the actors' model loads are timed apart from
coding (each actor codes one warm-up block first). The driver's cost per block is measured
directly: pickling a block's job and result (what Ray serializes), the xz fallback check the
driver's writer runs on every block, and the round trip of a block through the pool with the
``uniform`` model, which costs no coding (scheduling, transfer, the actor's call). Writes
benchmarks/results/scale.md.
"""

from __future__ import annotations

import argparse
import io
import pickle
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lmzip import api, container, engine, layout  # noqa: E402
from lmzip.layout import block_layout  # noqa: E402
from lmzip.models import load_predictor  # noqa: E402
from lmzip.fingerprint import fingerprint  # noqa: E402
from lmzip.workers import Task, WorkerPool, load_key  # noqa: E402

from integer_smollm2 import cpu_name  # noqa: E402  (benchmarks/ is on the path when run as a script)

DICKENS = ROOT.parent / "shared" / "corpus" / "eval" / "silesia" / "dickens"
# blocks small enough that 2 workers get several each (a block is chunk x streams tokens)
LAYOUT = {"fast": dict(chunk=512, streams=32), "smollm2": dict(chunk=2048, streams=2)}


def compress(data: bytes, model: str, pool: WorkerPool | None, threads: int | None) -> tuple[bytes, float, int]:
    out = io.BytesIO()
    stats = api.compress_stream(io.BytesIO(data), out, model, workers=pool, threads=threads, **LAYOUT[model])
    return out.getvalue(), stats.coding_seconds, stats.tokens


def warm_up(pool: WorkerPool, model: str, data: bytes) -> float:
    """Every actor loads the model and codes one small block; returns the seconds it took."""
    import functools

    import ray

    predictor = load_predictor(model, threads=1)
    ids = predictor.tokenizer.encode(data[:4000])
    predictor.plan(1)
    load = functools.partial(load_predictor, model, threads=1)
    task = Task(model_key=load_key(load), load=load, fingerprint=fingerprint(predictor), plan=1)
    start = time.perf_counter()
    ray.get([actor.encode.remote(task, [np.asarray(ids[:256])]) for actor in pool.actors])
    return time.perf_counter() - start


def driver_costs(data: bytes, model: str, pool: WorkerPool) -> dict:
    """Seconds per block the driver spends besides waiting: serialization, the xz check, and a
    round trip through Ray with a model that costs nothing to run."""
    predictor = load_predictor(model)
    ids = predictor.tokenizer.encode(data)
    blocks = list(layout.FileLayout.of(len(ids), **LAYOUT[model]).split(np.asarray(ids)))
    result = engine.encode_block(load_predictor("uniform"), [np.zeros(8, dtype=np.int64)])
    start = time.perf_counter()
    for chunks in blocks:
        pickle.loads(pickle.dumps((chunks,), protocol=5))
        pickle.loads(pickle.dumps(result, protocol=5))
    serialize = (time.perf_counter() - start) / len(blocks)
    start = time.perf_counter()
    for chunks in blocks:
        container.smallest_coding(b"\0" * (2 * sum(len(c) for c in chunks)), predictor.tokenizer.decode(np.concatenate(chunks)))
    xz = (time.perf_counter() - start) / len(blocks)
    return {"blocks": len(blocks), "tokens_per_block": len(ids) / len(blocks), "serialize": serialize,
            "xz_check": xz, "round_trip": _round_trip_seconds(pool, data, LAYOUT[model])}


def _round_trip_seconds(pool: WorkerPool, data: bytes, layout: dict, n_blocks: int = 8) -> float:
    """Seconds per block through the pool with the uniform model (one token a byte), in blocks of as
    many tokens as the real model's: scheduling, transfer and the actor's call, plus the uniform
    model's own (small) coding, so an upper bound of the overhead."""
    sample = data[: n_blocks * layout["chunk"] * layout["streams"]]
    start = time.perf_counter()
    api.compress_stream(io.BytesIO(sample), io.BytesIO(), "uniform", workers=pool, fallback=False, **layout)
    return (time.perf_counter() - start) / len(block_layout(len(sample), layout["chunk"], layout["streams"]))


def measure(model: str, data: bytes) -> dict:
    row = {"model": model, "bytes": len(data), **LAYOUT[model]}
    blob, seconds, tokens = compress(data, model, None, 2)
    row.update(tokens=tokens, one_process=tokens / seconds)
    for workers in (1, 2):
        start = time.perf_counter()
        with WorkerPool(workers=workers, threads=1) as pool:
            row[f"start_{workers}"] = time.perf_counter() - start
            row[f"load_{workers}"] = warm_up(pool, model, data)
            out, seconds, _ = compress(data, model, pool, 1)
            assert out == blob, f"{model}: {workers} workers wrote another file than one process"
            row[f"workers_{workers}"] = tokens / seconds
            if workers == 2:
                row["driver"] = driver_costs(data, model, pool)
    row["block_seconds"] = row["driver"]["tokens_per_block"] / row["workers_1"]
    return row


def projection(row: dict, workers: int, per_worker: float | None = None) -> float:
    """Tokens/s of ``workers`` workers: each codes at the measured 1-worker rate (or ``per_worker``),
    capped by the driver, which spends serialize + xz check + round trip on each block in turn."""
    per_worker = per_worker or row["workers_1"]
    d = row["driver"]
    driver_limit = d["tokens_per_block"] / (d["serialize"] + d["xz_check"] + d["round_trip"])
    return min(workers * per_worker, driver_limit)


def report(rows: list[dict], cpu: str) -> str:
    lines = [
        "# Scale-out on Ray",
        "",
        f"Measured by `make bench-scale` (`benchmarks/scale.py`) on {cpu}. Every file written on workers was "
        "checked byte for byte against the one-process file. Blocks are made small (chunk x streams) so "
        "that each worker gets several; `smollm2` runs on 64 KB by default, as 256 KB takes ~35 minutes on "
        "2 AVX2 cores (`--smollm2-bytes`).",
        "",
        "| model | input | chunk x streams | tokens | one process, 2 threads | 1 worker x 1 thread | "
        "2 workers x 1 thread | 2 workers / 1 worker | Ray start | model load + warm-up block |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['bytes'] // 1024} KB of dickens | {r['chunk']} x {r['streams']} | {r['tokens']:,} | "
            f"{r['one_process']:,.0f} tok/s | {r['workers_1']:,.0f} tok/s | {r['workers_2']:,.0f} tok/s | "
            f"{r['workers_2'] / r['workers_1']:.2f}x | {r['start_2']:.1f} s | {r['load_2']:.1f} s |")
    lines += ["", "## The driver's cost per block", "",
              "| model | blocks | tokens a block | coding a block (1 worker) | serialization | xz check (writer) | "
              "round trip through Ray (uniform model) | driver / coding |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        d = r["driver"]
        cost = d["serialize"] + d["xz_check"] + d["round_trip"]
        lines.append(f"| {r['model']} | {d['blocks']} | {d['tokens_per_block']:,.0f} | {r['block_seconds']:.2f} s | "
                     f"{d['serialize'] * 1e3:.2f} ms | {d['xz_check'] * 1e3:.1f} ms | {d['round_trip'] * 1e3:.1f} ms | "
                     f"{100 * cost / r['block_seconds']:.2f} % |")
    lines += ["", "## Projection", "",
              "From the figures above, assuming: each worker codes at the measured 1-worker x 1-thread rate (a "
              "worker per core, nothing shared but the driver); the input has many more blocks than workers "
              "(a last, partly idle round is ignored); the driver handles one block at a time in its own "
              "serialization + xz check + round trip time, which caps the fleet. GPUs are not measured here "
              "(no GPU was at hand): the GPU row assumes a rate per GPU, stated in the row.", "",
              "| model | 8 workers (CPU) | 64 workers (CPU) | 8 GPUs | driver's cap |", "|---|---|---|---|---|"]
    for r in rows:
        d = r["driver"]
        cap = d["tokens_per_block"] / (d["serialize"] + d["xz_check"] + d["round_trip"])
        gpu = GPU_ASSUMED[r["model"]]
        lines.append(f"| {r['model']} | {projection(r, 8):,.0f} tok/s | {projection(r, 64):,.0f} tok/s | "
                     f"{projection(r, 8, gpu):,.0f} tok/s (assuming {gpu:,} tok/s a GPU) | {cap:,.0f} tok/s |")
    return "\n".join(lines) + "\n"


# Assumed, not measured: whole-chunk (compression) passes on one GPU, from the CPU's FLOP-bound
# rate scaled by ~100x (an H100's int8/float32 throughput against 2 AVX2 cores).
GPU_ASSUMED = {"fast": 200_000, "smollm2": 10_000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fast-bytes", type=int, default=1 << 20)
    parser.add_argument("--smollm2-bytes", type=int, default=64 << 10)  # 256 KB: ~35 min on 2 AVX2 cores
    parser.add_argument("--models", default="fast,smollm2")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "scale.md")
    args = parser.parse_args()
    text = DICKENS.read_bytes()
    rows = []
    for model in args.models.split(","):
        size = args.fast_bytes if model == "fast" else args.smollm2_bytes
        rows.append(measure(model, text[:size]))
        print(rows[-1], flush=True)
    out = report(rows, cpu_name())
    args.out.write_text(out)
    print(out)


if __name__ == "__main__":
    main()
