import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmzip.tokenize import BPETokenizer, ByteTokenizer
from conftest import SAMPLE_TEXT, tiny_bpe

CASES = [
    b"",
    b"a",
    b"hello world\r\nsecond line\r\n",
    "caf\u00e9 \u4e2d\u6587 \U0001F600 \u0394".encode(),
    b"valid \xff\xfe invalid \xc3 truncated \xe2\x82",
    bytes(range(256)) * 2,
    b"<|bos|> looks like a special token",
]


@pytest.fixture(scope="module")
def bpe():
    return tiny_bpe()


@pytest.mark.parametrize("data", CASES + [os.urandom(4096)])
def test_bpe_round_trip(bpe, data):
    ids = bpe.encode(data)
    assert ids.dtype == np.int32
    assert bpe.decode(ids) == data
    assert all(0 <= i < bpe.vocab_size for i in ids)


@pytest.mark.parametrize("data", CASES)
def test_byte_tokenizer_round_trip(data):
    tok = ByteTokenizer()
    assert tok.decode(tok.encode(data)) == data
    assert len(tok.encode(data)) == len(data)


def test_bpe_compresses_text(bpe):
    text = SAMPLE_TEXT.encode()
    assert len(bpe.encode(text)) < 0.75 * len(text)


def test_invalid_utf8_falls_back_to_byte_tokens(bpe):
    ids = bpe.encode(b"\xff\xfe")
    assert list(ids) == [bpe.byte_ids[0xFF], bpe.byte_ids[0xFE]]


def test_missing_byte_tokens_get_extra_ids():
    from tokenizers import Tokenizer, models, pre_tokenizers

    from lmzip.tokenize import byte_to_unicode

    alphabet = byte_to_unicode()
    vocab = {alphabet[b]: i for i, b in enumerate(b for b in range(256) if b not in (4, 200))}
    vocab["<s>"] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe = BPETokenizer(tok, id_limit=300)
    assert bpe.extra_ids == [300, 301]
    data = b"a\x04b\xc8c"
    ids = bpe.encode(data)
    assert 300 in ids and 301 in ids
    assert bpe.decode(ids) == data


def test_a_character_without_a_token_does_not_turn_its_text_into_bytes():
    """A control byte the vocabulary lacks is coded as its extra id; the text around it keeps its
    BPE tokens (it used to fall back to one id per byte for the whole piece)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    from lmzip.tokenize import byte_to_unicode

    alphabet = byte_to_unicode()
    vocab = {alphabet[b]: i for i, b in enumerate(b for b in range(256) if b != 4)}
    merges = [(alphabet[ord("a")], alphabet[ord("b")])]
    vocab["ab"] = len(vocab)
    vocab["<s>"] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe = BPETokenizer(tok, id_limit=300)
    data = b"abab\x04\x04ab"
    ids = bpe.encode(data)
    assert list(ids) == [vocab["ab"], vocab["ab"], 300, 300, vocab["ab"]]
    assert bpe.decode(ids) == data


@pytest.mark.parametrize("piece", [7, 64, 1 << 20])
def test_read_tokens_cuts_pieces_after_newlines_and_gives_the_whole_input_s_ids(monkeypatch, piece):
    """Pieces of READ_PIECE bytes (1 MiB), cut after their last newline so that no UTF-8 character
    or word is split: the ids are the lines' own, and the length and CRC the whole input's. A line
    longer than a piece (7 bytes here) is cut where the piece ends, and still round-trips."""
    import io
    import zlib

    from lmzip import tokenize

    monkeypatch.setattr(tokenize, "READ_PIECE", piece)
    tok = tiny_bpe()
    text = ("é\u00e8 naïve café\n" * 9).encode() + b"no newline at all " * 5 + "ü".encode()
    data = text * (1 + (1 << 20) // len(text)) if piece == 1 << 20 else text  # more than one real piece
    whole = [tok.encode(line) for line in data.splitlines(keepends=True)]
    ids, length, crc = tokenize.read_tokens(tok, io.BytesIO(data))
    if piece > 100:  # every line fits in a piece
        assert ids.tolist() == np.concatenate(whole).tolist()
    assert (length, crc) == (len(data), zlib.crc32(data))
    assert tok.decode(ids.tolist()) == data


# -- vocabularies read from GGUF metadata ---------------------------------------------------------

@pytest.fixture(scope="module", params=["llama", "gpt2"])
def gguf_tokenizer(request, tmp_path_factory):
    """(the lossless tokenizer, transformers' own) from a tiny GGUF's vocabulary: SentencePiece-style
    ("llama": ▁ and <0xNN> byte tokens, merges from scores) or byte-level ("gpt2")."""
    from transformers import AutoTokenizer

    from conftest import write_tiny_gguf
    from lmzip.models.gguf.files import save_tokenizer
    from lmzip.models.float.hf import quiet_transformers

    folder, out = tmp_path_factory.mktemp(f"vocabulary-{request.param}"), tmp_path_factory.mktemp("tokenizer")
    write_tiny_gguf(folder / "tiny.gguf", tokenizer=request.param)
    save_tokenizer(folder / "tiny.gguf", out)
    with quiet_transformers():
        reference = AutoTokenizer.from_pretrained(folder, gguf_file="tiny.gguf")
    return BPETokenizer.from_file(out / "tokenizer.json", bos_id=1, id_limit=300), reference


_PIECES_AND_BYTES = st.one_of(
    st.binary(max_size=600),
    st.lists(st.sampled_from(list("the and\r\n\x00\t ▁é中") + ["<0x41>", "<s>", "</s>", "<unk>"]), max_size=200)
    .map(lambda parts: "".join(parts).encode("utf-8")),
    st.tuples(st.binary(min_size=1, max_size=4), st.integers(1, 400)).map(lambda t: t[0] * t[1]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=_PIECES_AND_BYTES)
def test_gguf_vocabularies_round_trip_any_bytes(gguf_tokenizer, data):
    tokenizer, _ = gguf_tokenizer
    ids = tokenizer.encode(data)
    assert tokenizer.decode(ids) == data
    assert all(0 <= i < tokenizer.vocab_size for i in ids.tolist())


def test_a_literal_space_piece_costs_only_its_own_bytes(gguf_tokenizer):
    """"▁" (U+2581) in a text would come back as a space from a SentencePiece vocabulary: it is coded as
    its three bytes, and the text around it still as pieces."""
    tokenizer, _ = gguf_tokenizer
    text = "the hat and the ▁ in the heart ▁▁ her other ones " * 20
    ids = tokenizer.encode(text.encode())
    assert tokenizer.decode(ids) == text.encode()
    assert len(ids) < 0.8 * len(text.encode())  # pieces, not every byte on its own


def test_gguf_vocabularies_split_english_as_their_reference_tokenizer(gguf_tokenizer):
    """The ids are transformers' for the same vocabulary. lmzip adds no "▁" before a text (the
    reference's SentencePiece does, where the text has no space of its own): given one, they agree."""
    tokenizer, reference = gguf_tokenizer
    text = " " + SAMPLE_TEXT[:3000]
    ids = tokenizer.encode(text.encode()).tolist()
    assert ids == reference(text, add_special_tokens=False)["input_ids"]
    assert sum(len(tokenizer.decode([i])) > 1 for i in ids) > 200  # pieces, not single bytes


def test_token_bytes_follow_the_byte_level_alphabet():
    """Every token of the alphabet's characters is its bytes; a token with any other character (a
    space, a control character, one beyond Latin-1) is None: as the character-by-character map."""
    from lmzip.tokenize import byte_to_unicode

    alphabet = byte_to_unicode()
    reverse = {c: b for b, c in alphabet.items()}
    vocab = {"".join(alphabet[b] for b in bytes(range(256))): 0, "<s>": 1, "a b": 2, "\x01": 3, "中": 4,
             alphabet[0] + alphabet[255] + alphabet[ord(" ")]: 5, "Ā": 6, "\u00ad": 7, alphabet[0xAD]: 8}
    got = BPETokenizer._build_token_bytes(vocab, 10)
    for token, idx in vocab.items():
        expected = bytes(reverse[c] for c in token) if all(c in reverse for c in token) else None
        assert got[idx] == expected, token
    assert got[0] == bytes(range(256)) and got[2] is None and got[9] is None
