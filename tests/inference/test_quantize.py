"""int8 static quantisation (ONNX Runtime, QDQ) and bf16 autocast: keypoints stay within tolerance of fp32.

A fixed small model (resnet18 overfitted on four toy images at 64 px) and its image set; the fp32
ONNX file is exported here with ``torch.onnx.export`` (the real export command is ``crosspose export``).
Tolerances, on the joints the fp32 model detects (confidence > 0.5; an undetected joint's argmax is
noise at any precision): int8 within 1.0 px mean (1.6 % of the 64 px input) of fp32, score maps within
10 % relative RMS; bf16 within 0.5 px mean.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from crosspose.core.errors import ConfigError, DataFormatError
from crosspose.inference.export import MapsOnly
from crosspose.inference.quantize import calibration_batches, onnx_input_spec, quantize_onnx
from crosspose.testing import overfit_tiny_module

SIZE = 64


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        folder = tmp_path_factory.mktemp("tiny")
        module, batch = overfit_tiny_module(folder / "data", steps=40, size=SIZE)
        # calibration images: the crops themselves, as files (a user's own frames)
        calib = folder / "calib"
        calib.mkdir()
        for i, image in enumerate(batch["image"].permute(0, 2, 3, 1).numpy()):
            cv2.imwrite(str(calib / f"frame{i}.png"), image[:, :, ::-1])
        module.predict_step(batch, 0)  # builds the BatchNorm-folded copy the export uses
        onnx_path = folder / "fp32.onnx"
        torch.onnx.export(MapsOnly(module._inference_net[0]), (batch["image"],), str(onnx_path),
                          input_names=["image"], output_names=["heatmap", "locref"], dynamo=False,
                          dynamic_axes={"image": {0: "batch"}})
        yield module, batch, onnx_path, calib
    finally:
        torch.set_num_threads(threads)


def _keypoints(module, batch, heatmap: np.ndarray, locref: np.ndarray) -> torch.Tensor:
    from crosspose.training.module import to_original

    decoded = module.codec.decode(torch.from_numpy(heatmap).float(), torch.from_numpy(locref).float())
    return to_original(decoded, batch["to_original"])


def _run(path: Path, images: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"image": images})


def test_int8_keypoints_within_tolerance_of_fp32(tiny: tuple, tmp_path: Path) -> None:
    module, batch, onnx_path, calib = tiny
    out = tmp_path / "int8" / "model.int8.onnx"
    summary = quantize_onnx(onnx_path, calib, out, input_size=(SIZE, SIZE))
    assert out.is_file() and summary["quantize_nodes"] > 10 and summary["calibration_images"] == 4
    assert [p.name for p in out.parent.iterdir()] == ["model.int8.onnx"]  # no temporary left behind
    images = batch["image"].numpy()
    maps32, loc32 = _run(onnx_path, images)
    maps8, loc8 = _run(out, images)
    rel = np.sqrt(np.mean((maps8 - maps32) ** 2)) / np.sqrt(np.mean(maps32 ** 2))
    assert rel < 0.10, f"int8 score maps {100 * rel:.1f} % from fp32"
    kp32 = _keypoints(module, batch, maps32, loc32)
    kp8 = _keypoints(module, batch, maps8, loc8)
    # the ONNX fp32 graph is the network: same keypoints as predict_step
    assert torch.allclose(kp32, module.predict_step(batch, 0)["keypoints"], atol=1e-2)
    detected = kp32[..., 2] > 0.5
    assert detected.sum() >= 10
    diff = (kp8[..., :2] - kp32[..., :2]).norm(dim=-1)[detected]
    assert float(diff.mean()) <= 1.0, f"int8 keypoints {float(diff.mean()):.2f} px from fp32 on average"


def test_the_output_layers_stay_fp32_and_the_backbone_is_int8(tiny: tuple, tmp_path: Path) -> None:
    import onnx

    _, _, onnx_path, calib = tiny
    out = tmp_path / "model.int8.onnx"
    summary = quantize_onnx(onnx_path, calib, out, input_size=(SIZE, SIZE))
    graph = onnx.load(str(out)).graph
    producers = {o: n for n in graph.node for o in n.output}

    def weight_from(node: object) -> str | None:
        source = producers.get(node.input[1])  # type: ignore[attr-defined]
        return source.op_type if source is not None else None  # None: a float initializer

    heads = [n for n in graph.node if n.op_type == "ConvTranspose"]
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert len(heads) == 2 and summary["fp32_output_nodes"] >= 2
    assert all(weight_from(n) != "DequantizeLinear" for n in heads)  # score maps and locref: fp32 weights
    # every backbone convolution int8 (the walk back from the outputs stops at the heads, and does not
    # follow the size computations of their slices into the backbone)
    assert convs and all(weight_from(n) == "DequantizeLinear" for n in convs)
    assert {o.name for o in graph.output} == {"heatmap", "locref"}
    assert all(producers[o.name].op_type != "DequantizeLinear" for o in graph.output)  # outputs not rounded to uint8


def test_bf16_autocast_predict_within_half_a_pixel(tiny: tuple) -> None:
    module, batch, _, _ = tiny
    with torch.inference_mode():
        fp32 = module.predict_step(batch, 0)["keypoints"]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = module.predict_step(batch, 0)["keypoints"]
    assert bf16.dtype == torch.float32  # decoded in fp32 even under autocast
    diff = (bf16[..., :2] - fp32[..., :2]).norm(dim=-1)[fp32[..., 2] > 0.5]
    assert float(diff.mean()) <= 0.5, f"bf16 keypoints {float(diff.mean()):.2f} px from fp32 on average"


def test_calibration_reads_the_graph_and_crops_like_predict(tiny: tuple, tmp_path: Path) -> None:
    _, batch, onnx_path, calib = tiny
    name, dtype, hw = onnx_input_spec(onnx_path)
    assert name == "image" and dtype == np.uint8 and hw == (SIZE, SIZE)
    first = next(calibration_batches(calib, (SIZE, SIZE), dtype, limit=2, batch_size=2))
    assert first.shape == (2, 3, SIZE, SIZE) and first.dtype == np.uint8
    # exactly the crop `crosspose predict` feeds the network for that file
    from crosspose.data.dataset import ImageFolderDataset

    assert np.array_equal(first[1], ImageFolderDataset(calib, (SIZE, SIZE))[1]["image"].numpy())


def test_bad_inputs_are_named(tiny: tuple, tmp_path: Path) -> None:
    _, _, onnx_path, calib = tiny
    with pytest.raises(ConfigError, match="no such ONNX model"):
        quantize_onnx(tmp_path / "absent.onnx", calib, tmp_path / "out.onnx")
    bogus = tmp_path / "bogus.onnx"
    bogus.write_bytes(b"not a model")
    with pytest.raises(DataFormatError, match="bogus.onnx"):
        quantize_onnx(bogus, calib, tmp_path / "out.onnx")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataFormatError, match="no images"):
        quantize_onnx(onnx_path, empty, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()
