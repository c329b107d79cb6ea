"""data.joints: training on a named subset of a file's joints (DeeperCut's 14 MPII joints)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crosspose.core.errors import ConfigError, DataFormatError
from crosspose.data.coco import load_coco_keypoints
from crosspose.data.datamodule import PoseDataModule
from crosspose.data.dataset import InstanceDataset
from crosspose.data.transforms import Augmentation
from crosspose.testing import TINY_JOINTS


def test_selected_joints_are_the_named_columns_in_the_given_order(tiny_coco: Path) -> None:
    coco = load_coco_keypoints(tiny_coco)
    wanted = [TINY_JOINTS[2], TINY_JOINTS[0]]
    full = InstanceDataset(coco, (64, 64))
    sub = InstanceDataset(coco, (64, 64), joints=wanted)
    assert sub.keypoint_names == tuple(wanted)
    a, b = full[0], sub[0]
    assert b["keypoints"].shape == (2, 2)
    assert np.allclose(b["keypoints"].numpy(), a["keypoints"].numpy()[[2, 0]])
    assert b["valid"].tolist() == a["valid"].numpy()[[2, 0]].tolist()


def test_flip_pairs_follow_the_selection(tiny_coco: Path) -> None:
    coco = load_coco_keypoints(tiny_coco)
    sides = [n for n in TINY_JOINTS if n.startswith(("left", "right"))]
    assert len(sides) == 2, TINY_JOINTS
    flip = Augmentation(scale=(1.0, 1.0), rotation=0.0, translate=0.0, flip=True, flip_p=1.0,
                        color_p=0.0, blur_p=0.0, noise_p=0.0)
    plain = Augmentation(**{**flip.__dict__, "flip": False})
    flipped = InstanceDataset(coco, (64, 64), flip, joints=sides)[0]["keypoints"].numpy()
    straight = InstanceDataset(coco, (64, 64), plain, joints=sides)[0]["keypoints"].numpy()
    # the left slot of the flipped sample holds the mirrored right joint
    assert flipped[0, 1] == pytest.approx(straight[1, 1], abs=1e-4)
    assert flipped[0, 0] == pytest.approx(63 - straight[1, 0], abs=1e-3)


def test_unknown_joint_and_count_mismatch_are_clear_errors(tiny_coco: Path) -> None:
    with pytest.raises(DataFormatError, match="no joint named pelvis"):
        InstanceDataset(load_coco_keypoints(tiny_coco), (64, 64), joints=["pelvis"])
    dm = PoseDataModule(train_file=str(tiny_coco), input_size=64, joints=[TINY_JOINTS[0]])
    assert dm.keypoint_names == (TINY_JOINTS[0],)
    dm.check_keypoints(1)
    with pytest.raises(ConfigError, match="data.joints"):
        dm.check_keypoints(len(TINY_JOINTS))
