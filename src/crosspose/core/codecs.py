"""Target encoding and prediction decoding, kept apart from the network.

Both codecs work in network-input pixels on whole batches of torch tensors, so targets are
generated on the training device (no per-sample CPU work in the data loader) and the same code
serves training, evaluation and tests.

Grid convention (DeeperCut): heatmap cell (gx, gy) at stride s is centred at input pixel
(s gx + s/2, s gy + s/2); location refinement predicts the offset from that centre divided by
``locref_std``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

__all__ = ["HeatmapCodec", "Targets", "build_codec"]

Unannotated = Literal["negative", "ignore"]


@dataclass
class Targets:
    """Training targets for a batch.

    Attributes:
        heatmap: (B, K, h, w) in [0, 1].
        heatmap_weight: (B, K, 1, 1): 1 where the joint takes part in the score-map loss.
        locref: (B, 2K, h, w) offsets / locref_std.
        locref_mask: (B, 2K, h, w): 1 on the cells whose locref is supervised.
    """

    heatmap: torch.Tensor
    heatmap_weight: torch.Tensor
    locref: torch.Tensor
    locref_mask: torch.Tensor


@dataclass(frozen=True)
class HeatmapCodec:
    """Keypoints <-> score maps + location refinement.

    Args:
        kind: ``disk`` = DeeperCut's binary disk of radius ``radius`` (sigmoid cross-entropy);
            ``gaussian`` = exp(-d^2 / 2 sigma^2) (mean squared error, as DeepLabCut 3's variant).
        stride: output stride of the heads (8).
        radius: disk radius in input pixels (DeeperCut's ``pos_dist_thresh`` = 17); also the radius
            inside which location refinement is supervised for both kinds.
        sigma: Gaussian width in input pixels; defaults to 2 * radius / 3 (DeepLabCut 3).
        locref_std: DeeperCut's ``locref_stdev`` (7.2801).
        unannotated: ``negative`` (default, DeeperCut): an unannotated or out-of-view joint has an
            all-zero map that still takes part in the loss; ``ignore``: it is left out.
    """

    kind: Literal["disk", "gaussian"] = "disk"
    stride: int = 8
    radius: float = 17.0
    sigma: float | None = None
    locref_std: float = 7.2801
    unannotated: Unannotated = "negative"

    @property
    def score_activation(self) -> Literal["sigmoid", "identity"]:
        """How raw head outputs become scores in [0, 1] (the loss matches it)."""
        return "sigmoid" if self.kind == "disk" else "identity"

    def heatmap_size(self, input_hw: tuple[int, int]) -> tuple[int, int]:
        h, w = input_hw
        return h // self.stride, w // self.stride

    def _grid(self, h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        half = self.stride / 2
        gy = torch.arange(h, device=device, dtype=torch.float32) * self.stride + half
        gx = torch.arange(w, device=device, dtype=torch.float32) * self.stride + half
        return gx.view(1, 1, 1, w), gy.view(1, 1, h, 1)

    def encode(self, keypoints: torch.Tensor, valid: torch.Tensor, heatmap_hw: tuple[int, int]) -> Targets:
        """Targets for a batch.

        Args:
            keypoints: (B, K, 2) x, y in input pixels.
            valid: (B, K) bool, annotated and inside the input.
            heatmap_hw: (h, w) of the head outputs.
        """
        b, k, _ = keypoints.shape
        h, w = heatmap_hw
        gx, gy = self._grid(h, w, keypoints.device)
        x = keypoints[..., 0].float().view(b, k, 1, 1)
        y = keypoints[..., 1].float().view(b, k, 1, 1)
        dx = x - gx  # (B, K, 1, w)
        dy = y - gy  # (B, K, h, 1)
        dist2 = dx.square() + dy.square()  # (B, K, h, w)
        validf = valid.view(b, k, 1, 1).to(dist2.dtype)
        disk = (dist2 <= self.radius**2).to(dist2.dtype) * validf
        if self.kind == "disk":
            heatmap = disk
        else:
            sigma = self.sigma if self.sigma is not None else 2.0 * self.radius / 3.0
            heatmap = torch.exp(-dist2 / (2.0 * sigma**2)) * validf
        if self.unannotated == "negative":
            weight = torch.ones_like(validf)
        else:
            weight = validf
        locref = torch.stack(
            (dx.expand(b, k, h, w), dy.expand(b, k, h, w)), dim=2
        ).reshape(b, 2 * k, h, w) / self.locref_std
        locref_mask = disk.repeat_interleave(2, dim=1)
        return Targets(heatmap=heatmap, heatmap_weight=weight, locref=locref * locref_mask,
                       locref_mask=locref_mask)

    def scores(self, heatmap: torch.Tensor) -> torch.Tensor:
        """Raw head output -> confidence in [0, 1]."""
        if self.score_activation == "sigmoid":
            return torch.sigmoid(heatmap.float())
        return heatmap.float().clamp(0.0, 1.0)

    def decode(self, heatmap: torch.Tensor, locref: torch.Tensor) -> torch.Tensor:
        """Per joint argmax + location refinement -> (B, K, 3): x, y in input pixels, confidence.

        Args:
            heatmap: (B, K, h, w) raw head output.
            locref: (B, 2K, h, w).
        """
        b, k, h, w = heatmap.shape
        if self.score_activation == "sigmoid":  # DeepLabCut 2: the argmax of the sigmoid map
            conf, flat = self.scores(heatmap).reshape(b, k, h * w).max(dim=2)
        else:  # DeepLabCut 3: the argmax of the raw map, its value clipped to [0, 1]
            raw, flat = heatmap.float().reshape(b, k, h * w).max(dim=2)
            conf = raw.clamp(0.0, 1.0)
        gy = torch.div(flat, w, rounding_mode="floor")
        gx = flat - gy * w
        offsets = locref.float().reshape(b, k, 2, h * w)
        off = torch.gather(offsets, 3, flat.view(b, k, 1, 1).expand(b, k, 2, 1)).squeeze(3)
        half = self.stride / 2
        x = gx.float() * self.stride + half + off[..., 0] * self.locref_std
        y = gy.float() * self.stride + half + off[..., 1] * self.locref_std
        return torch.stack((x, y, conf), dim=-1)


def build_codec(
    kind: Literal["disk", "gaussian"] = "disk",
    radius: float = 17.0,
    sigma: float | None = None,
    locref_std: float = 7.2801,
    unannotated: Unannotated = "negative",
) -> HeatmapCodec:
    """The codec for a model's options (stride is fixed by the network: 8)."""
    if radius <= 0:
        raise ValueError(f"heatmap radius must be positive, got {radius}")
    return HeatmapCodec(kind=kind, stride=8, radius=radius, sigma=sigma, locref_std=locref_std,
                        unannotated=unannotated)
