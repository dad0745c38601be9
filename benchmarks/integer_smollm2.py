"""The integer SmolLM2 against the float one: bits and speed on this machine, by each of the
integer llama's recipes (integer/llama.py RECIPES; new files take the newest).

    python benchmarks/integer_smollm2.py [--texts alice29.txt,asyoulik.txt] [--bytes 32768]

Bits: the negative log-likelihood of the first ``--bytes`` of each English eval text in
2,048-token chunks, from whole-chunk passes of both models (the float model's compressed size is
its stepper's NLL, equal to this pass's up to float rounding; the integer model's NLL is exactly
what its files code). Speed: milliseconds per lockstep step at 1, 4 and 32 streams (decompression
and the float model's compression step; 32 KB is 4 streams of 2,048 tokens, 256 KB is 32), and the
integer model's whole-chunk pass (its compression). Writes benchmarks/results/smollm2-integer-<torch's CPU
kernel path>.md (avx2, avx512, ...): the speeds belong to the CPU, so each kind keeps its own file.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lmzip.coder import token_intervals  # noqa: E402
from lmzip.models import load_predictor  # noqa: E402
from lmzip.models.integer.llama import RECIPES  # noqa: E402

EVAL = ROOT.parent / "shared" / "corpus" / "eval"
CHUNK = 2048


def float_nll_bits(directory: Path, bos_id: int, ids: np.ndarray) -> float:
    """NLL of the float model (transformers, float32, whole chunks): what its stepper codes, up to
    float rounding (stepping it over 32 KB takes minutes a text on 2 cores)."""
    import torch
    from transformers import AutoModelForCausalLM

    from lmzip.models.float.hf import quiet_transformers

    with quiet_transformers():
        model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
    total = 0.0
    for start in range(0, len(ids), CHUNK):
        chunk = torch.as_tensor(ids[start : start + CHUNK])
        inputs = torch.cat([torch.tensor([bos_id]), chunk[:-1]])[None]
        with torch.no_grad():
            logp = torch.log_softmax(model(inputs).logits[0].double(), -1)
        total += float(-logp[torch.arange(len(chunk)), chunk].sum()) / np.log(2)
    return total


def integer_nll_bits(predictor, ids: np.ndarray) -> tuple[float, float]:
    """(NLL bits, seconds) of the integer model's whole-chunk passes: exactly what it codes."""
    chunks = [ids[i : i + CHUNK] for i in range(0, len(ids), CHUNK)]
    start = time.perf_counter()
    with predictor.running():
        bits = 0.0
        for i, first, freqs in predictor.teacher_forced_rows(chunks):
            _, size, total = token_intervals(freqs, chunks[i][first : first + len(freqs)])
            bits += float(-np.log2(size / total).sum())
    return bits, time.perf_counter() - start


def step_ms(predictor, n_streams: int, position: int = 256, steps: int = 4) -> float:
    """Milliseconds per lockstep step of ``n_streams`` streams at ``position`` tokens into a chunk."""
    tokens = np.full(n_streams, 1000, dtype=np.int64)
    predictor.plan(n_streams)  # a float model takes the dtype it would code this many streams in
    with predictor.running():
        predictor.start(n_streams, position + steps + 1)
        for _ in range(position):
            predictor.step(tokens)
        start = time.perf_counter()
        for _ in range(steps):
            predictor.step(tokens)
    return (time.perf_counter() - start) / steps * 1000


def cpu_name() -> str:
    """'AMD EPYC, 2 cores, torch kernels AVX2': what the speeds depend on."""
    import os

    import torch

    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    return f"{model}, {os.cpu_count()} cores, torch kernels {torch.backends.cpu.get_cpu_capability()}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--texts", default="canterbury/alice29.txt,canterbury/asyoulik.txt,canterbury/lcet10.txt,"
                                       "canterbury/plrabn12.txt,calgary/book1")
    ap.add_argument("--bytes", type=int, default=32768)
    ap.add_argument("--streams", default="1,4,32")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.out is None:
        import torch

        kernels = torch.backends.cpu.get_cpu_capability().lower()
        args.out = ROOT / "benchmarks" / "results" / f"smollm2-integer-{kernels}.md"
    # the models alone (the integer one's head does not learn here)
    integer, floating = load_predictor("smollm2", adapt=False), load_predictor("smollm2-float")
    recipes = sorted(RECIPES)
    lines = [f"# Integer vs float SmolLM2 on {cpu_name()} (`make bench-smollm2`)", "",
             f"Bits per byte, first {args.bytes // 1024} KB, {CHUNK}-token chunks; the integer model by each "
             "recipe (integer/llama.py RECIPES: " + "; ".join(f"{r}: {RECIPES[r]}" for r in recipes) + "):", "",
             "| text | float smollm2 | " + " | ".join(f"integer, recipe {r} | change" for r in recipes) + " |",
             "|---|---|" + "---|---|" * len(recipes)]
    whole_seconds, whole_tokens = dict.fromkeys(recipes, 0.0), 0
    changes = {r: [] for r in recipes}
    for name in args.texts.split(","):
        data = (EVAL / name).read_bytes()[: args.bytes]
        ids = np.asarray(integer.tokenizer.encode(data), dtype=np.int64)
        float_bits = float_nll_bits(floating.directory, floating.bos_id, ids)
        cells = [f"{float_bits / len(data):.4f}"]
        for r in recipes:
            integer.use_recipe(r)
            int_bits, seconds = integer_nll_bits(integer, ids)
            whole_seconds[r] += seconds
            changes[r].append(100 * (int_bits / float_bits - 1))
            cells += [f"{int_bits / len(data):.4f}", f"{changes[r][-1]:+.2f} %"]
        whole_tokens += len(ids)
        lines.append(f"| {Path(name).name} | {' | '.join(cells)} |")
        print(lines[-1], flush=True)
    lines.append("| mean change | | " + " | ".join(f"| {np.mean(changes[r]):+.2f} %" for r in recipes) + " |")
    lines += ["", "Speed, tokens/s (decompression steps; the float model compresses by stepping too, the integer "
              "model by whole-chunk passes), each recipe measured in the same run:", "",
              "| | float smollm2 | " + " | ".join(f"integer, recipe {r}" for r in recipes) + " |",
              "|---|---|" + "---|" * len(recipes)]
    lines.append(f"| compress: whole-chunk passes of {CHUNK} tokens | (steps, below) | "
                 + " | ".join(f"{whole_tokens / whole_seconds[r]:.1f}" for r in recipes) + " |")
    for n in map(int, args.streams.split(",")):
        f_ms = step_ms(floating, n)
        cells = []
        for r in recipes:
            integer.use_recipe(r)
            i_ms = step_ms(integer, n)
            cells.append(f"{1000 * n / i_ms:.1f} ({i_ms:.0f} ms)")
        dtype = floating.settings().dtype
        lines.append(f"| step of {n} stream{'s' if n > 1 else ''} (float: {dtype}) | {1000 * n / f_ms:.1f} "
                     f"({f_ms:.0f} ms) | {' | '.join(cells)} |")
        print(lines[-1], flush=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
