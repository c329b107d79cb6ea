"""Network output shapes, heads geometry, normalisation modes, and the pretrained flag offline."""

from __future__ import annotations

import pytest
import torch

from crosspose.core.errors import ConfigError
from crosspose.models.network import PoseNetwork


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50"])
@pytest.mark.parametrize("input_hw", [(128, 128), (192, 256)])
def test_output_shapes_stride_8(backbone: str, input_hw: tuple[int, int]) -> None:
    net = PoseNetwork(num_keypoints=5, backbone=backbone, intermediate_supervision=True).eval()
    with torch.no_grad():
        out = net(torch.zeros((2, 3, *input_hw), dtype=torch.uint8))
    h, w = input_hw[0] // 8, input_hw[1] // 8
    assert out["heatmap"].shape == (2, 5, h, w)
    assert out["locref"].shape == (2, 10, h, w)
    assert out["heatmap_stage3"].shape == (2, 5, h, w)


def test_heads_are_glorot_with_zero_bias() -> None:
    net = PoseNetwork(num_keypoints=3, backbone="resnet18")
    w = net.heatmap_head.deconv.weight
    fan_in, fan_out = w.shape[1] * 9, w.shape[0] * 9  # ConvTranspose2d weight is (in, out, kh, kw)
    bound = (6.0 / (fan_in + fan_out)) ** 0.5
    assert w.abs().max().item() <= bound
    assert torch.count_nonzero(net.heatmap_head.deconv.bias) == 0


def test_frozen_norm_keeps_statistics_in_eval_mode() -> None:
    net = PoseNetwork(num_keypoints=2, backbone="resnet18", norm="frozen").train()
    bn = net.backbone.body.bn1
    before = bn.running_mean.clone()
    net(torch.randint(0, 255, (2, 3, 64, 64), dtype=torch.uint8))
    assert not bn.training and torch.equal(bn.running_mean, before)
    assert bn.weight.requires_grad  # gamma/beta still learn, as DeeperCut
    trained = PoseNetwork(num_keypoints=2, backbone="resnet18", norm="batch").train()
    trained(torch.randint(0, 255, (2, 3, 64, 64), dtype=torch.uint8))
    assert not torch.equal(trained.backbone.body.bn1.running_mean, before)


def test_pretrained_offline_fails_with_a_clear_message(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    import huggingface_hub.constants

    # the hub reads HF_HUB_OFFLINE once at import: patch the constant it checks at call time too, so the
    # test fails fast instead of waiting on a network this machine does not have
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache: nothing to fall back on
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(ConfigError, match=r"ImageNet weights.*pretrained: false"):
        PoseNetwork(num_keypoints=2, backbone="resnet18", pretrained=True)


def test_unknown_backbone_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not a timm ResNet"):
        PoseNetwork(num_keypoints=2, backbone="vit_base_patch16_224")


def test_batchnorm_folded_inference_copy_predicts_the_same() -> None:
    from crosspose.models.inference import inference_copy

    net = PoseNetwork(num_keypoints=3, backbone="resnet18")
    net.train()
    net(torch.randint(0, 255, (4, 3, 64, 64), dtype=torch.uint8))  # non-trivial running statistics
    net.eval()
    folded = inference_copy(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.randint(0, 255, (2, 3, 96, 96), dtype=torch.uint8)
    with torch.no_grad():
        a, b = net(x), folded(x.contiguous(memory_format=torch.channels_last))
    for key in ("heatmap", "locref"):
        assert torch.allclose(a[key], b[key], atol=1e-4, rtol=1e-3)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())  # the original is untouched
