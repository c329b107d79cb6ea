"""Relative weight movement per group of state-dict keys."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from crosspose.evaluation.movement import relative_weight_movement


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))


GROUPS = {"first": ("0.", "1."), "last": ("2.",)}


def test_unchanged_is_exactly_zero_and_a_known_change_has_a_known_value() -> None:
    initial, tuned = _net(), _net()
    assert all(m.relative == 0.0 for m in relative_weight_movement(tuned, initial, GROUPS).values())
    with torch.no_grad():
        tuned[2].weight.mul_(3.0)  # ||3W - W|| / ||(W, b)|| with the bias b
        tuned[1].running_mean.add_(100.0)  # a statistic, not a weight: must not count
    w, b = initial[2].weight.detach().double(), initial[2].bias.detach().double()
    want = float((2 * w).norm()) / math.sqrt(float(w.norm()) ** 2 + float(b.norm()) ** 2)
    moved = relative_weight_movement(tuned, initial, GROUPS)
    assert moved["first"].relative == 0.0
    assert moved["last"].relative == pytest.approx(want, rel=1e-9)
    assert moved["last"].tensors == 2 and moved["last"].elements == 4 * 2 + 2


def test_reshaped_or_missing_tensors_are_reported_not_compared() -> None:
    initial = _net()
    other = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 5, 1))  # another head width
    moved = relative_weight_movement(other, initial, GROUPS)
    assert moved["last"].relative is None and "shape" in moved["last"].note
    assert moved["first"].relative is not None
    state = {k: v for k, v in initial.state_dict().items() if not k.startswith("2.")}
    missing = relative_weight_movement(initial, state, GROUPS)
    assert missing["last"].relative is None and "missing" in missing["last"].note
    assert "absent" not in relative_weight_movement(initial, initial, {"absent": ("9.",)})  # no tensors: left out
