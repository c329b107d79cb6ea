"""Frames of any size in, keypoints in the frame's own pixels out.

The network is fully convolutional: a frame is scaled (see :func:`frame_scale`), padded at the
bottom and right to a multiple of the output stride, and the maps are cropped back to the cells
that cover the frame before the argmax, so a joint never lands in the padding. Padding only at the
bottom/right keeps the frame's pixel grid, so mapping back is one scale per axis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from crosspose.core.codecs import HeatmapCodec
from crosspose.models.card import ModelCard

__all__ = ["FrameGeometry", "decode_batch", "frame_scale", "geometry_for"]

Scale = float | str


def frame_scale(card: ModelCard, frame_hw: tuple[int, int], scale: Scale = "fit") -> float:
    """The factor a frame is resized by before the network.

    ``"fit"``: the frame fits the training input size, as ``crosspose predict`` feeds a whole image
    (a network trained on instance crops expects the animal at about that size); a number: that
    factor (1 = native resolution, what a network trained on whole frames expects). A checkpoint
    without an input size (older than model cards) runs at native resolution.
    """
    if isinstance(scale, str):
        if scale != "fit":
            raise ValueError(f"scale must be 'fit' or a positive number, got {scale!r}")
        if card.input_size is None:
            return 1.0
        (ih, iw), (h, w) = card.input_size, frame_hw
        return min(ih / h, iw / w)
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    return float(scale)


@dataclass(frozen=True)
class FrameGeometry:
    """How frames of one size become network input, and how predictions map back.

    Attributes:
        frame_hw: original (H, W).
        resized_hw: after scaling.
        padded_hw: network input, multiples of the output stride.
        map_hw: cells of the maps that cover the resized frame.
    """

    frame_hw: tuple[int, int]
    resized_hw: tuple[int, int]
    padded_hw: tuple[int, int]
    map_hw: tuple[int, int]

    def prepare(self, frame: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """One RGB uint8 frame -> the padded network input (H, W, 3), written into ``out`` if given."""
        if frame.shape[:2] != self.frame_hw:
            raise ValueError(f"frame of size {frame.shape[:2]} given to geometry for {self.frame_hw}")
        ph, pw = self.padded_hw
        if out is None:
            out = np.zeros((ph, pw, 3), dtype=np.uint8)
        rh, rw = self.resized_hw
        if (rh, rw) == self.frame_hw:
            out[:rh, :rw] = frame
        else:
            out[:rh, :rw] = cv2.resize(frame, (rw, rh), interpolation=cv2.INTER_LINEAR)
        if rh < ph:
            out[rh:] = 0
        if rw < pw:
            out[:rh, rw:] = 0
        return out

    def to_frame(self, points: torch.Tensor) -> torch.Tensor:
        """(..., 3) resized-frame x, y, confidence -> frame pixels (OpenCV's pixel-centre convention)."""
        sy = self.resized_hw[0] / self.frame_hw[0]
        sx = self.resized_hw[1] / self.frame_hw[1]
        x = (points[..., 0] + 0.5) / sx - 0.5
        y = (points[..., 1] + 0.5) / sy - 0.5
        return torch.stack((x, y, points[..., 2]), dim=-1)


def geometry_for(card: ModelCard, frame_hw: tuple[int, int], scale: Scale = "fit") -> FrameGeometry:
    """The geometry of frames of size ``frame_hw`` for this network."""
    h, w = int(frame_hw[0]), int(frame_hw[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"empty frame {frame_hw}")
    s = frame_scale(card, (h, w), scale)
    rh, rw = max(1, round(h * s)), max(1, round(w * s))
    m = card.input_multiple
    ph, pw = math.ceil(rh / m) * m, math.ceil(rw / m) * m
    if card.head_output == "full":  # DeepLabCut 3's heads: (2F + 1) per side, F = the backbone's ceil(n / 16)
        os_ = card.output_stride
        map_hw = (2 * math.ceil(ph / os_) + 1, 2 * math.ceil(pw / os_) + 1)
    else:
        stride = card.codec.stride
        map_hw = (math.ceil(rh / stride), math.ceil(rw / stride))
    return FrameGeometry((h, w), (rh, rw), (ph, pw), map_hw)


def decode_batch(codec: HeatmapCodec, geometry: FrameGeometry, heatmap: torch.Tensor,
                 locref: torch.Tensor) -> torch.Tensor:
    """Raw head outputs of a batch -> (B, K, 3) x, y in frame pixels and confidence."""
    mh, mw = geometry.map_hw
    points = codec.decode(heatmap[..., :mh, :mw], locref[..., :mh, :mw])
    return geometry.to_frame(points)
