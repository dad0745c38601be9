"""The integer predictor: frequencies from integer/gpt.py or integer/llama.py, identical on any backend and machine.

One predictor serves both integer families; a model directory's ``config.json`` says which
(``model_type``): lmzip's GPT (``fast``) or a llama (``smollm2``). What differs between them is
an ``IntegerFamily``; the predictor never asks which one it runs.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..errors import ModelError, ModelNotAvailable
from ..settings import Settings
from ..tokenize import load_tokenizer
from .base import Capabilities, Measured, Predictor, hash_files
from .integer.adapt import ADAPT_RECIPES, NEWEST_ADAPT, HeadBias
from .integer.gpt import INTEGER_FORMAT, IntGPT, IntStepper
from .integer.llama import LLAMA_FORMAT, LLAMA_TYPE, NEWEST_RECIPE, RECIPES, IntLlama, IntLlamaStepper, runtime_arrays
from .integer.ops import BACKENDS, NumpyOps, TorchOps
from .integer.speculate import MAX_DRAFT, Acceptance, MatchDrafter, SpeculativeStepper, extra_row_cost
from .integer.stored import read_stored

PORTABLE_DIR = Path(__file__).resolve().parents[1] / "data" / "fast-portable"
EXTRA_FREQUENCY = 256  # an extra byte id's frequency: ~2^-16 of a confident row's total (2^24)
# rows of the (rows, vocabulary) frequency table made at a time in whole-chunk passes: its arrays
# stay small (SmolLM2: 12.6 MB each, three at once: the head's logits, the frequencies, the row
# widened by the extra ids; 256 rows made that 151 MB of a compression's peak), while the head's
# 28 MB of weights, read once a call, stay a small cost next to 64 rows of products
HEAD_ROWS = 64


@dataclass(frozen=True)
class IntegerFamily:
    """What differs between the integer model families."""
    version: str  # what the header's versions record: the integer recipe, no library
    build: Callable  # (runtime arrays, config, ops, backend name) -> the model on that backend
    runtime_arrays: Callable  # the stored arrays -> the arrays every backend builds from
    chunk_limit: int  # tokens a chunk at most by default (the model's context where smaller)
    default_streams: int
    pass_batch: int  # chunks a whole-chunk pass takes at once
    timed_rows: Callable  # context -> the (chunks, tokens) shape that times a pass
    timed: str  # the pass timed: "forward" (with the head, where it is a pass's large part) or "hidden"
    lead: int = 0  # a block's lead by default (layout.py)

    def timed_pass(self, model) -> float:
        """Seconds of a whole-chunk pass of a typical size (after a warm-up pass)."""
        idx = np.zeros(self.timed_rows(model.context), dtype=np.int64)
        run = getattr(model, self.timed)
        run(idx[:, :16])
        start = time.perf_counter()
        run(idx)
        return time.perf_counter() - start


def make_ops(backend: str, device: str = "cpu"):
    """The array backend named ``backend``; every one gives the same integers."""
    if backend == "torch":
        return TorchOps(device)
    if backend == "native":
        from .native import NativeOps, load

        return NativeOps(load())
    return NumpyOps()


def _build_llama(weights, config, ops, backend: str):
    model = IntLlama(weights, config, ops)
    if backend != "native":
        return model
    from .native import NativeLlama

    return NativeLlama(model)


GPT = IntegerFamily(version=f"lmzip integer model {INTEGER_FORMAT}",
                    build=lambda weights, config, ops, backend: IntGPT(weights, config, ops),
                    runtime_arrays=lambda weights: weights, chunk_limit=1 << 30, default_streams=128,
                    pass_batch=4, timed_rows=lambda context: (4, context), timed="forward")
# chunks 1.. read after the first 256 tokens code the first 32 KB of the training corpus's sotu.txt
# in 30 B (0.8 %) less than read from nothing under SmolLM2 (128: 16 B, 512: 29 B; alice29, a
# benchmark file: 56, 73, 71 B), for 256 steps of one stream a block
LEAD = 256
# a llama's context is long: 2,048 tokens a chunk, as the float SmolLM2 codes; a chunk fills the GEMMs alone
LLAMA = IntegerFamily(version=f"lmzip integer llama {LLAMA_FORMAT}", build=_build_llama,
                      runtime_arrays=runtime_arrays, chunk_limit=2048, default_streams=32, pass_batch=1,
                      timed_rows=lambda context: (1, min(512, context)), timed="hidden", lead=LEAD)


class IntegerPredictor(Predictor):
    """Integer frequencies, identical on any backend, machine and thread count."""

    capabilities = Capabilities(integer=True, teacher_forced=True)

    def __init__(self, directory: Path, name: str | None = None, backend: str = "auto",
                 threads: int | None = None, device: str | None = None, weights_hash: bytes | None = None,
                 speculate: bool = True, adapt: bool = False):
        if backend not in BACKENDS and backend != "auto":
            raise ModelNotAvailable(f"unknown backend {backend!r} (use {', '.join(BACKENDS)})")
        if backend == "native":
            from .native import NativeUnavailable, load

            try:
                load()
            except NativeUnavailable as e:
                raise ModelNotAvailable(f"--backend native: {e}") from None
        if device not in (None, "cpu"):
            backend = "torch"
        self.directory = Path(directory)
        if not (self.directory / "model.safetensors").exists():
            raise ModelNotAvailable(f"no integer model in {self.directory}")
        self.name = name or str(self.directory.resolve())
        weights, config = read_stored(self.directory)
        self.threads, self.device = threads, device or "cpu"
        self.family = LLAMA if config.get("model_type") == LLAMA_TYPE else GPT
        # every backend builds from one copy of the stored arrays (a float backend adds its float32 weights)
        self._weights, self._config = self.family.runtime_arrays(weights), config
        del weights  # what runtime_arrays converted (SmolLM2's int32 embeddings, 113 MB) goes before the backend's copies
        self.backend = backend
        # a llama's arithmetic recipe: the one new files take (``use_recipe``; the newest unless
        # asked), a file's own while it is decoded (``adopt``), then new files' again (``plan``)
        self.recipe = self.new_files_recipe = NEWEST_RECIPE if self.family is LLAMA else None
        # the head's learning (adapt.py) likewise: new files' (``adapt``), a file's own while decoded
        self.adapt = self.new_files_adapt = NEWEST_ADAPT if adapt else None
        self.head_bias: HeadBias | None = None
        self._rows = None  # the last step's rows, which the head learns from once their tokens are known
        self._models: dict = {}  # backend -> IntGPT, IntLlama or NativeLlama
        self.model = self.model_on(backend if backend != "auto" else self.candidates()[0])
        if backend != "auto":
            self._weights = None  # settled: the model holds what it computes with
        self.tokenizer = load_tokenizer(self.directory, config, config["vocab_size"])
        self.model_vocab = config["vocab_size"]
        self._learn_by(self.adapt)
        # bytes the vocabulary has no token for (SmolLM2: most control bytes) get ids above it
        self.vocab_size = max(self.tokenizer.vocab_size, self.model_vocab)
        self.max_chunk = self.model.context
        self.default_chunk = min(self.family.chunk_limit, self.model.context)
        self.default_streams = self.family.default_streams
        self.default_lead = self.family.lead
        self.shares_leads = self.family is LLAMA
        self.speculate = speculate
        self.begin_file()
        self._hash = weights_hash or hash_files(
            [self.directory / "model.safetensors"] + [p for p in [self.directory / "tokenizer.json"] if p.exists()])

    @property
    def weights_hash(self) -> bytes:
        return self._hash

    def model_on(self, backend: str):
        """The model computing on ``backend``; every backend gives the same integers."""
        if backend not in self._models:
            self._models[backend] = self.family.build(self._stored_arrays(), self._config,
                                                      make_ops(backend, self.device), backend)
            self._apply_recipe(self._models[backend])
            self._apply_head_bias(self._models[backend])
        return self._models[backend]

    def settings(self) -> Settings:
        """A llama's recipe where it is not the first (files before it name none); the head's
        learning where it learns."""
        return Settings(recipe=self.recipe if self.recipe not in (None, 1) else None, adapt=self.adapt)

    def adopt(self, settings: Settings) -> None:
        """Compute by the file's recipe (none recorded: the first), or refuse one this lmzip lacks."""
        if self.family is LLAMA:
            recipe = settings.recipe or 1
            if recipe not in RECIPES:
                raise ModelError(f"the file was made with integer llama recipe {recipe}, which this lmzip does "
                                 "not know: it was made by a newer lmzip")
            self._compute_by(recipe)
        self._learn_by(settings.adapt)
        super().adopt(settings)

    def plan(self, n_streams: int) -> None:
        """A file to encode: new files' recipe again, whatever file this predictor decoded last."""
        if self.family is LLAMA:
            self._compute_by(self.new_files_recipe)
        self._learn_by(self.new_files_adapt)

    def use_recipe(self, recipe: int) -> None:
        """Write new files by ``recipe`` of integer/llama.py's RECIPES (a llama's; the weights stay): the
        first one, without a learning head (``adapt=False``), makes files that lmzip 0.8.0-0.13
        decode too."""
        if recipe not in RECIPES:
            raise ValueError(f"unknown integer llama recipe {recipe}")
        self.new_files_recipe = recipe
        self._compute_by(recipe)

    def _compute_by(self, recipe: int) -> None:
        self.recipe = recipe
        for model in self._models.values():
            self._apply_recipe(model)

    def _apply_recipe(self, model) -> None:
        if self.recipe is not None:
            model.use_recipe(self.recipe)

    def _learn_by(self, adapt: int | None) -> None:
        """Learn while coding by ``adapt`` of adapt.ADAPT_RECIPES, or not (None)."""
        if adapt is not None and adapt not in ADAPT_RECIPES:
            raise ModelError(f"the file was made with adaptation recipe {adapt}, which this lmzip does not know: "
                             "it was made by a newer lmzip")
        self.adapt = adapt
        self.head_bias = None if adapt is None else HeadBias(self.model_vocab, ADAPT_RECIPES[adapt])
        for model in self._models.values():
            self._apply_head_bias(model)

    def _apply_head_bias(self, model) -> None:
        """The model's head subtracts this bias (shared: it learns in place), or none."""
        getattr(model, "model", model).head_bias = None if self.head_bias is None else self.head_bias.steps

    def _stored_arrays(self) -> dict:
        """The arrays every backend builds from. Kept only until the backend in use is settled: a
        native model holds its own int8 copies (in panels), so keeping these would hold SmolLM2's
        weights twice (+134 MB); a backend wanted later reads them from disk again."""
        if self._weights is None:
            self._weights = self.family.runtime_arrays(read_stored(self.directory)[0])
        return self._weights

    def candidates(self) -> list[str]:
        """The backends ``auto`` chooses among here, the likely fastest first: native wherever its
        library builds and passes its check (CPU only), then torch and numpy."""
        from .native import available

        return (["native"] if self.device == "cpu" and available() else []) + ["torch", "numpy"]

    def fastest(self, work: str, n_streams: int = 1):
        """The model on the faster backend for ``work`` ("chunks": whole-chunk passes, or "steps" of
        ``n_streams`` streams), measured once per machine (speed only: the integers are the same).
        On an AVX2 EPYC, numpy's OpenBLAS GEMMs run 1.4-20x torch's: numpy steps 1.8x faster there."""
        if self.backend != "auto":
            return self.model_on(self.backend)
        from .base import measured_choice, torch_dispatch

        bucket = 1 << max(0, n_streams - 1).bit_length() if work == "steps" else 0
        candidates = self.candidates()
        threads = self.threads or len(os.sched_getaffinity(0))
        key = (f"integer backend among {'+'.join(candidates)} for {work}{f' of {bucket} streams' if bucket else ''}, model "
               f"{self._hash.hex()}, {torch_dispatch()}, {threads} threads")
        measure = (lambda b: _time_steps(self.model_on(b), bucket)) if bucket else \
            (lambda b: self.family.timed_pass(self.model_on(b)))
        self.model = self.model_on(measured_choice(key, lambda: _fastest(candidates, measure)))
        # drop what a measurement built and did not choose: float32 weight copies are 4x the int8
        # ones (SmolLM2: 553 MB each); a stepper still running on one keeps its own reference
        self._models = {b: m for b, m in self._models.items() if m is self.model}
        self._weights = None
        return self.model

    def versions(self) -> str:
        return self.family.version  # no library: any numpy/torch/BLAS decodes it

    def running(self):
        """torch's thread count as asked (speed only: the integers do not depend on it), TF32 off."""
        if isinstance(self.model.ops, NumpyOps):
            return super().running()
        from .base import torch_state

        return torch_state(self.threads, self.device)

    def begin_file(self) -> None:
        self.drafter, self.acceptance = MatchDrafter(), Acceptance()

    def start(self, n_streams: int, n_steps: int) -> None:
        model = self.fastest("steps", n_streams)
        if self.head_bias is not None:
            self.head_bias.reset()  # each block learns from zero (adapt.py)
        # rows of guessed tokens are made ahead, by the bias as it was then: a learning head makes
        # each row at its step
        if hasattr(model, "stepper") and self.speculate and self.head_bias is None:  # a native llama: guessed tokens are checked in its passes
            self.stepper = SpeculativeStepper(model.stepper(n_streams, n_steps + MAX_DRAFT), n_streams, self.drafter,
                                              self.acceptance, self._extra_row_cost(model, n_streams))
        else:
            self.stepper = stepper_for(model, n_streams, n_steps)

    def _extra_row_cost(self, model, n_streams: int) -> float:
        """One more row a stream, as a fraction of a step of this many streams: measured once per
        machine, model and stream count (speed only)."""
        from .base import measured_choice

        bucket = 1 << max(0, n_streams - 1).bit_length()
        key = (f"extra row cost of {bucket} streams, model {self._hash.hex()}, native "
               f"{model.ops.library.kernel_name}, {model.ops.library.threads} threads")
        # a cost, not a choice between options: kept as a close one, measured again each day
        return measured_choice(key, lambda: Measured(extra_row_cost(model, bucket), margin=1.0))

    def stepping_report(self) -> dict:
        return self.acceptance.report() if self.acceptance.used else {}

    def join(self, n_streams: int) -> None:
        if not self.shares_leads:
            super().join(n_streams)  # refuses
        self.stepper.join(n_streams)

    def step(self, tokens: np.ndarray) -> np.ndarray:
        self._rows = self.stepper.step(self._readable(tokens))
        return self._with_extra_ids(self._rows)

    def observe(self, coded: np.ndarray, n_active: int) -> None:
        """A learning head learns from the step's rows and the tokens they coded."""
        if self.head_bias is not None:
            self.head_bias.learn(self._rows[:n_active], np.asarray(coded[:n_active]))

    def _readable(self, tokens: np.ndarray) -> np.ndarray:
        """The model cannot read an extra byte id: it sees the start token instead."""
        if self.vocab_size == self.model_vocab:
            return tokens
        return np.where(tokens >= self.model_vocab, self.bos_id, tokens)

    def _with_extra_ids(self, freqs: np.ndarray) -> np.ndarray:
        """Rows widened by the extra byte ids, each at EXTRA_FREQUENCY."""
        if self.vocab_size == self.model_vocab:
            return freqs
        extra = np.full((freqs.shape[0], self.vocab_size - self.model_vocab), EXTRA_FREQUENCY, dtype=freqs.dtype)
        return np.ascontiguousarray(np.concatenate([freqs, extra], axis=1))

    def teacher_forced_rows(self, chunks: list[np.ndarray], lead: int = 0) -> Iterator[tuple[int, int, np.ndarray]]:
        """Teacher-forced: (chunk index, first row, (n, vocabulary) int32 frequencies) for each chunk
        HEAD_ROWS rows at a time, in order: every row of every chunk, without a (T, vocabulary)
        table (SmolLM2: 400 MB a chunk). With a ``lead``, chunks 1.. are read after chunks[0]'s
        first ``lead`` tokens, as their streams are when stepped (layout.Schedule). A learning head
        gives its rows in lockstep order instead, learning after each step (``_learning_rows``).

        Exactness makes the whole-sequence pass give the very integers stepping gives, so the
        encoder may use it while the decoder steps.
        """
        model = self.fastest("chunks")
        if self.head_bias is not None:
            yield from self._learning_rows(model, chunks, lead)
            return
        for i, hidden in self._chunks_hidden(model, chunks, lead):
            yield from self._chunk_rows(model, i, chunks[i], hidden)

    def _chunks_hidden(self, model, chunks: list[np.ndarray], lead: int) -> Iterator[tuple[int, object]]:
        """(chunk index, the final residual stream of its rows) for each chunk, in order, from
        whole-chunk passes (see teacher_forced_rows)."""
        shared = chunks[0][:lead] if len(chunks) > 1 else chunks[0][:0]
        if len(shared) and hasattr(model, "hidden_after"):  # a native llama computes the lead's positions once
            yield from self._hidden_after_lead(model, chunks, shared)
            return
        batch = self.family.pass_batch
        for i in range(0, len(chunks), batch):
            group = chunks[i : i + batch]
            context = [shared if i + b else shared[:0] for b in range(len(group))]
            T = max(len(h) + len(c) for h, c in zip(context, group))
            idx = np.full((len(group), T), self.bos_id, dtype=np.int64)
            for row, h, chunk in zip(idx, context, group):
                read = self._readable(np.concatenate([h, chunk[:-1]]))
                row[1 : 1 + len(read)] = read
            hidden = model.hidden(idx)
            for b in range(len(group)):
                yield i + b, hidden[b, len(context[b]) :]

    def _hidden_after_lead(self, model, chunks: list[np.ndarray], lead: np.ndarray):
        """_chunks_hidden on a model with ``hidden_after``: chunks 1.. continue one cache of the
        lead's positions (inputs: the start token and the lead but its last token)."""
        lead_rows = model.lead_rows(self._readable(np.concatenate([[self.bos_id], lead[:-1]])))
        for i, chunk in enumerate(chunks):
            if i == 0:
                idx = np.concatenate([[self.bos_id], self._readable(chunk[:-1])])
                yield i, model.hidden(idx[None])[0]
            else:
                yield i, model.hidden_after(lead_rows, self._readable(np.concatenate([lead[-1:], chunk[:-1]])))

    def _learning_rows(self, model, chunks: list[np.ndarray], lead: int) -> Iterator[tuple[int, int, np.ndarray]]:
        """teacher_forced_rows of a learning head: the body's whole-chunk passes as ever, their final
        residual rows kept; then the head a lockstep step at a time (stream 0 alone for the lead),
        learning from each step's rows as stepping does (observe). The residual's integers fit
        int32 (SmolLM2's are clipped to 2^26): a block of 32 chunks of 2,304 rows keeps 170 MB."""
        hidden = [_as_int32(model.ops.to_numpy(h)) for _, h in self._chunks_hidden(model, chunks, lead)]
        starts = np.array([0] + [lead if len(chunks) > 1 else 0] * (len(chunks) - 1))
        ends = starts + np.array([len(c) for c in chunks])
        self.head_bias.reset()
        for t in range(int(ends.max())):
            active = int(np.count_nonzero((starts <= t) & (ends > t)))  # the first ones (layout.Schedule)
            positions = t - starts[:active]
            x = np.stack([hidden[i][p] for i, p in enumerate(positions)]).astype(np.float64)
            rows = model.ops.to_numpy(model.frequencies(model.ops.array(x, "f64")))
            widened = self._with_extra_ids(rows)  # once a step, not once a row
            for i, p in enumerate(positions):
                yield i, int(p), widened[i : i + 1]
            self.head_bias.learn(rows, np.array([chunks[i][p] for i, p in enumerate(positions)]))

    def _chunk_rows(self, model, i: int, chunk: np.ndarray, hidden) -> Iterator[tuple[int, int, np.ndarray]]:
        """Chunk i's frequency rows from its final residual stream (at least one row a token)."""
        for r in range(0, len(chunk), HEAD_ROWS):
            end = min(r + HEAD_ROWS, len(chunk))  # a short chunk's padding is not coded
            yield i, r, self._with_extra_ids(model.ops.to_numpy(model.frequencies(hidden[r:end])))


def _as_int32(x: np.ndarray) -> np.ndarray:
    """A final residual stream's integers as int32, checked to fit (a model whose residual grew past
    2^31 would be a broken one: refused rather than rounded)."""
    out = x.astype(np.int32)
    if not np.array_equal(out, x):
        raise ModelError("a final residual beyond int32: this model cannot learn while it codes")
    return out


def _fastest(candidates, seconds) -> Measured:
    """The candidate with the least time, each timed twice in alternation (the best of two), so a
    moment of load elsewhere on the machine does not decide; the margin is the runner-up's time
    over the winner's."""
    best = {c: float("inf") for c in candidates}
    for _ in range(2):
        for c in candidates:
            best[c] = min(best[c], seconds(c))
    ranked = sorted(best, key=best.get)
    return Measured(ranked[0], best[ranked[1]] / best[ranked[0]] if len(ranked) > 1 else None)


def stepper_for(model, n_streams: int, n_steps: int):
    """The stepper of ``model`` (a native llama brings its own)."""
    if hasattr(model, "stepper"):
        return model.stepper(n_streams, n_steps)
    if isinstance(model, IntLlama):
        return IntLlamaStepper(model, n_streams, n_steps)
    return IntStepper(model, n_streams)


def _time_steps(model, n_streams: int) -> float:
    """Seconds of eight lockstep steps of ``n_streams`` streams (after two warm-up steps)."""
    stepper = stepper_for(model, n_streams, 10)
    tokens = np.zeros(n_streams, dtype=np.int64)
    for _ in range(2):
        stepper.step(tokens)
    start = time.perf_counter()
    for _ in range(8):
        stepper.step(tokens)
    return time.perf_counter() - start


def load_fast(**options) -> IntegerPredictor:
    return load_directory(PORTABLE_DIR, "fast", **options)


def load_directory(directory: Path, name: str, backend: str | None = None, threads: int | None = None,
                   device: str | None = None, weights_hash: bytes | None = None, speculate: bool = True,
                   dtype: str | None = None, adapt: bool = False) -> IntegerPredictor:
    """``dtype`` is a float model's option: integer models compute in integers whatever it says."""
    return IntegerPredictor(directory, name=name, backend=backend or "auto", threads=threads, device=device,
                            weights_hash=weights_hash, speculate=speculate, adapt=adapt)
