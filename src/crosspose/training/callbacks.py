"""What every crosspose trainer gets, defined once: checkpoints, loggers, progress and validation lines.

:func:`run_callbacks` and :func:`run_loggers` are called by :class:`crosspose.training.cli.CrossposeCLI`
only; ``crosspose fit``, the demo and the ablation all build their trainers through that class, so
the same YAML gives the same callbacks and loggers whichever command runs it.

Run folder (``trainer.default_root_dir``): ``checkpoints/best.ckpt`` (by the module's ``monitor`` and
``mode`` attributes), ``checkpoints/last.ckpt`` (every validation, the end of training and a crash),
``logs/version_N/`` with ``metrics.csv``, TensorBoard events and ``config.yaml``.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger

from crosspose.training.checkpointing import LastCheckpoint

__all__ = ["StepProgressBar", "ValidationLine", "configure_logging", "next_log_version", "run_callbacks",
           "run_loggers"]

log = logging.getLogger("crosspose")


class _NoTips(logging.Filter):
    """Drop Lightning's advertising lines ("Tip: ... try installing litlogger/litmodels")."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("Tip:" in message or "litlogger" in message or "litmodels" in message)


class _TqdmHandler(logging.Handler):
    """Log lines printed through tqdm, so they do not break a progress bar in the middle."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # logging must never raise
            self.handleError(record)


def configure_logging(level: int = logging.INFO) -> None:
    """Crosspose's log lines on stderr (through tqdm); Lightning's tips silenced. Idempotent."""
    logger = logging.getLogger("crosspose")
    if not any(isinstance(h, _TqdmHandler) for h in logger.handlers):
        handler = _TqdmHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        target = logging.getLogger(name)
        if not any(isinstance(f, _NoTips) for f in target.filters):
            target.addFilter(_NoTips())


def run_checkpoints(dirpath: Path, monitor: str = "val/pckh", mode: str = "max") -> list[ModelCheckpoint]:
    """``best.ckpt`` (best ``monitor``) and ``last.ckpt`` (every validation, end of training, a crash).

    Two callbacks because Lightning 2.6 refreshes ``save_last`` only when the best improves, and a
    resumable run needs the latest state every time.
    """
    best = ModelCheckpoint(dirpath=dirpath, filename="best", monitor=monitor, mode=mode, save_top_k=1,
                           auto_insert_metric_name=False, enable_version_counter=False)
    return [best, LastCheckpoint(dirpath)]


class StepProgressBar(TQDMProgressBar):
    """Training progress counted toward ``max_steps`` (not per epoch), with the monitored metric shown."""

    def on_train_epoch_start(self, trainer: L.Trainer, *args: Any) -> None:
        super().on_train_epoch_start(trainer, *args)
        if trainer.max_steps and trainer.max_steps > 0 and self.train_progress_bar is not None:
            self.train_progress_bar.reset(total=trainer.max_steps)
            self.train_progress_bar.initial = 0
            self.train_progress_bar.n = trainer.global_step
            self.train_progress_bar.set_description("Training steps")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if not (trainer.max_steps and trainer.max_steps > 0):
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
            return
        bar = self.train_progress_bar
        n = trainer.global_step
        if bar is not None and not bar.disable and (n % self.refresh_rate == 0 or n == trainer.max_steps):
            bar.n = n
            bar.set_postfix(self.get_metrics(trainer, pl_module))


class ValidationLine(Callback):
    """One log line per validation: the step, the monitored metric (and its best so far) and the loss."""

    def __init__(self, monitor: str = "val/pckh", mode: str = "max") -> None:
        self.monitor, self.mode = monitor, mode
        self.best: float | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        metric = trainer.callback_metrics.get(self.monitor)
        if metric is None:
            return
        value = float(metric)
        if math.isfinite(value) and (self.best is None or (value > self.best if self.mode == "max"
                                                           else value < self.best)):
            self.best = value
        loss = trainer.callback_metrics.get("val/loss")
        tail = f", val/loss {float(loss):.4f}" if loss is not None else ""
        log.info("step %d: %s %.2f (best %.2f)%s", trainer.global_step, self.monitor, value,
                 self.best if self.best is not None else math.nan, tail)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = state_dict.get("best")


def run_callbacks(root: Path, given: Sequence[Callback], monitor: str, mode: str,
                  progress_bar: bool, has_logger: bool) -> list[Callback]:
    """The callbacks crosspose adds to ``given`` (the user's): each only when the user gave none of its kind."""
    from crosspose.training.prediction_writer import PredictionWriter

    extra: list[Callback] = []
    if not any(isinstance(c, ModelCheckpoint) for c in given):
        extra += run_checkpoints(root / "checkpoints", monitor, mode)
    if not any(isinstance(c, PredictionWriter) for c in given):
        extra.append(PredictionWriter())
    if has_logger and not any(isinstance(c, LearningRateMonitor) for c in given):
        extra.append(LearningRateMonitor(logging_interval="step"))
    if progress_bar and not any(isinstance(c, TQDMProgressBar) for c in given):
        extra.append(StepProgressBar())
    if not any(isinstance(c, ValidationLine) for c in given):
        extra.append(ValidationLine(monitor, mode))
    return extra


def next_log_version(logs: Path) -> int:
    """The next free ``version_N`` under ``logs`` (one number shared by every logger of the run)."""
    taken = [int(p.name.split("_")[1]) for p in logs.glob("version_*") if p.name.split("_")[1].isdigit()]
    return max(taken, default=-1) + 1


def run_loggers(root: Path) -> list[Logger]:
    """CSV (``metrics.csv``, for scripts) and TensorBoard (for people), in ``root/logs/version_N``."""
    version = next_log_version(root / "logs")
    return [CSVLogger(save_dir=str(root), name="logs", version=version),
            TensorBoardLogger(save_dir=str(root), name="logs", version=version, default_hp_metric=False)]
