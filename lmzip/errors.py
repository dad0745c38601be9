"""Exceptions lmzip raises; each carries a message a person can act on.

The command line maps each class to a documented exit status.
"""


class LmzipError(Exception):
    exit_code = 1


class InputOutputError(LmzipError):
    """Input missing or unreadable, output exists, write failure (exit 1)."""

    exit_code = 1


class FormatError(LmzipError):
    """Not an .lmz file, unsupported version, truncated or damaged data (exit 2)."""

    exit_code = 2


class ChecksumError(FormatError):
    """Decoding gave wrong data: the checksum, the length, an impossible token or coder state (exit 2).
    The file is damaged, or the model computed other numbers than its maker's."""


class ModelError(LmzipError):
    """Model not installed, or its weights or settings differ from the file's (exit 3)."""

    exit_code = 3


class ModelNotAvailable(ModelError):
    pass


class FingerprintMismatch(ModelError):
    pass


class WorkerError(LmzipError):
    """The workers could not code a block (after retries), or a cluster cannot be reached (exit 1)."""

    exit_code = 1
