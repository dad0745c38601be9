"""What a decoder must share with a file's maker besides the bytes: the weights, the model's own
settings and the versions of the libraries whose arithmetic the coded bytes depend on. The API
checks them against a header; workers check them against the driver's."""

from __future__ import annotations

from importlib.metadata import version

from .models.base import Predictor


def coded_versions(predictor: Predictor) -> str:
    """The library versions a file's bytes depend on (the header keeps their CRC)."""
    if predictor.capabilities.integer:  # the integer coder and an exact model: no library's arithmetic matters
        return predictor.versions()
    return f"{predictor.versions()} constriction {version('constriction')}"  # the coder's bytes too


def fingerprint(predictor: Predictor) -> tuple:
    """(weights hash, settings, versions): equal fingerprints code equal bytes."""
    return predictor.weights_hash, predictor.settings().to_header(), coded_versions(predictor)
