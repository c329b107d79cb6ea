"""timm ResNet backbones at output stride 16, as DeeperCut uses them.

The last stage is dilated (rate 2) instead of strided, so a 256 px input gives a 16 x 16 map of
2048 channels for ResNet-50; the stride-2 transposed-conv heads then bring it to stride 8.
"""

from __future__ import annotations

import timm
import torch
from torch import nn

from crosspose.core.errors import ConfigError

__all__ = ["STAGES", "ResNetBackbone"]

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

    def __init__(self, name: str = "resnet50", pretrained: bool = False, output_stride: int = 16) -> None:
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
        self.name = name
        self.channels: tuple[int, int] = tuple(self.body.feature_info.channels())  # type: ignore[assignment]
        cfg = self.body.pretrained_cfg
        self.register_buffer("mean", torch.tensor(cfg.get("mean", (0.485, 0.456, 0.406))).view(1, 3, 1, 1) * 255,
                             persistent=False)
        self.register_buffer("std", torch.tensor(cfg.get("std", (0.229, 0.224, 0.225))).view(1, 3, 1, 1) * 255,
                             persistent=False)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (or 0-255 float) RGB -> the backbone's input normalisation, as float."""
        return (images.float() - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        stage3, stage4 = self.body(x)
        return stage3, stage4

    def stage_modules(self, stage: str) -> list[nn.Module]:
        """The timm submodules that make up one freezable part."""
        return [getattr(self.body, n) for n in _STAGE_MODULES[stage]]
