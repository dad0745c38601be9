"""Where the integer SmolLM2's bits go: the float model with one of the integer model's roundings at
a time.

    python benchmarks/integer_ablation.py      # make bench-ablation

The integer smollm2 codes ~1 % more bits than the float one with the same GGUF weights
(benchmarks/results/smollm2-integer-*.md). Its roundings are of three kinds: the weights, re-rounded
from the GGUF's Q4_1 blocks to int8 with one scale per output column; the activations entering each
projection, int8 with one scale per row (after each norm, the attention's output, the MLP's hidden
row, the head's input); and the attention's queries, keys and values, int8 with one scale per head
and position (the KV cache). Here the float model (transformers, float32, the same dequantized
weights) gets each kind alone, as fake quantization (rounded, then scaled back to float), and all of
them together; the rest of the gap to the integer model is its fixed point (residual, tables).
Each text's first 32 KB in chunks of 2,048 tokens, each chunk after SmolLM2's start token, as lmzip
codes them. Writes benchmarks/results/integer-ablation.md: what to make finer first.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from lmzip.models.gguf.files import file_sha256  # noqa: E402
from lmzip.models.gguf.smollm2 import START_TOKEN, converted_dir, find_gguf  # noqa: E402

EVAL = ROOT.parent / "shared" / "corpus" / "eval"
TEXTS = ["canterbury/alice29.txt", "calgary/book1", "calgary/paper1"]
SIZE, CHUNK = 32768, 2048
INT8, INT16 = 127.0, 32767.0
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def rounded(x: torch.Tensor, width: int | None = None, top: float = INT8) -> torch.Tensor:
    """x rounded to integers in [-top, top] (int8's 127 unless given) with one scale per row of its
    last dimension (rows of ``width`` if given: one scale per attention head), scaled back."""
    shape = x.shape
    if width:
        x = x.reshape(*shape[:-1], shape[-1] // width, width)
    scale = x.abs().amax(-1, keepdim=True).clamp_min(1e-30) / top
    return (torch.round(x / scale) * scale).reshape(shape)


def round_weights(model) -> None:
    """Every projection's and the head's weights to int8 columns (one scale per output)."""
    with torch.no_grad():
        for name, module in model.named_modules():
            if name.endswith(PROJECTIONS) or name == "lm_head":
                if name == "lm_head":  # tied to the embedding, which the integer model keeps apart
                    module.weight = torch.nn.Parameter(module.weight.detach().clone())
                module.weight.copy_(rounded(module.weight))


def move_gains(model, alpha: float) -> None:
    """Each layer's two norm gains, |g|^alpha of them moved into the projections the norm feeds (q/k/v,
    gate/up): the same function in float, but the rows rounded after the norm lose their large
    channels (SmoothQuant's migration, with the gain as the only statistic: no data needed)."""
    with torch.no_grad():
        for layer in model.model.layers:
            for norm, projections in ((layer.input_layernorm, ("q_proj", "k_proj", "v_proj")),
                                      (layer.post_attention_layernorm, ("gate_proj", "up_proj"))):
                moved = norm.weight.abs().clamp_min(1e-6) ** alpha
                norm.weight.div_(moved)
                for name in projections:
                    module = getattr(layer.self_attn if name[0] in "qkv" else layer.mlp, name)
                    module.weight.mul_(moved)


@contextlib.contextmanager
def rounded_inputs(model, which: tuple[str, ...], top: float = INT8):
    """The inputs of the named projections (and "lm_head") rounded to int8 rows (int16: top=32767)."""
    hooks = [module.register_forward_pre_hook(lambda _, args: (rounded(args[0], top=top),))
             for name, module in model.named_modules() if name.endswith(which)]
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()


@contextlib.contextmanager
def rounded_heads(model):
    """Queries and keys after RoPE, and values, to int8 per head and position (the integer model's KV
    cache and queries)."""
    from transformers.models.llama import modeling_llama

    original = modeling_llama.apply_rotary_pos_emb

    def apply(q, k, cos, sin, *args, **kwargs):
        q, k = original(q, k, cos, sin, *args, **kwargs)
        return rounded(q), rounded(k)

    head_dim = model.config.head_dim
    hooks = [module.register_forward_hook(lambda _, __, out: rounded(out, head_dim))
             for name, module in model.named_modules() if name.endswith("v_proj")]
    modeling_llama.apply_rotary_pos_emb = apply
    try:
        yield
    finally:
        modeling_llama.apply_rotary_pos_emb = original
        for hook in hooks:
            hook.remove()


def bits_per_byte(model, chunks: list[torch.Tensor], n_bytes: int) -> float:
    """The model's NLL of every chunk's tokens after the start token, in bits per byte of text."""
    total = 0.0
    with torch.no_grad():
        for ids in chunks:
            logits = model(ids[None, :-1]).logits[0].float()
            total += torch.nn.functional.cross_entropy(logits, ids[1:], reduction="sum").item()
    return total / math.log(2) / n_bytes


def main() -> None:
    from transformers import LlamaForCausalLM

    from lmzip.models.float.hf import quiet_transformers
    from lmzip.tokenize import BPETokenizer

    torch.manual_seed(0)
    gguf = find_gguf()
    directory = converted_dir(gguf, file_sha256(gguf))  # the float smollm2's (smollm2-float)
    tokenizer = BPETokenizer.from_file(directory / "tokenizer.json")
    start = json.loads((directory / "tokenizer.json").read_text())["model"]["vocab"][START_TOKEN]
    texts = {}
    for name in TEXTS:
        data = (EVAL / name).read_bytes()[:SIZE]
        ids = torch.tensor(tokenizer.encode(data).astype("int64"))
        texts[name] = ([torch.cat([torch.tensor([start]), ids[i:i + CHUNK]]) for i in range(0, len(ids), CHUNK)],
                       len(data))

    def fresh():
        with quiet_transformers():
            return LlamaForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()

    everything = PROJECTIONS + ("lm_head",)
    normed = ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj")

    def nothing(model):
        return contextlib.nullcontext()

    def moved(alpha):  # the gains moved first, then the weights rounded
        return lambda model: (move_gains(model, alpha), round_weights(model))

    every_rounding = lambda m: _both(rounded_inputs(m, everything), rounded_heads(m))  # noqa: E731
    variants = [  # (label, what is done to the weights, the rounding while it runs)
        ("float (the GGUF's weights, dequantized)", None, nothing),
        ("weights: int8 columns", round_weights, nothing),
        ("inputs of q/k/v and gate/up (after each norm): int8 rows", None, lambda m: rounded_inputs(m, normed)),
        ("input of o (the attention's output): int8 rows", None, lambda m: rounded_inputs(m, ("o_proj",))),
        ("input of down (the MLP's hidden row): int8 rows", None, lambda m: rounded_inputs(m, ("down_proj",))),
        ("input of the head: int8 rows", None, lambda m: rounded_inputs(m, ("lm_head",))),
        ("queries, keys, values: int8 per head and position", None, rounded_heads),
        ("all of the above", round_weights, every_rounding),
    ]
    for alpha in (0.5, 1.0):  # the norm gains moved into the weights, the weights rounded after
        variants += [(f"gains^{alpha} moved: weights and the rows after each norm int8", moved(alpha),
                      lambda m: rounded_inputs(m, normed))]
    finer = normed + ("down_proj", "lm_head")
    variants += [("all, but the rows after each norm, the MLP's hidden row and the head's input int16", round_weights,
                  lambda m: _both(_both(rounded_inputs(m, finer, INT16), rounded_inputs(m, ("o_proj",))),
                                  rounded_heads(m)))]
    rows = []
    for label, prepare, rounding in variants:
        model = fresh()
        if prepare:
            prepare(model)
        begin = time.perf_counter()
        with rounding(model):
            values = [bits_per_byte(model, *texts[name]) for name in TEXTS]
        rows.append((label, values))
        print(f"{label:<62} " + " ".join(f"{v:.4f}" for v in values) + f"  ({time.perf_counter() - begin:.0f} s)",
              file=sys.stderr)
    write(rows)


@contextlib.contextmanager
def _both(first, second):
    with first, second:
        yield


def write(rows: list[tuple[str, list[float]]]) -> None:
    base = sum(rows[0][1]) / len(TEXTS)
    lines = ["# Where the integer SmolLM2's bits go (`make bench-ablation`)", "",
             f"The float SmolLM2 (transformers, float32, the GGUF's dequantized weights) with one of the integer "
             f"model's roundings at a time, as fake quantization: the NLL in bits per byte of the first "
             f"{SIZE:,} bytes of each text, {CHUNK:,}-token chunks after the start token, and the mean's change "
             "against float. The integer model's own figures: benchmarks/results/smollm2-integer-*.md.", "",
             "| rounding | " + " | ".join(Path(t).name for t in TEXTS) + " | mean | change |",
             "|---|" + "---|" * (len(TEXTS) + 2)]
    for label, values in rows:
        mean = sum(values) / len(values)
        lines.append(f"| {label} | " + " | ".join(f"{v:.4f}" for v in values)
                     + f" | {mean:.4f} | {100 * (mean / base - 1):+.2f} % |")
    text = "\n".join(lines) + "\n"
    (ROOT / "benchmarks" / "results" / "integer-ablation.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
