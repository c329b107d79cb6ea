"""How far fine-tuning moved each part of a network from the weights it started from.

The relative L2 distance of a group of tensors (a backbone stage, the heads)::

    ||W - W0|| / ||W0||     (Frobenius norms over every tensor of the group together)

A frozen stage gives exactly 0; a stage that was re-learnt gives a value of order 1. Only learnt
weights count (convolutions, BatchNorm's scale and shift): BatchNorm's running statistics are
data averages, not weights, and ``num_batches_tracked`` is a counter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["POSE_NETWORK_GROUPS", "GroupMovement", "is_statistic", "relative_weight_movement"]

POSE_NETWORK_GROUPS: dict[str, tuple[str, ...]] = {
    "stem": ("backbone.body.conv1.", "backbone.body.bn1."),
    "stage1": ("backbone.body.layer1.",),
    "stage2": ("backbone.body.layer2.",),
    "stage3": ("backbone.body.layer3.",),
    "stage4": ("backbone.body.layer4.",),
    "heads": ("heatmap_head.", "locref_head.", "stage3_head."),
}
"""State-dict key prefixes of a PoseNetwork's parts (the freeze levels' parts, plus the heads)."""

_STATISTICS = ("running_mean", "running_var", "num_batches_tracked")


def is_statistic(key: str) -> bool:
    """True for normalisation statistics and counters, which are not learnt weights."""
    return key.rsplit(".", 1)[-1] in _STATISTICS


@dataclass(frozen=True)
class GroupMovement:
    """The movement of one group: ``relative`` is None when it cannot be measured (``note`` says why)."""

    relative: float | None
    tensors: int
    elements: int
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _state(obj: Mapping[str, torch.Tensor] | nn.Module) -> Mapping[str, torch.Tensor]:
    return obj.state_dict() if isinstance(obj, nn.Module) else obj


def _f64(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu", torch.float64)  # the two networks may live on different devices


def relative_weight_movement(
    current: Mapping[str, torch.Tensor] | nn.Module,
    initial: Mapping[str, torch.Tensor] | nn.Module,
    groups: Mapping[str, Sequence[str]] = POSE_NETWORK_GROUPS,
) -> dict[str, GroupMovement]:
    """``||W - W0|| / ||W0||`` per group of state-dict keys.

    Args:
        current: the fine-tuned network (a module or its state dict).
        initial: the network it was initialised from, same key names.
        groups: group name -> key prefixes (default: a PoseNetwork's stem, stages and heads).

    Returns:
        group -> :class:`GroupMovement`; groups with no tensors are left out, groups whose tensors
        are missing from ``initial`` or differ in shape (heads made for another skeleton) have
        ``relative=None`` and a note.
    """
    cur, ini = _state(current), _state(initial)
    out: dict[str, GroupMovement] = {}
    for group, prefixes in groups.items():
        keys = [k for k in cur if k.startswith(tuple(prefixes)) and not is_statistic(k)
                and torch.is_floating_point(cur[k])]
        if not keys:
            continue
        elements = sum(cur[k].numel() for k in keys)
        missing = [k for k in keys if k not in ini]
        reshaped = [k for k in keys if k in ini and ini[k].shape != cur[k].shape]
        if missing or reshaped:
            first = (missing or reshaped)[0]
            why = ("missing from the initial network" if missing else
                   f"shape {tuple(cur[first].shape)} vs {tuple(ini[first].shape)} in the initial network")
            out[group] = GroupMovement(None, len(keys), elements, f"{first}: {why}")
            continue
        diff = sum(float((_f64(cur[k]) - _f64(ini[k])).pow(2).sum()) for k in keys)
        base = sum(float(_f64(ini[k]).pow(2).sum()) for k in keys)
        if base == 0.0:
            out[group] = GroupMovement(None, len(keys), elements, "the initial weights are all zero")
            continue
        out[group] = GroupMovement(math.sqrt(diff) / math.sqrt(base), len(keys), elements)
    return out
