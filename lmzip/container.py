"""Stage 5: the .lmz container.

A file whose settings are a preset's -- what a default run of a named model writes -- gets the
compact header (version 3, 19-22 bytes):

    magic      b"LMZ"             3 bytes
    version    3                  1 byte
    preset     1 byte             the preset's number * 16 + its mixing tables' bits - 8 (0 unmixed);
                                   number 15: the number is the next byte (presets 16-255)
    fingerprint 4 bytes           CRC-32 of the weights hash and the versions CRC below
    length     varint             original size in bytes
    tokens     varint             number of coded tokens
    checksum   4 bytes            CRC-32 of the original bytes
    header_crc 2 bytes            the low 16 bits of the CRC-32 of everything above
    blocks     as below

Any other file gets the full header (version 2; integers are LEB128 varints unless a width is given):

    magic      b"LMZ"             3 bytes
    version    FORMAT_VERSION     1 byte
    flags                          1 byte   (bit 0: portable, integer model and coder; others 0)
    model      length + UTF-8     name or path of the model
    weights    4 bytes            SHA-256 prefix of weights + tokenizer
    settings   length + UTF-8     predictor settings (settings.py): "k=value;..." (d=dtype, t=threads, v=device, train),
                                   then the engine's, not the model's: the lead, if any, as "l=P"
                                   (layout.py), and the mixing recipe, if any, as a last "m=..."
    versions   4 bytes            CRC-32 of the library versions the numbers depend on
    chunk      varint             L, tokens per stream
    streams    varint             B, lockstep streams per block
    length     varint             original size in bytes
    tokens     varint             number of coded tokens
    checksum   4 bytes            CRC-32 of the original bytes
    header_crc 4 bytes            CRC-32 of everything above
    blocks     for each block: varint (byte count * 4 + method), then its bytes

Block methods: 0 the model's range-coder bytes; 1 the block's bytes stored as
they are; 2 the block's bytes as raw LZMA2 (xz -9e). The encoder falls back to
1 or 2 where the model would cost more (binary data under a text model), so a
file never grows much beyond its size or xz's. Format version 1 (read, no
longer written) had no method bits: every block was the model's.

The number of blocks and each block's chunk lengths follow from tokens, L, B and the lead
(``layout.block_layout``), so they are not stored. A damaged header is caught
by header_crc before any decoding; damaged blocks are caught by the checksum
after decoding. ``Writer`` writes a file (choosing each block's method),
``Reader`` reads one block by block.
"""

from __future__ import annotations

import dataclasses
import io
import lzma
import re
import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Iterator

from .errors import FormatError, ModelError
from .layout import FileLayout
from .mixing.setting import CARRIED, MIX_VERSION
from .settings import Settings

MAGIC = b"LMZ"
FORMAT_VERSION = 3  # the newest written: compact where a preset fits, else FULL
FULL, COMPACT = 2, 3
READABLE_VERSIONS = (1, 2, 3)
BLOCK_MODEL, BLOCK_STORED, BLOCK_XZ = 0, 1, 2
XZ_PRESET = 9 | lzma.PRESET_EXTREME
MAX_VARINT_BYTES = 10
FLAG_PORTABLE = 1
MIX_KEY = "m"  # the mixing recipe's key among a full header's settings
LEAD_KEY = "l"  # the layout's lead's (files before 0.15.0 have none: no lead)
EXTENDED = 15  # a preset byte's number that says the number is the next byte
METHOD_NAMES = {BLOCK_MODEL: "model", BLOCK_STORED: "stored", BLOCK_XZ: "xz"}


@dataclass(frozen=True)
class Preset:
    """What a default run of a model writes besides its fingerprint and sizes."""
    model: str
    flags: int
    chunk: int
    streams: int
    mixed: bool  # mixing with the carried history (``cm2-t<bits>-c``), else none
    settings: Settings = Settings()  # the predictor's (an integer llama's recipe)
    lead: int = 0  # layout.py's


# Numbered forever: a compact header names its preset by number (new ones take new numbers).
_RECIPE2 = Settings(recipe=2)
_ADAPT1 = Settings(recipe=2, adapt=1)
PRESETS = {1: Preset("smollm2", FLAG_PORTABLE, 2048, 32, mixed=True),
           2: Preset("smollm2", FLAG_PORTABLE, 2048, 32, mixed=False),
           3: Preset("fast", FLAG_PORTABLE, 512, 128, mixed=True),
           4: Preset("fast", FLAG_PORTABLE, 512, 128, mixed=False),
           5: Preset("gemma3-270m", FLAG_PORTABLE, 2048, 32, mixed=True),
           6: Preset("gemma3-270m", FLAG_PORTABLE, 2048, 32, mixed=False),
           7: Preset("smollm2", FLAG_PORTABLE, 2048, 32, mixed=True, settings=_RECIPE2),
           8: Preset("smollm2", FLAG_PORTABLE, 2048, 32, mixed=False, settings=_RECIPE2),
           9: Preset("gemma3-270m", FLAG_PORTABLE, 2048, 32, mixed=True, settings=_RECIPE2),
           10: Preset("gemma3-270m", FLAG_PORTABLE, 2048, 32, mixed=False, settings=_RECIPE2),
           # levels 7-9 (models.LEVELS: smollm2's longer chunks), mixed as every level is by default
           11: Preset("smollm2", FLAG_PORTABLE, 3072, 32, mixed=True, settings=_RECIPE2),
           12: Preset("smollm2", FLAG_PORTABLE, 4096, 32, mixed=True, settings=_RECIPE2),
           13: Preset("smollm2", FLAG_PORTABLE, 8192, 32, mixed=True, settings=_RECIPE2),
           # 0.15.0: a lead of 256 tokens (layout.py); 14 the default, in the preset byte itself
           14: Preset("smollm2", FLAG_PORTABLE, 2048, 32, mixed=True, settings=_RECIPE2, lead=256),
           # numbers from 16 take a byte more (EXTENDED)
           16: Preset("smollm2", FLAG_PORTABLE, 2048, 32, mixed=False, settings=_RECIPE2, lead=256),
           17: Preset("smollm2", FLAG_PORTABLE, 3072, 32, mixed=True, settings=_RECIPE2, lead=256),
           18: Preset("smollm2", FLAG_PORTABLE, 4096, 32, mixed=True, settings=_RECIPE2, lead=256),
           19: Preset("gemma3-270m", FLAG_PORTABLE, 2048, 32, mixed=True, settings=_RECIPE2, lead=256),
           20: Preset("gemma3-270m", FLAG_PORTABLE, 2048, 32, mixed=False, settings=_RECIPE2, lead=256),
           # 0.16.0: SmolLM2's head learns while it codes (integer/adapt.py recipe 1), at every level
           21: Preset("smollm2", FLAG_PORTABLE, 2048, 32, mixed=True, settings=_ADAPT1, lead=256),
           22: Preset("smollm2", FLAG_PORTABLE, 2048, 32, mixed=False, settings=_ADAPT1, lead=256),
           23: Preset("smollm2", FLAG_PORTABLE, 3072, 32, mixed=True, settings=_ADAPT1, lead=256),
           24: Preset("smollm2", FLAG_PORTABLE, 4096, 32, mixed=True, settings=_ADAPT1, lead=256),
           25: Preset("smollm2", FLAG_PORTABLE, 8192, 32, mixed=True, settings=_ADAPT1)}
MIN_TABLE_BITS = 8  # a compact header's mixing tables: 2^8 .. 2^23 entries (4 bits)


def _preset_mix(bits: int) -> str:
    return f"{MIX_VERSION}-t{bits}{CARRIED}"


def joint_fingerprint(weights_hash: bytes, versions: int) -> int:
    """The compact header's one check of the weights and the versions: equal for equal pairs."""
    return zlib.crc32(weights_hash + struct.pack("<I", versions))


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
    weights_hash: bytes | None  # None in a compact header: ``fingerprint`` checks it with the versions
    settings: Settings
    versions_crc: int | None
    chunk: int
    streams: int
    original_length: int
    n_tokens: int
    checksum: int
    flags: int = 0
    mix: str | None = None  # the engine's mixing recipe (mixing.setting), None: the model alone
    lead: int = 0  # the layout's (layout.py)
    version: int | None = None  # as read from a file; None: COMPACT where a preset fits, else FULL
    fingerprint: int | None = None  # a compact header's joint_fingerprint, as read

    def __post_init__(self):
        if self.version is None:
            self.version = COMPACT if self.preset_byte() is not None else FULL

    @property
    def portable(self) -> bool:
        return bool(self.flags & FLAG_PORTABLE)

    def joint_fingerprint(self) -> int:
        if self.fingerprint is not None:
            return self.fingerprint
        return joint_fingerprint(self.weights_hash, self.versions_crc)

    def _preset(self) -> tuple[int, int] | None:
        """(the preset's number, the preset byte's low 4 bits) for these settings, or None where no
        preset fits."""
        layout = (self.model, self.flags, self.chunk, self.streams, self.lead, self.settings)
        for number, preset in PRESETS.items():
            if (preset.model, preset.flags, preset.chunk, preset.streams, preset.lead, preset.settings) != layout:
                continue
            if not preset.mixed and self.mix is None:
                return number, 0
            if preset.mixed:
                for bits in range(MIN_TABLE_BITS, MIN_TABLE_BITS + 16):
                    if self.mix == _preset_mix(bits):
                        return number, bits - MIN_TABLE_BITS
        return None

    def preset_byte(self) -> int | None:
        """The compact header's preset byte for these settings (a preset number above 15 follows it:
        ``preset_bytes``), or None where no preset fits."""
        found = self._preset()
        return None if found is None else min(found[0], EXTENDED) << 4 | found[1]

    def preset_bytes(self) -> bytes:
        """The preset byte, and the preset's number after it where it is above 15."""
        found = self._preset()
        if found is None:
            raise ValueError("a compact header needs a preset's settings")
        number, bits = found
        return bytes([number << 4 | bits]) if number < EXTENDED else bytes([EXTENDED << 4 | bits, number])

    def to_bytes(self) -> bytes:
        if self.version == COMPACT:
            return self._compact_bytes()
        settings = ";".join(filter(None, [self.settings.to_header(), self.lead and f"{LEAD_KEY}={self.lead}",
                                          self.mix and f"{MIX_KEY}={self.mix}"]))
        body = b"".join([
            MAGIC, bytes([self.version, self.flags]),
            _pack_text(self.model), self.weights_hash,
            _pack_text(settings), struct.pack("<I", self.versions_crc),
            write_varint(self.chunk), write_varint(self.streams),
            write_varint(self.original_length), write_varint(self.n_tokens),
            struct.pack("<I", self.checksum),
        ])
        return body + struct.pack("<I", zlib.crc32(body))

    def _compact_bytes(self) -> bytes:
        body = b"".join([MAGIC, bytes([COMPACT]), self.preset_bytes(), struct.pack("<I", self.joint_fingerprint()),
                         write_varint(self.original_length), write_varint(self.n_tokens),
                         struct.pack("<I", self.checksum)])
        return body + struct.pack("<H", zlib.crc32(body) & 0xFFFF)

    @classmethod
    def read(cls, stream: BinaryIO) -> "Header":
        r = _Reader(stream)
        magic = stream.read(len(MAGIC))
        if magic != MAGIC:
            raise FormatError("not an .lmz file (bad magic bytes)")
        r.seen += magic
        version, flags = r.take(2, "header")
        if version not in READABLE_VERSIONS:
            raise FormatError(f"unsupported .lmz format version {version} "
                              f"(this lmzip reads {', '.join(map(str, READABLE_VERSIONS))})")
        if version == COMPACT:
            return cls._read_compact(r, preset_byte=flags)
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
        settings_text, mix, lead = _split_engine(settings_text)
        return cls(model, weights, Settings.from_header(settings_text), versions_crc, chunk, streams, length,
                   n_tokens, checksum, flags, mix=mix, lead=lead, version=version)

    @classmethod
    def _read_compact(cls, r: _Reader, preset_byte: int) -> "Header":
        number = preset_byte >> 4
        if number == EXTENDED:
            number = r.take(1, "preset")[0]
            if number <= EXTENDED:  # such a number has the preset byte's own 4 bits
                raise FormatError("damaged file (bad preset)")
        (fingerprint,) = struct.unpack("<I", r.take(4, "fingerprint"))
        length, n_tokens = r.varint("length"), r.varint("token count")
        (checksum,) = struct.unpack("<I", r.take(4, "checksum"))
        body = bytes(r.seen)
        (stored_crc,) = struct.unpack("<H", r.take(2, "header checksum"))
        if zlib.crc32(body) & 0xFFFF != stored_crc:
            raise FormatError("damaged file (header checksum mismatch)")
        if n_tokens > length:
            raise FormatError("damaged file (impossible header values)")
        preset = PRESETS.get(number)
        if preset is None:
            raise ModelError(f"the file names preset {number}, which this lmzip does not know: "
                             "it was made by a newer lmzip")
        bits = preset_byte & 15
        if not preset.mixed and bits:
            raise FormatError("damaged file (bad preset)")
        mix = _preset_mix(bits + MIN_TABLE_BITS) if preset.mixed else None
        return cls(preset.model, None, preset.settings, None, preset.chunk, preset.streams, length, n_tokens, checksum,
                   preset.flags, mix=mix, lead=preset.lead, version=COMPACT, fingerprint=fingerprint)


def _split_engine(settings_text: str) -> tuple[str, str | None, int]:
    """A full header's settings text as (the predictor's settings, the mixing recipe, the lead). The
    engine's come last; files up to 0.11.0 wrote the mixing recipe as a setting, also the last: the
    same bytes. A file without a lead (any before 0.15.0) has none."""
    items = [item for item in settings_text.split(";") if item]
    engine = {MIX_KEY: [], LEAD_KEY: []}
    for item in items:
        key, _, value = item.partition("=")
        if key in engine:
            engine[key].append(value)
    if any(len(values) > 1 for values in engine.values()) or not all(
            re.fullmatch("[1-9][0-9]*", v, re.ASCII) for v in engine[LEAD_KEY]):  # as written: none, or 1..
        raise FormatError("damaged file (bad settings)")
    predictor = ";".join(item for item in items if item.partition("=")[0] not in engine)
    return predictor, (engine[MIX_KEY] or [None])[0], int((engine[LEAD_KEY] or [0])[0])


def _read_text(r: _Reader, what: str) -> str:
    n = r.varint(what)
    if n > 4096:
        raise FormatError(f"damaged file (bad {what})")
    try:
        return r.take(n, what).decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError(f"damaged file (bad {what})") from None


def write_block(stream: BinaryIO, data: bytes, method: int = BLOCK_MODEL) -> int:
    prefix = write_varint(len(data) * 4 + method)
    stream.write(prefix)
    stream.write(data)
    return len(prefix) + len(data)


def read_block(stream: BinaryIO, version: int, limit: int) -> tuple[int, bytes]:
    """(method, bytes) of the next block; ``limit`` bounds its size (a damaged length fails early)."""
    r = _Reader(stream)
    n = r.varint("block length")
    method, n = (BLOCK_MODEL, n) if version == 1 else (n & 3, n >> 2)
    if method > BLOCK_XZ:
        raise FormatError("damaged file (unknown block method)")
    if n > limit:
        raise FormatError("damaged file (block longer than the file)")
    return method, r.take(n, "compressed block")


def smallest_coding(model_bytes: bytes, raw: bytes) -> tuple[int, bytes]:
    """The block's cheapest method: the model's bytes, the data xz-compressed, or the data
    stored (xz costs ~0.05 s per 200 KB block, under 1 % of the model's time)."""
    method, data = raw_coding(raw)
    return (method, data) if len(data) < len(model_bytes) else (BLOCK_MODEL, model_bytes)


def raw_coding(raw: bytes) -> tuple[int, bytes]:
    """``raw`` xz -9e compressed, or stored where that is smaller."""
    packed = lzma.compress(raw, format=lzma.FORMAT_RAW, filters=_xz_filters(len(raw)))
    return (BLOCK_STORED, raw) if len(raw) < len(packed) else (BLOCK_XZ, packed)


def _xz_filters(size: int) -> list[dict]:
    """xz -9e with a dictionary just big enough for ``size`` bytes: the same output as
    the 64 MiB one, without its ~700 MB of encoder memory. A decoder given the bound
    of the whole file's size has a dictionary at least as large, which is all it needs."""
    dict_size = min(max(1 << max(size - 1, 1).bit_length(), 1 << 12), 1 << 26)
    return [{"id": lzma.FILTER_LZMA2, "preset": XZ_PRESET, "dict_size": dict_size}]


def unpack_block(method: int, data: bytes, max_length: int) -> bytes:
    """A stored or xz block's bytes (at most ``max_length``: more means damage)."""
    if method == BLOCK_STORED:
        out = data
    else:
        decompressor = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=_xz_filters(max_length))
        try:
            out = decompressor.decompress(data, max_length=max_length + 1)
        except lzma.LZMAError:
            raise FormatError("damaged file (bad xz block)") from None
    if len(out) > max_length:
        raise FormatError("damaged file (block decodes to more bytes than stored)")
    return out


def versions_crc(versions: str) -> int:
    return zlib.crc32(versions.encode())


class Writer:
    """Writes an .lmz file: the header, then each block the cheapest way.

    With ``fallback``, a block that the model codes in more bytes than xz -9e or
    than the block itself is written that way. The file is then assembled in
    memory (at most about the input's size), so that where some block fell back,
    xz over the whole file can replace it if smaller: per-block xz sees ~200 KB at
    a time, and files the model does not know (binaries, markup) gain from more.
    """

    def __init__(self, dest: BinaryIO, header: Header, fallback: bool):
        self.dest, self.header, self.fallback = dest, header, fallback
        self.out = io.BytesIO() if fallback else dest
        head = header.to_bytes()
        self.out.write(head)
        self.size, self.header_bytes = len(head), len(head)
        self.raw_blocks: list[bytes] = []
        self.fallback_blocks = 0
        self.whole_file = False  # the file became one xz block

    def add(self, model_bytes: bytes, raw: bytes | None = None) -> int:
        """The next block: the model's coded bytes and, with fallback, the block's original bytes.
        Returns the block's method (BLOCK_MODEL unless it fell back)."""
        method, data = BLOCK_MODEL, model_bytes
        if self.fallback:
            self.raw_blocks.append(raw)
            method, data = smallest_coding(model_bytes, raw)
            self.fallback_blocks += method != BLOCK_MODEL
        self.size += write_block(self.out, data, method)
        return method

    def close(self) -> int:
        """Finish the file; returns its size in bytes."""
        if self.fallback:
            blob = self.out.getvalue()
            # only where xz or storing already beat the model somewhere (whole-file xz -9e of a text the
            # model codes well would cost seconds and never win); one block is already its whole-file xz
            if len(self.raw_blocks) > 1 and self.fallback_blocks:
                blob = self._smaller_as_one_xz_block(blob)
            self.dest.write(blob)
            self.size = len(blob)
        return self.size

    def _smaller_as_one_xz_block(self, blob: bytes) -> bytes:
        """``blob``, or the same header with one block holding the whole file xz-compressed. No new
        format: a stream count covering every chunk makes the file a single block."""
        header = self.header
        every_chunk = FileLayout.of(header.n_tokens, header.chunk, header.n_tokens, header.lead).first_block_streams
        one_block = dataclasses.replace(header, streams=every_chunk, version=None)  # compact where a preset fits
        packed = io.BytesIO()
        packed.write(head := one_block.to_bytes())
        method, data = raw_coding(b"".join(self.raw_blocks))
        write_block(packed, data, method)
        if packed.tell() >= len(blob):
            return blob
        self.header, self.header_bytes = one_block, len(head)
        self.fallback_blocks, self.whole_file = 1, True
        return packed.getvalue()


class Reader:
    """Reads an .lmz file: ``header``, then ``blocks()`` in order."""

    def __init__(self, source: BinaryIO):
        self.source = source
        self.header = header = Header.read(source)
        self.layout = FileLayout.of(header.n_tokens, header.chunk, header.streams, header.lead)

    def blocks(self) -> Iterator[tuple[tuple[int, ...], int, bytes]]:
        """(the block's chunk lengths, method, bytes) for each block; then checks the file ends."""
        header = self.header
        for lengths in self.layout.blocks:
            # a model block holds a few bytes a token, a stored/xz block at most the file's bytes
            limit = 4 * sum(lengths) + 64 + header.original_length
            method, data = read_block(self.source, header.version, limit)
            yield lengths, method, data
        if self.source.read(1):
            raise FormatError("damaged file (trailing data after the last block)")

    def method_counts(self) -> dict[str, int]:
        """How many blocks each method coded (reads the blocks, decodes nothing)."""
        counts = dict.fromkeys(METHOD_NAMES.values(), 0)
        for _, method, _ in self.blocks():
            counts[METHOD_NAMES[method]] += 1
        return counts
