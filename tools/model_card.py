"""Write the fast model's card (README.md) and loss curve (loss.png) from its training log.

    python tools/model_card.py [lmzip/data/fast]
"""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main():
    directory = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "lmzip" / "data" / "fast"
    config = json.loads((directory / "config.json").read_text())
    rows = list(csv.DictReader(open(directory / "train_log.csv")))
    tokens = [int(r["tokens"]) for r in rows]
    loss_bits = [float(r["train_loss_nats"]) / math.log(2) for r in rows]
    held = [(int(r["tokens"]), float(r["held_out_bpb"])) for r in rows if r["held_out_bpb"]]

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot([t / 1e6 for t in tokens], loss_bits, label="training loss, bits/token (smoothed)")
    ax.set_xlabel("training tokens (millions)")
    ax.set_ylabel("bits per token")
    ax2 = ax.twinx()
    ax2.plot([t / 1e6 for t, _ in held], [b for _, b in held], "o-", color="tab:red", label="held-out bits/byte")
    ax2.set_ylabel("held-out bits per byte", color="tab:red")
    ax.set_title("lmzip fast model: training curve")
    fig.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(directory / "loss.png", dpi=110)

    from lmzip.models.float.gpt import load_gpt

    n_params = load_gpt(directory).n_params()
    size = (directory / "model.safetensors").stat().st_size
    card = f"""# lmzip `fast` model

A decoder-only transformer written in this project (`lmzip/models/float/gpt.py`): {config['n_layer']} layers,
width {config['n_embd']}, {config['n_head']} heads, context {config['context']} tokens, RMSNorm, learned positions,
ReLU² MLP, tied embeddings, no biases. **{n_params:,} parameters**; weights stored as float32 safetensors
({size / 1e6:.1f} MB). Tokenizer: byte-level BPE with {config['vocab_size']:,} tokens (`tokenizer.json`), trained by
the same script; any bytes are coded (invalid UTF-8 falls back to single-byte tokens).

## Data
Only `../shared/corpus/train/` (python-docs, sotu, email-ham, shakespeare, milton, gcide, foldoc, jargon,
fortunes); gcide's share is capped at 12 MB-equivalent. The last 0.5 % of each file is held out. The eval
corpus (Canterbury, Calgary, Silesia) is never read by training.

## Training
`tools/train_fast.py` (seeded, reproducible): AdamW (β = 0.9, 0.95, weight decay 0.1), bf16 autocast
on CPU, batches of 8,192 tokens (32 × 256, then 16 × 512 for the last quarter so every position is trained).
Runs: {'; '.join(f"{h.get('trained_steps')} steps → {h.get('held_out_bits_per_byte')} held-out bpb" for h in config.get('history', []))
        or 'one run'}; final: **{config['trained_steps']} steps, {tokens[-1] / 1e6:.1f} M tokens**, held-out
**{config.get('held_out_bits_per_byte')} bits/byte**. Last command: `{config.get('command', '')}`.

![loss curve](loss.png)
"""
    notes = directory / "train_notes.md"
    if notes.exists():
        card += "\n" + notes.read_text()
    (directory / "README.md").write_text(card)
    print(card)


if __name__ == "__main__":
    main()
