"""Shared plumbing for predictors that run a torch model: dtype, threads, device.

Probabilities are a float32 softmax of the logits, computed on the model's
device and copied to a C-contiguous numpy array. Threads are part of the
settings: a decoder adopts the file's thread count, so files move between
machines with different core counts (same library versions and device kind).
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch

from ...errors import FingerprintMismatch, ModelNotAvailable
from ...settings import Settings
from ..base import Measured, Predictor, measured_choice, torch_state
from ..legacy import with_kernels_assumed

DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}
EXTRA_TOKEN_PROBABILITY = 2.0 ** -16  # for bytes the model's vocabulary has no token for


def default_float_dtype() -> str:
    """The dtype a float model loads in before ``plan`` measures the faster one (and online
    updates' products): bf16 where the kernels torch runs compute it in hardware (AVX512-BF16,
    AMX), else float32, since without it `fast` runs ~2x slower in bf16 for the same bits (AVX2
    EPYC). The kernel path decides, not the CPU's flags alone: under ATEN_CPU_CAPABILITY=avx2 (or
    oneDNN held below AVX-512) an AVX-512-BF16 CPU runs AVX2 kernels, which have no bf16 path."""
    return "bf16" if bf16_in_kernels() else "f32"


def bf16_in_kernels() -> bool:
    cpu = torch.cpu
    hardware = cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported()
    onednn = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "ALL").upper()
    onednn_allows = onednn == "ALL" or "AVX512" in onednn and "BF16" in onednn or "AMX" in onednn
    return hardware and cpu_kernels().startswith("avx512") and onednn_allows


def cpu_kernels() -> str:
    """torch's CPU kernel path here (avx512, avx2, default, ...): float results differ between them.
    ATEN_CPU_CAPABILITY chooses a lower one, as on an older CPU."""
    return torch.backends.cpu.get_cpu_capability().lower()


def torch_options(options: dict) -> dict:
    """The loader options a float torch model takes (the given ones only)."""
    return {k: options[k] for k in ("dtype", "device", "threads") if options.get(k)}


def resolve_device(device: str | None) -> str:
    device = device or "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelNotAvailable("--device cuda asked for, but torch sees no CUDA device")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise ModelNotAvailable(f"unknown device {device!r} (use cpu or cuda)")
    return device


class TorchPredictor(Predictor):
    def __init__(self, dtype: str | None = None, device: str | None = None, threads: int | None = None):
        # no dtype asked for: the faster of float32 and bf16 at each file's stream count (plan)
        self.dtype_by_speed = dtype is None
        dtype = dtype or default_float_dtype()
        if dtype not in DTYPES:
            raise ModelNotAvailable(f"unknown dtype {dtype!r} (use {', '.join(DTYPES)})")
        self.dtype_name = dtype
        self.dtype = DTYPES[dtype]
        self.device = resolve_device(device)
        self.threads = threads or torch.get_num_threads()

    def settings(self) -> Settings:
        cuda = self.device.startswith("cuda")
        return Settings(dtype=self.dtype_name, threads=self.threads, device="cuda" if cuda else None,
                        kernels=None if cuda else cpu_kernels())

    def versions(self) -> str:
        return f"torch {torch.__version__}"

    def running(self):
        return torch_state(self.threads, self.device)

    def plan(self, n_streams: int) -> None:
        """The faster dtype for this many streams, measured once per machine and model: memory-bound
        steps (few streams) favour bf16's smaller weights even without bf16 hardware, compute-bound
        ones (many) favour float32 there (SmolLM2 on an AVX2 EPYC: bf16 2x faster at 1 stream,
        2x slower at 32)."""
        if not self.dtype_by_speed or self.device != "cpu":
            return
        streams = 1 << max(n_streams - 1, 0).bit_length()  # powers of two: few measurements
        key = (f"dtype of model {self.weights_hash.hex()}, {streams} streams, {cpu_kernels()}, "
               f"torch {torch.__version__}, {self.threads} threads")
        fastest = measured_choice(key, lambda: self._fastest_dtype(streams))
        if fastest != self.dtype_name:
            self.set_dtype(fastest)

    def _fastest_dtype(self, n_streams: int) -> Measured:
        seconds = {}
        for dtype in ("f32", "bf16"):
            if dtype != self.dtype_name:
                self.set_dtype(dtype)
            seconds[dtype] = self._step_seconds(n_streams)
        fast, slow = sorted(seconds, key=seconds.get)
        return Measured(fast, seconds[slow] / seconds[fast])

    def _step_seconds(self, n_streams: int, steps: int = 4) -> float:
        tokens = np.full(n_streams, self.bos_id, dtype=np.int64)
        with self.running():
            self.start(n_streams, 2 * steps)
            self.step(tokens)  # first-call costs (kernel selection, first touch)
            start = time.perf_counter()
            for _ in range(steps):
                self.step(tokens)
            return (time.perf_counter() - start) / steps

    def adopt(self, settings: Settings) -> None:
        if settings.kernels and settings.kernels != cpu_kernels() and not self.device.startswith("cuda"):
            raise FingerprintMismatch(
                f"made with {settings.kernels} kernels, this machine runs {cpu_kernels()}: a float model's "
                "numbers differ between them; decode it on such a machine, or compress with an integer model")
        if settings.threads:
            self.threads = settings.threads
        if settings.dtype in DTYPES and settings.dtype != self.dtype_name:
            self.set_dtype(settings.dtype)
        if settings.device == "cuda" and not self.device.startswith("cuda"):
            if not torch.cuda.is_available():
                raise FingerprintMismatch("this file was made on a CUDA device; decode it with --device cuda on a GPU")
            self.set_device("cuda")  # the file's device, as its dtype: a CPU would compute other numbers
        if settings.device is None and self.device != "cpu":
            self.set_device("cpu")
        super().adopt(with_kernels_assumed(settings, self.settings().kernels))  # tried here (legacy.py)

    def set_dtype(self, dtype: str) -> None:
        self.dtype_name, self.dtype = dtype, DTYPES[dtype]
        self._place()

    def set_device(self, device: str) -> None:
        self.device = resolve_device(device)
        self._place()

    def _place(self) -> None:
        """Move weights to self.device / self.dtype (subclasses)."""

    def set_tokenizer(self, tokenizer, model_vocab: int) -> None:
        """Adopt a tokenizer; ids at or above ``model_vocab`` are its extra byte ids."""
        if tokenizer.vocab_size - len(getattr(tokenizer, "extra_ids", [])) > model_vocab:
            raise ModelNotAvailable("the tokenizer has more tokens than the model's vocabulary")
        self.tokenizer, self.model_vocab = tokenizer, model_vocab
        self.n_extra = tokenizer.vocab_size - model_vocab if tokenizer.vocab_size > model_vocab else 0
        self.vocab_size = model_vocab + self.n_extra

    def tokens_tensor(self, tokens: np.ndarray) -> torch.Tensor:
        tokens = np.ascontiguousarray(tokens, dtype=np.int64)
        if self.n_extra:  # the model cannot read an extra byte id: it sees the start token
            tokens = np.where(tokens >= self.model_vocab, self.bos_id, tokens)
        return torch.from_numpy(tokens).to(self.device)

    def probabilities(self, logits: torch.Tensor) -> np.ndarray:
        probs = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        if not self.n_extra:
            return np.ascontiguousarray(probs, dtype=np.float32)
        rows = np.empty((probs.shape[0], self.vocab_size), dtype=np.float32)
        rows[:, : self.model_vocab] = probs
        rows[:, self.model_vocab :] = EXTRA_TOKEN_PROBABILITY
        return rows
