"""LightningCLI for ``crosspose fit | validate | test | predict``.

A run folder is ``trainer.default_root_dir`` (configs set ``runs/<name>``):
``checkpoints/last.ckpt`` and ``checkpoints/best.ckpt`` (highest validation PCKh), and
``logs/version_N/`` with ``config.yaml`` (the exact config of that run) and ``metrics.csv``.
Because the checkpoint folder does not change between runs, ``--ckpt_path last`` resumes.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins.io import CheckpointIO

from crosspose.core.errors import ConfigError
from crosspose.data.datamodule import PoseDataModule
from crosspose.training.checkpointing import AtomicCheckpointIO, LastCheckpoint, load_checkpoint
from crosspose.training.module import PoseEstimationModule
from crosspose.training.prediction_writer import PredictionWriter

__all__ = ["CrossposeCLI", "run_lightning_cli", "trainer_defaults", "with_atomic_checkpoints"]


def trainer_defaults() -> dict[str, Any]:
    """Speed levers on where they help: bf16-mixed and cudnn.benchmark on a GPU."""
    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    return {
        "default_root_dir": "runs/default",
        "precision": "bf16-mixed" if bf16 else "32-true",
        "benchmark": cuda,
        # our ShardedEpochSampler shards by rank itself and never pads evaluation sets
        "use_distributed_sampler": False,
        "log_every_n_steps": 10,
    }


def run_checkpoints(dirpath: Path) -> list[ModelCheckpoint]:
    """``best.ckpt`` (highest validation PCKh) and ``last.ckpt`` (every validation, and on a crash).

    Two callbacks because Lightning 2.6 refreshes ``save_last`` only when the best improves, and a
    resumable run needs the latest state every time.
    """
    best = ModelCheckpoint(dirpath=dirpath, filename="best", monitor="val/pckh", mode="max", save_top_k=1,
                           auto_insert_metric_name=False, enable_version_counter=False)
    return [best, LastCheckpoint(dirpath)]


def with_atomic_checkpoints(plugins: Any) -> list[Any]:
    """The trainer's ``plugins`` plus :class:`AtomicCheckpointIO` unless a CheckpointIO is given."""
    given = list(plugins) if isinstance(plugins, list | tuple) else [] if plugins is None else [plugins]
    if not any(isinstance(p, CheckpointIO) for p in given):
        given.append(AtomicCheckpointIO())
    return given


class CrossposeCLI(LightningCLI):
    """LightningCLI with crosspose's run-folder layout and checkpoints."""

    def __init__(self, args: Sequence[str] | None = None, run: bool = True) -> None:
        super().__init__(
            PoseEstimationModule,
            PoseDataModule,
            seed_everything_default=0,
            save_config_kwargs={"overwrite": True},
            trainer_defaults=trainer_defaults(),
            auto_configure_optimizers=False,  # the optimizer is injected into the model
            args=list(args) if args is not None else None,
            run=run,
            parser_kwargs={"default_env": False},
        )

    def before_fit(self) -> None:
        """A fit without --ckpt_path into a folder that already holds checkpoints would overwrite them."""
        config = self.config[self.subcommand]
        if config.get("ckpt_path") or self.trainer.fast_dev_run:
            return
        folder = Path(self.trainer.default_root_dir) / "checkpoints"
        found = sorted(p.name for p in folder.glob("*.ckpt")) if folder.is_dir() else []
        if found:
            raise ConfigError(f"{folder.parent}: this run folder already holds checkpoints ({', '.join(found)}) "
                              "of an earlier fit; continue it with --ckpt_path last, or give another "
                              "--trainer.default_root_dir")

    def _parse_ckpt_path(self) -> None:
        # LightningCLI reads --ckpt_path's hyperparameters before any trainer exists: a missing,
        # corrupt or code-carrying file must fail here as one line (weights-only, like every load)
        try:
            super()._parse_ckpt_path()
        except Exception:
            load_checkpoint(self.config[self.config.subcommand].get("ckpt_path"))  # raises CheckpointError
            raise

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Callback]) -> Trainer:
        root = Path(config.get("default_root_dir") or "runs/default")
        given = list(config.get("callbacks") or []) + list(callbacks)
        if not any(isinstance(c, ModelCheckpoint) for c in given):
            callbacks.extend(run_checkpoints(root / "checkpoints"))
        if self.subcommand == "predict" and not any(isinstance(c, PredictionWriter) for c in given):
            callbacks.append(PredictionWriter())
        config["plugins"] = with_atomic_checkpoints(config.get("plugins"))
        if config.get("logger") in (None, True):
            config["logger"] = CSVLogger(save_dir=str(root), name="logs")
        if config.get("logger") and not any(isinstance(c, LearningRateMonitor) for c in given):
            callbacks.append(LearningRateMonitor(logging_interval="step"))
        return super()._instantiate_trainer(config, callbacks)


def run_lightning_cli(args: Sequence[str]) -> CrossposeCLI:
    """Run a LightningCLI subcommand (``fit``, ``validate``, ``test``, ``predict``)."""
    # LightningCLI reads sys.argv when given no args and warns when given both: hand it ours alone
    saved = sys.argv
    sys.argv = [saved[0] if saved else "crosspose", *args]
    try:
        return CrossposeCLI(args=None)
    finally:
        sys.argv = saved
