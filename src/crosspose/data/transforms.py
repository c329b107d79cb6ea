"""Augmentation: one affine for the geometry, albumentations for the photometric part.

The crop to the instance, scale jitter, rotation, translation and the horizontal flip are composed
into ONE 2x3 matrix, so each image is resampled once (no double interpolation, no lost context at
the borders) and keypoints follow exactly the same matrix; they are never dropped (fixed K slots,
visibility kept beside them). A flip also swaps the left/right joint slots. Colour jitter, blur and
noise run through an ``albumentations.Compose`` built with an integer seed.

DeepLabCut 2.2.0.6's default pipeline (:meth:`Augmentation.deeplabcut22`) adds its crop-and-pad to
that matrix and its motion blur, coarse dropout and elastic deformation, which DeepLabCut applies at
the original resolution before resizing: they run on the part of the original image the matrix
reads (crosspose.data.deeplabcut_ops), then the one warp follows.

Every random draw of a sample comes from a seed derived from (run seed, epoch, sample index), so a
sample looks the same whatever the number of workers or processes, and a resumed run sees the
same augmentations as an uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import albumentations as A
import cv2
import numpy as np

from crosspose.core.errors import ConfigError
from crosspose.core.skeletons import flip_permutation
from crosspose.core.validate import non_negative, probability, value_range
from crosspose.data import deeplabcut_ops

__all__ = ["Augmentation", "InstanceTransform", "TransformedInstance", "crop_matrix", "frame_box", "sample_seed"]


@dataclass
class Augmentation:
    """Training augmentation settings (all off for evaluation).

    The defaults are crosspose's own pipeline; :meth:`deeplabcut22` gives DeepLabCut 2.2.0.6's.

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
        crop_pad: DeepLabCut's ``CropAndPad(percent=(-crop_pad, crop_pad), keep_size=False)`` then
            resize: each side of the crop moves in or out by up to this fraction, independently.
        crop_pad_p: probability of the crop-and-pad (DeepLabCut: ``cropratio`` 0.4).
        motion_blur_p: probability of imgaug's ``MotionBlur(k=7)`` at original resolution.
        dropout_p: probability of imgaug's ``CoarseDropout(0.02, size_percent=0.3, per_channel=0.5)``.
        elastic_p: probability of imgaug's ``ElasticTransformation(sigma=5)`` (keypoints move too).
        keep_outside: joints pushed out of the crop keep the part of their disk that still falls
            inside it (DeepLabCut 2.2 draws every labelled joint); otherwise they are negatives.
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
    crop_pad: float = 0.0
    crop_pad_p: float = 0.0
    motion_blur_p: float = 0.0
    dropout_p: float = 0.0
    elastic_p: float = 0.0
    keep_outside: bool = False

    def __post_init__(self) -> None:
        """Every setting in range, or a ConfigError naming it as the user writes it."""
        name = "data.augmentation."
        self.scale = value_range(name + "scale", self.scale, low=1e-3)  # YAML and JSON give a list
        non_negative(name + "rotation", self.rotation)
        non_negative(name + "translate", self.translate)
        for field in ("rotation_p", "flip_p", "color_p", "blur_p", "noise_p", "crop_pad_p", "motion_blur_p",
                      "dropout_p", "elastic_p"):
            probability(name + field, getattr(self, field))
        if not 0.0 <= self.crop_pad < 0.5:
            raise ConfigError(f"{name}crop_pad is a fraction of each side below 0.5, got {self.crop_pad}")

    @classmethod
    def deeplabcut22(cls) -> Augmentation:
        """DeepLabCut 2.2.0.6's default single-animal imgaug pipeline, as its training config sets it.

        Read from that release's ``deeplabcut/pose_cfg.yaml`` (the template every project's
        training ``pose_cfg.yaml`` is written from) and
        ``deeplabcut/pose_estimation_tensorflow/datasets/pose_imgaug.py``:

        - scale jitter U(0.5, 1.25) (pose_cfg.yaml:65-66) on global_scale 0.8 (pose_cfg.yaml:20);
        - ``Sometimes(0.4, Affine(rotate=(-25, 25)))`` (pose_imgaug.py:54-63, 155-161; the
          ``rotratio`` key of pose_cfg.yaml:61 is never read, the code reads ``rotateratio`` and
          falls back to 0.4);
        - ``Sometimes(0.5, MotionBlur(k=7, angle=(-90, 90)))`` (pose_imgaug.py:71-75, 163-165; the
          0.5 is ``apply_prob`` hard-coded at pose_imgaug.py:372);
        - ``Sometimes(0.5, CoarseDropout(0.02, size_percent=0.3, per_channel=0.5))`` (:167-170);
        - ``Sometimes(0.5, ElasticTransformation(sigma=5))`` (:172-173);
        - ``Sometimes(0.4, CropAndPad(percent=(-0.15, 0.15), keep_size=False))`` then the resize
          (:266-277; cropratio 0.4 at pose_cfg.yaml:55, crop_by unset -> 0.15);
        - no mirror (pose_cfg.yaml:69), no Gaussian noise or grayscale (:175-194, off unless set);
          no histogram equalisation or CLAHE: pose_cfg.yaml:81-84 sets ``clahe``/``histeq`` at the
          top level but pose_imgaug.py:203 reads them under ``contrast``, so they never run;
        - no colour jitter and no translation (the pipeline has neither).
        """
        return cls(scale=(0.5, 1.25), rotation=25.0, rotation_p=0.4, translate=0.0, flip=False,
                   color_p=0.0, blur_p=0.0, noise_p=0.0, crop_pad=0.15, crop_pad_p=0.4,
                   motion_blur_p=0.5, dropout_p=0.5, elastic_p=0.5, keep_outside=True)

    def steps(self) -> list[tuple[str, float]]:
        """The operations this augmentation can apply, in order, with their probabilities."""
        steps = [("scale", 1.0 if self.scale[0] != self.scale[1] or self.scale[0] != 1.0 else 0.0),
                 ("rotate", self.rotation_p if self.rotation > 0 else 0.0),
                 ("translate", 1.0 if self.translate > 0 else 0.0),
                 ("flip", self.flip_p if self.flip else 0.0),
                 ("crop_pad", self.crop_pad_p if self.crop_pad > 0 else 0.0),
                 ("motion_blur", self.motion_blur_p), ("coarse_dropout", self.dropout_p),
                 ("elastic", self.elastic_p),
                 ("color_jitter", self.color_p), ("blur", self.blur_p), ("noise", self.noise_p)]
        return [(name, p) for name, p in steps if p > 0]


class TransformedInstance(NamedTuple):
    """One cropped, augmented instance.

    Attributes:
        image: (H, W, 3) uint8 network input.
        keypoints: (K, 2) input pixels.
        valid: (K,) bool: the joint gets a target (labelled, and inside the input unless the
            augmentation keeps partial disks of joints outside it).
        matrix: 2x3 original -> input pixels.
        zoom: input pixels per original pixel, as DeepLabCut 2.2 counts it for the disk radius
            (the crop's scale before any crop-and-pad).
    """

    image: np.ndarray
    keypoints: np.ndarray
    valid: np.ndarray
    matrix: np.ndarray
    zoom: float


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
    ) -> TransformedInstance:
        """Crop (and for training augment) one instance; see :class:`TransformedInstance`."""
        aug = self.augmentation
        flip = False
        xy_orig = keypoints[:, :2].astype(np.float64)
        if aug is None:
            matrix = crop_matrix(bbox, self.input_hw, self.padding)
            zoom = _scale_of(matrix)
        else:
            rng = np.random.default_rng(seed)
            zoom_jitter = float(rng.uniform(*aug.scale))
            rot = float(rng.uniform(-aug.rotation, aug.rotation)) if rng.random() < aug.rotation_p else 0.0
            if self.whole_frame:
                reach = np.maximum(aug.translate, _frame_shift_range(bbox, self.input_hw, zoom_jitter))
                shift = tuple((rng.uniform(-1.0, 1.0, size=2) * reach).tolist())
            else:
                shift = tuple(rng.uniform(-aug.translate, aug.translate, size=2).tolist())
            flip = bool(aug.flip and rng.random() < aug.flip_p)
            matrix = crop_matrix(bbox, self.input_hw, self.padding, zoom_jitter, rot, shift, flip)
            zoom = _scale_of(matrix)
            # later draws only when enabled, so crosspose's own pipeline draws what it always drew
            if aug.crop_pad > 0 and aug.crop_pad_p > 0 and rng.random() < aug.crop_pad_p:
                matrix = _crop_and_pad(matrix, rng.uniform(-aug.crop_pad, aug.crop_pad, size=4), self.input_hw)
        h, w = self.input_hw
        warp = matrix  # what the warp reads from: the image, or the processed region of it
        if aug is not None:
            image, warp, xy_orig = self._original_resolution_ops(image, matrix, xy_orig, aug, rng)
        out = cv2.warpAffine(image, warp, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        if self.photometric is not None:
            self.photometric.set_random_seed(seed)
            out = self.photometric(image=out)["image"]
        xy = xy_orig @ matrix[:, :2].T + matrix[:, 2]
        labelled = keypoints[:, 2] > 0
        if flip:
            xy, labelled = xy[self.flip_perm], labelled[self.flip_perm]
        inside = (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
        valid = labelled if aug is not None and aug.keep_outside else labelled & inside
        return TransformedInstance(np.ascontiguousarray(out), xy.astype(np.float32), valid, matrix, zoom)

    def _original_resolution_ops(
        self, image: np.ndarray, matrix: np.ndarray, xy: np.ndarray, aug: Augmentation, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """DeepLabCut's motion blur, coarse dropout and elastic deformation at original resolution.

        Only the part of the image the matrix reads (plus a margin) is processed; returns that
        region, the matrix re-based onto it (for the warp only: keypoints and ``to_original`` keep
        the original-image matrix), and the keypoints in original pixels (the elastic deformation
        moves them).
        """
        fire = [p > 0 and rng.random() < p for p in (aug.motion_blur_p, aug.dropout_p, aug.elastic_p)]
        if not any(fire):
            return image, matrix, xy
        x0, y0, x1, y1 = _source_region(matrix, self.input_hw, image.shape[:2], margin=16)
        if x1 <= x0 or y1 <= y0:
            return image, matrix, xy
        region = np.ascontiguousarray(image[y0:y1, x0:x1])
        if fire[0]:
            region = deeplabcut_ops.motion_blur(region, rng)
        if fire[1]:
            region = deeplabcut_ops.coarse_dropout(region, rng)
        if fire[2]:
            region, moved = deeplabcut_ops.elastic_transform(region, xy - (x0, y0), rng)
            xy = moved + (x0, y0)
        based = matrix.copy()
        based[:, 2] += matrix[:, :2] @ np.array([x0, y0], dtype=np.float64)
        return region, based, xy


def _scale_of(matrix: np.ndarray) -> float:
    """Input pixels per original pixel of a similarity (rotation, zoom, flip) matrix."""
    return float(math.sqrt(abs(np.linalg.det(matrix[:, :2]))))


def _crop_and_pad(matrix: np.ndarray, sides: np.ndarray, input_hw: tuple[int, int]) -> np.ndarray:
    """Imgaug ``CropAndPad(percent=...)`` + resize back to the input, composed after ``matrix``.

    ``sides`` = (top, right, bottom, left) fractions: positive pads, negative crops (imgaug's
    order and sign). The resize after it scales x and y separately, as DeepLabCut's does.
    """
    h, w = input_hw
    top, right, bottom, left = (float(v) for v in sides)
    sx, sy = 1.0 / (1.0 + left + right), 1.0 / (1.0 + top + bottom)
    post = np.array([[sx, 0.0, left * w * sx], [0.0, sy, top * h * sy], [0.0, 0.0, 1.0]])
    return (post @ np.vstack([matrix, [0.0, 0.0, 1.0]]))[:2]


def _source_region(
    matrix: np.ndarray, input_hw: tuple[int, int], image_hw: tuple[int, int], margin: int
) -> tuple[int, int, int, int]:
    """Bounding box (x0, y0, x1, y1) of the original pixels the warp reads, clipped to the image."""
    h, w = input_hw
    inv = invert_affine(matrix)
    corners = np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], dtype=np.float64)
    pts = corners @ inv[:, :2].T + inv[:, 2]
    x0 = max(int(math.floor(pts[:, 0].min())) - margin, 0)
    y0 = max(int(math.floor(pts[:, 1].min())) - margin, 0)
    x1 = min(int(math.ceil(pts[:, 0].max())) + margin + 1, image_hw[1])
    y1 = min(int(math.ceil(pts[:, 1].max())) + margin + 1, image_hw[0])
    return x0, y0, x1, y1
