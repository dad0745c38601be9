"""The integer llama's whole layer stack in one call of llama_step.c, over any (stream, position,
token) rows (``NativeLlamaRows``): steps, whole-chunk passes, guessed positions; and ``NativeLlama``,
an IntLlama whose passes and steps run there. The very integers of integer/llama.py's numpy code."""

from __future__ import annotations

import ctypes

import numpy as np

from ..integer.arithmetic import EXP_STEPS_PER_NAT
from ..integer.llama import LLAMA_ATTENTION_ONE, RESIDUAL_LIMIT, SQUARE_SHIFT
from ..integer.tables import SIGMOID_RANGE, SIGMOID_STEPS
from .binding import (HEAD_TOO_WIDE, MAX_HEAD_DIM, NO_MEMORY, OUT_OF_RANGE, POINTER, LayerStruct, LinearStruct,
                      ModelStruct, pointer)


def raise_for(status: int) -> None:
    """A native llama call's status as the exception it means (none for 0)."""
    if status == OUT_OF_RANGE:
        raise ValueError("a row outside the vocabulary, the streams or the cache (refused by the native llama)")
    if status == HEAD_TOO_WIDE:
        raise ValueError(f"heads wider than {MAX_HEAD_DIM} (refused by the native llama)")
    if status == NO_MEMORY:
        raise MemoryError("the native llama ran out of memory")
    if status:
        raise RuntimeError(f"the native llama returned {status}")


class NativeLlamaRows:
    """An integer llama's rows -- (stream, position, token) -- through llama_step.c with an int8 KV
    cache of ``n_streams`` x ``length`` positions: the frequencies IntLlamaStepper and IntLlama.hidden
    give, bit for bit (tests compare them), however the positions are grouped into calls. It is a
    stepper (``step``) as well: one row per stream at the next position."""

    def __init__(self, model, n_streams: int, length: int):
        self.model, self.pos, self.length, self.n_streams = model, 0, length, n_streams
        self.vocab, self.width = model.cfg["vocab_size"], model.cfg["hidden_size"]
        self.filled = np.zeros(n_streams, dtype=np.int64)  # positions cached, per stream
        library, w = model.ops.library, model.w
        KV, D = model.n_kv, model.head_dim
        # np.zeros maps its pages lazily: a long cache costs memory only as it fills
        self.k = [np.zeros((n_streams, KV, length, D), np.int8) for _ in range(model.n_layer)]
        self.v = [np.zeros((n_streams, KV, length, D), np.int8) for _ in range(model.n_layer)]
        self.ks, self.vs, self.vmax = ([np.zeros((n_streams, KV, length), np.float32) for _ in range(model.n_layer)]
                                       for _ in range(3))

        embed = w["embed.e"]  # int16 where it fits (runtime_arrays), else int32
        layers = (LayerStruct * model.n_layer)()
        for i in range(model.n_layer):
            layers[i] = self._layer(i)
        self._layers = layers  # the struct points into it: keep it alive
        self._struct = ModelStruct(
            C=self.width, H=model.n_head, KV=KV, D=D, F=model.cfg["intermediate_size"], V=self.vocab,
            n_layer=model.n_layer, length=length, streams=n_streams, norm_eps=model.norm_eps,
            float_norm_eps=model.float_norm_eps, score_factor=float(EXP_STEPS_PER_NAT * model.attention_scale),
            residual_limit=RESIDUAL_LIMIT, residual_bits=model.residual_bits, square_shift=SQUARE_SHIFT,
            gain_bits=model.gain_bits, attention_one=LLAMA_ATTENTION_ONE, sigmoid_steps=SIGMOID_STEPS,
            sigmoid_range=SIGMOID_RANGE,
            embed16=pointer(embed, np.int16) if embed.dtype == np.int16 else None,
            embed32=pointer(embed, np.int32) if embed.dtype != np.int16 else None,
            gate=pointer(model.gate_table, np.float32),
            attention_exp=pointer(model.attention_exp, np.float32), attention_last=model.attention_last,
            norm_f=pointer(w["norm_f.g"], np.float64), head=self._linear("head", "s"),
            table_plus_one=pointer(model.table_plus_one, np.int32), table_last=model.table_last,
            exp_steps=float(EXP_STEPS_PER_NAT), layers=ctypes.cast(layers, POINTER),
            kernel=library.kernel, threads=library.threads)
        self._lib = library.lib

    def _linear(self, name: str, scale: str) -> LinearStruct:
        weight, w = self.model.w[f"{name}.w"], self.model.w
        return LinearStruct(pointer(weight.panels, np.int8), pointer(weight.sums, np.int32),
                            pointer(w[f"{name}.{scale}"], np.float32))

    def _layer(self, i: int) -> LayerStruct:
        """Layer i's weights and this cache's arrays, for llama_step.c."""
        model, w, p = self.model, self.model.w, f"layers.{i}"
        local = i in model.local_layers
        tables = "rope_local" if local else "rope"

        def into_residual(norm):  # a sublayer normed before it joins the residual (gemma3): real units till then
            return "s" if f"{p}.{norm}.hg" in w else "sr"

        def optional(name):  # an architecture's extra float32 vector, or NULL
            return pointer(w[name], np.float32) if name in w else None

        return LayerStruct(
            pointer(w[f"{p}.norm1.g"], np.float64), pointer(w[f"{p}.norm2.g"], np.float64),
            self._linear(f"{p}.qkv", "s"), self._linear(f"{p}.o", into_residual("post_attention")),
            self._linear(f"{p}.gate_up", "s"), self._linear(f"{p}.down", into_residual("post_ffw")),
            optional(f"{p}.qkv.b"), optional(f"{p}.q_norm.hg"), optional(f"{p}.k_norm.hg"),
            optional(f"{p}.post_attention.hg"), optional(f"{p}.post_ffw.hg"),
            pointer(w[f"{tables}.cos"], np.float32), pointer(w[f"{tables}.sin"], np.float32),
            model.window if local else 0, pointer(self.k[i], np.int8), pointer(self.v[i], np.int8),
            pointer(self.ks[i], np.float32), pointer(self.vs[i], np.float32), pointer(self.vmax[i], np.float32))

    def hidden(self, streams, positions, tokens) -> np.ndarray:
        """The final residual stream (n, C) float64 of n rows. A stream's rows come in consecutive
        positions starting at most at its cached length (earlier: the later positions are redone,
        as a decoder does after a wrong draft)."""
        streams, positions, tokens = (np.ascontiguousarray(a, dtype=np.int64) for a in (streams, positions, tokens))
        self._check(streams, positions, tokens)
        x = np.empty((len(tokens), self.width), dtype=np.float64)
        self._follow_model_and_library()
        raise_for(self._lib.lmz_llama_hidden(ctypes.byref(self._struct), len(tokens), streams.ctypes.data,
                                             positions.ctypes.data, tokens.ctypes.data, x.ctypes.data))
        for stream, position in zip(streams, positions):
            self.filled[stream] = position + 1
        return x

    def frequencies(self, x: np.ndarray) -> np.ndarray:
        """(n, C) final residual -> (n, V) int32 frequencies."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        freqs = np.empty((len(x), self.vocab), dtype=np.int32)
        self._follow_model_and_library()
        raise_for(self._lib.lmz_llama_frequencies(ctypes.byref(self._struct), len(x), x.ctypes.data,
                                                  freqs.ctypes.data))
        return freqs

    @property
    def kernel_in_use(self) -> int:
        """The kernel the last call ran (the library's at that call)."""
        return self._struct.kernel

    @property
    def threads_in_use(self) -> int:
        return self._struct.threads

    def _follow_model_and_library(self) -> None:
        """The model's recipe as it is now (a decoder adopts each file's: wide rows' largest value,
        or 0), its head's bias, and the library's kernel and threads as they are now (a test may
        choose another)."""
        self._struct.wide_levels = self.model.row_levels if self.model.wide_rows else 0.0
        self._struct.kernel, self._struct.threads = self.model.ops.library.kernel, self.model.ops.library.threads
        bias = self.model.head_bias  # the bias as it is now (a learning predictor changes it in place)
        self._struct.head_bias = None if bias is None else pointer(bias, np.int32)

    def step(self, tokens: np.ndarray) -> np.ndarray:
        """The first len(tokens) streams (finished streams are dropped from the end) -> frequencies."""
        n = len(tokens)
        x = self.hidden(np.arange(n), np.full(n, self.pos), tokens)
        self.pos += 1
        return self.frequencies(x)

    def join(self, n_streams: int, end: int | None = None) -> None:
        """Streams 1 .. n_streams-1 take stream 0's cache up to position ``end`` (default: the
        current step's; rows computed ahead, under guesses, are not its context yet)."""
        self.take_context(self, slice(1, n_streams), self.pos if end is None else end)

    def take_context(self, source: "NativeLlamaRows", streams: slice, end: int) -> None:
        """``streams`` of this cache take ``source``'s stream 0 up to position ``end``."""
        for mine, theirs in zip((self.k, self.v, self.ks, self.vs, self.vmax),
                                (source.k, source.v, source.ks, source.vs, source.vmax)):
            for layer, source_layer in zip(mine, theirs):
                layer[streams, :, :end] = source_layer[0:1, :, :end]
        self.filled[streams] = end

    def _check(self, streams, positions, tokens) -> None:
        """What would make the native code read or write out of bounds, or see a cache it never filled."""
        if not len(streams) == len(positions) == len(tokens):
            raise ValueError("streams, positions and tokens differ in length")
        if not len(tokens):
            return
        if tokens.min() < 0 or tokens.max() >= self.vocab:
            raise ValueError("a token outside the model's vocabulary")
        if streams.min() < 0 or streams.max() >= self.n_streams:
            raise ValueError("a stream beyond the cache's streams")
        if positions.min() < 0 or positions.max() >= self.length:
            raise ValueError("a position beyond the cache (chunk longer than the KV cache)")
        expected = {}
        for stream, position in zip(streams.tolist(), positions.tolist()):
            if position > expected.get(stream, self.filled[stream]):
                raise ValueError(f"stream {stream} skips to position {position}")
            expected[stream] = position + 1


class NativeLlama:
    """An IntLlama on the native backend whose whole-chunk passes (``hidden``, ``frequencies``, as
    IntLlama's) and steps (``stepper``) run in llama_step.c: the same integers, one call a layer
    stack instead of ~30 numpy operations a layer."""

    def __init__(self, model):
        if model.attention_exp[-1] != 0:
            # the native attention skips the positions numpy masks: equal only where they weigh 0
            raise ValueError("an attention table that does not end in 0")
        if model.head_dim > MAX_HEAD_DIM:  # the attention keeps a head's rotation and sums on the stack
            raise ValueError(f"heads of {model.head_dim} wide (the native llama takes up to {MAX_HEAD_DIM})")
        self.model, self.ops, self.cfg, self.context = model, model.ops, model.cfg, model.context
        self.head_rows = NativeLlamaRows(model, 1, 1)  # the head needs no cache

    def hidden(self, idx: np.ndarray) -> np.ndarray:
        """idx (B, T) from position 0 -> the final residual stream (B, T, C)."""
        B, T = idx.shape
        out = np.empty((B, T, self.cfg["hidden_size"]))
        for b in range(B):
            out[b] = NativeLlamaRows(self.model, 1, T).hidden(np.zeros(T), np.arange(T), idx[b])
        return out

    def lead_rows(self, idx: np.ndarray) -> NativeLlamaRows:
        """A one-stream cache of the positions of ``idx`` (from position 0), for ``hidden_after``."""
        rows = NativeLlamaRows(self.model, 1, len(idx))
        rows.hidden(np.zeros(len(idx)), np.arange(len(idx)), idx)
        return rows

    def hidden_after(self, lead: NativeLlamaRows, idx: np.ndarray) -> np.ndarray:
        """The final residual stream (T, C) of the positions after ``lead``'s, reading ``idx`` (T,):
        what ``hidden`` gives for them on the lead's inputs followed by ``idx``, without computing
        the lead's positions again (a block's chunks share them: layout.py)."""
        start = lead.length
        rows = NativeLlamaRows(self.model, 1, start + len(idx))
        rows.take_context(lead, slice(0, 1), start)
        return rows.hidden(np.zeros(len(idx)), np.arange(start, start + len(idx)), idx)

    def frequencies(self, x: np.ndarray) -> np.ndarray:
        return self.head_rows.frequencies(x.reshape(-1, x.shape[-1])).reshape(*x.shape[:-1], -1)

    def use_recipe(self, recipe: int) -> None:
        self.model.use_recipe(recipe)  # its rows read the model's recipe at each call

    def forward(self, idx: np.ndarray) -> np.ndarray:
        return self.frequencies(self.hidden(idx))

    def stepper(self, n_streams: int, n_steps: int) -> NativeLlamaRows:
        return NativeLlamaRows(self.model, n_streams, n_steps)
