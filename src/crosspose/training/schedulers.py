"""Learning-rate schedules, as multipliers of the optimizer's base learning rate (per step).

``deepercut``: DeeperCut / DeepLabCut's ``multi_step``: 0.005 until 10k, 0.02 until 430k, 0.002
until 730k, 0.001 after. With SGD at ``lr=0.005`` the multipliers (1, 4, 0.4, 0.2) give exactly
those values; with another base rate they keep the shape. ``rescale_to`` stretches the boundaries
to a shorter (or longer) run, keeping their proportions of the original 1.03M steps.
``cosine``: linear warm-up, then cosine decay to ``min_factor``.
"""

from __future__ import annotations

import math
from typing import Literal

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["DEEPERCUT_STEPS", "ScheduleName", "build_scheduler", "cosine_factor", "deepercut_factor"]

ScheduleName = Literal["deepercut", "cosine", "constant"]

DEEPERCUT_STEPS: tuple[tuple[int, float], ...] = ((10_000, 0.005), (430_000, 0.02), (730_000, 0.002),
                                                   (1_030_000, 0.001))
"""(until step, learning rate) of DeeperCut's multi-step schedule."""


def deepercut_factor(step: int, rescale_to: int | None = None) -> float:
    """Multiplier of base lr 0.005 at ``step``."""
    stretch = 1.0 if rescale_to is None else rescale_to / DEEPERCUT_STEPS[-1][0]
    base = DEEPERCUT_STEPS[0][1]
    for until, lr in DEEPERCUT_STEPS:
        if step < until * stretch:
            return lr / base
    return DEEPERCUT_STEPS[-1][1] / base


def cosine_factor(step: int, total_steps: int, warmup_steps: int = 0, min_factor: float = 0.0) -> float:
    """Learning-rate factor at ``step``: linear warm-up, then cosine decay to ``min_factor``."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: Optimizer,
    name: ScheduleName,
    total_steps: int,
    warmup_steps: int = 0,
    rescale: bool = True,
    min_factor: float = 0.0,
) -> LambdaLR | None:
    """A per-step LambdaLR (its state is a step counter, so resuming restores it exactly)."""
    if name == "constant":
        if warmup_steps <= 0:
            return None
        return LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup_steps))
    if name == "deepercut":
        rescale_to = total_steps if rescale else None

        def factor(s: int) -> float:
            warm = min(1.0, (s + 1) / warmup_steps) if warmup_steps > 0 else 1.0
            return warm * deepercut_factor(s, rescale_to)

        return LambdaLR(optimizer, factor)
    if name == "cosine":
        return LambdaLR(optimizer, lambda s: cosine_factor(s, total_steps, warmup_steps, min_factor))
    raise ValueError(f"unknown learning-rate schedule {name!r} (deepercut, cosine, constant)")
