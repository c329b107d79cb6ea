"""Make a DeepLabCut 3 reference for ``crosspose convert dlc-pytorch``: run by DeepLabCut's OWN Python.

    DLC_PYTHON tools/dlc3_reference.py OUT_DIR IMAGES.npz [STEPS]

Builds DeepLabCut 3's single-animal ``resnet_50`` model (``make_pytorch_pose_config``: timm
``resnet50_gn``, HeatmapHead) for the 17 MacaquePose joints, trains it for STEPS steps with its own
targets and losses on the images of IMAGES.npz (``image0``, ``image1``, ... RGB uint8) with random
labels, saves ``snapshot-001.pt`` + ``pytorch_config.yaml`` into OUT_DIR, and writes DeepLabCut's own
predictions on those images (its inference runner: its preprocessing, model and predictor) to
``OUT_DIR/dlc3_predictions.npz`` (``bodyparts{i}``: J x 3), with the images as ``OUT_DIR/images.npz``.
``CROSSPOSE_DLC3_REFERENCE=OUT_DIR pytest tests/convert/test_dlc_pytorch.py`` then checks crosspose
against them. Only the standard library, numpy and
DeepLabCut are imported: crosspose is not installed in DeepLabCut's environment. Nothing is downloaded
(random ImageNet-free start).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

JOINTS = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
          "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
          "right_knee", "left_ankle", "right_ankle"]


def main(out: Path, images_npz: Path, steps: int) -> None:
    import numpy as np
    import torch
    from deeplabcut.pose_estimation_pytorch.apis.utils import get_pose_inference_runner
    from deeplabcut.pose_estimation_pytorch.config.make_pose_config import (
        make_basic_project_config,
        make_pytorch_pose_config,
    )
    from deeplabcut.pose_estimation_pytorch.models import PoseModel

    torch.manual_seed(0)
    out.mkdir(parents=True, exist_ok=True)
    project = make_basic_project_config(str(out), JOINTS, max_individuals=1, multi_animal=False)
    cfg_path = out / "pytorch_config.yaml"
    cfg = make_pytorch_pose_config(project, cfg_path, net_type="resnet_50", save=True)
    model = PoseModel.build(cfg["model"])
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])  # for training only
    data = np.load(images_npz)
    images = [data[k] for k in sorted(k for k in data.files if k.startswith("image"))]
    rng = np.random.default_rng(0)
    labels = [np.concatenate([rng.uniform(0.2, 0.8, (len(JOINTS), 2)) * im.shape[1::-1], np.full((len(JOINTS), 1), 2.0)],
                             axis=1) for im in images]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    for step in range(steps):
        i = step % len(images)
        x = torch.from_numpy((images[i] / 255.0 - mean) / std).permute(2, 0, 1)[None].float()
        outputs = model(x)
        targets = model.get_target(outputs, {"keypoints": torch.from_numpy(labels[i][None, None]).float()})
        loss = model.get_loss(outputs, targets)["total_loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        print(f"step {step}: loss {float(loss):.4f}", flush=True)
    snapshot = out / "snapshot-001.pt"
    torch.save({"model": model.state_dict(), "metadata": {"epoch": 1}}, snapshot)
    runner = get_pose_inference_runner(cfg_path, snapshot, batch_size=1, device="cpu")
    predictions = runner.inference(images)
    result = {f"bodyparts{i}": np.asarray(p["bodyparts"])[0] for i, p in enumerate(predictions)}
    np.savez(out / "dlc3_predictions.npz", **result)
    np.savez(out / "images.npz", **{f"image{i}": im for i, im in enumerate(images)})
    print(f"wrote {snapshot}, {cfg_path}, {out / 'dlc3_predictions.npz'}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 20)
