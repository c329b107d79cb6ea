"""int8 inference models: static quantisation of an exported fp32 ONNX network with ONNX Runtime.

``crosspose quantize --onnx model.onnx --images FOLDER --out model.int8.onnx``

Static (not dynamic) quantisation, because a ResNet is convolutions: their activation ranges are
measured once on calibration images (the user's own: the ranges of their lighting, animals and
background, not ImageNet's) and frozen into the graph as QuantizeLinear/DequantizeLinear pairs
(QDQ format), so ONNX Runtime runs the convolutions with int8 kernels (VNNI / AMX where the CPU has
them; see :mod:`crosspose.core.hardware`). Weights: int8 per output channel; activations: uint8.
The output layers (the last convolution on the way to each output: the score-map and
location-refinement deconvolutions) stay fp32: keypoints are read from those maps at sub-pixel
precision, and uint8 outputs would cut each map's whole logit range into 256 steps. Measured on the
demo's trained ResNet-18 at 128 px (351 test instances): mean keypoint difference to fp32 over the
joints fp32 detects 0.65 px with every layer int8, 0.32 px with the output layers fp32 (all joints,
including undetected ones whose maps are flat: 1.78 -> 0.71 px).

Where this sits: beside ``crosspose.inference`` (it reads the exported file and images the way
prediction does), importing ``core`` and ``data`` (and, late, the card key of
:mod:`crosspose.inference.model`). The network's first input must be
``(N, 3, H, W)`` RGB 0-255, uint8 or float (the contract of :class:`crosspose.models.network.PoseNetwork`).
Calibration images are cropped exactly as ``crosspose predict`` crops a folder of images.

The int8 file keeps the fp32 file's metadata (its model card, so ``crosspose analyze --model
model.int8.onnx`` and :func:`crosspose.load` read it like the fp32 export) and records
``crosspose_precision = int8`` (:data:`ONNX_PRECISION_KEY`), the precision analyze reports for it.

Why ONNX Runtime and not OpenVINO: ONNX Runtime is already a dependency (the ONNX export uses it),
runs on every CPU vendor and OS the package supports, and its quantiser is part of the same
package; OpenVINO's NNCF would add two large dependencies for the same int8 kernels on x86.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from crosspose.core.errors import ConfigError, DataFormatError
from crosspose.core.io import atomic_path

__all__ = ["ONNX_PRECISION_KEY", "calibration_batches", "configure_parser", "onnx_input_spec", "output_layers",
           "quantize_onnx", "run"]

ONNX_PRECISION_KEY = "crosspose_precision"
"""The ONNX ``metadata_props`` entry naming a quantised model's precision (``int8``); absent: fp32."""


def onnx_input_spec(model_path: str | Path) -> tuple[str, np.dtype, tuple[int, int] | None]:
    """(input name, numpy dtype, (H, W) when fixed in the graph) of an ONNX model's first input."""
    import onnx

    path = Path(model_path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, ValueError, OSError...
        raise DataFormatError(path, f"not a readable ONNX model ({exc})") from exc
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if not inputs:
        raise DataFormatError(path, "the ONNX graph has no input")
    first = inputs[0]
    tensor = first.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
    if len(dims) != 4 or dims[1] not in (3, None):
        raise DataFormatError(path, f"input {first.name!r} must be (N, 3, H, W) images, got shape {dims}")
    dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type))
    hw = (int(dims[2]), int(dims[3])) if dims[2] and dims[3] else None
    return first.name, dtype, hw


def calibration_batches(images: str | Path, input_hw: tuple[int, int], dtype: np.dtype,
                        limit: int = 64, batch_size: int = 1) -> Iterator[np.ndarray]:
    """Calibration inputs from a folder: each image cropped as ``crosspose predict`` crops it."""
    from crosspose.data.dataset import ImageFolderDataset

    dataset = ImageFolderDataset(images, input_hw)
    count = min(limit, len(dataset))
    for start in range(0, count, batch_size):
        batch = np.stack([dataset[i]["image"].numpy() for i in range(start, min(start + batch_size, count))])
        yield batch.astype(dtype, copy=False)


COMPUTE_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
SHAPE_OPS = frozenset({"Shape", "Size", "Constant"})
"""Nodes that compute sizes, not values: the walk in :func:`output_layers` does not go through them."""


def output_layers(model: Any) -> list[str]:
    """Names of the nodes from each graph output back to (and including) its last compute layer.

    Walks from every output through the nodes that produce it (slices, reshapes, scalings; not into
    the size computations their bounds may come from) and stops at the first convolution or matrix
    product on each path: those nodes stay fp32 when quantising.
    Found from the graph, not from layer names, so converted networks get the same treatment.
    """
    producers = {out: node for node in model.graph.node for out in node.output}
    keep: list[str] = []
    seen: set[str] = set()
    pending = [o.name for o in model.graph.output]
    while pending:
        node = producers.get(pending.pop())
        if node is None or node.name in seen or node.op_type in SHAPE_OPS:
            continue
        seen.add(node.name)
        keep.append(node.name)
        if node.op_type not in COMPUTE_OPS:
            pending.extend(node.input)
    return keep


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over :func:`calibration_batches`."""

    def __init__(self, name: str, batches: Iterator[np.ndarray]) -> None:
        self.name, self.batches = name, batches

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        return None if batch is None else {self.name: batch}

    def rewind(self) -> None:  # called by some calibrators; one pass is all we give
        return None


def quantize_onnx(fp32_model: str | Path, images: str | Path, out: str | Path,
                  input_size: tuple[int, int] | None = None, calibration_images: int = 64,
                  method: str = "minmax") -> dict[str, Any]:
    """Write an int8 (QDQ) copy of ``fp32_model`` calibrated on the images in ``images``.

    Args:
        fp32_model: the exported fp32 network (``crosspose export --format onnx``).
        images: a folder of the user's own frames (jpg/png/...); up to ``calibration_images`` are used.
        out: the int8 model to write (atomically: nothing is left behind on failure).
        input_size: (H, W) of the network input; read from the graph when it is fixed there.
        method: activation-range calibration, ``minmax`` or ``percentile`` (99.999 %, robust to outliers).

    Returns a summary: input name and size, calibration images used, node counts.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, out = Path(fp32_model), Path(out)
    if not src.is_file():
        raise ConfigError(f"{src}: no such ONNX model")
    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}
    if method not in methods:
        raise ConfigError(f"calibration method must be one of {sorted(methods)}, got {method!r}")
    name, dtype, graph_hw = onnx_input_spec(src)
    hw = tuple(input_size) if input_size else graph_hw
    if hw is None:
        raise ConfigError(f"{src}: the input size is not fixed in the graph; give input_size (--size H W)")
    if calibration_images < 1:
        raise ConfigError(f"calibration_images must be at least 1, got {calibration_images}")
    used = min(calibration_images, len(list(_image_files(Path(images)))))
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # shape inference + graph optimisation first, as ONNX Runtime's quantiser recommends
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        reader = _Reader(name, calibration_batches(images, (int(hw[0]), int(hw[1])), dtype, calibration_images))
        fp32_nodes = output_layers(onnx.load(str(prepared)))
        with atomic_path(out) as target:
            quantize_static(str(prepared), str(target), reader, quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=methods[method], nodes_to_exclude=fp32_nodes)
            q = _copy_metadata(onnx.load(str(target)), onnx.load(str(src), load_external_data=False))
            onnx.save(q, str(target))
    from crosspose.inference.model import ONNX_CARD_KEY  # late: model.py imports this module

    ops = [n.op_type for n in q.graph.node]
    keys = {p.key for p in q.metadata_props}
    return {"input": name, "input_hw": list(hw), "calibration_images": used, "out": str(out),
            "quantize_nodes": ops.count("QuantizeLinear"), "nodes": len(ops), "fp32_output_nodes": len(fp32_nodes),
            "model_card": ONNX_CARD_KEY in keys}


def _copy_metadata(quantized: Any, source: Any) -> Any:
    """The source's metadata (the model card) into the quantised model, which ONNX Runtime writes without it."""
    have = {p.key for p in quantized.metadata_props}
    for p in source.metadata_props:
        if p.key not in have and p.key != ONNX_PRECISION_KEY:
            entry = quantized.metadata_props.add()
            entry.key, entry.value = p.key, p.value
    entry = next((p for p in quantized.metadata_props if p.key == ONNX_PRECISION_KEY), None)
    if entry is None:
        entry = quantized.metadata_props.add()
        entry.key = ONNX_PRECISION_KEY
    entry.value = "int8"
    return quantized


def _image_files(folder: Path) -> list[Path]:
    from crosspose.data.dataset import IMAGE_SUFFIXES

    if not folder.is_dir():
        raise ConfigError(f"{folder}: calibration images must be a folder")
    files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise DataFormatError(folder, "no images to calibrate on")
    return files


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``crosspose quantize``."""
    parser.add_argument("--onnx", required=True, type=Path, help="the fp32 model (crosspose export --format onnx)")
    parser.add_argument("--images", required=True, type=Path, help="a folder of your own frames to calibrate on")
    parser.add_argument("--out", required=True, type=Path, help="the int8 model to write")
    parser.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"),
                        help="network input when the graph does not fix it")
    parser.add_argument("--count", type=int, default=64, help="calibration images used (64)")
    parser.add_argument("--method", default="minmax", choices=("minmax", "percentile"),
                        help="activation-range calibration (minmax)")


def run(args: argparse.Namespace) -> int:
    """Quantise and say what was written."""
    summary = quantize_onnx(args.onnx, args.images, args.out, tuple(args.size) if args.size else None,
                            args.count, args.method)
    card = ("with its model card (crosspose analyze --model reads it)" if summary["model_card"]
            else "WITHOUT a model card (the fp32 file had none; export it with crosspose export --format onnx)")
    print(f"wrote {summary['out']}: int8 (QDQ, {summary['quantize_nodes']} quantised tensors), calibrated on "
          f"{summary['calibration_images']} images at {summary['input_hw'][0]}x{summary['input_hw'][1]}, {card}")
    return 0
