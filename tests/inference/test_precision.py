"""``crosspose analyze --precision`` / ``crosspose.load(precision=)``: the choice, its errors, its accuracy.

The choice follows the CPU features :mod:`crosspose.core.hardware` reports (mocked here through
``read_cpu_features``). Accuracy on a fixed small model -- resnet18 overfitted on four toy images at
64 px (:func:`crosspose.testing.overfit_tiny_module`; random weights give flat maps whose argmax any
rounding moves) -- and those four images, through the real paths (checkpoint, ``crosspose export``,
``crosspose quantize``, ``crosspose analyze``). On the joints fp32 detects (confidence > 0.5), in
pixels of the 64 px images:

* bf16 autocast: within 0.2 px mean and 0.5 px max of fp32 (measured on an AMD EPYC with
  avx512_bf16: 0.04 mean, 0.08 max); run only where torch has bf16 on this CPU.
* int8 (ONNX Runtime, calibrated on the same four images): within 0.5 px mean and 1.5 px max
  (measured: 0.24 mean, 0.63 max), and the same joints detected.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

import crosspose
from crosspose.cli import main
from crosspose.core import hardware
from crosspose.core.errors import ConfigError
from crosspose.core.hardware import CpuFeatures
from crosspose.inference.model import PrecisionChoice, choose_precision
from crosspose.testing import write_tiny_checkpoint

ZEN3 = CpuFeatures("AMD EPYC 7763", frozenset({"avx2", "fma"}))                    # no bf16, no int8 units
ZEN4 = CpuFeatures("AMD EPYC 9654", frozenset({"avx2", "avx512f", "avx512_bf16", "avx512_vnni"}))
SAPPHIRE = CpuFeatures("Intel Xeon 8480+", frozenset({"avx512f", "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile"}))
CPU = torch.device("cpu")

BF16_MEAN_PX, BF16_MAX_PX = 0.2, 0.5
INT8_MEAN_PX, INT8_MAX_PX = 0.5, 1.5


def _mock_cpu(monkeypatch: pytest.MonkeyPatch, features: CpuFeatures) -> None:
    monkeypatch.setattr(hardware, "read_cpu_features", lambda *args, **kwargs: features)


# ------------------------------------------------------------------------------------ the choice
@pytest.mark.parametrize(("features", "expected", "reason"), [
    (ZEN3, "fp32", "auto: CPU has no avx512_bf16 / amx_bf16 units"),
    (ZEN4, "bf16", "auto: CPU has avx512_bf16"),
    (SAPPHIRE, "bf16", "auto: CPU has avx512_bf16 amx_bf16"),
])
def test_auto_follows_the_reported_bf16_units(monkeypatch: pytest.MonkeyPatch, features: CpuFeatures,
                                              expected: str, reason: str) -> None:
    _mock_cpu(monkeypatch, features)
    choice = choose_precision("auto", CPU)
    assert choice == PrecisionChoice(expected, reason)
    assert choice.autocast_dtype == (torch.bfloat16 if expected == "bf16" else None)
    assert choice.describe() == f"precision: {expected} ({reason})"
    assert choose_precision("fp32", CPU) == PrecisionChoice("fp32", "asked for")


def test_reduced_precision_the_cpu_cannot_run_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _mock_cpu(monkeypatch, ZEN3)
    with pytest.raises(ConfigError, match=r"bf16: not supported on this CPU \(no avx512_bf16 / amx_bf16\).*EPYC 7763"):
        choose_precision("bf16", CPU)
    with pytest.raises(ConfigError, match="fp16 is a GPU precision"):
        choose_precision("fp16", CPU)
    with pytest.raises(ConfigError, match="int8 needs an int8 .onnx model"):
        choose_precision("int8", CPU)
    with pytest.raises(ConfigError, match="must be one of auto, fp32, bf16, fp16, int8"):
        choose_precision("half", CPU)
    _mock_cpu(monkeypatch, ZEN4)
    assert choose_precision("bf16", CPU) == PrecisionChoice("bf16", "asked for; CPU has avx512_bf16")


def test_onednn_capped_below_bf16_keeps_fp32_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    _mock_cpu(monkeypatch, dataclasses.replace(SAPPHIRE, isa_limit="AVX512_CORE"))
    choice = choose_precision("auto", CPU)
    assert choice.precision == "fp32" and "oneDNN limited to AVX512_CORE by ONEDNN_MAX_CPU_ISA" in choice.reason
    with pytest.raises(ConfigError, match=r"bf16: not used on this CPU \(oneDNN limited to AVX512_CORE"):
        choose_precision("bf16", CPU)
    _mock_cpu(monkeypatch, dataclasses.replace(SAPPHIRE, isa_limit="AVX512_CORE_BF16"))  # AVX512-BF16, no tiles
    assert choose_precision("auto", CPU) == PrecisionChoice("bf16", "auto: CPU has avx512_bf16")


def test_an_onnx_model_runs_in_its_own_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    _mock_cpu(monkeypatch, ZEN4)
    assert choose_precision("auto", CPU, "fp32").precision == "fp32"
    assert choose_precision("fp32", CPU, "fp32").precision == "fp32"
    int8 = choose_precision("auto", CPU, "int8")
    assert int8.precision == "int8" and int8.autocast_dtype is None and "no avx512_vnni" not in int8.reason
    with pytest.raises(ConfigError, match="this .onnx model is fp32"):
        choose_precision("bf16", CPU, "fp32")
    with pytest.raises(ConfigError, match="this .onnx model is int8.*crosspose export"):
        choose_precision("fp32", CPU, "int8")
    _mock_cpu(monkeypatch, ZEN3)  # runs, but says int8 may not pay off without int8 units
    assert "no avx512_vnni" in choose_precision("auto", CPU, "int8").reason


@pytest.fixture(scope="module")
def untrained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("untrained")
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        cv2.imwrite(str(images / f"img{i}.png"), rng.integers(0, 256, (48, 40, 3), dtype=np.uint8))
    return write_tiny_checkpoint(root / "tiny.ckpt", input_size=(64, 64)), images


def test_load_and_analyze_follow_the_mocked_cpu(monkeypatch: pytest.MonkeyPatch, untrained: tuple[Path, Path],
                                                tmp_path: Path, one_torch_thread: None,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint, images = untrained
    _mock_cpu(monkeypatch, ZEN4)
    model = crosspose.load(checkpoint, device="cpu")
    assert model.backend.autocast_dtype == torch.bfloat16  # type: ignore[attr-defined]
    assert "pytorch in bf16 on cpu" in repr(model)
    assert crosspose.load(checkpoint, device="cpu", precision="fp32").backend.autocast_dtype is None  # type: ignore[attr-defined]
    assert main(["analyze", "--model", str(checkpoint), str(images), "--out", str(tmp_path / "a")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "precision: bf16 (auto: CPU has avx512_bf16)" in lines
    assert "compile: off (auto: eager (compiling pays for bf16 on CPUs with AMX))" in lines
    assert any(line.startswith("allocator: ") for line in lines)

    _mock_cpu(monkeypatch, SAPPHIRE)  # bf16 with AMX: fused oneDNN calls, so not compiled
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/c++")  # whether or not this machine has one
    assert main(["analyze", "--model", str(checkpoint), str(images), "--out", str(tmp_path / "amx")]) == 0
    assert ("compile: off (auto: eager (bf16 as fused oneDNN calls, faster than compiled in video analysis))"
            in capsys.readouterr().out.splitlines())
    assert main(["analyze", "--model", str(checkpoint), str(images), "--out", str(tmp_path / "on"),
                 "--compile", "on"]) == 0  # a no-op compile in the tests, see conftest
    assert "compile: on (on: asked for)" in capsys.readouterr().out.splitlines()
    assert main(["analyze", "--model", str(checkpoint), str(images), "--out", str(tmp_path / "off"),
                 "--compile", "off"]) == 0
    assert "compile: off (off: asked for)" in capsys.readouterr().out.splitlines()

    _mock_cpu(monkeypatch, ZEN3)
    assert crosspose.load(checkpoint, device="cpu").backend.autocast_dtype is None  # type: ignore[attr-defined]
    assert main(["analyze", "--model", str(checkpoint), str(images), "--out", str(tmp_path / "b")]) == 0
    assert "precision: fp32 (auto: CPU has no avx512_bf16 / amx_bf16 units)" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="avx512_bf16"):
        crosspose.load(checkpoint, device="cpu", precision="bf16")
    out = tmp_path / "c"
    assert main(["analyze", "--model", str(checkpoint), str(images), "--out", str(out), "--precision", "bf16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--precision bf16: not supported on this CPU" in err[0], err
    assert not out.exists()


def test_analyze_help_names_the_precision_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["analyze", "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--precision {auto,fp32,bf16,fp16,int8}" in text and "avx512_bf16 / amx_bf16" in text


# ---------------------------------------------------------------------------------- the accuracy
@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, Path]]:
    """(checkpoint, its fp32 .onnx export, the four images) of an overfitted resnet18 at 64 px."""
    from crosspose.inference.export import export_onnx
    from crosspose.testing import overfit_tiny_module
    from crosspose.training.card import save_module

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        root = tmp_path_factory.mktemp("trained")
        module, batch = overfit_tiny_module(root / "data", steps=40, size=64)
        checkpoint = save_module(module, root / "tiny.ckpt", input_size=(64, 64))
        images = root / "images"
        images.mkdir()
        for i, image in enumerate(batch["image"].permute(0, 2, 3, 1).numpy()):
            cv2.imwrite(str(images / f"frame{i}.png"), image[:, :, ::-1])
        yield checkpoint, export_onnx(checkpoint, root / "model.onnx"), images
    finally:
        torch.set_num_threads(threads)


def _distances(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    detected = reference[..., 2] > 0.5
    assert detected.sum() >= 10  # the overfitted network finds most joints
    return np.linalg.norm(other[..., :2] - reference[..., :2], axis=-1)[detected]


def test_bf16_keypoints_within_tolerance_of_fp32(trained: tuple[Path, Path, Path]) -> None:
    if not (hardware.read_cpu_features().bf16_units and torch.cpu._is_avx512_bf16_supported()):
        pytest.skip("no bf16 units on this CPU: the bf16 path is refused here (tested above)")
    checkpoint, _, images = trained
    fp32 = crosspose.load(checkpoint, device="cpu", precision="fp32").predict(images).keypoints
    model = crosspose.load(checkpoint, device="cpu", precision="bf16")
    assert model.backend.precision.precision == "bf16"
    bf16 = model.predict(images).keypoints
    assert bf16.dtype == np.float32  # maps decoded in fp32
    dist = _distances(fp32, bf16)
    assert dist.max() > 0, "bf16 gave fp32's keypoints bit for bit: autocast did not run"
    assert dist.mean() <= BF16_MEAN_PX and dist.max() <= BF16_MAX_PX, (dist.mean(), dist.max())


def test_quantized_onnx_keeps_its_card_and_analyze_runs_it(trained: tuple[Path, Path, Path], tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    import onnx

    from crosspose.inference.model import ONNX_CARD_KEY
    from crosspose.inference.quantize import ONNX_PRECISION_KEY

    checkpoint, onnx_fp32, images = trained
    int8 = tmp_path / "model.int8.onnx"
    assert main(["quantize", "--onnx", str(onnx_fp32), "--images", str(images), "--out", str(int8),
                 "--size", "64", "64"]) == 0
    assert "with its model card" in capsys.readouterr().out
    meta = {p.key: p.value for p in onnx.load(str(int8)).metadata_props}
    fp32_meta = {p.key: p.value for p in onnx.load(str(onnx_fp32)).metadata_props}
    assert meta[ONNX_CARD_KEY] == fp32_meta[ONNX_CARD_KEY] and meta[ONNX_PRECISION_KEY] == "int8"

    keypoints = {}
    for name, model in (("fp32", checkpoint), ("int8", int8)):
        out = tmp_path / name
        assert main(["analyze", "--model", str(model), str(images), "--out", str(out), "--device", "cpu",
                     "--precision", "fp32" if name == "fp32" else "auto"]) == 0
        text = capsys.readouterr().out
        assert f"precision: {name} (" in text, text
        keypoints[name] = pd.read_hdf(out / "images.h5").to_numpy(np.float64).reshape(4, -1, 3)
    dist = _distances(keypoints["fp32"], keypoints["int8"])
    assert dist.max() > 0, "int8 gave fp32's keypoints bit for bit: not quantised"
    assert dist.mean() <= INT8_MEAN_PX and dist.max() <= INT8_MAX_PX, (dist.mean(), dist.max())
    assert np.array_equal(keypoints["fp32"][..., 2] > 0.5, keypoints["int8"][..., 2] > 0.5)
    with pytest.raises(ConfigError, match="this .onnx model is int8"):
        crosspose.load(int8, device="cpu", precision="fp32")
    with pytest.raises(ConfigError, match="this .onnx model is fp32"):
        crosspose.load(onnx_fp32, device="cpu", precision="bf16")
