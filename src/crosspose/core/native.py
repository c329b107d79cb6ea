"""Build a small C source with the host's compiler, once per machine, and load it with ctypes.

crosspose's few native kernels (``crosspose/models/kernels/*.c``) are plain C with OpenMP: no
PyTorch headers, so a build takes about a second, and no build step at install time. The library is
compiled for this CPU (``-march=native``) and cached under ``$XDG_CACHE_HOME/crosspose/native`` (or
``~/.cache/...``; ``CROSSPOSE_NATIVE_CACHE`` overrides), keyed by the source, the compiler, the flags
and the CPU, so an edited kernel, another compiler or another CPU builds afresh. The library lands in
the cache by an atomic rename, so concurrent processes (DDP ranks, test workers) never load half a file.

OpenMP: the library links ``libgomp.so.1``. Loaded after torch, whose wheel carries a ``libgomp.so.1``
of its own, the dynamic loader reuses torch's, so the kernels share PyTorch's thread pool and follow
``torch.set_num_threads``.

Example::

    >>> from crosspose.core.native import load_library
    >>> lib = load_library(Path("kernel.c"))  # doctest: +SKIP
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
from pathlib import Path

from crosspose.core.errors import CrossposeError
from crosspose.core.hardware import isa_allows, onednn_isa_limit
from crosspose.core.io import atomic_path

__all__ = ["CACHE_ENV", "CFLAGS", "NativeBuildError", "cache_dir", "cflags", "find_compiler", "load_library"]

CACHE_ENV = "CROSSPOSE_NATIVE_CACHE"
CFLAGS = ("-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c11")
_loaded: dict[str, ctypes.CDLL] = {}


class NativeBuildError(CrossposeError, RuntimeError):
    """No C compiler, a failed compile, or a library that does not load."""


def cache_dir() -> Path:
    """Where built libraries are kept."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "crosspose" / "native"


def cflags() -> tuple[str, ...]:
    """:data:`CFLAGS`, without AVX-512 on an x86 CPU whose oneDNN is capped below it (``ONEDNN_MAX_CPU_ISA``).

    So a machine emulating a CPU without AVX-512 (``crosspose benchmark`` under the cap) runs the
    kernels as that CPU would, not with the instructions the cap hides from PyTorch.
    """
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    return (*CFLAGS, "-mno-avx512f") if x86 and not isa_allows(onednn_isa_limit(), "AVX512_CORE") else CFLAGS


def _compiler_name() -> str:
    return os.environ.get("CC") or "cc"


def find_compiler() -> str | None:
    """The C compiler builds use (``$CC``, else ``cc``) as a full path, or None when it is not on PATH."""
    return shutil.which(_compiler_name())


def _compiler() -> str:
    found = find_compiler()
    if found is None:
        raise NativeBuildError(f"no C compiler: {_compiler_name()!r} is not on PATH (install gcc or set CC)")
    return found


@functools.cache
def _cpu_identity() -> str:
    """The CPU's model and flags: ``-march=native`` code is for this CPU only."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return platform.machine() + platform.processor()
    keep = [line for line in text.splitlines() if line.split(":")[0].strip() in ("model name", "flags", "Features")]
    return platform.machine() + "\n" + "\n".join(dict.fromkeys(keep))


@functools.cache  # one `cc --version` per compiler and process
def _compiler_version(cc: str) -> str:
    try:
        out = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NativeBuildError(f"C compiler {cc} does not run: {exc}") from None
    return out.stdout.splitlines()[0] if out.stdout else cc


def _compile(cc: str, source: Path, target: Path) -> None:
    """Compile into a temporary file beside ``target``, renamed onto it only when the compiler succeeds."""
    try:
        with atomic_path(target) as tmp:
            cmd = [cc, *cflags(), "-o", str(tmp), str(source), "-lm"]
            try:
                done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
            except subprocess.TimeoutExpired:
                raise NativeBuildError(f"compiling {source} took over 300 s") from None
            if done.returncode != 0:
                detail = " | ".join((done.stderr or done.stdout).strip().splitlines()[:3])
                raise NativeBuildError(f"compiling {source} failed ({' '.join(cmd)}): {detail}")
    except OSError as exc:  # the compiler would not start, or the cache folder is not writable
        raise NativeBuildError(f"cannot build {source.name} into {target.parent}: {exc}") from None


def load_library(source: Path) -> ctypes.CDLL:
    """The built library of ``source`` (a C file), compiling it first if the cache has none.

    Raises:
        NativeBuildError: no compiler, compile error (its first lines in the message), or a library
            that does not load.
    """
    cc = _compiler()
    code = Path(source).read_bytes()
    key = hashlib.sha256(b"\0".join([code, " ".join(cflags()).encode(), _compiler_version(cc).encode(),
                                     _cpu_identity().encode()])).hexdigest()[:20]
    if key in _loaded:
        return _loaded[key]
    target = cache_dir() / f"{Path(source).stem}-{key}.so"
    if not target.exists():
        _compile(cc, Path(source), target)
    try:
        lib = ctypes.CDLL(str(target))
    except OSError as exc:
        raise NativeBuildError(f"the built {target} does not load: {exc}") from None
    _loaded[key] = lib
    return lib
