"""Score keypoint predictions against ground truth: the ``crosspose score`` command and its API.

Ground truth is a COCO keypoints file (:func:`crosspose.data.coco.load_coco_keypoints`);
predictions are a COCO keypoint *results* file: a JSON list of ``{"image_id", "category_id",
"keypoints": [x, y, confidence] * K, "score"}``, optionally with ``"annotation_id"`` naming the
ground-truth person the prediction is for.

Reading, checking and pairing the predictions: :mod:`crosspose.evaluation.predictions`.

Normaliser h(n) of PCKh, chosen once per file (every instance must support it):

- ``head_box``: 0.6 x the head-box diagonal (MPII, the official toolkit); the default when every
  instance has a ``head_box``;
- ``scale``: 25 x ``scale``. MPII's convention puts the head at 1/8 of a 200 px person, so this is the
  head size implied by the person scale (equal to ``head_box`` on the MPII validation persons);
- ``bbox``: the longer side of the instance's bbox / 8, the same 1/8 convention with the bbox standing
  in for the body length. The default for data without head boxes or scales (MacaquePose, COCO, the
  synthetic monkeys); the longer side rather than the height so a horizontal quadruped is not
  judged by its short side.

Person scale s(n) for normalised localisation errors: ``scale`` when every instance has one (MPII:
person height / 200), otherwise the bbox's longer side / 200, so a person is 200 px tall either way.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
from collections.abc import Mapping, Sequence
from os import PathLike
from typing import Any, Literal

import numpy as np

from crosspose.core.errors import ConfigError
from crosspose.core.skeletons import MACAQUE, MPII, SHARED_LIMB_JOINTS, canonical_joint_name
from crosspose.data.coco import CocoKeypoints, load_coco_keypoints
from crosspose.evaluation import metrics as M
from crosspose.evaluation.predictions import (
    load_predictions,
    pair_predictions,
    read_keypoint_names,
    select_predictions,
    validate_predictions,
)
from crosspose.evaluation.results import jsonable, write_metrics

__all__ = [
    "NORMALIZERS",
    "configure_parser",
    "evaluate",
    "format_table",
    "resolve_joints",
    "run",
]

METRICS_FORMAT = "crosspose-metrics/1"

NORMALIZERS: dict[str, str] = {
    "head_box": "0.6 x head-box diagonal (MPII head size)",
    "scale": "25 x person scale (MPII convention: head = 1/8 of a 200 px person)",
    "bbox": "longer bbox side / 8 (MPII's head = 1/8 of the body, bbox as body length)",
}
_PERSON_SCALES: dict[str, str] = {
    "scale": "MPII scale (person height / 200 px)",
    "bbox": "longer bbox side / 200 px",
}
_MPII_EXCLUDED = ("pelvis", "thorax")


# ------------------------------------------------------------------------------------ joint sets
def _default_joints(gt_names: Sequence[str]) -> list[str]:
    canon = [canonical_joint_name(n) for n in gt_names]
    if canon == list(MPII.keypoints):
        return [n for n, c in zip(gt_names, canon, strict=True) if c not in _MPII_EXCLUDED]
    return list(gt_names)


def resolve_joints(
    gt_names: Sequence[str], joints: Sequence[str] | str | None = None, pred_names: Sequence[str] | None = None
) -> tuple[list[str], list[int], list[int]]:
    """The evaluated joint set: ``(names, ground-truth indices, prediction indices)``.

    ``joints``: None or ``"default"`` (MPII: the 14 without pelvis and thorax, as the official
    toolkit; other skeletons: all), ``"all"``, ``"shared"`` (the 12 limb joints MPII shares with
    MacaquePose), a comma-separated string or a list of names. With ``pred_names`` (a prediction
    skeleton other than the ground truth's) joints are matched by name; the default set shrinks to
    the joints both share, a joint asked for explicitly that the predictions lack is an error.
    """
    canon_gt = {canonical_joint_name(n): i for i, n in enumerate(gt_names)}
    explicit = True
    if joints is None or (isinstance(joints, str) and joints.lower() == "default"):
        wanted, explicit = _default_joints(gt_names), False
    elif isinstance(joints, str) and joints.lower() == "all":
        wanted = list(gt_names)
    elif isinstance(joints, str) and joints.lower() == "shared":
        wanted = list(SHARED_LIMB_JOINTS)
    elif isinstance(joints, str):
        wanted = [j.strip() for j in joints.split(",") if j.strip()]
    else:
        wanted = list(joints)
    unknown = [j for j in wanted if canonical_joint_name(j) not in canon_gt]
    if unknown:
        raise ConfigError(f"joint(s) {', '.join(unknown)} not in the ground truth's keypoints "
                          f"({', '.join(gt_names)})")
    gt_idx = list(dict.fromkeys(canon_gt[canonical_joint_name(j)] for j in wanted))
    if pred_names is None:
        pred_idx = list(gt_idx)
    else:
        canon_pred = {canonical_joint_name(n): i for i, n in enumerate(pred_names)}
        lacking = [gt_names[i] for i in gt_idx if canonical_joint_name(gt_names[i]) not in canon_pred]
        if lacking and explicit:
            raise ConfigError(f"the predictions have no joint(s) {', '.join(lacking)} "
                              f"(prediction keypoints: {', '.join(pred_names)})")
        gt_idx = [i for i in gt_idx if canonical_joint_name(gt_names[i]) in canon_pred]
        pred_idx = [canon_pred[canonical_joint_name(gt_names[i])] for i in gt_idx]
    if not gt_idx:
        raise ConfigError("the evaluated joint set is empty (no joint shared by ground truth and predictions)")
    return [gt_names[i] for i in gt_idx], gt_idx, pred_idx


# ------------------------------------------------------------------------ normaliser and scale
def _bbox_side(ann: Mapping[str, Any]) -> float:
    return float(max(ann["bbox"][2], ann["bbox"][3]))


def _normalizer(anns: Sequence[Mapping[str, Any]], name: str | None) -> tuple[str, np.ndarray]:
    if name is None:
        if anns and all(a.get("head_box") is not None for a in anns):
            name = "head_box"
        elif anns and all(a.get("scale") is not None for a in anns):
            name = "scale"
        else:
            name = "bbox"
    if name not in NORMALIZERS:
        raise ConfigError(f"unknown normaliser {name!r}; choose one of {', '.join(NORMALIZERS)}")
    values = []
    for a in anns:
        if name == "head_box":
            if a.get("head_box") is None:
                raise ConfigError(f"normaliser head_box: annotation id {a.get('id')!r} has no head_box")
            x1, y1, x2, y2 = (float(v) for v in a["head_box"])
            values.append(0.6 * math.hypot(x2 - x1, y2 - y1))
        elif name == "scale":
            if a.get("scale") is None:
                raise ConfigError(f"normaliser scale: annotation id {a.get('id')!r} has no scale")
            values.append(25.0 * float(a["scale"]))
        else:
            values.append(_bbox_side(a) / 8.0)
    h = np.asarray(values, np.float64)
    bad = np.flatnonzero(~(h > 0))
    if len(bad):
        a = anns[int(bad[0])]
        raise ConfigError(f"normaliser {name} is {h[bad[0]]} for annotation id {a.get('id')!r} "
                          f"(image {a['image_id']!r}); it must be positive -- choose another normaliser")
    return name, h


def _person_scale(anns: Sequence[Mapping[str, Any]]) -> tuple[str, np.ndarray]:
    if anns and all(isinstance(a.get("scale"), int | float) and a["scale"] > 0 for a in anns):
        return "scale", np.asarray([float(a["scale"]) for a in anns])
    s = np.asarray([_bbox_side(a) / 200.0 for a in anns], np.float64)
    # a zero-size bbox cannot scale anything: those errors stay in pixels (NaN would hide them)
    return "bbox", np.where(s > 0, s, 1.0)


# ------------------------------------------------------------------------------------ evaluation
def _sigmas(gt: CocoKeypoints) -> np.ndarray | None:
    if isinstance(gt.category.get("sigmas"), list) and len(gt.category["sigmas"]) == gt.num_keypoints:
        return np.asarray(gt.category["sigmas"], np.float64)
    if [canonical_joint_name(n) for n in gt.keypoint_names] == list(MACAQUE.keypoints):
        return np.asarray(MACAQUE.sigmas, np.float64)  # COCO's 17, as MacaquePose and mmpose use
    return None


def _oks(gt: CocoKeypoints, preds: Sequence[Mapping[str, Any]], pred_idx_full: dict[int, int] | None) -> dict:
    """COCO OKS AP/AR through pycocotools, over all ground-truth keypoints."""
    sigmas = _sigmas(gt)
    if sigmas is None:
        return {"note": "not computed: no OKS sigmas for this skeleton (category has no 'sigmas')"}
    if pred_idx_full is not None and len(pred_idx_full) < gt.num_keypoints:
        return {"note": "not computed: the predictions do not cover every ground-truth keypoint"}
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    anns = []
    for i, a in enumerate(gt.annotations):
        kp = gt.keypoints(a)
        w, h = a["bbox"][2], a["bbox"][3]
        anns.append({"id": a.get("id", i + 1), "image_id": a["image_id"], "category_id": gt.category_id,
                     "keypoints": kp.ravel().tolist(), "bbox": list(a["bbox"]), "iscrowd": int(a.get("iscrowd", 0)),
                     "area": float(a.get("area", w * h)), "num_keypoints": int((kp[:, 2] > 0).sum())})
    results = []
    for p in preds:
        kp = p["keypoints"] if pred_idx_full is None else p["keypoints"][[pred_idx_full[k] for k in
                                                                          range(gt.num_keypoints)]]
        kp = np.where(np.isnan(kp), 0.0, kp)
        results.append({"image_id": p["image_id"], "category_id": gt.category_id,
                        "keypoints": kp.ravel().tolist(), "score": float(p["score"])})
    coco = COCO()
    coco.dataset = {"images": [{"id": i} for i in gt.images], "annotations": anns,
                    "categories": [{"id": gt.category_id, "name": gt.category.get("name", "object"),
                                    "keypoints": list(gt.keypoint_names)}]}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.createIndex()
        dets = coco.loadRes(results)
        ev = COCOeval(coco, dets, "keypoints")
        ev.params.kpt_oks_sigmas = sigmas
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    names = ("ap", "ap_50", "ap_75", "ap_medium", "ap_large", "ar", "ar_50", "ar_75", "ar_medium", "ar_large")
    return {**{n: float(v) for n, v in zip(names, ev.stats, strict=True)}, "sigmas": sigmas.tolist(),
            "note": "pycocotools COCOeval over all ground-truth keypoints"}


def evaluate(
    gt: CocoKeypoints,
    predictions: Sequence[Mapping[str, Any]],
    joints: Sequence[str] | str | None = None,
    pred_keypoint_names: Sequence[str] | None = None,
    normalizer: str | None = None,
    absent: Literal["negative", "exclude"] = "negative",
    oks: bool | None = None,
    source: str | PathLike[str] = "predictions",
) -> dict:
    """Score predictions against ``gt``: the content of metrics.json (strict JSON, NaN as null).

    Args:
        gt: the ground truth.
        predictions: COCO keypoint results (raw dicts, or records from :func:`load_predictions`).
        joints: the evaluated joint set (see :func:`resolve_joints`).
        pred_keypoint_names: the predictions' skeleton when it is not the ground truth's.
        normalizer: ``head_box``, ``scale`` or ``bbox``; None picks the first every instance supports.
        absent: joints absent from the ground truth are detection negatives, or excluded.
        oks: compute COCO OKS AP/AR; None means only when the normaliser is not ``head_box``.
        source: names the predictions in error messages.
    """
    if absent not in ("negative", "exclude"):
        raise ConfigError(f"absent must be 'negative' or 'exclude', got {absent!r}")
    k_pred = gt.num_keypoints if pred_keypoint_names is None else len(pred_keypoint_names)
    preds = validate_predictions(predictions, gt, k_pred, source, check_category=pred_keypoint_names is None)
    names, gt_idx, pred_idx = resolve_joints(gt.keypoint_names, joints, pred_keypoint_names)
    pairs = pair_predictions(gt, preds, source)
    anns = [a for a, _ in pairs]
    norm_name, h = _normalizer(anns, normalizer)
    scale_name, s = _person_scale(anns)

    gt_kp = np.stack([gt.keypoints(a)[gt_idx] for a in anns]) if anns else np.zeros((0, len(gt_idx), 3))
    pr_kp = np.stack([p["keypoints"][pred_idx] for _, p in pairs]) if pairs else np.zeros((0, len(gt_idx), 3))
    present = gt_kp[..., 2] > 0
    dx = pr_kp[..., 0] - gt_kp[..., 0]
    dy = pr_kp[..., 1] - gt_kp[..., 1]
    dist = np.hypot(dx, dy)  # NaN where not predicted
    conf = pr_kp[..., 2]
    predicted = ~np.isnan(dist)

    pckh = M.pckh_summary(dist, present, h, names)
    correct = M.correct_mask(dist, present, h)
    y, score = M.detection_samples(correct, present, conf, absent)
    detection = M.detection_summary(y, score)
    t_star = detection["threshold"]
    accepted = conf >= t_star if t_star is not None else np.zeros_like(present)
    loc = M.localization(dx, dy, present & predicted & accepted, s)
    loc["threshold"] = t_star
    species = _per_species(gt, anns, dist, present, h, names)

    if oks is None:
        oks = norm_name != "head_box"
    if oks and pred_keypoint_names is not None:
        # OKS is defined over the ground truth's whole skeleton: only when the predictions cover it
        have = {canonical_joint_name(n) for n in pred_keypoint_names}
        oks = all(canonical_joint_name(n) in have for n in gt.keypoint_names)
    oks_result = None
    if oks:
        full = None if pred_keypoint_names is None else resolve_joints(
            gt.keypoint_names, "all", pred_keypoint_names)
        full_map = None if full is None else dict(zip(full[1], full[2], strict=True))
        oks_result = _oks(gt, preds, full_map)

    result = {
        "format": METRICS_FORMAT,
        "joints": names,
        "pred_keypoints": None if pred_keypoint_names is None else list(pred_keypoint_names),
        "normalizer": {"name": norm_name, "description": NORMALIZERS[norm_name]},
        "person_scale": {"name": scale_name, "description": _PERSON_SCALES[scale_name]},
        "absent": absent,
        "pckh": pckh,
        "detection": detection,
        "localization": loc,
        "counts": {
            "instances": len(anns), "joints": len(names), "present": int(present.sum()),
            "correct": int(correct.sum()), "accepted": int(detection["accepted"]),
            "predicted": int(predicted.sum()), "samples": len(y),
        },
        "oks": oks_result,
        "sources": {"gt": str(gt.path), "pred": str(source)},
    }
    if species:
        result["species"] = species
    return jsonable(result)


def _per_species(gt: CocoKeypoints, anns: Sequence[Mapping[str, Any]], dist: np.ndarray, present: np.ndarray,
                 h: np.ndarray, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """PCKh per species, when the ground truth holds several (e.g. AP-10K); empty otherwise.

    One flat block per species: instances, present joints, PCKh@0.5 (mean), PCKh@0.1 and its AUC,
    the same pooled definitions as the whole set, so species weigh by their present joints there.
    """
    labels = np.asarray([gt.species_of(a) for a in anns])
    if len(set(labels.tolist())) < 2:
        return {}
    out = {}
    for name in sorted(set(labels.tolist())):
        rows = labels == name
        p = M.pckh_summary(dist[rows], present[rows], h[rows], names)
        out[name] = {"instances": int(rows.sum()), "present": int(present[rows].sum()),
                     "pckh": p["mean"], "pckh_at_0_1": p["at_0_1"], "pckh_auc": p["auc"]}
    return out


# ---------------------------------------------------------------------------------- output
def _f(value: Any, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def format_table(metrics: Mapping[str, Any]) -> str:
    """The human-readable summary ``crosspose score`` prints."""
    p, d, loc, c = metrics["pckh"], metrics["detection"], metrics["localization"], metrics["counts"]
    lines = [
        f"joints ({len(metrics['joints'])}): {', '.join(metrics['joints'])}",
        f"normaliser: {metrics['normalizer']['name']} = {metrics['normalizer']['description']}; "
        f"person scale: {metrics['person_scale']['description']}; absent joints: {metrics['absent']}",
        "",
    ]
    groups = [*list(p["groups"].items()), ("Mean", p["mean"]), ("@0.1", p["at_0_1"]), ("AUC", p["auc"])]
    width = max(7, *(len(g) + 1 for g, _ in groups))
    lines.append(f"PCKh@{p['alpha']:<4}" + "".join(f"{g:>{width}}" for g, _ in groups))
    lines.append(" " * 9 + "".join(f"{_f(v):>{width}}" for _, v in groups))
    lines.append("")
    auc = _f(d["roc_auc"], 3) if d["roc_auc"] is not None else f"n/a ({d['roc_auc_note']})"
    lines.append(f"ROC-AUC {auc}")
    lines.append(f"{'threshold':<14}{'precision':>10}{'recall':>10}{'F1':>10}{'accepted':>10}")
    rows = [(f"t* = {_f(d['threshold'], 3)}", d)]
    rows += [(f"{v['threshold']}", v) for k, v in d.items() if k.startswith("at_")]
    for label, r in rows:
        lines.append(f"{label:<14}{_f(r['precision'], 3):>10}{_f(r['recall'], 3):>10}{_f(r['f1'], 3):>10}"
                     f"{r['accepted']:>10}")
    lines.append("")
    lines.append(f"localisation at t* over {loc['n']} accepted joints:  "
                 f"px: RMSE {_f(loc['rmse'])} (x {_f(loc['rmse_x'])}, y {_f(loc['rmse_y'])}), "
                 f"mean error {_f(loc['mean_error'])};  normalised: RMSE {_f(loc['rmse_normalized'])} "
                 f"(x {_f(loc['rmse_x_normalized'])}, y {_f(loc['rmse_y_normalized'])}), "
                 f"mean error {_f(loc['mean_error_normalized'])}")
    lines.append(f"counts: {c['instances']} instances, {c['present']} present joints, {c['correct']} correct, "
                 f"{c['accepted']} accepted at t*, {c['predicted']} predicted of {c['instances'] * c['joints']}")
    species = metrics.get("species") or {}
    if species:
        lines.append("")
        lines.append(f"{'species':<24}{'instances':>10}{'PCKh@' + str(p['alpha']):>10}{'@0.1':>8}{'AUC':>8}")
        for name, sp in species.items():
            lines.append(f"{name[:23]:<24}{sp['instances']:>10}{_f(sp['pckh']):>10}{_f(sp['pckh_at_0_1']):>8}"
                         f"{_f(sp['pckh_auc']):>8}")
    oks = metrics.get("oks")
    if oks:
        if "ap" in oks:
            lines.append(f"OKS: AP {_f(oks['ap'], 3)}  AP50 {_f(oks['ap_50'], 3)}  AP75 {_f(oks['ap_75'], 3)}  "
                         f"AR {_f(oks['ar'], 3)}")
        else:
            lines.append(f"OKS: {oks['note']}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------- command
def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``crosspose score``."""
    parser.add_argument("--gt", required=True, help="ground truth, COCO keypoints JSON")
    parser.add_argument("--pred", required=True, help="predictions, COCO keypoint results JSON")
    parser.add_argument("--joints", default=None,
                        help="evaluated joints: default (MPII: 14 without pelvis/thorax), all, shared, "
                             "or comma-separated names")
    parser.add_argument("--pred-keypoints", default=None, metavar="mpii|macaque|FILE.json",
                        help="the predictions' skeleton when it is not the ground truth's (joints matched by name)")
    parser.add_argument("--normalizer", choices=sorted(NORMALIZERS), default=None,
                        help="PCKh normaliser (default: head_box if every instance has one, else scale, else bbox)")
    parser.add_argument("--exclude-absent", action="store_true",
                        help="leave joints absent from the ground truth out of the detection view")
    parser.add_argument("--oks", action=argparse.BooleanOptionalAction, default=None,
                        help="COCO OKS AP/AR (default: when the normaliser is not head_box)")
    parser.add_argument("--categories", default=None, metavar="NAMES",
                        help="score only these species: comma-separated category ids, names or supercategories "
                             "(predictions for other species are ignored); metrics are also broken down per "
                             "species whenever the ground truth holds several")
    parser.add_argument("--out", default=None, help="write metrics.json here")


def run(args: argparse.Namespace) -> int:
    """Score, print the table, optionally write metrics.json."""
    gt = load_coco_keypoints(args.gt, categories=args.categories)
    names = read_keypoint_names(args.pred_keypoints) if args.pred_keypoints else None
    if args.categories:
        preds: Any = select_predictions(args.pred, gt)
        preds = validate_predictions(preds, gt, None if names is None else len(names), source=args.pred,
                                     check_category=names is None)
    else:
        preds = load_predictions(args.pred, gt, names)
    metrics = evaluate(gt, preds, joints=args.joints, pred_keypoint_names=names, normalizer=args.normalizer,
                       absent="exclude" if args.exclude_absent else "negative", oks=args.oks, source=args.pred)
    print(format_table(metrics))
    if args.out:
        print(f"wrote {write_metrics(metrics, args.out)}")
    return 0
