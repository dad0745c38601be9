"""The picture of the argument: compressed size = area under the online loss curve.

Compresses FILE with ``--online`` (learning from a seeded init while coding),
plots the coded bits per token against tokens seen with the area shaded, and
puts the description lengths beside it:

- gzip / xz / zstd: their file sizes;
- online from scratch: compressed size + lmzip's own source (xz) — no weights are sent;
- frozen fast model: compressed size + its weights + the code (the "adjusted" rate).

    python benchmarks/online_curve.py [FILE] [--bytes 65536]
"""

from __future__ import annotations

import argparse
import gzip
import io
import lzma
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import lmzip  # noqa: E402
from lmzip import api  # noqa: E402
from lmzip.models import load_predictor  # noqa: E402
from lmzip.models.float.gpt_predictor import FAST_DIR  # noqa: E402
from lmzip.models.float.online import code_bytes  # noqa: E402

DEFAULT_FILE = ROOT.parent / "shared" / "corpus" / "eval" / "silesia" / "dickens"
OUT = ROOT / "benchmarks" / "results"


def online_run(data: bytes):
    predictor = load_predictor("online-scratch")
    step_bits: list[tuple[int, float]] = []

    def record(t, symbols, probs, bits, carriers):
        step_bits.append((len(symbols), float(np.sum(bits))))

    packed = io.BytesIO()
    stats = api.compress_stream(io.BytesIO(data), packed, predictor, record=record)
    assert lmzip.decompress(packed.getvalue()) == data, "online round trip failed"
    return stats, step_bits


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file", nargs="?", type=Path, default=DEFAULT_FILE)
    ap.add_argument("--bytes", type=int, default=65536)
    args = ap.parse_args()
    data = args.file.read_bytes()[: args.bytes]
    stats, step_bits = online_run(data)
    code = code_bytes()
    frozen = api.compress_stream(io.BytesIO(data), io.BytesIO(), "fast")
    weights = (FAST_DIR / "model.safetensors").stat().st_size
    try:
        import zstandard

        zstd = len(zstandard.ZstdCompressor(level=19).compress(data))
    except ImportError:
        zstd = None
    rows = [("gzip -9", len(gzip.compress(data, 9))), ("xz -9e", len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))),
            ("zstd -19", zstd), ("online from scratch (file)", stats.compressed_bytes),
            ("online from scratch + code", stats.compressed_bytes + code),
            ("frozen fast (file)", frozen.compressed_bytes),
            ("frozen fast + weights + code", frozen.compressed_bytes + weights + code)]
    lines = [f"Description length of the first {len(data):,} bytes of {args.file.name}", "",
             "| what | bytes | bits per byte |", "|---|---|---|"]
    lines += [f"| {name} | {size:,} | {8 * size / len(data):.3f} |" for name, size in rows if size]
    lines += ["", f"online: nll {stats.nll_bits / 8:,.0f} bytes = compressed payload "
              f"{stats.compressed_bytes - stats.extra['header_bytes']:,} bytes; {stats.tokens_per_second:,.0f} tokens/s"]
    text = "\n".join(lines)
    print(text)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.array([c for c, _ in step_bits], dtype=np.float64)
    bits = np.array([b for _, b in step_bits])
    seen = np.cumsum(counts)
    window = max(1, len(bits) // 100)
    per_token = np.convolve(bits, np.ones(window), "valid") / np.convolve(counts, np.ones(window), "valid")
    x = seen[window - 1 :]
    fig, (ax, tab) = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [3, 2]})
    ax.plot(x, per_token, color="tab:blue")
    ax.fill_between(x, per_token, alpha=0.3, color="tab:blue",
                    label=f"area = {stats.nll_bits / 8:,.0f} bytes = the compressed file")
    ax.set_xlabel("tokens seen")
    ax.set_ylabel("bits per token (coded, before learning from it)")
    ax.set_title(f"online learning from scratch on {args.file.name}")
    ax.legend()
    tab.axis("off")
    cells = [[name, f"{size:,}", f"{8 * size / len(data):.3f}"] for name, size in rows if size]
    table = tab.table(cellText=cells, colLabels=["description", "bytes", "bits/byte"], loc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    table.scale(1, 1.5)
    fig.tight_layout()
    OUT.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT / "online_curve.png", dpi=110)
    (OUT / "online_curve.md").write_text(text + "\n")
    print(f"wrote {OUT / 'online_curve.png'}")


if __name__ == "__main__":
    main()
