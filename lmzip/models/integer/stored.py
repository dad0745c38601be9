"""An integer model directory's stored arrays and config, as every integer family reads them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def read_stored(directory: Path) -> tuple[dict[str, np.ndarray], dict]:
    directory = Path(directory)
    return _read_tensors(directory / "model.safetensors"), json.loads((directory / "config.json").read_text())


def _read_tensors(path: Path) -> dict[str, np.ndarray]:
    """The file's tensors, read (pread) into their arrays: mapping the file instead held its pages
    beside the copies, twice its size at once (SmolLM2's start peaked at 521 MB, 269 read).
    safetensors before 0.8 has only the mapping."""
    from safetensors.numpy import load_file

    try:
        return load_file(str(path), backend="pread")
    except TypeError:  # no backend argument
        return load_file(str(path))
