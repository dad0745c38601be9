"""smollm2 against its own GGUF rewritten to Q8_0 and F16: the derivation does not depend on how a
GGUF stores its weights.

    python benchmarks/requantized.py      # make bench-requantized

SmolLM2's Q4_1 GGUF is rewritten by tools/requantize_gguf.py (dequantized, quantized again by the
`gguf` package) and given by path (``--model PATH.gguf``, converted into a temporary cache); each
codes the first 32 KB of five English eval texts as a default run does, and alice29's file of each
is decompressed back. The original Q4_1 file given by path is a row too: the derivation's own
change, apart from the weight types. A model given by path names its GGUF in the header (name,
size, SHA-256: a decoder without it says which file it needs), where `smollm2` has a compact
header, so the table compares the coded bits without the header, and gives the headers apart.
Writes benchmarks/results/requantized.md.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from lmzip import api  # noqa: E402
from lmzip.models import load_predictor  # noqa: E402
from lmzip.models.gguf.smollm2 import find_gguf  # noqa: E402
from requantize_gguf import requantize  # noqa: E402

EVAL = ROOT.parent / "shared" / "corpus" / "eval"
TEXTS = ["canterbury/alice29.txt", "canterbury/asyoulik.txt", "calgary/book1", "calgary/paper1", "calgary/paper2"]
SIZE = 32768


def bits(predictor) -> tuple[list[float], int, bool]:
    """the coded bits/byte on each text (the file without its header), the header's bytes, and
    whether alice29's file decodes to its bytes."""
    out, header, exact = [], 0, None
    for text in TEXTS:
        data = (EVAL / text).read_bytes()[:SIZE]
        sink = io.BytesIO()
        stats = api.compress_stream(io.BytesIO(data), sink, predictor)
        header = stats.extra["header_bytes"]
        out.append(8 * (stats.compressed_bytes - header) / len(data))
        if exact is None:
            exact = api.decompress(sink.getvalue()) == data
        print(f"{text:<26} {out[-1]:.4f}", file=sys.stderr)
    return out, header, exact


def main() -> None:
    rows = [("smollm2 (Q4_1, built in)", *bits(load_predictor("smollm2", adapt=False))),
            (f"--model {find_gguf().name} (the same file)", *bits(load_predictor(str(find_gguf()))))]
    cache = os.environ.get("LMZIP_CACHE")
    with tempfile.TemporaryDirectory() as folder:
        os.environ["LMZIP_CACHE"] = str(Path(folder) / "cache")  # the rewrites' conversions: not kept
        try:
            for kind in ("Q8_0", "F16"):
                path = Path(folder) / f"SmolLM2-135M-Instruct.{kind}.gguf"
                requantize(find_gguf(), path, kind)
                rows.append((f"--model {path.name}", *bits(load_predictor(str(path)))))
        finally:  # the user's cache again
            if cache is None:
                os.environ.pop("LMZIP_CACHE", None)
            else:
                os.environ["LMZIP_CACHE"] = cache
    reference = rows[0][1]
    lines = ["# smollm2 against its GGUF rewritten to other weight types (`make bench-requantized`)", "",
             f"Coded bits/byte of a default run's file (its header left out) on the first {SIZE:,} bytes of "
             "each text; the change against smollm2 in the mean; each file's header; whether alice29's file "
             "decodes back. smollm2's compact header is one preset number; a GGUF given by path is named in "
             "full (name, size, SHA-256).", "",
             "| model | " + " | ".join(Path(t).name for t in TEXTS) + " | mean | change | header | round trip |",
             "|---|" + "---|" * (len(TEXTS) + 4)]
    for name, values, header, exact in rows:
        mean, base = sum(values) / len(values), sum(reference) / len(reference)
        lines.append(f"| {name} | " + " | ".join(f"{v:.4f}" for v in values)
                     + f" | {mean:.4f} | {100 * (mean / base - 1):+.2f} % | {header} B | {'yes' if exact else 'NO'} |")
    (ROOT / "benchmarks" / "results" / "requantized.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
