"""Keep glibc from handing big freed buffers back to the kernel between steps.

Long stepping loops allocate the same multi-MB arrays every step; with glibc's
defaults they are mmapped and unmapped each time and re-faulted on first touch.
Measured here: SmolLM2's steps slowed ~4x after a few hundred, and online
learning through the API ran 1,561 tokens/s on 512 KB of text against 1,987
with this setting (the CLI had it, the API did not). Process-wide and harmless
(freed memory is kept for reuse); a no-op where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_done = False


def keep_freed_memory() -> None:
    global _done
    if _done:
        return
    _done = True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, 32 * 1024 * 1024)  # M_MMAP_THRESHOLD: glibc's maximum
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune
