"""Stage 5: the .lmz container.

Layout (integers are LEB128 varints unless a width is given):

    magic      b"LMZ"             3 bytes
    version    FORMAT_VERSION     1 byte
    flags                          1 byte   (bit 0: portable, integer model and coder; others 0)
    model      length + UTF-8     name or path of the model
    weights    4 bytes            SHA-256 prefix of weights + tokenizer
    settings   length + UTF-8     predictor settings, "k=value;..." with short keys (d=dtype, t=threads, v=device; no v: cpu)
    versions   4 bytes            CRC-32 of the library versions the numbers depend on
    chunk      varint             L, tokens per stream
    streams    varint             B, lockstep streams per block
    length     varint             original size in bytes
    tokens     varint             number of coded tokens
    checksum   4 bytes            CRC-32 of the original bytes
    header_crc 4 bytes            CRC-32 of everything above
    blocks     for each block: varint byte count, then the range coder's bytes

The number of blocks and each block's chunk lengths follow from tokens, L and B,
so they are not stored. A damaged header is caught by header_crc before any
decoding; damaged blocks are caught by the checksum after decoding.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO

from .errors import FormatError

MAGIC = b"LMZ"
FORMAT_VERSION = 1
MAX_VARINT_BYTES = 10
FLAG_PORTABLE = 1
SHORT_KEYS = {"dtype": "d", "threads": "t", "device": "v"}
LONG_KEYS = {short: long for long, short in SHORT_KEYS.items()}


def write_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


class _Reader:
    """Reads header fields and keeps the bytes read for the header CRC."""

    def __init__(self, stream: BinaryIO):
        self.stream = stream
        self.seen = bytearray()

    def take(self, n: int, what: str) -> bytes:
        data = self.stream.read(n)
        if len(data) != n:
            raise FormatError(f"truncated file (ends inside the {what})")
        self.seen += data
        return data

    def varint(self, what: str) -> int:
        return read_varint(self, what)


def read_varint(reader, what: str) -> int:
    n = shift = 0
    for _ in range(MAX_VARINT_BYTES):
        byte = reader.take(1, what)[0]
        n |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return n
    raise FormatError(f"damaged file (bad {what})")


def _pack_text(text: str) -> bytes:
    raw = text.encode("utf-8")
    return write_varint(len(raw)) + raw


@dataclass
class Header:
    model: str
    weights_hash: bytes
    settings: dict[str, str]
    versions_crc: int
    chunk: int
    streams: int
    original_length: int
    n_tokens: int
    checksum: int
    flags: int = 0

    @property
    def portable(self) -> bool:
        return bool(self.flags & FLAG_PORTABLE)

    def to_bytes(self) -> bytes:
        settings = ";".join(f"{SHORT_KEYS.get(k, k)}={v}" for k, v in self.settings.items())
        body = b"".join([
            MAGIC, bytes([FORMAT_VERSION, self.flags]),
            _pack_text(self.model), self.weights_hash,
            _pack_text(settings), struct.pack("<I", self.versions_crc),
            write_varint(self.chunk), write_varint(self.streams),
            write_varint(self.original_length), write_varint(self.n_tokens),
            struct.pack("<I", self.checksum),
        ])
        return body + struct.pack("<I", zlib.crc32(body))

    @classmethod
    def read(cls, stream: BinaryIO) -> "Header":
        r = _Reader(stream)
        magic = stream.read(len(MAGIC))
        if magic != MAGIC:
            raise FormatError("not an .lmz file (bad magic bytes)")
        r.seen += magic
        version, flags = r.take(2, "header")
        if version != FORMAT_VERSION:
            raise FormatError(f"unsupported .lmz format version {version} (this lmzip reads {FORMAT_VERSION})")
        model = _read_text(r, "model name")
        weights = r.take(4, "weights hash")
        settings_text = _read_text(r, "settings")
        (versions_crc,) = struct.unpack("<I", r.take(4, "versions"))
        chunk, streams = r.varint("chunk length"), r.varint("stream count")
        length, n_tokens = r.varint("length"), r.varint("token count")
        (checksum,) = struct.unpack("<I", r.take(4, "checksum"))
        body = bytes(r.seen)
        (stored_crc,) = struct.unpack("<I", r.take(4, "header checksum"))
        if zlib.crc32(body) != stored_crc:
            raise FormatError("damaged file (header checksum mismatch)")
        if chunk < 1 or streams < 1 or n_tokens > length:
            raise FormatError("damaged file (impossible header values)")
        pairs = (item.split("=", 1) for item in settings_text.split(";") if "=" in item)
        settings = {LONG_KEYS.get(k, k): v for k, v in pairs}
        return cls(model, weights, settings, versions_crc, chunk, streams, length, n_tokens, checksum, flags)


def _read_text(r: _Reader, what: str) -> str:
    n = r.varint(what)
    if n > 4096:
        raise FormatError(f"damaged file (bad {what})")
    try:
        return r.take(n, what).decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError(f"damaged file (bad {what})") from None


def write_block(stream: BinaryIO, data: bytes) -> int:
    prefix = write_varint(len(data))
    stream.write(prefix)
    stream.write(data)
    return len(prefix) + len(data)


def read_block(stream: BinaryIO, limit: int) -> bytes:
    r = _Reader(stream)
    n = r.varint("block length")
    if n > limit:
        raise FormatError("damaged file (block longer than the file)")
    return r.take(n, "compressed block")


def versions_crc(versions: str) -> int:
    return zlib.crc32(versions.encode())
