"""The integer SmolLM2 on each backend, in one run: decompression steps (1, 4, 32 streams), the
whole-chunk pass compression uses, and the resident memory of each backend's weights.

    python benchmarks/native_speed.py [--backends native,numpy,torch] [--repeats 3]

Each backend runs in a fresh process (so its peak RSS is its own), the backends alternating
`--repeats` times; the best of the repeats is kept (this VM's speed drifts ~15 % an hour: compare
the backends of one run, as ratios). Steps use a cache already 256 positions long, as in the middle
of a chunk. Writes benchmarks/results/native-<torch's CPU kernel path>.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STREAMS = (1, 4, 32)
FILLED = 256  # positions already in the KV cache when the steps are timed
STEPS = 8
PASS_TOKENS = 1024
LIMIT_SHAPE = (2048, 576, 1536)  # (M, K, N): a whole chunk through one of SmolLM2's projections
# SmolLM2's multiply-adds a token: 30 layers of q/k/v, o, gate/up and down, then the head
PASS_MACS = 30 * 576 * (960 + 576 + 3072) + 30 * 1536 * 576 + 576 * 49152


def gemm_rates() -> dict:
    """The machine's limit for these passes, in this process: the native int8 GEMM's GOPS and numpy's
    float32 GEMM's GFLOPS (OpenBLAS) at one shape, best of five each."""
    import numpy as np

    from lmzip.models.native import Int8Weight, load

    M, K, N = LIMIT_SHAPE
    rng = np.random.default_rng(0)
    a = rng.integers(-127, 128, (M, K)).astype(np.float32)
    w = rng.integers(-127, 128, (K, N)).astype(np.int8)
    library, weight, w32 = load(), Int8Weight.from_columns(w), w.astype(np.float32)

    def best(run) -> float:
        times = []
        for _ in range(5):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        return 2 * M * K * N / min(times) / 1e9

    return {"int8_gops": best(lambda: library.gemm(a, weight)), "f32_gflops": best(lambda: a @ w32)}


def measure(backend: str) -> dict:
    """One backend in this process: ms per step at each stream count, tokens/s of a whole-chunk pass."""
    import resource

    import numpy as np

    sys.path.insert(0, str(ROOT))
    from lmzip.models import load_predictor
    from lmzip.models.integer_predictor import HEAD_ROWS, stepper_for

    predictor = load_predictor("smollm2", backend=backend, adapt=False)  # the model's own speed
    model = predictor.model_on(backend)
    out = {"backend": backend}
    with predictor.running():
        for n in STREAMS:
            stepper = stepper_for(model, n, FILLED + STEPS + 1)
            tokens = np.random.default_rng(n).integers(0, 49152, FILLED + STEPS)
            for t in range(FILLED):
                stepper.step(np.full(n, tokens[t]))
            start = time.perf_counter()
            for t in range(FILLED, FILLED + STEPS):
                stepper.step(np.full(n, tokens[t]))
            out[f"ms_per_step_{n}"] = (time.perf_counter() - start) / STEPS * 1000
            del stepper
        idx = np.random.default_rng(0).integers(0, 49152, (1, PASS_TOKENS))
        model.hidden(idx[:, :16])
        start = time.perf_counter()
        hidden = model.hidden(idx)[0]
        for r in range(0, PASS_TOKENS, HEAD_ROWS):  # the head a few rows at a time, as the encoder does it
            model.ops.to_numpy(model.frequencies(hidden[r : r + HEAD_ROWS]))
        out["pass_tokens_per_s"] = PASS_TOKENS / (time.perf_counter() - start)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if backend == "native":
        out.update(gemm_rates())
    return out


def render(best: dict[str, dict], repeats: int, kernel_path: str) -> str:
    from cpu_matrix import cpu_name  # benchmarks/, this script's folder

    from lmzip.models import native

    lines = [
        f"# Integer SmolLM2 by backend: {cpu_name()}, {len(os.sched_getaffinity(0))} cores, torch kernels {kernel_path}",
        "",
        f"`make bench-native`, {time.strftime('%Y-%m-%d')}; native: {native.status()[1].split(', /')[0]}. Steps "
        f"after {FILLED} cached positions (decompression), a {PASS_TOKENS}-token whole-chunk pass with the "
        f"head (compression); best of {repeats} alternating runs, each backend in its own process. The last "
        "row divides native's figure by the best other backend's in each column. Every backend runs the "
        "default recipe (2: wide rows after each norm, `docs/portable.md`), which costs numpy and torch more "
        "than recipe 1 did; lmzip 0.8.0 ran recipe 1 on the faster of numpy and torch, so these ratios are "
        "not against 0.8.0 (see `docs/benchmarks.md`).",
        "",
        "| backend | 1 stream tok/s | 4 streams tok/s | 32 streams tok/s | pass tok/s | peak RSS MB |",
        "|---|---|---|---|---|---|",
    ]
    speeds = {b: [n * 1000 / r[f"ms_per_step_{n}"] for n in STREAMS] + [r["pass_tokens_per_s"]] for b, r in best.items()}
    for b, r in best.items():
        lines.append(f"| {b} | " + " | ".join(f"{v:,.0f}" for v in speeds[b]) + f" | {r['peak_rss_mb']:,.0f} |")
    others = [b for b in best if b != "native"]
    if "native" in best and others:
        ratios = [v / max(speeds[b][i] for b in others) for i, v in enumerate(speeds["native"])]
        memory = best["native"]["peak_rss_mb"] / min(best[b]["peak_rss_mb"] for b in others)
        lines.append("| native / best other | " + " | ".join(f"{r:.2f}x" for r in ratios) + f" | {memory:.2f}x |")
    if "int8_gops" in best.get("native", {}):
        M, K, N = LIMIT_SHAPE
        native_row = best["native"]
        lines += ["", f"The limit, in the native run: at {M}x{K}x{N} the native int8 GEMM runs at "
                  f"{native_row['int8_gops']:.0f} GOPS and numpy's float32 GEMM at {native_row['f32_gflops']:.0f} "
                  f"GFLOPS; a pass costs {2 * PASS_MACS / 1e6:.0f} MOP a token, so the int8 GEMMs alone allow "
                  f"{native_row['int8_gops'] * 1e9 / (2 * PASS_MACS):,.0f} tokens/s."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="native,numpy,torch")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--report", action="store_true", help="only rewrite the table from the last run's JSON")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return 0
    import torch

    kernel_path = torch.backends.cpu.get_cpu_capability().lower()
    raw = ROOT / "benchmarks" / "results" / f"native-{kernel_path}.json"
    if args.report:
        saved = json.loads(raw.read_text())
        best, repeats = saved["best"], saved["repeats"]
    else:
        best, repeats = {}, args.repeats
        for _ in range(repeats):
            for backend in args.backends.split(","):
                r = subprocess.run([sys.executable, __file__, "--measure", backend], capture_output=True, text=True)
                if r.returncode:
                    print(r.stderr.strip().splitlines()[-1], file=sys.stderr)
                    return 1
                got = json.loads(r.stdout.strip().splitlines()[-1])
                keep = best.setdefault(backend, got)
                for key, value in got.items():
                    if key.startswith("ms_") or key.endswith("rss_mb"):
                        keep[key] = min(keep[key], value)
                    elif key.endswith(("per_s", "gops", "gflops")):
                        keep[key] = max(keep[key], value)
                print(json.dumps(got), file=sys.stderr)
        raw.write_text(json.dumps({"best": best, "repeats": repeats}, indent=1))
    text = render(best, repeats, kernel_path)
    (ROOT / "benchmarks" / "results" / f"native-{kernel_path}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
