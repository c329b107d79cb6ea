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
from crosspose.inference.export import ONNX_TOLERANCE, check_onnx, onnx_differences
from crosspose.testing import requires_fixture, write_moving_figure_video, write_tiny_checkpoint


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
    from_torch = crosspose.load(checkpoint, device="cpu", precision="fp32").predict(video)
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


def test_slim_max_pool_exports_tensorflows_padding_for_every_size(tmp_path: Path, one_torch_thread: None) -> None:
    """TF "SAME" pads an odd input on both sides, an even one after only: the ONNX graph must compute
    that from the frame size, not keep the traced size's padding (exported at 20x24, run at others)."""
    import onnxruntime as ort
    from torch.export import Dim

    from crosspose.models.slim_resnet import SamePadMaxPool, tf_same_padding

    pool = SamePadMaxPool(3, 2).eval()
    shapes = ({2: Dim("height", min=4), 3: Dim("width", min=4)},)
    program = torch.onnx.export(pool, (torch.zeros(1, 2, 20, 24),), dynamic_shapes=shapes, dynamo=True,
                                verbose=False, input_names=["x"], output_names=["y"])
    path = tmp_path / "pool.onnx"
    path.write_bytes(program.model_proto.SerializeToString())  # type: ignore[union-attr]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for h, w in ((21, 24), (20, 25), (33, 17), (6, 9)):
        x = rng.normal(size=(1, 2, h, w)).astype(np.float32)
        top, bottom = tf_same_padding(h, 3, 2)
        left, right = tf_same_padding(w, 3, 2)
        padded = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=-np.inf)
        want = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(2, 3))[:, :, ::2, ::2].max(axis=(-1, -2))
        (got,) = session.run(["y"], {"x": x})
        np.testing.assert_array_equal(pool(torch.from_numpy(x)).numpy(), want)
        np.testing.assert_array_equal(got, want)


@pytest.mark.slow  # torch.export of a (narrow) 50-layer network: ~40 s of CPU
def test_onnx_export_of_a_slim_network_is_exact_at_sizes_that_are_not_multiples_of_16(
        tmp_path: Path, one_torch_thread: None, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = write_tiny_checkpoint(tmp_path / "slim.ckpt", backbone="slim_resnet_v1_50_c8-2-2-2-2", input_size=(48, 64))
    target = tmp_path / "slim.onnx"
    assert main(["export", "--model", str(ckpt), "--format", "onnx", "--out", str(target)]) == 0
    printed = float(re.search(r"max abs difference of the maps: (\S+)", capsys.readouterr().out).group(1))
    assert printed <= ONNX_TOLERANCE
    diff = check_onnx(ckpt, target, sizes=((2, 61, 90), (1, 82, 47), (1, 33, 35)))  # odd/even, not 48x64
    print(f"slim network, ONNX Runtime vs PyTorch max abs difference: {diff:.2e}")
    assert diff <= ONNX_TOLERANCE


@pytest.mark.slow
@requires_fixture("deeplabcut_tf/narrow_resnet_v1_50_17joints")
def test_onnx_export_of_the_converted_deeplabcut_snapshot(tmp_path: Path, shared_fixtures: Path,
                                                         one_torch_thread: None) -> None:
    folder = shared_fixtures / "deeplabcut_tf/narrow_resnet_v1_50_17joints"
    ckpt, target = tmp_path / "narrow.ckpt", tmp_path / "narrow.onnx"
    assert main(["convert", "dlc-tf", "--snapshot", str(folder / "snapshot-1000"), "--out", str(ckpt)]) == 0
    assert main(["export", "--model", str(ckpt), "--format", "onnx", "--out", str(target)]) == 0
    # the fixture's image size and an odd one; logits at a trained network's scale (tens on random frames),
    # where float32 rounding alone is ~1e-4 (PyTorch float32 vs float64: ~3e-4): held to 1e-4 of the peak
    diff, scaled = onnx_differences(ckpt, target, sizes=((1, 225, 400), (1, 171, 203)))
    print(f"DeepLabCut snapshot, ONNX Runtime vs PyTorch max abs difference: {diff:.2e} (of the peak: {scaled:.2e})")
    assert scaled <= ONNX_TOLERANCE and diff < 1e-3


def test_onnx_sessions_do_not_spin_between_runs(tmp_path: Path) -> None:
    """Spinning ONNX Runtime threads take the cores that read the next frames (measured in model.py)."""
    from onnx import TensorProto, helper

    from crosspose.inference.model import onnx_session

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    onnx.save(model, str(tmp_path / "id.onnx"))
    session = onnx_session(tmp_path / "id.onnx", threads=2)
    options = session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.intra_op_num_threads == 2
    assert session.run(None, {"x": np.array([3.0], np.float32)})[0].tolist() == [3.0]
