"""Stale outputs of an earlier split, empty or all-unlabelled inputs, out-of-range predictions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crosspose.cli import main
from crosspose.data.coco import load_coco_keypoints
from crosspose.testing import write_tiny_coco


def _split(data: Path, *extra: str) -> int:
    return main(["prepare", "split", "--coco", str(data), "--val-fraction", "0.25", *extra])


def test_split_rerun_keeps_its_own_outputs_and_refuses_stale_ones(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    data = write_tiny_coco(tmp_path / "d", count=12)
    assert _split(data) == 0
    val = tmp_path / "d" / "data_val.json"
    before = val.read_bytes()
    assert _split(data) == 0 and val.read_bytes() == before  # same split: kept
    capsys.readouterr()
    assert _split(data, "--seed", "1") == 2  # another split: the old files would be reported as its own
    err = capsys.readouterr().err
    assert "earlier split" in err and "--force" in err and "Traceback" not in err
    assert _split(data, "--seed", "1", "--force") == 0
    assert val.read_bytes() != before


def test_split_of_an_all_unlabelled_file_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_tiny_coco(tmp_path / "d", count=4)
    coco = json.loads(data.read_text())
    for ann in coco["annotations"]:
        ann["keypoints"] = [0, 0, 0] * 4
        ann["num_keypoints"] = 0
    data.write_text(json.dumps(coco))
    assert _split(data) == 2
    err = capsys.readouterr().err
    assert str(data) in err and "no image with a labelled instance" in err


def test_split_part_without_images_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_tiny_coco(tmp_path / "d", count=2)
    assert main(["prepare", "split", "--coco", str(data), "--val-fraction", "0.1"]) == 2
    assert "'val' part would get no image" in capsys.readouterr().err


def _predictions(data: Path, transform) -> Path:
    coco = load_coco_keypoints(data)
    preds = []
    for ann in coco.instances():
        kps = list(ann["keypoints"])
        for j in range(2, len(kps), 3):
            kps[j] = 0.9
        preds.append(transform({"image_id": ann["image_id"], "category_id": 1, "keypoints": kps,
                                "annotation_id": ann["id"]}))
    out = data.parent / "preds.json"
    out.write_text(json.dumps(preds))
    return out


def test_score_refuses_confidences_outside_0_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_tiny_coco(tmp_path / "d", count=4)

    def logits(p: dict) -> dict:
        p["keypoints"][2] = 3.5
        return p

    preds = _predictions(data, logits)
    assert main(["score", "--gt", str(data), "--pred", str(preds), "--out", str(tmp_path / "m.json")]) == 2
    err = capsys.readouterr().err
    assert str(preds) in err and "3.5" in err and "[0, 1]" in err
    assert not (tmp_path / "m.json").exists()


def test_score_counts_keypoints_far_outside_their_image(tmp_path: Path) -> None:
    data = write_tiny_coco(tmp_path / "d", count=4, size=64)

    def scaled(p: dict) -> dict:  # predictions in a 4x larger frame
        p["keypoints"] = [v * 4 if i % 3 != 2 else v for i, v in enumerate(p["keypoints"])]
        return p

    preds = _predictions(data, scaled)
    with pytest.warns(UserWarning, match=r"of 4 predictions have a keypoint more than one image size outside"):
        assert main(["score", "--gt", str(data), "--pred", str(preds), "--out", str(tmp_path / "m.json")]) == 0
