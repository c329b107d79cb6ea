"""Inference through ``torch.compile``: when ``auto`` compiles, padding to one shape, the eager fallback.

The test session runs with ``TORCH_COMPILE_DISABLE=1`` (tests/conftest.py: a real compile costs
seconds to minutes on a 2-core CPU and would run in every predict/analyze test on a CPU with AMX), so
the wrapper's logic is tested here with a stand-in for ``torch.compile`` that records what it is given;
the one real compile (outputs equal to eager's) is ``@pytest.mark.slow``.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from typing import Any

import pytest
import torch

from crosspose.core import hardware
from crosspose.core.errors import ConfigError
from crosspose.core.hardware import CpuFeatures, choose_inference_compile
from crosspose.inference.model import OnnxBackend, TorchBackend
from crosspose.models.inference import CompiledInference, did_compile, inference_copy
from crosspose.models.network import PoseNetwork
from crosspose.models.onednn import PackedConv
from crosspose.testing import write_tiny_checkpoint

ZEN4 = CpuFeatures("AMD EPYC 9654", frozenset({"avx2", "avx512f", "avx512_bf16", "avx512_vnni"}))
SAPPHIRE = CpuFeatures("Intel Xeon 8480+", frozenset({"avx512f", "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile"}))


# ------------------------------------------------------------------------------------ the choice
@pytest.mark.parametrize(("features", "device", "precision", "fused", "expected"), [
    (SAPPHIRE, "cpu", "bf16", False, True),    # measured ~2x over autocast: auto compiles a network not fused
    (SAPPHIRE, "cpu", "bf16", True, False),    # fused oneDNN calls: faster than compiled in video analysis
    (SAPPHIRE, "cpu", "fp32", False, False),   # measured +16 %: not worth a compile by default
    (ZEN4, "cpu", "bf16", False, False),       # bf16 without AMX: not measured
    (SAPPHIRE, "cuda", "bf16", False, False),  # GPUs: not measured
])
def test_auto_compiles_bf16_on_amx_only(features: CpuFeatures, device: str, precision: str, fused: bool,
                                        expected: bool) -> None:
    choice = choose_inference_compile(features, device, precision, fused=fused)
    assert choice.on is expected and choice.reason.startswith("auto: ")


def test_on_off_and_a_missing_compiler(monkeypatch: pytest.MonkeyPatch) -> None:
    assert choose_inference_compile(ZEN4, "cpu", "fp32", "off") == (False, "off: asked for")
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/c++" if name == "c++" else None)
    assert choose_inference_compile(ZEN4, "cpu", "fp32", "on") == (True, "on: asked for")
    assert choose_inference_compile(SAPPHIRE, "cpu", "bf16", "on", fused=True) == (True, "on: asked for")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert choose_inference_compile(SAPPHIRE, "cpu", "bf16") == (False, "auto: eager (no C++ compiler for "
                                                                       "torch.compile)")
    with pytest.raises(ConfigError, match="--compile on: torch.compile needs a C\\+\\+ compiler"):
        choose_inference_compile(SAPPHIRE, "cpu", "bf16", "on")
    with pytest.raises(ConfigError, match="compile must be one of auto, on, off, got 'yes'"):
        choose_inference_compile(SAPPHIRE, "cpu", "bf16", "yes")


def test_backends_follow_the_choice(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setattr(hardware, "read_cpu_features", lambda *args, **kwargs: SAPPHIRE)
    ckpt = write_tiny_checkpoint(tmp_path / "tiny.ckpt")
    backend = TorchBackend(ckpt, "cpu", "fp32")
    assert not isinstance(backend.net, CompiledInference)
    assert backend.compiled.describe() == "compile: off (auto: eager (compiling pays for bf16 on CPUs with AMX))"
    backend = TorchBackend(ckpt, "cpu", "fp32", compile="on")
    assert isinstance(backend.net, CompiledInference) and backend.compiled.describe() == "compile: on (on: asked for)"
    assert backend.net.eager is backend.net.net
    if torch.backends.mkldnn.is_available():
        # bf16: auto runs the fused oneDNN copy, uncompiled, even with AMX
        backend = TorchBackend(ckpt, "cpu", "bf16")
        assert any(isinstance(m, PackedConv) for m in backend.net.modules())
        assert backend.compiled.describe() == ("compile: off (auto: eager (bf16 as fused oneDNN calls, faster "
                                               "than compiled in video analysis))")
        # compiled on request: Inductor gets the plain folded network, the fused copy serves the fallbacks
        backend = TorchBackend(ckpt, "cpu", "bf16", "on")
        assert isinstance(backend.net, CompiledInference)
        assert any(isinstance(m, PackedConv) for m in backend.net.eager.modules())
        assert not any(isinstance(m, PackedConv) for m in backend.net.net.modules())
    with pytest.raises(ConfigError, match="tiny.onnx is an .onnx model.*compiling applies to .ckpt models"):
        OnnxBackend(tmp_path / "tiny.onnx", "cpu", compile="on")


# ------------------------------------------------------------------------------------ the wrapper
def _stand_in(monkeypatch: pytest.MonkeyPatch, fail: bool = False) -> list[tuple[int, ...]]:
    """``torch.compile`` replaced: the 'compiled' function records each input shape and runs eagerly."""
    shapes: list[tuple[int, ...]] = []

    def fake_compile(net: torch.nn.Module, **kwargs: Any) -> Callable[[torch.Tensor], Any]:
        assert kwargs == {"dynamic": False}

        def run(images: torch.Tensor) -> Any:
            import torch._inductor.config

            assert torch._inductor.config.freezing, "weights frozen while the graph compiles"
            shapes.append(tuple(images.shape))
            if fail:
                raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found")
            return net(images)
        return run

    monkeypatch.setattr(torch, "compile", fake_compile)
    return shapes


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return inference_copy(PoseNetwork(3, "resnet18"))


@torch.inference_mode()
def test_short_batches_are_padded_to_the_first_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    shapes = _stand_in(monkeypatch)
    net = _net()
    wrapped = CompiledInference(net)
    images = torch.randint(0, 256, (4, 64, 64, 3), dtype=torch.uint8).permute(0, 3, 1, 2)  # channels_last view
    wrapped(images)
    out = wrapped(images[:3])
    assert shapes == [(4, 3, 64, 64), (4, 3, 64, 64)]  # one shape: no recompile for the last batch
    expected = net(images[:3])
    assert out.keys() == expected.keys()
    for key in out:
        assert out[key].shape[0] == 3
        torch.testing.assert_close(out[key], expected[key], rtol=1e-4, atol=1e-4)


@torch.inference_mode()
def test_the_eager_network_serves_the_fallbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    shapes = _stand_in(monkeypatch)
    net = _net()
    eager_calls: list[tuple[int, ...]] = []

    def eager(images: torch.Tensor) -> dict[str, torch.Tensor]:
        eager_calls.append(tuple(images.shape))
        return net(images)

    wrapped = CompiledInference(net, max_shapes=1, eager=eager)  # type: ignore[arg-type]
    for size in (32, 48, 32):
        wrapped(torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8))
    assert shapes == [(2, 3, 32, 32), (2, 3, 32, 32)] and wrapped.compiled_shapes == [(2, 3, 32, 32)]
    assert eager_calls == [(2, 3, 48, 48)], "the shape past max_shapes ran on the eager network"
    assert did_compile(wrapped) and not did_compile(net)


@torch.inference_mode()
def test_frame_sizes_beyond_max_shapes_run_eagerly(monkeypatch: pytest.MonkeyPatch) -> None:
    shapes = _stand_in(monkeypatch)
    wrapped = CompiledInference(_net(), max_shapes=2)
    for size in (32, 48, 64, 32, 64):
        wrapped(torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8))
    assert shapes == [(2, 3, 32, 32), (2, 3, 48, 48), (2, 3, 32, 32)], "64 px: a third size, eager"
    assert wrapped.shapes == {(2, 3, 32, 32), (2, 3, 48, 48)}


@torch.inference_mode()
def test_a_failed_compile_falls_back_to_eager(monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    shapes = _stand_in(monkeypatch, fail=True)
    net = _net()
    wrapped = CompiledInference(net)
    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    with caplog.at_level(logging.WARNING):
        out = wrapped(images)
        wrapped(images)
    assert len(shapes) == 1, "after a failure the compiled function is not tried again"
    assert wrapped.failed == "RuntimeError: InvalidCxxCompiler: No working C++ compiler found"
    assert not did_compile(wrapped) and wrapped.compiled_shapes == []
    assert [r.getMessage() for r in caplog.records] == [
        "torch.compile failed, running eagerly instead (same results, slower): " + wrapped.failed]
    torch.testing.assert_close(out["heatmap"], net(images)["heatmap"])


@pytest.mark.slow
@torch.inference_mode()
def test_real_compile_matches_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch._dynamo
    from torch._dynamo.utils import counters

    monkeypatch.setattr(torch._dynamo.config, "disable", False)
    torch._dynamo.reset()
    counters.clear()
    net = _net()
    wrapped = CompiledInference(net)
    images = torch.randint(0, 256, (4, 64, 64, 3), dtype=torch.uint8).permute(0, 3, 1, 2)
    for batch in (images, images[:3]):
        out, expected = wrapped(batch), net(batch)
        assert wrapped.failed is None
        for key in expected:
            torch.testing.assert_close(out[key], expected[key], rtol=1e-3, atol=1e-3)
    assert counters["stats"]["unique_graphs"] == 1, "compiled once: the short batch was padded, not recompiled"
