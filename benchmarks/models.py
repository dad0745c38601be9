"""Bits against model size: every model usable here on the first 32 KB of each English eval text.

    python benchmarks/models.py [--bytes 32768]      # make bench-models

Models: order2 (no parameters), fast, smollm2 (the default), gemma3-270m where its package is
installed, and every GGUF of ``$LMZIP_MODELS`` lmzip can derive (docs/gguf.md); each compresses each
text as a user's default run does (mixed, integer-exact), and the bits are the files' sizes. Writes
benchmarks/results/models.md and models.json, and models.png: bits/byte against parameters (log
axis) for alice29 and book1, where lmzip's points are whole files so that the published points of
other LM compressors (whole files, their papers and pages) stand beside them: fast's and smollm2's
from benchmarks/results/english.json (``make bench-english``), the others' measured here (compression
only: a file's size is its bits).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lmzip import api  # noqa: E402
from lmzip.models import load_predictor  # noqa: E402
from lmzip.models.gguf.files import named_ggufs  # noqa: E402
from lmzip.models.inventory import describe, describe_gguf  # noqa: E402

EVAL = ROOT.parent / "shared" / "corpus" / "eval"
TEXTS = ["canterbury/alice29.txt", "canterbury/asyoulik.txt", "calgary/book1", "calgary/paper1", "calgary/paper2"]
WHOLE = ["canterbury/alice29.txt", "calgary/book1"]  # the figure's files, whole
IN_ENGLISH = ("order2", "fast", "smollm2")  # models whose whole-file points english.json has
RESULTS = ROOT / "benchmarks" / "results"
# whole files, bits/byte, as their authors published them (issue 31's table): (system, model, parameters)
PUBLISHED = [("gpt2tc", "GPT-2 117M", 117e6, 1.24, 1.58), ("gpt2tc", "GPT-2 345M", 345e6, 1.08, 1.48),
             ("gpt2tc", "GPT-2 774M", 774e6, 1.00, 1.43), ("gpt2tc", "GPT-2 1558M", 1558e6, 0.91, 1.40),
             ("ts_zip", "RWKV-169M", 169e6, 1.166, 1.426), ("ts_zip", "RWKV-430M", 430e6, 1.028, 1.311),
             ("ts_zip", "Falcon-7B q4", 7e9, 0.718, 1.104), ("llama-zip", "Llama-3-8B Q4_K_M", 8e9, None, 1.152)]


def usable_models() -> list[tuple[str, int | None]]:
    """(name to load, parameters) of every model that runs here."""
    found = [(name, describe(name).parameters) for name in ("order2", "fast", "smollm2")]
    gemma3 = describe("gemma3-270m")
    if not gemma3.state.startswith("not"):
        found.append(("gemma3-270m", gemma3.parameters))
    for path in named_ggufs():
        listing = describe_gguf(path)
        if not listing.state.startswith("not"):
            found.append((str(path), listing.parameters))
    return found


def measure(size: int, only: list[str] | None = None) -> list[dict]:
    """One row a model and text: its first ``size`` bytes, and the whole WHOLE files for the models
    english.json lacks (rows marked "whole"); ``only``: these models alone."""
    rows = []
    for name, parameters in usable_models():
        if only and name not in only:
            continue
        predictor = load_predictor(name)
        texts = [(text, size) for text in TEXTS] + [(text, None) for text in WHOLE if name not in IN_ENGLISH]
        for text, limit in texts:
            data = (EVAL / text).read_bytes()[:limit]
            start = time.perf_counter()
            blob = api.compress(data, predictor)
            rows.append(dict(model=Path(name).stem if name.endswith(".gguf") else name, parameters=parameters,
                             file=text, whole=limit is None, original_bytes=len(data), compressed_bytes=len(blob),
                             bits_per_byte=8 * len(blob) / len(data), seconds=time.perf_counter() - start))
            print(f"{rows[-1]['model']:<28} {text:<26} {len(data):>9,} B {rows[-1]['bits_per_byte']:.4f}",
                  file=sys.stderr)
    return rows


def table(rows: list[dict], size: int) -> str:
    models = list(dict.fromkeys(r["model"] for r in rows))
    lines = [f"Bits/byte of each model's file (default run: integer-exact, mixed) on the first {size:,} bytes "
             "of each English eval text (`make bench-models`).", "",
             "| model | parameters | " + " | ".join(Path(t).name for t in TEXTS) + " | mean |",
             "|---|---|" + "---|" * (len(TEXTS) + 1)]
    for model in models:
        mine = {r["file"]: r for r in rows if r["model"] == model and not r.get("whole")}
        params = mine[TEXTS[0]]["parameters"]
        bits = [mine[t]["bits_per_byte"] for t in TEXTS]
        lines.append(f"| {model} | {f'{params / 1e6:,.1f}M' if params else '-'} | "
                     + " | ".join(f"{b:.3f}" for b in bits) + f" | {sum(bits) / len(bits):.3f} |")
    return "\n".join(lines) + "\n"


def figure(rows: list[dict], path: Path) -> None:
    """Two panels (alice29, book1): lmzip's whole-file points and the published ones, by parameters."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    whole = json.loads((RESULTS / "english.json").read_text())
    params = {r["model"]: r["parameters"] for r in rows if r["parameters"]}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    for ax, (text, column) in zip(axes, [("canterbury/alice29.txt", 3), ("calgary/book1", 4)]):
        for system, colour, marker in [("gpt2tc", "#999999", "s"), ("ts_zip", "#e69f00", "^"),
                                       ("llama-zip", "#56b4e9", "D")]:
            points = [(p[2], p[column]) for p in PUBLISHED if p[0] == system and p[column] is not None]
            if points:
                ax.plot(*zip(*points), marker=marker, color=colour, linestyle="-" if len(points) > 1 else "",
                        label=f"{system} (published)")
        ours = sorted([(params[r["compressor"].split()[1]], r["bits_per_byte"], r["compressor"].split()[1])
                       for r in whole if r["file"] == text and r["compressor"].startswith("lmzip ")
                       and r["compressor"].split()[1] in params]
                      + [(r["parameters"], r["bits_per_byte"], r["model"]) for r in rows
                         if r.get("whole") and r["file"] == text and r["parameters"]])
        ax.plot([x for x, _, _ in ours], [y for _, y, _ in ours], marker="o", color="#d62728", linewidth=2,
                markersize=8, label="lmzip (measured)")
        for x, y, name in ours:
            left = x > 1e8  # below-left of the points beside the published lines, clear of them
            ax.annotate(f"{name} {y:.3f}", (x, y), textcoords="offset points", xytext=(-8 if left else 8, -16),
                        ha="right" if left else "left", color="#d62728")
        ax.set_xscale("log")
        ax.set_title(f"{Path(text).name}, whole file")
        ax.set_xlabel("parameters")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper right", fontsize=8)
    axes[0].set_ylabel("bits per byte (lower is better)")
    axes[0].set_ylim(0.6, 2.2)
    fig.suptitle("Bits against model size: lmzip's integer-exact models beside published LM compressors")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bytes", type=int, default=32768)
    parser.add_argument("--figure-only", action="store_true", help="redraw models.png from models.json")
    parser.add_argument("--only", help="measure these models again (comma-separated), keep the others' rows")
    args = parser.parse_args()
    if args.figure_only:
        rows = json.loads((RESULTS / "models.json").read_text())
    else:
        only = args.only.split(",") if args.only else None
        kept = [r for r in json.loads((RESULTS / "models.json").read_text()) if r["model"] not in only] if only else []
        rows = kept + measure(args.bytes, only)
        (RESULTS / "models.json").write_text(json.dumps(rows, indent=1) + "\n")
        (RESULTS / "models.md").write_text(table(rows, args.bytes))
    figure(rows, RESULTS / "models.png")
    print(f"wrote {RESULTS / 'models.md'} and models.png", file=sys.stderr)


if __name__ == "__main__":
    main()
