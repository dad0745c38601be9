"""Tiny seeded models saved to a temporary directory: fast, offline, deterministic."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lmzip.models.float.gpt import GPT, GPTConfig, save_gpt
from lmzip.tokenize import train_bpe

SAMPLE_TEXT = (
    "The quick brown fox jumps over the lazy dog. Prediction is compression.\r\n"
    "Language models assign probabilities; arithmetic coding turns them into bits.\n"
    "caf\u00e9 na\u00efve \u4e2d\u6587 \U0001F600 tab\tend\n"
) * 20


TINY_MODELS = {"tiny_gpt_dir", "tiny_byte_gpt_dir", "tiny_llama_dir", "tiny_gpt2_dir", "tiny_gguf", "tiny_int_llama",
               "tiny_int_llama_dir"}


@pytest.fixture(autouse=True)
def model_coded_blocks(request, monkeypatch):
    """Tiny random models lose to xz or to storing, so with the fallback on, their tests would never
    decode a model-coded block: in tests that use one, every block stays model-coded (in this
    process) unless the test is marked ``fallback``. Tests of the shipped models see the real
    fallback; CLI tests pass --no-fallback where it matters."""
    if TINY_MODELS & set(request.fixturenames) and request.node.get_closest_marker("fallback") is None:
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


# The integer llama's tiny GGUF (test_intllama.py, test_workers.py)
CONFIG = dict(layers=2, hidden=96, ffn=160, heads=4, kv_heads=2, vocab=300, context=128)  # head_dim 24: not a power of 2


def _permute(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's interleaving of q/k rows, which the conversion undoes."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


# byte-level BPE merges for a tiny vocabulary: 256 bytes, these 43 pairs and an end token (300)
_MERGES = [tuple(pair) for pair in "th he in er an re on at en nd ti es or te of ed is it al ar st to nt ng se ha as ou "
           "io le ve co me de hi ri ro ic ne ea ra ce".split()] + [("Ġ", "t")]


# a SentencePiece-style vocabulary: characters, then pieces made of two earlier ones ("▁" is a space)
_PIECES = ("▁ e t a o i n s h r d l ▁t he in er an re on at en nd ▁a ▁s ▁w es or is ▁o ha ed "
           "▁the ▁and ▁he ▁in ▁to ▁on ▁an ▁is her ers").split()


def _add_sentencepiece_vocabulary(writer, size: int) -> None:
    """<unk>, <s>, </s>, the 256 byte tokens <0xNN>, then pieces best first (llama.cpp's token types:
    2 unknown, 3 control, 6 byte, 1 normal), with scores and no merges, as Llama 2's GGUFs."""
    pieces = _PIECES[: size - 259]
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + pieces
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores([0.0] * 259 + [-float(i) for i in range(len(pieces))])
    writer.add_token_types([2, 3, 3] + [6] * 256 + [1] * len(pieces))
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)


def _k_quant_bytes(rows: int, cols: int, kind, rng) -> np.ndarray:
    """Blocks of a K-quant type (the gguf package writes none): random codes, small f16 scales."""
    import gguf

    block, size = gguf.GGML_QUANT_SIZES[kind]
    data = rng.integers(0, 256, size=(rows, cols // block, size), dtype=np.uint8)
    scales = np.array([0.0005, 0.0002], dtype=np.float16).view(np.uint8)
    if kind == gguf.GGMLQuantizationType.Q6_K:
        data[..., -2:] = scales[:2]  # ql, qh, int8 scales, then d
    else:
        data[..., :4] = scales  # d, dmin, then scales and codes
    return data.reshape(rows, -1)


def write_tiny_gguf(path, seed: int = 0, config: dict = CONFIG, kinds: dict | None = None, tokenizer: str | None = None,
                    architecture: str = "llama") -> None:
    """A 2-layer llama GGUF with Q4_1 matrices, a Q8_0 embedding and float32 norms, as SmolLM2's;
    ``kinds``: other weight types by tensor name suffix ("ffn_down" -> Q6_K); ``tokenizer``: the
    vocabulary in the metadata ("gpt2": byte-level BPE, "llama": SentencePiece-style);
    ``architecture`` "qwen2" adds q/k/v biases, "qwen3" q/k norms and ``config["head_dim"]`` wide heads,
    "gemma3" those and norms on each sublayer's output, and a ``config["window"]`` for its windowed
    layers (all keep q/k rows unpermuted, as llama.cpp's converter writes them)."""
    import gguf

    from lmzip.tokenize import byte_to_unicode

    c, rng, kinds = config, np.random.default_rng(seed), kinds or {}
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_block_count(c["layers"])
    writer.add_context_length(c["context"])
    writer.add_embedding_length(c["hidden"])
    writer.add_feed_forward_length(c["ffn"])
    writer.add_head_count(c["heads"])
    writer.add_head_count_kv(c["kv_heads"])
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(1e6 if architecture == "gemma3" else 10000.0)  # gemma3's windows: 10,000
    writer.add_vocab_size(c["vocab"])
    H, KV, C, F = c["heads"], c["kv_heads"], c["hidden"], c["ffn"]
    D = c.get("head_dim") or C // H
    if "head_dim" in c:
        writer.add_key_length(D)
        writer.add_value_length(D)
    if architecture == "gemma3":
        writer.add_sliding_window(c["window"])
    if "softcap" in c:  # Gemma 2's final tanh cap, which lmzip refuses
        writer.add_final_logit_softcapping(c["softcap"])
    if tokenizer == "llama":
        _add_sentencepiece_vocabulary(writer, c["vocab"])
    elif tokenizer:
        merges = _MERGES[: c["vocab"] - 257]
        tokens = [byte_to_unicode()[b] for b in range(256)] + [a + b for a, b in merges] + ["<|endoftext|>"]
        writer.add_tokenizer_model(tokenizer)
        writer.add_tokenizer_pre("smollm")
        writer.add_token_list(tokens)
        writer.add_token_types([1] * (len(tokens) - 1) + [3])
        writer.add_token_merges([f"{a} {b}" for a, b in merges])
        writer.add_bos_token_id(len(tokens) - 1)

    def matrix(name, rows, cols, kind=gguf.GGMLQuantizationType.Q4_1, scale=0.25, transform=None):
        part = name.split(".")[-2]  # blk.0.ffn_down.weight -> ffn_down
        kind = gguf.GGMLQuantizationType[kinds[part]] if part in kinds else kind
        if kind.name.endswith("_K"):
            writer.add_tensor(name, _k_quant_bytes(rows, cols, kind, rng), raw_dtype=kind)
            return
        w = (rng.standard_normal((rows, cols)) * scale).astype(np.float32)
        if transform:
            w = transform(w)
        writer.add_tensor(name, gguf.quants.quantize(w, kind), raw_dtype=None if kind.name == "F16" else kind)

    def vector(name, n):
        if name.split(".")[-2] not in c.get("omit", ()):  # a tensor left out: an incomplete GGUF
            writer.add_tensor(name, (1 + 0.2 * rng.standard_normal(n)).astype(np.float32))

    interleave = architecture == "llama"
    # gemma3 scales its embeddings by sqrt(C): smaller ones, so that its normed sublayers still count
    matrix("token_embd.weight", c["vocab"], C, gguf.GGMLQuantizationType.Q8_0, scale=0.1 if architecture == "gemma3" else 1.0)
    for i in range(c["layers"]):
        vector(f"blk.{i}.attn_norm.weight", C)
        matrix(f"blk.{i}.attn_q.weight", H * D, C, transform=(lambda w: _permute(w, H)) if interleave else None)
        matrix(f"blk.{i}.attn_k.weight", KV * D, C, transform=(lambda w: _permute(w, KV)) if interleave else None)
        matrix(f"blk.{i}.attn_v.weight", KV * D, C)
        if architecture == "qwen2":
            for name, n in (("q", H * D), ("k", KV * D), ("v", KV * D)):
                writer.add_tensor(f"blk.{i}.attn_{name}.bias", (rng.standard_normal(n) * 2).astype(np.float32))
        if architecture in ("qwen3", "gemma3"):
            vector(f"blk.{i}.attn_q_norm.weight", D)
            vector(f"blk.{i}.attn_k_norm.weight", D)
        if architecture == "gemma3":
            vector(f"blk.{i}.post_attention_norm.weight", C)
            vector(f"blk.{i}.post_ffw_norm.weight", C)
        matrix(f"blk.{i}.attn_output.weight", C, H * D)
        vector(f"blk.{i}.ffn_norm.weight", C)
        matrix(f"blk.{i}.ffn_gate.weight", F, C)
        matrix(f"blk.{i}.ffn_up.weight", F, C)
        matrix(f"blk.{i}.ffn_down.weight", C, F)
    vector("output_norm.weight", C)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-gguf") / "tiny.gguf"
    write_tiny_gguf(path)
    return path


@pytest.fixture(scope="session")
def tiny_int_llama(tiny_gguf):
    from lmzip.models.gguf.derive import convert_gguf

    weights, config = convert_gguf(tiny_gguf)
    return weights, config


@pytest.fixture(scope="session")
def tiny_int_llama_dir(tiny_int_llama, tmp_path_factory):
    """An integer llama directory over raw bytes (no tokenizer.json: ids 0-255, start id 256)."""
    from safetensors.numpy import save_file

    weights, config = tiny_int_llama
    directory = tmp_path_factory.mktemp("tiny-int-llama")
    save_file(weights, str(directory / "model.safetensors"))
    (directory / "config.json").write_text(json.dumps(config))
    return directory
