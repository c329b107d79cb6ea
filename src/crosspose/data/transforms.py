"""Augmentation: one affine for the geometry, albumentations for the photometric part.

The crop to the instance, scale jitter, rotation, translation and the horizontal flip are composed
into ONE 2x3 matrix, so each image is resampled once (no double interpolation, no lost context at
the borders) and keypoints follow exactly the same matrix; they are never dropped (fixed K slots,
visibility kept beside them). A flip also swaps the left/right joint slots. Colour jitter, blur and
noise run through an ``albumentations.Compose`` built with an integer seed.

Every random draw of a sample comes from a seed derived from (run seed, epoch, sample index), so a
sample looks the same whatever the number of workers or processes, and a resumed run sees the
same augmentations as an uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import albumentations as A
import cv2
import numpy as np

from crosspose.core.skeletons import flip_permutation
from crosspose.core.validate import non_negative, probability, value_range

__all__ = ["Augmentation", "InstanceTransform", "crop_matrix", "frame_box", "sample_seed"]


@dataclass
class Augmentation:
    """Training augmentation settings (all off for evaluation).

    Args:
        scale: range of the zoom factor applied on top of the instance crop (DeeperCut: 0.5-1.25
            of its global scale 0.8; here relative to the padded instance box).
        rotation: maximum rotation in degrees (DeeperCut: 25).
        rotation_p: probability of rotating (DeeperCut: 0.4).
        translate: maximum shift as a fraction of the crop size.
        flip: horizontal flip with left/right joint swap (DeeperCut: off).
        flip_p: probability of flipping when ``flip`` is on.
        color_p: probability of colour jitter (brightness, contrast, saturation, hue).
        blur_p: probability of a motion or Gaussian blur.
        noise_p: probability of Gaussian noise.
    """

    scale: tuple[float, float] = (0.75, 1.25)
    rotation: float = 25.0
    rotation_p: float = 0.4
    translate: float = 0.1
    flip: bool = False
    flip_p: float = 0.5
    color_p: float = 0.5
    blur_p: float = 0.2
    noise_p: float = 0.1


def check_augmentation(aug: Augmentation) -> Augmentation:
    """Every augmentation setting in range, or a ConfigError naming it (``data.augmentation.<field>``)."""
    name = "data.augmentation."
    value_range(name + "scale", aug.scale, low=1e-3)
    non_negative(name + "rotation", aug.rotation)
    non_negative(name + "translate", aug.translate)
    for field in ("rotation_p", "flip_p", "color_p", "blur_p", "noise_p"):
        probability(name + field, getattr(aug, field))
    return aug


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 32-bit seed that depends only on (run seed, epoch, sample index)."""
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, epoch, index]).generate_state(1)[0])


def crop_matrix(
    bbox: Sequence[float],
    input_hw: tuple[int, int],
    padding: float = 1.25,
    zoom: float = 1.0,
    rotation_deg: float = 0.0,
    shift: tuple[float, float] = (0.0, 0.0),
    flip: bool = False,
) -> np.ndarray:
    """2x3 matrix mapping original pixels to network-input pixels.

    The instance box ``[x, y, w, h]`` is centred in the input, grown by ``padding`` and to the
    input's aspect ratio, so the whole instance is visible at zoom 1.
    """
    out_h, out_w = input_hw
    x, y, w, h = (float(v) for v in bbox)
    cx, cy = x + w / 2.0, y + h / 2.0
    w, h = max(w, 1.0), max(h, 1.0)
    box_h = max(h, w * out_h / out_w) * padding
    box_w = box_h * out_w / out_h
    s = zoom * out_h / box_h
    theta = math.radians(rotation_deg)
    cos, sin = math.cos(theta) * s, math.sin(theta) * s
    fx = -1.0 if flip else 1.0
    # input = T(out centre) . Flip . R(theta) . S(s) . T(-(centre + shift))
    lin = np.array([[fx * cos, fx * -sin], [sin, cos]], dtype=np.float64)
    centre = np.array([cx + shift[0] * box_w, cy + shift[1] * box_h])
    # OpenCV puts pixel i's centre at coordinate i, so the output's centre is (W - 1) / 2
    offset = np.array([(out_w - 1) / 2.0, (out_h - 1) / 2.0]) - lin @ centre
    return np.concatenate([lin, offset[:, None]], axis=1)


def frame_box(width: int, height: int) -> tuple[float, float, float, float]:
    """The box that spans a whole frame's pixels (pixel i's centre at coordinate i)."""
    return (-0.5, -0.5, float(width), float(height))


def _frame_shift_range(bbox: Sequence[float], input_hw: tuple[int, int], zoom: float) -> tuple[float, float]:
    """How far (in crop_matrix's box units) the view may move and still see only the frame.

    Whole-frame training zooms into the frame as DeepLabCut's random crops do; the view of size
    box / zoom may then lie anywhere inside the frame, not just near its centre.
    """
    out_h, out_w = input_hw
    w, h = max(float(bbox[2]), 1.0), max(float(bbox[3]), 1.0)
    box_h = max(h, w * out_h / out_w)
    box_w = box_h * out_w / out_h
    return (max(0.0, (w - box_w / zoom) / 2.0) / box_w, max(0.0, (h - box_h / zoom) / 2.0) / box_h)


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(matrix.astype(np.float64))


class InstanceTransform:
    """Crop + augment one instance to the network input.

    Args:
        input_hw: network input (H, W), multiples of 16.
        augmentation: training augmentation, or None for evaluation (a plain crop).
        padding: context around the instance box.
        flip_pairs: left/right joint pairs, swapped when an image is flipped.
        num_keypoints: K.
        whole_frame: the box is the whole frame (DeepLabCut's single-animal training): zoomed-in
            views may move anywhere inside the frame (random crops), not only by ``translate``.
    """

    def __init__(
        self,
        input_hw: tuple[int, int],
        augmentation: Augmentation | None,
        padding: float,
        flip_pairs: Sequence[tuple[int, int]],
        num_keypoints: int,
        whole_frame: bool = False,
    ) -> None:
        self.input_hw = input_hw
        self.whole_frame = whole_frame
        self.augmentation = augmentation
        self.padding = padding
        self.flip_perm = np.asarray(flip_permutation(num_keypoints, flip_pairs))
        if augmentation is not None and augmentation.flip and not flip_pairs:
            # a flip without swapped labels teaches the network that left is right
            raise ValueError("augmentation.flip needs left/right joint pairs; the skeleton has none")
        self.photometric = self._photometric(augmentation) if augmentation else None

    @staticmethod
    def _photometric(aug: Augmentation) -> A.Compose:
        return A.Compose(
            [
                A.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.05, p=aug.color_p),
                A.OneOf([A.MotionBlur(blur_limit=(3, 7)), A.GaussianBlur(blur_limit=(3, 5))], p=aug.blur_p),
                A.GaussNoise(std_range=(0.02, 0.06), p=aug.noise_p),
            ],
            seed=0,
        )

    def __call__(
        self, image: np.ndarray, keypoints: np.ndarray, bbox: Sequence[float], seed: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Returns (image HxWx3 uint8, keypoints (K, 2), valid (K,) bool, matrix 2x3 original->input)."""
        aug = self.augmentation
        flip = False
        if aug is None:
            matrix = crop_matrix(bbox, self.input_hw, self.padding)
        else:
            rng = np.random.default_rng(seed)
            zoom = float(rng.uniform(*aug.scale))
            rot = float(rng.uniform(-aug.rotation, aug.rotation)) if rng.random() < aug.rotation_p else 0.0
            if self.whole_frame:
                reach = np.maximum(aug.translate, _frame_shift_range(bbox, self.input_hw, zoom))
                shift = tuple((rng.uniform(-1.0, 1.0, size=2) * reach).tolist())
            else:
                shift = tuple(rng.uniform(-aug.translate, aug.translate, size=2).tolist())
            flip = bool(aug.flip and rng.random() < aug.flip_p)
            matrix = crop_matrix(bbox, self.input_hw, self.padding, zoom, rot, shift, flip)
        h, w = self.input_hw
        out = cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        if self.photometric is not None:
            self.photometric.set_random_seed(seed)
            out = self.photometric(image=out)["image"]
        xy = keypoints[:, :2] @ matrix[:, :2].T + matrix[:, 2]
        labelled = keypoints[:, 2] > 0
        if flip:
            xy, labelled = xy[self.flip_perm], labelled[self.flip_perm]
        inside = (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
        return np.ascontiguousarray(out), xy.astype(np.float32), labelled & inside, matrix
