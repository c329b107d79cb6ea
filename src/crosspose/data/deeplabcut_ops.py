"""DeepLabCut 2.2.0.6's pixel augmenters (imgaug 0.4.0), written for numpy + OpenCV.

DeepLabCut 2.2's default single-animal pipeline (``pose_imgaug.py``, ``build_augmentation_pipeline``)
runs ``MotionBlur``, ``CoarseDropout`` and ``ElasticTransformation`` on the image at its ORIGINAL
resolution, before the crop-and-pad and the resize to the network input. crosspose keeps that order:
:class:`crosspose.data.transforms.InstanceTransform` cuts out the part of the original image its
affine will read, applies these operations there, then warps once. The parameters below are those
of imgaug 0.4.0 (the version DeepLabCut 2.2.0.6 requires) as DeepLabCut calls them; each function
says which imgaug code it follows.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = [
    "DROPOUT_P",
    "DROPOUT_PER_CHANNEL",
    "DROPOUT_SIZE_PERCENT",
    "ELASTIC_ALPHA",
    "ELASTIC_SIGMA",
    "MOTION_BLUR_K",
    "coarse_dropout",
    "elastic_transform",
    "motion_blur",
]

# pose_imgaug.py:73-75 motion_blur_params {"k": 7, "angle": (-90, 90)}
MOTION_BLUR_K = 7
MOTION_BLUR_ANGLE = (-90.0, 90.0)
# pose_imgaug.py:169 iaa.CoarseDropout(0.02, size_percent=0.3, per_channel=0.5)
DROPOUT_P = 0.02
DROPOUT_SIZE_PERCENT = 0.3
DROPOUT_PER_CHANNEL = 0.5
DROPOUT_MIN_SIZE = 3  # imgaug 0.4.0 arithmetic.py:2990 CoarseDropout(min_size=3)
# pose_imgaug.py:173 iaa.ElasticTransformation(sigma=5); alpha is imgaug's default (0.0, 40.0)
# (imgaug 0.4.0 geometric.py:4234), interpolation order 3, constant 0 outside
ELASTIC_SIGMA = 5.0
ELASTIC_ALPHA = (0.0, 40.0)


def motion_blur(image: np.ndarray, rng: np.random.Generator, k: int = MOTION_BLUR_K) -> np.ndarray:
    """Imgaug ``MotionBlur(k=7, angle=(-90, 90))``: a line kernel of length k at a random angle.

    As imgaug (blur.py:1104-1133): direction U(-1, 1) sets a linear weight ramp along the line, the
    kernel is the vertical line rotated by the angle, normalised to sum 1.
    """
    k = k if k % 2 else k + 1
    angle = float(rng.uniform(*MOTION_BLUR_ANGLE))
    direction = (float(np.clip(rng.uniform(-1.0, 1.0), -1.0, 1.0)) + 1.0) / 2.0
    kernel = np.zeros((k, k), np.float32)
    kernel[:, k // 2] = np.linspace(direction, 1.0 - direction, num=k)
    # imgaug rotates the uint8 kernel image about its centre with bilinear interpolation
    centre = ((k - 1) / 2.0, (k - 1) / 2.0)
    rot = cv2.getRotationMatrix2D(centre, -angle, 1.0)
    kernel8 = (kernel * 255).astype(np.uint8)
    kernel = cv2.warpAffine(kernel8, rot, (k, k), flags=cv2.INTER_LINEAR).astype(np.float32) / 255.0
    total = float(kernel.sum())
    if total <= 0:
        return image
    return cv2.filter2D(image, -1, kernel / total, borderType=cv2.BORDER_REFLECT_101)


def coarse_dropout(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Imgaug ``CoarseDropout(0.02, size_percent=0.3, per_channel=0.5)``.

    A mask at 30 % of the image's resolution (at least 3x3) drops each cell with p 0.02, is scaled
    up by nearest neighbour and zeroes those pixels; half of the images get one mask per channel.
    """
    h, w = image.shape[:2]
    channels = image.shape[2] if image.ndim == 3 else 1
    hs = max(int(DROPOUT_SIZE_PERCENT * h), DROPOUT_MIN_SIZE)
    ws = max(int(DROPOUT_SIZE_PERCENT * w), DROPOUT_MIN_SIZE)
    per_channel = rng.random() < DROPOUT_PER_CHANNEL
    n = channels if per_channel else 1
    small = (rng.random((hs, ws, n)) >= DROPOUT_P).astype(np.uint8)
    keep = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST).reshape(h, w, n)
    out = image * (keep if image.ndim == 3 else keep[..., 0])
    return np.asarray(out, dtype=image.dtype)


def elastic_transform(
    image: np.ndarray, points: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Imgaug ``ElasticTransformation(sigma=5)`` (alpha U(0, 40)) on the image and the points.

    As imgaug (geometric.py:4525-4554, 4436-4495): two uniform(-1, 1) fields, padded by the
    Gaussian kernel size, blurred with sigma and scaled by alpha; the output at p is the input at
    p - d(p), and a keypoint inside the image moves by +d at its (rounded) position.

    Args:
        points: (K, 2) x, y in the image's pixels; returned moved.
    """
    h, w = image.shape[:2]
    alpha = float(rng.uniform(*ELASTIC_ALPHA))
    sigma = ELASTIC_SIGMA
    ksize = int(max(2.6 * sigma if sigma >= 5.0 else 2.9 * sigma if sigma >= 3.0 else 3.3 * sigma, 5))
    ksize += 1 - ksize % 2
    pad = ksize
    field = rng.random((2, h + 2 * pad, w + 2 * pad)) * 2.0 - 1.0
    dx = cv2.GaussianBlur(field[0], (ksize, ksize), sigmaX=sigma, sigmaY=sigma,
                          borderType=cv2.BORDER_REFLECT_101)[pad:pad + h, pad:pad + w] * alpha
    dy = cv2.GaussianBlur(field[1], (ksize, ksize), sigmaX=sigma, sigmaY=sigma,
                          borderType=cv2.BORDER_REFLECT_101)[pad:pad + h, pad:pad + w] * alpha
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = cv2.remap(image, (xx - dx).astype(np.float32), (yy - dy).astype(np.float32),
                    interpolation=cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    moved = points.astype(np.float64).copy()
    if alpha > 0.05 and len(points):  # imgaug leaves keypoints alone below alpha 0.05
        for i, (x, y) in enumerate(points):
            if math.isfinite(x) and math.isfinite(y) and 0 <= x < w and 0 <= y < h:
                xi, yi = min(int(round(x)), w - 1), min(int(round(y)), h - 1)
                moved[i] = (x + dx[yi, xi], y + dy[yi, xi])
    return out, moved
