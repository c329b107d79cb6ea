"""norm: frozen keeps BatchNorm statistics fixed in a real Lightning fit (not only after .train())."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch

from crosspose.data.datamodule import PoseDataModule
from crosspose.testing import write_tiny_coco
from crosspose.training.module import PoseEstimationModule


def _fit_two_steps(tmp_path: Path, norm: str) -> tuple[torch.Tensor, torch.Tensor]:
    data = write_tiny_coco(tmp_path / norm, count=4)
    module = PoseEstimationModule(num_keypoints=4, backbone="resnet18", norm=norm)  # type: ignore[arg-type]
    bn = module.net.backbone.body.bn1
    before = bn.running_mean.clone()
    dm = PoseDataModule(train_file=str(data), val_file=str(data), input_size=64, batch_size=2, num_workers=0)
    L.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False).fit(module, dm)
    return before, bn.running_mean


def test_frozen_norm_statistics_do_not_move_and_batch_norm_ones_do(tmp_path: Path, one_torch_thread: None) -> None:
    before, after = _fit_two_steps(tmp_path, "frozen")
    assert torch.equal(before, after)
    before, after = _fit_two_steps(tmp_path, "batch")
    assert not torch.equal(before, after)
