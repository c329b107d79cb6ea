"""The scorer: pairing, joint sets, normalisers, bad input, and two checks against hand and official numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from crosspose import cli
from crosspose.core.errors import ConfigError, CrossposeError, DataFormatError
from crosspose.core.skeletons import MACAQUE, MPII, SHARED_LIMB_JOINTS
from crosspose.data.coco import load_coco_keypoints, save_coco_keypoints
from crosspose.evaluation.predictions import load_predictions, read_keypoint_names
from crosspose.evaluation.results import write_metrics
from crosspose.evaluation.score import evaluate, format_table, resolve_joints
from crosspose.testing import SHARED_FIXTURES

FIXTURES = SHARED_FIXTURES
MMPOSE_MPII = FIXTURES / "mmpose" / "tests" / "data" / "mpii" / "test_mpii.json"
DETECTIONS_MAT = FIXTURES / "mpii_mat" / "detections.mat"
HEAD_SIZES = [117.962, 44.046, 78.481, 81.222, 84.370]  # fixtures README: 0.6 x head-box diagonal


# ------------------------------------------------------------------------------ small GT builders
def _head_box(center: tuple[float, float], head_size: float) -> list[float]:
    """A square head box whose 0.6 x diagonal is ``head_size``."""
    half = head_size / 0.6 / math.sqrt(2) / 2
    return [center[0] - half, center[1] - half, center[0] + half, center[1] + half]


def _mmpose_gt(tmp_path: Path) -> tuple[Path, list[dict]]:
    """The 5 mmpose MPII persons as a COCO file (our own conversion, 1-based -> 0-based)."""
    if not MMPOSE_MPII.is_file():
        pytest.skip(f"fixture {MMPOSE_MPII} absent (shared fixtures are not part of a fresh clone)")
    persons = json.loads(MMPOSE_MPII.read_text())
    images, anns = [], []
    for i, p in enumerate(persons):
        kp = []
        for (x, y), vis in zip(p["joints"], p["joints_vis"], strict=True):
            kp += [x - 1.0, y - 1.0, 2] if vis else [0.0, 0.0, 0]
        images.append({"id": i + 1, "file_name": p["image"], "width": 1920, "height": 1080})
        anns.append({"id": 10 + i, "image_id": i + 1, "category_id": 1, "keypoints": kp, "iscrowd": 0,
                     "head_box": _head_box((p["center"][0], p["center"][1] - 100), HEAD_SIZES[i]),
                     "scale": p["scale"], "num_keypoints": int(sum(p["joints_vis"]))})
    path = save_coco_keypoints(tmp_path / "gt.json", images, anns, MPII.coco_category())
    return path, anns


def _tiny_gt(tmp_path: Path, n_images: int = 2, per_image: int = 1, skeleton=MPII, **extra) -> Path:
    images, anns = [], []
    k = skeleton.num_keypoints
    for i in range(n_images):
        images.append({"id": i + 1, "file_name": f"{i}.jpg", "width": 200, "height": 200})
        for j in range(per_image):
            kp = []
            for kk in range(k):
                kp += [10.0 + 5 * kk + 50 * j, 20.0 + 7 * kk, 2]
            anns.append({"id": 100 * (i + 1) + j, "image_id": i + 1, "category_id": 1, "keypoints": kp,
                         "head_box": [0, 0, 30, 40], "scale": 1.5, **extra})
    return save_coco_keypoints(tmp_path / "gt.json", images, anns, skeleton.coco_category())


def _preds_from_gt(gt_path: Path, conf: float = 1.0, with_ann_id: bool = False) -> list[dict]:
    gt = load_coco_keypoints(gt_path)
    out = []
    for a in gt.instances():
        kp = gt.keypoints(a).copy()
        kp[:, 2] = np.where(kp[:, 2] > 0, conf, 0.0)
        p = {"image_id": a["image_id"], "category_id": 1, "keypoints": kp.ravel().tolist(), "score": 1.0}
        if with_ann_id:
            p["annotation_id"] = a["id"]
        out.append(p)
    return out


def _write(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj))
    return path


# ------------------------------------------------------------------------- GT as prediction
def test_ground_truth_as_prediction_is_perfect(tmp_path):
    gt_path, _ = _mmpose_gt(tmp_path)
    gt = load_coco_keypoints(gt_path)
    m = evaluate(gt, _preds_from_gt(gt_path))
    assert m["pckh"]["mean"] == 100.0 and m["pckh"]["at_0_1"] == 100.0 and m["pckh"]["auc"] == 100.0
    assert all(v == 100.0 for v in m["pckh"]["per_joint"].values())
    loc = m["localization"]
    assert loc["rmse"] == 0.0 and loc["mean_error"] == 0.0 and loc["rmse_normalized"] == 0.0
    assert loc["n"] == 66
    d = m["detection"]
    assert d["roc_auc"] == 1.0 and d["f1"] == 1.0 and d["precision"] == 1.0 and d["recall"] == 1.0
    assert m["counts"] == {"instances": 5, "joints": 14, "present": 66, "correct": 66, "accepted": 66,
                           "predicted": 70, "samples": 70}
    assert m["normalizer"]["name"] == "head_box" and m["oks"] is None
    assert "pelvis" not in m["joints"] and "thorax" not in m["joints"] and len(m["joints"]) == 14


# ----------------------------------------------------------------------- hand-computed case
# Displacement factor F (as a fraction of the person's head size, along the 3-4-5 direction (0.6, 0.8))
# and confidence, per MPII joint id, for persons 0..4. Persons 2 and 3 have no ankles (fixture).
_CORRECT_F, _WRONG_F, _NEAR_F = 0.305, 0.705, 0.055


def _hand_design() -> tuple[np.ndarray, np.ndarray]:
    F = np.full((5, 16), _CORRECT_F)
    F[:, [2, 3]] = 0.0                     # hips exact
    F[:, [8, 9]] = _NEAR_F                 # neck, head top within 0.1
    F[:, [6, 7]] = _WRONG_F                # pelvis, thorax wrong but not evaluated
    F[0, [11, 14]] = _WRONG_F              # person 0 elbows wrong
    F[0, [10, 15]] = F[1, [10, 15]] = _WRONG_F   # persons 0, 1 wrists wrong
    F[4, [1, 4]] = _WRONG_F                # person 4 knees wrong
    F[1, [0, 5]] = _WRONG_F                # person 1 ankles wrong
    C = np.where(F == _WRONG_F, 0.3, 0.9)
    C[0, [10, 15]] = C[1, [10, 15]] = 0.8  # confidently wrong wrists
    correct_elbows = F[:, [11, 14]] != _WRONG_F
    C[:, [11, 14]] = np.where(correct_elbows, 0.5, C[:, [11, 14]])
    C[2, [0, 5]] = C[3, [0, 5]] = 0.5      # confident predictions of absent ankles
    return F, C


def _hand_predictions(tmp_path: Path) -> tuple[Path, Path]:
    gt_path, anns = _mmpose_gt(tmp_path)
    F, C = _hand_design()
    preds = []
    for n, a in enumerate(anns):
        kp = np.asarray(a["keypoints"], float).reshape(16, 3)
        h = HEAD_SIZES[n]
        out = np.stack([kp[:, 0] + 0.6 * F[n] * h, kp[:, 1] + 0.8 * F[n] * h, C[n]], 1)
        preds.append({"image_id": a["image_id"], "category_id": 1, "keypoints": out.ravel().tolist(),
                      "score": 0.9})
    return gt_path, _write(tmp_path / "pred.json", preds)


def test_hand_computed_numbers_on_five_mpii_persons(tmp_path):
    gt_path, pred_path = _hand_predictions(tmp_path)
    out = tmp_path / "metrics.json"
    assert cli.main(["score", "--gt", str(gt_path), "--pred", str(pred_path), "--out", str(out)]) == 0
    m = json.loads(out.read_text())
    approx = pytest.approx

    # 66 present evaluated joints (70 minus 4 absent ankles); correct: hips 10, neck 5, head 5,
    # shoulders 10, elbows 8, wrists 6, knees 8, ankles 4 = 56.
    pj = m["pckh"]["per_joint"]
    expected = {"right_ankle": 200 / 3, "right_knee": 80, "right_hip": 100, "left_hip": 100, "left_knee": 80,
                "left_ankle": 200 / 3, "upper_neck": 100, "head_top": 100, "right_wrist": 60, "right_elbow": 80,
                "right_shoulder": 100, "left_shoulder": 100, "left_elbow": 80, "left_wrist": 60}
    assert pj == approx(expected)
    assert m["pckh"]["groups"] == approx({"Head": 100, "Shoulder": 100, "Elbow": 80, "Wrist": 60, "Hip": 100,
                                          "Knee": 80, "Ankle": 200 / 3})
    assert m["pckh"]["mean"] == approx(100 * 56 / 66)
    assert m["pckh"]["at_0_1"] == approx(100 * 20 / 66)   # hips and neck/head only
    # PCKh(alpha) = 10/66 for alpha <= 0.05 (6 grid points), 20/66 up to 0.30 (25), 56/66 after (20):
    # trapezoid = 0.01 * (sum - (first + last) / 2), divided by the range 0.5.
    area = 0.01 * ((6 * 10 + 25 * 20 + 20 * 56) - (10 + 56) / 2) / 0.5
    assert m["pckh"]["auc"] == approx(100 * area / 66)

    # Detection, absent joints negative: positives 56 (48 at 0.9, 8 elbows at 0.5); negatives 14
    # (4 wrists at 0.8, 4 absent ankles at 0.5, 6 others at 0.3). F1 = 2TP / (2TP + FP + FN):
    # t=0.9: 96/104, t=0.8: 96/108, t=0.5: 112/120, t=0.3: 112/126 -> t* = 0.5.
    d = m["detection"]
    assert d["threshold"] == 0.5
    assert (d["precision"], d["recall"], d["f1"]) == approx((56 / 64, 1.0, 112 / 120))
    assert (d["at_0_4"]["precision"], d["at_0_4"]["recall"], d["at_0_4"]["f1"]) == approx((56 / 64, 1.0, 112 / 120))
    assert (d["at_0_6"]["precision"], d["at_0_6"]["recall"], d["at_0_6"]["f1"]) == approx((48 / 52, 48 / 56, 96 / 108))
    # ROC-AUC = P(s+ > s-) + P(tie) / 2 over 56 x 14 pairs: 48*14 + 8*6 + 0.5*8*4.
    assert d["roc_auc"] == approx((48 * 14 + 8 * 6 + 0.5 * 8 * 4) / (56 * 14))
    assert m["counts"] == {"instances": 5, "joints": 14, "present": 66, "correct": 56, "accepted": 64,
                           "predicted": 70, "samples": 70}

    # Localisation at t* = 0.5: the 56 correct joints plus the 4 confidently wrong wrists (60).
    # Per person the kept factors are: persons 0, 1: six at 0.305, two at 0.055, two at 0.705, two at 0;
    # persons 2, 3, 4: eight at 0.305, two at 0.055, two at 0.
    sq = [6 * .305**2 + 2 * .055**2 + 2 * .705**2] * 2 + [8 * .305**2 + 2 * .055**2] * 3
    lin = [6 * .305 + 2 * .055 + 2 * .705] * 2 + [8 * .305 + 2 * .055] * 3
    scales = [4.718488, 1.761835, 3.139233, 3.248877, 3.374796]
    rmse = math.sqrt(sum(h * h * s for h, s in zip(HEAD_SIZES, sq, strict=True)) / 60)
    rmse_n = math.sqrt(sum((h / c) ** 2 * s for h, c, s in zip(HEAD_SIZES, scales, sq, strict=True)) / 60)
    loc = m["localization"]
    assert loc["n"] == 60
    assert (loc["rmse"], loc["rmse_x"], loc["rmse_y"]) == approx((rmse, 0.6 * rmse, 0.8 * rmse))
    assert loc["mean_error"] == approx(sum(h * s for h, s in zip(HEAD_SIZES, lin, strict=True)) / 60)
    assert (loc["rmse_normalized"], loc["rmse_x_normalized"]) == approx((rmse_n, 0.6 * rmse_n))
    assert loc["mean_error_normalized"] == approx(
        sum(h / c * s for h, c, s in zip(HEAD_SIZES, scales, lin, strict=True)) / 60)


def test_hand_computed_detection_with_absent_joints_excluded(tmp_path):
    gt_path, pred_path = _hand_predictions(tmp_path)
    gt = load_coco_keypoints(gt_path)
    m = evaluate(gt, load_predictions(pred_path, gt), absent="exclude")
    d = m["detection"]
    # negatives now 10 (4 at 0.8, 6 at 0.3); t=0.5: TP 56, FP 4 -> F1 112/116 is the maximum.
    assert d["threshold"] == 0.5 and d["samples"] == 66
    assert (d["precision"], d["recall"], d["f1"]) == pytest.approx((56 / 60, 1.0, 112 / 116))
    assert d["roc_auc"] == pytest.approx((48 * 10 + 8 * 6) / (56 * 10))
    assert m["absent"] == "exclude"
    assert m["pckh"]["mean"] == pytest.approx(100 * 56 / 66)  # PCKh does not depend on the option


def test_metrics_json_is_strict_json_and_table_names_normaliser(tmp_path, capsys):
    gt_path, pred_path = _hand_predictions(tmp_path)
    out = tmp_path / "m" / "metrics.json"
    cli.main(["score", "--gt", str(gt_path), "--pred", str(pred_path), "--out", str(out)])
    printed = capsys.readouterr().out
    text = out.read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    m = json.loads(text)
    for key in ("roc_curve", "histogram"):
        assert m["detection"][key]
    assert sum(m["detection"]["histogram"]["correct"]) == 56
    assert sum(m["detection"]["histogram"]["incorrect"]) == 14
    assert "head_box" in printed and "0.6 x head-box diagonal" in printed
    assert "ROC-AUC 0.939" in printed and format_table(m).splitlines()[0].startswith("joints (14)")


# --------------------------------------------------------------- official formula on Tompson et al.
def _load_detections_mat():
    if not DETECTIONS_MAT.is_file():
        pytest.skip(f"fixture {DETECTIONS_MAT} absent (shared fixtures are not part of a fresh clone)")
    import scipy.io as sio

    m = sio.loadmat(DETECTIONS_MAT)
    persons = []
    for entry in m["annolist"][0]:
        rect = entry["annorect"][0, 0]
        box = [float(rect[f][0, 0]) for f in ("x1", "y1", "x2", "y2")]  # uint8/uint16 -> float first
        joints = np.full((16, 2), np.nan)
        ap = rect["annopoints"]
        if ap.size:
            for pt in ap[0, 0]["point"][0]:
                joints[int(pt["id"][0, 0])] = float(pt["x"][0, 0]), float(pt["y"][0, 0])
        persons.append((box, float(rect["scale"][0, 0]), joints))
    preds = [np.asarray(k, float) for k in m["keypointsAll"][0]]
    names = [str(n[0]) for n in m["output_joints"][0]]
    return persons, preds, names


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_tompson_predictions_match_official_pckh(tmp_path):
    persons, preds, names = _load_detections_mat()
    assert names == ["rank", "rkne", "rhip", "lhip", "lkne", "lank", "neck", "head",
                     "rwri", "relb", "rsho", "lsho", "lelb", "lwri"]
    mpii_ids = [0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13, 14, 15]  # the 14 outputs in MPII ids

    # The official toolkit (evaluatePCKh.m) in plain numpy, on the 1-based .mat coordinates.
    gt_xy = np.stack([j for _, _, j in persons])                          # (N, 16, 2), NaN = missing
    pred_xy = np.full_like(gt_xy, np.nan)
    pred_xy[:, mpii_ids] = np.stack(preds)
    head = np.array([0.6 * np.linalg.norm(np.subtract(b[2:], b[:2])) for b, _, _ in persons])
    dist = np.linalg.norm(pred_xy - gt_xy, axis=2) / head[:, None]
    jnt_visible = ~np.isnan(gt_xy[..., 0])
    hits = (dist <= 0.5) & jnt_visible
    official_joint = 100 * hits.sum(0) / jnt_visible.sum(0)
    official_total = 100 * hits[:, mpii_ids].sum() / jnt_visible[:, mpii_ids].sum()
    # reference/metrics.md quotes 82.34; the formula on this fixture gives 31635 / 38430 = 82.3185
    # (documented deviation: no reading of the page's formula we tried reproduces the last digit).
    assert official_total == pytest.approx(82.34, abs=0.03)

    # The same data through `crosspose score`: COCO GT (0-based) and a results file (pelvis/thorax null).
    images, anns, results = [], [], []
    for i, ((box, scale, joints), p) in enumerate(zip(persons, preds, strict=True)):
        kp = [[x - 1, y - 1, 2] if np.isfinite(x) else [0, 0, 0] for x, y in joints]
        images.append({"id": i + 1, "file_name": f"{i}.jpg"})
        anns.append({"id": i + 1, "image_id": i + 1, "category_id": 1, "keypoints": sum(kp, []),
                     "head_box": [v - 1 for v in box], "scale": scale})
        rk = [[None, None, 0.0]] * 16
        for j, (x, y) in zip(mpii_ids, p, strict=True):
            rk[j] = [x - 1, y - 1, 1.0]
        results.append({"image_id": i + 1, "category_id": 1, "keypoints": sum(rk, []), "score": 1.0})
    gt_path = save_coco_keypoints(tmp_path / "val.json", images, anns, MPII.coco_category())
    pred_path = _write(tmp_path / "tompson.json", results)
    out = tmp_path / "metrics.json"
    assert cli.main(["score", "--gt", str(gt_path), "--pred", str(pred_path), "--out", str(out)]) == 0
    m = json.loads(out.read_text())
    assert m["counts"]["instances"] == 2958
    assert m["pckh"]["mean"] == pytest.approx(official_total, abs=1e-9)
    assert m["counts"]["present"] == 38430 and m["counts"]["correct"] == 31635
    for j in mpii_ids:
        assert m["pckh"]["per_joint"][MPII.keypoints[j]] == pytest.approx(official_joint[j], abs=1e-9)


# -------------------------------------------------------------------------- joint sets, skeletons
def test_resolve_joints_default_shared_and_cross_species():
    names, gt_idx, pred_idx = resolve_joints(MPII.keypoints)
    assert len(names) == 14 and 6 not in gt_idx and 7 not in gt_idx and gt_idx == pred_idx
    names, _, _ = resolve_joints(MACAQUE.keypoints)
    assert names == list(MACAQUE.keypoints)
    names, gt_idx, pred_idx = resolve_joints(MPII.keypoints, None, MACAQUE.keypoints)
    assert sorted(names) == sorted(SHARED_LIMB_JOINTS) and len(names) == 12
    assert all(MPII.keypoints[g] == MACAQUE.keypoints[p] for g, p in zip(gt_idx, pred_idx, strict=True))
    assert resolve_joints(MPII.keypoints, "head_top, upper_neck")[0] == ["head_top", "upper_neck"]
    with pytest.raises(ConfigError, match="head_top"):
        resolve_joints(MPII.keypoints, "head_top", MACAQUE.keypoints)
    with pytest.raises(ConfigError, match="tail"):
        resolve_joints(MPII.keypoints, ["tail"])


def test_macaque_predictions_scored_on_shared_mpii_joints(tmp_path):
    gt_path, anns = _mmpose_gt(tmp_path)
    preds = []
    for a in anns:
        kp = np.asarray(a["keypoints"], float).reshape(16, 3)
        out = np.zeros((17, 3))
        for j, name in enumerate(MACAQUE.keypoints):
            if name in MPII.keypoints:
                out[j] = kp[MPII.index(name), 0], kp[MPII.index(name), 1], 0.7
        preds.append({"image_id": a["image_id"], "category_id": 5, "keypoints": out.ravel().tolist(),
                      "score": 1.0})
    pred_path = _write(tmp_path / "macaque_pred.json", preds)
    out = tmp_path / "metrics.json"
    assert cli.main(["score", "--gt", str(gt_path), "--pred", str(pred_path), "--pred-keypoints", "macaque",
                     "--out", str(out)]) == 0
    m = json.loads(out.read_text())
    assert sorted(m["joints"]) == sorted(SHARED_LIMB_JOINTS)
    assert m["pred_keypoints"] == list(MACAQUE.keypoints)
    assert m["pckh"]["mean"] == 100.0 and m["counts"]["present"] == 5 * 12 - 4
    # the same skeleton from a file
    names_file = _write(tmp_path / "names.json", {"keypoints": list(MACAQUE.keypoints)})
    assert read_keypoint_names(str(names_file)) == list(MACAQUE.keypoints)
    # without --pred-keypoints the 17-joint predictions are refused with a hint
    assert cli.main(["score", "--gt", str(gt_path), "--pred", str(pred_path)]) == 2


def test_bbox_normaliser_and_oks_for_data_without_head_boxes(tmp_path):
    images = [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}]
    anns = []
    for i in (1, 2):
        kp = []
        for k in range(17):
            kp += [100.0 + 10 * k, 50.0 + 20 * k * i, 2]
        anns.append({"id": i, "image_id": i, "category_id": 1, "keypoints": kp, "iscrowd": 0,
                     "bbox": [90.0, 40.0, 200.0, 400.0 * i], "area": 50000.0 * i})
    gt_path = save_coco_keypoints(tmp_path / "macaque.json", images, anns, MACAQUE.coco_category())
    gt = load_coco_keypoints(gt_path)
    preds = _preds_from_gt(gt_path)
    # shift every joint of instance 1 by 26 px: h = 400/8 = 50, so 26 > 25 fails PCK@0.5
    kp = np.asarray(preds[0]["keypoints"]).reshape(17, 3)
    kp[:, 0] += 26
    preds[0]["keypoints"] = kp.ravel().tolist()
    preds[0]["score"] = 0.5
    m = evaluate(gt, preds)
    assert m["normalizer"]["name"] == "bbox" and m["person_scale"]["name"] == "bbox"
    assert m["pckh"]["mean"] == 50.0 and len(m["joints"]) == 17
    # OKS of the shifted instance by hand (COCO: exp(-d^2 / (2 area (2 sigma)^2)), mean over joints);
    # the perfect instance scores higher, so a threshold the shifted one fails gives AP = 51/101.
    oks1 = np.mean([math.exp(-26**2 / (2 * 50000.0 * (2 * s) ** 2)) for s in MACAQUE.sigmas])
    passed = sum(oks1 >= t for t in np.linspace(0.5, 0.95, 10))
    assert m["oks"]["ap"] == pytest.approx((passed + (10 - passed) * 51 / 101) / 10)
    assert m["oks"]["sigmas"] == list(MACAQUE.sigmas)
    # normalised localisation over the correct instance only (t* = 1 accepts all; instance 1 wrong too)
    assert m["localization"]["rmse_normalized"] == pytest.approx(math.sqrt(26**2 / 2) / 2.0)
    with pytest.raises(ConfigError, match="head_box"):
        evaluate(gt, preds, normalizer="head_box")


# -------------------------------------------------------------------------------- pairing
def test_pairing_by_annotation_id_on_multi_person_images(tmp_path):
    gt_path = _tiny_gt(tmp_path, n_images=2, per_image=2)
    gt = load_coco_keypoints(gt_path)
    preds = _preds_from_gt(gt_path, with_ann_id=True)[::-1]
    assert evaluate(gt, preds)["pckh"]["mean"] == 100.0
    with pytest.raises(DataFormatError, match="annotation_id"):   # pairing needed
        evaluate(gt, _preds_from_gt(gt_path))
    dup = [*preds, preds[0]]
    with pytest.raises(DataFormatError, match="second prediction"):
        evaluate(gt, dup)
    mixed = [dict(preds[0])] + [{k: v for k, v in p.items() if k != "annotation_id"} for p in preds[1:]]
    with pytest.raises(DataFormatError, match="all or none"):
        evaluate(gt, mixed)
    wrong_image = [dict(p) for p in preds]
    wrong_image[0]["image_id"] = 2 if wrong_image[0]["image_id"] == 1 else 1
    with pytest.raises(DataFormatError, match="belongs to image"):
        evaluate(gt, wrong_image)
    with pytest.raises(DataFormatError, match="no prediction"):
        evaluate(gt, preds[:3])


# ------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("content, message", [
    ("", "empty file"),
    ("[]", "holds no predictions"),
    ("{\"annotations\": []}", "JSON list"),
    ("[{\"image_id\": 1", "not valid JSON"),
])
def test_bad_prediction_files(tmp_path, content, message):
    gt = load_coco_keypoints(_tiny_gt(tmp_path))
    path = tmp_path / "pred.json"
    path.write_text(content)
    with pytest.raises(DataFormatError, match=message):
        load_predictions(path, gt)


def test_bad_prediction_entries(tmp_path):
    gt_path = _tiny_gt(tmp_path)
    gt = load_coco_keypoints(gt_path)
    good = _preds_from_gt(gt_path)
    short = [dict(good[0], keypoints=good[0]["keypoints"][:-3]), good[1]]
    with pytest.raises(DataFormatError, match=r"predictions\[0\].*3 x 16 numbers.*got 45"):
        evaluate(gt, short)
    unknown = [good[0], dict(good[1], image_id=99)]
    with pytest.raises(DataFormatError, match=r"predictions\[1\].*image_id 99"):
        evaluate(gt, unknown)
    text = [dict(good[0], keypoints=["a"] * 48), good[1]]
    with pytest.raises(DataFormatError, match="neither a finite number"):
        evaluate(gt, text)
    inf = [dict(good[0], keypoints=[math.inf] * 48), good[1]]
    with pytest.raises(DataFormatError, match="neither a finite number"):
        evaluate(gt, inf)
    with pytest.raises(DataFormatError, match="category_id"):
        evaluate(gt, [dict(good[0], category_id=7), good[1]])
    with pytest.raises(DataFormatError, match="annotation_id 5"):
        evaluate(gt, [dict(good[0], annotation_id=5), good[1]])
    # through the command: one line, exit status 2
    path = _write(tmp_path / "bad.json", short)
    assert cli.main(["score", "--gt", str(gt_path), "--pred", str(path)]) == 2


def test_nan_coordinates_mean_missing_with_confidence_zero(tmp_path):
    gt_path = _tiny_gt(tmp_path)
    gt = load_coco_keypoints(gt_path)
    preds = _preds_from_gt(gt_path, conf=0.9)
    kp = np.asarray(preds[0]["keypoints"]).reshape(16, 3)
    kp[9, 0] = np.nan       # head top x NaN: missing, confidence 0 even though 0.9 was given
    kp[8, 2] = np.nan       # neck confidence NaN: counts as 0, position kept (still correct)
    preds[0]["keypoints"] = kp.ravel().tolist()
    path = tmp_path / "nan.json"
    path.write_text(json.dumps(preds))  # Python writes NaN tokens; the loader reads them
    m = evaluate(gt, load_predictions(path, gt))
    assert m["pckh"]["per_joint"]["head_top"] == 50.0
    assert m["pckh"]["per_joint"]["upper_neck"] == 100.0
    assert m["counts"]["predicted"] == 27 and m["counts"]["correct"] == 27
    hist = m["detection"]["histogram"]
    assert hist["correct"][0] == 1 and hist["incorrect"][0] == 1   # neck (correct) and head top at 0
    nulls = [dict(p) for p in preds]
    nulls[0]["keypoints"] = [None if isinstance(v, float) and math.isnan(v) else v for v in preds[0]["keypoints"]]
    assert evaluate(gt, nulls)["pckh"] == m["pckh"]


def test_one_class_gives_null_roc_auc_with_reason(tmp_path):
    gt_path = _tiny_gt(tmp_path)
    gt = load_coco_keypoints(gt_path)
    m = evaluate(gt, _preds_from_gt(gt_path))  # every joint present and correct
    assert m["detection"]["roc_auc"] is None and "both classes" in m["detection"]["roc_auc_note"]
    assert "n/a" in format_table(m)
    write_metrics(m, tmp_path / "m.json")
    assert json.loads((tmp_path / "m.json").read_text())["detection"]["roc_auc"] is None


def test_zero_normaliser_is_a_clear_error(tmp_path):
    gt_path = _tiny_gt(tmp_path)
    raw = json.loads(gt_path.read_text())
    raw["annotations"][0]["head_box"] = [5, 5, 5, 5]
    gt_path.write_text(json.dumps(raw))
    gt = load_coco_keypoints(gt_path)
    with pytest.raises(CrossposeError, match="must be positive"):
        evaluate(gt, _preds_from_gt(gt_path))
