"""What a header records about how a predictor computed its numbers: one type, one text form.

Weights are named by the header's hash; everything else that changes the bits
of a probability row is a ``Settings`` field. A predictor reports its own
(``Predictor.settings()``), the container writes them as ``to_header()`` and
reads them back with ``from_header()``, and a decoder ``adopt``s them or
refuses. The text form is ``key=value`` pairs joined by ``;`` in field order,
with short keys for the common ones (``d=bf16;t=2``); an absent field is the
default (no device: the CPU). Files made by lmzip 0.2.0 use the same text. The
mixing recipe is not a predictor's setting but the engine's: the container
keeps it in its own header field (``Header.mix``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from .errors import FormatError, ModelError

# field name -> the key written in headers (short where a field is in most headers)
HEADER_KEYS = {"dtype": "d", "threads": "t", "device": "v", "kernels": "k", "train": "train", "recipe": "r",
               "adapt": "a"}


@dataclass(frozen=True)
class Settings:
    dtype: str | None = None  # float models: f32, bf16 or f16
    threads: int | None = None  # float models: torch's thread count (sums are split by it)
    device: str | None = None  # None: the CPU; "cuda" for a GPU
    kernels: str | None = None  # float models on a CPU: torch's kernel path (avx512, avx2, default)
    train: str | None = None  # learning models: the training recipe (see models/float/online.py)
    recipe: int | None = None  # integer llamas: the arithmetic recipe (integer/llama.py RECIPES); None: the first
    adapt: int | None = None  # integer models: how the head learns while coding (integer/adapt.py); None: not

    def to_header(self) -> str:
        return ";".join(f"{HEADER_KEYS[f.name]}={getattr(self, f.name)}"
                        for f in fields(self) if getattr(self, f.name) is not None)

    @classmethod
    def from_header(cls, text: str) -> "Settings":
        names = {key: name for name, key in HEADER_KEYS.items()}
        values: dict[str, object] = {}
        for item in filter(None, text.split(";")):
            key, sep, value = item.partition("=")
            if not sep:
                raise FormatError("damaged file (bad settings)")
            if key not in names:
                raise ModelError(f"the file records a setting this lmzip does not know ({key!r}): "
                                 "it was made by a newer lmzip")
            values[names[key]] = value
        for name in ("threads", "recipe", "adapt"):
            if name in values:
                if not str(values[name]).isdigit():
                    raise FormatError(f"damaged file (bad {name})")
                values[name] = int(values[name])
        return cls(**values)

    def differences(self, other: "Settings") -> list[str]:
        """'field: file X, here Y' for each field that differs (self is the file's)."""
        return [f"{f.name}: file {getattr(self, f.name)!r}, here {getattr(other, f.name)!r}"
                for f in fields(self) if getattr(self, f.name) != getattr(other, f.name)]
