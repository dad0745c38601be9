"""The native backend of the integer models, in C, with the very integers numpy and torch give.

- toolchain.py: the C sources (int8_gemm.c, attention.c, llama_step.c, one header) compiled once per
  machine into the lmzip cache;
- binding.py: the ctypes binding, the int8 weights' panels, the structs (checked against the
  library's own at load);
- ops.py: ``NativeOps``, numpy for the elementwise work and the library's int8 GEMMs (AVX2,
  AVX-512 VNNI or portable C, chosen at run time);
- llama.py: ``NativeLlama``, the integer llama's whole layer stack in one call a step or pass;
- check.py: the load-time check against numpy, and ``load``, the checked library.

Where there is no C compiler, or not even the portable kernel passes the check, the native backend
is simply absent: the integer models compute with numpy and torch instead, which give the very
same integers (so the same files), only slower.
"""

from .binding import KERNELS, Int8Weight, NativeLibrary
from .toolchain import NativeBroken, NativeUnavailable, build
from .check import available, load, status
from .llama import NativeLlama, NativeLlamaRows
from .ops import NativeOps

__all__ = ["KERNELS", "Int8Weight", "NativeLibrary", "NativeBroken", "NativeUnavailable", "build", "available",
           "load", "status", "NativeLlama", "NativeLlamaRows", "NativeOps"]
