"""TF-slim ResNet v1: slim's unit layout, atrous output stride 16, TF "SAME" padding, freezing."""

from __future__ import annotations

import pytest
import timm
import torch
from torchvision.ops.misc import FrozenBatchNorm2d

from crosspose.core.errors import ConfigError
from crosspose.models.backbone import build_backbone
from crosspose.models.freeze import freeze_backbone
from crosspose.models.inference import inference_copy
from crosspose.models.network import PoseNetwork
from crosspose.models.slim_resnet import SamePadMaxPool, SlimResNetV1, parse_slim_name, tf_same_padding

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TINY = "slim_resnet_v1_50_c8-2-2-2-2"


def test_tf_same_padding_is_asymmetric_and_size_dependent() -> None:
    assert tf_same_padding(64, 3, 2) == (0, 1)  # even: nothing before, one after
    assert tf_same_padding(65, 3, 2) == (1, 1)
    assert tf_same_padding(64, 7, 2) == (2, 3)
    assert tf_same_padding(64, 1, 2) == (0, 0)
    assert tf_same_padding(10, 3, 1, rate=2) == (2, 2)


def test_root_max_pool_windows_match_tensorflow_same() -> None:
    pool = SamePadMaxPool(3, 2)
    # width 6: windows [0..2], [2..4], [4..5 + pad]; width 5: [pad + 0..1], [1..3], [3..4 + pad]
    six = torch.tensor([[[[5.0, 1, 2, 9, 3, 4]]]])
    assert pool(six.expand(1, 1, 3, 6).contiguous())[0, 0, 0].tolist() == [5.0, 9.0, 4.0]
    five = torch.tensor([[[[1.0, 7, 2, 3, 8]]]])
    assert pool(five.expand(1, 1, 3, 5).contiguous())[0, 0, 0].tolist() == [7.0, 7.0, 8.0]
    negative = -torch.ones(1, 1, 4, 4)  # the padding never wins a window (-inf, not 0)
    assert pool(negative).max().item() == -1.0


def test_unit_layout_strides_and_atrous_rates_of_resnet_v1_50() -> None:
    net = SlimResNetV1(50)
    units = [len(getattr(net, f"block{b}")) for b in range(1, 5)]
    assert units == [3, 4, 6, 3]
    # output_stride 16: blocks 1-2 stride in their LAST unit (3x3 conv), block 3 runs at rate 1
    # without its stride, block 4 at rate 2
    for b, (last_stride, rate) in enumerate([(2, 1), (2, 1), (1, 1), (1, 2)], start=1):
        block = getattr(net, f"block{b}")
        for u, unit in enumerate(block):
            stride = last_stride if u == len(block) - 1 else 1
            assert unit.conv2.conv.stride == (stride, stride) and unit.conv2.conv.dilation == (rate, rate), (b, u)
            assert unit.conv1.conv.stride == (1, 1) and unit.conv3.conv.stride == (1, 1)
            assert (unit.shortcut is not None) == (u == 0)  # a projection only where the depth changes
    assert net.conv1.bn.eps == 1e-5 and abs(net.conv1.bn.momentum - 0.003) < 1e-9
    # same weights as torchvision/timm's ResNet-50 trunk, only placed differently
    timm_trunk = timm.create_model("resnet50", pretrained=False, num_classes=0)
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in timm_trunk.parameters())
    assert [len(SlimResNetV1(n).block3) for n in (101, 152)] == [23, 36]


@pytest.mark.parametrize("hw", [(45, 61), (64, 64), (33, 100)])
def test_any_input_size_gives_tensorflow_output_sizes(hw: tuple[int, int]) -> None:
    net = PoseNetwork(3, TINY).eval()
    with torch.no_grad():
        out = net(torch.zeros((1, 3, *hw), dtype=torch.uint8))
    size = list(hw)
    for _ in range(4):  # conv1, pool1, block1, block2: each ceil(n / 2)
        size = [-(-s // 2) for s in size]
    assert out["heatmap"].shape[-2:] == (2 * size[0], 2 * size[1])


def test_names_and_input_centring() -> None:
    assert parse_slim_name("slim_resnet_v1_101") == (101, (64, 64, 128, 256, 512))
    assert parse_slim_name(TINY) == (50, (8, 2, 2, 2, 2))
    for bad in ("slim_resnet_v1_34", "slim_resnet_v2_50", "slim_resnet_v1_50_c1-2"):
        with pytest.raises(ConfigError):
            build_backbone(bad)
    with pytest.raises(ConfigError, match="init_from"):
        build_backbone("slim_resnet_v1_50", pretrained=True)
    backbone = build_backbone(TINY)
    centred = backbone.normalize(torch.tensor([123.68, 116.779, 103.939]).view(1, 3, 1, 1))
    assert centred.abs().max().item() < 1e-4  # mean pixel subtracted, no division


def test_freeze_levels_map_to_slim_blocks() -> None:
    backbone = build_backbone(TINY)
    assert freeze_backbone(backbone, "stage2") == ("stem", "stage1", "stage2")
    frozen = {n.split(".")[0] for n, p in backbone.body.named_parameters() if not p.requires_grad}
    assert frozen == {"conv1", "block1", "block2"}
    assert isinstance(backbone.body.block2[0].conv1.bn, FrozenBatchNorm2d)
    assert isinstance(backbone.body.block3[0].conv1.bn, torch.nn.BatchNorm2d)
    assert all(p.requires_grad for p in backbone.body.block3.parameters())


@pytest.mark.parametrize("name,unit", [(TINY, 2), ("resnet18", 1)])
def test_intermediate_supervision_taps_the_chosen_unit(name: str, unit: int) -> None:
    torch.manual_seed(0)
    net = PoseNetwork(2, name, intermediate_supervision=True, intermediate_supervision_unit=unit).eval()
    x = net.backbone.normalize(torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8))
    body = net.backbone.body
    with torch.no_grad():
        if name.startswith("slim"):
            h = body.block2(body.block1(body.pool1(body.conv1(x))))
            stage3 = body.block3
        else:
            h = body.layer2(body.layer1(body.maxpool(body.act1(body.bn1(body.conv1(x))))))
            stage3 = body.layer3
        for u in range(unit):
            h = stage3[u](h)
        interm, _ = net.backbone(x)
    assert torch.allclose(interm, h, atol=1e-5)
    with pytest.raises(ConfigError, match="intermediate_supervision_unit"):
        PoseNetwork(2, name, intermediate_supervision=True, intermediate_supervision_unit=99)


def test_batchnorm_folding_keeps_the_outputs() -> None:
    torch.manual_seed(0)
    net = PoseNetwork(2, TINY, intermediate_supervision=True, intermediate_supervision_unit=3).eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 2.0)
                m.running_mean.uniform_(-1, 1)
        images = torch.randint(0, 256, (1, 3, 37, 53), dtype=torch.uint8)
        want, got = net(images), inference_copy(net, channels_last=True)(images)
    for key in want:
        assert torch.allclose(want[key], got[key], atol=1e-4), key
