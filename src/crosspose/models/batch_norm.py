"""BatchNorm fused with the ReLU after it, for CPU training: the GroupNorm kernel on batch statistics.

A BatchNorm ResNet-50 training step on a 2-core CPU spends about a fifth of its time in ATen's batch
norm, forward and backward, and the ReLU behind it. BatchNorm's batch statistics are a group norm over
one "sample" made of the whole batch with one channel per group, so the fused kernel of
:mod:`crosspose.models.group_norm` computes them unchanged (its two passes forward and two backward,
the ReLU free). Measured on the 2-core Xeon, the benchmark's Lightning fit of ResNet-50 at batch 8,
256 px, four alternating pairs: 4.89 against 4.60 img/s (docs/speed.md, "BatchNorm training").

Only while training, and only on the CPU: ``PoseEstimationModule`` calls :func:`fuse_batch_norm` when
a fit starts on the CPU and :func:`unfuse_batch_norm` when it ends (or fails). Outside a fit the
network holds plain ``nn.BatchNorm2d`` and ``nn.ReLU`` modules again, so everything that replaces
BatchNorm layers by type (folding them into convolutions, ``FrozenBatchNorm2d``, ``SyncBatchNorm``)
sees the network it expects. During the fit:

- :class:`BatchNormAct` is an ``nn.BatchNorm2d`` (the same object: parameters, buffers, hooks, mode);
- in training mode it runs the kernel on float32 channels-last CPU tensors with more than one value
  per channel, and updates ``running_mean`` / ``running_var`` / ``num_batches_tracked`` as PyTorch
  does (``momentum`` or, with ``momentum=None``, the cumulative average; unbiased running variance);
- in eval mode (``norm: frozen``, softly frozen stages, validation), or where the kernel does not
  apply (bf16 autocast, NCHW, GPUs, tracing, ``CROSSPOSE_GROUP_NORM=aten``), ATen's batch norm and ReLU.

A fit on the CPU logs ``fit: norm kernel: ...`` with whether the kernel runs, and why not.

Example::

    >>> import timm
    >>> net = timm.create_model("resnet50")
    >>> fuse_batch_norm(net)  # norms swapped, ReLUs fused
    (53, 33)
    >>> unfuse_batch_norm(net)  # back to nn.BatchNorm2d and nn.ReLU
    53
    >>> type(net.bn1).__name__, type(net.act1).__name__
    ('BatchNorm2d', 'ReLU')
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from crosspose.models.group_norm import KernelNorm, fuse_relus, fused_norm, unfuse_relus

__all__ = ["BatchNormAct", "fuse_batch_norm", "unfuse_batch_norm"]


class BatchNormAct(KernelNorm, nn.BatchNorm2d):
    """``nn.BatchNorm2d`` that may apply the ReLU after it; training-mode statistics through the kernel.

    Made from an existing layer by :func:`fuse_batch_norm` (a class swap: no new parameters or
    buffers), and turned back by :func:`unfuse_batch_norm`.
    """

    relu: bool = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch_statistics = self.training or self.running_mean is None
        values_per_channel = x.numel() // max(1, x.shape[1]) if x.dim() == 4 else 0
        if batch_statistics and values_per_channel > 1:  # PyTorch refuses one value per channel: it says so
            weight, bias = (self.weight, self.bias) if self.affine else (None, None)
            fused = fused_norm(x, weight, bias, self.num_features, self.eps, self.relu, whole_batch=True)
            if fused is not None:
                y, mean, rstd = fused
                if self.training and self.track_running_stats:
                    self._update_running_statistics(mean, rstd, values_per_channel)
                return y
        y = super().forward(x)
        return F.relu(y, inplace=True) if self.relu else y

    @torch.no_grad()
    def _update_running_statistics(self, mean: torch.Tensor, rstd: torch.Tensor, count: int) -> None:
        """PyTorch's update: an exponential (or, momentum None, cumulative) average, unbiased variance."""
        assert self.num_batches_tracked is not None and self.running_mean is not None and self.running_var is not None
        self.num_batches_tracked.add_(1)
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        # the kernel returns 1/sqrt(var + eps), from double; var back from it keeps float32's digits
        variance = (rstd.double().pow(-2) - self.eps).clamp_min(0.0) * (count / (count - 1))
        self.running_mean.lerp_(mean, factor)
        self.running_var.lerp_(variance.to(self.running_var.dtype), factor)

    def extra_repr(self) -> str:
        return super().extra_repr() + (", relu=True" if self.relu else "")


def fuse_batch_norm(net: nn.Module) -> tuple[int, int]:
    """Make every ``nn.BatchNorm2d`` in ``net`` a :class:`BatchNormAct` and fuse the ReLUs after them.

    Only plain ``nn.BatchNorm2d`` layers change (not ``SyncBatchNorm``, ``FrozenBatchNorm2d`` or other
    subclasses); the ReLUs fused are those of :func:`crosspose.models.group_norm.fuse_relus`.

    Returns:
        (norms swapped, ReLUs fused); (0, 0) for a network without such layers, or one already fused.
    """
    swapped = 0
    for module in net.modules():
        if type(module) is nn.BatchNorm2d:
            module.__class__ = BatchNormAct  # the same object, so optimizers, hooks and buffers still hold
            swapped += 1
    return swapped, fuse_relus(net, BatchNormAct)


def unfuse_batch_norm(net: nn.Module) -> int:
    """Undo :func:`fuse_batch_norm`: plain ``nn.BatchNorm2d`` and ``nn.ReLU`` modules again; returns the norms."""
    unfuse_relus(net, BatchNormAct)
    restored = 0
    for module in net.modules():
        if type(module) is BatchNormAct:
            module.__class__ = nn.BatchNorm2d  # type: ignore[assignment]
            module.__dict__.pop("relu", None)
            restored += 1
    return restored
