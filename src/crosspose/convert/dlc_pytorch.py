"""DeepLabCut 3 (PyTorch) single-animal ResNet snapshots -> crosspose checkpoints.

DeepLabCut 3's ``resnet_50`` / ``resnet_101`` models are a timm ResNet (``resnet50_gn`` by
default) run through ``forward_features`` at output stride 16, and a ``HeatmapHead`` of one
3x3 stride-2 ``ConvTranspose2d`` each for the score maps and the location refinement, without
DeeperCut's crop: maps are (2H+1) x (2W+1). Its ``HeatmapPredictor`` takes the per-joint argmax
of the raw map (``apply_sigmoid: false``), clips the score to [0, 1] (``clip_scores: true``) and
places cell (x, y) at ``8 x + 4 + locref_x * locref_std``. Images are RGB normalised with
ImageNet's mean and standard deviation, as timm's ResNets are in crosspose.

So the converted network is crosspose's timm backbone with ``head_output: full`` and the
``gaussian`` codec (identity scores, clipped), and the mapping is by name:
``backbone.model.X`` -> ``backbone.body.X``, ``heads.bodypart.heatmap_head.deconv_layers.0.X`` ->
``heatmap_head.deconv.X`` (same for ``locref_head``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from crosspose.convert.dlc_tf import read_pose_cfg
from crosspose.core.errors import CheckpointError, ConfigError

__all__ = ["DlcPytorchModel", "convert_dlc_pytorch", "read_dlc_pytorch"]

_HEAD_KEYS = {"heatmap_head": "heatmap_head", "locref_head": "locref_head"}


@dataclass
class DlcPytorchModel:
    """What a DeepLabCut 3 snapshot holds, in crosspose's terms."""

    source: Path
    backbone: str
    tensors: dict[str, torch.Tensor]
    keypoint_names: list[str]
    locref_std: float
    heatmap: Literal["disk", "gaussian"]
    radius: float
    method: str

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoint_names)


def _get(cfg: dict[str, Any], path: str, where: Path) -> Any:
    node: Any = cfg
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"{where}: no {path} (is this DeepLabCut 3's pytorch_config.yaml?)")
        node = node[part]
    return node


def _config(cfg: dict[str, Any], path: Path) -> tuple[str, dict[str, Any], list[str]]:
    backbone = _get(cfg, "model.backbone", path)
    if backbone.get("type") != "ResNet":
        raise ConfigError(f"{path}: backbone type {backbone.get('type')!r}: crosspose converts DeepLabCut 3's "
                          "ResNet models (resnet_50, resnet_101); HRNet, CSPNeXt, DLCRNet and DEKR are not supported")
    if int(backbone.get("output_stride", 32)) != 16:
        raise ConfigError(f"{path}: backbone output_stride {backbone.get('output_stride')}: only 16 is supported")
    if cfg["model"].get("neck"):
        raise ConfigError(f"{path}: the model has a neck, which crosspose does not support")
    heads = _get(cfg, "model.heads", path)
    if set(heads) != {"bodypart"}:
        raise ConfigError(f"{path}: heads {sorted(heads)}: crosspose converts single-animal models with one "
                          "'bodypart' head (no unique bodyparts, PAFs or identity heads)")
    head = heads["bodypart"]
    if head.get("type") != "HeatmapHead":
        raise ConfigError(f"{path}: head type {head.get('type')!r}, expected HeatmapHead")
    for name in ("heatmap_config", "locref_config"):
        spec = head.get(name) or {}
        if list(spec.get("kernel_size", [])) != [3] or list(spec.get("strides", [])) != [2] or spec.get("final_conv"):
            raise ConfigError(f"{path}: model.heads.bodypart.{name} is {spec}; crosspose converts the default "
                              "head (one 3x3 stride-2 transposed convolution)")
    names = _get(cfg, "metadata.bodyparts", path)
    if not isinstance(names, list) or not names:
        raise ConfigError(f"{path}: metadata.bodyparts must list the joints")
    return str(backbone.get("model_name", "resnet50")), head, [str(n) for n in names]


def read_dlc_pytorch(snapshot: str | Path, config: str | Path) -> DlcPytorchModel:
    """Read and map a DeepLabCut 3 ``snapshot-N.pt`` with its ``pytorch_config.yaml``; writes nothing."""
    from crosspose.models.network import PoseNetwork
    from crosspose.models.transfer import load_weights_file

    snapshot, config = Path(snapshot), Path(config)
    cfg = read_pose_cfg(config)
    model_name, head, names = _config(cfg, config)
    predictor = head.get("predictor", {})
    if not predictor.get("location_refinement", True):
        raise ConfigError(f"{config}: location_refinement is off; crosspose's heads always predict locref")
    sigmoid = bool(predictor.get("apply_sigmoid", True))
    if not sigmoid and not predictor.get("clip_scores", False):
        raise ConfigError(f"{config}: apply_sigmoid and clip_scores are both false; crosspose reports raw scores "
                          "clipped to [0, 1] (DeepLabCut 3's default is clip_scores: true)")
    raw = load_weights_file(snapshot, "snapshot", "a DeepLabCut 3 snapshot")
    state = raw.get("model") if isinstance(raw, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{snapshot}: not a DeepLabCut 3 snapshot (no 'model' state dict)")

    net = PoseNetwork(len(names), model_name, head_output="full")
    tensors: dict[str, torch.Tensor] = {}
    for key, target in net.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        if key.startswith("backbone.body."):
            source = "backbone.model." + key[len("backbone.body."):]
        else:
            head_name, rest = key.split(".", 1)
            source = f"heads.bodypart.{_HEAD_KEYS[head_name]}.deconv_layers.0.{rest.split('.', 1)[1]}"
        value = state.get(source)
        if value is None:
            raise CheckpointError(f"{snapshot}: tensor {source} is missing (needed for {key}; "
                                  f"pytorch_config says {model_name} with {len(names)} bodyparts)")
        if tuple(value.shape) != tuple(target.shape):
            raise CheckpointError(f"{snapshot}: tensor {source} has shape {tuple(value.shape)}, {model_name} with "
                                  f"{len(names)} bodyparts ({config.name}) needs {tuple(target.shape)}")
        tensors[key] = value.float()
    generator = head.get("target_generator", {})
    return DlcPytorchModel(
        source=snapshot, backbone=model_name, tensors=tensors, keypoint_names=names,
        locref_std=float(predictor.get("locref_std", 7.2801)), heatmap="disk" if sigmoid else "gaussian",
        radius=float(generator.get("pos_dist_thresh", 17)), method=str(cfg.get("method", "bu")))


def convert_dlc_pytorch(snapshot: str | Path, config: str | Path, out: str | Path) -> DlcPytorchModel:
    """Convert and write ``out`` atomically; nothing is written when anything is wrong."""
    from crosspose.training.card import save_module
    from crosspose.training.module import PoseEstimationModule

    model = read_dlc_pytorch(snapshot, config)
    module = PoseEstimationModule(
        num_keypoints=model.num_keypoints, keypoint_names=model.keypoint_names, backbone=model.backbone,
        head_output="full", heatmap=model.heatmap, radius=model.radius, locref_std=model.locref_std)
    missing, unexpected = module.net.load_state_dict(model.tensors, strict=False)
    if [k for k in missing if not k.endswith("num_batches_tracked")] or unexpected:
        raise RuntimeError(f"conversion left {missing or unexpected} unmapped")  # a mapping bug
    # the same model card a trained checkpoint carries (head geometry included), plus provenance;
    # an OSError names the file, and the CLI prints it as one line
    save_module(module, out, meta={"source": str(model.source), "converted_from": "deeplabcut3",
                                   "dlc_method": model.method})
    return model
