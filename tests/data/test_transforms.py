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
    out, xy, valid, _, _ = t(image, kps, EXACT_BOX, seed=1)
    assert xy[0] == pytest.approx([63 - 32, 5])
    assert xy[1] == pytest.approx([63 - 50, 22])  # the left-hand slot now holds the mirrored right hand
    assert xy[2] == pytest.approx([63 - 10, 20])
    assert valid.tolist() == [True, True, True, False]  # visibility travels with its joint


def test_flipping_twice_is_the_identity() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    kps = np.column_stack([rng.uniform(0, 63, (4, 2)), np.full(4, 2.0)])
    t = InstanceTransform((64, 64), _flip_only(), padding=1.0, flip_pairs=NAMES_FLIP, num_keypoints=4)
    once, xy1, v1, _, _ = t(image, kps, EXACT_BOX, seed=3)
    twice, xy2, v2, _, _ = t(once, np.column_stack([xy1, v1 * 2.0]), EXACT_BOX, seed=3)
    assert np.array_equal(twice, image)
    assert xy2 == pytest.approx(kps[:, :2], abs=1e-4)


def test_crop_keeps_every_keypoint_slot_and_marks_outside_ones_invalid() -> None:
    t = InstanceTransform((32, 32), None, padding=1.0, flip_pairs=(), num_keypoints=3)
    kps = np.array([[16, 16, 2], [100, 100, 2], [5, 5, 1]], float)
    _, xy, valid, m, _ = t(np.zeros((64, 64, 3), np.uint8), kps, (0, 0, 32, 32), seed=0)
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


@pytest.mark.parametrize("z", [0.5, 1.0, 2.0])
def test_a_sample_zoomed_by_z_gets_a_disk_of_17z_input_pixels_in_original_units(z: float) -> None:
    """Through the data path: the transform reports the zoom, the codec draws 17 z (or 17) pixels."""
    import torch

    from crosspose.core.codecs import build_codec

    aug = Augmentation(scale=(z, z), rotation=0.0, translate=0.0, color_p=0.0, blur_p=0.0, noise_p=0.0)
    t = InstanceTransform((128, 128), aug, padding=1.0, flip_pairs=(), num_keypoints=1)
    image = np.zeros((200, 200, 3), np.uint8)
    # a 128 px box fills the 128 px input at zoom 1: the sample's zoom is exactly z
    sample = t(image, np.array([[100.0, 100.0, 2.0]]), (36.0, 36.0, 128.0, 128.0), seed=0)
    assert sample.zoom == pytest.approx(z)
    kp = torch.from_numpy(sample.keypoints)[None]
    valid = torch.from_numpy(sample.valid)[None]
    zoom = torch.tensor([sample.zoom])
    for units, radius in (("original", 17.0 * z), ("input", 17.0)):
        heat = build_codec("disk", radius_units=units).encode(kp, valid, (16, 16), zoom=zoom).heatmap[0, 0]
        cx, cy = (float(v) for v in sample.keypoints[0])
        dists = [np.hypot(8 * gx + 4 - cx, 8 * gy + 4 - cy) for gy in range(16) for gx in range(16)]
        flags = heat.reshape(-1).tolist()
        assert max(d for d, f in zip(dists, flags, strict=False) if f) <= radius < min(d for d, f in zip(dists, flags, strict=False) if not f)


def test_deeplabcut22_keeps_partial_disks_of_joints_outside_the_crop() -> None:
    import torch

    from crosspose.core.codecs import build_codec

    plain = Augmentation(scale=(1.0, 1.0), rotation=0.0, translate=0.0, color_p=0.0, blur_p=0.0, noise_p=0.0)
    kps = np.array([[32.0, 32.0, 2.0], [70.0, 32.0, 2.0]])  # the second joint is 6 px right of a 64 px crop
    image = np.zeros((64, 100, 3), np.uint8)
    out = {}
    for keep in (False, True):
        aug = Augmentation(**{**plain.__dict__, "keep_outside": keep})
        s = InstanceTransform((64, 64), aug, 1.0, (), 2)(image, kps, EXACT_BOX, seed=0)
        heat = build_codec("disk").encode(torch.from_numpy(s.keypoints)[None], torch.from_numpy(s.valid)[None],
                                          (8, 8)).heatmap[0, 1]
        out[keep] = (bool(s.valid[1]), int(heat.sum()))
    assert out[False] == (False, 0)
    valid, cells = out[True]
    assert valid and cells > 0  # the disk's part inside the map: cells within 17 px of x = 70.5 ...
    gx = np.arange(8) * 8 + 4.0
    expected = sum(int((x - 70.5) ** 2 + (y - 32.5) ** 2 <= 17**2) for x in gx for y in gx)
    assert cells == expected


def test_crop_and_pad_zooms_each_axis_and_the_radius_zoom_ignores_it() -> None:
    aug = Augmentation(scale=(1.0, 1.0), rotation=0.0, translate=0.0, color_p=0.0, blur_p=0.0, noise_p=0.0,
                       crop_pad=0.15, crop_pad_p=1.0)
    t = InstanceTransform((64, 64), aug, 1.0, (), 1)
    zooms = []
    for seed in range(20):
        s = t(np.zeros((64, 64, 3), np.uint8), np.array([[10.0, 10.0, 2.0]]), EXACT_BOX, seed)
        sx, sy = np.abs(s.matrix[0, 0]), np.abs(s.matrix[1, 1])
        assert 1 / 1.3 - 1e-9 <= sx <= 1 / 0.7 + 1e-9 and 1 / 1.3 - 1e-9 <= sy <= 1 / 0.7 + 1e-9
        zooms.append((sx, sy))
        # DeepLabCut's radius scale is the resize before the crop-and-pad (pose_imgaug.py:326-330)
        assert s.zoom == pytest.approx(1.0)
    assert any(abs(sx - sy) > 0.01 for sx, sy in zooms)  # sides move independently


def test_elastic_moves_keypoints_with_the_image() -> None:
    from crosspose.data.deeplabcut_ops import elastic_transform

    to_moved, to_unmoved = [], []
    for seed in range(16):
        rng = np.random.default_rng(seed)
        image = np.zeros((120, 120, 3), np.uint8)
        image[58:63, 58:63] = 255  # a 5 px dot centred on the keypoint (60, 60)
        out, moved = elastic_transform(image, np.array([[60.0, 60.0]]), rng)
        ys, xs = np.nonzero(out[..., 0] > 127)
        assert len(xs) > 0
        to_moved.append(np.hypot(xs.mean() - moved[0, 0], ys.mean() - moved[0, 1]))
        to_unmoved.append(np.hypot(xs.mean() - 60.0, ys.mean() - 60.0))
    # the dot goes where the keypoint goes (imgaug's own approximation: the shift at the keypoint)
    assert np.mean(to_moved) < 0.5 * np.mean(to_unmoved) and max(to_unmoved) > 1.5


def test_deeplabcut22_pipeline_runs_and_is_deterministic_per_seed() -> None:
    t = InstanceTransform((64, 64), Augmentation.deeplabcut22(), 1.0, (), 2)
    image = np.random.default_rng(0).integers(0, 255, (90, 110, 3), dtype=np.uint8)
    kps = np.array([[50.0, 40.0, 2.0], [20.0, 70.0, 2.0]])
    changed = 0
    for seed in range(8):
        a = t(image, kps, (10.0, 5.0, 80.0, 80.0), seed)
        b = t(image, kps, (10.0, 5.0, 80.0, 80.0), seed)
        assert np.array_equal(a.image, b.image) and np.array_equal(a.keypoints, b.keypoints)
        assert a.image.shape == (64, 64, 3) and a.valid.all()
        plain = InstanceTransform((64, 64), None, 1.0, (), 2)(image, kps, (10.0, 5.0, 80.0, 80.0), seed)
        changed += int(not np.array_equal(a.image, plain.image))
    assert changed >= 6


def test_augmentation_values_are_checked_and_scale_becomes_a_tuple() -> None:
    from crosspose.core.errors import ConfigError

    assert Augmentation(scale=[0.5, 1.25]).scale == (0.5, 1.25)  # type: ignore[arg-type]
    for bad in ({"scale": (1.2, 0.8)}, {"rotation_p": 1.5}, {"elastic_p": -0.1}, {"crop_pad": 0.7}):
        with pytest.raises(ConfigError):
            Augmentation(**bad)  # type: ignore[arg-type]


def test_original_resolution_ops_keep_the_geometry(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the pixel operations made identities, the region-based warp equals the plain one."""
    from crosspose.data import deeplabcut_ops

    monkeypatch.setattr(deeplabcut_ops, "coarse_dropout", lambda image, rng: image)
    monkeypatch.setattr(deeplabcut_ops, "motion_blur", lambda image, rng: image)
    img = np.random.default_rng(0).integers(1, 255, (200, 300, 3), dtype=np.uint8)
    kps = np.array([[150.0, 100.0, 2.0], [120.0, 60.0, 2.0]])
    geometry = dict(scale=(0.7, 1.2), rotation=25.0, rotation_p=1.0, translate=0.0, color_p=0.0, blur_p=0.0,
                    noise_p=0.0, crop_pad=0.15, crop_pad_p=1.0)
    plain = InstanceTransform((64, 64), Augmentation(**geometry), 1.0, (), 2)
    ops = InstanceTransform((64, 64), Augmentation(**geometry, dropout_p=1.0, motion_blur_p=1.0), 1.0, (), 2)
    for seed in range(6):
        a, b = plain(img, kps, (100, 50, 100, 100), seed), ops(img, kps, (100, 50, 100, 100), seed)
        assert np.array_equal(a.matrix, b.matrix) and np.allclose(a.keypoints, b.keypoints)
        # the same pixels up to OpenCV's fixed-point interpolation (1/32 px) on another offset
        diff = np.abs(a.image.astype(int) - b.image.astype(int))
        assert diff.max() <= 8 and (diff > 1).mean() < 0.02, (seed, diff.max(), (diff > 1).mean())
