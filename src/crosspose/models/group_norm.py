"""GroupNorm fused with the ReLU after it: a CPU kernel for channels-last float32 training.

A GroupNorm ResNet-50 training step on a 2-core CPU spends about a fifth of its time in PyTorch's
group norm and the ReLU behind it, which pass over each activation five to seven times. The kernel in
``kernels/group_norm.c`` passes twice forward and twice backward, which measured 2-2.5x faster for the
pair at ResNet-50's shapes (docs/speed.md, "GroupNorm training").

:func:`fuse_group_norm` swaps a timm ResNet's ``nn.GroupNorm`` modules for :class:`GroupNormAct` in
place. Parameters and state-dict keys are those of ``nn.GroupNorm``, so checkpoints, DeepLabCut
snapshots and freezing see no difference; where a ReLU directly follows, that ReLU becomes
``nn.Identity`` and the norm applies it. The kernel runs only where it is exact and built:

- a float32, channels-last CPU tensor (anything else: PyTorch's ``group_norm``, then the ReLU);
- not while tracing or compiling (``torch.compile``, ONNX and ``torch.export`` see PyTorch's ops);
- a C compiler on the machine (:mod:`crosspose.core.native` builds it once, about a second);
- ``CROSSPOSE_GROUP_NORM`` unset or ``fused``; ``aten`` opts out.

BatchNorm's batch statistics are the same computation with the whole batch as one sample and one
channel per group: :mod:`crosspose.models.batch_norm` runs this kernel (:func:`fused_norm`) while a fit
trains on the CPU, under the same conditions and the same opt-out.

Example::

    >>> import timm
    >>> net = timm.create_model("resnet50_gn")  # DeepLabCut 3's default backbone
    >>> fuse_group_norm(net)  # norms swapped, ReLUs fused
    (53, 33)
    >>> net.layer1[0].bn1
    GroupNormAct(32, 64, eps=1e-05, affine=True, bias=True, relu=True)
"""

from __future__ import annotations

import ctypes
import os
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from crosspose.core.errors import ConfigError
from crosspose.core.native import NativeBuildError, load_library

__all__ = ["GROUP_NORM_ENV", "GroupNormAct", "KernelNorm", "fuse_group_norm", "fuse_relus", "fused_norm",
           "kernel_status", "network_status", "unfuse_relus"]

GROUP_NORM_ENV = "CROSSPOSE_GROUP_NORM"
_SETTINGS = ("fused", "aten")
_SOURCE = Path(__file__).with_name("kernels") / "group_norm.c"
_lock = threading.Lock()
_state: dict[str, Any] = {}  # "lib" or "error", filled once per process


def _setting() -> str:
    value = os.environ.get(GROUP_NORM_ENV, "fused").strip().lower() or "fused"
    if value not in _SETTINGS:
        raise ConfigError(f"{GROUP_NORM_ENV}={value!r}: expected one of {', '.join(_SETTINGS)}")
    return value


def _library() -> Any | None:
    """The built kernel, or None (opted out, or no build; the reason is in :func:`kernel_status`)."""
    if _setting() == "aten":
        return None
    if _state:  # built, or failed: every forward after the first returns here, without the lock
        return _state.get("lib")
    with _lock:
        if not _state:
            try:
                lib = load_library(_SOURCE)
                p, i = ctypes.c_void_p, ctypes.c_int64
                lib.crosspose_group_norm_forward.argtypes = [p, p, p, p, p, p, i, i, i, i, ctypes.c_double,
                                                             ctypes.c_int]
                lib.crosspose_group_norm_backward.argtypes = [p, p, p, p, p, p, p, p, p, i, i, i, i]
                _state["lib"] = lib
            except NativeBuildError as exc:
                _state["error"] = str(exc)
                warnings.warn(f"fused GroupNorm kernel unavailable, using PyTorch's group_norm: {exc}",
                              RuntimeWarning, stacklevel=3)
    return _state.get("lib")


def kernel_status() -> str:
    """One line: whether norm layers on the CPU run the fused kernel, and why not (builds it if needed)."""
    try:
        if _setting() == "aten":
            return f"norm kernel: PyTorch's ({GROUP_NORM_ENV}=aten)"
    except ConfigError as exc:
        return f"norm kernel: {exc}"
    lib = _library()
    if lib is None:
        return f"norm kernel: PyTorch's (fused kernel not built: {_state.get('error')})"
    return "norm kernel: fused (float32 channels-last CPU tensors; others use PyTorch's)"


class KernelNorm:
    """Marks a norm layer that runs the fused kernel where it applies (:class:`GroupNormAct`, ``BatchNormAct``)."""

    relu: bool


def network_status(net: nn.Module) -> str | None:
    """:func:`kernel_status` for a network with norm layers that use the kernel; None for one without."""
    return kernel_status() if any(isinstance(m, KernelNorm) for m in net.modules()) else None


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


class _FusedNorm(torch.autograd.Function):
    """``[relu](norm(x))`` and its statistics (mean, 1/std).

    Per (sample, group), or with ``whole_batch`` per group over all samples (BatchNorm: the batch's
    rows are one sample, each channel a group).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None,  # type: ignore[override]
                groups: int, eps: float, relu: bool, whole_batch: bool,
                lib: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n, c, h, w = x.shape
        samples, rows = (1, n * h * w) if whole_batch else (n, h * w)  # channels-last: [n][h*w][c] rows
        y = torch.empty_like(x, memory_format=torch.channels_last)
        mean, rstd = x.new_empty(samples * groups), x.new_empty(samples * groups)
        if lib.crosspose_group_norm_forward(_ptr(x), _ptr(weight), _ptr(bias), _ptr(y), _ptr(mean), _ptr(rstd),
                                            samples, rows, c, groups, float(eps), int(relu)):
            raise MemoryError("fused norm kernel: out of memory for its per-channel sums")
        # y is saved only for the ReLU's mask; without the ReLU the caller may change y in place
        # (timm's Bottleneck adds the shortcut into bn3's output)
        ctx.save_for_backward(x, y if relu else None, mean, rstd, weight)
        ctx.layout, ctx.lib, ctx.has_bias = (samples, rows, c, groups), lib, bias is not None
        ctx.mark_non_differentiable(mean, rstd)
        return y, mean, rstd

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, dy: torch.Tensor, *_: Any) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        x, y, mean, rstd, weight = ctx.saved_tensors
        dy = dy.contiguous(memory_format=torch.channels_last)
        dx = torch.empty_like(x, memory_format=torch.channels_last)
        dweight = torch.empty_like(weight) if weight is not None else None
        dbias = torch.empty_like(weight) if weight is not None and ctx.has_bias else None
        if ctx.lib.crosspose_group_norm_backward(_ptr(dy), _ptr(x), _ptr(y), _ptr(mean), _ptr(rstd), _ptr(weight),
                                                 _ptr(dx), _ptr(dweight), _ptr(dbias), *ctx.layout):
            raise MemoryError("fused norm kernel: out of memory for its per-channel sums")
        return (dx, dweight if ctx.needs_input_grad[1] else None, dbias if ctx.needs_input_grad[2] else None,
                None, None, None, None, None)


def _kernel_applies(x: torch.Tensor, weight: torch.Tensor | None) -> bool:
    if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling():
        return False
    if torch.onnx.is_in_onnx_export():
        return False
    return (x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4 and x.numel() > 0
            and x.is_contiguous(memory_format=torch.channels_last)
            and (weight is None or weight.dtype == torch.float32))


def fused_norm(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, groups: int, eps: float,
               relu: bool, whole_batch: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """The kernel's ``[relu](norm(x))`` with its (mean, 1/std), or None where it does not apply or is not built.

    Statistics are per (sample, group) of ``groups`` adjacent channels; with ``whole_batch``, per group
    over every sample (``groups = channels``: BatchNorm's batch statistics).
    """
    if not _kernel_applies(x, weight):
        return None
    lib = _library()
    if lib is None:
        return None
    return _FusedNorm.apply(x, weight, bias, groups, eps, relu, whole_batch, lib)


class GroupNormAct(KernelNorm, nn.GroupNorm):
    """``nn.GroupNorm`` (same parameters, same state-dict keys), optionally followed by a ReLU.

    Runs the fused kernel where it applies (see the module docstring), PyTorch's ``group_norm``
    (and ``relu``) everywhere else: GPUs, bf16, NCHW tensors, tracing and compiling.
    """

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True,
                 relu: bool = False, device: Any = None, dtype: Any = None) -> None:
        super().__init__(num_groups, num_channels, eps=eps, affine=affine, device=device, dtype=dtype)
        self.relu = relu

    @classmethod
    def from_group_norm(cls, norm: nn.GroupNorm, relu: bool = False) -> GroupNormAct:
        """The same layer, holding ``norm``'s own parameters (not copies)."""
        new = cls(norm.num_groups, norm.num_channels, eps=norm.eps, affine=norm.affine, relu=relu)
        if norm.affine:
            new.weight, new.bias = norm.weight, norm.bias
        return new.train(norm.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = (self.weight, self.bias) if self.affine else (None, None)
        fused = fused_norm(x, weight, bias, self.num_groups, self.eps, self.relu)
        if fused is not None:
            return fused[0]
        y = F.group_norm(x, self.num_groups, weight, bias, self.eps)
        return F.relu(y, inplace=True) if self.relu else y

    def extra_repr(self) -> str:
        return super().extra_repr() + (", relu=True" if self.relu else "")


def _relu_pairs(net: nn.Module) -> Iterator[tuple[nn.Module, str, str, tuple[str, ...]]]:
    """(parent, norm, ReLU, modules that must be identities between) for every norm timm's ResNets follow with a ReLU.

    The stem's ``bn1``/``act1``; a Bottleneck's ``bn1``/``act1`` and ``bn2``/``act2`` (with its
    ``drop_block`` off); a BasicBlock's ``bn1``/``act1``. The ReLU after a block's residual add follows
    the add, not a norm.
    """
    for parent in list(net.modules()):
        kind = type(parent).__name__
        if kind == "Bottleneck":
            yield parent, "bn1", "act1", ()
            yield parent, "bn2", "act2", ("drop_block",)
        elif kind == "BasicBlock":
            yield parent, "bn1", "act1", ("drop_block",)
        elif hasattr(parent, "conv1") and hasattr(parent, "maxpool"):  # a ResNet's stem
            yield parent, "bn1", "act1", ()


def fuse_relus(net: nn.Module, norm_type: type[KernelNorm]) -> int:
    """Let each ``norm_type`` layer that a plain ReLU directly follows apply it; that ReLU becomes ``nn.Identity``."""
    fused = 0
    for parent, norm_name, act_name, between in _relu_pairs(net):
        norm, act = getattr(parent, norm_name, None), getattr(parent, act_name, None)
        if not isinstance(norm, norm_type) or type(act) is not nn.ReLU:
            continue
        if any(not isinstance(getattr(parent, name, nn.Identity()), nn.Identity) for name in between):
            continue
        norm.relu = True
        setattr(parent, act_name, nn.Identity())
        fused += 1
    return fused


def unfuse_relus(net: nn.Module, norm_type: type[KernelNorm]) -> int:
    """Undo :func:`fuse_relus`: each ``norm_type`` layer that applies a ReLU gets its ``nn.ReLU`` module back."""
    restored = 0
    for parent, norm_name, act_name, _ in _relu_pairs(net):
        norm, act = getattr(parent, norm_name, None), getattr(parent, act_name, None)
        if isinstance(norm, norm_type) and norm.relu and isinstance(act, nn.Identity):
            norm.relu = False
            setattr(parent, act_name, nn.ReLU(inplace=True))
            restored += 1
    return restored


def fuse_group_norm(net: nn.Module) -> tuple[int, int]:
    """Swap every ``nn.GroupNorm`` in ``net`` for :class:`GroupNormAct`, fusing the ReLUs after them.

    The ReLUs fused are those timm's ResNets apply right after a norm (:func:`fuse_relus`): the stem's,
    and each block's after ``bn1`` and ``bn2``. The ReLU after a block's residual add stays a module of
    its own.

    Returns:
        (norms swapped, ReLUs fused). A network without GroupNorm is left as it is: (0, 0).
    """
    swapped = 0
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.GroupNorm) and not isinstance(child, GroupNormAct):  # timm subclasses it
                setattr(parent, name, GroupNormAct.from_group_norm(child))
                swapped += 1
    return swapped, fuse_relus(net, GroupNormAct)
