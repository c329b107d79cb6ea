"""Representational similarity: linear CKA with the biased and the unbiased HSIC estimators.

Linear CKA (Kornblith et al. 2019, "Similarity of Neural Network Representations Revisited")
compares two sets of features of the SAME n examples, ``X`` (n, p) and ``Y`` (n, q), through their
Gram matrices ``K = X Xᵀ`` and ``L = Y Yᵀ``::

    CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))

It is 1 for identical representations, invariant to orthogonal transforms and isotropic scaling of
either side (``K`` does not change under ``X -> c X Q``), and not invariant to arbitrary invertible
linear maps. The widths p and q may differ, so networks of different sizes compare.

Two HSIC estimators:

* :func:`hsic_biased`: ``tr(K H L H) / (n - 1)²`` with the centring matrix ``H`` (Gretton et al.
  2005), what Kornblith et al. use on a full data set;
* :func:`hsic_unbiased`: the U-statistic of Song et al. 2012, which Nguyen et al. 2021 ("Do Wide and
  Deep Networks Learn the Same Things?") average over minibatches: :class:`MinibatchCKA`
  accumulates ``HSIC₁(K, L)``, ``HSIC₁(K, K)`` and ``HSIC₁(L, L)`` per minibatch, so a large image set
  never needs an n x n matrix, and the average of unbiased estimates stays unbiased (the biased one
  would drift with the minibatch size). It needs at least :data:`MIN_SAMPLES` examples per batch.

Everything computes in float64; inputs may be torch tensors or NumPy arrays of any shape whose
first axis is the example axis (feature maps are flattened).
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all_ = ["MIN_SAMPLES", "gram_linear", "hsic_biased", "hsic_unbiased", "linear_cka", "MinibatchCKA"]

MIN_SAMPLES = 4
"""The unbiased estimator divides by n (n - 3): it is defined from 4 examples on."""

ArrayLike = torch.Tensor | np.ndarray


def _rows(x: ArrayLike) -> torch.Tensor:
    t = torch.as_tensor(x).detach()
    if t.ndim < 1 or t.shape[0] < 1:
        raise ValueError(f"features need an example axis, got shape {tuple(t.shape)}")
    return t.reshape(t.shape[0], -1).to(torch.float64)


def gram_linear(x: ArrayLike) -> torch.Tensor:
    """``X Xᵀ`` of the examples (rows) of ``x``, in float64."""
    rows = _rows(x)
    return rows @ rows.T


def _check_pair(gram_x: torch.Tensor, gram_y: torch.Tensor) -> int:
    if gram_x.ndim != 2 or gram_x.shape[0] != gram_x.shape[1] or gram_x.shape != gram_y.shape:
        raise ValueError(f"HSIC needs two n x n Gram matrices of the same n, got {tuple(gram_x.shape)} and {tuple(gram_y.shape)}")
    return int(gram_x.shape[0])


def hsic_biased(gram_x: torch.Tensor, gram_y: torch.Tensor) -> torch.Tensor:
    """``tr(K H L H) / (n - 1)²``, H = I - 11ᵀ/n (Gretton et al. 2005)."""
    n = _check_pair(gram_x, gram_y)
    if n < 2:
        raise ValueError(f"the biased HSIC needs at least 2 examples, got {n}")
    x_centred = gram_x - gram_x.mean(dim=0, keepdim=True)
    x_centred = x_centred - x_centred.mean(dim=1, keepdim=True)  # H K H
    return (x_centred * gram_y).sum() / (n - 1) ** 2  # tr(HKH L) = tr(K H L H); both symmetric


def hsic_unbiased(gram_x: torch.Tensor, gram_y: torch.Tensor) -> torch.Tensor:
    """The unbiased HSIC estimator (Song et al. 2012, eq. 5), as Nguyen et al. 2021 use it.

    With K̃, L̃ the Gram matrices with their diagonals set to 0::

        HSIC₁ = [tr(K̃ L̃) + 1ᵀK̃1 · 1ᵀL̃1 / ((n-1)(n-2)) - 2/(n-2) · 1ᵀK̃L̃1] / (n (n-3))
    """
    n = _check_pair(gram_x, gram_y)
    if n < MIN_SAMPLES:
        raise ValueError(f"the unbiased HSIC estimator needs at least {MIN_SAMPLES} examples, got {n}")
    x_off = gram_x - torch.diag(torch.diagonal(gram_x))
    y_off = gram_y - torch.diag(torch.diagonal(gram_y))
    trace = (x_off * y_off).sum()
    sums = x_off.sum() * y_off.sum() / ((n - 1) * (n - 2))
    cross = 2.0 / (n - 2) * (x_off.sum(dim=0) @ y_off.sum(dim=1))
    return (trace + sums - cross) / (n * (n - 3))


def _ratio(kl: float, kk: float, ll: float) -> float:
    """HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)); NaN when a side carries no variance (constant features)."""
    denominator = kk * ll
    if not denominator > 0 or not math.isfinite(denominator):
        return math.nan
    return kl / math.sqrt(denominator)


def linear_cka(x: ArrayLike, y: ArrayLike, unbiased: bool = False) -> float:
    """Linear CKA of two feature sets of the same examples, on the whole set at once.

    Args:
        x: (n, ...) features of network A (flattened per example).
        y: (n, ...) features of network B for the same n examples, in the same order.
        unbiased: use :func:`hsic_unbiased` (Nguyen et al.) instead of :func:`hsic_biased` (Kornblith et al.).

    Returns:
        CKA in [0, 1] for the biased estimator (the unbiased one may leave it slightly); NaN when
        either side is constant over the examples.
    """
    gram_x, gram_y = gram_linear(x), gram_linear(y)
    if gram_x.shape != gram_y.shape:
        raise ValueError(f"x has {gram_x.shape[0]} examples and y {gram_y.shape[0]}; CKA compares the same examples")
    hsic = hsic_unbiased if unbiased else hsic_biased
    return _ratio(float(hsic(gram_x, gram_y)), float(hsic(gram_x, gram_x)), float(hsic(gram_y, gram_y)))


class MinibatchCKA:
    """Linear CKA accumulated over minibatches with the unbiased HSIC (Nguyen et al. 2021).

    ``update(x, y)`` takes the features of one minibatch from both networks (the same examples
    in the same order); :meth:`compute` returns
    ``mean HSIC₁(K, L) / sqrt(mean HSIC₁(K, K) · mean HSIC₁(L, L))`` over the batches seen.

    Example:
        >>> import torch
        >>> acc = MinibatchCKA()
        >>> x = torch.randn(40, 8)
        >>> for batch in x.split(10):
        ...     acc.update(batch, 3.0 * batch)
        >>> round(acc.compute(), 6)
        1.0
    """

    def __init__(self) -> None:
        self._kl = 0.0
        self._kk = 0.0
        self._ll = 0.0
        self.batches = 0
        self.samples = 0

    def update(self, x: ArrayLike, y: ArrayLike) -> None:
        """Add one minibatch; it needs at least :data:`MIN_SAMPLES` examples."""
        gram_x, gram_y = gram_linear(x), gram_linear(y)
        if gram_x.shape != gram_y.shape:
            raise ValueError(f"x has {gram_x.shape[0]} examples and y {gram_y.shape[0]}; CKA compares the same examples")
        self._kl += float(hsic_unbiased(gram_x, gram_y))
        self._kk += float(hsic_unbiased(gram_x, gram_x))
        self._ll += float(hsic_unbiased(gram_y, gram_y))
        self.batches += 1
        self.samples += int(gram_x.shape[0])

    def compute(self) -> float:
        """CKA over every batch so far (NaN when either side carried no variance)."""
        if self.batches == 0:
            raise ValueError("MinibatchCKA.compute() before any update()")
        return _ratio(self._kl, self._kk, self._ll)  # the 1/batches of each mean cancels
