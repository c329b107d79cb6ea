"""`model.compile`: true, false or a torch.compile mode; CUDA-graph modes warn where BatchNorm trains."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import torch

from crosspose.core.errors import ConfigError
from crosspose.models.network import PoseNetwork
from crosspose.training.module import PoseEstimationModule, compile_network


@pytest.fixture
def compiled(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Record torch.compile's calls instead of compiling (minutes on a test CPU, and nothing to check)."""
    calls: list[dict[str, Any]] = []

    def fake_compile(net: torch.nn.Module, mode: str | None = None) -> torch.nn.Module:
        calls.append({"net": net, "mode": mode})
        return net

    monkeypatch.setattr(torch, "compile", fake_compile)
    return calls


@pytest.mark.parametrize(("setting", "mode"), [(True, None), ("default", "default"),
                                               ("reduce-overhead", "reduce-overhead"),
                                               ("max-autotune-no-cudagraphs", "max-autotune-no-cudagraphs")])
def test_setting_names_the_mode(setting: bool | str, mode: str | None, compiled: list[dict[str, Any]]) -> None:
    net = PoseNetwork(2, "resnet18", norm="frozen")
    assert compile_network(net, setting) is net
    assert compiled == [{"net": net, "mode": mode}]


def test_false_leaves_the_network_alone(compiled: list[dict[str, Any]]) -> None:
    net = PoseNetwork(2, "resnet18")
    assert compile_network(net, False) is net and compiled == []


@pytest.mark.parametrize(("norm", "mode", "warns"), [("batch", "reduce-overhead", True),
                                                     ("batch", "max-autotune", True),
                                                     ("frozen", "reduce-overhead", False),
                                                     ("batch", "default", False)])
def test_cuda_graph_modes_warn_while_batchnorm_statistics_train(
        norm: str, mode: str, warns: bool, compiled: list[dict[str, Any]], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="crosspose"):
        compile_network(PoseNetwork(2, "resnet18", norm=norm), mode)  # type: ignore[arg-type]
    assert any("skips its CUDA graphs" in r.getMessage() for r in caplog.records) == warns


def test_group_norm_backbone_keeps_cuda_graphs(compiled: list[dict[str, Any]],
                                               caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="crosspose"):
        compile_network(PoseNetwork(2, "resnet50_gn"), "reduce-overhead")
    assert not caplog.records and compiled[0]["mode"] == "reduce-overhead"


def test_unknown_mode_fails_when_the_module_is_built() -> None:
    with pytest.raises(ConfigError, match="model.compile must be true, false or one of default, reduce-overhead"):
        PoseEstimationModule(num_keypoints=2, backbone="resnet18", compile="fastest")  # type: ignore[arg-type]


def test_module_compiles_its_network_with_the_mode(compiled: list[dict[str, Any]]) -> None:
    module = PoseEstimationModule(num_keypoints=2, backbone="resnet18", norm="frozen", compile="reduce-overhead")
    module.prepare_network()
    assert [c["mode"] for c in compiled] == ["reduce-overhead"] and compiled[0]["net"] is module.net
