"""Stage 3: range coding of symbols under rows of probabilities (constriction).

One coder serves all lockstep streams of a block: each call codes one symbol
per row, rows in order. Contract (constriction 0.5, 24-bit precision):
probability rows must be C-contiguous float32; they need not sum to 1 exactly
(constriction normalises); a zero entry still gets the minimum probability.
The coded words are little-endian uint32; up to three trailing zero bytes of
the last word are dropped and restored on reading.
"""

from __future__ import annotations

import numpy as np
import constriction

from .errors import ChecksumError

_FAMILY = constriction.stream.model.Categorical(perfect=False)  # perfect=True is ~1000x slower


def _check_rows(probs: np.ndarray) -> None:
    # constriction silently misreads Fortran-ordered arrays: refuse them here.
    if probs.dtype != np.float32 or not probs.flags.c_contiguous or probs.ndim != 2:
        raise ValueError("probability rows must be a C-contiguous float32 (n, V) array")


class Encoder:
    def __init__(self):
        self._coder = constriction.stream.queue.RangeEncoder()

    def encode(self, symbols: np.ndarray, probs: np.ndarray) -> None:
        _check_rows(probs)
        self._coder.encode(np.ascontiguousarray(symbols, dtype=np.int32), _FAMILY, probs)

    def finish(self) -> bytes:
        raw = self._coder.get_compressed().astype("<u4").tobytes()
        keep = len(raw)
        while keep > len(raw) - 3 and keep > 0 and raw[keep - 1] == 0:
            keep -= 1
        return raw[:keep]


class Decoder:
    def __init__(self, data: bytes):
        padded = data + b"\0" * (-len(data) % 4)
        self._coder = constriction.stream.queue.RangeDecoder(np.frombuffer(padded, dtype="<u4").astype(np.uint32))

    def decode(self, probs: np.ndarray) -> np.ndarray:
        _check_rows(probs)
        try:
            return self._coder.decode(_FAMILY, probs)
        except Exception as exc:  # constriction reports damaged words as errors
            raise ChecksumError(f"damaged compressed data ({exc})") from None


# --- The integer range coder for portable models -----------------------------
# Portable predictors give integer frequencies (each >= 1, totals below 2^40);
# coding them needs nothing but integer arithmetic, so the bytes are the same
# on any machine. A 64-bit range coder after LZMA's (carries through a cached
# byte); the range stays >= 2^56, so range // total keeps >= 16 bits.

_BITS = 64
_TOP = 1 << (_BITS - 8)
_MASK = (1 << _BITS) - 1
_MAX_TOTAL = 1 << 40


SUM_BLOCK = 64  # frequencies summed 64 at a time to find a token's cumulative frequency


def token_intervals(freqs: np.ndarray, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(low, size, total) of each token's interval under its row of integer frequencies: what the
    encoder codes, whether it steps or takes a whole chunk's rows at once.

    low, the sum of the frequencies below the token, adds whole blocks of SUM_BLOCK first: a row's
    block sums, then the token's block up to it. Integer sums, so exactly a cumulative sum's
    figures, without one over every row (49,152 wide for SmolLM2, the largest cost of its pass).
    """
    n, width = freqs.shape
    rows = np.arange(n)
    full = width // SUM_BLOCK * SUM_BLOCK
    block_sums = freqs[:, :full].reshape(n, -1, SUM_BLOCK).sum(axis=2, dtype=np.int64)
    below_block = np.concatenate([np.zeros((n, 1), dtype=np.int64), np.cumsum(block_sums, axis=1)], axis=1)
    total = below_block[:, -1] + freqs[:, full:].sum(axis=1, dtype=np.int64)
    start = tokens // SUM_BLOCK * SUM_BLOCK
    offsets = np.arange(SUM_BLOCK)
    window = freqs[rows[:, None], np.minimum(start[:, None] + offsets, width - 1)].astype(np.int64)
    low = below_block[rows, tokens // SUM_BLOCK] + (window * (offsets < (tokens - start)[:, None])).sum(axis=1)
    return low, freqs[rows, tokens].astype(np.int64), total


def _check_frequency_rows(freqs: np.ndarray) -> None:
    if freqs.dtype not in (np.int32, np.int64) or freqs.ndim != 2:
        raise ValueError("frequency rows must be an int32 or int64 (n, V) array")


def _cumulative(freqs: np.ndarray) -> np.ndarray:
    """Cumulative rows, for the decoder's search. Unchecked: the decoder gets the very rows the
    encoder checked (same predictor, same inputs)."""
    _check_frequency_rows(freqs)
    return np.cumsum(freqs, axis=1, dtype=np.int64)


class IntegerEncoder:
    def __init__(self):
        self.low, self.range = 0, _MASK
        self.cache, self.pending = 0, 0  # pending: 0xFF bytes waiting for a possible carry
        self.out = bytearray()
        self.first = True  # the first byte shifted out is always 0: not written

    def _shift_low(self) -> None:
        low = self.low
        if low < (0xFF << (_BITS - 8)) or low > _MASK:
            carry = low >> _BITS
            if not self.first:
                self.out.append((self.cache + carry) & 0xFF)
            self.first = False
            self.out.extend(bytes([(0xFF + carry) & 0xFF]) * self.pending)
            self.pending = 0
            self.cache = (low >> (_BITS - 8)) & 0xFF
        else:
            self.pending += 1
        self.low = (low << 8) & _MASK

    def encode(self, symbols: np.ndarray, freqs: np.ndarray) -> None:
        """Code one symbol a row; the rows are checked here (>= 1, totals below 2^40)."""
        _check_frequency_rows(freqs)
        lows, sizes, totals = token_intervals(freqs, np.asarray(symbols, dtype=np.int64))
        if (freqs < 1).any() or (totals >= _MAX_TOTAL).any():
            raise ValueError("frequencies must be >= 1 with totals below 2^40")
        self.encode_intervals(lows, sizes, totals)

    def encode_intervals(self, lows: np.ndarray, sizes: np.ndarray, totals: np.ndarray) -> None:
        """Code symbols given as [low, low + size) out of total."""
        for low, size, total in zip(lows.tolist(), sizes.tolist(), totals.tolist()):
            r = self.range // total
            self.low += r * low
            self.range = r * size
            while self.range < _TOP:
                self.range <<= 8
                self._shift_low()

    def finish(self) -> bytes:
        for _ in range(_BITS // 8 + 1):
            self._shift_low()
        return bytes(self.out).rstrip(b"\0")  # the decoder reads zeros past the end


class IntegerDecoder:
    def __init__(self, data: bytes):
        self.data, self.at = data, 0
        self.range, self.code = _MASK, 0
        for _ in range(_BITS // 8):
            self.code = (self.code << 8) | self._byte()

    def _byte(self) -> int:
        at = self.at
        self.at += 1
        return self.data[at] if at < len(self.data) else 0

    def decode(self, freqs: np.ndarray) -> np.ndarray:
        cum = _cumulative(freqs)
        out = np.empty(len(freqs), dtype=np.int64)
        for i, row in enumerate(cum):
            total = int(row[-1])
            r = self.range // total
            target = self.code // r
            if target >= total:
                raise ChecksumError("damaged compressed data (code outside the coded range)")
            symbol = int(np.searchsorted(row, target, side="right"))
            size = int(freqs[i, symbol])
            self._narrow(r, int(row[symbol]) - size, size)
            out[i] = symbol
        return out

    def decode_binary(self, p: int, total: int) -> bool:
        """One decision coded as the interval [0, p) (True) or [p, total) (False) out of ``total``:
        what ``decode`` of the row [p, total - p] gives, without the arrays."""
        r = self.range // total
        target = self.code // r
        if target >= total:
            raise ChecksumError("damaged compressed data (code outside the coded range)")
        first = target < p
        self._narrow(r, 0 if first else p, p if first else total - p)
        return first

    def _narrow(self, r: int, low: int, size: int) -> None:
        self.code -= r * low
        self.range = r * size
        while self.range < _TOP:
            self.range <<= 8
            self.code = ((self.code << 8) | self._byte()) & _MASK
