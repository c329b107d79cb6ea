"""The network inference runs: BatchNorm folded, fused oneDNN calls for bf16 on a CPU, optionally compiled.

:func:`inference_network` is the one way to build it (``crosspose predict`` / ``analyze`` and the
training module's predict step).
"""

from __future__ import annotations

import copy
import itertools
import logging
from typing import Any

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from crosspose.core import hardware
from crosspose.models.onednn import onednn_inference

__all__ = ["CompiledInference", "did_compile", "fold_batchnorm", "inference_copy", "inference_network"]

log = logging.getLogger(__name__)


def fold_batchnorm(module: nn.Module) -> int:
    """Fold every BatchNorm2d that directly follows a Conv2d into it, in place; returns how many.

    timm ResNets keep each ``convN`` next to its ``bnN`` (and ``downsample`` is conv, bn), so adjacent
    children are the pairs. Uses eval-mode statistics: the result is for inference only.
    """
    folded = 0
    for parent in list(module.modules()):
        names = list(parent._modules)
        for a, b in itertools.pairwise(names):
            conv, bn = parent._modules[a], parent._modules[b]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                parent._modules[a] = fuse_conv_bn_eval(conv, bn)
                parent._modules[b] = nn.Identity()
                folded += 1
    return folded


def inference_copy(net: nn.Module, channels_last: bool = True) -> nn.Module:
    """A folded, eval-mode copy of ``net`` (the original keeps training as before)."""
    folded = copy.deepcopy(net).eval()
    fold_batchnorm(folded)
    for p in folded.parameters():
        p.requires_grad_(False)
    if channels_last:
        folded.to(memory_format=torch.channels_last)
    return folded


def inference_network(net: nn.Module, device: torch.device, precision: str, compile: str = "auto",
                      channels_last: bool = True) -> tuple[nn.Module, hardware.CompileChoice]:
    """The network inference runs (a folded copy of ``net`` on ``device``) and whether it is compiled.

    ``precision`` is what the caller's autocast computes in (``fp32``, ``bf16``, ...). For bf16 on a
    CPU the network is the fused oneDNN copy where the backbone allows
    (:func:`crosspose.models.onednn.onednn_inference`; others run under autocast as they are).
    ``compile`` (``auto`` | ``on`` | ``off``) is decided by
    :func:`crosspose.core.hardware.choose_inference_compile`, told whether the copy is fused; compiled,
    the eager network serves the shapes past the compiled ones and a failed compile.
    """
    folded = inference_copy(net, channels_last).to(device)
    fused = onednn_inference(folded, torch.bfloat16) if device.type == "cpu" and precision == "bf16" else None
    choice = hardware.choose_inference_compile(hardware.read_cpu_features(), device.type, precision, compile,
                                               fused=fused is not None)
    eager = folded if fused is None else fused
    return (CompiledInference(folded, eager=eager) if choice.on else eager), choice


def did_compile(net: Any) -> bool:
    """Whether ``net`` ran compiled at least once (False for an eager network or a failed compile)."""
    return bool(getattr(net, "compiled_shapes", None))


class CompiledInference(nn.Module):
    """``net`` run through ``torch.compile`` (Inductor) with its weights frozen, ``eager`` as the fallback.

    Freezing makes the weights constants of the compiled graph: Inductor folds what is computed from
    them alone (autocast's per-call bf16 copies, the prepacking of oneDNN's convolution layouts) once,
    at compile time. Only for inference (the weights must not change after the first call).

    Each new input shape compiles again (seconds), so a batch shorter than the first one (the last
    batch of a video or folder) is padded to the first one's size with zero frames and the outputs are
    cut back: one shape per frame size. At most ``max_shapes`` shapes are compiled; frames of further
    sizes (a folder of images of many sizes) run eagerly, so compiling never costs more than
    ``max_shapes`` compiles. If compiling fails (no C++ compiler, an unsupported operator), a warning
    names the error and this module runs eagerly from then on, with the same result.

    ``eager`` (default ``net``, the same arithmetic) is what runs uncompiled: the shapes past
    ``max_shapes`` and everything after a failed compile. ``compiled_shapes`` lists the shapes
    compiled so far.

    Example:
        >>> net = inference_copy(my_network)                    # doctest: +SKIP
        >>> fast = CompiledInference(net)                       # doctest: +SKIP
        >>> with torch.inference_mode(): out = fast(images)     # doctest: +SKIP
    """

    def __init__(self, net: nn.Module, max_shapes: int = 4, eager: nn.Module | None = None) -> None:
        super().__init__()
        self.net = net
        self.eager = net if eager is None else eager
        self._compiled: Any = torch.compile(net, dynamic=False)
        self.batch: int | None = None
        self.max_shapes = max_shapes
        self.shapes: set[tuple[int, ...]] = set()  # the input shapes compiled so far
        self.failed: str | None = None  # the compile error, once eager has taken over

    @property
    def compiled_shapes(self) -> list[tuple[int, ...]]:
        """The input shapes compiled so far."""
        return sorted(self.shapes)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.failed is not None:
            return self.eager(images)
        n = len(images)
        self.batch = self.batch or n
        if n < self.batch:
            padded = images.new_zeros((self.batch, *images.shape[1:]))
            if images.dim() == 4 and images.is_contiguous(memory_format=torch.channels_last):
                padded = padded.contiguous(memory_format=torch.channels_last)  # same strides: no recompile
            padded[:n] = images
            return {k: v[:n] for k, v in self.forward(padded).items()}
        shape = tuple(images.shape)
        if shape not in self.shapes:
            if len(self.shapes) >= self.max_shapes:
                return self.eager(images)
            self.shapes.add(shape)
        try:
            # freezing is read while the graph compiles, at the first call of each shape; passed as
            # torch.compile(options=...) it did not take (69 vs 99 img/s, ResNet-50 bf16 on AMX)
            with _inductor_freezing():
                return self._compiled(images)
        except Exception as exc:  # Inductor raises many types (compiler missing, a lowering it lacks)
            first_line = (str(exc).strip().splitlines() or [""])[0][:300]
            self.failed = f"{type(exc).__name__}: {first_line}"
            self.shapes.clear()  # none of them runs compiled from now on
            log.warning("torch.compile failed, running eagerly instead (same results, slower): %s", self.failed)
            return self.eager(images)


def _inductor_freezing() -> Any:
    import torch._inductor.config

    return torch._inductor.config.patch(freezing=True)
