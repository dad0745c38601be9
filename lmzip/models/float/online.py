"""Online (prequential) coding: the model learns while it codes.

Every token is coded with the weights learned from the tokens before it; after
each group of G lockstep steps the model takes one AdamW step on exactly the
tokens of that group, attending to the chunk's earlier positions through the
keys and values already in the stepper's cache. The decoder decodes the group
with the same weights, then takes the very same step, so no weights are sent:
the compressed size is the area under the training loss curve, and the
description length is that plus the size of the code that trains
(``code_bytes``). Rae, "Compression for AGI"; Bellard's nncp.

Deterministic by construction: fixed seed, fixed threads and dtype, fixed
shapes (the group's active streams are known to both sides). How it trains is
a versioned ``Recipe``, written into the header; a file whose recipe this
lmzip does not have is refused with a message saying so.
"""

from __future__ import annotations

import copy
import hashlib
import json
import lzma
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import FingerprintMismatch, FormatError, ModelNotAvailable
from ...settings import Settings
from ...tokenize import BPETokenizer
from ..base import Capabilities, hash_files
from .gpt import GPT, GPTConfig, KVStepper, load_gpt
from .gpt_predictor import FAST_DIR
from .torch_base import TorchPredictor, default_float_dtype, torch_options

SCRATCH_CONFIG = dict(context=256, n_layer=4, n_head=4, n_embd=256)
PACKAGE_DIR = Path(__file__).resolve().parents[2]


def code_bytes() -> int:
    """Size of lmzip's own source and the tokenizer it codes with, xz-compressed: the |f| of
    the description length (the tokenizer's merges were learned from data, so they count)."""
    files = sorted(PACKAGE_DIR.rglob("*.py")) + [FAST_DIR / "tokenizer.json"]
    sources = b"".join(p.read_bytes() for p in files)
    return len(lzma.compress(sources, preset=9 | lzma.PRESET_EXTREME))


# Recipe 1 (lmzip 0.2.0's last): fused AdamW, the stepper's cached keys/values as the
# update's context, stepping attention over exact spans. 0.2.0 wrote it as
# "lr7e-4.g4.w32.s0.f1.c1.a1[.m1]" ("f1.c1.a1" marks the recipe; w is unused by it), and so
# does this version; a later recipe writes ".r2" and up. Files from earlier 0.x variants
# lack the marker and are refused.
RECIPE_1_MARK = ("f1", "c1", "a1")


@dataclass(frozen=True)
class Recipe:
    lr: float
    group: int = 4  # lockstep steps (tokens per stream) per update
    seed: int = 0
    bf16_updates: bool = False  # the update's products in bf16 under CPU autocast (".m1")

    def to_text(self) -> str:
        window = max(32, self.group)  # unused by recipe 1, written as 0.2.0 did
        return (f"lr{self.lr:g}.g{self.group}.w{window}.s{self.seed}.{'.'.join(RECIPE_1_MARK)}"
                + (".m1" if self.bf16_updates else ""))

    @classmethod
    def parse(cls, text: str) -> "Recipe":
        # fields are a key of letters and a value: "lr0.0007", "g4", "m1"; they are joined by
        # dots, so split only at a dot that a letter follows
        found = {}
        for field in re.split(r"\.(?=[a-z])", text):
            key = field.rstrip("0123456789.e-+")
            found[key] = field[len(key):]
        if any(key == "r" for key in found):
            raise FingerprintMismatch(f"the file was trained with a newer online recipe ({text}): "
                                      "decode it with the lmzip that made it")
        marked = all(found.get(mark[0]) == mark[1:] for mark in RECIPE_1_MARK)
        if not marked or not {"lr", "g", "s"} <= found.keys() or found.keys() - {"lr", "g", "w", "s", "f", "c", "a", "m"}:
            raise FingerprintMismatch(f"the file was made by an older lmzip (online training {text!r}, a "
                                      "development variant before 0.2.0's last), which this version does not replay")
        try:
            return cls(lr=float(found["lr"]), group=int(found["g"]), seed=int(found["s"]),
                       bf16_updates=found.get("m") == "1")
        except ValueError:
            raise FormatError("damaged file (bad training settings)") from None


class OnlinePredictor(TorchPredictor):
    """``online-scratch`` (seeded random init) or ``online-fast`` (adapts the shipped model)."""

    capabilities = Capabilities(learns=True)  # the decoder must replay every update

    def __init__(self, base: str = "scratch", lr: float | None = None, group: int = 4, seed: int = 0,
                 streams: int = 64, bf16_updates: bool | None = None, config: dict | None = None, dtype: str = "f32",
                 **kw):
        """``config``: the scratch model's shape, overriding ``SCRATCH_CONFIG`` (part of the
        model's identity in the header, like the seed)."""
        super().__init__(dtype=dtype, **kw)
        if not (FAST_DIR / "tokenizer.json").exists():
            raise ModelNotAvailable(f"the fast model's tokenizer is missing from {FAST_DIR}")
        if base not in ("scratch", "fast"):
            raise ModelNotAvailable(f"online learning starts from 'scratch' or 'fast', not {base!r}")
        self.base = base
        # 7e-4 from scratch: on 512 KB of training text (sotu) 1.947 bits/byte against 2.021 with 3e-3
        # bf16 products in the updates: 15-26 % less time an update on an AMX CPU; by default only where the
        # CPU has bf16 in hardware (elsewhere bf16 is the slow path). Only on the CPU, where it was
        # measured; a CUDA run stays float32 and says so.
        if bf16_updates is None:
            bf16_updates = default_float_dtype() == "bf16"
        self.recipe = Recipe(lr=lr if lr is not None else (7e-4 if base == "scratch" else 3e-4), group=group,
                             seed=seed, bf16_updates=bf16_updates and self.device == "cpu")
        self.updates = 0
        self.name = f"online-{base}"
        shape = {**SCRATCH_CONFIG, **(config or {})}
        config = json.loads((FAST_DIR / "config.json").read_text()) if base == "fast" else {}
        if base == "fast":
            self.model = load_gpt(FAST_DIR)
        else:
            tok_vocab = BPETokenizer.from_file(FAST_DIR / "tokenizer.json").vocab_size
            with torch.random.fork_rng():  # the seeded init, leaving the caller's random state as it was
                torch.manual_seed(seed)
                self.model = GPT(GPTConfig(vocab_size=tok_vocab, **shape))
        self.model.to(device=self.device, dtype=self.dtype)
        self._first_weights = copy.deepcopy(self.model.state_dict())
        vocab = self.model.cfg.vocab_size
        self.set_tokenizer(BPETokenizer.from_file(FAST_DIR / "tokenizer.json", bos_id=config.get("bos_id"),
                                                  id_limit=vocab), vocab)
        self.default_chunk = self.max_chunk = self.model.cfg.context
        # 64 streams x 4-token groups: 256 tokens an update, and a lockstep step's fixed costs
        # (reading the weights, per-operation overhead) shared by 64 streams. 512 KB of sotu:
        # 1.909 bits/byte at 1,561 tokens/s against 1.926 at 1,395 for 16 x 16
        self.default_streams = streams
        identity = json.dumps([base, shape, seed]).encode()
        files = [FAST_DIR / "tokenizer.json"] + ([FAST_DIR / "model.safetensors"] if base == "fast" else [])
        self._hash = hash_files(files, extra=identity)
        self.losses: list[float] = []  # bits per group, the loss curve
        self.begin_file()

    def _make_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.model.parameters(), lr=self.recipe.lr, betas=(0.9, 0.99), weight_decay=0.0,
                                 fused=True)  # one kernel for all parameters: 3.5 ms an update, foreach 12

    @property
    def weights_hash(self) -> bytes:
        return self._hash

    def settings(self) -> Settings:
        return replace(super().settings(), train=self.recipe.to_text())

    def adopt(self, settings: Settings) -> None:
        """Train as the file's encoder did (learning rate, group, bf16 products); the seed and
        everything else must already match."""
        if settings.train is None:
            raise FingerprintMismatch("the file was not made by an online model")
        recipe = Recipe.parse(settings.train)
        if recipe.seed == self.recipe.seed:
            self.recipe = recipe  # the optimizer is made by begin_file
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
        self.stepper = KVStepper(self.model, n_streams, self.dtype, self.device, exact_spans=True)
        self.history = np.full((n_streams, n_steps + 1), self.bos_id, dtype=np.int64)
        self.t = 0

    def step(self, tokens: np.ndarray) -> np.ndarray:
        return self.probabilities(self.stepper.step(self.tokens_tensor(tokens)))

    def observe(self, coded: np.ndarray, n_active: int) -> None:
        self.history[:n_active, self.t + 1] = coded
        self.t += 1
        if self.t % self.recipe.group == 0:
            self._learn(n_active)

    def _learn(self, n_active: int) -> None:
        """One AdamW step on the last ``group`` tokens of each active stream; the context is
        the cache's keys/values of the positions before the group."""
        end = self.t  # tokens at positions end-group .. end-1 were just coded
        start = end - self.recipe.group
        past = [(k[:n_active, :, :start], v[:n_active, :, :start]) for k, v in zip(self.stepper.k, self.stepper.v)]
        inputs = torch.from_numpy(self.history[:n_active, start:end]).to(self.device)
        targets = torch.from_numpy(self.history[:n_active, start + 1 : end + 1]).to(self.device)
        self.model.train()
        # bf16 autocast (".m1"): the update's products in bf16, its weights, optimizer and loss in
        # float32. With the attention written out (not SDPA) the gradients were bit-identical over
        # every position and stream count, repeated and across processes.
        with torch.enable_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.recipe.bf16_updates):
            logits = self.model(inputs, pos_offset=start, past=past)
            loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.optimizer.step()
            self.updates += 1
        self.model.eval()
        self.losses.append(loss.item() / np.log(2))


def load_online(base: str, **options) -> OnlinePredictor:
    return OnlinePredictor(base, **torch_options(options))
