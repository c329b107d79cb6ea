"""Shared fixtures: a tiny COCO keypoints data set the tests write themselves."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from lightning.pytorch import Callback

from crosspose.data.coco import save_coco_keypoints

REPO = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = REPO.parent / "shared" / "fixtures"

TINY_JOINTS = ("head", "left_hand", "right_hand", "tail")
_COLOURS = ((255, 60, 60), (60, 255, 60), (60, 60, 255), (255, 255, 60))


def write_tiny_coco(folder: Path, count: int = 12, size: int = 96, seed: int = 0,
                    name: str = "data.json", joints: tuple[str, ...] = TINY_JOINTS) -> Path:
    """A learnable toy set: each joint is a coloured blob on a noisy background."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(count):
        img = rng.integers(0, 80, (size, size, 3), dtype=np.uint8)
        kps = []
        pts = rng.uniform(size * 0.2, size * 0.8, (len(joints), 2))
        for j, (x, y) in enumerate(pts):
            cv2.circle(img, (int(round(x)), int(round(y))), 5, _COLOURS[j % len(_COLOURS)], -1)
            v = 0 if (i % 5 == 4 and j == len(joints) - 1) else 2  # a few unlabelled joints
            kps += [float(x), float(y), v] if v else [0.0, 0.0, 0]
        fname = f"images/img{i:03d}.png"
        cv2.imwrite(str(folder / fname), img[:, :, ::-1])
        images.append({"id": i + 1, "file_name": fname, "width": size, "height": size})
        annotations.append({"id": i + 1, "image_id": i + 1, "category_id": 1, "keypoints": kps,
                            "num_keypoints": sum(1 for v in kps[2::3] if v), "iscrowd": 0,
                            "bbox": [0.0, 0.0, float(size), float(size)], "area": float(size * size)})
    links = [[1, j] for j in range(2, len(joints) + 1)]
    category = {"id": 1, "name": "toy", "keypoints": list(joints), "skeleton": links}
    return save_coco_keypoints(folder / name, images, annotations, category)


@pytest.fixture
def one_torch_thread():
    """Tiny convolutions on a shared 2-core machine: extra threads only wait for each other."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_coco(tmp_path: Path) -> Path:
    return write_tiny_coco(tmp_path / "tiny")



class CrashAfterEpoch(Callback):
    """Simulates a crash at the end of an epoch (for resume tests)."""

    def __init__(self, epoch: int = 0) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            raise RuntimeError(f"simulated crash after epoch {self.epoch}")
