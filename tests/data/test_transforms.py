"""Geometry of the instance crop and augmentation: flips swap sides, two flips are the identity."""

from __future__ import annotations

import numpy as np
import pytest

from crosspose.data.transforms import Augmentation, InstanceTransform, crop_matrix, sample_seed

NAMES_FLIP = ((1, 2),)  # left_hand <-> right_hand of the toy skeleton (head, left_hand, right_hand, tail)
EXACT_BOX = (-0.5, -0.5, 64.0, 64.0)  # pixel-centre convention: the box spans the pixels exactly


def _flip_only() -> Augmentation:
    return Augmentation(scale=(1.0, 1.0), rotation=0.0, rotation_p=0.0, translate=0.0, flip=True, flip_p=1.0,
                        color_p=0.0, blur_p=0.0, noise_p=0.0)


def test_flip_mirrors_and_swaps_left_right_joints() -> None:
    t = InstanceTransform((64, 64), _flip_only(), padding=1.0, flip_pairs=NAMES_FLIP, num_keypoints=4)
    image = np.zeros((64, 64, 3), np.uint8)
    kps = np.array([[32, 5, 2], [10, 20, 2], [50, 22, 2], [32, 60, 0]], float)
    out, xy, valid, _ = t(image, kps, EXACT_BOX, seed=1)
    assert xy[0] == pytest.approx([63 - 32, 5])
    assert xy[1] == pytest.approx([63 - 50, 22])  # the left-hand slot now holds the mirrored right hand
    assert xy[2] == pytest.approx([63 - 10, 20])
    assert valid.tolist() == [True, True, True, False]  # visibility travels with its joint


def test_flipping_twice_is_the_identity() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    kps = np.column_stack([rng.uniform(0, 63, (4, 2)), np.full(4, 2.0)])
    t = InstanceTransform((64, 64), _flip_only(), padding=1.0, flip_pairs=NAMES_FLIP, num_keypoints=4)
    once, xy1, v1, _ = t(image, kps, EXACT_BOX, seed=3)
    twice, xy2, v2, _ = t(once, np.column_stack([xy1, v1 * 2.0]), EXACT_BOX, seed=3)
    assert np.array_equal(twice, image)
    assert xy2 == pytest.approx(kps[:, :2], abs=1e-4)


def test_crop_keeps_every_keypoint_slot_and_marks_outside_ones_invalid() -> None:
    t = InstanceTransform((32, 32), None, padding=1.0, flip_pairs=(), num_keypoints=3)
    kps = np.array([[16, 16, 2], [100, 100, 2], [5, 5, 1]], float)
    _, xy, valid, m = t(np.zeros((64, 64, 3), np.uint8), kps, (0, 0, 32, 32), seed=0)
    assert xy.shape == (3, 2) and valid.tolist() == [True, False, True]
    assert np.allclose(xy, kps[:, :2] @ m[:, :2].T + m[:, 2])


def test_augmentation_depends_only_on_seed_epoch_index() -> None:
    aug = Augmentation(flip=True)
    t = InstanceTransform((64, 64), aug, 1.25, NAMES_FLIP, 4)
    image = np.random.default_rng(1).integers(0, 255, (80, 80, 3), dtype=np.uint8)
    kps = np.array([[40, 10, 2], [20, 40, 2], [60, 40, 2], [40, 70, 2]], float)
    a = t(image, kps, (0, 0, 80, 80), sample_seed(7, 2, 5))
    b = t(image, kps, (0, 0, 80, 80), sample_seed(7, 2, 5))
    c = t(image, kps, (0, 0, 80, 80), sample_seed(7, 3, 5))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_crop_matrix_centres_the_box() -> None:
    m = crop_matrix((10, 20, 40, 80), (64, 32), padding=1.0)
    centre = m @ np.array([30.0, 60.0, 1.0])
    assert centre == pytest.approx([15.5, 31.5])
