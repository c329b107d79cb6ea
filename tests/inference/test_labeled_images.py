"""``crosspose analyze --labeled`` on images: labelled PNGs drawn with the labelled video's code."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import crosspose
from crosspose.cli import main
from crosspose.data.dataset import read_rgb
from crosspose.inference.labeled_video import draw_pose
from crosspose.testing import write_tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt", input_size=(64, 64))


def _images(folder: Path) -> list[Path]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    paths = []
    for i, (h, w) in enumerate(((48, 64), (60, 40), (64, 64))):
        paths.append(folder / f"f{i}.{'png' if i else 'jpg'}")
        cv2.imwrite(str(paths[-1]), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    return paths


def test_labelled_images_for_a_folder_and_an_image(checkpoint: Path, one_torch_thread: None, tmp_path: Path) -> None:
    images = _images(tmp_path / "frames")
    out = tmp_path / "out"
    (out / "frames_labeled").mkdir(parents=True)
    (out / "frames_labeled" / "stale.png").write_bytes(b"from an earlier run")
    assert main(["analyze", "--model", str(checkpoint), str(tmp_path / "frames"), str(images[1]), "--out", str(out),
                 "--labeled", "--pcutoff", "0", "--format", "h5", "--device", "cpu"]) == 0
    model = crosspose.load(checkpoint, device="cpu")
    poses = model.predict(tmp_path / "frames")
    drawn = sorted(p.name for p in (out / "frames_labeled").iterdir())
    assert drawn == ["f0.png", "f1.png", "f2.png"]  # the earlier run's folder replaced, not merged
    for path, kp in zip(images, poses.keypoints, strict=True):
        labelled = read_rgb(out / "frames_labeled" / f"{path.stem}.png")
        original = read_rgb(path)
        assert labelled.shape == original.shape
        # the same drawing code as the labelled video, every point above the cut-off (0) and every limb
        np.testing.assert_array_equal(labelled, draw_pose(original.copy(), kp, model.card.links, 0.0))
        assert (labelled != original).any()
    single = read_rgb(out / "f1_labeled.png")
    one = model.predict(images[1]).keypoints[0]
    np.testing.assert_array_equal(single, draw_pose(read_rgb(images[1]), one, model.card.links, 0.0))
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files or folders left


def test_points_below_the_pcutoff_are_not_drawn(checkpoint: Path, one_torch_thread: None, tmp_path: Path) -> None:
    images = _images(tmp_path / "frames")
    out = tmp_path / "out"
    assert main(["analyze", "--model", str(checkpoint), str(images[2]), "--out", str(out), "--labeled-video",
                 "--pcutoff", "1", "--format", "json", "--device", "cpu"]) == 0
    confidence = crosspose.load(checkpoint, device="cpu").predict(images[2]).keypoints[0, :, 2]
    assert (confidence < 1).all()
    np.testing.assert_array_equal(read_rgb(out / "f2_labeled.png"), read_rgb(images[2]))
