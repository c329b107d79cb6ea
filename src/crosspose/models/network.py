"""The DeeperCut-style pose network: ResNet backbone + score-map and location-refinement heads."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from crosspose.models.backbone import build_backbone
from crosspose.models.heads import DeconvHead

__all__ = ["HeadOutput", "NormMode", "PoseNetwork"]

NormMode = Literal["batch", "frozen"]
HeadOutput = Literal["same", "full"]


class PoseNetwork(nn.Module):
    """Heatmap network with DeeperCut's heads at output stride 8.

    Outputs a dict: ``heatmap`` (B, J, H/8, W/8) logits, ``locref`` (B, 2J, H/8, W/8) with channel
    2j = dx and 2j+1 = dy of joint j, and ``heatmap_stage3`` when intermediate supervision is on.

    Args:
        num_keypoints: J.
        backbone: timm ResNet name, or ``slim_resnet_v1_50`` / ``_101`` / ``_152`` (DeepLabCut 2's TF-slim net).
        pretrained: timm ImageNet weights.
        norm: ``batch`` trains BatchNorm statistics; ``frozen`` keeps them in eval mode while gamma
            and beta still learn (DeeperCut). Stages frozen with ``freeze`` are always fully frozen.
        intermediate_supervision: add a score-map head on stage 3 (DeeperCut's optional extra loss).
        intermediate_supervision_unit: the 1-based unit of stage 3 whose output feeds that head
            (TF-slim's ``block3/unit_12`` is 12; timm's ``layer3[11]``); None = the end of stage 3.
        head_output: ``same`` = maps of exactly twice the feature size (DeeperCut, DeepLabCut 2);
            ``full`` = the uncropped (2H+1) x (2W+1) maps of DeepLabCut 3's heads.
    """

    def __init__(
        self,
        num_keypoints: int,
        backbone: str = "resnet50",
        pretrained: bool = False,
        norm: NormMode = "batch",
        intermediate_supervision: bool = False,
        intermediate_supervision_unit: int | None = None,
        head_output: HeadOutput = "same",
    ) -> None:
        super().__init__()
        self.num_keypoints = num_keypoints
        self.norm = norm
        self.backbone = build_backbone(backbone, pretrained=pretrained, output_stride=16,
                                       intermediate_unit=intermediate_supervision_unit)
        c3, c4 = self.backbone.channels
        crop = head_output == "same"
        self.heatmap_head = DeconvHead(c4, num_keypoints, crop)
        self.locref_head = DeconvHead(c4, 2 * num_keypoints, crop)
        self.stage3_head = DeconvHead(c3, num_keypoints, crop) if intermediate_supervision else None

    def heads(self) -> dict[str, DeconvHead]:
        heads = {"heatmap_head": self.heatmap_head, "locref_head": self.locref_head}
        if self.stage3_head is not None:
            heads["stage3_head"] = self.stage3_head
        return heads

    def train(self, mode: bool = True) -> PoseNetwork:
        super().train(mode)
        if mode and self.norm == "frozen":
            for m in self.backbone.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """``images``: uint8 or 0-255 float RGB, (B, 3, H, W); H and W multiples of 16 for timm backbones
        (the TF-slim one takes any size, as TensorFlow does).
        """
        stage3, stage4 = self.backbone(self.backbone.normalize(images))
        out = {"heatmap": self.heatmap_head(stage4), "locref": self.locref_head(stage4)}
        if self.stage3_head is not None:
            out["heatmap_stage3"] = self.stage3_head(stage3)
        return out
