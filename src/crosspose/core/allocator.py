"""Keep freed memory in the process, so that big tensors stop page-faulting on every batch.

glibc's malloc serves any block over its mmap threshold (at most 32 MiB) with a fresh ``mmap`` and
returns it to the kernel on ``free``; the next batch faults the same memory in again, 4 KiB page by
page, zero-filled. A ResNet-50 on 640x480 video frames at batch 8 makes activations of 150 MiB and
more. Turning off mmap for large blocks and never trimming the heap's top keeps the pages mapped, and
the next batch reuses them, as PyTorch's CUDA caching allocator does on a GPU and jemalloc or tcmalloc
(which Intel's PyTorch CPU guide preloads) do on a CPU.

Measured on a 2-core Xeon VM (docs/speed.md, "Keeping freed memory"): ``crosspose analyze`` of a
640x480 video in fp32 ran 3.6-3.8 instead of 2.8-2.9 frames/s, for ~450 MiB more peak memory; the
image-folder inference of ``crosspose predict`` (256 px, batch 8) ran 6-22 % faster in six alternating
pairs, for 120-165 MB more. Training did not move (Lightning fit, alternating: 4.85-4.89 vs 4.79-4.86
img/s with the fused GroupNorm; 4.23 vs 4.30 BatchNorm) while it took 40-300 MiB more, so the inference
commands (``crosspose analyze``, ``crosspose predict``, and the benchmark rows that mirror them) keep
freed memory, and training leaves glibc as it is.

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
