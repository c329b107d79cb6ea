"""A BatchNorm-folded ResNet as oneDNN calls: weights prepacked once, ReLU and residual add fused.

Eager bf16 autocast on a CPU pays, on every call, for casting each fp32 weight to bf16, for oneDNN
reordering it into its blocked layout, and for separate ReLU and residual-add passes over every
activation. :func:`onednn_inference` does the first two once and hands the last two to oneDNN as
post-ops of the convolution before them (``torch.ops.mkldnn._convolution_pointwise``, the operators
Inductor's own CPU lowering calls); the transposed-convolution heads become regular convolutions
and a pixel shuffle (:class:`_SubpixelHead`). The result is bit-identical to the same network with bf16
weights run eagerly. On a 2-core Xeon with AMX it ran ResNet-50 (256 px, batch 8) at 87-103 img/s
against 50-58 for eager autocast and 104-118 compiled, and ``crosspose analyze`` of a 640x480 video
faster than compiled (17.1-18.5 vs 15.1-16.5 frames/s), with a first call of 0.1 s where
``torch.compile`` takes 5 s in every new process. See docs/speed.md, "Compiled inference".

Only timm ResNets whose BatchNorms were folded (:func:`crosspose.models.inference.inference_copy`)
are rewritten; anything else (GroupNorm, the TF-slim backbone, squeeze-excitation, anti-aliasing)
returns None and runs as it is.

Example:
    >>> net = inference_copy(PoseNetwork(16, "resnet50"))            # doctest: +SKIP
    >>> fast = onednn_inference(net, torch.bfloat16)                 # doctest: +SKIP
    >>> with torch.inference_mode(): maps = fast(images)["heatmap"]  # doctest: +SKIP
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

__all__ = ["PackedConv", "onednn_inference"]


class PackedConv(nn.Module):
    """A Conv2d (bias included, BatchNorm already folded in) as one oneDNN call, optionally with ReLU.

    The weight is cast to ``dtype`` now and reordered into oneDNN's layout at the first call, for
    that call's input shape (the layout oneDNN picks depends on it; other shapes still compute the
    same result). ``forward(x, residual)`` returns ``relu(conv(x) + residual)``; with
    ``overwrite=True`` it is written into ``residual``'s memory (a temporary, never a block's input).
    """

    def __init__(self, conv: nn.Conv2d, dtype: torch.dtype, relu: bool) -> None:
        super().__init__()
        if not _plain(conv):
            raise ValueError(f"unsupported convolution padding {conv.padding!r} ({conv.padding_mode})")
        self.weight: torch.Tensor | None = conv.weight.detach().to(dtype)
        self.bias = None if conv.bias is None else conv.bias.detach().to(dtype)
        self.args = (list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
        self.attr = "relu" if relu else "none"
        self.dtype = dtype
        self.packed: torch.Tensor | None = None  # an opaque oneDNN tensor, made at the first call

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None, overwrite: bool = False) -> torch.Tensor:
        x = x.to(self.dtype)  # the stem receives the fp32 normalised image
        if self.packed is None:
            self.packed = torch.ops.mkldnn._reorder_convolution_weight(self.weight, *self.args, list(x.shape))
            self.weight = None  # the packed copy is all that runs (25 M weights: 50 MB of bf16 freed)
        if residual is None:
            return torch.ops.mkldnn._convolution_pointwise(x, self.packed, self.bias, *self.args, self.attr, [], "")
        if overwrite:
            return torch.ops.mkldnn._convolution_pointwise_.binary(
                residual, x, self.packed, self.bias, *self.args, "add", 1.0, "relu", [], "")
        return torch.ops.mkldnn._convolution_pointwise.binary(
            x, residual, self.packed, self.bias, *self.args, "add", 1.0, "relu", [], "")


_PHASE_TAPS = {0: ((1, 0), (0, 2)), 1: ((1, 1),)}  # output phase -> (2x2 tap, 3x3 transposed tap) pairs


class _SubpixelHead(nn.Module):
    """A :class:`~crosspose.models.heads.DeconvHead` as one regular convolution and a pixel shuffle.

    Output row 2m + p of the 3x3 stride-2 transposed convolution takes kernel row 0 at input row m
    and kernel row 2 at m - 1 (p = 0), or kernel row 1 at m (p = 1); columns alike. So a 2x2
    convolution padded by one, with the four phases (p, q) as output channels, followed by
    ``pixel_shuffle(2)``, gives the same maps (first 2H or 2H + 1 rows and columns, cropped or
    not): oneDNN runs it 2.4-2.7x faster than the transposed convolution (ResNet-50's two heads, bf16
    on AMX, batch 8: 16.6 vs 39.5 ms at 640x480, 3.6 vs 10.1 ms at 256 px).
    """

    def __init__(self, head: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        deconv: Any = head.deconv
        weight = deconv.weight.detach().float()  # (in, out, 3, 3)
        cin, cout = weight.shape[:2]
        phases = weight.new_zeros(cout, 2, 2, cin, 2, 2)
        for p, q in ((0, 0), (0, 1), (1, 0), (1, 1)):
            for a, kh in _PHASE_TAPS[p]:
                for b, kw in _PHASE_TAPS[q]:
                    phases[:, p, q, :, a, b] = weight[:, :, kh, kw].t()
        conv = nn.Conv2d(cin, 4 * cout, 2, padding=1)
        conv.weight = nn.Parameter(phases.reshape(4 * cout, cin, 2, 2))  # channel 4c + 2p + q: pixel_shuffle's order
        conv.bias = nn.Parameter(deconv.bias.detach().float().repeat_interleave(4))
        self.conv = PackedConv(conv, dtype, relu=False)
        self.extra = 0 if head.crop else 1  # DeepLabCut 3's uncropped maps keep row and column 2H

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        return nn.functional.pixel_shuffle(self.conv(x), 2)[:, :, :2 * h + self.extra, :2 * w + self.extra]


def _subpixel_ready(head: nn.Module) -> bool:
    d = getattr(head, "deconv", None)
    return (isinstance(d, nn.ConvTranspose2d) and hasattr(head, "crop") and d.bias is not None
            and tuple(d.kernel_size) == (3, 3) and tuple(d.stride) == (2, 2) and tuple(d.padding) == (0, 0)
            and tuple(d.output_padding) == (0, 0) and tuple(d.dilation) == (1, 1) and d.groups == 1)


def _plain(conv: nn.Module) -> bool:
    """A Conv2d with numeric zero padding (``'same'`` or reflective padding is not passed to oneDNN)."""
    return isinstance(conv, nn.Conv2d) and conv.padding_mode == "zeros" and not isinstance(conv.padding, str)


class _FusedBlock(nn.Module):
    """A timm BasicBlock or Bottleneck: each conv with its ReLU, the last one adding the shortcut."""

    def __init__(self, convs: list[nn.Conv2d], downsample: nn.Conv2d | None, dtype: torch.dtype) -> None:
        super().__init__()
        self.inner = nn.ModuleList(PackedConv(c, dtype, relu=True) for c in convs[:-1])
        self.last = PackedConv(convs[-1], dtype, relu=False)
        self.downsample = None if downsample is None else PackedConv(downsample, dtype, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for conv in self.inner:
            y = conv(y)
        if self.downsample is None:
            return self.last(y, x)
        return self.last(y, self.downsample(x), overwrite=True)  # the sum into the fresh shortcut's memory


_BLOCK_CONVS = {"BasicBlock": ("conv1", "conv2"), "Bottleneck": ("conv1", "conv2", "conv3")}
_IDENTITY_PARTS = ("bn1", "bn2", "bn3", "drop_block", "aa")


def _fused_block(block: nn.Module, dtype: torch.dtype) -> _FusedBlock | None:
    names = _BLOCK_CONVS.get(type(block).__name__)
    if names is None or getattr(block, "se", None) is not None or getattr(block, "drop_path", None) is not None:
        return None
    if any(not isinstance(getattr(block, n, nn.Identity()), nn.Identity) for n in _IDENTITY_PARTS):
        return None  # an unfolded norm (GroupNorm), anti-aliasing or drop-block: not a plain block
    if any(not isinstance(getattr(block, a, None), nn.ReLU) for a in ("act1", "act2", "act3")[:len(names)]):
        return None
    convs = [getattr(block, n) for n in names]
    if not all(_plain(c) for c in convs):
        return None
    shortcut: Any = block.downsample
    downsample: Any = None
    if shortcut is not None:
        parts = list(shortcut) if isinstance(shortcut, nn.Sequential) else [shortcut]
        if not parts or not _plain(parts[0]) or any(not isinstance(p, nn.Identity) for p in parts[1:]):
            return None  # e.g. the average-pool shortcut of ResNet-D
        downsample = parts[0]
    return _FusedBlock(convs, downsample, dtype)


def onednn_inference(net: nn.Module, dtype: torch.dtype = torch.bfloat16) -> nn.Module | None:
    """A copy of the folded ``net`` whose backbone runs as fused oneDNN calls in ``dtype``; None if unsupported.

    ``net`` is a :class:`~crosspose.models.network.PoseNetwork` after
    :func:`~crosspose.models.inference.inference_copy`; it is not changed. The heads run in ``dtype``
    as sub-pixel convolutions (:class:`_SubpixelHead`), so the maps come back in ``dtype``. None when PyTorch has no oneDNN, or the
    backbone is not a folded timm ResNet of plain BasicBlocks or Bottlenecks.
    """
    if not torch.backends.mkldnn.is_available():
        return None
    body = getattr(getattr(net, "backbone", None), "body", None)
    if body is None or not all(hasattr(body, n) for n in ("conv1", "bn1", "act1", "layer1")):
        return None
    if not _plain(body.conv1) or not isinstance(body.bn1, nn.Identity) or not isinstance(body.act1, nn.ReLU):
        return None
    fused: dict[str, _FusedBlock] = {}
    for name, module in body.named_modules():
        if type(module).__name__ in _BLOCK_CONVS:
            block = _fused_block(module, dtype)
            if block is None:
                return None
            fused[name] = block
    if not fused:
        return None
    replaced: dict[str, nn.Module] = {f"backbone.body.{name}": block for name, block in fused.items()}
    replaced["backbone.body.conv1"] = PackedConv(body.conv1, dtype, relu=True)  # casts the fp32 image
    replaced["backbone.body.act1"] = nn.Identity()
    for name, head in net.named_children():
        if name != "backbone" and head is not None:
            replaced[name] = _SubpixelHead(head, dtype) if _subpixel_ready(head) else copy.deepcopy(head).to(dtype)
    # copy the rest only (normalisation buffers, pooling): the memo hands deepcopy the new modules
    # instead of copying the fp32 weights they replace
    out = copy.deepcopy(net, memo={id(net.get_submodule(name)): new for name, new in replaced.items()})
    for name, new in replaced.items():
        parent, _, child = name.rpartition(".")
        setattr(out.get_submodule(parent), child, new)
    return out
