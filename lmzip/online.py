"""Online (prequential) coding: the model learns while it codes.

Every token is coded with the weights learned from the tokens before it; after
each group of G lockstep steps the model takes one AdamW step on exactly the
tokens of that group, attending to the chunk's earlier positions through the
keys and values already in the stepper's cache (older files
recomputed a window of W tokens instead; they still decode). The decoder
decodes the group with the same weights, then takes the very same step, so no
weights are sent: the compressed size is the area under the training loss
curve, and the description length is that plus the size of the code that
trains (``code_bytes``). Rae, "Compression for AGI"; Bellard's nncp.

Deterministic by construction: fixed seed, fixed threads and dtype, fixed
shapes (the group's active streams are known to both sides). The KV cache of
a chunk keeps the keys and values computed before an update (both sides do
the same), so nothing is recomputed.
"""

from __future__ import annotations

import copy
import hashlib
import json
import lzma
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .errors import ModelNotAvailable
from .models.base import hash_files
from .models.gpt import GPT, GPTConfig, KVStepper, load_gpt
from .models.own import FAST_DIR
from .models.torch_base import TorchPredictor
from .tokenize import BPETokenizer

SCRATCH_CONFIG = dict(context=256, n_layer=4, n_head=4, n_embd=256)
PACKAGE_DIR = Path(__file__).resolve().parent


def code_bytes() -> int:
    """Size of lmzip's own source and the tokenizer it codes with, xz-compressed: the |f| of
    the description length (the tokenizer's merges were learned from data, so they count)."""
    files = sorted(PACKAGE_DIR.rglob("*.py")) + [FAST_DIR / "tokenizer.json"]
    sources = b"".join(p.read_bytes() for p in files)
    return len(lzma.compress(sources, preset=9 | lzma.PRESET_EXTREME))


class OnlinePredictor(TorchPredictor):
    """``online-scratch`` (seeded random init) or ``online-fast`` (adapts the shipped model)."""

    learns = True  # every block is coded by the model: the decoder must replay every update

    def __init__(self, base: str = "scratch", lr: float | None = None, group: int = 4, window: int = 32,
                 seed: int = 0, dtype: str = "f32", streams: int = 64, decay: float | None = None,
                 fused: bool = True, cached_context: bool = True, exact_spans: bool = True,
                 mixed: bool = True, **kw):
        super().__init__(dtype=dtype, **kw)
        if not (FAST_DIR / "tokenizer.json").exists():
            raise ModelNotAvailable(f"the fast model's tokenizer is missing from {FAST_DIR}")
        if base not in ("scratch", "fast"):
            raise ModelNotAvailable(f"online learning starts from 'scratch' or 'fast', not {base!r}")
        self.base, self.group, self.window, self.seed = base, group, max(window, group), seed
        # 7e-4 from scratch: on 512 KB of training text (sotu) 1.947 bits/byte against 2.021 with 3e-3,
        # at +1.2 % on 64 KB; decaying schedules from 3e-3 (below) landed in between
        self.lr = lr if lr is not None else (7e-4 if base == "scratch" else 3e-4)
        # optional schedule lr / sqrt(1 + updates / decay); 0 keeps the rate constant
        self.decay = decay or 0.0
        # fused AdamW: one kernel for all parameters (3.5 ms an update here, foreach 12 ms); files made with
        # the foreach optimizer (before 2026-11-28) say so by having no ".f1" and are replayed with it
        self.fused = fused
        # train with the stepper's cached keys/values of the whole chunk so far as context rather
        # than recomputing a window of `window` tokens (files without ".c1" did that)
        self.cached_context = cached_context
        # stepping attends over exactly the positions so far with plain float32 products rather than
        # SDPA over 128-position buckets (files without ".a1" did that)
        self.exact_spans = exact_spans
        # the update's products in bf16 under CPU autocast: 15-26 % less time an update (".m1"; float32
        # before). Only on the CPU, where it was measured; a CUDA run stays float32 and says so
        self.mixed = mixed and self.device == "cpu"
        self.updates = 0
        self.name = f"online-{base}"
        config = json.loads((FAST_DIR / "config.json").read_text()) if base == "fast" else {}
        torch.manual_seed(seed)
        if base == "fast":
            self.model = load_gpt(FAST_DIR)
        else:
            tok_vocab = BPETokenizer.from_file(FAST_DIR / "tokenizer.json").vocab_size
            self.model = GPT(GPTConfig(vocab_size=tok_vocab, **SCRATCH_CONFIG))
        self.model.to(device=self.device, dtype=self.dtype)
        self._first_weights = copy.deepcopy(self.model.state_dict())
        vocab = self.model.cfg.vocab_size
        self.set_tokenizer(BPETokenizer.from_file(FAST_DIR / "tokenizer.json", bos_id=config.get("bos_id"),
                                                  id_limit=vocab), vocab)
        self.default_chunk = self.max_chunk = self.model.cfg.context
        # 64 streams x 4-token groups: still 256 tokens an update, but a lockstep step's fixed costs
        # (reading the weights, per-operation overhead) are shared by 4x the streams. 512 KB of sotu: 1.909 bits/byte at 1,561 tokens/s against
        # 1.926 at 1,395 for 16 x 16 (the old default; the header records both, so old files decode)
        self.default_streams = streams
        self.optimizer = self._make_optimizer()
        identity = json.dumps([base, SCRATCH_CONFIG, seed]).encode()
        files = [FAST_DIR / "tokenizer.json"] + ([FAST_DIR / "model.safetensors"] if base == "fast" else [])
        self._hash = hash_files(files, extra=identity)
        self.losses: list[float] = []  # bits per group, the loss curve

    def _make_optimizer(self) -> torch.optim.Optimizer:
        kind = {"fused": True} if self.fused else {"foreach": True}
        return torch.optim.AdamW(self.model.parameters(), lr=self.lr, betas=(0.9, 0.99), weight_decay=0.0, **kind)

    @property
    def weights_hash(self) -> bytes:
        return self._hash

    def settings(self) -> dict[str, str]:
        decay = f".d{self.decay:g}" if self.decay else ""  # files from before the schedule have none
        fused = ".f1" if self.fused else ""
        cached = ".c1" if self.cached_context else ""
        exact = ".a1" if self.exact_spans else ""
        mixed = ".m1" if self.mixed else ""
        train = f"lr{self.lr:g}.g{self.group}.w{self.window}.s{self.seed}{decay}{fused}{cached}{exact}{mixed}"
        return {**super().settings(), "train": train}

    def adopt(self, settings: dict[str, str]) -> None:
        """Train as the file's encoder did (learning rate, schedule, group, window, optimizer
        kernel, where its context came from); the seed and everything else must already match."""
        found = dict(re.findall(r"([a-z]+)([-+.\de]+?)(?=\.[a-z]|$)", settings.get("train", "")))
        if found.get("s") == str(self.seed) and {"lr", "g", "w"} <= found.keys():
            self.lr, self.decay = float(found["lr"]), float(found.get("d", 0))
            self.group, self.window = int(found["g"]), int(found["w"])
            self.cached_context = found.get("c") == "1"
            self.exact_spans = found.get("a") == "1"
            self.mixed = found.get("m") == "1"
            self.fused = found.get("f") == "1"  # the optimizer is made by begin_file
        super().adopt(settings)

    def weights_digest(self) -> str:
        digest = hashlib.sha256()
        for name, tensor in sorted(self.model.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]

    def begin_file(self) -> None:
        """Each file is coded from the seeded (or shipped) weights with a fresh optimizer, as its
        decoder will start, even when one predictor codes several files."""
        self.model.load_state_dict(self._first_weights)
        self.optimizer = self._make_optimizer()
        self.updates, self.losses = 0, []

    def start(self, n_streams: int, n_steps: int) -> None:
        self.model.eval()
        self.stepper = KVStepper(self.model, n_streams, self.dtype, self.device, self.exact_spans)
        self.history = np.full((n_streams, n_steps + 1), self.bos_id, dtype=np.int64)
        self.t = 0

    def step(self, tokens: np.ndarray) -> np.ndarray:
        return self.probabilities(self.stepper.step(self.tokens_tensor(tokens)))

    def observe(self, coded: np.ndarray, n_active: int) -> None:
        self.history[:n_active, self.t + 1] = coded
        self.t += 1
        if self.t % self.group == 0:
            self._learn(n_active)

    def _learn(self, n_active: int) -> None:
        """One AdamW step on the last ``group`` tokens of each active stream."""
        end = self.t  # tokens at positions end-group .. end-1 were just coded
        start, past = max(0, end - self.window), None
        if self.cached_context:  # context: the cache's keys/values of positions before the group
            start = end - self.group
            past = [(k[:n_active, :, :start], v[:n_active, :, :start]) for k, v in zip(self.stepper.k, self.stepper.v)]
        inputs = torch.from_numpy(self.history[:n_active, start:end]).to(self.device)
        targets = torch.from_numpy(self.history[:n_active, start + 1 : end + 1]).to(self.device)
        self.model.train()
        # bf16 autocast (".m1"): the update's products in bf16 (AMX), its weights, optimizer and loss in
        # float32. An older training path (SDPA over a recomputed window) desynchronised a 1 MB round trip
        # under autocast; this one, attention written out, gave bit-identical gradients over every
        # position and stream count, repeated and across processes. Files without ".m1" stay float32.
        with torch.enable_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.mixed):
            logits = self.model(inputs, pos_offset=start, last=self.group, past=past)
            loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]),
                                   targets[:, -self.group :].reshape(-1))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            for group in self.optimizer.param_groups:
                group["lr"] = self.lr / (1 + self.updates / self.decay) ** 0.5 if self.decay else self.lr
            self.optimizer.step()
            self.updates += 1
        self.model.eval()
        self.losses.append(loss.item() / np.log(2))
