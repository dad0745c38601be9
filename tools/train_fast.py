"""Train lmzip's built-in fast model (``--model fast``) from ../shared/corpus/train.

Reproducible: fixed seeds, fixed data order, a fixed number of steps. Only the
train/ half of the corpus is read; eval/ is never touched. Writes the weights,
tokenizer, training log and model card into lmzip/data/fast/.

    python tools/train_fast.py --steps 3600             # cosine schedule, ~1.5 h on 2 cores
    python tools/train_fast.py --init-from lmzip/data/fast --anneal --steps 300 --lr 1.2e-3
                                     # continue from a checkpoint, decaying the LR linearly to zero
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from lmzip.tokenize import read_tokens
from lmzip.models.float.gpt import GPT, GPTConfig, load_gpt, save_gpt
from lmzip.tokenize import BPETokenizer, train_bpe

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = ROOT.parent / "shared" / "corpus" / "train"
DEFAULT_OUT = ROOT / "lmzip" / "data" / "fast"
# gcide is half the corpus and mostly dictionary markup: cap its share.
CAPPED_BYTES = 12_000_000
HELD_OUT_FRACTION = 0.005


def read_corpus(corpus: Path) -> dict[str, bytes]:
    files = sorted(p for p in corpus.glob("*.txt"))
    if not files:
        raise SystemExit(f"no *.txt training files in {corpus}")
    if "eval" in corpus.resolve().parts:
        raise SystemExit("refusing to train on an eval/ directory")
    return {p.name: p.read_bytes() for p in files}


def tokenize_corpus(tok, corpus: dict[str, bytes]) -> dict[str, np.ndarray]:
    """The ids compression would see: the same piecewise tokenization as lmzip.api."""
    out = {}
    for name, data in corpus.items():
        out[name] = read_tokens(tok, io.BytesIO(data))[0].astype(np.uint16)
        print(f"  {name}: {len(data):,} bytes -> {len(out[name]):,} tokens", flush=True)
    return out


def split(tokens: dict[str, np.ndarray]):
    train, held = {}, {}
    for name, ids in tokens.items():
        cut = int(len(ids) * (1 - HELD_OUT_FRACTION))
        train[name], held[name] = ids[:cut], ids[cut:]
    return train, held


def batch_sampler(train: dict[str, np.ndarray], byte_sizes: dict[str, int], batch: int, T: int, seed: int):
    names = sorted(train)
    weights = np.array([min(byte_sizes[n], CAPPED_BYTES) for n in names], dtype=np.float64)
    weights /= weights.sum()
    rng = np.random.default_rng(seed)
    while True:
        which = rng.choice(len(names), size=batch, p=weights)
        rows = []
        for i in which:
            ids = train[names[i]]
            start = rng.integers(0, len(ids) - T - 1)
            rows.append(ids[start : start + T + 1].astype(np.int64))
        yield torch.from_numpy(np.stack(rows))


@torch.no_grad()
def held_out_bits_per_byte(model, held, byte_sizes_held, T: int) -> float:
    model.eval()
    total_bits, total_bytes = 0.0, 0
    for name, ids in held.items():
        ids = torch.from_numpy(ids.astype(np.int64))
        for start in range(0, len(ids) - 1, T):
            seg = ids[start : start + T + 1]
            if len(seg) < 2:
                continue
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = model(seg[None, :-1])
            nll = torch.nn.functional.cross_entropy(logits.float()[0], seg[1:], reduction="sum")
            total_bits += nll.item() / math.log(2)
        total_bytes += byte_sizes_held[name]
    model.train()
    return total_bits / total_bytes


def _last_logged_tokens(log_path: Path) -> int:
    rows = list(csv.reader(open(log_path))) if log_path.exists() else []
    return int(rows[-1][1]) if len(rows) > 1 else 0


def lr_at(step: int, steps: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--context", type=int, default=512)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--init-from", type=Path, help="start from this checkpoint (same tokenizer and shape)")
    ap.add_argument("--anneal", action="store_true",
                    help="linear LR decay from --lr to zero over --steps (after a checkpoint)")
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)

    corpus = read_corpus(args.corpus)
    if args.init_from:
        tok = BPETokenizer.from_file(args.init_from / "tokenizer.json")
        if args.init_from.resolve() != args.out.resolve():
            (args.out / "tokenizer.json").write_text(tok.to_str())
    else:
        print("training tokenizer", flush=True)
        sample = [data[: 3_000_000].decode("utf-8", "replace") for data in corpus.values()]
        tok = train_bpe(sample, args.vocab)
        (args.out / "tokenizer.json").write_text(tok.to_str())
    print("tokenizing corpus", flush=True)
    train, held = split(tokenize_corpus(tok, corpus))
    byte_sizes = {n: len(d) for n, d in corpus.items()}
    held_bytes = {n: len(tok.decode(held[n])) for n in held}

    cfg = GPTConfig(vocab_size=tok.vocab_size, context=args.context, n_layer=args.layers,
                    n_head=args.heads, n_embd=args.width)
    model = GPT(cfg)
    previous = {}
    if args.init_from:
        loaded = load_gpt(args.init_from)
        if loaded.cfg != cfg:
            raise SystemExit(f"checkpoint shape {loaded.cfg} differs from {cfg}")
        model.load_state_dict(loaded.state_dict())
        previous = json.loads((args.init_from / "config.json").read_text())
    print(f"model: {model.n_params():,} parameters", flush=True)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95))
    # Most steps use half-length sequences (more tokens per second); the last
    # quarter trains the full context so every position embedding is learned.
    seed = args.seed + int(previous.get("trained_steps", 0))  # a continuation sees new batches
    short_batches = batch_sampler(train, byte_sizes, 2 * args.batch, args.context // 2, seed)
    long_batches = batch_sampler(train, byte_sizes, args.batch, args.context, seed + 1)
    long_from = 0 if args.anneal else int(args.steps * 0.75)
    log_path = args.out / "train_log.csv"
    log_file = open(log_path, "a" if args.init_from else "w", newline="")
    log = csv.writer(log_file)
    if not args.init_from:
        log.writerow(["step", "tokens", "seconds", "train_loss_nats", "held_out_bpb"])
    step_offset = int(previous.get("trained_steps", 0))
    token_offset = _last_logged_tokens(log_path) if args.init_from else 0
    history = previous.get("history", []) + ([{k: previous[k] for k in ("trained_steps", "held_out_bits_per_byte")
                                                if k in previous}] if previous else [])
    extra = {"bos_id": tok.bos_id, "trained_steps": 0, "history": history,
             "command": "train_fast.py " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
                                                    if v not in (None, False))}
    t0, tokens_seen, smooth = time.time(), 0, None
    for step in range(args.steps):
        for group in opt.param_groups:
            group["lr"] = (args.lr * min(1.0, (step + 1) / 20) * (1 - step / args.steps) if args.anneal
                           else lr_at(step, args.steps, args.lr, warmup=200))
        xy = next(long_batches if step >= long_from else short_batches)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(xy[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.float().view(-1, cfg.vocab_size), xy[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        tokens_seen += xy[:, 1:].numel()
        smooth = loss.item() if smooth is None else 0.98 * smooth + 0.02 * loss.item()
        last = step == args.steps - 1
        bpb = ""
        if (step + 1) % args.eval_every == 0 or last:
            bpb = f"{held_out_bits_per_byte(model, held, held_bytes, args.context):.4f}"
            extra["trained_steps"] = step_offset + step + 1
            extra["held_out_bits_per_byte"] = float(bpb)
            save_gpt(model, args.out, extra)
        if step % 50 == 0 or bpb:
            elapsed = time.time() - t0
            log.writerow([step_offset + step + 1, token_offset + tokens_seen, f"{elapsed:.1f}", f"{smooth:.4f}", bpb])
            log_file.flush()
            print(f"step {step + 1}/{args.steps} loss {smooth:.3f} {tokens_seen / elapsed:,.0f} tok/s"
                  f" {elapsed / 60:.1f} min {('held-out ' + bpb + ' bpb') if bpb else ''}", flush=True)
    summary = {"parameters": model.n_params(), "steps": args.steps, "tokens": tokens_seen,
               "seconds": round(time.time() - t0), "config": vars(cfg),
               "held_out_bits_per_byte": extra.get("held_out_bits_per_byte"), "args": {k: str(v) for k, v in vars(args).items()}}
    (args.out / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
