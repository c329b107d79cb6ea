"""The fused oneDNN inference copy: same maps as the folded network, unsupported backbones left alone."""

from __future__ import annotations

import pytest
import torch

from crosspose.models.inference import inference_copy
from crosspose.models.network import PoseNetwork
from crosspose.models.onednn import PackedConv, onednn_inference

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="PyTorch built without oneDNN")


def _folded(backbone: str, **kwargs: object) -> torch.nn.Module:
    torch.manual_seed(0)
    net = PoseNetwork(5, backbone, **kwargs)  # type: ignore[arg-type]
    with torch.no_grad():  # non-trivial BatchNorm statistics and head biases: folding has work to do
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
        for head in net.heads().values():
            head.deconv.bias.uniform_(-0.1, 0.1)
    return inference_copy(net)


def _images(batch: int, height: int, width: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (batch, height, width, 3), dtype=torch.uint8, generator=generator)
    return images.permute(0, 3, 1, 2)  # channels_last, as the backends pass frames


@pytest.mark.parametrize(("backbone", "head_output"), [("resnet18", "same"), ("resnet50", "same"), ("resnet18", "full")])
@torch.inference_mode()
def test_fused_fp32_equals_the_folded_network(backbone: str, head_output: str) -> None:
    """In fp32 the rewrite changes no arithmetic but the order of sums: every block's wiring (ReLUs,
    shortcut, downsample) and the heads as sub-pixel convolutions (cropped or DeepLabCut 3's full maps)."""
    net = _folded(backbone, intermediate_supervision=True, intermediate_supervision_unit=2, head_output=head_output)
    fused = onednn_inference(net, torch.float32)
    assert fused is not None
    assert any(isinstance(m, PackedConv) for m in fused.modules())
    for shape in ((2, 64, 96), (3, 48, 48)):  # packed for the first shape; another still computes right
        images = _images(*shape)
        expected, out = net(images), fused(images)
        assert out.keys() == expected.keys() == {"heatmap", "locref", "heatmap_stage3"}
        for key in expected:
            torch.testing.assert_close(out[key], expected[key], rtol=1e-4, atol=1e-4)


@torch.inference_mode()
def test_fused_bf16_matches_autocast_and_stays_near_fp32() -> None:
    net = _folded("resnet18")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    fused = onednn_inference(net)
    assert fused is not None
    images = _images(2, 64, 64)
    out = fused(images)
    with torch.autocast("cpu", torch.bfloat16):
        autocast = net(images)
        under_autocast = fused(images)  # how the backends call it
    fp32 = net(images)
    for key in fp32:
        assert out[key].dtype == torch.bfloat16
        torch.testing.assert_close(under_autocast[key], out[key])
        scale = fp32[key].abs().max().item()
        assert (out[key].float() - autocast[key].float()).abs().max().item() <= 0.02 * scale
        assert (out[key].float() - fp32[key]).abs().max().item() <= 0.05 * scale
    for key, value in net.state_dict().items():  # the folded network is not changed
        assert torch.equal(value, before[key]), key


@pytest.mark.parametrize(("backbone", "why"), [
    ("resnet50_gn", "GroupNorm is not folded"),
    ("seresnet50", "squeeze-excitation"),
    ("resnet50d", "average-pool shortcut"),
    ("slim_resnet_v1_50", "TF-slim backbone"),
])
def test_unsupported_backbones_are_left_alone(backbone: str, why: str) -> None:
    assert onednn_inference(_folded(backbone)) is None, why
