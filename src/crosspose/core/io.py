r"""The one way crosspose writes a file (atomically), and reads a YAML mapping.

A reader (a rerun, a report, another process) sees either the old file or the complete new one,
never a truncated one: bytes go to a temporary file in the SAME folder (``os.replace`` is atomic
only within one filesystem, which a temp folder elsewhere is not), are flushed and fsynced, and
the temp file then replaces the target. A failure removes the temp file and raises an
:class:`OSError` naming the target, so the CLI prints one line and nothing half-written is left.

Example:
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "metrics.json"
    >>> _ = atomic_write_json(target, {"pckh": 81.2})
    >>> target.read_text()
    '{\n "pckh": 81.2\n}'
    >>> with atomic_path(target.with_suffix(".txt")) as tmp:   # for writers that need a path
    ...     _ = tmp.write_text("plot")

:func:`read_yaml_mapping` reads a config-like YAML (a base config, a demo profile) whose top level
must be a mapping, raising a :class:`~crosspose.core.errors.ConfigError` that names the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from crosspose.core.errors import ConfigError

__all__ = ["atomic_directory", "atomic_path", "atomic_torch_save", "atomic_write_bytes", "atomic_write_json", "atomic_write_text",
           "read_yaml_mapping"]


def _fsync_dir(folder: Path) -> None:
    """Persist the rename itself (POSIX); a no-op where folders cannot be opened (Windows)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it replaces ``target`` atomically.

    For writers that take a file name (OpenCV, PyAV, pandas' HDF5, matplotlib, torch.save). The
    temp name keeps ``target``'s suffix (or ``suffix``), since several writers choose the format by it.
    """
    target = Path(target)
    folder = target.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix or target.suffix or ".tmp",
                                    dir=folder)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write {target}: {exc.strerror or exc}") from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:  # the writer may not have synced: make the bytes durable
            os.fsync(fh.fileno())
        with contextlib.suppress(OSError):
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs are for the user's other tools too
        os.replace(tmp, target)
        _fsync_dir(folder)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and str(target) not in str(exc):
            raise OSError(exc.errno, f"cannot write {target}: {exc.strerror or exc}") from None
        raise


def atomic_write_bytes(target: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically; returns ``target`` as a Path."""
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
    return Path(target)


def atomic_write_text(target: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``target`` atomically."""
    return atomic_write_bytes(target, text.encode("utf-8"))


def atomic_write_json(target: str | os.PathLike[str], obj: Any, indent: int | None = 1) -> Path:
    """Write ``obj`` as JSON atomically (NaN refused: JSON has none, other tools would choke)."""
    return atomic_write_text(target, json.dumps(obj, indent=indent, allow_nan=False))


def atomic_torch_save(obj: Any, target: str | os.PathLike[str]) -> Path:
    """``torch.save(obj)`` to ``target`` atomically (checkpoints, converted and exported models)."""
    import torch

    with atomic_path(target) as tmp:
        torch.save(obj, tmp)
    return Path(target)


def read_yaml_mapping(path: str | os.PathLike[str], what: str = "file", expected: str = "a mapping") -> dict[str, Any]:
    """The top-level mapping of a YAML file; an empty file reads as ``{}``.

    Args:
        path: the YAML file.
        what: what the file is, for the not-found message (``"config"``, ``"demo profile"``).
        expected: what the top level should be, for the not-a-mapping message.

    Raises:
        ConfigError: naming the file when it is missing, not valid YAML, or not a mapping.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: {what} not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        # the first line says where and what; the rest repeats the offending text
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected {expected}")
    return data


@contextlib.contextmanager
def atomic_directory(target: str | Path, mode: int = 0o755) -> Iterator[Path]:
    """A folder written in full or not at all.

    Yields an empty temporary folder beside ``target``; when the block succeeds it replaces ``target``
    whole (an earlier folder is swapped out, not merged into), and when it fails it is removed.

    Example:
        >>> with atomic_directory(out / "frames") as tmp:  # doctest: +SKIP
        ...     write_frames(tmp)
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, mode)  # mkdtemp makes 0700; the folder is for the user's other tools too
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
            os.replace(target, old / target.name)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
