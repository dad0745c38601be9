"""Write docs/prediction-is-compression.ipynb from the cells below, and run it so that GitHub shows its
outputs and figures (``make notebook``). tests/test_notebook.py runs it again, headless."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "docs" / "prediction-is-compression.ipynb"

CELLS = [
    ("md", """# Prediction is compression

A compressor that knows what comes next needs few bits to say it. This notebook walks through lmzip,
a lossless compressor whose predictor is a language model, one stage at a time:

1. bytes become tokens;
2. a model gives every possible next token a probability;
3. a range coder narrows an interval by each token's probability;
4. so the compressed size is the sum of −log2 p over the tokens, plus a few bytes;
5. better predictors make smaller files (the ladder);
6. a model that learns while it codes sends no weights: its file is the area under its loss curve;
7. and run backwards on random bits, the decoder writes text: a compressor is a generative model.

It uses lmzip's small `fast` model, which runs in seconds on a laptop CPU. Set `BIG = True` to add the
default model, SmolLM2-135M (integer-exact; a minute or two more)."""),
    ("code", """import io
from fractions import Fraction
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import lmzip
from lmzip import api, engine
from lmzip.explain import explain
from lmzip.generate import generate, noise
from lmzip.models import load_predictor

BIG = False  # True: also the default model, smollm2
SAMPLE = Path("../demo/sample.txt")  # the repository's sample; any text will do
TEXT = SAMPLE.read_bytes()[:700] if SAMPLE.exists() else b"A compressor works the same way. " * 40
fast = load_predictor("fast")
print(len(TEXT), "bytes:", TEXT[:200].decode())"""),
    ("md", """## 1. Bytes → tokens

The tokenizer cuts the bytes into pieces the model knows. Any bytes at all can be cut: what is not in
its vocabulary falls back to single bytes, so compression is lossless for every input."""),
    ("code", """ids = fast.tokenizer.encode(TEXT)
pieces = [fast.tokenizer.decode([int(i)]) for i in ids]
print(f"{len(TEXT)} bytes -> {len(ids)} tokens, {len(TEXT) / len(ids):.2f} bytes a token")
print(" | ".join(p.decode("utf-8", "replace") for p in pieces[:40]))
assert b"".join(pieces) == TEXT  # the pieces spell the text byte for byte"""),
    ("md", """## 2. A model's probabilities

Before each token the model gives a probability to every token of its vocabulary. `explain` runs the
very loop that compresses and records, for each token, its probability and the model's top guesses."""),
    ("code", """result = explain(TEXT, fast, mix=False)  # the model alone (lmzip also mixes in context models)
for t in result.tokens[10:18]:
    guesses = ", ".join(f"{g.decode('utf-8', 'replace')!r} {p:.2f}" for g, p in t.top[:3])
    print(f"{t.text.decode('utf-8', 'replace')!r:>14}: p = {t.probability:.3f} = {t.bits:5.2f} bits   (top guesses: {guesses})")"""),
    ("md", """## 3. The range coder narrows an interval

Start with the interval [0, 1). For each token, keep the part of the interval that the token's
probability covers: the width shrinks by p. After n tokens the width is the product of their
probabilities, and about −log2(width) bits name a number inside it. Below, the first 20 tokens,
computed exactly (fractions) from the integer frequencies lmzip's coder uses."""),
    ("code", """rows = []
engine.encode_block(fast, [ids[:20]], record=lambda t, symbols, probs, bits, carriers: rows.append((int(symbols[0]), probs[0])))
low, width, steps = Fraction(0), Fraction(1), []
for token, freqs in rows:
    total, below = int(freqs.sum()), int(freqs[:token].sum())
    p_low, p = Fraction(below, total), Fraction(int(freqs[token]), total)
    steps.append((float(p_low), float(p), fast.tokenizer.decode([token]).decode("utf-8", "replace")))
    low, width = low + width * p_low, width * p
bits = [-np.log2(float(s[1])) for s in steps]
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 5))
for k, (start, size, text) in enumerate(steps):
    left.barh(k, 1, left=0, color="#eeeeee")
    left.barh(k, max(size, 0.004), left=start, color="#1f77b4")
left.set_yticks(range(len(steps)), [repr(s[2]) for s in steps], fontsize=8)
left.invert_yaxis(); left.set_xlim(0, 1); left.set_xlabel("where the token's part lies in the interval before it")
left.set_title("each token keeps a part of the interval")
right.plot(np.cumsum(bits), marker="o"); right.set_xlabel("tokens coded"); right.set_ylabel("bits: -log2(width)")
right.set_title("the width halves with every bit"); plt.tight_layout(); plt.show()
print(f"after 20 tokens the interval is 2^-{-np.log2(float(width)):.1f} wide; the sum of -log2 p is {sum(bits):.1f} bits")"""),
    ("md", """## 4. The size is the sum of −log2 p

So a whole file costs the sum of its tokens' surprisals, and the compressed file is that many bits plus
the container's header and the coder's last bytes."""),
    ("code", """out = io.BytesIO()
stats = api.compress_stream(io.BytesIO(TEXT), out, fast, mix=False, fallback=False)
print(f"sum of -log2 p : {stats.nll_bits:9.1f} bits  (explain said {result.total_bits:.1f})")
print(f"compressed file: {8 * stats.compressed_bytes:9d} bits  ({stats.compressed_bytes} bytes, of which "
      f"{stats.extra['header_bytes']} are the header)")
assert lmzip.decompress(out.getvalue()) == TEXT"""),
    ("md", """## 5. The ladder: better predictors, smaller files

The same coder under ever better models: every byte equally likely (8 bits a byte), byte frequencies,
two bytes of context, then language models."""),
    ("code", """ladder = ["uniform", "order0", "order2", "fast"] + (["smollm2"] if BIG else [])
sizes = {name: len(lmzip.compress(TEXT, model=name, fallback=False)) for name in ladder}
for name, size in sizes.items():
    print(f"{name:>8}: {size:5d} bytes, {8 * size / len(TEXT):.3f} bits/byte")
plt.figure(figsize=(7, 3))
plt.bar(list(sizes), [8 * s / len(TEXT) for s in sizes.values()], color="#1f77b4")
plt.ylabel("bits per byte"); plt.title("a better predictor is a better compressor"); plt.show()"""),
    ("md", """## 6. Learning while coding: the file is the area under the loss curve

`online-scratch` starts from random weights and takes a training step after every few tokens; the
decoder takes the very same steps, so no weights are sent. Each token is coded with what the model had
learned before it, so the file's size is the area under the training loss curve."""),
    ("code", """online_bits = []
online = api.compress_stream(io.BytesIO(TEXT), io.BytesIO(), "online-scratch", threads=1,  # small: 1 thread is enough
                             record=lambda t, symbols, probs, bits, carriers: online_bits.append(bits.copy()))
per_token = np.concatenate(online_bits)
smooth = np.convolve(per_token, np.ones(25) / 25, mode="valid")
plt.figure(figsize=(7, 3))
plt.fill_between(np.arange(len(smooth)), smooth, alpha=0.3); plt.plot(smooth)
plt.xlabel("tokens coded (in lockstep order)"); plt.ylabel("bits per token (moving average)")
plt.title(f"area under the curve: {per_token.sum():,.0f} bits"); plt.show()
header = 8 * online.extra["header_bytes"]
print(f"the file: {8 * online.compressed_bytes:,} bits = the area + {header:,} bits of header "
      f"+ {8 * online.compressed_bytes - header - per_token.sum():.0f} of coder ends and block lengths")"""),
    ("md", """## 7. The decoder as a generator

Feed the decoder random bits instead of a file. It picks each token with exactly the probability the
model gives it: decoding noise is sampling. With an integer model, a seed gives the same text on every
machine. Encoding the sample again gives back the random bits it was decoded from."""),
    ("code", """sample = generate(fast, 60, seed=1, prompt=b"A compressor", mix=False)
print((sample.prompt + sample.text).decode("utf-8", "replace"))
print(f"\\n{sample.tokens} tokens read {sample.bits:.0f} bits of noise")
plain = generate(fast, 60, seed=1, mix=False)
code = engine.encode_block(fast, [fast.tokenizer.encode(plain.text)]).data
same = next((i for i, (a, b) in enumerate(zip(code, noise(1, len(code)))) if a != b), len(code))
print(f"re-encoding a sample: {same} of its {len(code)} bytes are the random bytes it was decoded from")"""),
    ("md", """Try `generate(fast, 60, seed=2, temperature=0.5)`: a colder model, bolder text, fewer bits a token.
From the command line: `lmzip generate -n 60 --seed 1 --prompt "A compressor"`, and
`lmzip explain FILE -m fast --compare smollm2 --html compare.html` shows where the bigger model saves."""),
]


def build() -> nbformat.NotebookNode:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_markdown_cell(text) if kind == "md" else nbformat.v4.new_code_cell(text)
                      for kind, text in CELLS]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return notebook


def run(notebook: nbformat.NotebookNode, timeout: int = 600) -> nbformat.NotebookNode:
    NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    return notebook


if __name__ == "__main__":
    nbformat.write(run(build()), NOTEBOOK)
    print(f"wrote {NOTEBOOK.relative_to(ROOT)}", file=sys.stderr)
