"""Teaching demo: a ladder of models, and the bits each one needs.

uniform -> order0 -> order2 -> fast -> smollm2 -> gemma3-270m (where installed) on one text. For each model the
text is really compressed and decompressed (exactly), and the table shows the
model's NLL (the sum of -log2 p over the tokens) next to the real compressed
size: the better the prediction, the smaller the file, and the two agree to a
fraction of a percent. Writes a table (Markdown) and a plot (PNG); then, where both models are
installed, the text under fast and smollm2 side by side (explain --compare, HTML), and one sample
of each decoded from the same random bits (generate); last, bits against parameters beside the
published LM compressors (models.png, redrawn from what `make bench-models` measured).

    python benchmarks/prediction_is_compression.py [FILE] [--bytes 8192]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import lmzip  # noqa: E402
from lmzip import api  # noqa: E402
from lmzip.errors import ModelNotAvailable  # noqa: E402
from lmzip.explain import compare, explain, render_compare_html  # noqa: E402
from lmzip.generate import generate  # noqa: E402
from lmzip.models import load_predictor  # noqa: E402
from lmzip.models.inventory import describe  # noqa: E402

DEFAULT_FILE = ROOT.parent / "shared" / "corpus" / "eval" / "canterbury" / "alice29.txt"
LADDER = ["uniform", "order0", "order2", "fast", "smollm2", "gemma3-270m"]
OUT = ROOT / "benchmarks" / "results"


def measure(model: str, data: bytes) -> dict | None:
    try:
        predictor = load_predictor(model)
    except ModelNotAvailable as exc:
        print(f"{model:>8}: skipped ({exc})")
        return None
    packed = io.BytesIO()
    stats = api.compress_stream(io.BytesIO(data), packed, predictor, fallback=False)  # the model's own bits
    assert lmzip.decompress(packed.getvalue(), model=predictor) == data, f"{model} did not round-trip"
    row = {"model": model, "tokens": stats.tokens, "nll_bits": stats.nll_bits,
           "compressed_bits": 8 * stats.compressed_bytes, "bits_per_byte": stats.bits_per_byte,
           "nll_bits_per_byte": stats.nll_bits / len(data), "tokens_per_s": stats.tokens_per_second}
    print(f"{model:>8}: {row['nll_bits']:>10,.0f} nll bits -> {row['compressed_bits']:>10,} bits "
          f"({row['bits_per_byte']:.3f} bits/byte)", flush=True)
    return row


def table(rows: list[dict], name: str, size: int) -> str:
    lines = [f"Prediction = compression on the first {size:,} bytes of {name}", "",
             "| model | tokens | NLL bits | compressed bits | compressed / NLL | bits per byte |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['tokens']:,} | {r['nll_bits']:,.0f} | {r['compressed_bits']:,} | "
                     f"{r['compressed_bits'] / r['nll_bits']:.4f} | {r['bits_per_byte']:.3f} |")
    return "\n".join(lines)


def millions(model: str) -> str:
    """a model's size as a bar's second label line: counts only, or its parameters"""
    listing = describe(model)
    if listing.arithmetic == "classical":
        return "counts"
    return f"{listing.parameters / 1e6:,.0f}M" if listing.parameters else ""


def plot(rows: list[dict], path: Path, name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    top = max(r["compressed_bits"] for r in rows) * 1.05
    left.plot([0, top], [0, top], color="grey", lw=1, ls="--", label="y = x")
    for i, r in enumerate(rows):
        left.scatter(r["nll_bits"], r["compressed_bits"], s=40)
        below = i % 2 == 0  # neighbours' labels on opposite sides: the strongest models lie close together
        left.annotate(r["model"], (r["nll_bits"], r["compressed_bits"]), textcoords="offset points",
                      xytext=(6, -12) if below else (-6, 6), ha="left" if below else "right", fontsize=9)
    left.set_xlabel("model NLL, bits  (sum of -log2 p)")
    left.set_ylabel("compressed file, bits")
    left.set_title("prediction = compression")
    left.legend()
    labels = [f"{r['model']}\n{millions(r['model'])}" for r in rows]
    right.bar(labels, [r["bits_per_byte"] for r in rows], color="tab:blue")
    right.tick_params(axis="x", labelsize=8)
    right.set_xlabel("model (parameters)")
    for i, r in enumerate(rows):
        right.text(i, r["bits_per_byte"], f"{r['bits_per_byte']:.2f}", ha="center", va="bottom", fontsize=9)
    right.set_ylabel("bits per byte")
    right.set_title(f"better models, fewer bits ({name})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file", nargs="?", type=Path, default=DEFAULT_FILE)
    ap.add_argument("--bytes", type=int, default=8192, help="how much of the file (default 8 KB)")
    ap.add_argument("--models", default=",".join(LADDER))
    args = ap.parse_args()
    data = args.file.read_bytes()[: args.bytes]
    rows = [r for m in args.models.split(",") if (r := measure(m, data))]
    text = table(rows, args.file.name, len(data))
    print("\n" + text)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "ladder.md").write_text(text + "\n")
    plot(rows, OUT / "ladder.png", args.file.name)
    print(f"\nwrote {OUT / 'ladder.md'} and {OUT / 'ladder.png'}")
    write_comparison(data[:4096], "fast", "smollm2")
    write_samples(["fast", "smollm2"], prompt=b"Alice was beginning", seed=1, tokens=80)
    write_size_figure()


def write_comparison(data: bytes, first: str, second: str) -> None:
    """Where the bigger model saves its bits, token by token (the same page as explain --compare --html)."""
    try:
        explained = [explain(data, load_predictor(name)) for name in (first, second)]
    except ModelNotAvailable as exc:
        print(f"comparison skipped ({exc})")
        return
    path = OUT / f"compare-{first}-{second}.html"
    path.write_text(render_compare_html(compare(*explained)), encoding="utf-8")
    print(f"wrote {path}")


def write_samples(models: list[str], prompt: bytes, seed: int, tokens: int) -> None:
    """Each model's decoder fed the same random bits: a sample in its style, and what it cost."""
    lines = [f"# Samples: the decoder fed random bits (seed {seed})", "",
             f"`lmzip generate -m MODEL -n {tokens} --seed {seed} --prompt {prompt.decode()!r}`: decompressing "
             "random bits samples from the model. An integer model writes the same text on every machine.", ""]
    for name in models:
        try:
            sample = generate(load_predictor(name), tokens, seed=seed, prompt=prompt)
        except ModelNotAvailable as exc:
            print(f"{name} sample skipped ({exc})")
            continue
        text = (sample.prompt + sample.text).decode("utf-8", "replace")
        lines += [f"## {name}: {sample.bits:,.0f} bits of noise, {sample.bits / sample.tokens:.2f} a token", "",
                  "```text", text, "```", ""]
    (OUT / "generated.md").write_text("\n".join(lines))
    print(f"wrote {OUT / 'generated.md'}")


def write_size_figure() -> None:
    """Bits against parameters on whole files, lmzip's models beside the published points: the
    seed's point at scale. Redrawn from benchmarks/results/models.json (`make bench-models`
    measures it: whole files take a while)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import models  # benchmarks/models.py

    rows = json.loads((OUT / "models.json").read_text())
    models.figure(rows, OUT / "models.png")
    print(f"wrote {OUT / 'models.png'} (bits against parameters, from {OUT / 'models.json'})")


if __name__ == "__main__":
    main()
