"""Gradient attributions: which pixels a network's output for one joint depends on.

Three maps, for any ``nn.Module`` whose output a *target* function reduces to one number per example
(:func:`joint_peak` takes the peak logit of one joint's score map):

* :func:`input_gradient`: ``|d target / d pixel|`` summed over colour channels (Simonyan et al.
  2014); full resolution, exact, noisy.
* :func:`grad_cam`: ``ReLU(sum_c mean_xy(dT/dA_c) · A_c)`` at a layer (Selvaraju et al. 2017).
* :func:`layer_cam`: ``ReLU(sum_c ReLU(dT/dA_c(x, y)) · A_c(x, y))`` (Jiang et al. 2021, LayerCAM).

crosspose's figures use LayerCAM. Grad-CAM averages the gradient over the whole map before
weighting the activations, so a channel that fires at *every* limb gets credit everywhere, though
one joint's score depends on a small neighbourhood: for a fully convolutional heatmap network
that spreads one joint's evidence over the whole body. LayerCAM keeps the gradient's spatial map,
so it is zero wherever the output does not depend on the activation (what the tests check),
and it stays a gradient-times-activation map, as cheap as Grad-CAM (one backward per joint).

The network should be in eval mode (BatchNorm in training mode mixes the examples of a batch);
these functions switch it to eval for the call and restore its mode.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from crosspose.evaluation.features import FeatureRecorder

__all__ = ["Target", "cam_maps", "disk_masks", "grad_cam", "input_gradient", "joint_peak", "layer_cam", "mass_inside"]

Target = Callable[[Any], torch.Tensor]
"""Model output -> (B,) one score per example; its gradient is what is attributed."""


def joint_peak(joint: int, key: str = "heatmap") -> Target:
    """The highest logit of joint ``joint``'s score map (where the network puts that joint).

    For a (B, C) output (a classifier) it is simply channel ``joint``.
    """

    def target(output: Any) -> torch.Tensor:
        maps = output[key] if isinstance(output, dict) else output
        selected = maps[:, joint]
        return selected.flatten(1).amax(dim=1) if selected.ndim > 1 else selected

    return target


class _EvalMode:
    def __init__(self, model: nn.Module) -> None:
        self.model, self.was_training = model, model.training

    def __enter__(self) -> None:
        self.model.eval()

    def __exit__(self, *exc: object) -> None:
        self.model.train(self.was_training)


def _input(images: torch.Tensor) -> torch.Tensor:
    # the input joins the graph so every activation has a gradient, frozen layers included
    return images.detach().float().requires_grad_(True)


def input_gradient(model: nn.Module, images: torch.Tensor, targets: Sequence[Target]) -> torch.Tensor:
    """``|d target / d input|`` summed over channels: (T, B, H, W) for T targets."""
    maps = []
    with _EvalMode(model), torch.enable_grad():
        x = _input(images)
        output = model(x)
        for i, target in enumerate(targets):
            (grad,) = torch.autograd.grad(target(output).sum(), x, retain_graph=i < len(targets) - 1)
            maps.append(grad.abs().sum(dim=1))
    return torch.stack(maps)


def cam_maps(model: nn.Module, layer: nn.Module, images: torch.Tensor, targets: Sequence[Target],
             size: tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """LayerCAM and Grad-CAM from the same gradients (one forward, one backward per target).

    Returns (layercam, gradcam), each (T, B, h, w) or (T, B, *size) upsampled bilinearly, and the
    model's output (detached), so a caller needs no second forward pass.
    """
    layer_maps, grad_maps = [], []
    with _EvalMode(model), torch.enable_grad(), FeatureRecorder({"layer": layer}, detach=False) as rec:
        output = model(_input(images))
        activation = rec.features["layer"]
        for i, target in enumerate(targets):
            (grad,) = torch.autograd.grad(target(output).sum(), activation, retain_graph=i < len(targets) - 1)
            layer_maps.append((grad.clamp(min=0) * activation).sum(dim=1).clamp(min=0).detach())
            grad_maps.append((grad.mean(dim=(2, 3), keepdim=True) * activation).sum(dim=1).clamp(min=0).detach())
    detached = {k: v.detach() for k, v in output.items()} if isinstance(output, dict) else output.detach()
    return _resize(torch.stack(layer_maps), size), _resize(torch.stack(grad_maps), size), detached


def _resize(cams: torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
    if size is None or tuple(cams.shape[-2:]) == tuple(size):
        return cams
    return F.interpolate(cams, size=size, mode="bilinear", align_corners=False).clamp(min=0)


def grad_cam(model: nn.Module, layer: nn.Module, images: torch.Tensor, targets: Sequence[Target],
             size: tuple[int, int] | None = None) -> torch.Tensor:
    """Grad-CAM at ``layer``: (T, B, h, w), or (T, B, *size) upsampled bilinearly."""
    return cam_maps(model, layer, images, targets, size)[1]


def layer_cam(model: nn.Module, layer: nn.Module, images: torch.Tensor, targets: Sequence[Target],
              size: tuple[int, int] | None = None) -> torch.Tensor:
    """LayerCAM at ``layer``: (T, B, h, w), or (T, B, *size) upsampled bilinearly."""
    return cam_maps(model, layer, images, targets, size)[0]


def disk_masks(hw: tuple[int, int], centres: torch.Tensor, radius: float) -> torch.Tensor:
    """(N, H, W) boolean disks of ``radius`` pixels around (N, 2) (x, y) centres."""
    h, w = hw
    ys = torch.arange(h, dtype=torch.float32).view(1, h, 1)
    xs = torch.arange(w, dtype=torch.float32).view(1, 1, w)
    cx, cy = centres[:, 0].float().view(-1, 1, 1), centres[:, 1].float().view(-1, 1, 1)
    return (xs - cx) ** 2 + (ys - cy) ** 2 <= radius ** 2


def mass_inside(attribution: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Fraction of each (..., H, W) attribution map's total that lies inside ``mask`` (NaN for an all-zero map)."""
    total = attribution.flatten(-2).sum(-1)
    inside = (attribution * mask).flatten(-2).sum(-1)
    return torch.where(total > 0, inside / total.clamp(min=1e-30), torch.full_like(total, float("nan")))
