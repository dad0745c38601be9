"""Stage 1: bytes <-> token ids, lossless for any input.

Two tokenizers share one contract:
- ``encode(data: bytes) -> np.ndarray[int32]`` and ``decode(ids) -> bytes``;
  ``decode(encode(x)) == x`` for every byte string ``x`` (empty, binary,
  invalid UTF-8, CRLF, ...).
- ``vocab_size`` counts every id the tokenizer can emit; ``bos_id`` is the id
  fed to the model before the first token of a chunk (it is never coded).

``ByteTokenizer`` maps each byte to its own id. ``BPETokenizer`` wraps a BPE
from Hugging Face ``tokenizers``, spelled either byte-level (GPT-2's alphabet:
SmolLM2, Llama 3, Qwen) or SentencePiece-style ("▁" for a space, ``<0xNN>``
byte tokens: Llama 2, Mistral, Gemma): valid UTF-8 goes through the
BPE; bytes that are not valid UTF-8, or any stretch whose BPE ids do not give
the same bytes back, are coded as the BPE's single-byte tokens (byte fallback).
Decoding never asks the BPE: it concatenates each id's bytes from a table.
Some vocabularies lack a token for a few byte values (SmolLM2 has none for
most control bytes); those bytes get extra ids above the model's vocabulary
(``extra_ids``), which the predictor codes with a small fixed probability.
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np

_ESCAPED_RUN = re.compile("([\udc80-\udcff]+)")
_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")  # a SentencePiece byte token
SPACE_PIECE = "\u2581"  # "▁": a space in SentencePiece spelling


@lru_cache(maxsize=1)
def byte_to_unicode() -> dict[int, str]:
    """GPT-2's byte-level alphabet: one printable character per byte value."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars)}


def spell_piece(token: str) -> bytes:
    """A SentencePiece token's bytes: <0xNN> is that byte, "▁" a space, anything else its UTF-8."""
    byte = _BYTE_PIECE.fullmatch(token)
    return bytes([int(byte.group(1), 16)]) if byte else token.replace(SPACE_PIECE, " ").encode()


class ByteTokenizer:
    """One id per byte value; id 256 is the start-of-chunk token."""

    name = "bytes"
    vocab_size = 257
    bos_id = 256

    def encode(self, data: bytes) -> np.ndarray:
        return np.frombuffer(data, dtype=np.uint8).astype(np.int32)

    def decode(self, ids) -> bytes:
        return np.asarray(ids, dtype=np.uint8).tobytes()

    @property
    def fingerprint(self) -> str:
        return "bytes"


class BPETokenizer:
    """A BPE (``tokenizers.Tokenizer``) with exact byte fallback, spelled byte-level or, where the
    BPE falls back to ``<0xNN>`` tokens itself, SentencePiece-style."""

    name = "bpe"

    def __init__(self, tokenizer, bos_id: int | None = None, fingerprint: str | None = None,
                 id_limit: int = 0):
        pieces = bool(getattr(tokenizer.model, "byte_fallback", False))
        self._tok = tokenizer = without_prefix_space(tokenizer) if pieces else tokenizer
        vocab = tokenizer.get_vocab(with_added_tokens=True)
        base = max(max(vocab.values()) + 1, id_limit)
        self._token_bytes = (self._piece_token_bytes if pieces else self._build_token_bytes)(vocab, base)
        self.byte_ids, self.extra_ids = self._build_byte_ids(vocab, base, pieces)
        self._token_bytes += [bytes([b]) for b in range(256) if self.byte_ids[b] >= base]
        # ASCII characters the vocabulary has no token for (SmolLM2: most control bytes): the BPE
        # cannot encode them, so they are cut out of the text and coded as byte ids, and the text
        # around them still goes through the BPE
        missing = "".join(re.escape(chr(b)) for b in range(128) if self.byte_ids[b] >= base)
        # and in SentencePiece spelling "▁" itself: it would come back as a space
        missing += SPACE_PIECE if pieces else ""
        self._untokenizable = re.compile(f"([{missing}]+)") if missing else None
        self.vocab_size = base + len(self.extra_ids)
        self.bos_id = bos_id if bos_id is not None else self._guess_bos(vocab)
        self._fingerprint = fingerprint or hashlib.sha256(
            tokenizer.to_str().encode()).hexdigest()[:16]

    @classmethod
    def from_file(cls, path: str | Path, bos_id: int | None = None, id_limit: int = 0) -> "BPETokenizer":
        """``id_limit``: the model's vocabulary size; extra byte ids start at or above it."""
        from tokenizers import Tokenizer

        text = Path(path).read_text(encoding="utf-8")
        fingerprint = hashlib.sha256(text.encode()).hexdigest()[:16]
        return cls(Tokenizer.from_str(text), bos_id=bos_id, fingerprint=fingerprint, id_limit=id_limit)

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @staticmethod
    def _build_token_bytes(vocab: dict[str, int], size: int) -> list[bytes | None]:
        # each alphabet character to its byte as a Latin-1 character, every other character below
        # 256 to one Latin-1 cannot encode: one translate and one encode a token, in C (a Python
        # loop over the characters took ~0.1 s of every start with SmolLM2's 49,152 tokens)
        to_byte = {ord(c): b for b, c in byte_to_unicode().items()}
        to_byte.update({c: 0xFFFF for c in range(256) if c not in to_byte})
        table: list[bytes | None] = [None] * size
        for token, idx in vocab.items():
            try:
                table[idx] = token.translate(to_byte).encode("latin-1")
            except UnicodeEncodeError:
                table[idx] = None  # not byte-level (e.g. a special token): never emitted
        return table

    @staticmethod
    def _piece_token_bytes(vocab: dict[str, int], size: int) -> list[bytes | None]:
        """Every id's bytes in SentencePiece spelling."""
        table: list[bytes | None] = [None] * size
        for token, idx in vocab.items():
            table[idx] = spell_piece(token)
        return table

    @staticmethod
    def _build_byte_ids(vocab: dict[str, int], base: int, pieces: bool) -> tuple[np.ndarray, list[int]]:
        """Each byte value's single-byte token, or an extra id from ``base`` on."""
        found = BPETokenizer._piece_byte_ids(vocab) if pieces else {
            b: vocab[c] for b, c in byte_to_unicode().items() if c in vocab}
        if len(found) < 128:
            raise ValueError("tokenizer is not a byte-level BPE and has no byte fallback")
        ids, extra = np.zeros(256, dtype=np.int32), []
        for b in range(256):
            if b in found:
                ids[b] = found[b]
            else:
                ids[b] = base + len(extra)
                extra.append(int(ids[b]))
        return ids, extra

    @staticmethod
    def _piece_byte_ids(vocab: dict[str, int]) -> dict[int, int]:
        """SentencePiece: the <0xNN> tokens, except where a piece spells the byte itself ("a", "▁"
        for a space): the model saw those pieces, never <0x61>. The lowest id where two do."""
        found: dict[int, int] = {}
        pieces: dict[int, int] = {}
        for token, idx in sorted(vocab.items(), key=lambda item: item[1]):
            spelled = spell_piece(token)
            if len(spelled) == 1:
                (found if _BYTE_PIECE.fullmatch(token) else pieces).setdefault(spelled[0], idx)
        return found | pieces

    @staticmethod
    def _guess_bos(vocab: dict[str, int]) -> int:
        for name in ("<|bos|>", "<s>", "<|endoftext|>", "<|im_start|>"):
            if name in vocab:
                return vocab[name]
        raise ValueError("tokenizer has no start token; pass bos_id")

    def encode(self, data: bytes) -> np.ndarray:
        text = data.decode("utf-8", "surrogateescape")
        out: list[np.ndarray] = []
        for i, piece in enumerate(_ESCAPED_RUN.split(text)):
            if not piece:
                continue
            if i % 2:  # a run of bytes that are not valid UTF-8
                raw = bytes(ord(c) - 0xDC00 for c in piece)
                out.append(self.byte_ids[np.frombuffer(raw, dtype=np.uint8)])
            else:
                out.append(self._encode_text(piece))
        if not out:
            return np.zeros(0, dtype=np.int32)
        return np.concatenate(out).astype(np.int32)

    def _encode_text(self, text: str) -> np.ndarray:
        if self._untokenizable is not None and self._untokenizable.search(text):
            pieces = self._untokenizable.split(text)  # text, untokenizable run, text, ...
            return np.concatenate([self.byte_ids[np.frombuffer(piece.encode(), dtype=np.uint8)] if i % 2
                                   else self._encode_text(piece) for i, piece in enumerate(pieces)])
        ids = self._tok.encode(text, add_special_tokens=False).ids
        raw = text.encode("utf-8")
        if self._join(ids) != raw:  # normalisation or an odd token: fall back to bytes
            return self.byte_ids[np.frombuffer(raw, dtype=np.uint8)]
        return np.asarray(ids, dtype=np.int32)

    def _join(self, ids) -> bytes | None:
        table = self._token_bytes
        try:
            return b"".join(table[i] for i in ids)
        except TypeError:
            return None

    def decode(self, ids) -> bytes:
        out = self._join(int(i) for i in ids)
        if out is None:
            raise ValueError("token id without bytes in the stream")
        return out

    def to_str(self) -> str:
        return self._tok.to_str()

    def table_digest(self) -> bytes:
        """SHA-256 of what decoding depends on: every id's bytes, the start id and the vocabulary size
        (not how text is split into tokens: another split only changes the compressed size)."""
        digest = hashlib.sha256(f"{self.vocab_size} {self.bos_id}".encode())
        for token in self._token_bytes:
            digest.update(b"-" if token is None else len(token).to_bytes(2, "little") + token)
        return digest.digest()


def without_prefix_space(tokenizer):
    """A SentencePiece-style tokenizer that adds no "▁" before a text (Metaspace's prepend, a
    Prepend normalizer): lmzip codes the text's own bytes, and a piece that gained a space would
    fall back to single bytes."""
    from tokenizers import Tokenizer

    keys = ("normalizer", "pre_tokenizer")
    # each step alone first: the whole tokenizer's JSON costs 1.5 s for Gemma's 262k tokens
    steps = {key: json.loads(getattr(tokenizer, key).__getstate__()) if getattr(tokenizer, key) else None
             for key in keys}
    if all(_no_prepend(step) == step for step in steps.values()):
        return tokenizer
    spec = json.loads(tokenizer.to_str())
    return Tokenizer.from_str(json.dumps({**spec, **{key: _no_prepend(spec[key]) for key in keys}}))


def _no_prepend(step: dict | None) -> dict | None:
    if step is None or step["type"] == "Prepend":
        return None
    if step["type"] == "Metaspace":
        return {**step, "prepend_scheme": "never"}
    for key in ("normalizers", "pretokenizers"):
        if key in step:  # a Sequence
            return {**step, key: [s for s in map(_no_prepend, step[key]) if s is not None]}
    return step


def load_tokenizer(model_dir: Path, config: dict, id_limit: int = 0):
    """The tokenizer a model directory names: ``tokenizer.json`` or raw bytes."""
    path = model_dir / "tokenizer.json"
    if path.exists():
        return BPETokenizer.from_file(path, bos_id=config.get("bos_id"), id_limit=id_limit)
    return ByteTokenizer()


def train_bpe(texts, vocab_size: int, bos_token: str = "<|bos|>"):
    """Train a byte-level BPE whose base alphabet is all 256 bytes."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[bos_token],
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return BPETokenizer(tok, bos_id=tok.token_to_id(bos_token))


READ_PIECE = 1 << 20  # bytes tokenized at a time (cut after a newline when there is one)


def read_tokens(tokenizer, source) -> tuple[np.ndarray, int, int]:
    """Tokenize a stream piece by piece: (ids, byte count, CRC-32).

    Pieces end after a newline where there is one, so UTF-8 characters stay
    whole; memory holds the ids and one piece, not the input.
    """
    pieces, carry, crc, length = [], b"", 0, 0
    while data := source.read(READ_PIECE):
        crc, length = zlib.crc32(data, crc), length + len(data)
        buf = carry + data
        cut = buf.rfind(b"\n") + 1 or len(buf)
        pieces.append(tokenizer.encode(buf[:cut]))
        carry = buf[cut:]
    if carry:
        pieces.append(tokenizer.encode(carry))
    ids = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int32)
    return ids.astype(np.int32), length, crc
