"""Write the README's generated tables: the models (from the registry) and the whole-file results
(from benchmarks/results/full.json, which `make bench` / `make bench-report` write).

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

CLASSICAL = ["gzip -9", "bzip2 -9", "xz -9e", "zstd -19", "zstd -22", "brotli -q11"]
ENGLISH = ["canterbury/alice29.txt", "canterbury/asyoulik.txt", "canterbury/lcet10.txt", "canterbury/plrabn12.txt",
           "calgary/book1", "calgary/book2", "calgary/paper1", "calgary/paper2", "calgary/news", "silesia/dickens"]
LMZIP = ["lmzip order2", "lmzip fast-float", "lmzip fast", "lmzip fast-float +fallback", "lmzip fast +fallback",
         "lmzip smollm2-float", "lmzip smollm2"]


def models_table() -> str:
    lines = ["| name | what |", "|---|---|"]
    for entry in MODELS.values():
        default = " (default)" if entry.name == DEFAULT_MODEL else ""
        lines.append(f"| `{entry.name}`{default} | {entry.summary} |")
    lines.append("| a directory or HF id | any Hugging Face causal LM with a byte-level `tokenizer.json` (local "
                 "directory or local HF cache), or a directory written by lmzip (`save_gpt`) |")
    lines += ["", "Levels (`-1` … `-9`, or `--level N`; `--model` and `--chunk` override them): "
              + "; ".join(f"`-{n}` {model}" + (f" L={chunk}" if chunk else "") for n, (model, chunk) in LEVELS.items())
              + "."]
    return "\n".join(lines)


def results_table() -> str:
    rows = json.loads((ROOT / "benchmarks/results/full.json").read_text())
    table = {(r["file"], r["compressor"]): r["bits_per_byte"] for r in rows}
    sizes = {r["file"]: r["original_bytes"] for r in rows}
    columns = [c for c in LMZIP if any((f, c) in table for f in ENGLISH)]
    lines = ["| whole file | bytes | best classical | " + " | ".join(c.removeprefix("lmzip ") for c in columns) + " |",
             "|---|---|---|" + "---|" * len(columns)]
    for f in ENGLISH:
        classical = {c: table[(f, c)] for c in CLASSICAL if (f, c) in table}
        if not classical:
            continue
        best_name = min(classical, key=classical.get)
        cells = [f"{table[(f, c)]:.3f}" if (f, c) in table else "" for c in columns]
        best = min([classical[best_name]] + [table[(f, c)] for c in columns if (f, c) in table])
        cells = [f"**{c}**" if c and float(c) == round(best, 3) else c for c in cells]
        first = f"{classical[best_name]:.3f}"
        first = (f"**{first}**" if classical[best_name] == best else first) + f" ({best_name.split()[0]})"
        lines.append(f"| {f.split('/')[-1]} | {sizes[f]:,} | {first} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
    print(f"{readme}: models and results tables written")


if __name__ == "__main__":
    main()
