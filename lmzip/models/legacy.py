"""What files of lmzip 0.2.0 and 0.3.0 need to decode, in one place.

- 0.2.0 and 0.3.0 named the float models "fast" and "smollm2" (no integer flag in the header), and
  0.2.0/0.3.0's integer fast model "fast-portable".
- 0.2.0 recorded no CPU kernel path for float files: this machine's is assumed, and a checksum
  mismatch is then explained as the likely reason rather than as damage.

(0.2.0's online training recipe 1 lives with the other recipes, in online.py.)
"""

from __future__ import annotations

from dataclasses import replace

from ..settings import Settings

ALIASES = {"fast-portable": "fast"}  # the integer fast model's name in lmzip 0.2.0 and 0.3.0
# a file without the integer flag that names one of these was made by its float model
FLOAT_OF = {"fast": "fast-float", "smollm2": "smollm2-float"}


def model_for_file(name: str, integer: bool) -> str:
    """The model that decodes a file whose header names ``name`` (with or without the integer flag)."""
    if not integer and name in FLOAT_OF:
        return FLOAT_OF[name]
    return ALIASES.get(name, name)


def with_kernels_assumed(settings: Settings, here: str) -> Settings:
    """A 0.2.0 float file's settings, with this machine's kernel path where it recorded none."""
    return replace(settings, kernels=here) if settings.kernels is None else settings


def checksum_failure_reason(settings: Settings) -> str | None:
    """Why a float file of lmzip 0.2.0 most likely fails its checksum here, or None for other files."""
    if settings.dtype and settings.kernels is None and not settings.device:
        return ("this float model's file, made by lmzip 0.2.0, records no CPU kernel path, and this machine's "
                "arithmetic likely differs from its maker's; decode it on a machine like that one "
                "(or the file is damaged)")
    return None
