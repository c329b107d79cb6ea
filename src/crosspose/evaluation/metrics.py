"""The paper's metrics as pure functions of arrays (numpy and scikit-learn only).

Everything here follows ``docs/metrics.md``; the scorer (:mod:`crosspose.evaluation.score`)
turns a ground-truth file and a predictions file into these arrays:

- ``dist``: ``(N, K)`` Euclidean distance in original pixels, NaN where a joint was not predicted;
- ``present``: ``(N, K)`` bool, the ground truth is annotated;
- ``norm``: ``(N,)`` the PCKh normaliser h(n) (MPII: 0.6 x head-box diagonal);
- ``conf``: ``(N, K)`` predicted confidence, 0 for a joint that was not predicted.

Conventions fixed here (the page leaves them open):

- ``correct`` is ``present and d / h <= alpha``, computed on the normalised distance exactly as the
  MPII toolkit and HRNet do (``d <= alpha * h`` can differ from it in the last bit at the boundary);
- a joint without instances present has PCKh ``None`` (not 0) and is left out of its group's mean;
- the PCKh AUC is the trapezoidal area under PCKh(alpha) for alpha = 0, 0.01, ..., 0.5, divided by
  the alpha range, so a perfect model scores 100 (the MPII toolkit's ``area_under_curve``);
- precision with nothing accepted, recall with no positives and F1 with P + R = 0 are 0, as
  scikit-learn's ``zero_division=0``; the counts (``accepted``, ``positives``) say when that happened;
- t* is the highest observed confidence among those that maximise F1 (fewest accepted joints);
- ROC-AUC is ``None`` with a reason when the labels hold one class only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

__all__ = [
    "AUC_ALPHAS",
    "FIXED_THRESHOLDS",
    "HIST_BINS",
    "PCKH_ALPHA",
    "Operating",
    "best_f1_threshold",
    "confidence_histograms",
    "correct_mask",
    "detection_samples",
    "detection_summary",
    "f1_curve",
    "localization",
    "operating_point",
    "pckh_groups",
    "pckh_per_joint",
    "pckh_summary",
    "roc_auc",
    "roc_points",
]

PCKH_ALPHA = 0.5
AUC_ALPHAS = np.arange(51) / 100.0  # i / 100 is correctly rounded, so AUC_ALPHAS[10] == 0.1 exactly
FIXED_THRESHOLDS = (0.4, 0.6)  # the paper's validity cut and DeepLabCut's p-cutoff
HIST_BINS = np.linspace(0.0, 1.0, 21)

# HRNet/mmpose report these MPII joints per joint only, in no group.
_UNGROUPED = {"upper_neck", "pelvis", "thorax"}
_GROUP_ORDER = ("Head", "Nose", "Eye", "Ear", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle")


def _as_2d(name: str, a: Any, dtype: Any) -> np.ndarray:
    arr = np.asarray(a, dtype=dtype)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (instances x joints), got shape {arr.shape}")
    return arr


def correct_mask(dist: np.ndarray, present: np.ndarray, norm: np.ndarray, alpha: float = PCKH_ALPHA) -> np.ndarray:
    """``correct(n, k)``: annotated and ``d / h(n) <= alpha``; a missing prediction (NaN) is never correct."""
    dist = _as_2d("dist", dist, np.float64)
    present = _as_2d("present", present, bool)
    norm = np.asarray(norm, dtype=np.float64).reshape(-1, 1)
    if np.any(~(norm > 0)):
        raise ValueError("every normaliser h(n) must be a positive number")
    with np.errstate(invalid="ignore"):
        return present & (dist / norm <= alpha)  # NaN compares False


def pckh_per_joint(correct: np.ndarray, present: np.ndarray) -> np.ndarray:
    """``100 * sum_n correct / sum_n present`` per joint; NaN for a joint never annotated."""
    c = np.asarray(correct, bool).sum(0).astype(np.float64)
    p = np.asarray(present, bool).sum(0).astype(np.float64)
    out = np.full(c.shape, np.nan)
    np.divide(100.0 * c, p, out=out, where=p > 0)
    return out


def _pooled(correct: np.ndarray, present: np.ndarray) -> float:
    p = int(np.asarray(present, bool).sum())
    return 100.0 * int(np.asarray(correct, bool).sum()) / p if p else float("nan")


def _group_name(joint: str) -> str | None:
    if joint == "head_top":
        return "Head"
    if joint in _UNGROUPED:
        return None
    for side in ("left_", "right_"):
        if joint.startswith(side):
            joint = joint[len(side):]
    return joint.replace("_", " ").capitalize()


def pckh_groups(per_joint: Sequence[float], joints: Sequence[str]) -> dict[str, float]:
    """HRNet/mmpose groups: Head = head top; Shoulder ... Ankle = mean of left and right.

    Other skeletons group the same way by name (``left_eye``/``right_eye`` -> Eye, ``nose`` -> Nose).
    A joint with no annotated instance (NaN) is left out of its group's mean.
    """
    members: dict[str, list[float]] = {}
    for value, joint in zip(per_joint, joints, strict=True):
        group = _group_name(joint)
        if group is not None:
            members.setdefault(group, []).append(float(value))
    rank = {g: i for i, g in enumerate(_GROUP_ORDER)}
    out = {}
    for group in sorted(members, key=lambda g: (rank.get(g, len(rank)), g)):
        vals = [v for v in members[group] if not np.isnan(v)]
        out[group] = float(np.mean(vals)) if vals else float("nan")
    return out


def pckh_summary(
    dist: np.ndarray, present: np.ndarray, norm: np.ndarray, joints: Sequence[str], alpha: float = PCKH_ALPHA
) -> dict[str, Any]:
    """PCKh per joint, groups, pooled mean, PCKh@0.1 and AUC over alpha 0..0.5 (all in percent)."""
    present = _as_2d("present", present, bool)
    correct = correct_mask(dist, present, norm, alpha)
    per_joint = pckh_per_joint(correct, present)
    curve = np.array([_pooled(correct_mask(dist, present, norm, a), present) for a in AUC_ALPHAS])
    if np.all(np.isnan(curve)):
        auc = float("nan")
    else:
        auc = float(np.trapezoid(curve, AUC_ALPHAS) / (AUC_ALPHAS[-1] - AUC_ALPHAS[0]))
    return {
        "alpha": alpha,
        "per_joint": {j: float(v) for j, v in zip(joints, per_joint, strict=True)},
        "groups": pckh_groups(per_joint, joints),
        "mean": _pooled(correct, present),
        "at_0_1": _pooled(correct_mask(dist, present, norm, 0.1), present),
        "auc": auc,
        "curve": {"alpha": AUC_ALPHAS.tolist(), "pckh": curve.tolist()},
    }


def detection_samples(
    correct: np.ndarray, present: np.ndarray, conf: np.ndarray, absent: str = "negative"
) -> tuple[np.ndarray, np.ndarray]:
    """Flatten to detection samples ``(y, s)``.

    ``absent="negative"`` keeps joints missing from the ground truth as y = 0 (the page's default: a
    confident prediction of an unannotated joint is an error); ``"exclude"`` drops them.
    """
    if absent not in ("negative", "exclude"):
        raise ValueError(f"absent must be 'negative' or 'exclude', got {absent!r}")
    y = np.asarray(correct, bool)
    s = np.asarray(conf, np.float64)
    if y.shape != s.shape:
        raise ValueError(f"labels {y.shape} and confidences {s.shape} differ in shape")
    if np.any(~np.isfinite(s)):
        raise ValueError("confidences must be finite (a missing prediction has confidence 0)")
    if absent == "exclude":
        keep = np.asarray(present, bool)
        return y[keep].astype(np.int64), s[keep]
    return y.ravel().astype(np.int64), s.ravel()


@dataclass(frozen=True)
class Operating:
    """Precision, recall and F1 with the counts they come from, at one threshold."""

    threshold: float | None
    tp: int
    fp: int
    fn: int

    @property
    def accepted(self) -> int:
        return self.tp + self.fp

    @property
    def precision(self) -> float:
        return self.tp / self.accepted if self.accepted else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        # 2TP / (2TP + FP + FN) equals 2PR / (P + R) and is exact for ties between thresholds.
        denom = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denom if denom else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "precision": self.precision, "recall": self.recall,
                "f1": self.f1, "accepted": self.accepted, "tp": self.tp, "fp": self.fp, "fn": self.fn}


def operating_point(y: np.ndarray, s: np.ndarray, threshold: float) -> Operating:
    """Counts at one threshold: accepted = ``s >= threshold``."""
    y = np.asarray(y, bool)
    accepted = np.asarray(s, np.float64) >= threshold
    return Operating(float(threshold), int((accepted & y).sum()), int((accepted & ~y).sum()),
                     int((~accepted & y).sum()))


def f1_curve(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(thresholds, tp, fp, fn)`` at every distinct observed confidence, highest first.

    Tied confidences share one threshold, so accepting at ``t`` takes all of them at once.
    """
    y = np.asarray(y, np.int64)
    s = np.asarray(s, np.float64)
    if len(s) == 0:
        empty = np.zeros(0, np.int64)
        return np.zeros(0), empty, empty, empty
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    last_of_value = np.r_[np.flatnonzero(np.diff(s_sorted) != 0), len(s) - 1]
    tp = np.cumsum(y_sorted)[last_of_value]
    fp = np.cumsum(1 - y_sorted)[last_of_value]
    fn = int(y.sum()) - tp
    return s_sorted[last_of_value], tp, fp, fn


def best_f1_threshold(y: np.ndarray, s: np.ndarray) -> Operating:
    """t*: the observed confidence that maximises F1 (the highest one on ties)."""
    thresholds, tp, fp, fn = f1_curve(y, s)
    if len(thresholds) == 0:
        return Operating(None, 0, 0, 0)
    denom = 2 * tp + fp + fn
    f1 = np.divide(2.0 * tp, denom, out=np.zeros(len(tp)), where=denom > 0)
    i = int(np.argmax(f1))  # first maximum = highest threshold, thresholds are descending
    return Operating(float(thresholds[i]), int(tp[i]), int(fp[i]), int(fn[i]))


def roc_auc(y: np.ndarray, s: np.ndarray) -> tuple[float | None, str | None]:
    """``(sklearn.metrics.roc_auc_score(y, s), None)``, or ``(None, reason)`` when it is undefined."""
    y = np.asarray(y, np.int64)
    if len(y) == 0:
        return None, "no samples"
    if y.min() == y.max():
        kind = "correct" if y[0] else "incorrect"
        return None, f"undefined: every sample is {kind} (ROC-AUC needs both classes)"
    return float(roc_auc_score(y, s)), None


def roc_points(y: np.ndarray, s: np.ndarray) -> dict[str, list] | None:
    """ROC curve for plotting (``sklearn.metrics.roc_curve``); the first threshold (+inf) is null."""
    y = np.asarray(y, np.int64)
    if len(y) == 0 or y.min() == y.max():
        return None
    fpr, tpr, thr = roc_curve(y, s)
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist(),
            "thresholds": [float(t) if np.isfinite(t) else None for t in thr]}


def confidence_histograms(y: np.ndarray, s: np.ndarray, bins: np.ndarray = HIST_BINS) -> dict[str, list]:
    """Counts of confidences of correct (y = 1) and incorrect (y = 0) samples over ``bins``.

    Confidences outside the bin range are clipped into the edge bins, so every sample is counted.
    """
    y = np.asarray(y, bool)
    s = np.clip(np.asarray(s, np.float64), bins[0], bins[-1])
    return {"bins": [float(b) for b in bins],
            "correct": np.histogram(s[y], bins)[0].tolist(),
            "incorrect": np.histogram(s[~y], bins)[0].tolist()}


def localization(dx: np.ndarray, dy: np.ndarray, keep: np.ndarray, person_scale: np.ndarray) -> dict[str, Any]:
    """RMSE and mean error over the ``(n, k)`` in ``keep``, in pixels and in normalised pixels.

    ``keep`` should be present, predicted and accepted at t*. Normalised offsets are ``dx / s(n)``,
    ``dy / s(n)`` with the person scale s(n) (MPII ``scale``: every person 200 px tall).
    """
    dx = np.asarray(dx, np.float64)
    dy = np.asarray(dy, np.float64)
    keep = np.asarray(keep, bool)
    scale = np.broadcast_to(np.asarray(person_scale, np.float64).reshape(-1, 1), dx.shape)
    out: dict[str, Any] = {"n": int(keep.sum())}
    for suffix, div in (("", 1.0), ("_normalized", scale[keep])):
        x, y = dx[keep] / div, dy[keep] / div
        if len(x) == 0:
            vals = dict.fromkeys(("rmse_x", "rmse_y", "rmse", "mean_error"), float("nan"))
        else:
            vals = {"rmse_x": float(np.sqrt(np.mean(x**2))), "rmse_y": float(np.sqrt(np.mean(y**2))),
                    "rmse": float(np.sqrt(np.mean(x**2 + y**2))),
                    "mean_error": float(np.mean(np.sqrt(x**2 + y**2)))}
        out.update({k + suffix: v for k, v in vals.items()})
    return out


def detection_summary(y: np.ndarray, s: np.ndarray) -> dict[str, Any]:
    """The detection view: ROC-AUC, P/R/F1 at t* and at the fixed thresholds, curve data."""
    auc, reason = roc_auc(y, s)
    best = best_f1_threshold(y, s)
    out: dict[str, Any] = {"roc_auc": auc, "roc_auc_note": reason, **best.as_dict()}
    for t in FIXED_THRESHOLDS:
        out["at_" + str(t).replace(".", "_")] = operating_point(y, s, t).as_dict()
    out["samples"] = len(y)
    out["positives"] = int(np.sum(y))
    out["roc_curve"] = roc_points(y, s)
    out["histogram"] = confidence_histograms(y, s)
    return out
