"""An inference copy of the network with BatchNorm folded into the convolutions before it."""

from __future__ import annotations

import copy
import itertools

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = ["fold_batchnorm", "inference_copy"]


def fold_batchnorm(module: nn.Module) -> int:
    """Fold every BatchNorm2d that directly follows a Conv2d into it, in place; returns how many.

    timm ResNets keep each ``convN`` next to its ``bnN`` (and ``downsample`` is conv, bn), so adjacent
    children are the pairs. Uses eval-mode statistics: the result is for inference only.
    """
    folded = 0
    for parent in list(module.modules()):
        names = list(parent._modules)
        for a, b in itertools.pairwise(names):
            conv, bn = parent._modules[a], parent._modules[b]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                parent._modules[a] = fuse_conv_bn_eval(conv, bn)
                parent._modules[b] = nn.Identity()
                folded += 1
    return folded


def inference_copy(net: nn.Module, channels_last: bool = True) -> nn.Module:
    """A folded, eval-mode copy of ``net`` (the original keeps training as before)."""
    folded = copy.deepcopy(net).eval()
    fold_batchnorm(folded)
    for p in folded.parameters():
        p.requires_grad_(False)
    if channels_last:
        folded.to(memory_format=torch.channels_last)
    return folded
