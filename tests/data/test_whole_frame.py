"""Whole-frame samples (DeepLabCut's single-animal way): no boxes, random crops/zooms of the frame."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from crosspose.cli import main
from crosspose.core.errors import ConfigError
from crosspose.data.coco import load_coco_keypoints
from crosspose.data.dataset import InstanceDataset
from crosspose.data.transforms import Augmentation, InstanceTransform, frame_box, invert_affine
from crosspose.testing import write_tiny_coco, write_tiny_deeplabcut_project

FAST = ["--data.input_size", "64", "--data.batch_size", "2", "--data.num_workers", "0",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def _geometry_only(scale: tuple[float, float], translate: float = 0.0) -> Augmentation:
    return Augmentation(scale=scale, rotation=0.0, rotation_p=0.0, translate=translate, color_p=0.0, blur_p=0.0,
                        noise_p=0.0)


def _input_corners_in_frame(matrix: np.ndarray, input_hw: tuple[int, int]) -> np.ndarray:
    h, w = input_hw
    corners = np.array([[-0.5, -0.5], [w - 0.5, -0.5], [-0.5, h - 0.5], [w - 0.5, h - 0.5]])
    inv = invert_affine(matrix)
    return corners @ inv[:, :2].T + inv[:, 2]


def test_evaluation_shows_the_whole_frame_aspect_kept() -> None:
    frame_w, frame_h = 120, 60
    t = InstanceTransform((64, 64), None, 1.0, (), 2, whole_frame=True)
    image = np.full((frame_h, frame_w, 3), 200, np.uint8)
    kps = np.array([[1.0, 1.0, 2], [118.0, 58.0, 2]])  # near the corners: still in view
    out, xy, valid, matrix = t(image, kps, frame_box(frame_w, frame_h), seed=0)
    corners = _input_corners_in_frame(matrix, (64, 64))
    # the width fills the input exactly, the height is centred with a border
    assert corners[:, 0].min() == pytest.approx(-0.5) and corners[:, 0].max() == pytest.approx(frame_w - 0.5)
    assert corners[:, 1].min() < -0.5 and corners[:, 1].max() > frame_h - 0.5
    assert valid.all()


def test_zoomed_training_views_are_random_crops_inside_the_frame() -> None:
    frame_w, frame_h = 160, 120
    t = InstanceTransform((64, 64), _geometry_only((1.5, 2.5)), 1.0, (), 1, whole_frame=True)
    image = np.zeros((frame_h, frame_w, 3), np.uint8)
    centres = []
    for seed in range(200):
        _, _, _, matrix = t(image, np.zeros((1, 3)), frame_box(frame_w, frame_h), seed=seed)
        corners = _input_corners_in_frame(matrix, (64, 64))
        # the view stays on the frame (height limits it here; width has room to move)
        assert corners[:, 0].min() >= -0.5 - 1e-6 and corners[:, 0].max() <= frame_w - 0.5 + 1e-6
        assert corners[:, 1].min() >= -0.5 - 1e-6 and corners[:, 1].max() <= frame_h - 0.5 + 1e-6
        centres.append(corners.mean(0))
    centres = np.array(centres)
    # ... and reaches most of it: views centred far left, right, up and down
    assert np.ptp(centres[:, 0]) > 0.5 * frame_w and np.ptp(centres[:, 1]) > 0.3 * frame_h


def test_box_mode_is_unchanged_by_the_option() -> None:
    aug = _geometry_only((0.8, 1.2), translate=0.1)
    box = (10.0, 20.0, 30.0, 40.0)
    image = np.zeros((100, 100, 3), np.uint8)
    a = InstanceTransform((64, 64), aug, 1.25, (), 1)(image, np.zeros((1, 3)), box, seed=5)[3]
    b = InstanceTransform((64, 64), aug, 1.25, (), 1, whole_frame=False)(image, np.zeros((1, 3)), box, seed=5)[3]
    assert np.array_equal(a, b)


def test_dataset_ignores_boxes_and_maps_predictions_back_to_frame_pixels(tmp_path: Path) -> None:
    path = write_tiny_coco(tmp_path / "d", count=3, size=64)
    raw = json.loads(path.read_text())
    for ann in raw["annotations"]:
        ann["bbox"] = [40.0, 40.0, 10.0, 10.0]  # a small box that box mode would zoom into
    path.write_text(json.dumps(raw))
    coco = load_coco_keypoints(path)
    whole = InstanceDataset(coco, (32, 32), whole_frame=True)[0]
    boxed = InstanceDataset(coco, (32, 32))[0]
    to_frame = whole["to_original"].numpy()
    # input pixel (0, 0) and (31, 31) are the frame's (0, 0) and (63, 63) up to the half-pixel scale
    assert to_frame @ np.array([-0.5, -0.5, 1]) == pytest.approx([-0.5, -0.5], abs=1e-4)
    assert to_frame @ np.array([31.5, 31.5, 1]) == pytest.approx([63.5, 63.5], abs=1e-4)
    assert not np.allclose(boxed["to_original"].numpy(), to_frame)
    kp = coco.keypoints(coco.instances()[0])
    back = np.column_stack([whole["keypoints"].numpy(), np.ones(len(kp))]) @ to_frame.T
    labelled = kp[:, 2] > 0
    assert back[labelled] == pytest.approx(kp[labelled, :2], abs=1e-3)


def test_several_animals_in_a_frame_are_refused(tmp_path: Path) -> None:
    path = write_tiny_coco(tmp_path / "d", count=2, size=64)
    raw = json.loads(path.read_text())
    raw["annotations"][1]["image_id"] = raw["annotations"][0]["image_id"]
    path.write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match="several annotated instances"):
        InstanceDataset(load_coco_keypoints(path), (32, 32), whole_frame=True)


def test_fit_on_whole_frames_of_a_deeplabcut_project(tmp_path: Path, one_torch_thread: None) -> None:
    write_tiny_deeplabcut_project(tmp_path / "p", frames=6, size=(96, 64))
    assert main(["prepare", "deeplabcut", "--project", str(tmp_path / "p"), "--out", str(tmp_path / "d.json"),
                 "--val-fraction", "config"]) == 0
    assert main(["fit", "--model.num_keypoints", "4", "--model.backbone", "resnet18", "--model.pretrained", "false",
                 "--data.train_file", str(tmp_path / "d_train.json"), "--data.val_file", str(tmp_path / "d_val.json"),
                 "--data.whole_frame", "true", "--trainer.fast_dev_run", "1",
                 "--trainer.default_root_dir", str(tmp_path / "run"), *FAST]) == 0
