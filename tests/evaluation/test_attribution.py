"""Gradient attributions concentrate where the output depends on the input, and hooks record features."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from crosspose.evaluation.attribution import (
    disk_masks,
    grad_cam,
    input_gradient,
    joint_peak,
    layer_cam,
    mass_inside,
)
from crosspose.evaluation.features import FeatureRecorder, pool_features, sample_at_points

SIZE = 32
REGION = (slice(20, 28), slice(4, 12))  # rows, columns the output may depend on


class RegionNet(nn.Module):
    """Convolutional features of the whole image; the score map reads them only inside REGION."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                                      nn.ReLU())
        self.head = nn.Conv2d(8, 2, 1)
        mask = torch.zeros(1, 1, SIZE, SIZE)
        mask[..., REGION[0], REGION[1]] = 1.0
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"heatmap": self.head(self.features(x / 255.0) * self.mask)}


def _region_mask() -> torch.Tensor:
    mask = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    mask[REGION] = True
    return mask


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randint(0, 256, (3, 3, SIZE, SIZE), generator=torch.Generator().manual_seed(1)).to(torch.uint8)


def test_layer_cam_and_input_gradient_concentrate_on_the_only_region_the_output_depends_on(
        images: torch.Tensor, one_torch_thread: None) -> None:
    net = RegionNet()
    targets = [joint_peak(0), joint_peak(1)]
    cams = layer_cam(net, net.features, images, targets)
    grads = input_gradient(net, images, targets)
    assert cams.shape == (2, 3, SIZE, SIZE) and grads.shape == (2, 3, SIZE, SIZE)
    inside = _region_mask()
    # the peak's receptive field lies inside REGION for LayerCAM (features read inside it only) ...
    assert torch.all(mass_inside(cams, inside) > 0.999)
    # ... and within REGION grown by the two 3x3 convolutions' reach (2 px) for the input gradient
    grown = torch.zeros_like(inside)
    grown[REGION[0].start - 2:REGION[0].stop + 2, REGION[1].start - 2:REGION[1].stop + 2] = True
    assert torch.all(mass_inside(grads, grown) > 0.999)
    assert float(inside.float().mean()) < 0.07  # the region is a small part of the image
    assert net.training  # mode restored


def test_grad_cam_spreads_where_layer_cam_does_not(images: torch.Tensor, one_torch_thread: None) -> None:
    """Why the figures use LayerCAM: Grad-CAM weights whole activation maps, so it lights up outside."""
    net = RegionNet().eval()
    gc = grad_cam(net, net.features, images, [joint_peak(0)])
    lc = layer_cam(net, net.features, images, [joint_peak(0)])
    assert float(mass_inside(lc, _region_mask()).min()) > 0.999
    assert float(mass_inside(gc, _region_mask()).nanmean()) < 0.5


def test_cam_is_upsampled_to_the_requested_size(images: torch.Tensor) -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=4, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1))
    cams = layer_cam(net, net[1], images, [joint_peak(1)], size=(SIZE, SIZE))
    assert cams.shape == (1, 3, SIZE, SIZE) and bool((cams >= 0).all())


def test_disk_masks_and_mass_inside() -> None:
    masks = disk_masks((9, 9), torch.tensor([[4.0, 4.0]]), radius=1.0)
    assert int(masks.sum()) == 5  # the centre and its 4 neighbours
    maps = torch.zeros(1, 9, 9)
    maps[0, 4, 4], maps[0, 0, 0] = 3.0, 1.0
    assert float(mass_inside(maps, masks)[0]) == pytest.approx(0.75)
    assert torch.isnan(mass_inside(torch.zeros(1, 9, 9), masks)).all()


def test_feature_recorder_hooks_and_removes_itself() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
    with FeatureRecorder({"conv": net[0]}) as rec:
        out = net(torch.ones(2, 3, 8, 8))
    assert rec.features["conv"].shape == (2, 4, 8, 8) and not rec.features["conv"].requires_grad
    assert not net[0]._forward_hooks
    assert torch.equal(pool_features(out, 1), out.mean(dim=(2, 3)))
    assert pool_features(torch.ones(2, 4, 8, 8), 4).shape == (2, 64)


def test_sample_at_points_reads_the_feature_under_each_keypoint() -> None:
    fmap = torch.arange(16.0).view(1, 1, 4, 4)  # a 4x4 map over a 16x16 input: cells of 4 px
    points = torch.tensor([[[1.5, 1.5], [13.5, 5.5]]])  # centres of cells (0, 0) and (row 1, col 3)
    got = sample_at_points(fmap, points, (16, 16))
    assert got.shape == (1, 2, 1)
    assert got[0, :, 0].tolist() == pytest.approx([0.0, 7.0])
