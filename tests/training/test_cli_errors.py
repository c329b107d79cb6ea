"""Every bad training option is one line on stderr and exit status 2, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from crosspose.cli import main

BAD_OPTIONS = {
    "radius negative": (["--model.radius", "-1"], "model.radius must be positive"),
    "radius not a number": (["--model.radius", "abc"], "model.radius"),
    "no keypoints": (["--model.num_keypoints", "0"], "model.num_keypoints must be positive"),
    "sigma zero": (["--model.heatmap", "gaussian", "--model.sigma", "0"], "model.sigma must be positive"),
    "locref_std negative": (["--model.locref_std", "-7"], "model.locref_std must be positive"),
    "warmup negative": (["--model.warmup_steps", "-1"], "model.warmup_steps must be 0 or more"),
    "lr scale negative": (["--model.backbone_lr_scale", "-0.1"], "model.backbone_lr_scale must be 0 or more"),
    "unknown freeze level": (["--model.freeze", "stage9"], "model.freeze"),
    "unknown heads mode": (["--model.heads", "copy"], "model.heads"),
    "unknown compile mode": (["--model.compile", "fastest"], "model.compile"),
    "unknown option": (["--model.nope", "3"], "unrecognized arguments"),
    "batch size negative": (["--data.batch_size", "-2"], "data.batch_size must be positive"),
    "workers negative": (["--data.num_workers", "-1"], "data.num_workers must be 0 or more"),
    "input size not /16": (["--data.input_size", "100"], "data.input_size must be positive multiples of 16"),
    "padding zero": (["--data.padding", "0"], "data.padding must be positive"),
    "probability above 1": (["--data.augmentation.rotation_p", "2"], "data.augmentation.rotation_p"),
    "scale range reversed": (["--data.augmentation.scale", "[1.5, 0.5]"], "data.augmentation.scale"),
    "learning rate negative": (["--model.optimizer", "torch.optim.SGD", "--model.optimizer.lr", "-1"],
                               "learning rate"),
    "missing train file": ([], "absent.json: file not found"),
}


@pytest.mark.parametrize("case", sorted(BAD_OPTIONS))
def test_bad_option_is_one_line_and_exit_2(case: str, tmp_path: Path, tiny_coco: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    extra, expected = BAD_OPTIONS[case]
    train = ["--data.train_file", str(tiny_coco)] if case != "missing train file" else \
        ["--data.train_file", str(tmp_path / "absent.json")]
    rc = main(["fit", "--model.num_keypoints", "4", "--model.backbone", "resnet18", "--data.input_size", "64",
               "--data.num_workers", "0", "--trainer.max_steps", "1", "--trainer.default_root_dir",
               str(tmp_path / "run"), "--trainer.enable_progress_bar", "false", *train, *extra])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("crosspose fit: error:")]
    assert rc == 2, err
    assert len(errors) == 1 and expected in errors[0], err
    assert "Traceback" not in err
