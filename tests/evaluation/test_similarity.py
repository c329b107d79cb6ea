"""Linear CKA and its HSIC estimators, checked against their defining formulas written out in NumPy."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.stats import ortho_group

from crosspose.evaluation.similarity import MinibatchCKA, hsic_biased, hsic_unbiased, linear_cka

RNG = np.random.default_rng(12)


def _pair(n: int = 60, p: int = 12, q: int = 9, noise: float = 0.7, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p))
    y = np.tanh(x @ rng.normal(size=(p, q))) + noise * rng.normal(size=(n, q))
    return x, y


def _cka_by_definition(x: np.ndarray, y: np.ndarray) -> float:
    """Kornblith et al. 2019, eq. (3): HSIC(K, L) = tr(K H L H) / (n-1)^2 with K = X X^T, H = I - 11^T/n."""
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k, gram_l = x @ x.T, y @ y.T

    def hsic(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.trace(a @ h @ b @ h)) / (n - 1) ** 2

    return hsic(k, gram_l) / math.sqrt(hsic(k, k) * hsic(gram_l, gram_l))


def _hsic_u_statistic(k: np.ndarray, gram_l: np.ndarray) -> float:
    """Song et al. 2012, Theorem 2: the U-statistic over ordered 4-tuples of distinct indices,
    h(i,j,q,r) = 1/4! sum over the 24 orderings (t,u,v,w) of K_tu L_tu + K_tu L_vw - 2 K_tu L_tv."""
    n = k.shape[0]
    total = 0.0
    for tup in itertools.permutations(range(n), 4):
        for t, u, v, w in itertools.permutations(tup):
            total += k[t, u] * gram_l[t, u] + k[t, u] * gram_l[v, w] - 2 * k[t, u] * gram_l[t, v]
    tuples = math.perm(n, 4)
    return total / 24 / tuples


def test_cka_of_a_representation_with_itself_is_one() -> None:
    x, _ = _pair()
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(x, x, unbiased=True) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("unbiased", [False, True])
def test_invariant_to_orthogonal_transforms_and_isotropic_scaling_of_either_side(unbiased: bool) -> None:
    x, y = _pair()
    base = linear_cka(x, y, unbiased)
    qx, qy = ortho_group.rvs(x.shape[1], random_state=1), ortho_group.rvs(y.shape[1], random_state=2)
    assert 0.05 < base < 0.95  # a non-trivial value, so invariance means something
    assert linear_cka(x @ qx, y, unbiased) == pytest.approx(base, abs=1e-10)
    assert linear_cka(x, y @ qy, unbiased) == pytest.approx(base, abs=1e-10)
    assert linear_cka(7.5 * x, y, unbiased) == pytest.approx(base, abs=1e-10)
    assert linear_cka(x, 0.01 * y, unbiased) == pytest.approx(base, abs=1e-10)


@pytest.mark.parametrize("unbiased", [False, True])
def test_not_invariant_to_an_arbitrary_invertible_linear_map(unbiased: bool) -> None:
    x, y = _pair()
    stretch = np.diag(np.geomspace(0.05, 20.0, x.shape[1])) @ ortho_group.rvs(x.shape[1], random_state=3)
    assert abs(np.linalg.det(stretch)) > 1e-6  # invertible
    assert abs(linear_cka(x @ stretch, y, unbiased) - linear_cka(x, y, unbiased)) > 0.02


def test_biased_cka_equals_the_defining_formula_on_random_data() -> None:
    for seed in range(3):
        x, y = _pair(n=40, seed=seed)
        assert linear_cka(x, y) == pytest.approx(_cka_by_definition(x, y), rel=1e-10)


def test_unbiased_hsic_equals_the_u_statistic_it_is_defined_as() -> None:
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(7, 3)), rng.normal(size=(7, 2))
    x[:, 0] += 2.0  # uncentred features: the estimator needs no centring
    k, gram_l = x @ x.T, y @ y.T
    got = float(hsic_unbiased(torch.from_numpy(k), torch.from_numpy(gram_l)))
    assert got == pytest.approx(_hsic_u_statistic(k, gram_l), rel=1e-9)


def test_biased_hsic_equals_trace_formula() -> None:
    x, y = _pair(n=20)
    n = 20
    h = np.eye(n) - 1.0 / n
    want = np.trace(x @ x.T @ h @ y @ y.T @ h) / (n - 1) ** 2
    assert float(hsic_biased(torch.from_numpy(x @ x.T), torch.from_numpy(y @ y.T))) == pytest.approx(want, rel=1e-10)


def test_minibatch_estimate_agrees_with_the_full_batch_value() -> None:
    """Stated tolerance: 0.02 absolute at n = 1000 in batches of 50 (fixed seed)."""
    x, y = _pair(n=1000, p=30, q=20, noise=0.5, seed=7)
    full = linear_cka(x, y, unbiased=True)
    acc = MinibatchCKA()
    for xb, yb in zip(np.array_split(x, 20), np.array_split(y, 20), strict=True):
        acc.update(xb, yb)
    assert acc.batches == 20 and acc.samples == 1000
    assert acc.compute() == pytest.approx(full, abs=0.02)
    assert linear_cka(x, y) == pytest.approx(full, abs=0.02)  # and the biased full-batch value, at this n


def test_unbiased_estimator_refuses_fewer_than_four_examples() -> None:
    acc = MinibatchCKA()
    with pytest.raises(ValueError, match="at least 4 examples"):
        acc.update(np.ones((3, 5)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="before any update"):
        acc.compute()


def test_constant_features_give_nan_not_a_crash() -> None:
    x, _ = _pair()
    assert math.isnan(linear_cka(x, np.ones((x.shape[0], 4))))


def test_mismatched_example_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="same examples"):
        linear_cka(np.ones((10, 3)), np.ones((11, 3)))
