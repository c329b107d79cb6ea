"""`crosspose prepare split`: a by-image train/val split that can leave a test set out."""

from __future__ import annotations

import json
from pathlib import Path

from crosspose.cli import main
from crosspose.data.coco import load_coco_keypoints
from crosspose.testing import write_tiny_coco


def test_split_by_image_with_exclusion(tmp_path: Path) -> None:
    data = write_tiny_coco(tmp_path / "d", count=20)
    test = load_coco_keypoints(data).save_subset(tmp_path / "d" / "test.json", [1, 2, 3, 4])
    assert main(["prepare", "split", "--coco", str(data), "--val-fraction", "0.25", "--exclude", str(test),
                 "--out", str(tmp_path / "d" / "fit.json")]) == 0
    train = load_coco_keypoints(tmp_path / "d" / "fit_train.json")
    val = load_coco_keypoints(tmp_path / "d" / "fit_val.json")
    names = lambda c: {c.images[i]["file_name"] for i in c.images}  # noqa: E731
    assert len(val.images) == 4 and len(train.images) == 12
    assert not names(train) & names(val)
    assert not (names(train) | names(val)) & names(load_coco_keypoints(test))
    assert all(train.image_path(i).is_file() for i in train.images)  # paths rewritten correctly
    assert json.loads((tmp_path / "d" / "fit_val.json").read_text())["categories"][0]["keypoints"][0] == "head"


def test_split_rejects_a_bad_fraction(tmp_path: Path, capsys) -> None:
    data = write_tiny_coco(tmp_path / "d", count=4)
    assert main(["prepare", "split", "--coco", str(data), "--val-fraction", "1.5"]) == 2
    assert "--val-fraction" in capsys.readouterr().err
