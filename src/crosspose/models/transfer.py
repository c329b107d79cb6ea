"""Initialising a network from a checkpoint: the cross-species transfer step.

``heads`` says what happens to the prediction heads:
- ``reinit``: new heads for the new skeleton (DeepLabCut's ``keepdeconvweights: False``, the paper);
- ``keep``: copy the heads (same keypoint set required);
- ``map``: copy the channels of keypoints whose names match (locref channels 2j, 2j+1 with them)
  and leave the rest freshly initialised.
The backbone, normalisation statistics included, always loads. Only weights are read: the step
counter, optimizer and scheduler of the source run never carry over. Files are opened with
``weights_only=True``, so a checkpoint from elsewhere cannot run code.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from crosspose.core.errors import CheckpointError
from crosspose.core.skeletons import match_joints
from crosspose.models.network import PoseNetwork

__all__ = ["METADATA_KEY", "HeadsMode", "initialize_from_checkpoint", "load_weights_file", "read_checkpoint"]

HeadsMode = Literal["reinit", "keep", "map"]
METADATA_KEY = "crosspose"
_NET_PREFIX = "net."


def load_weights_file(path: str | Path, what: str = "checkpoint", kind: str = "a weights-only checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, any failure a one-line CheckpointError.

    Args:
        path: the file.
        what: what it is, for the not-found message (``"snapshot"``).
        kind: what it could not be read as (``"a DeepLabCut 3 snapshot"``).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: {what} not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for foreign or corrupt files
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise CheckpointError(f"{path}: cannot read as {kind} ({type(exc).__name__}: {first})") from None


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(network state dict without the ``net.`` prefix, crosspose metadata) of a checkpoint."""
    path = Path(path)
    ckpt = load_weights_file(path)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{path}: not a crosspose/Lightning checkpoint (no 'state_dict')")
    state = {k[len(_NET_PREFIX):]: v for k, v in ckpt["state_dict"].items() if k.startswith(_NET_PREFIX)}
    if not state:
        raise CheckpointError(f"{path}: the checkpoint holds no crosspose network weights")
    return state, dict(ckpt.get(METADATA_KEY, {}))


def initialize_from_checkpoint(
    net: PoseNetwork,
    path: str | Path,
    heads: HeadsMode,
    keypoint_names: Sequence[str] | None,
) -> dict[str, Any]:
    """Load ``path`` into ``net`` as ``heads`` says; returns a summary of what was copied."""
    state, meta = read_checkpoint(path)
    src_backbone = meta.get("backbone")
    if src_backbone is not None and src_backbone != net.backbone.name:
        raise CheckpointError(f"{path}: checkpoint backbone is {src_backbone!r} but the model's is "
                              f"{net.backbone.name!r}; set model.backbone: {src_backbone}")

    target = net.state_dict()
    backbone_keys = [k for k in target if k.startswith("backbone.")]
    loaded = 0
    with torch.no_grad():
        for key in backbone_keys:
            if key.endswith("num_batches_tracked") and key not in state:
                continue
            if key not in state or state[key].shape != target[key].shape:
                got = "missing" if key not in state else f"shape {tuple(state[key].shape)}"
                raise CheckpointError(f"{path}: backbone tensor {key} is {got}, model needs "
                                      f"{tuple(target[key].shape)} (a different backbone?)")
            target[key].copy_(state[key])
            loaded += 1

        summary: dict[str, Any] = {"backbone_tensors": loaded, "heads": heads, "mapped": {}}
        if "heatmap_head.deconv.bias" not in state:
            if heads != "reinit":  # e.g. a converted TF-slim ImageNet checkpoint
                raise CheckpointError(f"{path}: the checkpoint holds a backbone only (no pose heads); "
                                      "use heads: reinit")
            return summary
        src_k = state["heatmap_head.deconv.bias"].shape[0]
        if heads == "keep":
            if src_k != net.num_keypoints:
                raise CheckpointError(f"{path}: heads: keep needs the same keypoints, but the checkpoint "
                                      f"predicts {src_k} and the model {net.num_keypoints}; use heads: "
                                      "reinit or heads: map")
            for key in target:
                if not key.startswith("backbone.") and key in state:
                    target[key].copy_(state[key])
        elif heads == "map":
            src_names = meta.get("keypoint_names")
            if not src_names or not keypoint_names:
                raise CheckpointError(f"{path}: heads: map needs keypoint names on both sides "
                                      "(the checkpoint's metadata and model.keypoint_names or the data file)")
            mapping = match_joints(src_names, keypoint_names)
            _copy_channels(net, state, mapping)
            summary["mapped"] = {keypoint_names[t]: src_names[s] for t, s in mapping.items()}
        elif heads != "reinit":
            raise CheckpointError(f"unknown heads mode {heads!r} (reinit, keep, map)")
    return summary


def _copy_channels(net: PoseNetwork, state: dict[str, torch.Tensor], mapping: dict[int, int]) -> None:
    """Copy output channels of matched joints: ConvTranspose2d weights are (in, out, kh, kw)."""
    for head_name, per_joint in (("heatmap_head", 1), ("locref_head", 2), ("stage3_head", 1)):
        head = getattr(net, head_name)
        wkey, bkey = f"{head_name}.deconv.weight", f"{head_name}.deconv.bias"
        if head is None or wkey not in state:
            continue
        w_src, b_src = state[wkey], state[bkey]
        w, b = head.deconv.weight, head.deconv.bias
        for t, s in mapping.items():
            for c in range(per_joint):
                w[:, per_joint * t + c].copy_(w_src[:, per_joint * s + c])
                b[per_joint * t + c].copy_(b_src[per_joint * s + c])
