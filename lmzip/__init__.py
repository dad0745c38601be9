"""lmzip: lossless compression with a language model as the predictor.

Pipeline: tokenize -> models (predictor) -> coder -> engine (workers: on Ray) -> container -> cli.

    >>> import lmzip
    >>> blob = lmzip.compress(b"hello", model="order2")
    >>> lmzip.decompress(blob)
    b'hello'
"""

from .api import Stats, compress, compress_stream, decompress, decompress_stream
from .errors import (ChecksumError, FingerprintMismatch, FormatError, LmzipError, ModelError,
                     ModelNotAvailable, WorkerError)
from .workers import WorkerPool  # Ray is imported only when a pool starts

__version__ = "0.16.0"

__all__ = ["compress", "decompress", "compress_stream", "decompress_stream", "Stats", "WorkerPool", "LmzipError",
           "FormatError", "ChecksumError", "ModelError", "ModelNotAvailable", "FingerprintMismatch", "WorkerError"]
