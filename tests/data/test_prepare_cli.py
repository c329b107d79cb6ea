"""`crosspose prepare macaquepose|mpii` end to end through the command dispatcher."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from crosspose.cli import main
from crosspose.data.coco import load_coco_keypoints
from crosspose.data.macaquepose import MacaqueInstance, write_release_csv
from crosspose.data.mpii import MpiiImage, MpiiPerson, write_release_mat
from crosspose.testing import SHARED_FIXTURES

FIXTURES = SHARED_FIXTURES


def _images(folder: Path, names, size=(160, 120)) -> None:
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        cv2.imwrite(str(folder / n), np.full((size[1], size[0], 3), 90, np.uint8))


def _macaque_release(root: Path) -> None:
    kps = [(30.0 + k, 40.0 + k) for k in range(17)]
    poly = [(20.0, 20.0), (100.0, 20.0), (100.0, 80.0), (20.0, 80.0)]
    write_release_csv(root / "annotations.csv", [("m1.jpg", [MacaqueInstance(kps, [poly])]),
                                                 ("m2.jpg", [MacaqueInstance(kps, [poly]), MacaqueInstance(kps, [])])],
                      name_style="space")
    _images(root / "images", ["m1.jpg", "m2.jpg"])


def _mpii_release(root: Path, n: int = 12) -> Path:
    images = []
    for i in range(n):
        joints = np.full((16, 2), np.nan)
        joints[:10] = np.stack([np.arange(10) + 10.0, np.arange(10) + 20.0], 1)
        p = MpiiPerson(joints, np.ones(16, bool), (50.0, 10.0, 70.0, 30.0), 0.4, (60.0, 60.0))
        images.append(MpiiImage(f"{i:03d}.jpg", [p], True, [1]))
    _images(root / "images", [img.name for img in images])
    return write_release_mat(root / "release.mat", images)


def test_prepare_macaquepose_with_crops(tmp_path, capsys):
    _macaque_release(tmp_path / "mq")
    rc = main(["prepare", "macaquepose", "--root", str(tmp_path / "mq"), "--out", str(tmp_path / "o" / "m.json"),
               "--crops", str(tmp_path / "o" / "crops"), "--length", "100"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "m.json: 2 images, 2 annotations" in out  # the maskless monkey has no crop
    coco = load_coco_keypoints(tmp_path / "o" / "m.json")
    assert {img["file_name"] for img in coco.images.values()} == {"crops/m1_1.jpg", "crops/m2_1.jpg"}
    assert all(max(i["width"], i["height"]) == 100 for i in coco.images.values())


def test_prepare_macaquepose_reports_missing_image(tmp_path, capsys):
    _macaque_release(tmp_path / "mq")
    (tmp_path / "mq" / "images" / "m2.jpg").unlink()
    rc = main(["prepare", "macaquepose", "--root", str(tmp_path / "mq"), "--out", str(tmp_path / "m.json")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert err.startswith("crosspose prepare: error: ") and "row 2: image 'm2.jpg' is listed but missing" in err


def test_prepare_mpii_subset_split_and_resize(tmp_path, capsys):
    mat = _mpii_release(tmp_path / "mpii")
    out = tmp_path / "o" / "human.json"
    rc = main(["prepare", "mpii", "--annotations", str(mat), "--images", str(tmp_path / "mpii" / "images"),
               "--out", str(out), "--single-person", "--subset", "10", "--seed", "7", "--val-fraction", "0.2",
               "--resize-width", "320"])
    assert rc == 0, capsys.readouterr().err
    assert not out.exists()
    train = load_coco_keypoints(out.parent / "human_train.json")
    val = load_coco_keypoints(out.parent / "human_val.json")
    assert (len(train.images), len(val.images)) == (8, 2)
    img = next(iter(train.images.values()))
    assert img["file_name"].startswith("human_images/") and (img["width"], img["height"]) == (320, 240)
    ann = train.annotations[0]
    assert ann["scale"] == pytest.approx(0.8) and ann["head_box"] == pytest.approx([100.5, 20.5, 140.5, 60.5])


def test_prepare_mpii_errors_are_one_line(tmp_path, capsys):
    import scipy.io

    scipy.io.savemat(tmp_path / "x.mat", {"annolist": np.zeros((1, 1))})
    rc = main(["prepare", "mpii", "--annotations", str(tmp_path / "x.mat"), "--images", str(tmp_path),
               "--out", str(tmp_path / "o.json")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "no RELEASE struct" in err

    mat = _mpii_release(tmp_path / "mpii", n=3)
    rc = main(["prepare", "mpii", "--annotations", str(mat), "--images", str(tmp_path / "mpii"),
               "--out", str(tmp_path / "o.json"), "--subset", "5"])
    assert rc == 2 and "--subset 5: only 3 images qualify" in capsys.readouterr().err


def test_prepare_mpii_help_names_the_split_files(capsys):
    with pytest.raises(SystemExit):
        main(["prepare", "mpii", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "OUT_val.json" in text and "OUT_train.json" in text and "mpii_train.json and mpii_val.json" in text
    assert "annotations alone convert" in text


def test_prepare_mpii_mmpose_sample(tmp_path, capsys):
    src = FIXTURES / "mmpose" / "tests" / "data" / "mpii" / "test_mpii.json"
    if not src.exists():
        pytest.skip(f"real-data fixture {src} is absent (../shared/fixtures is not in a fresh clone)")
    rc = main(["prepare", "mpii", "--annotations", str(src), "--images", str(src.parent),
               "--out", str(tmp_path / "v.json"), "--resize", "320x240"])
    assert rc == 0, capsys.readouterr().err
    data = json.loads((tmp_path / "v.json").read_text())
    assert len(data["annotations"]) == 5
    assert all((i["width"], i["height"]) == (320, 240) for i in data["images"])
