"""Full-size DeepLabCut 2 snapshots (ResNet-50 / ResNet-101, intermediate supervision) vs TensorFlow.

Opt-in: ``CROSSPOSE_DLC2_REFERENCE=DIR`` where DIR was written by ``tools/dlc2_reference.py`` (run
by a Python with TensorFlow and DeepLabCut's TensorFlow code; see docs/deeplabcut_models.md). Each
sub-folder holds a snapshot built by DeepLabCut's own network code and TensorFlow's outputs on two
images at native sizes (not multiples of 16), plus DeepLabCut's own decoded keypoints.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from crosspose.cli import main
from crosspose.training.module import PoseEstimationModule

_REFERENCE = os.environ.get("CROSSPOSE_DLC2_REFERENCE")
_NETS = sorted(p.name for p in Path(_REFERENCE).iterdir() if (p / "reference.npz").is_file()) if _REFERENCE else []
MAP_TOLERANCE = 3e-3  # float32 through up to 101 layers: TensorFlow's own kernels differ by ~1.3e-3
PIXEL_TOLERANCE = 0.05
CONFIDENCE_TOLERANCE = 5e-4

pytestmark = pytest.mark.skipif(not _NETS, reason="set CROSSPOSE_DLC2_REFERENCE to a folder made by "
                                "tools/dlc2_reference.py (needs TensorFlow + DeepLabCut's TF code in its own venv)")


@pytest.mark.parametrize("net", _NETS)
def test_full_size_snapshot_gives_tensorflows_maps_and_deeplabcuts_keypoints(net: str, tmp_path: Path) -> None:
    import cv2
    import pandas as pd

    torch.set_num_threads(2)
    folder = Path(str(_REFERENCE)) / net
    cfg = yaml.safe_load((folder / "pose_cfg.yaml").read_text())
    ckpt = tmp_path / f"{net}.ckpt"
    assert main(["convert", "dlc-tf", "--snapshot", str(folder / "snapshot-1000"), "--out", str(ckpt)]) == 0
    module = PoseEstimationModule.load_from_checkpoint(ckpt, weights_only=True).eval()
    assert module.keypoint_names == cfg["all_joints_names"]
    assert module.net.backbone.intermediate_unit == cfg["intermediate_supervision_layer"]
    ref = np.load(folder / "reference.npz")
    count = len([k for k in ref.files if k.startswith("image")])
    images = tmp_path / "images"
    images.mkdir()
    worst = {"part_pred": 0.0, "locref": 0.0, "part_pred_interm": 0.0}
    for i in range(count):
        image = ref[f"image{i}"]
        assert image.shape[0] % 16 or image.shape[1] % 16  # a native size, not a multiple of 16
        cv2.imwrite(str(images / f"image{i}.png"), image[:, :, ::-1])
        with torch.no_grad():
            maps = module(torch.from_numpy(image).permute(2, 0, 1)[None])
        for key, ours in (("part_pred", "heatmap"), ("locref", "locref"), ("part_pred_interm", "heatmap_stage3")):
            got = maps[ours].permute(0, 2, 3, 1).numpy()
            assert got.shape == ref[f"{key}{i}"].shape, key
            worst[key] = max(worst[key], float(np.abs(got - ref[f"{key}{i}"]).max()))
    out = tmp_path / "analysed"
    assert main(["analyze", "--model", str(ckpt), str(images), "--out", str(out), "--format", "h5",
                 "--scale", "1", "--precision", "fp32"]) == 0
    table = pd.read_hdf(out / "images.h5", "df_with_missing")
    pixels = confidence = 0.0
    for i in range(count):
        want = ref[f"pose{i}"]  # DeepLabCut's own extract_cnn_output + argmax_pose_predict
        got = table.iloc[i].to_numpy(dtype=np.float64).reshape(-1, 3)
        pixels = max(pixels, float(np.abs(got[:, :2] - want[:, :2]).max()))
        confidence = max(confidence, float(np.abs(got[:, 2] - want[:, 2]).max()))
    print(f"{net}: max |diff| part_pred {worst['part_pred']:.2e}, locref {worst['locref']:.2e}, "
          f"intermediate {worst['part_pred_interm']:.2e}; keypoints {pixels:.2e} px, confidence {confidence:.2e}")
    assert max(worst.values()) < MAP_TOLERANCE, worst
    assert pixels < PIXEL_TOLERANCE
    assert confidence < CONFIDENCE_TOLERANCE
