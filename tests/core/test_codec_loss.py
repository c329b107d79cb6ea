"""Target codec round trips and the loss on hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from crosspose.core.codecs import Targets, build_codec
from crosspose.training.losses import pose_loss


@pytest.mark.parametrize("kind", ["disk", "gaussian"])
@pytest.mark.parametrize("input_hw", [(64, 64), (128, 96), (256, 192), (320, 320)])
def test_encode_then_decode_recovers_every_keypoint(kind: str, input_hw: tuple[int, int]) -> None:
    codec = build_codec(kind)
    g = torch.Generator().manual_seed(sum(input_hw))
    b, k = 3, 7
    h, w = input_hw
    kp = torch.rand((b, k, 2), generator=g) * torch.tensor([w - 1.0, h - 1.0])
    valid = torch.ones((b, k), dtype=torch.bool)
    t = codec.encode(kp, valid, codec.heatmap_size(input_hw))
    assert t.heatmap.shape == (b, k, h // 8, w // 8)
    # a perfect network: logits that reproduce the target ranking, locref equal to its target
    logits = torch.logit(t.heatmap.clamp(1e-4, 1 - 1e-4)) if kind == "disk" else t.heatmap
    decoded = codec.decode(logits, t.locref)
    err = (decoded[..., :2] - kp).norm(dim=-1)
    assert err.max().item() < 1.0, err.max()
    assert (decoded[..., 2] > 0.5).all()


def test_disk_targets_follow_deepercut_geometry() -> None:
    codec = build_codec("disk", radius=17.0)
    kp = torch.tensor([[[36.0, 20.0]]])
    t = codec.encode(kp, torch.ones((1, 1), dtype=torch.bool), (8, 8))
    gy, gx = torch.meshgrid(torch.arange(8) * 8 + 4.0, torch.arange(8) * 8 + 4.0, indexing="ij")
    expected = ((gx - 36) ** 2 + (gy - 20) ** 2 <= 17**2).float()
    assert torch.equal(t.heatmap[0, 0], expected)
    # locref at cell (gx=4, gy=2): centre (36, 20) -> offset 0; at (gx=3, gy=2): centre (28, 20) -> dx = 8
    assert t.locref[0, 0, 2, 3].item() == pytest.approx(8 / 7.2801)
    assert t.locref[0, 1, 2, 3].item() == pytest.approx(0.0)
    assert torch.equal(t.locref_mask[0, 0], expected) and torch.equal(t.locref_mask[0, 1], expected)


def test_unannotated_joint_is_a_negative_by_default_or_ignored() -> None:
    kp = torch.tensor([[[10.0, 10.0], [30.0, 30.0]]])
    valid = torch.tensor([[True, False]])
    neg = build_codec("disk").encode(kp, valid, (8, 8))
    assert neg.heatmap[0, 1].sum() == 0 and neg.heatmap_weight[0, 1].item() == 1
    ign = build_codec("disk", unannotated="ignore").encode(kp, valid, (8, 8))
    assert ign.heatmap_weight[0, 1].item() == 0 and ign.heatmap_weight[0, 0].item() == 1
    assert neg.locref_mask[0, 2:].sum() == 0


def _targets(heatmap, weight, locref, mask) -> Targets:
    return Targets(torch.tensor(heatmap), torch.tensor(weight), torch.tensor(locref), torch.tensor(mask))


def test_loss_matches_hand_computation() -> None:
    # one joint, a 1 x 2 grid: logits 0 (target 1) and 2 (target 0)
    outputs = {"heatmap": torch.tensor([[[[0.0, 2.0]]]]),
               "locref": torch.tensor([[[[0.5, 9.0]], [[3.0, 9.0]]]])}
    targets = _targets([[[[1.0, 0.0]]]], [[[[1.0]]]], [[[[0.0, 0.0]], [[0.0, 0.0]]]],
                       [[[[1.0, 0.0]], [[1.0, 0.0]]]])
    terms = pose_loss(outputs, targets, build_codec("disk"))
    bce = (math.log(2.0) + math.log(1.0 + math.e**2)) / 2
    huber = (0.5 * 0.5**2 + (3.0 - 0.5)) / 2  # mean over the two supervised locref cells only
    assert terms["heatmap"].item() == pytest.approx(bce, rel=1e-6)
    assert terms["locref"].item() == pytest.approx(huber, rel=1e-6)
    assert terms["loss"].item() == pytest.approx(bce + 0.05 * huber, rel=1e-6)


def test_ignored_joint_leaves_the_mean_and_gaussian_uses_mse() -> None:
    outputs = {"heatmap": torch.tensor([[[[0.0]], [[5.0]]]]), "locref": torch.zeros((1, 4, 1, 1))}
    targets = _targets([[[[1.0]], [[0.0]]]], [[[[1.0]], [[0.0]]]], [[[[0.0]]] * 4], [[[[0.0]]] * 4])
    terms = pose_loss(outputs, targets, build_codec("disk"))
    assert terms["heatmap"].item() == pytest.approx(math.log(2.0))  # joint 2 (weight 0) left out
    assert terms["locref"].item() == 0.0
    gauss = pose_loss({"heatmap": torch.tensor([[[[0.25]], [[5.0]]]]), "locref": torch.zeros((1, 4, 1, 1))},
                      targets, build_codec("gaussian"))
    assert gauss["heatmap"].item() == pytest.approx(0.75**2)


def _positive_radius(heatmap: torch.Tensor, x: float, y: float, stride: int = 8) -> tuple[float, float]:
    """(farthest positive cell centre, nearest negative cell centre) from (x, y), read off a target map."""
    h, w = heatmap.shape
    inside, outside = 0.0, math.inf
    for gy in range(h):
        for gx in range(w):
            d = math.hypot(stride * gx + stride / 2 - x, stride * gy + stride / 2 - y)
            if heatmap[gy, gx] > 0:
                inside = max(inside, d)
            else:
                outside = min(outside, d)
    return inside, outside


@pytest.mark.parametrize("zoom", [0.6, 1.0, 2.0, 2.7])
def test_original_radius_units_scale_the_disk_by_each_samples_zoom(zoom: float) -> None:
    kp = torch.tensor([[[100.0, 92.0]], [[100.0, 92.0]]])
    valid = torch.ones((2, 1), dtype=torch.bool)
    zooms = torch.tensor([zoom, 1.0])
    original = build_codec("disk", radius=17.0, radius_units="original").encode(kp, valid, (25, 25), zoom=zooms)
    inside, outside = _positive_radius(original.heatmap[0, 0], 100.0, 92.0)
    assert inside <= 17.0 * zoom < outside
    # the locref region follows the disk
    assert torch.equal(original.locref_mask[0, 0], original.heatmap[0, 0])
    # the second sample of the batch (zoom 1) keeps 17 px: the radius is per sample
    inside1, outside1 = _positive_radius(original.heatmap[1, 0], 100.0, 92.0)
    assert inside1 <= 17.0 < outside1
    # input units ignore the zoom: 17 input pixels whatever the sample's scale
    given = build_codec("disk", radius=17.0, radius_units="input").encode(kp, valid, (25, 25), zoom=zooms)
    inside_in, outside_in = _positive_radius(given.heatmap[0, 0], 100.0, 92.0)
    assert inside_in <= 17.0 < outside_in


def test_original_radius_units_need_the_zoom() -> None:
    codec = build_codec("disk", radius_units="original")
    with pytest.raises(ValueError, match="zoom"):
        codec.encode(torch.zeros((1, 1, 2)), torch.ones((1, 1), dtype=torch.bool), (4, 4))
    with pytest.raises(ValueError, match="radius_units"):
        build_codec("disk", radius_units="pixels")  # type: ignore[arg-type]
