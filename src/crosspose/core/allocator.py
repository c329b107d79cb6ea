"""Keep freed memory in the process, so that big tensors stop page-faulting on every step.

glibc's malloc serves any block over its mmap threshold (at most 32 MiB) with a fresh ``mmap`` and
returns it to the kernel on ``free``. A ResNet-50 at 256 px and batch 8 allocates dozens of such
blocks per training step (a 256-channel 64x64 activation is 33.5 MiB), so every step the kernel
maps and zero-fills about a gigabyte again, 4 KiB page by page: about 245,000 page faults per
training step, measured on a 2-core Xeon VM, and 8-12 % of the step's time. Turning off mmap for
large blocks and never trimming the heap's top keeps the pages mapped; the next step reuses them
(0 faults per step after the first). The peak memory is the same working set; what changes is that
freed memory stays with the process until it exits, as it does with PyTorch's CUDA caching allocator
and with jemalloc or tcmalloc, which Intel's PyTorch CPU guide preloads for the same reason.

``CROSSPOSE_MALLOC=default`` leaves glibc's own behaviour. A ``GLIBC_TUNABLES`` that sets any
``glibc.malloc.*`` tunable is the user's choice and is left alone too, as is any libc other than
glibc (macOS, Windows, musl), where this does nothing.

Example::

    >>> from crosspose.core.allocator import keep_freed_memory
    >>> keep_freed_memory().describe()  # doctest: +SKIP
    'allocator: freed memory kept (glibc: no mmap for large blocks, no trimming)'
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from collections.abc import Mapping
from typing import Any, NamedTuple

from crosspose.core.errors import ConfigError

__all__ = ["MALLOC_ENV", "MALLOC_SETTINGS", "AllocatorChoice", "keep_freed_memory"]

MALLOC_ENV = "CROSSPOSE_MALLOC"
"""The environment variable that opts out: ``keep`` (the default) or ``default`` (glibc's own)."""

MALLOC_SETTINGS = ("keep", "default")

# glibc's mallopt parameters (malloc.h): values, not names, because ctypes sees only the symbol
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


class AllocatorChoice(NamedTuple):
    """Whether freed memory is kept in this process, and why."""

    kept: bool
    reason: str

    def describe(self) -> str:
        return f"allocator: {'freed memory kept' if self.kept else 'default'} ({self.reason})"


def _glibc() -> Any | None:
    """This process's C library when it is glibc (it has ``gnu_get_libc_version``), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt") else None


def keep_freed_memory(environ: Mapping[str, str] | None = None, libc: Any | None = None) -> AllocatorChoice:
    """Tell glibc's malloc to keep freed memory mapped (see the module docstring); idempotent.

    Args:
        environ: the environment to read ``CROSSPOSE_MALLOC`` and ``GLIBC_TUNABLES`` from (``os.environ``).
        libc: the C library to configure (tests pass a stand-in); default: this process's glibc, if any.

    Raises:
        ConfigError: ``CROSSPOSE_MALLOC`` is neither ``keep`` nor ``default``.
    """
    environ = os.environ if environ is None else environ
    setting = environ.get(MALLOC_ENV, "keep").strip().lower() or "keep"
    if setting not in MALLOC_SETTINGS:
        raise ConfigError(f"{MALLOC_ENV} must be one of {', '.join(MALLOC_SETTINGS)}; got {environ[MALLOC_ENV]!r}")
    if setting == "default":
        return AllocatorChoice(False, f"{MALLOC_ENV}=default")
    if "glibc.malloc." in environ.get("GLIBC_TUNABLES", ""):
        return AllocatorChoice(False, "GLIBC_TUNABLES sets malloc: yours")
    libc = _glibc() if libc is None else libc
    if libc is None:
        return AllocatorChoice(False, "not glibc")
    # -1 as the trim threshold is glibc's documented "never trim" (the int becomes SIZE_MAX)
    if not (libc.mallopt(_M_MMAP_MAX, 0) and libc.mallopt(_M_TRIM_THRESHOLD, -1)):
        return AllocatorChoice(False, "glibc refused mallopt")
    return AllocatorChoice(True, "glibc: no mmap for large blocks, no trimming")
