"""What the header says of mixing: the recipe, its tables' size and whether the history is carried
across blocks (``cm2-t20-c``); older recipes are refused with the lmzip that decodes them."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ModelError


MIX_VERSION = "cm2"
TABLE_BITS = 20  # entries per n-gram table at most (a block holds 64K tokens by default): 4 MB each
CARRIED = "-c"  # the setting's suffix for a history carried across blocks
# recipes of earlier releases, refused with one line: what made the file, and the lmzip that decodes it
RETIRED = {"match1": ("lmzip 0.5's match model", "0.5"), "cm1": ("lmzip 0.6-0.7's recipe cm1", "0.7")}


@dataclass(frozen=True)
class MixSetting:
    table_bits: int  # 2^table_bits entries per n-gram table
    carried: bool  # the history runs across the file's blocks (else every block starts afresh)


def mix_setting(history_tokens: int | None = None, carried: bool = True) -> str:
    """The header's ``m=`` value: the recipe, its tables' size and the history's scope. Tables hold
    2^TABLE_BITS entries, or fewer where the history holds fewer tokens (16 slots a token, at least
    2^12): a small file does not pay for clearing tables it would never fill."""
    bits = TABLE_BITS if history_tokens is None else min(TABLE_BITS, max(12, (16 * history_tokens - 1).bit_length()))
    return f"{MIX_VERSION}-t{bits}{CARRIED if carried else ''}"


def mix_setting_for(integer: bool, n_tokens: int, chunk: int, streams: int, mix: bool = True,
                    independent: bool = False) -> str | None:
    """The header's mix setting for a file, or None: only integer models are mixed (their
    frequencies are what the mixer reads), with tables sized to the tokens the history holds (the
    file's, or a block's where blocks are ``independent``)."""
    if not (mix and integer):
        return None
    return mix_setting(min(n_tokens, chunk * streams) if independent else n_tokens, carried=not independent)


def parse_mix_setting(text: str) -> MixSetting:
    """A header's mix setting, or ModelError for a mixer this lmzip does not know."""
    version, _, tables = text.partition("-t")
    if version in RETIRED:
        made_by, decoder = RETIRED[version]
        raise ModelError(f"the file was mixed by {made_by}, which this lmzip no longer decodes: "
                         f"decompress it with lmzip {decoder}")
    carried = tables.endswith(CARRIED)
    tables = tables.removesuffix(CARRIED)
    if version != MIX_VERSION or not tables.isdigit() or not 8 <= int(tables) <= 26:
        raise ModelError(f"the file mixes with {text!r}, which this lmzip does not know: "
                         "it was made by a newer lmzip")
    return MixSetting(int(tables), carried)
