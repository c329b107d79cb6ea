"""TF-slim's ResNet v1 (``resnet_v1_50/101/152``) as DeepLabCut 2 / DeeperCut run it, in PyTorch.

Faithful to ``tf_slim.nets.resnet_v1`` + ``resnet_utils`` so that converted DeepLabCut 2 snapshots
give TensorFlow's outputs:

- root: ``conv2d_same(7x7, stride 2)`` (explicit padding 3 on each side, then VALID), BatchNorm,
  ReLU, then a 3x3 stride-2 max-pool with TensorFlow "SAME" padding, which is size dependent and
  asymmetric (an even input gets no row/column before and one after, an odd one one on each side);
- bottleneck v1 units: 1x1 -> 3x3 (``conv2d_same``: the stride and the atrous rate sit here) -> 1x1,
  BatchNorm after each, shortcut = 1x1 conv + BatchNorm when the depth changes, otherwise the input
  subsampled by the unit's stride (a 1x1 max-pool: every second pixel from the first);
- blocks of 3/4/6/3 (50), 3/4/23/3 (101), 3/8/36/3 (152) units whose LAST unit carries the block's
  stride (2 for blocks 1-3);
- ``output_stride`` 16 exactly as ``stack_blocks_dense``: once the running stride reaches it, units
  run with stride 1 and the dilation rate grows by each skipped stride (block 3 keeps rate 1,
  block 4 runs at rate 2);
- BatchNorm epsilon 1e-5 and decay 0.997 (``resnet_arg_scope``), no biases on convolutions;
- input: RGB minus DeepLabCut's mean pixel (123.68, 116.779, 103.939), no division.

Every 3x3/7x7 convolution in this network has symmetric padding (``conv2d_same`` for strided ones,
"SAME" at stride 1), so ordinary ``padding=`` works for them and BatchNorm folding still applies;
only the root max-pool needs per-size padding.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from crosspose.core.errors import ConfigError

__all__ = ["DLC_MEAN_PIXEL", "SLIM_UNITS", "SlimResNetV1", "parse_slim_name", "slim_name", "tf_same_padding"]

SLIM_UNITS: dict[int, tuple[int, int, int, int]] = {
    50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3), 200: (3, 24, 36, 3)}
STANDARD_DEPTHS: tuple[int, int, int, int, int] = (64, 64, 128, 256, 512)
"""Root channels, then the bottleneck depth of blocks 1-4 (unit outputs are 4x that)."""
DLC_MEAN_PIXEL: tuple[float, float, float] = (123.68, 116.779, 103.939)
BN_EPSILON = 1e-5
BN_DECAY = 0.997

_NAME = re.compile(r"^slim_resnet_v1_(\d+)(?:_c(\d+(?:-\d+){4}))?$")


def parse_slim_name(name: str) -> tuple[int, tuple[int, int, int, int, int]]:
    """``slim_resnet_v1_50`` -> (50, standard depths); ``..._c64-8-16-32-64`` gives other widths."""
    m = _NAME.match(name)
    if not m or int(m.group(1)) not in SLIM_UNITS:
        raise ConfigError(f"backbone {name!r} is not a TF-slim ResNet v1 name (slim_resnet_v1_50, "
                          "slim_resnet_v1_101, slim_resnet_v1_152, optionally _c<root>-<b1>-<b2>-<b3>-<b4>)")
    depths = tuple(int(v) for v in m.group(2).split("-")) if m.group(2) else STANDARD_DEPTHS
    if any(d <= 0 for d in depths):
        raise ConfigError(f"backbone {name!r}: channel counts must be positive")
    return int(m.group(1)), depths  # type: ignore[return-value]


def slim_name(layers: int, depths: tuple[int, ...] = STANDARD_DEPTHS) -> str:
    """The backbone name for a depth and channel layout (the suffix only when non-standard)."""
    base = f"slim_resnet_v1_{layers}"
    return base if tuple(depths) == STANDARD_DEPTHS else base + "_c" + "-".join(str(d) for d in depths)


def tf_same_padding(size: int, kernel: int, stride: int, rate: int = 1) -> tuple[int, int]:
    """TensorFlow "SAME": (before, after) so that the output is ceil(size / stride)."""
    effective = kernel + (kernel - 1) * (rate - 1)
    out = -(-size // stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


class ConvBN(nn.Module):
    """``slim.conv2d`` with BatchNorm (and ReLU unless ``relu=False``), padding as slim's ResNet does."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, rate: int = 1, relu: bool = True) -> None:
        super().__init__()
        # conv2d_same (stride > 1) and "SAME" at stride 1 both pad (effective kernel - 1) / 2 per side
        pad = (kernel + (kernel - 1) * (rate - 1) - 1) // 2
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=pad, dilation=rate, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPSILON, momentum=1.0 - BN_DECAY)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return F.relu(x) if self.relu else x


class SamePadMaxPool(nn.Module):
    """``slim.max_pool2d(3x3, stride 2, padding="SAME")``: pads with -inf, asymmetric by size."""

    def __init__(self, kernel: int = 3, stride: int = 2) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel < self.stride:  # not slim's pool; the general rule, fixed per traced size
            top, bottom = tf_same_padding(x.shape[-2], self.kernel, self.stride)
            left, right = tf_same_padding(x.shape[-1], self.kernel, self.stride)
        else:  # branch-free: torch.export keeps the padding a function of the frame size (ONNX export)
            top, bottom = _same_split(x.shape[-2], self.kernel, self.stride)
            left, right = _same_split(x.shape[-1], self.kernel, self.stride)
        return F.max_pool2d(F.pad(x, (left, right, top, bottom), value=float("-inf")), self.kernel, self.stride)


def _same_split(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """``tf_same_padding`` for kernel >= stride, with no comparison on the size.

    There the total, kernel - stride + (-size mod stride), is never negative, so plain arithmetic
    gives it and a symbolic size (torch.export) stays symbolic.
    """
    total = kernel - stride + (-size) % stride
    return total // 2, total - total // 2


class BottleneckV1(nn.Module):
    """slim's ``bottleneck`` (v1): stride and rate on the 3x3; shortcut conv only when depth changes."""

    def __init__(self, cin: int, depth: int, bottleneck: int, stride: int, rate: int) -> None:
        super().__init__()
        self.stride = stride
        self.shortcut = None if cin == depth else ConvBN(cin, depth, 1, stride, relu=False)
        self.conv1 = ConvBN(cin, bottleneck, 1)
        self.conv2 = ConvBN(bottleneck, bottleneck, 3, stride, rate)
        self.conv3 = ConvBN(bottleneck, depth, 1, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shortcut is not None:
            shortcut = self.shortcut(x)
        else:
            shortcut = x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x
        return F.relu(shortcut + self.conv3(self.conv2(self.conv1(x))))


class SlimResNetV1(nn.Module):
    """The slim ResNet v1 trunk (no global pool, no logits).

    Children ``conv1`` (root conv), ``pool1``, ``block1``-``block4`` (``nn.Sequential`` of units,
    ``block3[11]`` is slim's ``block3/unit_12``).

    Args:
        layers: 50, 101, 152 (or 200).
        depths: root channels and the bottleneck depth of each block (default: the standard widths).
        output_stride: 8, 16 (DeepLabCut) or 32 (no atrous convolution).
    """

    block1: nn.Sequential
    block2: nn.Sequential
    block3: nn.Sequential
    block4: nn.Sequential

    def __init__(self, layers: int = 50, depths: tuple[int, ...] = STANDARD_DEPTHS, output_stride: int = 16) -> None:
        super().__init__()
        if layers not in SLIM_UNITS:
            raise ConfigError(f"TF-slim ResNet v1 has no {layers}-layer variant ({', '.join(map(str, SLIM_UNITS))})")
        if output_stride % 4 or output_stride < 4:
            raise ConfigError(f"output_stride must be a multiple of 4, got {output_stride}")
        self.layers = layers
        self.depths = tuple(depths)
        self.conv1 = ConvBN(3, depths[0], 7, stride=2)
        self.pool1 = SamePadMaxPool(3, 2)
        target = output_stride // 4  # the root already strides 4
        current, rate = 1, 1
        cin = depths[0]
        for b, (units, base) in enumerate(zip(SLIM_UNITS[layers], depths[1:], strict=True)):
            block_stride = 2 if b < 3 else 1
            modules = []
            for u in range(units):
                stride = block_stride if u == units - 1 else 1
                if current == target:  # stack_blocks_dense: atrous from here on
                    modules.append(BottleneckV1(cin, 4 * base, base, 1, rate))
                    rate *= stride
                else:
                    modules.append(BottleneckV1(cin, 4 * base, base, stride, 1))
                    current *= stride
                cin = 4 * base
            self.add_module(f"block{b + 1}", nn.Sequential(*modules))
        if current != target:
            raise ConfigError(f"output_stride {output_stride} is larger than the network's own stride")

    @property
    def channels(self) -> tuple[int, int]:
        """Output channels of block 3 and block 4 units."""
        return 4 * self.depths[3], 4 * self.depths[4]

    def forward(self, x: torch.Tensor, intermediate_unit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(output of block3/unit_``intermediate_unit`` (default: the last), output of block 4)."""
        x = self.pool1(self.conv1(x))
        x = self.block2(self.block1(x))
        block3 = self.block3
        last = len(block3) if intermediate_unit is None else intermediate_unit
        interm = x
        for i, unit in enumerate(block3):
            x = unit(x)
            if i == last - 1:
                interm = x
        return interm, self.block4(x)
