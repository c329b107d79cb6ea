"""Checkpoint files that are complete or absent, loaded without running code, and a last one always.

* :class:`AtomicCheckpointIO` is the trainer's CheckpointIO plugin: it writes through
  :func:`crosspose.core.io.atomic_path` (temp file beside the target, fsync, ``os.replace``), so a
  kill mid-write leaves the previous ``last.ckpt`` intact, and a failed write RAISES (Lightning's
  own writer can end a run with exit 0 and no checkpoint). It loads with ``weights_only=True``,
  so a checkpoint carrying a pickled object is refused, whatever TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD says.
* :func:`load_checkpoint` is that load for crosspose's own code paths, with one-line errors.
* :class:`LastCheckpoint` keeps ``last.ckpt`` current: after each validation, on a crash, and at the
  end of training (Lightning skips the final step when it is not a validation step).
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from crosspose.core.errors import CheckpointError
from crosspose.core.io import atomic_path

__all__ = ["AtomicCheckpointIO", "LastCheckpoint", "load_checkpoint"]


def load_checkpoint(path: str | os.PathLike[str], map_location: Any = "cpu") -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` with one-line errors naming the file.

    Raises:
        CheckpointError: the file is missing, truncated, not a torch checkpoint, or carries a
            pickled object other than tensors and plain containers (it could run code when loaded).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "Weights only load failed" in str(exc) or "Unsupported global" in str(exc):
            raise CheckpointError(f"{path}: refused: the checkpoint carries pickled objects other than weights "
                                  "(loading it could run code); crosspose loads weights only") from None
        raise CheckpointError(f"{path}: not a readable checkpoint ({first})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint, truncated or corrupt ({first})") from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: not a crosspose/Lightning checkpoint (a {type(checkpoint).__name__}, "
                              "not a dict)")
    return checkpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning CheckpointIO: atomic writes that raise on failure, weights-only loads."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        try:
            with atomic_path(path) as tmp:
                self.write(checkpoint, tmp)
        except OSError as exc:
            raise CheckpointError(f"{path}: cannot write the checkpoint ({exc.strerror or exc})") from None

    def write(self, checkpoint: dict[str, Any], tmp: Path) -> None:
        """Serialise to the temporary file (a seam for fault-injection tests)."""
        torch.save(checkpoint, tmp)

    def load_checkpoint(self, path: Any, map_location: Any | None = None,
                        weights_only: bool | None = None) -> dict[str, Any]:
        # weights_only is forced: a resume must never run code from a file
        return load_checkpoint(path, map_location=map_location if map_location is not None else "cpu")

    def remove_checkpoint(self, path: Any) -> None:
        Path(path).unlink(missing_ok=True)


class LastCheckpoint(ModelCheckpoint):
    """``last.ckpt``: the latest state after every validation, on a crash, and when training ends.

    Args:
        dirpath: the run's checkpoint folder.
        every_n_train_steps: also save every N optimizer steps (None: validations only).
    """

    def __init__(self, dirpath: str | os.PathLike[str], every_n_train_steps: int | None = None) -> None:
        super().__init__(dirpath=Path(dirpath), filename="last", monitor=None, save_top_k=1,
                         enable_version_counter=False, save_on_exception=True,
                         every_n_train_steps=every_n_train_steps)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if trainer.is_global_zero and self.dirpath and Path(self.dirpath).is_dir():
            # temp files of a write that a kill interrupted: never a checkpoint, only clutter
            for stale in Path(self.dirpath).glob(".*.ckpt.*"):
                stale.unlink(missing_ok=True)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        if self._should_skip_saving_checkpoint(trainer) or trainer.interrupted:
            return
        # the final step: a `fit --ckpt_path last` after this finds the finished state
        self._save_none_monitor_checkpoint(trainer, self._monitor_candidates(trainer))
