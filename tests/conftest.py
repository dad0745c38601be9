"""Tiny seeded models saved to a temporary directory: fast, offline, deterministic."""

from __future__ import annotations

import pytest
import torch

from lmzip.models.gpt import GPT, GPTConfig, save_gpt
from lmzip.tokenize import train_bpe

SAMPLE_TEXT = (
    "The quick brown fox jumps over the lazy dog. Prediction is compression.\r\n"
    "Language models assign probabilities; arithmetic coding turns them into bits.\n"
    "caf\u00e9 na\u00efve \u4e2d\u6587 \U0001F600 tab\tend\n"
) * 20


@pytest.fixture(autouse=True)
def model_coded_blocks(request, monkeypatch):
    """Tiny random models lose to xz or to storing, so with the fallback on most tests
    would never decode a model-coded block. In-process, every block stays model-coded
    except in tests marked ``fallback``; CLI tests pass --no-fallback where it matters."""
    if request.node.get_closest_marker("fallback") is None:
        from lmzip import container

        monkeypatch.setattr(container, "smallest_coding", lambda model_bytes, raw: (container.BLOCK_MODEL, model_bytes))


def tiny_bpe(vocab_size: int = 320):
    return train_bpe([SAMPLE_TEXT], vocab_size)


@pytest.fixture(scope="session")
def tiny_gpt_dir(tmp_path_factory):
    """A 2-layer lmzip-gpt with a small byte-level BPE, random seeded weights."""
    torch.manual_seed(0)
    tok = tiny_bpe()
    directory = tmp_path_factory.mktemp("tiny-gpt")
    (directory / "tokenizer.json").write_text(tok.to_str())
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, context=64, n_layer=2, n_head=2, n_embd=32))
    save_gpt(model, directory, {"bos_id": tok.bos_id})
    return directory


@pytest.fixture(scope="session")
def tiny_byte_gpt_dir(tmp_path_factory):
    """A tiny lmzip-gpt over raw bytes (no tokenizer.json)."""
    torch.manual_seed(1)
    directory = tmp_path_factory.mktemp("tiny-byte-gpt")
    model = GPT(GPTConfig(vocab_size=257, context=32, n_layer=1, n_head=2, n_embd=16))
    save_gpt(model, directory)
    return directory


def _save_hf(model, tok, directory):
    model.save_pretrained(directory)
    (directory / "tokenizer.json").write_text(tok.to_str())
    return directory


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(2)
    tok = tiny_bpe()
    config = LlamaConfig(vocab_size=tok.vocab_size + 4, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=128, bos_token_id=tok.bos_id, eos_token_id=tok.bos_id)
    return _save_hf(LlamaForCausalLM(config), tok, tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(3)
    tok = tiny_bpe()
    config = GPT2Config(vocab_size=tok.vocab_size, n_embd=32, n_layer=2, n_head=2, n_positions=128,
                        bos_token_id=tok.bos_id, eos_token_id=tok.bos_id)
    return _save_hf(GPT2LMHeadModel(config), tok, tmp_path_factory.mktemp("tiny-gpt2"))
