"""A run that stops at max_steps in the middle of an epoch still scores its final weights."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from crosspose.cli import main
from crosspose.testing import write_tiny_coco

FAST = ["--data.input_size", "64", "--data.num_workers", "0", "--model.backbone", "resnet18",
        "--model.num_keypoints", "4", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false"]


def _val_steps(run: Path) -> list[int]:
    with (run / "logs" / "version_0" / "metrics.csv").open() as fh:
        return [int(r["step"]) for r in csv.DictReader(fh) if r.get("val/pckh")]


@pytest.mark.parametrize("extra, expected", [
    # epoch-wise validation: 6 batches an epoch, max_steps 4 ends before the first epoch does
    ([], [4]),
    # step-wise validation every 3 steps: 3, and then the last step 5
    (["--trainer.val_check_interval", "3", "--trainer.check_val_every_n_epoch", "null"], [3, 5]),
])
def test_last_step_is_validated_and_can_be_best(tmp_path: Path, one_torch_thread: None,
                                                extra: list[str], expected: list[int]) -> None:
    data = write_tiny_coco(tmp_path / "d", count=12, seed=3)
    max_steps = expected[-1]
    run = tmp_path / "run"
    assert main(["fit", *FAST, "--data.train_file", str(data), "--data.val_file", str(data),
                 "--data.batch_size", "2", "--trainer.max_steps", str(max_steps),
                 "--model.optimizer", "torch.optim.Adam", "--model.optimizer.lr", "0.001",
                 "--model.lr_schedule", "constant",
                 "--trainer.default_root_dir", str(run), *extra]) == 0
    # Lightning logs validation metrics at the step count minus one (its step is the batch index)
    steps = [s + 1 for s in _val_steps(run)]
    assert steps == expected
    best = torch.load(run / "checkpoints" / "best.ckpt", weights_only=False)
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["global_step"] == max_steps
    # best.ckpt's score is one of the validations, and the final one is among its candidates
    monitor = next(c for k, c in best["callbacks"].items() if "val/pckh" in k)
    assert monitor["best_model_score"] is not None
    assert best["global_step"] in expected


def test_checkpoint_with_the_removed_pck_alpha_still_loads(tmp_path: Path) -> None:
    from crosspose.training.module import PoseEstimationModule

    module = PoseEstimationModule(num_keypoints=2, backbone="resnet18")
    ckpt = {"state_dict": module.state_dict(), "pytorch-lightning_version": "2.6.6",
            "hyper_parameters": {**dict(module.hparams), "pck_alpha": 0.5}}
    torch.save(ckpt, tmp_path / "old.ckpt")
    loaded = PoseEstimationModule.load_from_checkpoint(str(tmp_path / "old.ckpt"), weights_only=True)
    assert "pck_alpha" not in loaded.hparams
