"""Demo recipes: what `crosspose demo --recipe` takes from configs/paper/ and configs/paper_modern/."""

from __future__ import annotations

from pathlib import Path

import pytest

from crosspose.core.errors import ConfigError
from crosspose.data.transforms import Augmentation
from crosspose.experiments.recipes import recipe_settings


def test_demo_recipe_changes_nothing() -> None:
    assert recipe_settings("demo", "pretrain", 400, 128) == ({}, {}, {})


def test_paper_recipe_is_the_paper_configs_at_the_demo_sizes() -> None:
    model, data, trainer = recipe_settings("paper", "pretrain", 400, 128)
    opt = model["optimizer"]  # LightningCLI's form: the run builder instantiates it
    assert opt["class_path"] == "torch.optim.SGD"
    assert opt["init_args"]["lr"] == 0.005 and opt["init_args"]["momentum"] == 0.9
    assert (model["lr_schedule"], model["schedule_rescale"], model["norm"]) == ("deepercut", False, "frozen")
    assert (model["radius_units"], model["radius"]) == ("original", 17.0)  # original pixels: kept
    assert Augmentation(**data["augmentation"]) == Augmentation.deeplabcut22()
    assert data["padding"] == 1.0 and trainer == {"precision": "32-true"}
    assert "init_from" not in model and "backbone" not in model and "batch_size" not in data


def test_modern_recipe_scales_warmup_and_input_pixel_radius() -> None:
    model, data, trainer = recipe_settings("paper_modern", "pretrain", 400, 128)
    assert model["warmup_steps"] == 2  # 1,000 of 200,000 steps -> 2 of 400
    assert model["radius"] == pytest.approx(17.0 * 128 / 512)
    assert data["augmentation"]["flip"] is True and trainer == {}
    assert model["optimizer"]["class_path"] == "torch.optim.AdamW"


def test_unknown_recipe_or_missing_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown recipe"):
        recipe_settings("fancy", "pretrain", 10, 64)
    with pytest.raises(ConfigError, match="not found"):
        recipe_settings("paper", "pretrain", 10, 64, configs=tmp_path)
