"""``crosspose convert dlc-pytorch``: DeepLabCut 3 ResNet snapshots, their geometry and decoding."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import yaml

import crosspose
from crosspose.cli import main
from crosspose.convert.dlc_pytorch import convert_dlc_pytorch
from crosspose.core.errors import CheckpointError, ConfigError
from crosspose.testing import TINY_JOINTS
from crosspose.training.module import PoseEstimationModule

pytestmark = pytest.mark.usefixtures("one_torch_thread")
LOCREF_STD = 7.2801


class _Dlc3Like(torch.nn.Module):
    """DeepLabCut 3's PoseModel layout: ``backbone.model`` (timm, fc removed) + ``heads.bodypart``."""

    def __init__(self, name: str, joints: int) -> None:
        super().__init__()
        self.backbone = torch.nn.Module()
        self.backbone.model = timm.create_model(name, output_stride=16, num_classes=0)
        channels = self.backbone.model.num_features
        self.heads = torch.nn.ModuleDict({"bodypart": torch.nn.Module()})
        for head, out in (("heatmap_head", joints), ("locref_head", 2 * joints)):
            module = torch.nn.Module()
            module.deconv_layers = torch.nn.Sequential(torch.nn.ConvTranspose2d(channels, out, 3, stride=2))
            setattr(self.heads["bodypart"], head, module)

    def predict(self, image: torch.Tensor) -> torch.Tensor:
        """DeepLabCut 3's inference written out: normalise, forward, HeatmapPredictor. (J, 3)."""
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        x = (image.float() / 255.0 - mean) / std
        features = self.backbone.model.forward_features(x)
        heads = self.heads["bodypart"]
        heatmap = heads.heatmap_head.deconv_layers(features)[0].permute(1, 2, 0)  # (h, w, J): no sigmoid
        locref = heads.locref_head.deconv_layers(features)[0].permute(1, 2, 0)
        h, w, joints = heatmap.shape
        locref = locref.reshape(h, w, joints, 2) * LOCREF_STD
        out = []
        for j in range(joints):
            flat = int(torch.argmax(heatmap[:, :, j].reshape(-1)))
            y, x = flat // w, flat % w
            out.append((x * 8 + 4 + locref[y, x, j, 0], y * 8 + 4 + locref[y, x, j, 1],
                        heatmap[y, x, j].clamp(0, 1)))
        return torch.tensor(out)


def _config(name: str, channels: int, backbone_type: str = "ResNet") -> dict:
    def deconv(out: int) -> dict:
        return {"channels": [channels, out], "kernel_size": [3], "strides": [2]}

    joints = len(TINY_JOINTS)
    return {
        "method": "bu",
        "metadata": {"bodyparts": list(TINY_JOINTS), "unique_bodyparts": [], "individuals": ["animal"]},
        "model": {
            "backbone": {"type": backbone_type, "model_name": name, "output_stride": 16},
            "backbone_output_channels": channels,
            "heads": {"bodypart": {
                "type": "HeatmapHead",
                "predictor": {"type": "HeatmapPredictor", "apply_sigmoid": False, "clip_scores": True,
                              "location_refinement": True, "locref_std": LOCREF_STD},
                "target_generator": {"type": "HeatmapGaussianGenerator", "pos_dist_thresh": 17},
                "heatmap_config": deconv(joints), "locref_config": deconv(2 * joints)}},
        },
    }


def _snapshot(tmp_path: Path) -> tuple[_Dlc3Like, Path, Path]:
    torch.manual_seed(0)
    model = _Dlc3Like("resnet18", len(TINY_JOINTS)).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 1.5)
        for p in model.heads.parameters():
            p.mul_(20)  # scores of a trained network's scale, so the argmax is not a near-tie
    snapshot = tmp_path / "snapshot-005.pt"
    torch.save({"model": model.state_dict(), "metadata": {"epoch": 5}}, snapshot)
    config = tmp_path / "pytorch_config.yaml"
    config.write_text(yaml.safe_dump(_config("resnet18", 512)))
    return model, snapshot, config


def test_converted_snapshot_gives_deeplabcut3_predictions(tmp_path: Path) -> None:
    dlc, snapshot, config = _snapshot(tmp_path)
    out = tmp_path / "dlc3.ckpt"
    assert main(["convert", "dlc-pytorch", "--snapshot", str(snapshot), "--config", str(config),
                 "--out", str(out)]) == 0
    module = PoseEstimationModule.load_from_checkpoint(out, weights_only=True).eval()
    assert module.keypoint_names == list(TINY_JOINTS) and module.hparams.head_output == "full"
    image = torch.randint(0, 256, (1, 3, 75, 99), dtype=torch.uint8)  # not multiples of 16
    with torch.no_grad():
        maps = module(image)
        want = dlc.predict(image)
    features_hw = dlc.backbone.model.forward_features(torch.zeros(1, 3, 75, 99)).shape[-2:]
    assert maps["heatmap"].shape[-2:] == (2 * features_hw[0] + 1, 2 * features_hw[1] + 1)
    got = module.codec.decode(maps["heatmap"], maps["locref"])[0]
    assert (got[:, :2] - want[:, :2]).abs().max().item() < 0.05
    assert (got[:, 2] - want[:, 2]).abs().max().item() < 5e-4
    # the inference path (analyze, crosspose.load) rebuilds the network from the model card alone:
    # DeepLabCut 3's uncropped heads and unpadded frames must come back from it
    for hw in ((75, 99), (80, 96)):
        frame = torch.randint(0, 256, (1, 3, *hw), dtype=torch.uint8)
        with torch.no_grad():
            want = dlc.predict(frame)
        pose = crosspose.load(out, device="cpu", scale=1.0, precision="fp32").predict(frame[0].permute(1, 2, 0).numpy())
        got_frame = torch.from_numpy(np.asarray(pose.keypoints[0], dtype=np.float32))
        assert (got_frame[:, :2] - want[:, :2]).abs().max().item() < 0.05, hw
        assert (got_frame[:, 2] - want[:, 2]).abs().max().item() < 5e-4, hw


def test_unsupported_or_damaged_inputs_write_nothing(tmp_path: Path) -> None:
    _, snapshot, config = _snapshot(tmp_path)
    out = tmp_path / "out.ckpt"
    hrnet = tmp_path / "hrnet.yaml"
    hrnet.write_text(yaml.safe_dump(_config("hrnet_w32", 32, backbone_type="HRNet")))
    with pytest.raises(ConfigError, match="HRNet") as exc:
        convert_dlc_pytorch(snapshot, hrnet, out)
    assert str(hrnet) in str(exc.value)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(yaml.safe_dump(_config("resnet50", 2048)))
    with pytest.raises(CheckpointError, match="shape"):
        convert_dlc_pytorch(snapshot, wrong, out)
    junk = tmp_path / "snapshot-009.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="snapshot-009.pt"):
        convert_dlc_pytorch(junk, config, out)
    assert not out.exists()


_DLC3_REFERENCE = os.environ.get("CROSSPOSE_DLC3_REFERENCE")


@pytest.mark.skipif(not _DLC3_REFERENCE, reason="set CROSSPOSE_DLC3_REFERENCE to a folder made by "
                    "tools/dlc3_reference.py (needs DeepLabCut 3.0.2 in its own environment)")
def test_reproduces_deeplabcut3s_own_predictions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Against DeepLabCut 3.0.2 itself: its snapshot, config, inference runner and predictions."""
    folder = Path(str(_DLC3_REFERENCE))
    out = tmp_path / "dlc3.ckpt"
    convert_dlc_pytorch(folder / "snapshot-001.pt", folder / "pytorch_config.yaml", out)
    module = PoseEstimationModule.load_from_checkpoint(out, weights_only=True).eval()
    images = np.load(folder / "images.npz")
    want = np.load(folder / "dlc3_predictions.npz")
    module.to(memory_format=torch.channels_last)
    for group_norm in ("aten", "fused"):  # PyTorch's group norm, then crosspose's fused GroupNorm+ReLU kernel
        monkeypatch.setenv("CROSSPOSE_GROUP_NORM", group_norm)
        for i in range(len([k for k in want.files if k.startswith("bodyparts")])):
            image = torch.from_numpy(images[f"image{i}"]).permute(2, 0, 1)[None]
            with torch.no_grad():
                maps = module(image.contiguous(memory_format=torch.channels_last))
            got = module.codec.decode(maps["heatmap"], maps["locref"])[0].numpy()
            assert np.abs(got[:, :2] - want[f"bodyparts{i}"][:, :2]).max() < 0.05, group_norm
            assert np.abs(got[:, 2] - want[f"bodyparts{i}"][:, 2]).max() < 5e-4, group_norm
