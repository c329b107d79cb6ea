"""Helpers for crosspose's tests and for users who test their own extensions: toy data, fixtures, faults.

Importable (unlike a ``conftest.py``), so subprocesses, DDP workers and ``--trainer.callbacks``
class paths reach them too. Nothing here is used by crosspose itself.

Example:
    >>> from pathlib import Path; import tempfile
    >>> from crosspose.testing import write_tiny_coco
    >>> path = write_tiny_coco(Path(tempfile.mkdtemp()) / "toy", count=2, size=32)
    >>> path.name
    'data.json'
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from lightning.pytorch import Callback

from crosspose.data.coco import save_coco_keypoints

__all__ = ["REPO", "SHARED_FIXTURES", "TINY_JOINTS", "CrashAfterEpoch", "overfit_tiny_module", "requires_fixture",
           "write_tiny_coco"]

REPO = Path(__file__).resolve().parents[2]
"""The checkout root (meaningful in a source checkout, where the tests run)."""

SHARED_FIXTURES = Path(os.environ.get("CROSSPOSE_FIXTURES", REPO.parent / "shared" / "fixtures"))
"""Real release-format samples (``../shared/fixtures`` beside the checkout, or ``$CROSSPOSE_FIXTURES``)."""

TINY_JOINTS = ("head", "left_hand", "right_hand", "tail")
_COLOURS = ((255, 60, 60), (60, 255, 60), (60, 60, 255), (255, 255, 60))


def requires_fixture(*relative: str) -> Any:
    """A pytest ``skipif`` mark: skip, saying which file is missing, when a real fixture is absent."""
    import pytest

    missing = [r for r in relative if not (SHARED_FIXTURES / r).exists()]
    reason = f"real fixture {SHARED_FIXTURES / missing[0]} is absent (a fresh clone has no ../shared)" if missing else ""
    return pytest.mark.skipif(bool(missing), reason=reason)


def write_tiny_coco(folder: Path, count: int = 12, size: int = 96, seed: int = 0,
                    name: str = "data.json", joints: tuple[str, ...] = TINY_JOINTS) -> Path:
    """A learnable toy set: each joint is a coloured blob on a noisy background; returns the COCO file."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(count):
        img = rng.integers(0, 80, (size, size, 3), dtype=np.uint8)
        kps: list[float] = []
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


class CrashAfterEpoch(Callback):
    """Simulates a crash at the end of an epoch (for resume tests)."""

    def __init__(self, epoch: int = 0) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.current_epoch == self.epoch:
            raise RuntimeError(f"simulated crash after epoch {self.epoch}")


def overfit_tiny_module(folder: Path, steps: int = 40, size: int = 64, count: int = 4, seed: int = 0) -> Any:
    """A resnet18 PoseEstimationModule overfitted on ``count`` toy images, and their batch at ``size`` px.

    Reduced-precision tests need score maps with real peaks: on random weights the maps are flat and
    any rounding moves the argmax anywhere. Returns ``(module, batch)``, the module in eval mode.
    """
    import torch

    from crosspose.data.coco import load_coco_keypoints
    from crosspose.data.dataset import InstanceDataset
    from crosspose.training.module import PoseEstimationModule

    coco = load_coco_keypoints(write_tiny_coco(folder, count=count, size=96, seed=seed))
    dataset = InstanceDataset(coco, (size, size), padding=1.0)
    batch = {k: torch.stack([dataset[i][k] for i in range(len(dataset))]) for k in dataset[0]}
    torch.manual_seed(seed)
    module = PoseEstimationModule(num_keypoints=coco.num_keypoints, backbone="resnet18", radius=17.0 * size / 256)
    module.prepare_network()
    optimizer = torch.optim.Adam(module.parameters(), lr=2e-3)
    module.train()
    for _ in range(steps):
        loss = module._losses(batch, module(batch["image"]))["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return module.eval(), batch
