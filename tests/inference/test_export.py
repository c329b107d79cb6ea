"""``crosspose export``: weights-only checkpoints and ONNX models that match PyTorch."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

import crosspose
from crosspose.cli import main
from crosspose.inference.export import ONNX_TOLERANCE, check_onnx
from crosspose.testing import write_moving_figure_video, write_tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt", input_size=(48, 64))


@pytest.mark.slow  # torch.export's tracing alone takes ~15 s of CPU
def test_onnx_export_matches_pytorch_with_dynamic_batch_and_size(
        checkpoint: Path, tmp_path: Path, one_torch_thread: None, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "model.onnx"
    assert main(["export", "--model", str(checkpoint), "--format", "onnx", "--out", str(target)]) == 0
    printed = float(re.search(r"max abs difference of the maps: (\S+)", capsys.readouterr().out).group(1))
    assert printed <= ONNX_TOLERANCE
    # sizes other than the export's example, batch 3, not the training input size
    diff = check_onnx(checkpoint, target, sizes=((3, 32, 80), (1, 96, 48)))
    print(f"ONNX Runtime vs PyTorch max abs difference: {diff:.2e}")
    assert diff <= ONNX_TOLERANCE
    dims = [d.dim_param or d.dim_value for d in onnx.load(str(target)).graph.input[0].type.tensor_type.shape.dim]
    assert isinstance(dims[0], str) and isinstance(dims[2], str) and isinstance(dims[3], str) and dims[1] == 3
    # the ONNX model carries the card: it analyses a video alone, with the checkpoint's keypoints
    video = tmp_path / "clip.mp4"
    write_moving_figure_video(video, frames=5, size=(60, 90))
    from_onnx = crosspose.load(target).predict(video)
    from_torch = crosspose.load(checkpoint, device="cpu").predict(video)
    assert from_onnx.keypoint_names == from_torch.keypoint_names
    np.testing.assert_allclose(from_onnx.keypoints, from_torch.keypoints, atol=1e-3)


def test_weights_only_export_drops_training_state_and_predicts_the_same(
        checkpoint: Path, tmp_path: Path, one_torch_thread: None) -> None:
    slim = tmp_path / "weights.ckpt"
    assert main(["export", "--model", str(checkpoint), "--format", "ckpt", "--out", str(slim)]) == 0
    content = torch.load(slim, weights_only=True)
    assert "optimizer_states" not in content and "crosspose" in content
    assert all(k.startswith("net.") for k in content["state_dict"])
    images = [np.random.default_rng(1).integers(0, 255, (50, 70, 3), dtype=np.uint8)]
    np.testing.assert_array_equal(crosspose.load(slim, device="cpu").predict(images).keypoints,
                                  crosspose.load(checkpoint, device="cpu").predict(images).keypoints)
    assert main(["export", "--model", str(slim), "--format", "ckpt", "--out", str(slim)]) == 2
