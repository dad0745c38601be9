"""Write the README's generated parts: the models (from the registry), and the results table and
figure of today's default against the best classical tool (from benchmarks/results/english.json,
which `make bench-english` writes).

    python benchmarks/readme_tables.py      # rewrites the marked sections of README.md in place
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lmzip.models import DEFAULT_MODEL, LEVELS, MODELS  # noqa: E402

CLASSICAL = ["gzip -9", "bzip2 -9", "xz -9e", "zstd -19", "zstd -22", "brotli -q11", "bzip3", "7z PPMd", "zpaq -m5"]
RESULTS = ROOT / "benchmarks" / "results"
FIGURE = RESULTS / "readme.png"
COLOURS = {"best classical": "#9e9e9e", "fast": "#4c9be8", "smollm2 (default)": "#e8743b"}


def models_table() -> str:
    lines = ["| name | what |", "|---|---|"]
    for entry in MODELS.values():
        default = " (default)" if entry.name == DEFAULT_MODEL else ""
        lines.append(f"| `{entry.name}`{default} | {entry.summary} |")
    lines.append("| `PATH.gguf`, or a GGUF's name in `$LMZIP_MODELS` | your own GGUF of architecture llama, qwen2, "
                 "qwen3 or gemma3 (Llama 2/3.x, Mistral, SmolLM2 360M/1.7B, Qwen 2.5/3, Gemma 3, ...), byte-level or "
                 "SentencePiece vocabulary, any weight type from F32 to Q2_K, integer-exact: converted once, its "
                 "files decode on every machine holding the same GGUF ([docs/gguf.md](docs/gguf.md)) |")
    lines.append("| a directory or HF id | any Hugging Face causal LM with a byte-level `tokenizer.json` (local "
                 "directory or local HF cache), or a directory written by lmzip (`save_gpt`) |")
    lines += ["", "Levels (`-1` … `-9`, or `--level N`; `--model` and `--chunk` override them): "
              + "; ".join(f"`-{n}` {model}" + (f" L={chunk}" if chunk else "") for n, (model, chunk) in LEVELS.items())
              + "."]
    return "\n".join(lines)


def english_results() -> tuple[list[dict], list[str]]:
    """One row per file: its size, the best classical tool and its bits/byte, fast's and smollm2's
    (both mixed, as the CLI codes them); and the classical tools that were not measured."""
    rows = json.loads((RESULTS / "english.json").read_text())
    table = {(r["file"], r["compressor"]): r for r in rows}
    order = ["alice29.txt", "asyoulik.txt", "lcet10.txt", "plrabn12.txt", "book1", "book2", "paper1", "paper2"]
    place = {name: i for i, name in enumerate(order)}
    files = sorted(dict.fromkeys(r["file"] for r in rows), key=lambda f: place.get(f.split("/")[-1], len(order)))
    out = []
    for f in files:
        classical = {c: table[(f, c)]["bits_per_byte"] for c in CLASSICAL if (f, c) in table}
        if not classical:
            continue
        best = min(classical, key=classical.get)
        bpb = {m: table[(f, f"lmzip {m}")]["bits_per_byte"] for m in ("fast", "smollm2") if (f, f"lmzip {m}") in table}
        out.append({"file": f.split("/")[-1], "bytes": table[(f, best)]["original_bytes"], "best": best,
                    "best_bpb": classical[best], **bpb})
    measured = {r["compressor"] for r in rows}
    return out, [c for c in CLASSICAL if c not in measured]


def results_table() -> str:
    rows, missing = english_results()
    lines = ["| whole file | bytes | best classical | `fast` | `smollm2` (default) | default / best classical |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        fast = f"{r['fast']:.3f}" if "fast" in r else ""
        default = f"**{r['smollm2']:.3f}**" if "smollm2" in r else "not measured yet"
        ratio = f"{r['smollm2'] / r['best_bpb']:.2f}" if "smollm2" in r else ""
        lines.append(f"| {r['file']} | {r['bytes']:,} | {r['best_bpb']:.3f} ({r['best']}) | {fast} | {default} | {ratio} |")
    if missing:
        lines += ["", f"Not installed when measured, so not in the best-classical column: {', '.join(missing)}."]
    return "\n".join(lines)


def results_figure() -> None:
    """Bits/byte per file: the best classical tool, fast, smollm2; three colours, one glance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, _ = english_results()
    series = {"best classical": [r["best_bpb"] for r in rows], "fast": [r.get("fast", 0) for r in rows],
              "smollm2 (default)": [r.get("smollm2", 0) for r in rows]}
    fig, ax = plt.subplots(figsize=(8, 3.6), dpi=110)
    width = 0.27
    for i, (name, values) in enumerate(series.items()):
        x = [k + (i - 1) * width for k in range(len(rows))]
        bars = ax.bar(x, values, width, label=name, color=COLOURS[name])
        ax.bar_label(bars, labels=[f"{v:.2f}" if v else "" for v in values], fontsize=7, padding=1)
    ax.set_xticks(range(len(rows)), [r["file"] for r in rows])
    ax.set_ylabel("bits per byte (lower is better)")
    ax.set_title("Whole English texts: lmzip against the best classical compressor")
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(frameon=False, ncols=3, loc="upper center", bbox_to_anchor=(0.5, -0.12))
    fig.tight_layout()
    fig.savefig(FIGURE)
    print(f"wrote {FIGURE.relative_to(ROOT)}")


def replace_section(text: str, name: str, body: str) -> str:
    pattern = re.compile(f"(<!-- {name} -->\n)(?:.*?\n)?(<!-- /{name} -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"README.md has no <!-- {name} --> section")
    return pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text)


def main() -> None:
    readme = ROOT / "README.md"
    text = replace_section(readme.read_text(), "models", models_table())
    text = replace_section(text, "results", results_table())
    readme.write_text(text)
    results_figure()
    print(f"{readme}: models and results tables written")


if __name__ == "__main__":
    main()
