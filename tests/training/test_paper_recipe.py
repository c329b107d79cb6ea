"""configs/paper/ is DeepLabCut 2.2.0.6's recipe: its augmentation, disk units and fp32 precision."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from crosspose.data.transforms import Augmentation
from crosspose.testing import REPO

PAPER = REPO / "configs" / "paper"

# DeepLabCut 2.2.0.6, read off its wheel (pose_cfg.yaml and pose_imgaug.py; lines cited in the
# configs): scale jitter 0.5-1.25, rotation +-25 deg p 0.4, MotionBlur k=7 p 0.5, CoarseDropout p 0.5,
# ElasticTransformation p 0.5, CropAndPad +-15 % p 0.4; no mirror, colour, noise or translation.
DLC22_STEPS = [("scale", 1.0), ("rotate", 0.4), ("crop_pad", 0.4), ("motion_blur", 0.5),
               ("coarse_dropout", 0.5), ("elastic", 0.5)]


def _build(config: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """The LightningCLI objects of a config, as on a GPU machine (whose default precision is bf16)."""
    import crosspose.training.cli as cli_mod

    gpu_defaults = {**cli_mod.trainer_defaults(), "precision": "bf16-mixed"}
    monkeypatch.setattr(cli_mod, "trainer_defaults", lambda subcommand=None: dict(gpu_defaults))
    # LightningCLI reads sys.argv when given no args (as crosspose's own entry point does)
    monkeypatch.setattr(sys, "argv", ["crosspose", "--config", str(config), "--model.pretrained", "false",
                                      "--model.backbone", "resnet18", "--model.init_from", "null",
                                      "--trainer.default_root_dir", str(tmp_path / "run"),
                                      "--trainer.logger", "false"])
    return cli_mod.CrossposeCLI(args=None, run=False)


def test_pretrain_macaque_builds_deeplabcut22_pipeline_in_fp32(monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    cli = _build(PAPER / "pretrain_macaque.yaml", monkeypatch, tmp_path)
    aug = cli.datamodule.augmentation
    assert aug.steps() == DLC22_STEPS
    assert aug == Augmentation.deeplabcut22()
    assert (aug.scale, aug.rotation, aug.crop_pad, aug.flip, aug.keep_outside) == ((0.5, 1.25), 25.0, 0.15, False, True)
    assert aug.color_p == aug.blur_p == aug.noise_p == aug.translate == 0.0
    assert cli.model.codec.radius_units == "original" and cli.model.codec.radius == 17.0
    # the trainer default would be bf16-mixed on a GPU; the paper config pins fp32
    assert cli.config["trainer"]["precision"] == "32-true"
    assert cli.trainer.precision == "32-true"


@pytest.mark.parametrize("name", ["finetune_mpii.yaml", "baseline_mpii.yaml", "benchmark_mpii.yaml"])
def test_every_paper_config_pins_fp32_and_deepercut_radius(name: str) -> None:
    import yaml

    cfg = yaml.safe_load((PAPER / name).read_text())
    assert cfg["trainer"]["precision"] == "32-true"
    if name == "benchmark_mpii.yaml":
        # DeeperCut's 17 px of the person-normalised image = 17 x global_scale 0.8452830189 input px
        assert cfg["model"]["radius_units"] == "input"
        assert cfg["model"]["radius"] == pytest.approx(17 * 0.8452830189, abs=0.01)
    else:
        assert cfg["model"]["radius_units"] == "original"


def test_benchmark_mpii_is_deepercuts_mpii_recipe() -> None:
    import yaml

    cfg = yaml.safe_load((PAPER / "benchmark_mpii.yaml").read_text())
    model, data = cfg["model"], cfg["data"]
    assert model["backbone"] == "resnet101" and model["intermediate_supervision"] is True
    assert model["intermediate_supervision_unit"] == 12
    assert model["num_keypoints"] == len(data["joints"]) == 14 and model["keypoint_names"] == data["joints"]
    assert not {"pelvis", "thorax"} & set(data["joints"])
    aug = data["augmentation"]
    assert aug["flip"] is True and aug["flip_p"] == 0.5 and aug["scale"] == [0.85, 1.15]
    assert aug["rotation_p"] == 0.0 and data["batch_size"] == 1
    # person height in the input = 400 px (refHeight) x global_scale 0.8452830189
    assert data["input_size"] / data["padding"] == pytest.approx(400 * 0.8452830189, rel=1e-3)
