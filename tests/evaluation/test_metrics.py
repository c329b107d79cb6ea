"""The metric functions against scikit-learn and brute force (hypothesis property tests)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.metrics import precision_recall_curve, precision_recall_fscore_support, roc_auc_score

from crosspose.evaluation import metrics as M

# Confidences drawn from a coarse grid produce many ties; the float strategy produces few.
_GRID = st.sampled_from([0.0, 0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.9, 1.0])
_FLOAT = st.floats(0.0, 1.0, allow_nan=False, width=32)
_CONF = st.one_of(_GRID, _FLOAT)


@st.composite
def _labelled(draw, min_size=1, max_size=60):
    n = draw(st.integers(min_size, max_size))
    y = np.asarray(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)), np.int64)
    elements = draw(st.sampled_from([_GRID, _FLOAT, _CONF]))
    s = np.asarray(draw(st.lists(elements, min_size=n, max_size=n)), np.float64)
    return y, s


def _sk(y, s, t):
    p, r, f, _ = precision_recall_fscore_support(y, (s >= t).astype(int), average="binary", zero_division=0)
    return p, r, f


@settings(max_examples=100, deadline=None)
@given(_labelled(max_size=40))
def test_best_threshold_and_scores_equal_sklearn(case):
    y, s = case
    best = M.best_f1_threshold(y, s)
    candidates = np.unique(s)
    f1s = np.array([_sk(y, s, t)[2] for t in candidates])
    top = f1s.max()
    assert best.f1 == pytest.approx(top, abs=1e-12)
    # the highest observed confidence among the F1 maximisers
    assert best.threshold == candidates[np.isclose(f1s, top, rtol=0, atol=1e-12)].max()
    assert (best.precision, best.recall, best.f1) == pytest.approx(_sk(y, s, best.threshold), abs=1e-12)
    for t in M.FIXED_THRESHOLDS:
        op = M.operating_point(y, s, t)
        assert (op.precision, op.recall, op.f1) == pytest.approx(_sk(y, s, t), abs=1e-12)
        assert op.accepted == int((s >= t).sum())


@settings(max_examples=150, deadline=None)
@given(_labelled())
def test_roc_auc_equals_sklearn_or_is_null_with_reason(case):
    y, s = case
    auc, reason = M.roc_auc(y, s)
    if len(set(y.tolist())) == 2:
        assert reason is None and auc == roc_auc_score(y, s)
        pts = M.roc_points(y, s)
        assert pts["fpr"][0] == 0.0 and pts["tpr"][-1] == 1.0 and pts["thresholds"][0] is None
    else:
        assert auc is None and "both classes" in reason
        assert M.roc_points(y, s) is None


@settings(max_examples=100, deadline=None)
@given(_labelled(min_size=2))
def test_f1_curve_matches_sklearn_precision_recall_curve(case):
    y, s = case
    if y.sum() == 0:
        return  # sklearn's recall is undefined without positives
    thresholds, tp, fp, fn = M.f1_curve(y, s)
    precision, recall, sk_thr = precision_recall_curve(y, s)
    # sklearn: ascending thresholds, one point per distinct score (plus the (1, 0) end point)
    by_t = {float(t): (p, r) for p, r, t in zip(precision[:-1], recall[:-1], sk_thr, strict=True)}
    for t, a, b, c in zip(thresholds, tp, fp, fn, strict=True):
        if float(t) in by_t:
            p, r = by_t[float(t)]
            assert a / (a + b) == pytest.approx(p) and a / (a + c) == pytest.approx(r)


@st.composite
def _joint_case(draw):
    n = draw(st.integers(1, 12))
    k = draw(st.integers(1, 6))
    present = draw(arrays(bool, (n, k)))
    correct = draw(arrays(bool, (n, k))) & present
    conf = draw(arrays(np.float64, (n, k), elements=_CONF))
    return correct, present, conf


@settings(max_examples=100, deadline=None)
@given(_joint_case(), st.sampled_from(["negative", "exclude"]))
def test_absent_joints_negative_or_excluded_as_sklearn(case, absent):
    correct, present, conf = case
    y, s = M.detection_samples(correct, present, conf, absent)
    flat_y, flat_s, flat_p = correct.ravel(), conf.ravel(), present.ravel()
    if absent == "exclude":
        flat_y, flat_s = flat_y[flat_p], flat_s[flat_p]
    assert np.array_equal(y, flat_y.astype(int)) and np.array_equal(s, flat_s)
    summary = M.detection_summary(y, s)
    if len(y) and len(set(y.tolist())) == 2:
        assert summary["roc_auc"] == roc_auc_score(flat_y, flat_s)
    if len(y):
        t = summary["threshold"]
        assert (summary["precision"], summary["recall"], summary["f1"]) == pytest.approx(
            _sk(flat_y.astype(int), flat_s, t), abs=1e-12)
    hist = summary["histogram"]
    assert sum(hist["correct"]) == int(flat_y.sum()) and sum(hist["incorrect"]) == int((~flat_y).sum())


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 8), st.integers(1, 5), st.data())
def test_pckh_equals_brute_force(n, k, data):
    dist = data.draw(arrays(np.float64, (n, k), elements=st.one_of(st.floats(0, 100), st.just(math.nan))))
    present = data.draw(arrays(bool, (n, k)))
    norm = data.draw(arrays(np.float64, (n,), elements=st.floats(1, 60)))
    joints = [f"j{i}" for i in range(k)]
    out = M.pckh_summary(dist, present, norm, joints)
    for j in range(k):
        hits = sum(1 for i in range(n) if present[i, j] and dist[i, j] / norm[i] <= 0.5)
        count = int(present[:, j].sum())
        value = out["per_joint"][f"j{j}"]
        assert (math.isnan(value) if count == 0 else value == pytest.approx(100 * hits / count))
    total = int(present.sum())
    hits = sum(1 for i in range(n) for j in range(k) if present[i, j] and dist[i, j] / norm[i] <= 0.5)
    assert (math.isnan(out["mean"]) if total == 0 else out["mean"] == pytest.approx(100 * hits / total))
    if total:
        hits01 = sum(1 for i in range(n) for j in range(k) if present[i, j] and dist[i, j] / norm[i] <= 0.1)
        assert out["at_0_1"] == pytest.approx(100 * hits01 / total)
        assert 0 <= out["auc"] <= out["mean"] + 1e-9  # PCKh(alpha) grows with alpha, AUC averages it


def test_pckh_boundary_is_inclusive_and_nan_is_wrong():
    dist = np.array([[5.0, 5.000001, math.nan]])
    present = np.ones((1, 3), bool)
    assert M.correct_mask(dist, present, np.array([10.0])).tolist() == [[True, False, False]]
    with pytest.raises(ValueError, match="positive"):
        M.correct_mask(dist, present, np.array([0.0]))


def test_groups_follow_hrnet_and_skip_unannotated_joints():
    joints = ["head_top", "upper_neck", "pelvis", "left_wrist", "right_wrist", "nose", "left_eye", "right_eye"]
    per_joint = [90.0, 80.0, 10.0, 60.0, 40.0, 70.0, math.nan, 30.0]
    groups = M.pckh_groups(per_joint, joints)
    assert groups == {"Head": 90.0, "Nose": 70.0, "Eye": 30.0, "Wrist": 50.0}


def test_auc_of_a_step_curve_by_hand():
    # every joint at normalised distance 0.255: PCKh is 0 for alpha <= 0.25 (26 points), 100 after (25)
    dist = np.full((2, 3), 0.255 * 40)
    out = M.pckh_summary(dist, np.ones((2, 3), bool), np.array([40.0, 40.0]), ["a", "b", "c"])
    assert out["auc"] == pytest.approx(100 * 0.01 * (25 * 1 - 0.5) / 0.5)
    assert out["at_0_1"] == 0.0 and out["mean"] == 100.0


def test_localization_by_hand():
    dx = np.array([[3.0, 30.0], [6.0, math.nan]])
    dy = np.array([[4.0, 40.0], [8.0, math.nan]])
    keep = np.array([[True, False], [True, False]])
    out = M.localization(dx, dy, keep, np.array([1.0, 2.0]))
    assert out["n"] == 2
    assert out["rmse"] == pytest.approx(math.sqrt((25 + 100) / 2))
    assert out["rmse_x"] == pytest.approx(math.sqrt((9 + 36) / 2))
    assert out["mean_error"] == pytest.approx(7.5)
    assert out["rmse_normalized"] == pytest.approx(5.0) and out["mean_error_normalized"] == pytest.approx(5.0)
    empty = M.localization(dx, dy, np.zeros_like(keep), np.array([1.0, 2.0]))
    assert empty["n"] == 0 and math.isnan(empty["rmse"])


def test_degenerate_detection_cases():
    # nothing correct: F1 0 everywhere, t* = the highest confidence, precision 0 by convention
    best = M.best_f1_threshold(np.zeros(4, int), np.array([0.2, 0.9, 0.9, 0.1]))
    assert best.threshold == 0.9 and best.precision == 0.0 and best.f1 == 0.0 and best.accepted == 2
    # nothing accepted at a fixed threshold: precision 0, accepted 0 says why
    op = M.operating_point(np.array([1, 0]), np.array([0.1, 0.2]), 0.6)
    assert op.accepted == 0 and op.precision == 0.0 and op.recall == 0.0
    empty = M.detection_summary(np.zeros(0, int), np.zeros(0))
    assert empty["threshold"] is None and empty["roc_auc"] is None and empty["roc_auc_note"] == "no samples"
    with pytest.raises(ValueError, match="finite"):
        M.detection_samples(np.ones((1, 1), bool), np.ones((1, 1), bool), np.array([[math.nan]]))
    with pytest.raises(ValueError, match="absent"):
        M.detection_samples(np.ones((1, 1), bool), np.ones((1, 1), bool), np.ones((1, 1)), absent="drop")
