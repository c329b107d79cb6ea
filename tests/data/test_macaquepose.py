"""MacaquePose release reader, writer and per-monkey crops."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from crosspose.core.errors import DataFormatError
from crosspose.core.skeletons import MACAQUE
from crosspose.data.coco import load_coco_keypoints
from crosspose.data.macaquepose import (
    MacaqueInstance,
    crop_instance,
    instance_bbox_area,
    parse_release_csv,
    polygon_area,
    read_macaquepose,
    write_release_csv,
)
from crosspose.testing import SHARED_FIXTURES

FIXTURES = SHARED_FIXTURES
CSV_SAMPLE = FIXTURES / "macaquepose_csv"
MMPOSE_MACAQUE = FIXTURES / "mmpose" / "tests" / "data" / "macaque" / "test_macaque.json"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real-data fixture {path} is absent (../shared/fixtures is not in a fresh clone)")
    return path


# ---------------------------------------------------------------------------- real samples


def test_release_csv_sample_matches_mmpose_json(tmp_path):
    out = read_macaquepose(need(CSV_SAMPLE), tmp_path / "macaque.json")
    ours = json.loads(out.read_text())
    ref = json.loads(need(MMPOSE_MACAQUE).read_text())
    ref_images = {i["id"]: i for i in ref["images"]}
    our_images = {i["id"]: i for i in ours["images"]}
    assert len(ours["annotations"]) == len(ref["annotations"]) == 2
    by_name = {ref_images[a["image_id"]]["file_name"]: a for a in ref["annotations"]}
    for a in ours["annotations"]:
        img = our_images[a["image_id"]]
        r = by_name[Path(img["file_name"]).name]
        assert a["keypoints"] == r["keypoints"]
        assert a["bbox"] == r["bbox"]
        assert a["area"] == pytest.approx(r["area"], rel=1e-12)
        assert a["num_keypoints"] == r["num_keypoints"]
        assert a["segmentation"] == r["segmentation"]
        ri = ref_images[r["image_id"]]
        assert (img["width"], img["height"]) == (ri["width"], ri["height"])
    coco = load_coco_keypoints(out)
    assert coco.keypoint_names == MACAQUE.keypoints
    assert all(coco.image_path(i).is_file() for i in coco.images)


def test_mmpose_macaque_json_loads_as_coco():
    src = need(MMPOSE_MACAQUE)
    coco = load_coco_keypoints(src)
    assert len(coco.images) == 2 and len(coco.instances()) == 2
    assert coco.keypoint_names == MACAQUE.keypoints
    assert [int((coco.keypoints(a)[:, 2] > 0).sum()) for a in coco.annotations] == [16, 15]
    assert all(coco.image_path(i).is_file() for i in coco.images)
    from pycocotools.coco import COCO

    api = COCO(str(src))
    assert sorted(api.getImgIds()) == sorted(coco.images)
    assert len(api.getAnnIds(catIds=[1])) == 2


def test_crops_of_the_real_sample(tmp_path):
    out = read_macaquepose(need(CSV_SAMPLE), tmp_path / "crops.json", crops_dir=tmp_path / "crops", length=320)
    coco = load_coco_keypoints(out)
    assert len(coco.images) == 2
    for img_id, img in coco.images.items():
        assert max(img["width"], img["height"]) == 320
        assert coco.image_path(img_id).is_file() and img["file_name"].startswith("crops/")
    for ann in coco.annotations:
        kps = coco.keypoints(ann)
        img = coco.images[ann["image_id"]]
        lab = kps[kps[:, 2] > 0]
        assert (lab[:, 0] >= -0.5).all() and (lab[:, 0] <= img["width"]).all()
        assert (lab[:, 1] >= -0.5).all() and (lab[:, 1] <= img["height"]).all()


# ---------------------------------------------------------------------------- own files


def _monkey(dx: float = 0.0, polygons=None, nulls=(3,)) -> MacaqueInstance:
    kps = [None if k in nulls else (20.0 + dx + k, 30.0 + k) for k in range(17)]
    if polygons is None:
        polygons = [[(10.0 + dx, 10.0), (60.0 + dx, 10.0), (60.0 + dx, 60.0), (10.0 + dx, 60.0)]]
    return MacaqueInstance(kps, polygons)


def _write_release(root: Path, entries, name_style="underscore", size=(120, 100)) -> Path:
    import cv2

    (root / "images").mkdir(parents=True, exist_ok=True)
    for name, _ in entries:
        cv2.imwrite(str(root / "images" / name), np.full((size[1], size[0], 3), 200, np.uint8))
    return write_release_csv(root / "annotations.csv", entries, name_style=name_style)


@pytest.mark.parametrize("style", ["underscore", "space"])
def test_writer_round_trip_every_layout_feature(tmp_path, style):
    two_polys = [[(0.0, 0.0), (10.0, 0.0), (10.0, 10.0)], [], [(50.0, 50.0), (54.0, 50.0), (54.0, 53.0)]]
    entries = [
        ("a.jpg", [_monkey(), _monkey(40.0, nulls=(0, 16))]),  # two monkeys, null positions
        ("b.jpg", [_monkey(polygons=two_polys)]),              # several polygons, one empty
        ("c.jpg", []),                                         # an image without monkeys
        ("d.jpg", [_monkey(polygons=[])]),                     # a monkey without polygons
    ]
    path = _write_release(tmp_path, entries, style)
    text = path.read_bytes().decode()
    assert text.startswith("image file name,keypoinbts,segmentation\r\n")
    assert ('"left eye"' if style == "space" else '"left_eye"') in text.replace('""', '"')
    rows = parse_release_csv(path)
    assert [r.image for r in rows] == ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    assert [r.row for r in rows] == [1, 2, 3, 4]
    for row, (_, monkeys) in zip(rows, entries, strict=True):
        assert row.instances == monkeys

    out = read_macaquepose(tmp_path, tmp_path / "out" / "m.json")
    coco = load_coco_keypoints(out)
    assert len(coco.images) == 4 and len(coco.annotations) == 4
    a0, a1, b, d = coco.annotations
    assert a0["bbox"] == [10.0, 10.0, 51.0, 51.0] and a0["area"] == 2500.0
    assert coco.keypoints(a0)[3].tolist() == [0.0, 0.0, 0.0] and a0["num_keypoints"] == 16
    assert coco.keypoints(a1)[[0, 16], 2].tolist() == [0.0, 0.0]
    assert coco.keypoints(a0)[5].tolist() == [25.0, 35.0, 2.0]
    assert b["bbox"] == [0.0, 0.0, 55.0, 54.0] and b["area"] == pytest.approx(50.0 + 6.0)
    assert len(b["segmentation"]) == 2  # the empty polygon is dropped, as mmpose does
    assert d["bbox"] == [20.0, 30.0, 16.0, 16.0] and d["area"] == 256.0  # keypoint box fallback
    assert coco.images[1]["file_name"] == "../images/a.jpg"
    assert (coco.images[1]["width"], coco.images[1]["height"]) == (120, 100)


def test_keypoints_header_spelling_and_name_order(tmp_path):
    kp = [{"name": n.replace("_", " ").title(), "position": [float(k), 1.0]}
          for k, n in reversed(list(enumerate(MACAQUE.keypoints)))]  # reversed: mapped by name
    seg = [{"segment": [[0, 0], [4, 0], [4, 4]]}]
    import csv

    with (tmp_path / "a.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image file name", "keypoints", "segmentation"])
        w.writerow(["x.jpg", json.dumps([kp]), json.dumps([seg])])
    (row,) = parse_release_csv(tmp_path / "a.csv")
    assert [p[0] for p in row.instances[0].keypoints] == [float(k) for k in range(17)]
    assert polygon_area(row.instances[0].polygons[0]) == 8.0
    assert instance_bbox_area(row.instances[0])[0] == [0.0, 0.0, 5.0, 5.0]


def test_crop_blanks_background_resizes_and_scales_keypoints():
    image = np.full((100, 200, 3), 255, np.uint8)
    tri = [(10.0, 20.0), (49.0, 20.0), (10.0, 39.0)]
    kps = [None] * 17
    kps[0] = (10.0, 20.0)
    kps[1] = (20.0, 25.0)
    crop, moved = crop_instance(image, MacaqueInstance(kps, [tri]), length=80)
    assert crop.shape == (40, 80, 3)  # box 40 x 20 px, scaled by 2
    assert moved.keypoints[0] == (0.5, 0.5) and moved.keypoints[1] == (20.5, 10.5)
    assert moved.polygons[0][1] == (78.5, 0.5)
    assert crop[2, 2].min() == 255 and crop[-2, -2].max() == 0  # inside kept, outside blanked
    assert crop_instance(image, MacaqueInstance([None] * 17, [[]]), 80) is None


def test_crops_refer_to_crop_files(tmp_path):
    _write_release(tmp_path, [("a.jpg", [_monkey(), _monkey(40.0, polygons=[])])])
    out = read_macaquepose(tmp_path, tmp_path / "c.json", crops_dir=tmp_path / "crops", length=64)
    coco = load_coco_keypoints(out)
    assert len(coco.images) == 1  # the monkey without a mask has nothing to cut out
    img = coco.images[1]
    assert img["file_name"] == "crops/a_1.jpg" and img["source_image"] == "a.jpg"
    assert (img["width"], img["height"]) == (64, 64)
    ann = coco.annotations[0]
    # box 10..60 (51 px, keypoints inside) -> 64 px; keypoint (25, 35) maps with the pixel-centre rule
    s = 64 / 51
    assert coco.keypoints(ann)[5, :2] == pytest.approx([(25 - 10 + 0.5) * s - 0.5, (35 - 10 + 0.5) * s - 0.5])


# ---------------------------------------------------------------------------- malformed input


def _csv(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "annotations.csv"
    p.write_text("image file name,keypoinbts,segmentation\r\n" + body)
    return p


def test_truncated_row(tmp_path):
    p = _csv(tmp_path, 'a.jpg,"[]"\r\n')
    with pytest.raises(DataFormatError) as err:
        parse_release_csv(p)
    assert str(err.value) == (f"{p}: row 1 (line 2, image 'a.jpg'): truncated row: 2 cell(s), expected 3 "
                              "(image file name, keypoinbts, segmentation)")


def test_truncated_quoted_cell(tmp_path):
    good = tmp_path / "good"
    write_release_csv(good / "annotations.csv", [("a.jpg", [_monkey()]), ("b.jpg", [_monkey()])])
    text = (good / "annotations.csv").read_bytes().decode()
    p = _csv(tmp_path, text.split("\r\n", 1)[1][: len(text) // 2 + 40])
    with pytest.raises(DataFormatError, match=r"annotations\.csv: row 2 \(from line 3\): broken CSV"):
        parse_release_csv(p)


@pytest.mark.parametrize("keypoints, segmentation, message", [
    ('[[{"name": "nose", "position": [1, 2]}', "[[]]", "'keypoinbts' cell is not valid JSON"),
    ('[[{"name": "tail", "position": [1, 2]}]]', "[[]]", "monkey 1: unknown keypoint name 'tail'"),
    ('[[{"name": "nose", "position": [1]}]]', "[[]]", "monkey 1 'nose' position must be [x, y]"),
    ('[[{"name": "nose", "position": null}]]', "[]", "lists 1 monkey(s) but 'segmentation' lists 0"),
    ('[[]]', '[[{"segment": [[1, "a"]]}]]', "monkey 1 polygon 1 vertex must be [x, y]"),
    ('{"a": 1}', "[]", "keypoints cell must be a JSON list over monkeys"),
])
def test_bad_json_cells(tmp_path, keypoints, segmentation, message):
    def q(s: str) -> str:
        return '"' + s.replace('"', '""') + '"'

    p = _csv(tmp_path, f"ok.jpg,[],[]\r\nbad.jpg,{q(keypoints)},{q(segmentation)}\r\n")
    with pytest.raises(DataFormatError) as err:
        parse_release_csv(p)
    assert str(err.value).startswith(f"{p}: row 2 (line 3, image 'bad.jpg'): ")
    assert message in str(err.value)


def test_wrong_header_and_duplicate_image(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("file,points\r\n")
    with pytest.raises(DataFormatError, match="line 1: header .* is not the MacaquePose header"):
        parse_release_csv(p)
    p = _csv(tmp_path, "a.jpg,[],[]\r\na.jpg,[],[]\r\n")
    with pytest.raises(DataFormatError, match=r"row 2 .*image listed twice \(first in row 1\)"):
        parse_release_csv(p)


def test_image_listed_but_missing(tmp_path):
    _write_release(tmp_path, [("a.jpg", [_monkey()])])
    write_release_csv(tmp_path / "annotations.csv", [("a.jpg", [_monkey()]), ("gone.jpg", [_monkey()])])
    with pytest.raises(DataFormatError) as err:
        read_macaquepose(tmp_path, tmp_path / "o.json")
    assert str(err.value) == (f"{tmp_path / 'annotations.csv'}: row 2: image 'gone.jpg' is listed but missing "
                              f"from {tmp_path / 'images'}")
