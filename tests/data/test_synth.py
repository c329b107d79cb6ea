"""The synthetic two-species set: round trip through the real readers, determinism, labels on pixels."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from crosspose.cli import main
from crosspose.core.errors import ConfigError
from crosspose.core.skeletons import MACAQUE, MPII
from crosspose.data.coco import load_coco_keypoints
from crosspose.data.synth import JPEG_QUALITY, MACAQUE_FILE, MPII_FILE, generate, image_name, render_sample
from crosspose.data.synth import render as render_module
from crosspose.data.synth.figures import human_figure, macaque_figure

SIZE = 128  # small images keep the tests fast; the geometry does not depend on the size


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _by_image(coco: Any) -> dict[str, list[dict]]:
    """The annotations of a prepared file grouped by image file name, to meet the rendered samples."""
    by_image: dict[str, list[dict]] = {}
    for ann in coco.annotations:
        by_image.setdefault(Path(coco.images[ann["image_id"]]["file_name"]).name, []).append(ann)
    return by_image


def test_macaque_round_trip_through_prepare(tmp_path: Path) -> None:
    n = 16
    csv = generate("macaque", n, tmp_path / "mq", seed=5, size=SIZE)
    assert csv == tmp_path / "mq" / MACAQUE_FILE
    out = tmp_path / "mq.json"
    assert main(["prepare", "macaquepose", "--root", str(tmp_path / "mq"), "--out", str(out)]) == 0
    coco = load_coco_keypoints(out)
    assert coco.keypoint_names == MACAQUE.keypoints
    by_image = _by_image(coco)
    assert len(by_image) == n
    nulls = 0
    for i in range(n):
        sample = render_sample("macaque", 5, i, SIZE)
        anns = by_image[image_name("macaque", i)]
        assert len(anns) == len(sample.figures)
        for fig, ann in zip(sample.figures, anns, strict=True):
            kps = coco.keypoints(ann)
            np.testing.assert_array_equal(kps[:, 2] > 0, fig.labelled)
            np.testing.assert_allclose(kps[fig.labelled, :2], fig.keypoints[fig.labelled], atol=1e-6)
            nulls += int((~fig.labelled).sum())
            # the bbox from the silhouette polygons holds every labelled joint (within a pixel)
            x, y, w, h = ann["bbox"]
            pts = fig.keypoints[fig.labelled]
            assert (pts[:, 0] >= x - 1.5).all() and (pts[:, 0] <= x + w + 0.5).all()
            assert (pts[:, 1] >= y - 1.5).all() and (pts[:, 1] <= y + h + 0.5).all()
            assert ann["area"] > 0
    assert nulls > 0  # face points turned away, truncation, occluders


def test_human_round_trip_through_prepare(tmp_path: Path) -> None:
    n = 16
    mat = generate("human", n, tmp_path / "mpii", seed=2, size=SIZE)
    assert mat == tmp_path / "mpii" / MPII_FILE
    out = tmp_path / "mpii.json"
    assert main(["prepare", "mpii", "--annotations", str(mat), "--images", str(tmp_path / "mpii" / "images"),
                 "--out", str(out)]) == 0
    coco = load_coco_keypoints(out)
    assert coco.keypoint_names == MPII.keypoints
    by_image = _by_image(coco)
    assert len(by_image) == n
    occluded = 0
    for i in range(n):
        sample = render_sample("human", 2, i, SIZE)
        anns = by_image[image_name("human", i)]
        assert len(anns) == len(sample.figures)
        for fig, ann in zip(sample.figures, anns, strict=True):
            kps = coco.keypoints(ann)
            expected_v = np.where(fig.labelled, np.where(fig.visible, 2, 1), 0)
            np.testing.assert_array_equal(kps[:, 2], expected_v)
            np.testing.assert_allclose(kps[fig.labelled, :2], fig.keypoints[fig.labelled], atol=1e-6)
            np.testing.assert_allclose(ann["head_box"], fig.head_box, atol=1e-6)
            np.testing.assert_allclose(ann["scale"], fig.height_px / 200, rtol=1e-9)
            np.testing.assert_allclose(ann["center"], fig.center, atol=1e-6)
            occluded += int((expected_v == 1).sum())
    assert occluded > 0


def test_same_seed_same_bytes_and_workers_do_not_matter(tmp_path: Path) -> None:
    generate("macaque", 6, tmp_path / "a", seed=11, size=96)
    generate("macaque", 6, tmp_path / "b", seed=11, size=96, workers=2)
    generate("macaque", 6, tmp_path / "c", seed=12, size=96)
    a, b, c = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert len(a) == 7 and a == b
    assert a[MACAQUE_FILE] != c[MACAQUE_FILE]
    assert a["images/" + image_name("macaque", 0)] != c["images/" + image_name("macaque", 0)]


def test_human_set_is_deterministic_and_images_match_render(tmp_path: Path) -> None:
    generate("human", 3, tmp_path / "a", seed=4, size=SIZE)
    time.sleep(1.05)  # savemat stamps the creation time (to the second) into the header
    generate("human", 3, tmp_path / "b", seed=4, size=SIZE)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    written = (tmp_path / "a" / "images" / image_name("human", 1)).read_bytes()
    rendered = render_sample("human", 4, 1, SIZE).image
    assert rendered.shape == (SIZE, SIZE, 3)
    ok, encoded = cv2.imencode(".jpg", rendered[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    assert ok and encoded.tobytes() == written  # the file is exactly the rendered picture


@pytest.mark.parametrize("species", ["human", "macaque"])
def test_labels_sit_on_the_drawn_figure(species: str) -> None:
    """Every joint the file calls seen lies on its figure's pixels (catches x/y and 0/1-based slips)."""
    checked = 0
    for i in range(30):
        sample = render_sample(species, 9, i, SIZE)
        for fig in sample.figures:
            grown = cv2.dilate(fig.mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
            seen = fig.visible if species == "human" else fig.labelled
            for x, y in fig.keypoints[seen]:
                assert grown[int(round(y)), int(round(x))], (i, x, y)
                checked += 1
            outside = (fig.keypoints < 0).any(1) | (fig.keypoints > SIZE - 1).any(1)
            assert not fig.labelled[outside].any()  # truncated joints are never labelled
    assert checked > 200


def test_species_differ_in_pose_and_data_is_not_trivial() -> None:
    stats: dict[str, dict[str, float]] = {}
    for species in ("human", "macaque"):
        upright = truncated = occluded = two = figures = 0
        poses = set()
        for i in range(60):
            sample = render_sample(species, 1, i, SIZE)
            two += len(sample.figures) == 2
            for fig in sample.figures:
                figures += 1
                poses.add(fig.pose)
                names = (MPII if species == "human" else MACAQUE).keypoints
                kp = dict(zip(names, fig.keypoints, strict=True))
                hips = (kp["left_hip"] + kp["right_hip"]) / 2
                shoulders = (kp["left_shoulder"] + kp["right_shoulder"]) / 2
                dx, dy = shoulders - hips
                upright += -dy > 1.5 * abs(dx)  # trunk within about 35 degrees of image-up
                truncated += (~fig.labelled).any()
                occluded += (~fig.visible & fig.labelled).any()
        n = figures
        stats[species] = {"upright": upright / n, "truncated": truncated, "occluded": occluded, "two": two}
        assert truncated > 0 and two > 0, species
        assert len(poses) >= 3, poses
    assert stats["human"]["upright"] > 0.7  # MPII: mostly upright people
    assert stats["macaque"]["upright"] < stats["human"]["upright"] - 0.2  # quadrupeds, sitting, climbing
    assert stats["human"]["occluded"] > 0


def test_left_is_the_subjects_left() -> None:
    """Figure frame: +x is the subject's left; facing the camera, the left side is on the image right."""
    rng = np.random.default_rng(0)
    for _ in range(20):
        h = human_figure(rng, "stand")
        assert h.points["left_shoulder"][0] > h.points["right_shoulder"][0]
        assert h.points["left_hip"][0] > h.points["right_hip"][0]
        m = macaque_figure(rng, "sit")
        assert m.points["left_shoulder"][0] > m.points["right_shoulder"][0]


def test_facing_camera_puts_left_on_image_right(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render_module, "_view", lambda species, pose, rng: (np.eye(3), 0.0))
    for i in range(10):
        fig = render_sample("human", 3, i, SIZE).figures[0]
        k = MPII.keypoints
        assert fig.keypoints[k.index("left_shoulder"), 0] > fig.keypoints[k.index("right_shoulder"), 0]
        assert fig.keypoints[k.index("head_top"), 1] < fig.keypoints[k.index("pelvis"), 1]


def test_cli_writes_the_set_and_rejects_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "s"
    assert main(["synth", "--species", "macaque", "--count", "2", "--out", str(out), "--seed", "1",
                 "--size", "64"]) == 0
    assert (out / MACAQUE_FILE).is_file() and len(list((out / "images").iterdir())) == 2
    assert "2 macaque images" in capsys.readouterr().out
    assert main(["synth", "--species", "human", "--count", "0", "--out", str(out)]) == 2
    assert "count must be at least 1" in capsys.readouterr().err
    with pytest.raises(ConfigError):
        generate("dog", 1, tmp_path, seed=0)  # type: ignore[arg-type]
