"""MPII readers: the official RELEASE .mat, the HRNet/mmpose JSON form, and the COCO conversion."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from crosspose.core.errors import ConfigError, DataFormatError
from crosspose.data.coco import load_coco_keypoints
from crosspose.data.mpii import (
    MpiiImage,
    MpiiPerson,
    load_mpii_json,
    load_release_mat,
    parse_release,
    read_mpii,
    select_images,
    split_paths,
    write_release_mat,
)
from crosspose.testing import SHARED_FIXTURES

FIXTURES = SHARED_FIXTURES
MMPOSE_MPII = FIXTURES / "mmpose" / "tests" / "data" / "mpii"
DETECTIONS = FIXTURES / "mpii_mat" / "detections.mat"
HEAD_SIZES = [117.962, 44.046, 78.481, 81.222, 84.370]


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real-data fixture {path} is absent (../shared/fixtures is not in a fresh clone)")
    return path


def person(joints: dict[int, tuple[float, float]], hidden=(), head=(10.0, 10.0, 30.0, 34.0),
           scale=1.5, objpos=(50.0, 60.0)) -> MpiiPerson:
    j = np.full((16, 2), np.nan)
    vis = np.zeros(16, bool)
    for k, xy in joints.items():
        j[k] = xy
        vis[k] = k not in hidden
    return MpiiPerson(joints=j, visible=vis, head_box=head, scale=scale, objpos=objpos)


# ------------------------------------------------------------------- the mmpose JSON sample


def _first_detections(n: int):
    """Head boxes and joints (1-based, as in the .mat) of the first n validation persons."""
    ann = scipy.io.loadmat(str(need(DETECTIONS)))["annolist"][0]
    boxes, joints, missing = [], np.zeros((16, 2, n)), np.ones((16, n), bool)
    for i in range(n):
        r = ann[i]["annorect"][0, 0]
        boxes.append([float(r[k].astype(float).ravel()[0]) for k in ("x1", "y1", "x2", "y2")])
        for p in r["annopoints"][0, 0]["point"][0]:
            k = int(p["id"].ravel()[0])
            joints[k, :, i] = float(p["x"].astype(float).ravel()[0]), float(p["y"].astype(float).ravel()[0])
            missing[k, i] = False
    return np.array(boxes), joints, missing


def test_mmpose_json_sample_joints_missing_ankles_and_derived_head_sizes():
    src = need(MMPOSE_MPII / "test_mpii.json")
    raw = json.loads(src.read_text())
    images, how = load_mpii_json(src)
    persons = [p for img in images for p in img.persons]
    assert [img.name for img in images] == [p["image"] for p in raw]
    assert "derived" in how
    for p, r in zip(persons, raw, strict=True):
        vis = np.array(r["joints_vis"], bool)
        np.testing.assert_allclose(p.joints[vis], np.array(r["joints"])[vis] - 1)  # JSON is 1-based
        assert np.isnan(p.joints[~vis]).all()
        assert p.objpos == (r["center"][0] - 1, r["center"][1] - 1)
    for i in (2, 3):  # persons 3 and 4: both ankles missing
        assert np.isnan(persons[i].joints[[0, 5]]).all() and persons[i].annotated.sum() == 14
    assert [round(p.head_size, 3) for p in persons] == HEAD_SIZES


def test_mmpose_json_sample_with_gt_head_boxes(tmp_path):
    """The JSON has no head boxes: HRNet's gt_valid.mat holds them, 2x2xN, in JSON order.

    The 5 mmpose persons are the first 5 of the standard validation split, so detections.mat
    (the same split in RELEASE layout) supplies the boxes for a gt_valid.mat-style file."""
    src = need(MMPOSE_MPII / "test_mpii.json")
    boxes, joints, missing = _first_detections(5)
    hb = np.zeros((2, 2, 5))
    hb[0, 0], hb[0, 1], hb[1, 0], hb[1, 1] = boxes.T
    gt = tmp_path / "gt_valid.mat"
    scipy.io.savemat(gt, {"headboxes_src": hb, "pos_gt_src": joints, "jnt_missing": missing.astype(np.uint8)})
    images, how = load_mpii_json(src, head_boxes=gt)
    persons = [p for img in images for p in img.persons]
    assert str(gt) in how
    np.testing.assert_allclose([p.head_box for p in persons], boxes - 1)
    np.testing.assert_allclose([p.head_size for p in persons], HEAD_SIZES, atol=5e-4)

    out = read_mpii(src, MMPOSE_MPII, tmp_path / "val.json", head_boxes=gt, check_images=True)[0]
    coco = load_coco_keypoints(out)
    assert len(coco.annotations) == 5
    for ann, p in zip(coco.annotations, persons, strict=True):
        x1, y1, x2, y2 = ann["head_box"]
        assert 0.6 * math.hypot(x2 - x1, y2 - y1) == pytest.approx(p.head_size)
        assert coco.image_path(ann["image_id"]).is_file()
    kps = coco.keypoints(coco.annotations[2])
    assert (kps[[0, 5], 2] == 0).all() and (kps[1:5, 2] == 2).all()

    # a head-box file of another split is caught by its joints
    shifted = joints.copy()
    shifted[:, :, 1] += 40
    bad = tmp_path / "other.mat"
    scipy.io.savemat(bad, {"headboxes_src": hb, "pos_gt_src": shifted, "jnt_missing": missing.astype(np.uint8)})
    with pytest.raises(DataFormatError, match="person 1 does not match"):
        load_mpii_json(src, head_boxes=bad)
    with pytest.raises(DataFormatError, match="holds 4 head boxes but"):
        short = tmp_path / "short.mat"
        scipy.io.savemat(short, {"headboxes_src": hb[:, :, :4]})
        load_mpii_json(src, head_boxes=short)


# ---------------------------------------------------------- detections.mat in a RELEASE wrapper


def _wrap_detections(path: Path) -> tuple[Path, list[list], np.ndarray]:
    """Group detections.mat's 2958 one-person entries by image into a RELEASE-layout .mat."""
    d = scipy.io.loadmat(str(need(DETECTIONS)))
    ann, img_index = d["annolist"][0], d["RELEASE_img_index"][0].astype(int)
    order = list(dict.fromkeys(img_index.tolist()))
    rects: dict[int, list] = {i: [] for i in order}
    for e, i in zip(ann, img_index, strict=True):
        rects[i].append(e["annorect"][0, 0])
    annolist = np.empty((1, len(order)), dtype=[("image", object), ("annorect", object)])
    for j, i in enumerate(order):
        names = list(dict.fromkeys(n for r in rects[i] for n in r.dtype.names))  # MATLAB unions fields
        arr = np.empty((1, len(rects[i])), dtype=[(n, object) for n in names])
        for k, r in enumerate(rects[i]):
            for n in names:
                arr[0, k][n] = r[n] if n in r.dtype.names else np.zeros((0, 0))
        name = np.empty((1, 1), dtype=[("name", object)])
        name[0, 0]["name"] = np.array([f"{i:09d}.jpg"])
        annolist[0, j] = (name, arr)
    release = np.empty((1, 1), dtype=[("annolist", object), ("img_train", object), ("single_person", object)])
    single = np.empty((len(order), 1), dtype=object)
    for j, i in enumerate(order):
        single[j, 0] = np.arange(1, len(rects[i]) + 1, dtype=float).reshape(-1, 1)
    release[0, 0] = (annolist, np.ones((1, len(order)), np.uint8), single)
    scipy.io.savemat(path, {"RELEASE": release})
    return path, [rects[i] for i in order], img_index


@pytest.fixture(scope="module")
def wrapped(tmp_path_factory):
    return _wrap_detections(tmp_path_factory.mktemp("det") / "release.mat")


def _leaf(x) -> float | None:
    a = np.asarray(x)
    return None if a.size == 0 else float(a.astype(float).ravel()[0]) if a.dtype.kind != "U" else float(a.ravel()[0])


def test_detections_all_2958_persons_parse_with_every_coordinate_equal(wrapped):
    path, source, _ = wrapped
    images = load_release_mat(path)
    assert len(images) == 2729
    assert sum(len(img.persons) for img in images) == 2958
    forms: dict[str, int] = {}
    for img, rects in zip(images, source, strict=True):
        assert len(img.persons) == len(rects)
        for p, r in zip(img.persons, rects, strict=True):
            assert p.head_box == tuple(_leaf(r[k]) - 1 for k in ("x1", "y1", "x2", "y2"))
            assert p.scale == _leaf(r["scale"])
            o = r["objpos"][0, 0]
            assert p.objpos == (_leaf(o["x"]) - 1, _leaf(o["y"]) - 1)
            pts = r["annopoints"][0, 0]["point"][0]
            ids = set()
            for q in pts:
                k = int(q["id"].ravel()[0])
                ids.add(k)
                assert tuple(p.joints[k]) == (_leaf(q["x"]) - 1, _leaf(q["y"]) - 1)
                v = q["is_visible"]
                form = "empty" if v.size == 0 else f"{v.dtype.kind}:{v.ravel()[0]}"
                forms[form] = forms.get(form, 0) + 1
                assert p.visible[k] == (v.size == 0 or int(v.ravel()[0]) == 1)
            assert set(np.flatnonzero(p.annotated)) == ids  # partial annopoints padded as missing
    assert set(forms) == {"u:1", "u:0", "U:1", "U:0", "empty"}  # int, string and empty is_visible


def test_detections_parse_the_same_under_every_scipy_load_mode(wrapped):
    path, _, _ = wrapped
    reference = load_release_mat(path)
    for kwargs in ({"squeeze_me": True}, {"struct_as_record": False, "squeeze_me": True}):
        images = parse_release(scipy.io.loadmat(str(path), **kwargs)["RELEASE"], path)
        assert [i.name for i in images] == [i.name for i in reference]
        for a, b in zip(images, reference, strict=True):
            assert a.single_person == b.single_person
            for p, q in zip(a.persons, b.persons, strict=True):
                np.testing.assert_array_equal(p.joints, q.joints)
                np.testing.assert_array_equal(p.visible, q.visible)
                assert p.head_box == q.head_box and p.scale == q.scale


def test_detections_to_coco_without_images(wrapped, tmp_path):
    path, source, _ = wrapped
    out = read_mpii(path, tmp_path / "no_images_here", tmp_path / "mpii.json")[0]
    coco = load_coco_keypoints(out)
    assert len(coco.annotations) == 2958 and len(coco.images) == 2729
    v = np.concatenate([coco.keypoints(a)[:, 2] for a in coco.annotations])
    hidden = sum(1 for rects in source for r in rects for q in r["annopoints"][0, 0]["point"][0]
                 if q["is_visible"].size and int(q["is_visible"].ravel()[0]) == 0)
    assert (v == 1).sum() == hidden
    for a in coco.annotations:
        for key in ("head_box", "scale", "center", "bbox", "area", "num_keypoints", "iscrowd"):
            assert key in a
        assert a["bbox"][2] == pytest.approx(200 * a["scale"])
        assert a["area"] == pytest.approx(a["bbox"][2] * a["bbox"][3])
        assert "width" not in coco.images[a["image_id"]]  # no image on disk: size unknown


# ------------------------------------------------------------------ own files: writer round trip


def _small_release() -> list[MpiiImage]:
    a = person({0: (1.0, 2.0), 9: (20.0, 11.0), 8: (20.5, 30.25), 13: (40.0, 41.0)}, hidden={13})
    b = person({5: (99.0, 98.0)}, head=(0.0, 0.0, 5.0, 5.0), scale=0.5, objpos=(0.0, 0.0))
    c = person({})  # an unannotated rectangle (as on test images)
    return [
        MpiiImage("a.jpg", [a, b], True, [1, 2]),
        MpiiImage("b.jpg", [c], True, []),
        MpiiImage("c.jpg", [b], False, None),
        MpiiImage("d.jpg", [], True, []),
        MpiiImage("e.jpg", [a, c, b], True, [2, 3]),
    ]


def test_write_release_mat_round_trips(tmp_path):
    images = _small_release()
    path = write_release_mat(tmp_path / "r.mat", images)
    release = scipy.io.loadmat(str(path))["RELEASE"]
    assert set(release.dtype.names) == {"annolist", "img_train", "single_person", "act", "version", "video_list"}
    rect = release[0, 0]["annolist"][0, 0]["annorect"][0, 0]
    point = rect["annopoints"][0, 0]["point"][0, 0]
    assert float(point["x"].ravel()[0]) == 2.0  # 1-based on disk, as MATLAB
    back = load_release_mat(path)
    assert [i.name for i in back] == [i.name for i in images]
    assert [i.is_train for i in back] == [i.is_train for i in images]
    assert [i.single_person for i in back] == [[1, 2], [], [1], [], [2, 3]]
    for x, y in zip(back, images, strict=True):
        for p, q in zip(x.persons, y.persons, strict=True):
            np.testing.assert_array_equal(p.joints, q.joints)
            np.testing.assert_array_equal(p.visible, q.visible & q.annotated)
            assert p.head_box == q.head_box and p.scale == q.scale and p.objpos == q.objpos


def test_uint8_leaves_do_not_wrap_around(tmp_path):
    """A uint8 0 on disk is pixel -1 (0-based); subtracting in uint8 would give 255."""
    pt = np.empty((1, 1), dtype=[("x", object), ("y", object), ("id", object), ("is_visible", object)])
    pt[0, 0] = (np.array([[0]], np.uint8), np.array([[1]], np.uint8), np.array([[3]], np.uint8), np.array(["0"]))
    ap = np.empty((1, 1), dtype=[("point", object)])
    ap[0, 0] = (pt,)
    rect = np.empty((1, 1), dtype=[("x1", object), ("y1", object), ("x2", object), ("y2", object),
                                   ("annopoints", object), ("scale", object), ("objpos", object)])
    rect[0, 0] = (np.array([[0]], np.uint8), np.array([[0]], np.uint16), np.array([[9]], np.uint8),
                  np.array([[9]], np.uint8), ap, np.array([[1.0]]), np.zeros((0, 0)))
    name = np.empty((1, 1), dtype=[("name", object)])
    name[0, 0] = (np.array(["x.jpg"]),)
    annolist = np.empty((1, 1), dtype=[("image", object), ("annorect", object)])
    annolist[0, 0] = (name, rect)
    release = np.empty((1, 1), dtype=[("annolist", object)])
    release[0, 0] = (annolist,)
    scipy.io.savemat(tmp_path / "u.mat", {"RELEASE": release})
    (img,) = load_release_mat(tmp_path / "u.mat")
    p = img.persons[0]
    assert tuple(p.joints[3]) == (-1.0, 0.0) and not p.visible[3]
    assert p.head_box == (-1.0, -1.0, 8.0, 8.0)
    assert math.isnan(p.objpos[0]) and img.is_train and img.single_person is None


def test_json_form_written_by_hand(tmp_path):
    joints = [[-1, -1]] * 16
    joints = [[10.0 + k, 20.0 + k] for k in range(16)]
    vis = [1] * 16
    vis[0] = 0
    data = [{"image": "p.jpg", "center": [50, 60], "scale": 2.0, "joints": joints, "joints_vis": vis},
            {"image": "p.jpg", "center": [80, 60], "scale": 1.0, "joints": joints, "joints_vis": [1] * 16},
            {"image": "q.jpg", "center": [5, 6], "scale": 1.0, "joints": joints, "joints_vis": [1] * 16}]
    src = tmp_path / "mpii_train.json"
    src.write_text(json.dumps(data))
    images, _ = load_mpii_json(src)
    assert [(i.name, len(i.persons)) for i in images] == [("p.jpg", 2), ("q.jpg", 1)]
    p = images[0].persons[0]
    assert np.isnan(p.joints[0]).all() and tuple(p.joints[1]) == (10.0, 20.0)
    assert p.head_size == pytest.approx(25 * 2.0)  # derived: 0.6 x diagonal = 25 x scale
    cx = (p.head_box[0] + p.head_box[2]) / 2
    assert cx == pytest.approx((p.joints[8, 0] + p.joints[9, 0]) / 2)
    with pytest.raises(ConfigError, match="single-person"):
        read_mpii(src, tmp_path, tmp_path / "o.json", single_person=True)


# ------------------------------------------------------------------ selection, split, resize


def test_single_person_subset_and_val_split(tmp_path):
    images = [MpiiImage(f"{i:03d}.jpg", [person({0: (1.0, 1.0)}), person({1: (2.0, 2.0)})], True,
                        [1] if i % 3 else [1, 2]) for i in range(40)]
    images.append(MpiiImage("test.jpg", [person({0: (1.0, 1.0)})], False, [1]))
    chosen = select_images(images, single_person=True)
    assert len(chosen) == 26 and all(keep == [0] for _, _, keep in chosen)
    assert len(select_images(images)) == 40  # every annotated person of the training images
    a = select_images(images, subset=10, seed=3)
    assert [i for i, _, _ in a] == [i for i, _, _ in select_images(images, subset=10, seed=3)]
    assert [i for i, _, _ in a] != [i for i, _, _ in select_images(images, subset=10, seed=4)]
    with pytest.raises(ConfigError, match="only 40 images"):
        select_images(images, subset=41)

    mat = write_release_mat(tmp_path / "r.mat", images)
    out = tmp_path / "out" / "mpii.json"
    paths = read_mpii(mat, tmp_path / "images", out, subset=20, seed=1, val_fraction=0.25)
    assert paths == list(split_paths(out)) == [out.parent / "mpii_train.json", out.parent / "mpii_val.json"]
    train, val = (load_coco_keypoints(p) for p in paths)
    assert len(train.images) == 15 and len(val.images) == 5
    assert not set(train.images) & set(val.images)
    again = read_mpii(mat, tmp_path / "images", tmp_path / "again.json", subset=20, seed=1, val_fraction=0.25)
    assert set(load_coco_keypoints(again[1]).images) == set(val.images)


def test_resize_scales_coordinates_head_boxes_and_scale(tmp_path):
    import cv2

    images_dir = tmp_path / "images"
    images_dir.mkdir()
    cv2.imwrite(str(images_dir / "a.jpg"), np.zeros((100, 200, 3), np.uint8))
    p = person({0: (19.5, 9.5), 9: (99.5, 49.5)}, head=(-0.5, -0.5, 199.5, 99.5), scale=0.5, objpos=(99.5, 49.5))
    mat = write_release_mat(tmp_path / "r.mat", [MpiiImage("a.jpg", [p], True, [1])])
    out = read_mpii(mat, images_dir, tmp_path / "o" / "m.json", resize=(400, None))[0]
    coco = load_coco_keypoints(out)
    img = coco.images[1]
    assert (img["width"], img["height"]) == (400, 200)
    assert img["file_name"] == "m_images/a.jpg" and cv2.imread(str(coco.image_path(1))).shape == (200, 400, 3)
    ann = coco.annotations[0]
    np.testing.assert_allclose(coco.keypoints(ann)[[0, 9], :2], [[39.5, 19.5], [199.5, 99.5]])
    np.testing.assert_allclose(ann["head_box"], [-0.5, -0.5, 399.5, 199.5])  # image border stays border
    assert ann["scale"] == pytest.approx(1.0) and ann["bbox"][2] == pytest.approx(200.0)

    out2 = read_mpii(mat, images_dir, tmp_path / "o2.json", resize=(100, 100))[0]
    ann2 = load_coco_keypoints(out2).annotations[0]
    assert ann2["scale"] == pytest.approx(0.5) and ann2["bbox"][2:] == pytest.approx([50.0, 100.0])


# ------------------------------------------------------------------ malformed input


def test_mat_without_release(tmp_path):
    scipy.io.savemat(tmp_path / "x.mat", {"annolist": np.zeros((1, 1))})
    with pytest.raises(DataFormatError, match=r"x\.mat: no RELEASE struct \(variables: annolist\)"):
        load_release_mat(tmp_path / "x.mat")
    (tmp_path / "junk.mat").write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(DataFormatError, match="not a readable MATLAB"):
        load_release_mat(tmp_path / "junk.mat")


def test_missing_image_only_fails_when_images_are_needed(tmp_path):
    mat = write_release_mat(tmp_path / "r.mat", _small_release())
    read_mpii(mat, tmp_path / "images", tmp_path / "ok.json")  # annotations alone convert
    with pytest.raises(DataFormatError) as err:
        read_mpii(mat, tmp_path / "images", tmp_path / "x.json", check_images=True)
    assert str(err.value).startswith(f"{mat}: image a.jpg: image is listed but missing")
    assert "(and 1 more missing)" in str(err.value)
    with pytest.raises(DataFormatError, match="image a.jpg"):
        read_mpii(mat, tmp_path / "images", tmp_path / "x.json", resize=(64, None))


def test_bad_point_id_names_the_entry(tmp_path):
    images = _small_release()
    path = write_release_mat(tmp_path / "r.mat", images)
    data = scipy.io.loadmat(str(path))
    data["RELEASE"][0, 0]["annolist"][0, 4]["annorect"][0, 2]["annopoints"][0, 0]["point"][0, 0]["id"] = \
        np.array([[16]], np.uint8)
    scipy.io.savemat(tmp_path / "bad.mat", {"RELEASE": data["RELEASE"]})
    with pytest.raises(DataFormatError, match=r"annolist\(5\)\.annorect\(3\) \(image e\.jpg\): point id 16"):
        load_release_mat(tmp_path / "bad.mat")


@pytest.mark.parametrize("value", ["text", np.zeros(3), None, np.zeros((1, 2), dtype=[("annolist", object)])])
def test_release_that_is_not_one_struct(value):
    with pytest.raises(DataFormatError, match=r"f\.mat: RELEASE: RELEASE (is not a struct|must be a 1x1 struct)"):
        parse_release(value, "f.mat")
