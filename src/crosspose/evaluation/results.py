"""The results contract: what ``metrics.json`` and ``predictions.json`` hold, read and written in one place.

``metrics.json`` is what :func:`crosspose.evaluation.score.evaluate` returns (plus, for a run, the
``run`` and ``source`` blocks); ``predictions.json`` is a list of COCO keypoint results. Every reader
of either file (report, ablate, demo, benchmark, inspect, the LightningModule's logger) goes through
:func:`load_metrics` / :func:`load_prediction_records` and takes its headline numbers from
:func:`headline`, so a change of layout is made here once.

Example:
    >>> m = {"pckh": {"mean": 81.0}, "detection": {"f1": 0.7, "precision": 0.8, "recall": 0.6,
    ...      "roc_auc": 0.9}, "localization": {"rmse": 3.5}, "counts": {"instances": 5}}
    >>> headline(m)["pckh"], headline(m, prefix="val/")["val/f1"]
    (81.0, 0.7)
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from crosspose.core.errors import DataFormatError
from crosspose.core.io import atomic_write_text

__all__ = ["HEADLINE", "Metrics", "PredictionRecord", "RunInfo", "SourceInfo", "headline", "jsonable",
           "load_metrics", "load_prediction_records", "write_metrics", "write_prediction_records"]


class RunInfo(TypedDict, total=False):
    """How a programmatic run made its metrics (``training.runs``)."""

    seconds: float
    global_step: int


class SourceInfo(TypedDict, total=False):
    """What was scored: the checkpoint, its training step and the data file."""

    checkpoint: str | None
    global_step: int | None
    data_file: str


class Metrics(TypedDict, total=False):
    """The content of ``metrics.json``.

    Required blocks (checked by :func:`load_metrics`): ``pckh`` (``mean``, ``alpha``, ``groups``,
    ``per_joint``, ``at_0_1``, ``auc``), ``detection`` (``precision``, ``recall``, ``f1``, ``roc_auc``,
    ``threshold``, ``accepted``, ``roc_curve``, ``histogram``), ``localization`` (``rmse``, ...),
    ``counts`` (``instances``, ``joints``, ``present``, ``correct``, ...). Optional: ``format``,
    ``joints``, ``normalizer``, ``person_scale``, ``absent``, ``oks``, ``sources``, ``run``, ``source``.
    """

    format: str
    joints: list[str]
    pckh: dict[str, Any]
    detection: dict[str, Any]
    localization: dict[str, Any]
    counts: dict[str, Any]
    oks: dict[str, Any] | None
    sources: dict[str, str]
    run: RunInfo
    source: SourceInfo


class PredictionRecord(TypedDict, total=False):
    """One entry of ``predictions.json`` (a COCO keypoint result; x, y, confidence per joint)."""

    image_id: int
    category_id: int
    annotation_id: int | None
    keypoints: list[float]
    score: float


REQUIRED_BLOCKS = ("pckh", "detection", "localization", "counts")

HEADLINE: dict[str, tuple[str, str]] = {
    "pckh": ("pckh", "mean"),
    "f1": ("detection", "f1"),
    "precision": ("detection", "precision"),
    "recall": ("detection", "recall"),
    "roc_auc": ("detection", "roc_auc"),
    "rmse": ("localization", "rmse"),
}
"""Headline scalar -> (block, key) in metrics.json. PCKh in percent; F1/precision/recall/AUC in [0, 1]; RMSE px."""


def headline(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float | None]:
    """The headline numbers of a metrics.json as a flat dict (keys of :data:`HEADLINE`, with ``prefix``).

    A number the evaluation could not compute (no positives, say) is ``None``.
    """
    out: dict[str, float | None] = {}
    for name, (block, key) in HEADLINE.items():
        value = (metrics.get(block) or {}).get(key)
        out[f"{prefix}{name}"] = None if value is None or not math.isfinite(float(value)) else float(value)
    return out


def jsonable(obj: Any) -> Any:
    """NaN/inf -> None and numpy scalars -> Python, so the value is strict JSON."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_metrics(metrics: Mapping[str, Any], path: str | PathLike[str]) -> Path:
    """Write metrics.json atomically (strict JSON, indented); creates the parent folder."""
    return atomic_write_text(path, json.dumps(jsonable(dict(metrics)), indent=1, allow_nan=False) + "\n")


def write_prediction_records(records: list[Mapping[str, Any]], path: str | PathLike[str]) -> Path:
    """Write predictions.json atomically (a JSON list of COCO keypoint results)."""
    return atomic_write_text(path, json.dumps([dict(r) for r in records]))


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise DataFormatError(path, "file not found")
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        raise DataFormatError(path, f"empty file (expected {what})")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataFormatError(path, f"not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
                                    "a run interrupted while writing it? rerun the run") from None


def load_metrics(source: str | PathLike[str] | Mapping[str, Any]) -> Metrics:
    """A validated metrics.json: from a dict, a file, or a run folder (its ``metrics.json``).

    Raises:
        DataFormatError: the file is missing, truncated, not JSON, or lacks a required block.
    """
    if isinstance(source, Mapping):
        data: Any = dict(source)
        path = Path("<metrics>")
    else:
        path = Path(source)
        if path.is_dir():
            path = path / "metrics.json"
        data = _read_json(path, "a crosspose metrics.json")
    if not isinstance(data, dict):
        raise DataFormatError(path, "not a crosspose metrics.json (expected a JSON object)")
    missing = [k for k in REQUIRED_BLOCKS if not isinstance(data.get(k), dict)]
    if missing:
        raise DataFormatError(path, f"not a crosspose metrics.json (missing {', '.join(missing)})")
    for name, (block, key) in HEADLINE.items():
        value = data[block].get(key)
        if value is not None and not isinstance(value, int | float):
            raise DataFormatError(path, f"{block}.{key} ({name}) is {value!r}, expected a number or null")
    return data  # type: ignore[return-value]


def load_prediction_records(path: str | PathLike[str]) -> list[PredictionRecord]:
    """A predictions.json, checked for the COCO results shape.

    ``score.load_predictions`` also checks it against a ground-truth file.
    """
    path = Path(path)
    data = _read_json(path, "a JSON list of COCO keypoint results")
    if not isinstance(data, list):
        raise DataFormatError(path, "expected a JSON list of COCO keypoint results")
    for i, rec in enumerate(data):
        if not isinstance(rec, dict) or "image_id" not in rec or not isinstance(rec.get("keypoints"), list):
            raise DataFormatError(path, "needs image_id and a keypoints list", where=f"entry {i}")
        if len(rec["keypoints"]) % 3:
            raise DataFormatError(path, f"{len(rec['keypoints'])} keypoint values, not a multiple of 3",
                                  where=f"entry {i}")
    return data
