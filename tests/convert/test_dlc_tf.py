"""``crosspose convert dlc-tf``: DeepLabCut 2 snapshots and TF-slim checkpoints -> crosspose."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from crosspose.cli import main
from crosspose.convert.dlc_tf import convert_dlc_tf
from crosspose.convert.tf_checkpoint import write_tf_checkpoint_v2
from crosspose.core.errors import CheckpointError, ConfigError, CrossposeError
from crosspose.core.skeletons import FULL_HUMAN, MPII
from crosspose.evaluation.score import resolve_joints
from crosspose.inference.model import build_network
from crosspose.models.network import PoseNetwork
from crosspose.testing import TINY_JOINTS, requires_fixture, write_tiny_coco
from crosspose.training.module import PoseEstimationModule

FIXTURE = "deeplabcut_tf/narrow_resnet_v1_50_17joints"
TINY = "slim_resnet_v1_50_c8-2-2-2-2"
FAST = ["--data.input_size", "64", "--data.batch_size", "2", "--data.num_workers", "0",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def _export_as_tensorflow(net: PoseNetwork, heads: bool = True) -> dict[str, np.ndarray]:
    """The variables DeepLabCut 2 would save for ``net``, named and laid out as TF-slim does."""
    out: dict[str, np.ndarray] = {}

    def conv_bn(scope: str, m: torch.nn.Module) -> None:
        out[f"{scope}/weights"] = m.conv.weight.detach().permute(2, 3, 1, 0).numpy()  # (kh, kw, in, out)
        for tf, attr in (("gamma", "weight"), ("beta", "bias"), ("moving_mean", "running_mean"),
                         ("moving_variance", "running_var")):
            out[f"{scope}/BatchNorm/{tf}"] = getattr(m.bn, attr).detach().numpy()

    body = net.backbone.body
    conv_bn("resnet_v1_50/conv1", body.conv1)
    for b in range(1, 5):
        for u, unit in enumerate(getattr(body, f"block{b}"), start=1):
            scope = f"resnet_v1_50/block{b}/unit_{u}/bottleneck_v1"
            for name in ("conv1", "conv2", "conv3", "shortcut"):
                if getattr(unit, name) is not None:
                    conv_bn(f"{scope}/{name}", getattr(unit, name))
    if heads:
        for scope, head in (("part_pred", net.heatmap_head), ("locref_pred", net.locref_head),
                            ("intermediate_supervision", net.stage3_head)):
            if head is not None:  # conv2d_transpose kernels are (kh, kw, out, in)
                out[f"pose/{scope}/block4/weights"] = head.deconv.weight.detach().permute(2, 3, 1, 0).numpy()
                out[f"pose/{scope}/block4/biases"] = head.deconv.bias.detach().numpy()
    out["global_step"] = np.array(1000, np.int64)  # saved by DeepLabCut, not part of the network
    out["resnet_v1_50/conv1/weights/Momentum"] = out["resnet_v1_50/conv1/weights"] * 0
    return out


def _random_net(unit: int | None = 4, joints: int = len(TINY_JOINTS)) -> PoseNetwork:
    torch.manual_seed(0)
    net = PoseNetwork(joints, TINY, norm="frozen", intermediate_supervision=unit is not None,
                      intermediate_supervision_unit=unit)
    with torch.no_grad():  # trained-looking statistics, so that a swapped mean/variance shows
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.8, 1.2)
                m.bias.normal_(0, 0.1)
    return net.eval()


def _write_snapshot(folder: Path, net: PoseNetwork, joints: int | None = None, heads: bool = True,
                    names: tuple[str, ...] = TINY_JOINTS) -> Path:
    prefix = write_tf_checkpoint_v2(folder / "snapshot-1000", _export_as_tensorflow(net, heads))
    cfg = {"all_joints_names": list(names)[: joints or len(names)],
           "num_joints": joints or len(names), "net_type": "resnet_50",
           "intermediate_supervision": net.stage3_head is not None, "intermediate_supervision_layer": 4,
           "locref_stdev": 7.2801, "mean_pixel": [123.68, 116.779, 103.939], "stride": 8.0}
    (folder / "pose_cfg.yaml").write_text(yaml.safe_dump(cfg))
    return prefix


def test_a_written_snapshot_converts_to_the_same_network(tmp_path: Path, one_torch_thread: None) -> None:
    net = _random_net()
    prefix = _write_snapshot(tmp_path / "train", net)
    out = tmp_path / "dlc.ckpt"
    assert main(["convert", "dlc-tf", "--snapshot", str(prefix), "--out", str(out)]) == 0
    module = PoseEstimationModule.load_from_checkpoint(out, weights_only=True).eval()
    assert module.keypoint_names == list(TINY_JOINTS) and module.hparams.backbone == TINY
    assert module.net.backbone.intermediate_unit == 4
    images = torch.randint(0, 256, (1, 3, 45, 61), dtype=torch.uint8)  # odd, not multiples of 16
    with torch.no_grad():
        want, got = net(images), module(images)
    for key in ("heatmap", "locref", "heatmap_stage3"):
        assert want[key].shape == got[key].shape
        assert torch.allclose(want[key], got[key], atol=1e-5), key
    inference_net, card = build_network(out)  # what analyze/export rebuild from the model card alone
    assert card.intermediate_supervision and card.intermediate_supervision_unit == 4
    with torch.no_grad():
        assert torch.allclose(inference_net(images)["heatmap_stage3"], want["heatmap_stage3"], atol=1e-5)


def test_bad_inputs_raise_one_error_and_write_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    net = _random_net(None)
    prefix = _write_snapshot(tmp_path / "train", net)
    out = tmp_path / "out.ckpt"
    with pytest.raises(ConfigError, match="num_joints is 3") as exc:  # pose_cfg disagrees with the heads
        convert_dlc_tf(prefix, out, _write_snapshot(tmp_path / "other", net, joints=3).parent / "pose_cfg.yaml")
    assert "pose_cfg.yaml" in str(exc.value)
    data = tmp_path / "train" / "snapshot-1000.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:-100])
    assert main(["convert", "dlc-tf", "--snapshot", str(prefix), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert str(data) in err and "truncated" in err and len(err.splitlines()) == 1
    (tmp_path / "train" / "snapshot-1000.index").unlink()
    with pytest.raises(CrossposeError, match="snapshot-1000.index"):
        convert_dlc_tf(prefix, out)
    picture = tmp_path / "photo.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    with pytest.raises(CrossposeError, match="photo.png"):
        convert_dlc_tf(picture, out)
    assert not out.exists() and not list(tmp_path.glob(".out.ckpt*"))


def test_backbone_only_checkpoint_starts_a_training(tmp_path: Path, one_torch_thread: None) -> None:
    """A TF-slim ImageNet-style checkpoint (no pose heads) initialises the backbone; heads: reinit."""
    net = _random_net(None)
    prefix = _write_snapshot(tmp_path / "imagenet", net, heads=False)
    (tmp_path / "imagenet" / "pose_cfg.yaml").unlink()
    out = tmp_path / "r50.ckpt"
    model = convert_dlc_tf(prefix, out)
    assert not model.has_heads and "global_step" in model.ignored
    module = PoseEstimationModule(num_keypoints=4, backbone=TINY, init_from=str(out), heads="reinit")
    module.prepare_network()
    for key, value in net.backbone.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(module.net.backbone.state_dict()[key], value), key
    with pytest.raises(CheckpointError, match="backbone only"):
        PoseEstimationModule(num_keypoints=4, backbone=TINY, init_from=str(out), heads="keep").prepare_network()


def test_fine_tunes_from_a_converted_snapshot(tmp_path: Path, one_torch_thread: None) -> None:
    prefix = _write_snapshot(tmp_path / "train", _random_net(None))
    out = tmp_path / "dlc.ckpt"
    convert_dlc_tf(prefix, out)
    data = write_tiny_coco(tmp_path / "d", count=4, size=64)
    for heads in ("reinit", "map"):
        assert main(["fit", "--model.num_keypoints", "4", "--model.backbone", TINY, "--model.norm", "frozen",
                     "--model.init_from", str(out), "--model.heads", heads, "--model.freeze", "stage1",
                     "--data.train_file", str(data), "--data.val_file", str(data), "--trainer.fast_dev_run", "1",
                     "--trainer.default_root_dir", str(tmp_path / heads), *FAST]) == 0


def _dlc_decode(part_pred: np.ndarray, locref: np.ndarray, stride: float = 8.0, std: float = 7.2801) -> np.ndarray:
    """DeepLabCut 2's argmax_pose_predict, written out: (J, 3) x, y, sigmoid score."""
    scmap = 1.0 / (1.0 + np.exp(-part_pred[0].astype(np.float64)))  # (h, w, J)
    h, w, joints = scmap.shape
    offmat = locref[0].reshape(h, w, joints, 2) * std
    pose = []
    for j in range(joints):
        gy, gx = np.unravel_index(np.argmax(scmap[:, :, j]), (h, w))
        dx, dy = offmat[gy, gx, j]
        pose.append((gx * stride + 0.5 * stride + dx, gy * stride + 0.5 * stride + dy, scmap[gy, gx, j]))
    return np.asarray(pose)


@requires_fixture(FIXTURE)
def test_reproduces_tensorflow_on_the_real_deeplabcut_snapshot(tmp_path: Path, shared_fixtures: Path,
                                                              one_torch_thread: None) -> None:
    folder = shared_fixtures / FIXTURE
    out = tmp_path / "narrow.ckpt"
    assert main(["convert", "dlc-tf", "--snapshot", str(folder / "snapshot-1000"), "--pose-cfg",
                 str(folder / "pose_cfg.yaml"), "--out", str(out)]) == 0
    module = PoseEstimationModule.load_from_checkpoint(out, weights_only=True).eval()
    assert module.keypoint_names == yaml.safe_load((folder / "pose_cfg.yaml").read_text())["all_joints_names"]
    ref = np.load(folder / "reference.npz")
    for i in range(2):
        image = ref[f"image{i}"]
        assert image.shape[0] % 16 and image.shape[1] % 16 == 0  # a native size, not a multiple of 16
        with torch.no_grad():
            maps = module(torch.from_numpy(image).permute(2, 0, 1)[None])
        part_pred = maps["heatmap"].permute(0, 2, 3, 1).numpy()
        locref = maps["locref"].permute(0, 2, 3, 1).numpy()
        assert part_pred.shape == ref[f"part_pred{i}"].shape and locref.shape == ref[f"locref{i}"].shape
        assert np.abs(part_pred - ref[f"part_pred{i}"]).max() < 1e-3
        assert np.abs(locref - ref[f"locref{i}"]).max() < 1e-3
        want = _dlc_decode(ref[f"part_pred{i}"], ref[f"locref{i}"])
        got = module.codec.decode(maps["heatmap"], maps["locref"])[0].double().numpy()
        assert np.abs(got[:, :2] - want[:, :2]).max() < 0.05
        assert np.abs(got[:, 2] - want[:, 2]).max() < 5e-4
    meta = torch.load(out, weights_only=True)["crosspose"]
    assert json.dumps(meta)  # plain metadata, readable without crosspose


def test_test_and_predict_accept_a_converted_snapshot(tmp_path: Path, one_torch_thread: None) -> None:
    prefix = _write_snapshot(tmp_path / "train", _random_net(4))
    out = tmp_path / "dlc.ckpt"
    convert_dlc_tf(prefix, out)
    data = write_tiny_coco(tmp_path / "d", count=3, size=64)
    common = ["--model.num_keypoints", "4", "--model.backbone", TINY, "--model.norm", "frozen",
              "--model.intermediate_supervision", "true", "--model.intermediate_supervision_unit", "4",
              "--ckpt_path", str(out), *FAST]
    assert main(["test", "--data.test_file", str(data), "--trainer.default_root_dir", str(tmp_path / "t"),
                 *common]) == 0
    (metrics,) = (tmp_path / "t").rglob("metrics.json")
    assert json.loads(metrics.read_text())["counts"]["instances"] == 3
    assert main(["predict", "--data.predict_file", str(data), "--trainer.default_root_dir", str(tmp_path / "p"),
                 *common]) == 0
    (preds,) = (tmp_path / "p").rglob("predictions.json")
    assert len(json.loads(preds.read_text())) == 3


def test_a_full_human_snapshot_maps_onto_mpii_heads_and_joints(tmp_path: Path, one_torch_thread: None) -> None:
    """DeepLabCut's full_human names (ankle1 ... forehead): heads: map fills 14 of MPII's 16 joints."""
    net = _random_net(None, joints=14)
    out = tmp_path / "full_human.ckpt"
    convert_dlc_tf(_write_snapshot(tmp_path / "train", net, names=FULL_HUMAN.keypoints), out)
    module = PoseEstimationModule(num_keypoints=16, keypoint_names=list(MPII.keypoints), backbone=TINY,
                                  init_from=str(out), heads="map")
    module.prepare_network()
    assert len(module.transfer_summary["mapped"]) == 14
    assert module.transfer_summary["mapped"]["head_top"] == "forehead"
    w_src, w = net.heatmap_head.deconv.weight, module.net.heatmap_head.deconv.weight
    assert torch.equal(w[:, MPII.index("right_ankle")], w_src[:, FULL_HUMAN.index("ankle1")])
    assert torch.equal(w[:, MPII.index("upper_neck")], w_src[:, FULL_HUMAN.index("chin")])
    loc_src, loc = net.locref_head.deconv.weight, module.net.locref_head.deconv.weight
    k, j = MPII.index("left_wrist"), FULL_HUMAN.index("wrist2")
    assert torch.equal(loc[:, 2 * k:2 * k + 2], loc_src[:, 2 * j:2 * j + 2])
    assert not any(torch.equal(w[:, MPII.index("pelvis")], w_src[:, s]) for s in range(14))
    names, _, pred_idx = resolve_joints(MPII.keypoints, None, FULL_HUMAN.keypoints)  # scored on MPII's 14
    assert len(names) == 14 and "pelvis" not in names and sorted(pred_idx) == list(range(14))


def test_deepercut_grouped_joint_names_expand_to_full_human(tmp_path: Path) -> None:
    """DeeperCut's pose_cfg names left/right groups once; the channels get DeepLabCut's ankle1/ankle2 names."""
    from crosspose.convert.dlc_tf import joint_names

    cfg = {"all_joints": [[0, 5], [1, 4], [2, 3], [6, 11], [7, 10], [8, 9], [12], [13]],
           "all_joints_names": ["ankle", "knee", "hip", "wrist", "elbow", "shoulder", "chin", "forehead"]}
    assert joint_names(cfg, tmp_path / "pose_cfg.yaml") == list(FULL_HUMAN.keypoints)
    flat = {"all_joints": [[i] for i in range(3)], "all_joints_names": ["a", "b", "c"]}
    assert joint_names(flat, tmp_path / "pose_cfg.yaml") == ["a", "b", "c"]
    with pytest.raises(ConfigError, match="all_joints"):
        joint_names({"all_joints": [[0, 2], [3]], "all_joints_names": ["x", "y"]}, tmp_path / "pose_cfg.yaml")


@requires_fixture(FIXTURE)
def test_analyze_gives_deeplabcut2_keypoints_on_the_fixture_images(tmp_path: Path, shared_fixtures: Path,
                                                                  one_torch_thread: None) -> None:
    """`crosspose analyze` on the two images (as PNG, native sizes) = DeepLabCut 2's decoded keypoints."""
    import cv2
    import pandas as pd

    folder = shared_fixtures / FIXTURE
    ckpt = tmp_path / "narrow.ckpt"
    assert main(["convert", "dlc-tf", "--snapshot", str(folder / "snapshot-1000"), "--out", str(ckpt)]) == 0
    ref = np.load(folder / "reference.npz")
    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        cv2.imwrite(str(images / f"image{i}.png"), ref[f"image{i}"][:, :, ::-1])
    out = tmp_path / "analysed"
    assert main(["analyze", "--model", str(ckpt), str(images), "--out", str(out), "--format", "h5,json",
                 "--scale", "1", "--precision", "fp32"]) == 0
    table = pd.read_hdf(out / "images.h5", "df_with_missing")  # DeepLabCut's layout, full precision
    assert len(table) == 2
    for i in range(2):
        want = _dlc_decode(ref[f"part_pred{i}"], ref[f"locref{i}"])
        got = table.iloc[i].to_numpy(dtype=np.float64).reshape(-1, 3)  # x, y, likelihood per bodypart
        assert np.abs(got[:, :2] - want[:, :2]).max() < 0.05
        assert np.abs(got[:, 2] - want[:, 2]).max() < 5e-4
