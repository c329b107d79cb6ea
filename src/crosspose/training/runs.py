"""Programmatic runs: train, then score on a test file, in one resumable run folder.

``crosspose demo`` and ``crosspose ablate`` are grids of such runs. Each run is built by
:func:`build_run`: the same :class:`~crosspose.training.cli.CrossposeCLI` that ``crosspose fit`` uses,
in instantiation-only mode, from a config in the YAML form (``seed_everything``, ``model``, ``data``,
``trainer``), so a run has the same callbacks, loggers and checkpoint policy whichever command made it.

A run folder holds ``config.yaml`` (everything the run was built from), ``checkpoints/{best,last}.ckpt``,
``logs/`` and, once finished, ``predictions.json`` + ``metrics.json`` (written last: the marker of a
finished run). A finished folder is reused as it is; an unfinished one resumes from ``last.ckpt``.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml

from crosspose.core.errors import CheckpointError, DataFormatError
from crosspose.core.io import atomic_write_text
from crosspose.evaluation.results import Metrics, load_metrics, write_metrics, write_prediction_records
from crosspose.training.checkpointing import load_checkpoint
from crosspose.training.cli import CrossposeCLI
from crosspose.training.run_folder import check_reusable, load_finished_metrics, record_config

__all__ = ["build_run", "load_run_metrics", "test_checkpoint", "train_and_test"]


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


def load_run_metrics(run_dir: str | Path) -> Metrics | None:
    """The metrics.json of a finished run, or None when the run has not finished.

    Finished means the marker is complete: valid JSON carrying the ``run`` summary that
    :func:`_finish` adds last (a file truncated by a crash, or the test's own metrics before that
    summary, means "not finished": the run is completed again, never reported half-done).
    """
    if load_finished_metrics(run_dir) is None:
        return None
    return load_metrics(Path(run_dir) / "metrics.json")


def run_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The resolved config :func:`train_and_test` records (and compares before reusing a folder)."""
    return _plain(dict(config))


def build_run(config: Mapping[str, Any]) -> CrossposeCLI:
    """Instantiate model, data module and trainer from a run config exactly as ``crosspose fit`` does.

    ``config`` has the YAML form of a ``crosspose fit`` config (``seed_everything``, ``model``, ``data``,
    ``trainer``); optimizers may be given as ``functools.partial`` too. Seeds everything.
    """
    saved = sys.argv  # LightningCLI warns when the process has command-line arguments of its own
    sys.argv = saved[:1]
    try:
        return CrossposeCLI(args=_plain(dict(config)), run=False)
    finally:
        sys.argv = saved


def _with_root(config: Mapping[str, Any], run_dir: Path, **trainer: Any) -> dict[str, Any]:
    config = dict(config)
    config["trainer"] = {**dict(config.get("trainer") or {}), "default_root_dir": str(run_dir), **trainer}
    return config


def _finish(run_dir: Path, cli: CrossposeCLI, seconds: float, global_step: int, checkpoint: Path | None
            ) -> Metrics:
    """Write the run's predictions.json, then metrics.json (with timing and source) as the finished marker."""
    module = cli.model
    metrics = dict(module.last_metrics or {})
    metrics["run"] = {"seconds": round(seconds, 1), "global_step": global_step}
    metrics["source"] = {"checkpoint": None if checkpoint is None else str(checkpoint),
                         "global_step": module.loaded_step, "data_file": str(cli.datamodule.files["test"])}
    write_prediction_records(module.last_predictions or [], run_dir / "predictions.json")
    write_metrics(metrics, run_dir / "metrics.json")
    return metrics  # type: ignore[return-value]


def train_and_test(run_dir: str | Path, config: Mapping[str, Any]) -> Metrics:
    """Fit the run ``config`` (train/val files), then score its best checkpoint on ``data.test_file``.

    Returns the metrics.json content. Reuses a finished run; resumes an unfinished one from last.ckpt.
    """
    run_dir = Path(run_dir)
    check_reusable(run_dir, run_config(config))  # never resume or report a run of another configuration
    done = load_run_metrics(run_dir)
    if done is not None:
        return done
    record_config(run_dir, run_config(config))
    config = _with_root(config, run_dir)
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(_plain(config), sort_keys=False))
    start = time.perf_counter()
    cli = build_run(config)
    last = run_dir / "checkpoints" / "last.ckpt"
    cli.trainer.fit(cli.model, cli.datamodule, ckpt_path=str(last) if last.is_file() else None,
                    weights_only=True)
    best = run_dir / "checkpoints" / "best.ckpt"
    ckpt = best if best.is_file() else last
    cli.trainer.test(cli.model, cli.datamodule, ckpt_path=str(ckpt), verbose=False, weights_only=True)
    return _finish(run_dir, cli, time.perf_counter() - start, int(cli.trainer.global_step), ckpt)


def _checkpoint_model_config(checkpoint: Path) -> dict[str, Any]:
    """The model section a checkpoint was trained with (its saved hyper-parameters)."""
    if not checkpoint.is_file():
        raise CheckpointError(f"{checkpoint}: checkpoint not found")
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a file that is not a checkpoint
        raise CheckpointError(f"{checkpoint}: not a readable checkpoint ({type(exc).__name__})") from None
    hparams = state.get("hyper_parameters") if isinstance(state, dict) else None
    if not isinstance(hparams, dict) or "num_keypoints" not in hparams:
        raise CheckpointError(f"{checkpoint}: not a crosspose checkpoint (no model hyper-parameters)")
    return {k: v for k, v in hparams.items() if k not in ("optimizer", "_instantiator")}


def test_checkpoint(
    checkpoint: str | Path,
    out_dir: str | Path,
    data: Mapping[str, Any],
    trainer: Mapping[str, Any] | None = None,
) -> Metrics:
    """Score a checkpoint on ``data.test_file`` (any skeleton: shared joints are matched by name)."""
    out_dir = Path(out_dir)
    recorded = {"checkpoint": str(checkpoint), "data": _plain(dict(data)), "trainer": _plain(dict(trainer or {}))}
    check_reusable(out_dir, recorded)
    done = load_run_metrics(out_dir)
    if done is not None:
        return done
    checkpoint = Path(checkpoint)
    load_checkpoint(checkpoint)  # one-line errors for a missing, corrupt or code-carrying file
    record_config(out_dir, recorded)
    config = {"model": _checkpoint_model_config(checkpoint), "data": dict(data),
              "trainer": {**dict(trainer or {}), "default_root_dir": str(out_dir), "logger": False}}
    start = time.perf_counter()
    cli = build_run(config)
    if not cli.datamodule.files.get("test"):
        raise DataFormatError(out_dir, "test_checkpoint needs data.test_file")
    cli.trainer.test(cli.model, cli.datamodule, ckpt_path=str(checkpoint), verbose=False, weights_only=True)
    return _finish(out_dir, cli, time.perf_counter() - start, 0, checkpoint)
