"""DeepLabCut 2 (TensorFlow) snapshots and TF-slim ImageNet checkpoints -> crosspose checkpoints.

Every variable is mapped by name (TF-slim scopes -> :class:`~crosspose.models.slim_resnet.SlimResNetV1`
modules); the network's channel counts are read from the variables' shapes, so narrow or
non-standard networks convert too. TensorFlow layouts: convolution kernels are (kh, kw, in, out),
transposed-convolution kernels (kh, kw, out, in); PyTorch wants (out, in, kh, kw) and
(in, out, kh, kw): both are the permutation (3, 2, 0, 1). Both frameworks compute correlations, so
no kernel flip is needed.

A DeepLabCut snapshot (``pose/part_pred``, ``pose/locref_pred``, optionally
``pose/intermediate_supervision``) becomes a complete Lightning checkpoint (``crosspose test``,
``predict``, ``PoseEstimationModule.load_from_checkpoint`` and ``model.init_from`` read it); a TF-slim
ImageNet ``resnet_v1_*.ckpt`` (no pose heads) becomes a backbone-only checkpoint for ``init_from``
with ``heads: reinit``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from crosspose.convert.tf_checkpoint import TFCheckpoint, open_tf_checkpoint
from crosspose.core.errors import CheckpointError, ConfigError, DataFormatError
from crosspose.core.io import atomic_torch_save
from crosspose.models.slim_resnet import DLC_MEAN_PIXEL, SLIM_UNITS, slim_name

__all__ = ["DlcTfModel", "convert_dlc_tf", "read_dlc_tf", "read_pose_cfg"]

_HEADS = {"heatmap_head": "pose/part_pred", "locref_head": "pose/locref_pred",
          "stage3_head": "pose/intermediate_supervision"}
_BN = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}
_SCOPE = re.compile(r"^(resnet_v1_(\d+))/conv1/weights$")


@dataclass
class DlcTfModel:
    """What a TensorFlow checkpoint holds, in crosspose's terms."""

    source: Path
    backbone: str
    layers: int
    depths: tuple[int, int, int, int, int]
    tensors: dict[str, torch.Tensor]  # PoseNetwork state-dict keys (no num_batches_tracked)
    keypoint_names: list[str] | None = None
    intermediate_unit: int | None = None
    locref_std: float = 7.2801
    radius: float = 17.0
    ignored: list[str] = field(default_factory=list)

    @property
    def has_heads(self) -> bool:
        return "heatmap_head.deconv.weight" in self.tensors

    @property
    def num_keypoints(self) -> int:
        return int(self.tensors["heatmap_head.deconv.bias"].shape[0]) if self.has_heads else 0


def read_pose_cfg(path: Path) -> dict[str, Any]:
    """DeepLabCut's ``pose_cfg.yaml`` as a dict; a bad file raises DataFormatError naming it."""
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DataFormatError(path, f"cannot read: {exc.strerror or exc}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise DataFormatError(path, f"not YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(cfg, dict):
        raise DataFormatError(path, "not a DeepLabCut pose_cfg.yaml (expected a mapping)")
    return cfg


def _find_scope(ckpt: TFCheckpoint) -> tuple[str, int]:
    scopes = [m.groups() for m in (_SCOPE.match(n) for n in ckpt.variables) if m]
    if len(scopes) != 1:
        found = ", ".join(s for s, _ in scopes) or "none"
        raise CheckpointError(f"{ckpt.index_path}: expected one TF-slim resnet_v1_* network, found {found} "
                              "(is this a DeepLabCut ResNet snapshot or a TF-slim resnet_v1 checkpoint?)")
    scope, layers = scopes[0]
    if int(layers) not in SLIM_UNITS:
        raise CheckpointError(f"{ckpt.index_path}: {scope} is not a TF-slim ResNet v1 depth")
    return scope, int(layers)


def _tf_name(key: str, scope: str) -> tuple[str, str]:
    """(TF variable name, kind) of a PoseNetwork state-dict key; kind is conv, deconv, bn or bias."""
    parts = key.split(".")
    if parts[0] in _HEADS:  # heatmap_head.deconv.weight
        return f"{_HEADS[parts[0]]}/block4/{'weights' if parts[-1] == 'weight' else 'biases'}", (
            "deconv" if parts[-1] == "weight" else "bias")
    # backbone.body.conv1.{conv,bn}.x  |  backbone.body.block1.0.conv2.{conv,bn}.x
    body = parts[2:]
    if body[0] == "conv1":
        path, layer, leaf = f"{scope}/conv1", body[1], body[2]
    else:
        path = f"{scope}/{body[0]}/unit_{int(body[1]) + 1}/bottleneck_v1/{body[2]}"
        layer, leaf = body[3], body[4]
    if layer == "conv":
        return f"{path}/weights", "conv"
    return f"{path}/BatchNorm/{_BN[leaf]}", "bn"


def _depths(ckpt: TFCheckpoint, scope: str) -> tuple[int, int, int, int, int]:
    depths = [ckpt.variables[f"{scope}/conv1/weights"].shape[-1]]
    for b in range(1, 5):
        name = f"{scope}/block{b}/unit_1/bottleneck_v1/conv1/weights"
        if name not in ckpt.variables:
            raise CheckpointError(f"{ckpt.index_path}: variable {name} is missing")
        depths.append(ckpt.variables[name].shape[-1])
    return tuple(depths)  # type: ignore[return-value]


def read_dlc_tf(snapshot: str | Path, pose_cfg: str | Path | None = None) -> DlcTfModel:
    """Read and map a DeepLabCut 2 snapshot or TF-slim ImageNet checkpoint; writes nothing.

    Args:
        snapshot: ``.../snapshot-N`` (or one of its files), or a V1 ``resnet_v1_50.ckpt``.
        pose_cfg: DeepLabCut's ``pose_cfg.yaml``; default: the one beside the snapshot, if any.
    """
    from crosspose.models.network import PoseNetwork

    ckpt = open_tf_checkpoint(snapshot)
    scope, layers = _find_scope(ckpt)
    depths = _depths(ckpt, scope)
    units = SLIM_UNITS[layers]
    for b, n in enumerate(units, start=1):
        present = {int(m.group(1)) for m in (re.match(rf"^{scope}/block{b}/unit_(\d+)/", v) for v in ckpt.variables)
                   if m}
        if present != set(range(1, n + 1)):
            raise CheckpointError(f"{ckpt.index_path}: {scope}/block{b} has units {sorted(present)}, "
                                  f"resnet_v1_{layers} has {n}")
    has_heads = "pose/part_pred/block4/weights" in ckpt.variables
    num_keypoints = ckpt.variables["pose/part_pred/block4/biases"].shape[0] if has_heads else 1
    interm = "pose/intermediate_supervision/block4/weights" in ckpt.variables

    cfg: dict[str, Any] = {}
    cfg_path = Path(pose_cfg) if pose_cfg is not None else ckpt.prefix.parent / "pose_cfg.yaml"
    if pose_cfg is not None or (has_heads and cfg_path.is_file()):
        cfg = read_pose_cfg(cfg_path)
        _check_pose_cfg(cfg, cfg_path, layers, num_keypoints if has_heads else None, interm)
    unit = int(cfg.get("intermediate_supervision_layer", 12)) if interm else None

    backbone = slim_name(layers, depths)
    net = PoseNetwork(num_keypoints, backbone, norm="frozen", intermediate_supervision=interm,
                      intermediate_supervision_unit=unit)
    tensors: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for key, target in net.state_dict().items():
        if key.endswith("num_batches_tracked") or (not has_heads and not key.startswith("backbone.")):
            continue
        name, kind = _tf_name(key, scope)
        if name not in ckpt.variables:
            raise CheckpointError(f"{ckpt.index_path}: variable {name} is missing (needed for {key})")
        value = torch.from_numpy(np.ascontiguousarray(ckpt.tensor(name), dtype=np.float32))
        if kind in ("conv", "deconv"):
            if value.ndim != 4:
                raise CheckpointError(f"{ckpt.index_path}: variable {name} has shape {tuple(value.shape)}, "
                                      "expected a 4-d kernel")
            value = value.permute(3, 2, 0, 1).contiguous()
        if tuple(value.shape) != tuple(target.shape):
            raise CheckpointError(f"{ckpt.index_path}: variable {name} has shape {tuple(value.shape)} after "
                                  f"transposition, the network needs {tuple(target.shape)}")
        tensors[key] = value
        used.add(name)
    names = joint_names(cfg, cfg_path) if has_heads and cfg else None
    return DlcTfModel(
        source=ckpt.index_path, backbone=backbone, layers=layers, depths=depths, tensors=tensors,
        keypoint_names=[str(n) for n in names] if names else None, intermediate_unit=unit,
        locref_std=float(cfg.get("locref_stdev", 7.2801)), radius=float(cfg.get("pos_dist_thresh", 17.0)),
        ignored=sorted(set(ckpt.variables) - used))


def joint_names(cfg: dict[str, Any], path: Path) -> list[str] | None:
    """One name per output channel.

    DeeperCut-style configs group left/right joints: ``all_joints: [[0, 5], [1, 4], ..., [13]]``
    with one name per group (``ankle``, ..., ``forehead``); the channels of a pair become
    ``ankle1`` (the first, the subject's right in DeeperCut's order) and ``ankle2``.
    """
    names = cfg.get("all_joints_names")
    if names is None:
        return None
    groups = cfg.get("all_joints")
    if not isinstance(names, list) or not all(isinstance(n, str | int) for n in names):
        raise ConfigError(f"{path}: all_joints_names must be a list of names")
    if not isinstance(groups, list) or len(groups) != len(names) or all(
            isinstance(g, list) and len(g) == 1 for g in groups):
        return [str(n) for n in names]
    out: dict[int, str] = {}
    for name, group in zip(names, groups, strict=True):
        members = group if isinstance(group, list) else [group]
        for k, channel in enumerate(members, start=1):
            out[int(channel)] = f"{name}{k}" if len(members) > 1 else str(name)
    if sorted(out) != list(range(len(out))):
        raise ConfigError(f"{path}: all_joints {groups} does not number the joints 0..{len(out) - 1}")
    return [out[i] for i in range(len(out))]


def _check_pose_cfg(cfg: dict[str, Any], path: Path, layers: int, num_keypoints: int | None, interm: bool) -> None:
    net_type = str(cfg.get("net_type", f"resnet_{layers}"))
    if net_type != f"resnet_{layers}":
        raise ConfigError(f"{path}: net_type is {net_type!r} but the snapshot holds resnet_v1_{layers}")
    names = joint_names(cfg, path)
    if num_keypoints is not None:
        declared = cfg.get("num_joints", len(names) if names else None)
        if declared is not None and int(declared) != num_keypoints:
            raise ConfigError(f"{path}: num_joints is {declared} but the snapshot's heads predict {num_keypoints}")
        if names is not None and len(names) != num_keypoints:
            raise ConfigError(f"{path}: all_joints_names gives {len(names)} joints but the snapshot's heads "
                              f"predict {num_keypoints} joints")
    if bool(cfg.get("intermediate_supervision", interm)) != interm:
        raise ConfigError(f"{path}: intermediate_supervision is {cfg.get('intermediate_supervision')} but the "
                          f"snapshot {'has' if interm else 'has no'} intermediate-supervision head")
    mean = cfg.get("mean_pixel")
    if mean is not None and not np.allclose(np.asarray(mean, dtype=float), DLC_MEAN_PIXEL, atol=1e-3):
        raise ConfigError(f"{path}: mean_pixel {mean} differs from DeepLabCut's {list(DLC_MEAN_PIXEL)}, "
                          "which the slim backbone subtracts")
    stride = cfg.get("stride", 8)
    if float(stride) != 8.0 or int(cfg.get("output_stride", 16)) != 16:
        raise ConfigError(f"{path}: stride {stride} / output_stride {cfg.get('output_stride')}: crosspose "
                          "converts DeepLabCut's default geometry (stride 8, output stride 16)")


def convert_dlc_tf(snapshot: str | Path, out: str | Path, pose_cfg: str | Path | None = None) -> DlcTfModel:
    """Convert and write ``out`` atomically; nothing is written when anything is wrong."""
    from crosspose.models.transfer import METADATA_KEY
    from crosspose.training.card import save_module
    from crosspose.training.module import PoseEstimationModule

    model = read_dlc_tf(snapshot, pose_cfg)
    out = Path(out)
    meta: dict[str, Any] = {"backbone": model.backbone, "source": str(model.source),
                            "converted_from": "tensorflow"}
    if model.has_heads:
        module = PoseEstimationModule(
            num_keypoints=model.num_keypoints, keypoint_names=model.keypoint_names, backbone=model.backbone,
            norm="frozen", intermediate_supervision=model.intermediate_unit is not None,
            intermediate_supervision_unit=model.intermediate_unit, locref_std=model.locref_std,
            radius=model.radius)
        missing, unexpected = module.net.load_state_dict(model.tensors, strict=False)
        missing = [k for k in missing if not k.endswith("num_batches_tracked")]
        if missing or unexpected:  # a mapping bug, not a user error
            raise RuntimeError(f"conversion left {missing or unexpected} unmapped")
        # the card a trained checkpoint carries, plus provenance; an OSError names the file, and the
        # CLI prints it as one line
        save_module(module, out, meta=meta)
        return model
    meta.update(num_keypoints=0, keypoint_names=None, backbone_only=True)
    atomic_torch_save({"state_dict": {f"net.{k}": v for k, v in model.tensors.items()}, METADATA_KEY: meta}, out)
    return model
