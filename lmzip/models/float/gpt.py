"""lmzip's own decoder-only transformer, in one readable file (after nanoGPT).

RMSNorm, learned absolute positions, ReLU^2 MLP, tied embeddings, no biases.
``GPT.forward`` is the teacher-forced pass used for training; ``KVStepper`` is
the lockstep path used for coding: a preallocated KV cache, one token per
stream per step, no allocation that grows with the position.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import attention_span, causal_row

MODEL_TYPE = "lmzip-gpt"


@dataclass
class GPTConfig:
    vocab_size: int = 8192
    context: int = 512
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 256

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (x32 * self.weight.float()).to(x.dtype)


class Attention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head, self.head_dim = cfg.n_head, cfg.head_dim
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=False)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)

    def _split_heads(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        shape = (B, T, self.n_head, self.head_dim)
        return (t.view(shape).transpose(1, 2) for t in (q, k, v))  # each (B, H, T, hd)

    def forward(self, x, past_k=None, past_v=None):
        """x: (B, T, C). ``past_k``/``past_v`` (B, H, P, hd): keys and values of P earlier
        positions (a stepper's cache, constants here) that every position attends to."""
        B, T, C = x.shape
        q, k, v = self._split_heads(x)
        if past_k is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, hd)
        else:
            y = self._attend_with_past(q, k, v, past_k, past_v)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))

    def _attend_with_past(self, q, k, v, past_k, past_v):
        """Causal attention over constant past keys/values and the T new ones. Written out
        (not SDPA over concatenated keys) so the backward pass skips the past's gradients:
        SDPA's took 4x the time of the rest of the attention."""
        T, P = q.shape[2], past_k.shape[2]
        scale = 1.0 / math.sqrt(self.head_dim)
        future = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(diagonal=1)
        scores_new = (q @ k.transpose(-1, -2) * scale).masked_fill(future, float("-inf"))
        scores = torch.cat([q @ past_k.transpose(-1, -2) * scale, scores_new], dim=-1)
        weights = torch.softmax(scores.float(), dim=-1).to(q.dtype)
        return weights[..., :P] @ past_v + weights[..., P:] @ v

    def step(self, x, k_cache, v_cache, pos: int, mask):
        """x: (B, 1, C); caches: (B, H, context, hd), filled up to ``pos``; mask: (1, span),
        or None to attend over exactly positions 0..pos with plain products.

        In bf16, SDPA's CPU kernel is ~3x faster here than matmul-softmax-matmul; in
        float32 the plain products over exactly pos + 1 positions are faster than SDPA
        over a bucket (no oneDNN kernel per shape there). Either result depends on the
        thread count, which the header fixes.
        """
        B, _, C = x.shape
        q, k, v = self._split_heads(x)
        k_cache[:, :, pos : pos + 1] = k
        v_cache[:, :, pos : pos + 1] = v
        if mask is None:
            keys, values = k_cache[:, :, : pos + 1], v_cache[:, :, : pos + 1]
            scores = (q @ keys.transpose(-1, -2)) * (1.0 / math.sqrt(self.head_dim))
            y = torch.softmax(scores, dim=-1) @ values
        else:
            span = mask.shape[-1]
            y = F.scaled_dot_product_attention(q, k_cache[:, :, :span], v_cache[:, :, :span], attn_mask=mask)
        return self.proj(y.transpose(1, 2).reshape(B, 1, C))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=False)
        self.proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=False)

    def forward(self, x):
        return self.proj(F.relu(self.fc(x)).square())


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.norm1, self.attn = RMSNorm(cfg.n_embd), Attention(cfg)
        self.norm2, self.mlp = RMSNorm(cfg.n_embd), MLP(cfg)

    def forward(self, x, past_k=None, past_v=None):
        x = x + self.attn(self.norm1(x), past_k, past_v)
        return x + self.mlp(self.norm2(x))

    def step(self, x, k_cache, v_cache, pos: int, mask):
        x = x + self.attn.step(self.norm1(x), k_cache, v_cache, pos, mask)
        return x + self.mlp(self.norm2(x))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.context, cfg.n_embd)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm_f = RMSNorm(cfg.n_embd)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):  # GPT-2's scaled init of residual projections
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def logits(self, x):
        return self.norm_f(x) @ self.wte.weight.t()  # tied embeddings

    def forward(self, idx, pos_offset: int = 0, last: int | None = None, past=None):
        """idx: (B, T) token ids at positions pos_offset.. -> logits (B, T, vocab),
        or of the ``last`` positions only (the head is the widest layer).

        ``past``: per layer (keys, values) of positions 0..pos_offset-1, attended to as
        constants (online learning reads them from the stepper's cache).
        """
        T = idx.shape[1]
        pos = torch.arange(pos_offset, pos_offset + T, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for layer, block in enumerate(self.blocks):
            x = block(x, *past[layer]) if past else block(x)
        return self.logits(x if last is None else x[:, -last:])

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


class KVStepper:
    """Steps B streams one token at a time through ``model`` with a fixed cache."""

    def __init__(self, model: GPT, n_streams: int, dtype: torch.dtype, device="cpu", exact_spans: bool = False):
        cfg = model.cfg
        self.model, self.exact_spans = model, exact_spans
        shape = (n_streams, cfg.n_head, cfg.context, cfg.head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(cfg.n_layer)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(cfg.n_layer)]
        self.pos = 0

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens: (B,) int64 -> next-token logits (B, vocab) float32."""
        model = self.model
        if self.pos >= model.cfg.context:
            raise ValueError("chunk longer than the model's context")
        x = model.wte(tokens[:, None]) + model.wpe.weight[self.pos]
        mask = None
        if not self.exact_spans:
            mask = causal_row(self.pos, attention_span(self.pos, model.cfg.context), x.dtype, x.device)
        for layer, block in enumerate(model.blocks):
            x = block.step(x, self.k[layer], self.v[layer], self.pos, mask)
        self.pos += 1
        return model.logits(x)[:, 0].float()


def save_gpt(model: GPT, directory: Path, extra_config: dict | None = None, dtype=torch.float32):
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = {"model_type": MODEL_TYPE, **asdict(model.cfg), **(extra_config or {})}
    (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    state = {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(directory / "model.safetensors"))


def load_gpt(directory: Path) -> GPT:
    from safetensors.torch import load_file

    directory = Path(directory)
    config = json.loads((directory / "config.json").read_text())
    fields = {k: config[k] for k in GPTConfig.__dataclass_fields__}
    model = GPT(GPTConfig(**fields))
    state = load_file(str(directory / "model.safetensors"))
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval()
