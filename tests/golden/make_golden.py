"""Make the golden files in this folder: small .lmz files whose originals are slices of the eval
corpus, with the originals' SHA-256 (the originals themselves stay in ../shared). Other machines run
tests/test_golden.py on them: a file made here must decode there, bit for bit.

    .venv/bin/python tests/golden/make_golden.py [../shared/corpus/eval]
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# (file name, model options, corpus file, bytes): exact models only, whose files decode anywhere.
# Files already here are kept (portable-fast was written by lmzip 0.3.0, as "fast-portable"); the
# integer SmolLM2's golden file is mixed, which decodes its LM path too. The mixed ones were remade
# by 0.8.0, whose mixing recipe (cm2) replaced 0.6-0.7's (cm1).
GOLDEN = [("portable-fast.alice29-2k.lmz", ["--model", "fast"], "canterbury/alice29.txt", 2048),
          ("order2.paper2-2k.lmz", ["--model", "order2"], "calgary/paper2", 2048),
          ("fast.paper1-4k.lmz", ["--model", "fast"], "calgary/paper1", 4096),
          ("fast.mixed.news-4k.lmz", ["--model", "fast"], "calgary/news", 4096),  # mixed (cm2)
          ("smollm2.mixed.paper1-1k.lmz", ["--model", "smollm2", "--chunk", "64", "--streams", "4"],
           "calgary/paper1", 1024),  # mixed (cm2); short chunks, for the history to count and a quick test
          ("fast.carried.book2-4k.lmz", ["--model", "fast", "--chunk", "64", "--streams", "4"],
           "calgary/book2", 4096),  # mixing's history (cm2) carried across its blocks of 4 x 64 tokens
          # default runs, with lmzip 0.11.0's compact header (format version 3)
          ("fast.compact.asyoulik-2k.lmz", ["--model", "fast"], "canterbury/asyoulik.txt", 2048),
          ("smollm2.compact.alice29-600.lmz", ["--model", "smollm2"], "canterbury/alice29.txt", 600),
          # the integer llamas' recipe 2 (wide rows, lmzip 0.14.0): a default run (compact header,
          # preset 7) and a mixed one of short chunks (full header, "r=2")
          ("smollm2.recipe2.compact.alice29-600.lmz", ["--model", "smollm2"], "canterbury/alice29.txt", 600),
          ("smollm2.recipe2.mixed.paper1-1k.lmz", ["--model", "smollm2", "--chunk", "64", "--streams", "4"],
           "calgary/paper1", 1024),
          # leads (lmzip 0.15.0): a default run (compact header, preset 14; one chunk) and a mixed one
          # of short chunks whose streams read their block's first 32 tokens (full header, "l=32")
          ("smollm2.lead.compact.alice29-600.lmz", ["--model", "smollm2"], "canterbury/alice29.txt", 600),
          ("smollm2.lead.mixed.paper1-1k.lmz", ["--model", "smollm2", "--chunk", "64", "--streams", "4", "--lead",
                                                "32"], "calgary/paper1", 1024),
          # a head that learns while it codes (lmzip 0.16.0, integer/adapt.py recipe 1, "a=1"): SmolLM2
          # in short chunks with a lead, and the fast model
          ("smollm2.adapt.mixed.paper1-1k.lmz", ["--model", "smollm2", "--chunk", "64", "--streams", "4", "--lead",
                                                 "32", "--adapt"], "calgary/paper1", 1024),
          ("fast.adapt.asyoulik-2k.lmz", ["--model", "fast", "--adapt"], "canterbury/asyoulik.txt", 2048),
          # the default from 0.16.0, which adapts: compact header, preset 21
          ("smollm2.adapt.compact.alice29-600.lmz", ["--model", "smollm2"], "canterbury/alice29.txt", 600)]


def main() -> None:
    corpus = Path(sys.argv[1] if len(sys.argv) > 1 else HERE.parents[2] / "shared/corpus/eval")
    sums = []
    for name, options, source, size in GOLDEN:
        data = (corpus / source).read_bytes()[:size]
        sums.append(f"{hashlib.sha256(data).hexdigest()}  {name}")
        if (HERE / name).exists():
            continue
        packed = subprocess.run([sys.executable, "-m", "lmzip.cli", "compress", "-c", "-q", *options, "-"],
                                input=data, capture_output=True, check=True).stdout
        (HERE / name).write_bytes(packed)
        print(f"{name}: {size} bytes of {source} -> {len(packed)} bytes")
    (HERE / "SHA256SUMS").write_text("\n".join(sums) + "\n")


if __name__ == "__main__":
    main()
