"""Gradual unfreezing: a schedule of backbone freeze levels by training step.

``freeze: backbone`` with ``unfreeze: {2000: stage3, 5000: none}`` trains the heads alone for 2,000
steps, then stage 4 as well, and from step 5,000 everything. A level applies to the optimizer steps
taken once ``global_step`` has reached its step, so the weights saved at step 2,000 still hold the
initial stage-4 weights.

Stages that the schedule unfreezes later are frozen *softly*: their parameters do not require
gradients (no gradient, so no update, momentum or weight decay: torch optimizers skip parameters
whose ``grad`` is None) and their BatchNorm layers stay in eval mode, but they are handed to the
optimizer from the start, in the backbone group (with its learning-rate scale). The optimizer's
layout therefore never changes, and a run resumed after an unfreeze point loads its optimizer
state exactly. Stages that stay frozen to the end are frozen for good, as ``freeze`` alone does
(:func:`crosspose.models.freeze.freeze_backbone`).
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from crosspose.core.errors import ConfigError
from crosspose.models.backbone import Backbone
from crosspose.models.freeze import FREEZE_LEVELS, frozen_stages

__all__ = ["level_at", "parse_unfreeze", "stage_batchnorms", "stage_parameters"]


def parse_unfreeze(freeze: str, schedule: Mapping[int, str] | None) -> list[tuple[int, str]]:
    """The schedule as sorted ``(step, level)`` pairs, checked; [] when there is none.

    Every level must freeze a prefix of what the level before it froze (unfreezing only).
    """
    if not schedule:
        return []
    steps: list[tuple[int, str]] = []
    for step, level in schedule.items():
        try:
            step_int = int(step)
        except (TypeError, ValueError):
            raise ConfigError(f"model.unfreeze: steps must be integers, got {step!r}") from None
        if step_int < 0 or str(step_int) != str(step).strip():
            raise ConfigError(f"model.unfreeze: steps must be non-negative integers, got {step!r}")
        if level not in FREEZE_LEVELS:
            raise ConfigError(f"model.unfreeze: unknown level {level!r} at step {step_int}; "
                              f"choose one of {', '.join(FREEZE_LEVELS)}")
        steps.append((step_int, str(level)))
    steps.sort()
    previous, before = freeze, set(frozen_stages(freeze))
    for step, level in steps:
        now = set(frozen_stages(level))
        if not now <= before or now == before:
            raise ConfigError(f"model.unfreeze: step {step} sets {level!r}, which does not unfreeze anything "
                              f"frozen by {previous!r} (the schedule may only unfreeze, stage by stage)")
        previous, before = level, now
    return steps


def level_at(freeze: str, schedule: list[tuple[int, str]], step: int) -> str:
    """The freeze level in force for the optimizer step taken at ``global_step == step``."""
    level = freeze
    for at, scheduled in schedule:
        if step >= at:
            level = scheduled
    return level


def stage_parameters(backbone: Backbone, stages: tuple[str, ...] | list[str]) -> list[nn.Parameter]:
    """The parameters of these backbone parts, in forward order."""
    return [p for stage in stages for m in backbone.stage_modules(stage) for p in m.parameters()]


def stage_batchnorms(backbone: Backbone, stages: tuple[str, ...] | list[str]) -> list[nn.Module]:
    """The (unfrozen, trainable-statistics) BatchNorm layers of these backbone parts."""
    return [m for stage in stages for part in backbone.stage_modules(stage) for m in part.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)]
