"""The predictions side of scoring: a COCO keypoint results file read, checked and paired with the ground truth.

Predictions are a JSON list of ``{"image_id", "category_id", "keypoints": [x, y, confidence] * K,
"score"}``, optionally with ``"annotation_id"`` naming the ground-truth person the prediction is for.

Pairing. With ``annotation_id`` (on every prediction, or on none) each prediction is scored against
that annotation. Without it, each image with a prediction must hold exactly one annotated instance
and exactly one prediction. Every annotated instance (``CocoKeypoints.instances()``) must receive a
prediction; anything else is a :class:`~crosspose.core.errors.DataFormatError` naming the entry.

Documented treatment of imperfect predictions: a ``NaN`` or ``null`` x or y means the joint was not
predicted (confidence 0, never correct, left out of the localisation error); a ``NaN`` or ``null``
confidence counts as 0; infinite values, non-numbers and a wrong number of values are errors.

The prediction skeleton, when it is not the ground truth's, comes from :func:`read_keypoint_names`.
"""

from __future__ import annotations

import json
import math
import warnings
from collections import defaultdict
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from crosspose.core.errors import ConfigError, DataFormatError
from crosspose.core.skeletons import SKELETONS
from crosspose.data.coco import CocoKeypoints

__all__ = ["load_predictions", "pair_predictions", "read_keypoint_names", "read_results", "select_predictions",
           "validate_predictions"]


def _number_or_nan(value: Any) -> float | None:
    """Float for a finite number, NaN for NaN/null, None for anything unacceptable."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return None if math.isinf(value) else value


def validate_predictions(
    predictions: Sequence[Mapping[str, Any]],
    gt: CocoKeypoints,
    num_keypoints: int | None = None,
    source: str | PathLike[str] = "predictions",
    check_category: bool = True,
) -> list[dict[str, Any]]:
    """Check a COCO results list and return it normalised.

    Each returned record has ``keypoints`` as a ``(K, 3)`` float array (NaN x/y = not predicted,
    confidence 0 there), ``score``, ``image_id``, ``category_id`` and ``annotation_id`` (or None).

    Raises:
        DataFormatError: naming the entry at fault.
    """
    k = gt.num_keypoints if num_keypoints is None else num_keypoints
    if isinstance(predictions, Mapping) or not isinstance(predictions, Sequence):
        raise DataFormatError(source, "a COCO keypoint results file must be a JSON list of predictions")
    if len(predictions) == 0:
        raise DataFormatError(source, "holds no predictions")
    ann_ids = {a.get("id") for a in gt.annotations}
    out = []
    far_outside = 0
    for i, pred in enumerate(predictions):
        where = f"predictions[{i}]"
        if not isinstance(pred, Mapping):
            raise DataFormatError(source, "a prediction must be an object", where)
        image_id = pred.get("image_id")
        if image_id not in gt.images:
            raise DataFormatError(source, f"image_id {image_id!r} is not in the ground truth {gt.path}", where)
        cat = pred.get("category_id", gt.category_id)
        if check_category and cat not in gt.category_ids:
            raise DataFormatError(source, f"category_id {cat!r} is not the ground truth's keypoint category "
                                          f"{gt.category_id} (another skeleton? pass --pred-keypoints)", where)
        kps = pred.get("keypoints")
        if isinstance(kps, np.ndarray):  # a record that went through here before
            kps = kps.ravel().tolist()
        if not isinstance(kps, list | tuple) or len(kps) != 3 * k:
            got = len(kps) if isinstance(kps, list | tuple) else type(kps).__name__
            raise DataFormatError(source, f"'keypoints' must hold 3 x {k} numbers (x, y, confidence), got "
                                          f"{got}", where)
        values = [_number_or_nan(v) for v in kps]
        if any(v is None for v in values):
            raise DataFormatError(source, "'keypoints' holds a value that is neither a finite number nor "
                                          "NaN/null (NaN marks a joint that was not predicted)", where)
        arr = np.asarray(values, np.float64).reshape(k, 3)
        missing = np.isnan(arr[:, :2]).any(1)
        arr[missing, :2] = np.nan
        arr[np.isnan(arr[:, 2]) | missing, 2] = 0.0
        if ((arr[:, 2] < 0) | (arr[:, 2] > 1)).any():
            bad = float(arr[(arr[:, 2] < 0) | (arr[:, 2] > 1), 2][0])
            raise DataFormatError(source, f"a keypoint confidence is {bad:g}; confidences must lie in [0, 1] "
                                          "(every third value of 'keypoints')", where)
        record = gt.images[image_id]
        if "width" in record and "height" in record and not missing.all():
            size = np.array([record["width"], record["height"]], np.float64)
            xy = arr[~missing, :2]
            # more than one image size outside it: not a localisation error, a wrong frame or scale
            far_outside += int(((xy < -size) | (xy > 2 * size)).any())
        score = _number_or_nan(pred.get("score", math.nan))
        if score is None:
            raise DataFormatError(source, "'score' must be a finite number", where)
        ann_id = pred.get("annotation_id")
        if ann_id is not None and ann_id not in ann_ids:
            raise DataFormatError(source, f"annotation_id {ann_id!r} is not in the ground truth", where)
        out.append({"image_id": image_id, "category_id": cat, "keypoints": arr,
                    "score": float(np.mean(arr[:, 2])) if math.isnan(score) else score,
                    "annotation_id": ann_id, "index": i})
    if far_outside:
        warnings.warn(f"{source}: {far_outside} of {len(predictions)} predictions have a keypoint more than one "
                      "image size outside their image (predictions in another pixel frame or scale?)",
                      stacklevel=2)
    return out


def load_predictions(
    path: str | PathLike[str], gt: CocoKeypoints, pred_keypoint_names: Sequence[str] | None = None
) -> list[dict]:
    """Read and validate a COCO keypoint results file (see :func:`validate_predictions`)."""
    k = None if pred_keypoint_names is None else len(pred_keypoint_names)
    return validate_predictions(read_results(path), gt, k, source=path, check_category=pred_keypoint_names is None)


def read_results(path: str | PathLike[str]) -> list[Any]:
    """The JSON list of a COCO keypoint results file, unchecked; a DataFormatError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "file not found")
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        raise DataFormatError(path, "empty file (expected a JSON list of COCO keypoint results)")
    try:
        raw = json.loads(text)  # Python's json reads NaN, which marks a missing joint
    except json.JSONDecodeError as exc:
        raise DataFormatError(path, f"not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(raw, list):
        raise DataFormatError(path, "a COCO keypoint results file must be a JSON list of predictions")
    return raw


def select_predictions(path: str | PathLike[str], gt: CocoKeypoints) -> list[Any]:
    """The raw predictions for the species kept in ``gt`` (by image and, where given, annotation)."""
    ann_ids = {a.get("id") for a in gt.annotations}
    return [p for p in read_results(path) if isinstance(p, Mapping) and p.get("image_id") in gt.images
            and (p.get("annotation_id") is None or p.get("annotation_id") in ann_ids)]


def pair_predictions(gt: CocoKeypoints, preds: Sequence[Mapping[str, Any]],
                     source: str | PathLike[str] = "predictions") -> list[tuple[dict, Mapping[str, Any]]]:
    """``(annotation, prediction)`` for every annotated instance, in ground-truth order."""
    instances = gt.instances()
    with_id = [p.get("annotation_id") is not None for p in preds]
    chosen: dict[Any, Mapping[str, Any]] = {}
    if any(with_id):
        if not all(with_id):
            i = with_id.index(False)
            raise DataFormatError(source, "some predictions carry 'annotation_id' and some do not; "
                                          "give it on all or none", f"predictions[{i}]")
        by_id = {a.get("id"): a for a in gt.annotations}
        for p in preds:
            where = f"predictions[{p.get('index', '?')}]"
            ann = by_id[p["annotation_id"]]
            if ann["image_id"] != p["image_id"]:
                raise DataFormatError(source, f"annotation_id {p['annotation_id']!r} belongs to image "
                                              f"{ann['image_id']!r}, not {p['image_id']!r}", where)
            if p["annotation_id"] in chosen:
                raise DataFormatError(source, f"a second prediction for annotation_id {p['annotation_id']!r}", where)
            chosen[p["annotation_id"]] = p
        pairs = [(a, chosen[a["id"]]) for a in instances if a.get("id") in chosen]
    else:
        per_image: dict[Any, list[dict]] = defaultdict(list)
        for a in instances:
            per_image[a["image_id"]].append(a)
        seen: dict[Any, Mapping[str, Any]] = {}
        for p in preds:
            where = f"predictions[{p.get('index', '?')}]"
            img = p["image_id"]
            if img in seen:
                raise DataFormatError(source, f"more than one prediction for image {img!r}; pair each with "
                                              "its ground-truth person through 'annotation_id'", where)
            n = len(per_image.get(img, []))
            if n != 1:
                what = "no annotated instance" if n == 0 else f"{n} annotated instances"
                raise DataFormatError(source, f"image {img!r} holds {what}; without 'annotation_id' every "
                                              "prediction needs an image with exactly one", where)
            seen[img] = p
        pairs = [(a, seen[a["image_id"]]) for a in instances if a["image_id"] in seen]
    if len(pairs) < len(instances):
        paired = {id(a) for a, _ in pairs}
        lacking = [a for a in instances if id(a) not in paired]
        first = lacking[0]
        raise DataFormatError(source, f"{len(lacking)} annotated instance(s) of {gt.path} have no prediction "
                                      f"(first: annotation id {first.get('id')!r}, image {first['image_id']!r})")
    return pairs


def read_keypoint_names(spec: str) -> list[str]:
    """Keypoint names from a skeleton name (``mpii``, ``macaque``) or a JSON file.

    The file holds a list of names, a COCO category (``{"keypoints": [...]}``) or a COCO file.
    """
    if spec.lower() in SKELETONS:
        return list(SKELETONS[spec.lower()].keypoints)
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(f"--pred-keypoints {spec!r}: neither a skeleton ({', '.join(SKELETONS)}) nor a file")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataFormatError(path, f"not valid JSON ({exc.msg})") from None
    if isinstance(raw, dict) and isinstance(raw.get("categories"), list):
        raw = next((c for c in raw["categories"] if isinstance(c, dict) and c.get("keypoints")), {})
    if isinstance(raw, dict):
        raw = raw.get("keypoints")
    if not isinstance(raw, list) or not raw or not all(isinstance(n, str) for n in raw):
        raise DataFormatError(path, "expected a list of keypoint names, a COCO category or a COCO file")
    return raw
