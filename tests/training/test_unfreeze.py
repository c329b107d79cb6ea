"""Gradual unfreezing in training: when parameters start to learn, the optimizer, exact resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch

from crosspose.cli import main
from crosspose.data.datamodule import PoseDataModule
from crosspose.data.transforms import Augmentation
from crosspose.models.unfreeze import stage_parameters
from crosspose.testing import assert_same_training_state, write_tiny_coco
from crosspose.training.module import PoseEstimationModule

SCHEDULE = {3: "stage3", 5: "none"}  # after freeze: backbone -> stage 4 learns from step 3, all from 5


class Recorder(L.Callback):
    """After every optimizer step: the global step, stage weights and what the optimizer holds."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def on_train_batch_end(self, trainer: L.Trainer, module: Any, outputs: Any, batch: Any, idx: int) -> None:
        backbone = module.net.backbone
        opt = trainer.optimizers[0]
        held = {id(p) for g in opt.param_groups for p in g["params"]}
        with_state = {id(p) for p, st in opt.state.items() if st}
        row: dict[str, Any] = {"step": trainer.global_step}
        for stage in ("stem", "stage1", "stage4"):
            params = stage_parameters(backbone, [stage])
            row[stage] = [p.detach().clone() for p in params]
            row[f"{stage}_trainable"] = all(p.requires_grad for p in params)
            row[f"{stage}_held"] = all(id(p) in held for p in params)
            row[f"{stage}_state"] = any(id(p) in with_state for p in params)
        bn = next(m for m in backbone.stage_modules("stage4")[0].modules() if isinstance(m, torch.nn.BatchNorm2d))
        row["stage4_bn_mean"] = bn.running_mean.clone()
        self.rows.append(row)


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_stages_learn_from_their_step_and_the_optimizer_holds_them(tmp_path: Path, one_torch_thread: None) -> None:
    data = write_tiny_coco(tmp_path / "d", count=8, seed=4)
    module = PoseEstimationModule(
        num_keypoints=4, backbone="resnet18", freeze="backbone", unfreeze=SCHEDULE, norm="batch",
        optimizer=lambda params: torch.optim.SGD(params, lr=0.01, momentum=0.9), backbone_lr_scale=0.5,
        lr_schedule="constant")
    dm = PoseDataModule(train_file=str(data), input_size=64, batch_size=2, num_workers=0,
                        augmentation=Augmentation(color_p=0.0, blur_p=0.0, noise_p=0.0))
    start = {s: [p.detach().clone() for p in stage_parameters(module.net.backbone, [s])] for s in ("stem", "stage4")}
    rec = Recorder()
    trainer = L.Trainer(max_steps=7, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[rec], num_sanity_val_steps=0)
    trainer.fit(module, dm)
    by_step = {r["step"]: r for r in rec.rows}
    assert sorted(by_step) == list(range(1, 8))
    for step, r in by_step.items():
        # weights after `step` optimizer steps: stage 4 first moves at step 4 (the step taken at global_step 3)
        assert _same(r["stage4"], start["stage4"]) == (step <= 3), step
        assert _same(r["stem"], start["stem"]) == (step <= 5), step
        assert r["stage4_trainable"] == (step >= 4) and r["stem_trainable"] == (step >= 6)
        # every scheduled stage is in the optimizer all along; state appears once it learns
        assert r["stage4_held"] and r["stem_held"] and r["stage1_held"]
        assert r["stage4_state"] == (step >= 4) and r["stem_state"] == (step >= 6)
    # a frozen stage's BatchNorm statistics did not move before its unfreeze either
    assert torch.equal(by_step[3]["stage4_bn_mean"], by_step[1]["stage4_bn_mean"])
    assert not torch.equal(by_step[5]["stage4_bn_mean"], by_step[3]["stage4_bn_mean"])
    groups = {g["name"]: g for g in trainer.optimizers[0].param_groups}
    assert groups["backbone"]["lr"] == pytest.approx(0.5 * groups["heads"]["lr"])


FAST = ["--data.input_size", "64", "--data.num_workers", "0", "--data.batch_size", "2",
        "--model.backbone", "resnet18", "--model.num_keypoints", "4", "--model.freeze", "backbone",
        "--model.unfreeze", "{3: stage3, 5: none}", "--model.norm", "batch",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.max_epochs", "4"]


def test_run_interrupted_after_the_unfreeze_resumes_to_the_same_weights(tmp_path: Path,
                                                                        one_torch_thread: None) -> None:
    data = write_tiny_coco(tmp_path / "d", count=4, seed=5)  # 2 steps an epoch: unfreezes at 3 and 5
    files = ["--data.train_file", str(data), "--data.val_file", str(data)]
    assert main(["fit", *FAST, *files, "--trainer.default_root_dir", str(tmp_path / "straight")]) == 0
    with pytest.raises(RuntimeError, match="simulated crash"):
        main(["fit", *FAST, *files, "--trainer.default_root_dir", str(tmp_path / "resumed"),
              "--trainer.callbacks+=crosspose.testing.CrashAfterEpoch", "--trainer.callbacks.epoch", "1"])
    crashed = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", weights_only=True)
    assert crashed["global_step"] == 4  # past the first unfreeze point (3), before the second (5)
    assert main(["fit", *FAST, *files, "--trainer.default_root_dir", str(tmp_path / "resumed"),
                 "--ckpt_path", "last"]) == 0
    a = torch.load(tmp_path / "straight" / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 8
    assert_same_training_state(a, b)
    # and the run did learn in the stem (unfrozen at 5), so the comparison covers unfrozen weights
    first = PoseEstimationModule(num_keypoints=4, backbone="resnet18")
    stem = "net.backbone.body.conv1.weight"
    assert not torch.allclose(a["state_dict"][stem], first.state_dict()[stem])
