"""A network trained briefly on frames of a moving figure follows the figure in ``crosspose analyze``."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pandas as pd
import pytest

from crosspose.cli import main
from crosspose.data.coco import save_coco_keypoints
from crosspose.testing import TINY_JOINTS, write_moving_figure_video


def _frames_as_coco(video: Path, truth: np.ndarray, folder: Path) -> Path:
    """Every frame as an image with one whole-frame instance (a DeepLabCut-style labelled frame)."""
    (folder / "images").mkdir(parents=True)
    images, annotations = [], []
    with av.open(str(video)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            rgb = frame.to_ndarray(format="rgb24")
            h, w = rgb.shape[:2]
            cv2.imwrite(str(folder / "images" / f"{i:04d}.png"), rgb[:, :, ::-1])
            kps = [v for x, y in truth[i] for v in (float(x), float(y), 2)]
            images.append({"id": i + 1, "file_name": f"images/{i:04d}.png", "width": w, "height": h})
            annotations.append({"id": i + 1, "image_id": i + 1, "category_id": 1, "keypoints": kps,
                                "num_keypoints": len(TINY_JOINTS), "iscrowd": 0,
                                "bbox": [0.0, 0.0, float(w), float(h)], "area": float(w * h)})
    category = {"id": 1, "name": "figure", "keypoints": list(TINY_JOINTS), "skeleton": [[1, 2], [1, 3], [1, 4]]}
    return save_coco_keypoints(folder / "frames.json", images, annotations, category)


@pytest.mark.slow
def test_a_briefly_trained_network_follows_the_figure(tmp_path: Path, one_torch_thread: None) -> None:
    video = tmp_path / "figure.mp4"
    truth = write_moving_figure_video(video, frames=40, size=(96, 128))  # 40 frames = 5 steps of 8 per epoch
    data = _frames_as_coco(video, truth, tmp_path / "data")
    assert main(["fit", "--model.num_keypoints", "4", "--model.backbone", "resnet18", "--model.radius", "6",
                 "--model.optimizer", "torch.optim.Adam", "--model.optimizer.lr", "0.001",
                 "--model.lr_schedule", "constant", "--data.train_file", str(data), "--data.val_file", str(data),
                 "--data.input_size", "96", "--data.padding", "1.0", "--data.batch_size", "8",
                 "--data.num_workers", "0", "--data.augmentation.rotation", "0", "--data.augmentation.scale",
                 "[0.9, 1.1]", "--trainer.max_steps", "150", "--trainer.max_epochs", "-1",
                 "--trainer.check_val_every_n_epoch", "10", "--trainer.enable_progress_bar", "false",
                 "--trainer.enable_model_summary", "false", "--trainer.default_root_dir", str(tmp_path / "run")]) == 0
    out = tmp_path / "analysed"
    assert main(["analyze", "--model", str(tmp_path / "run" / "checkpoints" / "last.ckpt"), str(video),
                 "--out", str(out), "--labeled-video", "--device", "cpu"]) == 0
    frame = pd.read_hdf(out / "figure.h5", key="df_with_missing")
    assert len(frame) == len(truth)
    table = frame.droplevel("scorer", axis=1)
    xy = np.stack([table[name][["x", "y"]].to_numpy() for name in TINY_JOINTS], axis=1)
    error = np.linalg.norm(xy - truth, axis=-1)
    print(f"median error {np.median(error):.1f} px, 90th percentile {np.percentile(error, 90):.1f} px")
    assert np.median(error) < 8.0  # frame 128 px wide, blobs 10 px across, the figure moves ~80 px
    assert np.corrcoef(table["head"]["x"], truth[:, 0, 0])[0, 1] > 0.9  # it follows, not a constant guess
