"""Freezing the backbone by stage, with truly frozen normalisation.

Stages are the backbone's own (timm: ``conv1``+``bn1``, ``layer1``-``layer4``; TF-slim:
``conv1``, ``block1``-``block4``). ``freeze: stage2`` freezes the stem, stage 1 and stage 2: their parameters stop requiring
gradients (so the optimizer never sees them) and their BatchNorm layers become
``FrozenBatchNorm2d``, whose statistics and affine terms are buffers: nothing about a frozen stage
changes during training, whatever ``train()``/``eval()`` the trainer calls.
"""

from __future__ import annotations

from typing import Literal, get_args

from timm.layers import freeze_batch_norm_2d
from torch import nn

from crosspose.core.errors import ConfigError
from crosspose.models.backbone import STAGES, Backbone

__all__ = ["FREEZE_LEVELS", "FreezeLevel", "freeze_backbone", "frozen_stages"]

FreezeLevel = Literal["none", "stem", "stage1", "stage2", "stage3", "stage4", "backbone"]
FREEZE_LEVELS: tuple[str, ...] = get_args(FreezeLevel)


def frozen_stages(level: str) -> tuple[str, ...]:
    """The backbone parts a freeze level covers, in forward order."""
    if level not in FREEZE_LEVELS:
        raise ConfigError(f"unknown freeze level {level!r} (model.freeze); choose one of {', '.join(FREEZE_LEVELS)}")
    if level == "none":
        return ()
    if level == "backbone":
        return STAGES
    return STAGES[: STAGES.index(level) + 1]


def freeze_backbone(backbone: Backbone, level: str) -> tuple[str, ...]:
    """Freeze every part up to and including ``level``; returns the parts frozen."""
    stages = frozen_stages(level)
    body = backbone.body
    for stage in stages:
        for name in _module_names(backbone, stage):
            module = getattr(body, name)
            for p in module.parameters():
                p.requires_grad_(False)
            setattr(body, name, freeze_batch_norm_2d(module))
    return stages


def _module_names(backbone: Backbone, stage: str) -> list[str]:
    names = []
    wanted = {id(m) for m in backbone.stage_modules(stage)}
    for name, child in backbone.body.named_children():
        if id(child) in wanted:
            names.append(name)
    return names


def count_trainable(module: nn.Module) -> int:
    """Number of trainable parameter elements (for logs)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
