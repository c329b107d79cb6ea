"""``crosspose export``: a checkpoint as weights only (``.ckpt``) or as an ONNX model.

``--format ckpt`` keeps the network weights, the model card and the hyper-parameters (what
``predict``/``test``/``analyze``/``init_from`` read) and drops the optimizer, scheduler, loop and
callback state, typically a third of a training checkpoint's size.

``--format onnx`` writes the network with BatchNorm folded, input ``images`` float32 (N, 3, H, W)
RGB in 0-255 (normalisation inside), outputs ``heatmap`` (N, K, H/8, W/8) logits and ``locref``
(N, 2K, H/8, W/8), batch and frame size dynamic (H and W multiples of 16; any H and W for TF-slim
networks, whose "SAME" padding the graph computes from the frame size), and the model card as
JSON in the metadata entry ``crosspose_card``, so ``crosspose analyze --model model.onnx`` and
:func:`crosspose.load` need nothing else. The export is checked in ONNX Runtime against PyTorch on
two input sizes; the largest absolute difference of the maps is printed and must be <= 1e-4, or
1e-4 of the maps' peak where the maps exceed 1 (float32 rounding grows with them).
"""

from __future__ import annotations

import argparse
import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from crosspose.core.errors import CheckpointError, ConfigError
from crosspose.core.io import atomic_path, atomic_torch_save, atomic_write_bytes
from crosspose.inference.model import ONNX_CARD_KEY, build_network, onnx_session
from crosspose.models.inference import inference_copy
from crosspose.models.transfer import METADATA_KEY

__all__ = ["ONNX_TOLERANCE", "check_onnx", "configure_parser", "export_onnx", "export_weights", "onnx_differences",
           "run"]

ONNX_TOLERANCE = 1e-4


def export_weights(checkpoint: str | Path, target: str | Path) -> Path:
    """A weights-only copy of a crosspose checkpoint (no optimizer or trainer state)."""
    build_network(checkpoint)  # one clear error if it is not a usable crosspose checkpoint
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    hparams = dict(ckpt.get("hyper_parameters") or {})
    hparams["init_from"] = None  # the weights are here; the source file need not exist where this goes
    slim: dict[str, Any] = {
        "state_dict": {k: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")},
        METADATA_KEY: ckpt[METADATA_KEY],
        "hyper_parameters": hparams,
        "epoch": ckpt.get("epoch", 0),
        "global_step": ckpt.get("global_step", 0),
        "pytorch-lightning_version": ckpt.get("pytorch-lightning_version", ""),
    }
    return atomic_torch_save(slim, target)


class MapsOnly(nn.Module):
    """The network with (heatmap, locref) as a tuple: ONNX outputs are positional."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(images)
        return out["heatmap"], out["locref"]


def export_onnx(checkpoint: str | Path, target: str | Path, opset: int = 18) -> Path:
    """Write the ONNX model of a checkpoint (dynamic batch, height and width) with its model card.

    torch.export's exporter (dynamic sizes declared as multiples of 16, or free for TF-slim
    networks); the TorchScript exporter, which torch deprecates, only where the first one fails and
    never for TF-slim networks: it would record one frame size's "SAME" padding as constants.
    """
    import onnx
    from torch.export import Dim

    net, card = build_network(checkpoint)
    model = MapsOnly(inference_copy(net, channels_last=False)).eval()
    h, w = card.input_size or (256, 256)
    example = (torch.zeros(1, 3, h, w),)
    names: dict[str, Any] = {"input_names": ["images"], "output_names": ["heatmap", "locref"],
                             "opset_version": opset}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if card.input_multiple == 1:  # TF-slim: any size; the max-pool padding stays symbolic
                shapes = ({0: Dim("batch"), 2: Dim("height", min=16), 3: Dim("width", min=16)},)
            else:
                shapes = ({0: Dim("batch"), 2: 16 * Dim("height16"), 3: 16 * Dim("width16")},)
            program = torch.onnx.export(model, example, dynamic_shapes=shapes, dynamo=True, verbose=False,
                                        **names)
            proto = program.model_proto  # type: ignore[union-attr]
        except Exception as exc:  # torch.export cannot trace every model: the older exporter still can
            if card.input_multiple == 1:
                raise CheckpointError(f"{checkpoint}: torch.export could not export this TF-slim network "
                                      f"with dynamic frame sizes ({type(exc).__name__}); the TorchScript "
                                      "exporter would fix one size's padding, so nothing was written") from None
            buffer = io.BytesIO()
            torch.onnx.export(model, example, buffer, dynamo=False, **names,  # type: ignore[arg-type]
                              dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"},
                                            "heatmap": {0: "batch", 2: "map_height", 3: "map_width"},
                                            "locref": {0: "batch", 2: "map_height", 3: "map_width"}})
            proto = onnx.load_from_string(buffer.getvalue())
    entry = proto.metadata_props.add()
    entry.key, entry.value = ONNX_CARD_KEY, card.to_json()
    proto.producer_name = "crosspose"
    onnx.checker.check_model(proto)
    return atomic_write_bytes(target, proto.SerializeToString())


def check_onnx(checkpoint: str | Path, onnx_path: str | Path,
               sizes: tuple[tuple[int, int, int], ...] | None = None, seed: int = 0) -> float:
    """Largest absolute difference of heatmap and locref between PyTorch and ONNX Runtime."""
    return onnx_differences(checkpoint, onnx_path, sizes, seed)[0]


def onnx_differences(checkpoint: str | Path, onnx_path: str | Path,
                     sizes: tuple[tuple[int, int, int], ...] | None = None, seed: int = 0) -> tuple[float, float]:
    """(largest absolute difference, that difference over max(1, the largest |map value|)).

    The second is what ``crosspose export`` holds to ``ONNX_TOLERANCE``: float32 rounding grows with
    the maps' magnitude (a converted DeepLabCut network's logits reach tens, and PyTorch's own float32
    result differs from float64 by ~3e-4 there), a mistake in the graph does not scale down with it.

    Run on random frames of the given (batch, height, width) sizes, so the dynamic axes are tested;
    default: two sizes unlike the export's (multiples of 16, or for TF-slim networks, which take any
    size, odd and even ones that are not).
    """
    net, card = build_network(checkpoint)
    if sizes is None:
        sizes = ((2, 61, 90), (1, 82, 47)) if card.input_multiple == 1 else ((2, 64, 96), (1, 80, 48))
    session = onnx_session(onnx_path)
    rng = np.random.default_rng(seed)
    worst = scaled = 0.0
    for b, h, w in sizes:
        images = rng.integers(0, 256, (b, 3, h, w)).astype(np.float32)
        with torch.no_grad():
            ref = net(torch.from_numpy(images))
        got = session.run(["heatmap", "locref"], {"images": images})
        for name, value in zip(("heatmap", "locref"), got, strict=True):
            expected = ref[name].numpy()
            if value.shape != expected.shape:
                raise CheckpointError(f"{onnx_path}: {name} has shape {value.shape} in ONNX Runtime, "
                                      f"{expected.shape} in PyTorch")
            diff = float(np.abs(value - expected).max())
            worst = max(worst, diff)
            scaled = max(scaled, diff / max(1.0, float(np.abs(expected).max())))
    return worst, scaled


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add this command's options to ``parser``."""
    parser.add_argument("--model", required=True, help="a crosspose checkpoint (.ckpt)")
    parser.add_argument("--format", required=True, choices=("ckpt", "onnx"),
                        help="ckpt: weights only, no optimizer state; onnx: for ONNX Runtime")
    parser.add_argument("--out", required=True, type=Path, help="the file to write")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")


def run(args: argparse.Namespace) -> int:
    """Run the command with parsed ``args``; returns the exit status."""
    if args.out.resolve() == Path(args.model).resolve():
        raise ConfigError(f"--out {args.out} would overwrite the checkpoint it exports")
    if args.format == "ckpt":
        export_weights(args.model, args.out)
        before, after = Path(args.model).stat().st_size, args.out.stat().st_size
        print(f"wrote {args.out} (weights only: {after / 1e6:.1f} MB, was {before / 1e6:.1f} MB)")
        return 0
    with atomic_path(args.out) as tmp:  # checked before it replaces anything
        export_onnx(args.model, tmp, args.opset)
        diff, scaled = onnx_differences(args.model, tmp)
        print(f"ONNX Runtime vs PyTorch, max abs difference of the maps: {diff:.2e} "
              f"({scaled:.2e} relative to the maps' peak where it exceeds 1)")
        if scaled > ONNX_TOLERANCE:
            raise CheckpointError(f"{args.model}: the ONNX export differs from PyTorch by {diff:.2e} "
                                  f"({scaled:.2e} relative to the maps' peak, > {ONNX_TOLERANCE:g}); nothing written")
    print(f"wrote {args.out}")
    return 0
