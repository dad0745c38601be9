"""Build the portable (integer-exact) fast model and measure what it costs.

Quantizes lmzip/data/fast into lmzip/data/fast-portable: int8 weights with a
scale per output column, fixed-point embeddings and gains, value scales per
channel from calibration tokens of the training corpus (never eval), and the
stored exp table. Then compares bits per byte of the float and the integer
model on the held-out tail of each training file, chunk by chunk as
compression codes them (start token, then the chunk).

    python tools/make_portable.py [--calibration-rows 32] [--eval-chunks 40]
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lmzip.tokenize import read_tokens  # noqa: E402
from lmzip.models.float.gpt import load_gpt  # noqa: E402
from lmzip.models.integer.gpt import IntGPT  # noqa: E402
from lmzip.models.integer.ops import NumpyOps, TorchOps  # noqa: E402
from lmzip.models.gguf.quantize import convert_gpt_dir  # noqa: E402
from lmzip.tokenize import load_tokenizer  # noqa: E402

FAST = ROOT / "lmzip" / "data" / "fast"
PORTABLE = ROOT / "lmzip" / "data" / "fast-portable"
CORPUS = ROOT.parent / "shared" / "corpus" / "train"
HELD_OUT_FRACTION = 0.005  # the tail train_fast.py held out


def corpus_ids(tok) -> dict[str, np.ndarray]:
    return {p.name: read_tokens(tok, io.BytesIO(p.read_bytes()))[0] for p in sorted(CORPUS.glob("*.txt"))}


def chunks(ids: np.ndarray, L: int, bos: int, limit: int) -> np.ndarray:
    rows = [np.concatenate([[bos], ids[i : i + L - 1]]) for i in range(0, len(ids) - L, L - 1)][:limit]
    return np.stack(rows).astype(np.int64)


def float_bits(model, rows: np.ndarray) -> float:
    with torch.no_grad():
        logits = model(torch.from_numpy(rows[:, :-1]))
        return torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), torch.from_numpy(rows[:, 1:]).reshape(-1),
            reduction="sum").item() / math.log(2)


def int_bits(model: IntGPT, rows: np.ndarray) -> float:
    total = 0.0
    for row in rows:
        freqs = model.forward(row[None, :-1])[0]
        p = freqs[np.arange(len(row) - 1), row[1:]] / freqs.sum(axis=1)
        total += -np.log2(p).sum()
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calibration-rows", type=int, default=32)
    ap.add_argument("--eval-chunks", type=int, default=4, help="held-out chunks per training file")
    ap.add_argument("--backend", default="torch", choices=["torch", "numpy"])
    ap.add_argument("--out", type=Path, default=PORTABLE)
    args = ap.parse_args()
    torch.manual_seed(0)
    config = json.loads((FAST / "config.json").read_text())
    model = load_gpt(FAST)
    tok = load_tokenizer(FAST, config, model.cfg.vocab_size)
    L, bos = model.cfg.context, tok.bos_id
    ids = corpus_ids(tok)
    rng = np.random.default_rng(0)
    calibration = []
    for _ in range(args.calibration_rows):
        train = ids[sorted(ids)[rng.integers(len(ids))]]
        train = train[: int(len(train) * (1 - HELD_OUT_FRACTION))]
        start = int(rng.integers(0, len(train) - L))
        calibration.append(np.concatenate([[bos], train[start : start + L - 1]]))
    weights = convert_gpt_dir(FAST, args.out, np.stack(calibration).astype(np.int64),
                              note=f"fast (trained_steps {config['trained_steps']}), {args.calibration_rows} "
                              f"calibration rows of {L} tokens from the training corpus")
    meta = json.loads((args.out / "config.json").read_text())
    ops = TorchOps() if args.backend == "torch" else NumpyOps()
    int_model = IntGPT(weights, meta, ops)
    print("| file | chunks | float bits/byte | integer bits/byte | change |\n|---|---|---|---|---|")
    totals = np.zeros(3)
    for name, file_ids in ids.items():
        held = file_ids[int(len(file_ids) * (1 - HELD_OUT_FRACTION)) :]
        rows = chunks(held, L, bos, args.eval_chunks)
        n_bytes = sum(len(tok.decode(r[1:])) for r in rows)
        fb, ib = float_bits(model, rows), int_bits(int_model, rows)
        totals += (fb, ib, n_bytes)
        print(f"| {name} | {len(rows)} | {fb / n_bytes:.4f} | {ib / n_bytes:.4f} | {ib / fb - 1:+.2%} |", flush=True)
    print(f"| all | | {totals[0] / totals[2]:.4f} | {totals[1] / totals[2]:.4f} | {totals[1] / totals[0] - 1:+.2%} |")


if __name__ == "__main__":
    main()
