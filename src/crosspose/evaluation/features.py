"""Reading intermediate features out of any ``nn.Module`` with forward hooks, and pooling them.

:class:`FeatureRecorder` hooks named submodules and keeps their outputs of the last forward pass;
:func:`pose_network_layers` names the parts of a crosspose :class:`~crosspose.models.network.PoseNetwork`
the analyses compare (stem, stage1-4, heads); :func:`pool_features` brings feature maps of any
spatial size to one fixed layout, so networks run at different input sizes compare example by
example; :func:`sample_at_points` reads a feature vector at each keypoint.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "BACKBONE_STAGES",
    "HEAD_LAYERS",
    "FeatureRecorder",
    "pool_features",
    "pose_network_layers",
    "record_features",
    "sample_at_points",
]

BACKBONE_STAGES: tuple[str, ...] = ("stem", "stage1", "stage2", "stage3", "stage4")
HEAD_LAYERS: tuple[str, ...] = ("heatmap_head", "locref_head")


class FeatureRecorder:
    """Forward hooks on named submodules; ``features[name]`` is that module's last output.

    Args:
        layers: name -> module (any modules of the network being run).
        detach: keep outputs out of the autograd graph (set False for gradient attributions).

    Use as a context manager so the hooks are always removed::

        with FeatureRecorder({"stage4": net.backbone.body.layer4}) as rec:
            net(images)
        rec.features["stage4"].shape
    """

    def __init__(self, layers: Mapping[str, nn.Module], detach: bool = True) -> None:
        self.layers = dict(layers)
        self.detach = detach
        self.features: dict[str, torch.Tensor] = {}
        self._handles: list[Any] = []

    def _hook(self, name: str) -> Any:
        def store(_: nn.Module, __: Any, output: Any) -> None:
            if isinstance(output, tuple | list):
                output = output[0]
            self.features[name] = output.detach() if self.detach else output

        return store

    def __enter__(self) -> FeatureRecorder:
        self._handles = [m.register_forward_hook(self._hook(n)) for n, m in self.layers.items()]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


@contextmanager
def record_features(layers: Mapping[str, nn.Module], detach: bool = True) -> Iterator[dict[str, torch.Tensor]]:
    """Record the outputs of ``layers`` during a forward pass.

    Use as ``with record_features(layers) as feats: net(x)``; then ``feats[name]`` holds each output.
    """
    with FeatureRecorder(layers, detach) as recorder:
        yield recorder.features


def pose_network_layers(net: nn.Module, heads: bool = True) -> dict[str, nn.Module]:
    """The comparable parts of a PoseNetwork.

    ``stem`` (after conv1-bn1-ReLU), ``stage1``-``stage4`` (timm's ``layer1``-``layer4``), and with
    ``heads`` the score-map and locref heads.

    Works on anything laid out like it: ``net.backbone.body`` a timm ResNet feature net.
    """
    body = getattr(getattr(net, "backbone", None), "body", None)
    if body is None:
        raise TypeError(f"{type(net).__name__} has no backbone.body (not a crosspose PoseNetwork?)")
    act1 = getattr(body, "act1", None)
    layers: dict[str, nn.Module] = {"stem": act1 if act1 is not None else body.bn1}
    for i in range(1, 5):
        layers[f"stage{i}"] = getattr(body, f"layer{i}")
    if heads:
        for name in HEAD_LAYERS:
            layers[name] = getattr(net, name)
    return layers


def pool_features(feature_map: torch.Tensor, grid: int = 4) -> torch.Tensor:
    """(B, C, H, W) -> (B, C * grid * grid): adaptive average pooling to a fixed grid, flattened.

    Every network's maps are pooled the same way, whatever their input size, so that the same
    example gives vectors describing the same parts of the crop. ``grid=1`` is global average
    pooling (drops where things are, which pose estimation is about; hence the default 4).
    """
    if feature_map.ndim == 2:
        return feature_map.float()
    if feature_map.ndim != 4:
        raise ValueError(f"expected (B, C, H, W) feature maps, got shape {tuple(feature_map.shape)}")
    return F.adaptive_avg_pool2d(feature_map.float(), grid).flatten(1)


def sample_at_points(feature_map: torch.Tensor, points: torch.Tensor, input_hw: tuple[int, int]) -> torch.Tensor:
    """Feature vectors at keypoints: (B, C, h, w) map, (B, K, 2) input-pixel (x, y) -> (B, K, C).

    Bilinear sampling, with the map covering the input exactly (the centre of input pixel i lies
    at ``(i + 0.5) / W`` of the width, in both).
    """
    h, w = input_hw
    xy = points.to(feature_map.dtype)
    grid = torch.stack(((xy[..., 0] + 0.5) / w * 2 - 1, (xy[..., 1] + 0.5) / h * 2 - 1), dim=-1)
    sampled = F.grid_sample(feature_map, grid[:, :, None, :], mode="bilinear", align_corners=False,
                            padding_mode="border")
    return sampled[..., 0].permute(0, 2, 1)
