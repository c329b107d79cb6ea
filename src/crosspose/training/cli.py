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
from typing import Any, Optional

import torch
from lightning.pytorch import Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.plugins.io import CheckpointIO

from crosspose.core.allocator import keep_freed_memory
from crosspose.core.errors import ConfigError
from crosspose.data.datamodule import PoseDataModule
from crosspose.training.callbacks import configure_logging, run_callbacks, run_loggers
from crosspose.training.checkpoint_config import (
    CARD_COMMANDS,
    card_arguments,
    card_of,
    check_config_against_card,
    find_ckpt_path,
    read_card,
)
from crosspose.training.checkpointing import AtomicCheckpointIO, load_checkpoint
from crosspose.training.module import PoseEstimationModule

__all__ = ["CrossposeCLI", "run_lightning_cli", "trainer_defaults", "with_atomic_checkpoints"]


def trainer_defaults(subcommand: str | None = None) -> dict[str, Any]:
    """Speed levers on where they help: bf16-mixed and cudnn.benchmark on a GPU.

    ``predict`` on a CPU also defaults to bf16 autocast where the CPU has bf16 units (AVX512-BF16,
    AMX; detected, see :mod:`crosspose.core.hardware`); ``--trainer.precision 32-true`` turns it off.
    """
    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    if subcommand == "predict" and not cuda:
        from crosspose.core.hardware import choose_inference_precision, read_cpu_features

        bf16 = choose_inference_precision(read_cpu_features(), "cpu") == "bf16"
    return {
        "default_root_dir": "runs/default",
        "precision": "bf16-mixed" if bf16 else "32-true",
        "benchmark": cuda,
        # our ShardedEpochSampler shards by rank itself and never pads evaluation sets
        "use_distributed_sampler": False,
        "log_every_n_steps": 10,
    }


def with_atomic_checkpoints(plugins: Any) -> list[Any]:
    """The trainer's ``plugins`` plus :class:`AtomicCheckpointIO` unless a CheckpointIO is given."""
    given = list(plugins) if isinstance(plugins, list | tuple) else [] if plugins is None else [plugins]
    if not any(isinstance(p, CheckpointIO) for p in given):
        given.append(AtomicCheckpointIO())
    return given


class CrossposeCLI(LightningCLI):
    """LightningCLI with crosspose's run-folder layout and checkpoints."""

    def __init__(self, args: Sequence[str] | dict[str, Any] | None = None, run: bool = True) -> None:
        configure_logging()
        given = [] if isinstance(args, dict) else list(args) if args is not None else sys.argv[1:]
        subcommand = next((a for a in given if not a.startswith("-")), None)
        super().__init__(
            PoseEstimationModule,
            PoseDataModule,
            seed_everything_default=0,
            save_config_kwargs={"overwrite": True},
            trainer_defaults=trainer_defaults(subcommand),
            auto_configure_optimizers=False,  # the optimizer is injected into the model
            args=args if args is None or isinstance(args, dict) else list(args),
            run=run,
            parser_kwargs={"default_env": False, "exit_on_error": False},  # errors reach cli.main: one line
        )

    def parse_arguments(self, parser: Any, args: Any) -> None:
        """Parse; then check ``--ckpt_path`` and the options against its model card.

        The checkpoint is loaded weights-only before LightningCLI reads it, so a missing or corrupt
        file, or one carrying code, is one line; options that contradict its card are refused.
        """
        super().parse_arguments(parser, args)
        sub = self.config.get("subcommand")
        path = self.config[sub].get("ckpt_path") if sub else None
        if not path or str(path) in ("last", "best", "hpc", "registry"):  # Lightning's named checkpoints
            return
        checkpoint = load_checkpoint(path)  # raises CheckpointError
        card = card_of(checkpoint, path) if sub in CARD_COMMANDS else None
        if card is not None:
            check_config_against_card(self.config[sub], card, str(path))

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """``experiment``: settings of the experiment a config belongs to (``crosspose demo`` reads them).

        Training ignores the section; it is recorded with the run, so a demo profile is one YAML that
        ``crosspose fit`` also runs.
        """
        parser.add_argument("--experiment", type=Optional[dict[str, Any]], default=None,  # noqa: UP045
                            help="settings of the experiment this config belongs to (read by crosspose demo; "
                                 "ignored by training)")

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The trainer with crosspose's run folder: checkpoints, loggers, progress (see training.callbacks)."""
        config = self.config_init.get(self.subcommand) if self.subcommand else self.config_init
        trainer_cfg = dict(config.get("trainer") or {})
        root = Path(trainer_cfg.get("default_root_dir") or "runs/default")
        given = list(trainer_cfg.get("callbacks") or [])
        logger = trainer_cfg.get("logger")
        if logger in (None, True):
            kwargs["logger"] = run_loggers(root)
        module = self.model
        kwargs["callbacks"] = given + run_callbacks(
            root, given, monitor=getattr(module, "monitor", "val/pckh"), mode=getattr(module, "mode", "max"),
            progress_bar=trainer_cfg.get("enable_progress_bar") is not False,
            has_logger=kwargs.get("logger", logger) not in (None, False))
        # atomic checkpoint writes that raise on failure; weights-only loads (resume included)
        kwargs["plugins"] = with_atomic_checkpoints(trainer_cfg.get("plugins"))
        return super().instantiate_trainer(**kwargs)

    def before_predict(self) -> None:
        """Inference keeps the memory it frees, as ``crosspose analyze`` does (crosspose.core.allocator)."""
        print(keep_freed_memory().describe(), file=sys.stderr, flush=True)

    def before_fit(self) -> None:
        """A fit without --ckpt_path into a folder that already holds checkpoints would overwrite them."""
        config = self.config[self.subcommand]
        if config.get("ckpt_path") or getattr(self.trainer, "fast_dev_run", False):
            return
        folder = Path(self.trainer.default_root_dir) / "checkpoints"
        found = sorted(p.name for p in folder.glob("*.ckpt")) if folder.is_dir() else []
        if found:
            raise ConfigError(f"{folder.parent}: this run folder already holds checkpoints ({', '.join(found)}) "
                              "of an earlier fit; continue it with --ckpt_path last, or give another "
                              "--trainer.default_root_dir")


def run_lightning_cli(args: Sequence[str]) -> CrossposeCLI:
    """Run a LightningCLI subcommand (``fit``, ``validate``, ``test``, ``predict``)."""
    # LightningCLI reads sys.argv when given no args and warns when given both: hand it ours alone
    args = list(args)
    if args and args[0] in CARD_COMMANDS:
        # the checkpoint's card supplies model and data options; the user's own come after it
        card = read_card(find_ckpt_path(args[1:]) or "")
        if card is not None:
            args = [args[0], *card_arguments(card), *args[1:]]
    saved = sys.argv
    sys.argv = [saved[0] if saved else "crosspose", *args]
    try:
        return CrossposeCLI(args=None)
    finally:
        sys.argv = saved
