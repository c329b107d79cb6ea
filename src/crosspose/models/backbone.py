"""ResNet backbones at output stride 16, as DeeperCut uses them: timm's, or TF-slim's v1.

The last stage is dilated (rate 2) instead of strided, so a 256 px input gives a 16 x 16 map of
2048 channels for ResNet-50; the stride-2 transposed-conv heads then bring it to stride 8.
:func:`build_backbone` picks the family by name: ``slim_resnet_v1_*`` is the TF-slim network of
DeepLabCut 2 (:mod:`crosspose.models.slim_resnet`), anything else a timm ResNet.

Every backbone has the same face: ``name``, ``channels`` (intermediate, final), ``normalize``,
``forward`` -> (intermediate feature map, final feature map), ``body`` and ``stage_modules`` (for
freezing). The intermediate map is the output of one unit of stage 3 (``intermediate_unit``,
1-based; default its last unit), where DeeperCut's intermediate supervision attaches.
"""

from __future__ import annotations

from typing import Any

import timm
import torch
from torch import nn

from crosspose.core.errors import ConfigError
from crosspose.models.group_norm import fuse_group_norm
from crosspose.models.slim_resnet import DLC_MEAN_PIXEL, SlimResNetV1, parse_slim_name

__all__ = ["STAGES", "Backbone", "ResNetBackbone", "SlimResNetBackbone", "build_backbone"]

STAGES: tuple[str, ...] = ("stem", "stage1", "stage2", "stage3", "stage4")
"""Freezable parts in forward order; ``stem`` is conv1 + bn1, ``stageN`` is timm's ``layerN``."""

_STAGE_MODULES: dict[str, tuple[str, ...]] = {
    "stem": ("conv1", "bn1"),
    "stage1": ("layer1",),
    "stage2": ("layer2",),
    "stage3": ("layer3",),
    "stage4": ("layer4",),
}


class ResNetBackbone(nn.Module):
    """A timm ResNet returning its stage-3 and stage-4 feature maps at output stride 16.

    Args:
        name: any timm ResNet (``resnet18``, ``resnet50``, ``resnet101``, ``resnet50d``, ...).
        pretrained: load timm's ImageNet weights (needs the network the first time).
        output_stride: 16 (DeeperCut) or 32 (no dilation, cheaper).
    """

    body: Any  # timm's feature net (its attributes are timm's, not typed as such)
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, name: str = "resnet50", pretrained: bool = False, output_stride: int = 16,
                 intermediate_unit: int | None = None) -> None:
        super().__init__()
        if not name.startswith(("resnet", "resnext", "seresnet", "wide_resnet")):
            raise ConfigError(f"backbone {name!r} is not a timm ResNet (try resnet50, resnet101, resnet18)")
        try:
            self.body = timm.create_model(
                name, pretrained=pretrained, features_only=True, out_indices=(3, 4),
                output_stride=output_stride,
            )
        except RuntimeError as exc:
            if "Unknown model" in str(exc) or "Invalid model" in str(exc):
                raise ConfigError(f"timm has no model named {name!r}") from None
            raise
        except Exception as exc:  # hub/network failures come in many types
            if pretrained:
                raise ConfigError(
                    f"could not load ImageNet weights for {name!r} from the Hugging Face hub "
                    f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). "
                    "This machine needs internet access once (weights are cached in ~/.cache/huggingface); "
                    "offline, set `model.pretrained: false` or initialise from a checkpoint with "
                    "`model.init_from`."
                ) from None
            raise
        # GroupNorm backbones (DeepLabCut 3's default): the norm and its ReLU as one CPU kernel; same
        # parameters and state-dict keys, PyTorch's ops wherever the kernel does not apply
        fuse_group_norm(self.body)
        self.name = name
        self.channels: tuple[int, int] = tuple(self.body.feature_info.channels())
        self.intermediate_unit = _check_unit(intermediate_unit, len(self.body.layer3), name)
        cfg = self.body.pretrained_cfg
        self.register_buffer("mean", torch.tensor(cfg.get("mean", (0.485, 0.456, 0.406))).view(1, 3, 1, 1) * 255,
                             persistent=False)
        self.register_buffer("std", torch.tensor(cfg.get("std", (0.229, 0.224, 0.225))).view(1, 3, 1, 1) * 255,
                             persistent=False)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (or 0-255 float) RGB -> the backbone's input normalisation, as float."""
        return (images.float() - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.intermediate_unit is None:
            stage3, stage4 = self.body(x)
            return stage3, stage4
        interm = x
        for name, module in self.body.items():  # timm's feature net runs its children in order
            if name == "layer3":
                for i, unit in enumerate(module):
                    x = unit(x)
                    if i == self.intermediate_unit - 1:
                        interm = x
            else:
                x = module(x)
        return interm, x

    def stage_modules(self, stage: str) -> list[nn.Module]:
        """The timm submodules that make up one freezable part."""
        return [getattr(self.body, n) for n in _STAGE_MODULES[stage]]


def _check_unit(unit: int | None, units: int, name: str) -> int | None:
    if unit is not None and not 1 <= unit <= units:
        raise ConfigError(f"model.intermediate_supervision_unit {unit} is outside stage 3 of {name} "
                          f"(units 1..{units})")
    return unit


_SLIM_STAGE_MODULES: dict[str, tuple[str, ...]] = {
    "stem": ("conv1",), "stage1": ("block1",), "stage2": ("block2",), "stage3": ("block3",),
    "stage4": ("block4",),
}


class SlimResNetBackbone(nn.Module):
    """TF-slim ResNet v1 (DeepLabCut 2's network) behind the backbone interface.

    Input centring is DeepLabCut's: RGB minus the mean pixel, no division. ``stem`` is slim's
    ``conv1`` (the max-pool has no weights), ``stageN`` is ``blockN``.

    Args:
        name: ``slim_resnet_v1_50`` / ``_101`` / ``_152``, optionally ``_c<root>-<b1>-<b2>-<b3>-<b4>``
            for non-standard widths (what ``crosspose convert`` writes for a narrow network).
        pretrained: not available here: ImageNet weights come from TF-slim's ``resnet_v1_*.ckpt``
            through ``crosspose convert dlc-tf`` and ``model.init_from``.
        output_stride: 16 (DeepLabCut) or 32.
        intermediate_unit: 1-based unit of block 3 whose output is the intermediate map.
    """

    body: SlimResNetV1
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, name: str = "slim_resnet_v1_50", pretrained: bool = False, output_stride: int = 16,
                 intermediate_unit: int | None = None) -> None:
        super().__init__()
        layers, depths = parse_slim_name(name)
        if pretrained:
            raise ConfigError(f"backbone {name!r} has no downloadable weights: convert TF-slim's "
                              "resnet_v1_*.ckpt with `crosspose convert dlc-tf --snapshot resnet_v1_50.ckpt "
                              "--out r50.ckpt` and set model.init_from (and model.pretrained: false)")
        self.name = name
        self.body = SlimResNetV1(layers, depths, output_stride)
        self.channels: tuple[int, int] = self.body.channels
        self.intermediate_unit = _check_unit(intermediate_unit, len(self.body.block3), name)
        self.register_buffer("mean", torch.tensor(DLC_MEAN_PIXEL).view(1, 3, 1, 1), persistent=False)
        # no division (std 1): kept so the model card and exports describe the input like any backbone's
        self.register_buffer("std", torch.ones(1, 3, 1, 1), persistent=False)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (or 0-255 float) RGB minus DeepLabCut's mean pixel."""
        return images.float() - self.mean

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.body(x, self.intermediate_unit)

    def stage_modules(self, stage: str) -> list[nn.Module]:
        return [getattr(self.body, n) for n in _SLIM_STAGE_MODULES[stage]]


Backbone = ResNetBackbone | SlimResNetBackbone


def build_backbone(name: str, pretrained: bool = False, output_stride: int = 16,
                   intermediate_unit: int | None = None) -> Backbone:
    """The backbone called ``name``: ``slim_resnet_v1_*`` (TF-slim) or a timm ResNet."""
    if name.startswith("slim_"):
        return SlimResNetBackbone(name, pretrained, output_stride, intermediate_unit)
    return ResNetBackbone(name, pretrained, output_stride, intermediate_unit)
