"""The teaching figure for mixing: bits/byte by position in the chunk, for the LM alone, the
adaptive context models alone, and the two mixed, along a whole book.

    python benchmarks/mixing_curve.py [FILE] [--model fast]

Every block's streams advance in lockstep, so at step t the LM has seen t tokens of its chunk
while the context models have seen t tokens of every stream of the block (the history). The LM's
curve falls over its first tokens of context and then stays flat: its window holds no more. The
context models' curve keeps falling as the history grows; mixed, the coder pays less than either.

"Adaptive models alone" is the same mixer with a uniform LM in place of the real one. All three are
computed from the very integers lmzip codes with (the mixed bits are what `compress` pays).
Writes benchmarks/results/mixing_curve.png and mixing_curve.md.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lmzip import engine, layout  # noqa: E402
from lmzip.layout import Schedule  # noqa: E402
from lmzip.mixing import Mixer, mix_setting_for, mixed_intervals  # noqa: E402
from lmzip.models import load_predictor  # noqa: E402
from lmzip.tokenize import read_tokens  # noqa: E402

from integer_smollm2 import cpu_name  # noqa: E402

DEFAULT_FILE = ROOT.parent / "shared" / "corpus" / "eval" / "calgary" / "book1"
OUT = ROOT / "benchmarks" / "results"
BINS = 16  # bins of steps along the chunk


def block_bits(predictor, chunks: list[np.ndarray], history: engine.History, adaptive: Mixer) -> dict[str, np.ndarray]:
    """(B, T) bits of every token of one block: LM alone, context models alone (their own mixer,
    ``adaptive``, carried like the history's), mixed. ``history``: the file's, as compression's."""
    schedule = Schedule.of([len(c) for c in chunks])  # no lead: the curve is of chunks read from nothing
    candidates, states = engine.propose(chunks, schedule, history)
    pass_ = engine.whole_chunk_pass(predictor, chunks, schedule, candidates)  # what compression computes
    tokens, grid, f_candidates = pass_.tokens, pass_.intervals, pass_.f_candidates
    shape = tokens.shape
    out = {name: np.zeros(shape) for name in ("lm", "adaptive", "mixed")}
    mixers = {"mixed": history.mixer, "adaptive": adaptive}
    uniform = np.ones(shape[0], dtype=np.int64)
    for t in range(shape[1]):
        n = schedule.active(t)
        low, size, total = grid[:, :n, t]
        step = (tokens[:n, t], candidates[:n, t], states[:n, t].astype(np.int64))
        out["lm"][:n, t] = np.log2(total / size)
        out["mixed"][:n, t] = mixed_intervals(mixers["mixed"], step[0], low, size, total, f_candidates[:n, t],
                                              *step[1:])[3]
        vocabulary = np.full(n, predictor.vocab_size, dtype=np.int64)  # a uniform LM over the vocabulary
        out["adaptive"][:n, t] = mixed_intervals(mixers["adaptive"], step[0], step[0], uniform[:n], vocabulary,
                                                 (step[1] >= 0).astype(np.int64), *step[1:])[3]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", nargs="?", type=Path, default=DEFAULT_FILE)
    parser.add_argument("--model", default="fast")
    args = parser.parse_args()
    predictor = load_predictor(args.model)
    data = args.file.read_bytes()
    ids, _, _ = read_tokens(predictor.tokenizer, io.BytesIO(data))
    token_bytes = np.array([len(predictor.tokenizer.decode([int(i)])) for i in range(predictor.vocab_size)])
    chunk, streams = predictor.default_chunk, predictor.default_streams
    edges = np.linspace(0, chunk, BINS + 1).astype(int)
    sums = {name: np.zeros(BINS) for name in ("lm", "adaptive", "mixed")}
    byte_sums = np.zeros(BINS)
    start = time.perf_counter()
    history = engine.History(mix_setting_for(predictor.capabilities.integer, len(ids), chunk, streams))  # as compression's
    adaptive = Mixer()
    for chunks in layout.FileLayout.of(len(ids), chunk, streams).split(ids):
        bits = block_bits(predictor, chunks, history, adaptive)
        for i, c in enumerate(chunks):
            where = np.searchsorted(edges, np.arange(len(c)), side="right") - 1
            byte_sums += np.bincount(where, weights=token_bytes[c], minlength=BINS)
            for name in sums:
                sums[name] += np.bincount(where, weights=bits[name][i, : len(c)], minlength=BINS)
        print(f"{sum(len(c) for c in chunks):,} tokens coded", flush=True)
    seconds = time.perf_counter() - start
    curves = {name: s / byte_sums for name, s in sums.items()}
    totals = {name: s.sum() / len(data) for name, s in sums.items()}
    write(args, curves, totals, edges, len(ids), chunk, streams, seconds)


def write(args, curves, totals, edges, n_tokens, chunk, streams, seconds) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {"lm": f"LM alone ({args.model}; its window: the chunk)",
              "adaptive": "context models alone (n-grams + match, over the history)",
              "mixed": "mixed (what lmzip codes)"}
    middle = (edges[:-1] + edges[1:]) / 2
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, style in (("adaptive", "--"), ("lm", "-"), ("mixed", "-")):
        ax.plot(middle, curves[name], style, marker="o", ms=3, label=f"{labels[name]}: {totals[name]:.3f} bits/byte")
    ax.set_xlabel(f"step t in the chunk: the LM has seen t tokens, the context models {streams}·t")
    ax.set_ylabel("bits per byte")
    ax.set_title(f"{args.file.name}: mixing takes over where the LM's window runs out")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT / "mixing_curve.png", dpi=110)
    rows = "\n".join(f"| {a}-{b} | " + " | ".join(f"{curves[n][i]:.3f}" for n in ("lm", "adaptive", "mixed")) + " |"
                     for i, (a, b) in enumerate(zip(edges[:-1], edges[1:])))
    (OUT / "mixing_curve.md").write_text(
        f"# Bits/byte along the chunk: LM alone, context models alone, mixed\n\n"
        f"`benchmarks/mixing_curve.py {args.file.name} --model {args.model}` on {cpu_name()}: {n_tokens:,} tokens, "
        f"{chunk}-token chunks, {streams} streams a block, {seconds:.0f} s.\n\n"
        f"Whole file: LM alone {totals['lm']:.3f}, context models alone {totals['adaptive']:.3f}, "
        f"mixed {totals['mixed']:.3f} bits/byte.\n\n![curve](mixing_curve.png)\n\n"
        f"| steps | LM alone | context models alone | mixed |\n|---|---|---|---|\n{rows}\n")
    print(f"wrote {OUT / 'mixing_curve.png'}: LM {totals['lm']:.3f}, adaptive {totals['adaptive']:.3f}, "
          f"mixed {totals['mixed']:.3f} bits/byte")


if __name__ == "__main__":
    main()
