"""The core's figures: coder overhead over the NLL, tokens/s both ways, peak memory.

Each row compresses and decompresses in fresh processes (the CLI) and checks
the exact bytes. Overhead = compressed bits / nll_bits - 1, split into the
fixed header and the rest (the coder's and the block framing).

    python benchmarks/measure_core.py [--rows tiny,fast32k,fast1m,smollm2,hf]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench import run_lmzip  # noqa: E402

EVAL = ROOT.parent / "shared" / "corpus" / "eval"


def tiny_model(directory: Path) -> Path:
    import torch

    from lmzip.models.float.gpt import GPT, GPTConfig, save_gpt
    from lmzip.tokenize import BPETokenizer

    torch.manual_seed(0)
    tok = BPETokenizer.from_file(ROOT / "lmzip" / "data" / "fast" / "tokenizer.json")
    (directory / "tokenizer.json").write_text(tok.to_str())
    save_gpt(GPT(GPTConfig(vocab_size=tok.vocab_size, context=256, n_layer=2, n_head=2, n_embd=64)), directory,
             {"bos_id": tok.bos_id})
    return directory


def smollm2_hf_dir() -> Path:
    from lmzip.models import load_predictor

    return load_predictor("smollm2", threads=1).directory


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default="tiny,fast32k,fast1m,smollm2,hf")
    args = ap.parse_args()
    alice = (EVAL / "canterbury" / "alice29.txt").read_bytes()
    dickens = (EVAL / "silesia" / "dickens").read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        rows = {
            "tiny": lambda: ("tiny seeded gpt (2x64)", str(tiny_model(Path(tmp))), alice[:32768], []),
            "fast32k": lambda: ("fast", "fast", alice[:32768], []),
            "fast1m": lambda: ("fast", "fast", dickens[: 1 << 20], []),
            "smollm2": lambda: ("smollm2", "smollm2", alice[:32768], []),
            "hf": lambda: ("HF dir (SmolLM2 via transformers)", str(smollm2_hf_dir()), alice[:4096], []),
        }
        print("| model | input | tokens | nll bytes | compressed | header | overhead | compress tok/s | "
              "decompress tok/s | peak RSS MiB |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for key in args.rows.split(","):
            label, model, data, extra = rows[key]()
            r = run_lmzip(model, data, extra_args=extra)
            nll_bytes = r["nll_bits"] / 8
            print(f"| {label} | {len(data):,} B | {r['tokens']:,} | {nll_bytes:,.1f} | {r['compressed_bytes']:,} | "
                  f"{r['header_bytes']} | {r['compressed_bytes'] - nll_bytes:+,.1f} B "
                  f"({8 * r['compressed_bytes'] / r['nll_bits'] - 1:+.3%}) | {r['tokens_per_s']:,.0f} | "
                  f"{r['decode_tokens_per_s']:,.0f} | {r['peak_rss_mib']:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
