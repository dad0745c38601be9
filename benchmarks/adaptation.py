"""Issue 46, step 1: what would the default save if its head kept learning while it codes?

The default (integer SmolLM2, recipe 2, chunks of 2,048, 32 streams, a lead of 256, mixed) is
replayed exactly as it compresses, with one change: after each lockstep step, a small adapter after
the transformer body takes a step of gradient descent on the tokens that step coded, and the next
step's rows are computed through it. Only what sits after the body adapts, so the body's final
residual stream of every position is the model's own: it is computed once per file (whole-chunk
passes, as compression computes it) and cached; each variant then replays the head, the adapter,
the exp table, the mixer and the coder, and reports the bytes the coder writes.

The adapters are float prototypes (numpy float64 on the coded rows): they say what an exact integer
version could save, and what it costs, not yet how to make it exact. The variant "none" must give
the very bytes ``lmzip.compress`` writes: the replay is checked against it on every file.

    python benchmarks/adaptation.py --files milton.txt:262144,sotu.txt:262144 --variants none,bias
"""

from __future__ import annotations

import argparse
import hashlib
import io
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lmzip import api, container, engine, layout  # noqa: E402
from lmzip.coder import token_intervals  # noqa: E402
from lmzip.mixing import History, candidate_frequencies, mix_setting_for  # noqa: E402
from lmzip.models import load_predictor  # noqa: E402
from lmzip.models.base import cache_dir  # noqa: E402
from lmzip.models.integer.adapt import ADAPT_RECIPES, AdaptRecipe, HeadBias  # noqa: E402
from lmzip.models.integer_predictor import EXTRA_FREQUENCY  # noqa: E402
from lmzip.tokenize import read_tokens  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus"
RESULTS = ROOT / "benchmarks" / "results"


# -- the body, once per file ----------------------------------------------------------------------

@dataclass
class Residuals:
    """A file's tokens and final residual rows, block by block, in lockstep order."""
    ids: np.ndarray
    plan: layout.FileLayout
    lead: int
    rows: list[np.ndarray]  # per block: (B, T, C) int32, the final residual of each (stream, step)


def file_residuals(predictor, data: bytes) -> Residuals:
    ids, _, _ = read_tokens(predictor.tokenizer, io.BytesIO(data))
    chunk, streams = predictor.default_chunk, predictor.default_streams
    lead = predictor.lead_for(chunk, None, streams)
    plan = layout.FileLayout.of(len(ids), chunk, streams, lead)
    key = hashlib.sha256(data + f"{chunk} {streams} {lead} {predictor.versions()}".encode()).hexdigest()[:16]
    path = cache_dir() / "bench-adaptation" / f"{key}.npz"
    if path.exists():
        stored = np.load(path)
        return Residuals(ids, plan, lead, [stored[f"b{i}"] for i in range(len(plan.blocks))])
    predictor.begin_file()
    predictor.plan(plan.first_block_streams)
    model = predictor.fastest("chunks")
    captured: list[np.ndarray] = []
    real = model.frequencies
    model.frequencies = lambda x: (captured.append(np.asarray(x)), real(x[:1]))[1]  # the head on one row only
    rows = []
    try:
        with predictor.running():
            for chunks in plan.split(ids):
                schedule = layout.Schedule.of([len(c) for c in chunks], lead)
                grid = np.zeros((len(chunks), schedule.n_steps, predictor.model.cfg["hidden_size"]), np.int32)
                for i, first, _ in predictor.teacher_forced_rows(chunks, schedule.lead):
                    x = captured.pop()
                    start = schedule.starts[i] + first
                    grid[i, start : start + len(x)] = x
                rows.append(grid)
    finally:
        model.frequencies = real
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{f"b{i}": r for i, r in enumerate(rows)})
    return Residuals(ids, plan, lead, rows)


# -- the head, with an adapter --------------------------------------------------------------------

class Head:
    """The integer model's head on final residual rows: normed rows (real units) and logits (nats)."""

    def __init__(self, predictor):
        model = predictor.model
        self.model = getattr(model, "model", model)  # a NativeLlama's IntLlama (its ops are native)
        self.extra = predictor.vocab_size - predictor.model_vocab

    def normed_and_logits(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        m = self.model
        values, scale = m.norm_quantized(x.astype(np.float64), m.w["norm_f.g"], m.row_levels)
        logits = m.linear(values, scale, "head", wide=m.wide_rows)
        return np.asarray(values, np.float64) * np.asarray(scale, np.float64), np.asarray(logits, np.float32)

    def frequencies(self, logits: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
        """The rows the coder sees: the exp table at the logits' steps, less ``bias`` (lmzip's own
        biased head, integer/adapt.py), with the extra byte ids."""
        m = self.model
        index = m.table_index(logits.copy()) if bias is None else m.biased_table_index(logits.copy(), bias)
        freqs = m.ops.take(m.table_plus_one, index)
        if self.extra:
            freqs = np.concatenate([freqs, np.full((len(freqs), self.extra), EXTRA_FREQUENCY, freqs.dtype)], axis=1)
        return np.ascontiguousarray(freqs)


class Adapter:
    """Nothing adapts: the model's own rows."""

    def shift(self, normed: np.ndarray) -> np.ndarray | None:
        return None

    def learn(self, normed: np.ndarray, gradient: np.ndarray) -> None:
        pass


class Step:
    """SGD (``rms``: steps divided by the root mean square of the gradients so far, as RMSprop) with
    a decay of the parameters back to where they started."""

    def __init__(self, lr: float, decay: float = 0.0, rms: bool = False):
        self.lr, self.decay, self.rms, self.square = lr, decay, rms, {}

    def apply(self, name: str, param: np.ndarray, grad: np.ndarray) -> None:
        if self.rms:
            square = self.square.setdefault(name, np.zeros_like(param))
            square *= 0.99
            square += 0.01 * grad * grad
            grad = grad / (np.sqrt(square) + 1e-8)
        param -= self.lr * grad
        if self.decay:
            param *= 1.0 - self.decay


class Bias(Adapter):
    """A bias on every logit: a unigram cache of the file, learnt by gradient descent."""

    def __init__(self, vocab: int, step: Step):
        self.b, self.step = np.zeros(vocab), step

    def shift(self, normed):
        return np.broadcast_to(self.b, (len(normed), len(self.b)))

    def learn(self, normed, gradient):
        self.step.apply("b", self.b, gradient.sum(axis=0))


class HeadLowRank(Adapter):
    """A rank-r update of the head: logits += (n B) A^T, A (V, r) from zero, B (C, r) random."""

    def __init__(self, vocab: int, width: int, rank: int, step: Step, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.a, self.b = np.zeros((vocab, rank)), rng.standard_normal((width, rank)) / np.sqrt(width)
        self.step = step

    def shift(self, normed):
        return (normed @ self.b) @ self.a.T

    def learn(self, normed, gradient):
        projected = normed @ self.b  # (n, r)
        grad_a = gradient.T @ projected
        grad_b = normed.T @ (gradient @ self.a)
        self.step.apply("a", self.a, grad_a)
        self.step.apply("b", self.b, grad_b)


class Both(Adapter):
    def __init__(self, *parts: Adapter):
        self.parts = parts

    def shift(self, normed):
        shifts = [s for s in (p.shift(normed) for p in self.parts) if s is not None]
        return sum(shifts[1:], shifts[0]) if shifts else None

    def learn(self, normed, gradient):
        for p in self.parts:
            p.learn(normed, gradient)


class IntegerBias(Adapter):
    """lmzip's exact bias (integer/adapt.py HeadBias) at another rate, K and decay than recipe 1's."""

    def __init__(self, vocab: int, lr: float, fraction_bits: int = 16, decay_shift: int = 0):
        rate = int(round(lr * 128 * 2 ** fraction_bits))
        self.bias = HeadBias(vocab, AdaptRecipe(rate, ADAPT_RECIPES[1].max_vocab, fraction_bits, decay_shift))


def make_adapter(name: str, vocab: int, width: int) -> Adapter:
    """``none``, ``bias:LR[:DECAY][:rms]``, ``lowrank:RANK:LR[:DECAY][:rms]``, ``both:RANK:LR...``"""
    kind, *args = name.split(":")
    rms = "rms" in args
    numbers = [float(a) for a in args if a != "rms"]
    if kind == "none":
        return Adapter()
    if kind == "ibias":  # ibias:LR[:K[:D]]
        return IntegerBias(vocab, numbers[0], *(int(n) for n in numbers[1:]))
    if kind == "bias":
        return Bias(vocab, Step(numbers[0], numbers[1] if len(numbers) > 1 else 0.0, rms))
    rank, lr, decay = int(numbers[0]), numbers[1], numbers[2] if len(numbers) > 2 else 0.0
    if kind == "lowrank":
        return HeadLowRank(vocab, width, rank, Step(lr, decay, rms))
    if kind == "both":
        return Both(Bias(vocab, Step(lr, decay, rms)), HeadLowRank(vocab, width, rank, Step(lr, decay, rms)))
    raise ValueError(name)


# -- the replay -----------------------------------------------------------------------------------

def replay(predictor, head: Head, residuals: Residuals, make: Callable[[], Adapter]) -> tuple[int, float, float]:
    """(bytes the coder writes for the blocks, LM-alone bits, seconds of head and adapter). Each
    block starts a new adapter from ``make``: blocks stay independent of one another's adapters (a
    block that falls back to xz is never seen by the decoder's model; workers code blocks apart)."""
    ids, plan, lead = residuals.ids, residuals.plan, residuals.lead
    mixed = mix_setting_for(True, len(ids), predictor.default_chunk, predictor.default_streams)
    history = History(mixed)
    total_bytes, seconds = 0, 0.0
    lm_bits = 0.0
    for chunks, rows in zip(plan.split(ids), residuals.rows):
        schedule = layout.Schedule.of([len(c) for c in chunks], lead)
        adapter = make()
        proposals = engine.propose(chunks, schedule, history)
        tokens = schedule.grid(chunks)
        intervals = np.ones((3, *tokens.shape), dtype=np.int64)
        f_candidates = np.zeros(proposals[0].shape, dtype=np.int64)
        start = time.perf_counter()
        for t in range(schedule.n_steps):
            active = schedule.active(t)
            normed, logits = head.normed_and_logits(rows[:active, t])
            shift = adapter.shift(normed)
            if shift is not None:
                logits = logits + shift[:, : logits.shape[1]].astype(np.float32)
            freqs = head.frequencies(logits, adapter.bias.steps if isinstance(adapter, IntegerBias) else None)
            symbols = tokens[:active, t]
            intervals[:, :active, t] = token_intervals(freqs, symbols)
            f_candidates[:active, t] = candidate_frequencies(freqs, proposals[0][:active, t])
            lm_bits += float(engine.model_bits(freqs, symbols).sum())
            if isinstance(adapter, IntegerBias):
                adapter.bias.learn(freqs, symbols)  # the model's columns: as IntegerPredictor.observe
            elif type(adapter) is not Adapter:
                p = freqs[:, : logits.shape[1]] / freqs.sum(axis=1, keepdims=True, dtype=np.float64)
                p[np.arange(active), symbols] -= 1.0  # the cross-entropy's gradient at the logits
                adapter.learn(normed, p)
        seconds += time.perf_counter() - start
        block = engine.code_pass(engine.WholeChunkPass(tokens, schedule, intervals, f_candidates), history, proposals)
        total_bytes += len(block.data)
    return total_bytes, lm_bits, seconds


def blocks_bytes(blob: bytes) -> int:
    """The coded blocks' bytes of an .lmz written by lmzip.compress (the fallback off)."""
    reader = container.Reader(io.BytesIO(blob))
    return sum(len(data) for _, _, data in reader.blocks())


def read_file(spec: str) -> tuple[str, bytes]:
    """``NAME[:BYTES]`` of the training corpus or the eval corpora (the first BYTES bytes)."""
    name, _, limit = spec.partition(":")
    for folder in (CORPUS / "train", CORPUS / "eval" / "canterbury", CORPUS / "eval" / "calgary"):
        if (folder / name).exists():
            data = (folder / name).read_bytes()
            return name, data[: int(limit)] if limit else data
    raise SystemExit(f"{name}: not in {CORPUS}")


LINE = re.compile(r"^  (\S+)\s+([\d,]+) B\s+([\d.]+) bpb\s+([+-][\d.]+)%\s+"
                  r"LM alone ([\d.]+) bpb\s+head\+adapter (\d+) s$")
FILE = re.compile(r"^(\S+): ([\d,]+) bytes, ([\d,]+) tokens")


def markdown(log: list[str]) -> str:
    """The results table, from the lines ``main`` prints (so a run's log can be tabled afterwards)."""
    rows, name, size = [], None, None
    for line in log:
        if m := FILE.match(line):
            name, size = m.group(1), m.group(2)
        elif (m := LINE.match(line)) and name:
            variant, coded, bpb, saving, lm, seconds = m.groups()
            rows.append(f"| {name} | {size} | {variant} | {coded} | {bpb} | {saving} % | {lm} | {seconds} |")
    return "\n".join([
        "# A head that learns while it codes: what the default would write",
        "",
        "`make bench-adapt` (`benchmarks/adaptation.py`): the default (integer SmolLM2, recipe 2, chunks of",
        "2,048, 32 streams, a lead of 256, mixed) replayed exactly as it compresses, each variant's head",
        "learning after every lockstep step, each block from scratch; the bytes the coder writes for the",
        "blocks (the header aside). `none` is the model's own rows: `lmzip.compress`'s blocks, byte for",
        "byte. `ibias:LR` is integer/adapt.py's exact bias at LR nat a step (recipe 1: 0.1); `bias`,",
        "`lowrank` are float prototypes. Training texts (the first 256 KB) chose the recipe; the eval",
        "files are reported, never tuned on. Seconds: the replay's head and adapter, one run, 2 threads.",
        "",
        "| file | bytes | variant | coded bytes | bpb | vs none | LM alone bpb | head+adapter s |",
        "|---|---|---|---|---|---|---|---|",
        *rows, ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", default="milton.txt:262144,sotu.txt:262144")
    parser.add_argument("--variants", default="none,ibias:0.1")
    parser.add_argument("--check", action="store_true", help="compare the replay of 'none' with lmzip.compress")
    parser.add_argument("--table", type=Path, help="write the results table of a run's printed log (a file) instead")
    args = parser.parse_args()
    if args.table:
        (RESULTS / "adaptation.md").write_text(markdown(args.table.read_text().splitlines()))
        return
    log = []

    def say(line: str) -> None:
        print(line, flush=True)
        log.append(line)

    predictor = load_predictor("smollm2", adapt=False)  # the model's own rows: the variants learn here
    head = Head(predictor)
    for spec in args.files.split(","):
        name, data = read_file(spec)
        start = time.perf_counter()
        residuals = file_residuals(predictor, data)
        say(f"{name}: {len(data):,} bytes, {len(residuals.ids):,} tokens (body {time.perf_counter() - start:.0f} s)")
        if args.check:
            blob = api.compress(data, predictor, fallback=False)
            say(f"  lmzip.compress: blocks {blocks_bytes(blob):,} B")
        base = None
        for variant in args.variants.split(","):
            width = predictor.model.cfg["hidden_size"]
            coded, lm_bits, seconds = replay(predictor, head, residuals,
                                             lambda: make_adapter(variant, predictor.model_vocab, width))
            base = base or coded
            say(f"  {variant:<28} {coded:>9,} B  {8 * coded / len(data):.4f} bpb  {coded / base - 1:+.2%}  "
                f"LM alone {lm_bits / len(data):.4f} bpb  head+adapter {seconds:.0f} s")
    (RESULTS / "adaptation.md").write_text(markdown(log))


if __name__ == "__main__":
    main()
