"""A run folder belongs to one configuration: recorded, checked before reuse, locked while in use.

* :func:`record_config` writes ``run.json`` (the resolved config and the crosspose version).
* :func:`check_reusable` refuses to reuse (resume or report) a folder whose recorded config
  differs from the one asked for, saying which keys differ.
* :func:`is_finished` recognises a finished run by its ``metrics.json``, written last and
  atomically: present, valid JSON and carrying the ``run`` summary. A truncated or foreign file
  does not count (the run is then finished again, not reported with a broken marker).
* :class:`FolderLock` makes a second process working on the same folder (two ``ablate`` or
  ``demo`` into one ``--out``) stop with a clear message, or wait when asked to;
  :func:`add_wait_argument` gives a command its ``--wait`` option for that.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from crosspose.core.errors import ConfigError
from crosspose.core.io import atomic_write_json

__all__ = [
    "FINISHED_MARKER",
    "RUN_RECORD",
    "FolderLock",
    "add_wait_argument",
    "check_reusable",
    "config_differences",
    "is_finished",
    "record_config",
]

RUN_RECORD = "run.json"
FINISHED_MARKER = "metrics.json"
LOCK_NAME = ".crosspose.lock"
NO_EFFECT_ON_RESULTS = frozenset({"num_workers", "pin_memory", "enable_progress_bar", "enable_model_summary",
                                  "log_every_n_steps"})
"""Settings (last dotted component) that change speed or display, never a number: ignored in comparisons."""


def _plain(value: Any) -> Any:
    """JSON's view of a config (tuples as lists, paths and other objects as strings)."""
    return json.loads(json.dumps(value, default=str))


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out if out or not prefix else {prefix: {}}
    return {prefix: value}


def config_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """``key: old -> new`` for every leaf that differs (dotted keys; missing shown as <unset>)."""
    a, b = _flatten(_plain(old)), _flatten(_plain(new))
    lines = []
    for key in sorted(set(a) | set(b)):
        if key.rsplit(".", 1)[-1] in NO_EFFECT_ON_RESULTS:
            continue
        if a.get(key, "<unset>") != b.get(key, "<unset>"):
            lines.append(f"{key}: {a.get(key, '<unset>')!r} -> {b.get(key, '<unset>')!r}")
    return lines


def _version() -> str:
    from crosspose import __version__

    return str(__version__)


def record_config(run_dir: str | os.PathLike[str], config: Mapping[str, Any]) -> Path:
    """Write ``run_dir/run.json``: the resolved config and the crosspose version that ran it."""
    return atomic_write_json(Path(run_dir) / RUN_RECORD, {"crosspose": _version(), "config": _plain(config)})


def recorded_config(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The config recorded in ``run_dir`` (None when there is no record)."""
    path = Path(run_dir) / RUN_RECORD
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        return dict(record["config"])
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"{path}: the run record is not readable JSON with a 'config'; the folder's runs "
                          "cannot be trusted: delete the folder or use another") from None


def check_reusable(run_dir: str | os.PathLike[str], config: Mapping[str, Any], force: bool = False) -> None:
    """Raise a ConfigError naming the differences when ``run_dir`` was made with another config.

    A folder without a record (new, or from before records existed) is accepted. With ``force``
    the differences are ignored (the caller starts the run over).
    """
    old = recorded_config(run_dir)
    if old is None or force:
        return
    diff = config_differences(old, config)
    if diff:
        shown = "; ".join(diff[:6]) + (f"; and {len(diff) - 6} more" if len(diff) > 6 else "")
        raise ConfigError(f"{run_dir}: this run folder was made with another configuration ({shown}); "
                          "use another output folder, or delete this one to start over")


def is_finished(run_dir: str | os.PathLike[str]) -> bool:
    """Whether ``run_dir`` holds a complete ``metrics.json`` (valid JSON with its ``run`` summary)."""
    return load_finished_metrics(run_dir) is not None


def load_finished_metrics(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The finished run's metrics, or None when the run is not finished (or its marker is broken)."""
    path = Path(run_dir) / FINISHED_MARKER
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(metrics, dict) or not isinstance(metrics.get("run"), dict):
        return None
    return metrics


class FolderLock:
    """An exclusive lock on a folder for one process (``flock`` on ``folder/.crosspose.lock``).

    Args:
        folder: the folder (created if missing).
        what: what holds it, for the message (``"crosspose ablate"``).
        wait: seconds to wait for another holder to finish (0: refuse at once).

    Raises:
        ConfigError: another process holds the folder (after ``wait`` seconds).
    """

    def __init__(self, folder: str | os.PathLike[str], what: str = "crosspose", wait: float = 0.0) -> None:
        self.folder, self.what, self.wait = Path(folder), what, wait
        self._fd: int | None = None

    def acquire(self) -> FolderLock:
        import fcntl

        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
                    os.close(fd)
                    raise ConfigError(f"{self.folder}: in use by {holder}; wait for it to finish, or use "
                                      "another output folder") from None
                time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{self.what} (pid {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')})".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def add_wait_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--wait SECONDS`` (``args.wait``, default 0): how long a :class:`FolderLock` on ``--out`` waits."""
    parser.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                        help="when another crosspose process works in --out, wait this long for it (default: "
                             "stop at once)")
