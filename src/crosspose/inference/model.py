"""A trained network ready to run: a crosspose checkpoint (PyTorch) or an exported ``.onnx`` (ONNX Runtime).

Both backends take a batch of RGB frames as a uint8 tensor (B, H, W, 3) with H and W multiples of
the output stride and return the raw head outputs (heatmap (B, K, H/8, W/8), locref (B, 2K, ...)) as
float32 CPU tensors; everything around them (resizing, padding, decoding) is shared.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Protocol

import torch

from crosspose.core.errors import CheckpointError, ConfigError
from crosspose.models.card import ModelCard
from crosspose.models.freeze import freeze_backbone
from crosspose.models.inference import inference_copy
from crosspose.models.network import PoseNetwork
from crosspose.models.transfer import read_checkpoint

__all__ = ["ONNX_CARD_KEY", "Backend", "OnnxBackend", "TorchBackend", "build_network", "open_backend"]

ONNX_CARD_KEY = "crosspose_card"
"""The ONNX ``metadata_props`` entry holding the model card as JSON."""


class Backend(Protocol):
    """What a Predictor needs of a model: its card, its file, and maps for a batch of frames."""

    card: ModelCard
    path: Path
    device: torch.device
    name: str

    def __call__(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/``"auto"``: the GPU when there is one, else the CPU."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"unknown device {device!r} (cpu, cuda, cuda:N, auto)") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for, but torch sees no CUDA GPU here")
    return resolved


def build_network(path: str | Path) -> tuple[PoseNetwork, ModelCard]:
    """The eval-mode network and card of a crosspose checkpoint; CheckpointError for anything else."""
    state, meta = read_checkpoint(path)
    if not meta:
        raise CheckpointError(f"{path}: no crosspose model card in the checkpoint (not saved by crosspose)")
    card = ModelCard.from_dict(meta, str(path))
    net = PoseNetwork(card.num_keypoints, card.backbone, pretrained=False,
                      intermediate_supervision=card.intermediate_supervision,
                      intermediate_supervision_unit=card.intermediate_supervision_unit)
    if card.freeze != "none":
        freeze_backbone(net.backbone, card.freeze)  # the frozen layout the weights were saved in
    state = {k.removeprefix("_orig_mod."): v for k, v in state.items()}  # saved from a torch.compile'd net
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: the weights do not fit the network its model card describes "
                              f"({str(exc).splitlines()[0][:300]})") from None
    return net.eval(), card


class TorchBackend:
    """PyTorch inference: BatchNorm folded, channels_last, bf16/fp16 autocast on a GPU."""

    name = "pytorch"

    def __init__(self, path: str | Path, device: str | torch.device | None = None) -> None:
        self.path = Path(path)
        net, self.card = build_network(path)
        self.device = resolve_device(device)
        self.net = inference_copy(net, channels_last=True).to(self.device)
        self.autocast_dtype: torch.dtype | None = None
        if self.device.type == "cuda":
            self.autocast_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

    @torch.inference_mode()
    def __call__(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # (B, H, W, 3) viewed as (B, 3, H, W) is already channels_last: no copy on the CPU
        images = frames.to(self.device, non_blocking=True).permute(0, 3, 1, 2)
        ctx = (torch.autocast(self.device.type, dtype=self.autocast_dtype) if self.autocast_dtype
               else contextlib.nullcontext())
        with ctx:
            out = self.net(images)
        return out["heatmap"].float().cpu(), out["locref"].float().cpu()


class OnnxBackend:
    """ONNX Runtime inference of a model written by ``crosspose export --format onnx``."""

    name = "onnxruntime"

    def __init__(self, path: str | Path, device: str | torch.device | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise CheckpointError(f"{path}: model file not found")
        self.device = resolve_device(device)
        providers = ["CPUExecutionProvider"]
        if self.device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(self.path), providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types for foreign files
            raise CheckpointError(f"{path}: cannot load as an ONNX model ({type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0][:200]})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if ONNX_CARD_KEY not in meta:
            raise CheckpointError(f"{path}: an ONNX model without a crosspose model card "
                                  "(export it with `crosspose export --format onnx`)")
        self.card = ModelCard.from_json(meta[ONNX_CARD_KEY], str(path))
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        images = frames.permute(0, 3, 1, 2).float().contiguous().numpy()
        heatmap, locref = self.session.run(["heatmap", "locref"], {self.input_name: images})
        return torch.from_numpy(heatmap), torch.from_numpy(locref)


def open_backend(path: str | Path, device: str | torch.device | None = None) -> Backend:
    """A ``.onnx`` file runs in ONNX Runtime, anything else is read as a crosspose checkpoint."""
    if Path(path).suffix.lower() == ".onnx":
        return OnnxBackend(path, device)
    return TorchBackend(path, device)
