"""DeeperCut's prediction heads: one 3x3 stride-2 transposed convolution each."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["DeconvHead"]


class DeconvHead(nn.Module):
    """``ConvTranspose2d(in, out, 3, stride=2, padding=0)`` cropped to twice the input size.

    This is DeeperCut's layout exactly (TF "SAME" transposed conv): the uncropped output is
    (2H+1) x (2W+1) and the last row and column are dropped, so cell (gx, gy) stays centred at
    input pixel (8 gx + 4, 8 gy + 4) for a stride-16 feature map. Glorot-uniform weights and zero
    bias, as DeeperCut initialises them.

    DeepLabCut 3's ``HeatmapHead`` is the same transposed convolution without the crop
    (``crop=False``): its maps are (2H+1) x (2W+1), the extra last row and column included.

    Args:
        in_channels: channels of the feature map (2048 for ResNet-50).
        out_channels: J for score maps, 2J for location refinement.
        crop: drop the last row and column (DeeperCut / DeepLabCut 2); False keeps them (DeepLabCut 3).
    """

    def __init__(self, in_channels: int, out_channels: int, crop: bool = True) -> None:
        super().__init__()
        self.deconv = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=3, stride=2, padding=0)
        self.crop = crop
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.deconv.weight)
        nn.init.zeros_(self.deconv.bias)

    @property
    def out_channels(self) -> int:
        return self.deconv.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.crop:
            return self.deconv(x)
        h, w = x.shape[-2:]
        return self.deconv(x)[..., : 2 * h, : 2 * w]
