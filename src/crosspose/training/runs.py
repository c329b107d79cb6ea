"""Programmatic runs: train, then score on a test file, in one resumable run folder.

``crosspose demo`` and ``crosspose ablate`` are grids of such runs. A run folder holds
``config.yaml`` (everything the run was built from), ``checkpoints/{best,last}.ckpt``,
``logs/`` and, once finished, ``metrics.json`` + ``predictions.json``. A finished folder is
reused as it is; an unfinished one resumes from ``last.ckpt``.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import yaml
from lightning.pytorch.loggers import CSVLogger

from crosspose.core.io import atomic_write_text
from crosspose.data.datamodule import PoseDataModule
from crosspose.data.transforms import Augmentation
from crosspose.training.checkpointing import load_checkpoint
from crosspose.training.cli import run_checkpoints, trainer_defaults, with_atomic_checkpoints
from crosspose.training.module import PoseEstimationModule
from crosspose.training.run_folder import check_reusable, load_finished_metrics, record_config

__all__ = ["train_and_test", "test_checkpoint", "load_run_metrics", "run_config"]

_QUIET = {"enable_model_summary": False}


def _plain(value: Any) -> Any:
    """Config values as YAML: an optimizer ``partial`` becomes LightningCLI's class_path form."""
    if isinstance(value, functools.partial):
        func = value.func
        return {"class_path": f"{func.__module__}.{func.__qualname__}", "init_args": dict(value.keywords)}
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def load_run_metrics(run_dir: Path) -> dict[str, Any] | None:
    """A finished run's metrics.json; None while unfinished (a broken marker counts as unfinished)."""
    return load_finished_metrics(run_dir)


def _datamodule(data: Mapping[str, Any]) -> PoseDataModule:
    data = dict(data)
    if isinstance(data.get("augmentation"), Mapping):
        data["augmentation"] = Augmentation(**data["augmentation"])
    return PoseDataModule(**data)


def _trainer(run_dir: Path, trainer: Mapping[str, Any], fit: bool) -> L.Trainer:
    kwargs = {**trainer_defaults(), **_QUIET, "default_root_dir": str(run_dir), **trainer}
    kwargs["plugins"] = with_atomic_checkpoints(kwargs.get("plugins"))
    if fit:
        kwargs["callbacks"] = run_checkpoints(run_dir / "checkpoints")
        kwargs["logger"] = CSVLogger(save_dir=str(run_dir), name="logs")
    else:
        kwargs["logger"] = False
        kwargs["enable_checkpointing"] = False
    return L.Trainer(**kwargs)


def _finish(run_dir: Path, module: PoseEstimationModule, seconds: float, global_step: int) -> dict[str, Any]:
    """Add timing and the training step count to the metrics.json the test wrote into ``run_dir``.

    The test trainer has no logger, so its log folder is ``run_dir`` and predictions.json is already there.
    """
    metrics = dict(module.last_metrics or {})
    metrics["run"] = {"seconds": round(seconds, 1), "global_step": global_step}
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=1))  # written last: the "finished" marker
    return metrics


def run_config(model: Mapping[str, Any], data: Mapping[str, Any], trainer: Mapping[str, Any],
               seed: int = 0) -> dict[str, Any]:
    """The resolved config :func:`train_and_test` records (and compares before reusing a folder)."""
    return _plain({"seed_everything": seed, "model": dict(model), "data": dict(data), "trainer": dict(trainer)})


def train_and_test(
    run_dir: str | Path,
    model: Mapping[str, Any],
    data: Mapping[str, Any],
    trainer: Mapping[str, Any],
    seed: int = 0,
) -> dict[str, Any]:
    """Fit ``model`` on ``data`` (train/val files), then score the best checkpoint on ``data.test_file``.

    Returns the metrics.json content. Reuses a finished run; resumes an unfinished one.
    """
    run_dir = Path(run_dir)
    config = run_config(model, data, trainer, seed)
    check_reusable(run_dir, config)  # never resume or report a run of another configuration
    done = load_run_metrics(run_dir)
    if done is not None:
        return done
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(config, sort_keys=False))
    record_config(run_dir, config)
    L.seed_everything(seed, workers=True, verbose=False)
    start = time.perf_counter()
    module = PoseEstimationModule(**model)
    dm = _datamodule(data)
    fit_trainer = _trainer(run_dir, trainer, fit=True)
    last = run_dir / "checkpoints" / "last.ckpt"
    fit_trainer.fit(module, dm, ckpt_path=str(last) if last.is_file() else None)
    best = run_dir / "checkpoints" / "best.ckpt"
    ckpt = best if best.is_file() else last
    test_trainer = _trainer(run_dir, {k: v for k, v in trainer.items() if k in ("accelerator", "precision")},
                            fit=False)
    test_trainer.test(module, dm, ckpt_path=str(ckpt), verbose=False)
    return _finish(run_dir, module, time.perf_counter() - start, int(fit_trainer.global_step))


def test_checkpoint(
    checkpoint: str | Path,
    out_dir: str | Path,
    data: Mapping[str, Any],
    trainer: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Score a checkpoint on ``data.test_file`` (any skeleton: shared joints are matched by name)."""
    out_dir = Path(out_dir)
    config = _plain({"checkpoint": str(checkpoint), "data": dict(data), "trainer": dict(trainer or {})})
    check_reusable(out_dir, config)
    done = load_run_metrics(out_dir)
    if done is not None:
        return done
    out_dir.mkdir(parents=True, exist_ok=True)
    record_config(out_dir, config)
    start = time.perf_counter()
    load_checkpoint(checkpoint)  # one-line errors for a missing, corrupt or code-carrying file
    module = PoseEstimationModule.load_from_checkpoint(str(checkpoint), map_location="cpu", weights_only=True)
    test_trainer = _trainer(out_dir, dict(trainer or {}), fit=False)
    test_trainer.test(module, _datamodule(data), verbose=False)
    return _finish(out_dir, module, time.perf_counter() - start, 0)
