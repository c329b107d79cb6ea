"""Fixtures for the model tests."""

from __future__ import annotations

from typing import Any

import pytest
import torch


@pytest.fixture
def fused_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """Shapes the fused norm kernel ran on (it still runs)."""
    from crosspose.models import group_norm as gn

    calls: list[tuple[int, ...]] = []
    apply = gn._FusedNorm.apply

    def counting(x: torch.Tensor, *args: object) -> Any:
        calls.append(tuple(x.shape))
        return apply(x, *args)

    monkeypatch.setattr(gn._FusedNorm, "apply", counting)
    return calls
