"""Training recipes for the demo: its own, or the one of ``configs/paper/`` or ``configs/paper_modern/``.

``crosspose demo --recipe paper`` runs the demo's experiment (same synthetic data, network size,
input size, batch size, step budgets and seeds) with what a recipe config decides: optimizer and
learning-rate schedule, BatchNorm mode, disk radius and its units, augmentation, crop padding and
precision. Two demo runs that differ only by ``--recipe`` are therefore a recipe comparison at the
same step budget. Sizes are the demo profile's, so some values are adapted, each stated here:

- a warm-up given in steps is scaled by ``budget / config max_steps`` (at least 1 step);
- a radius in input pixels is scaled by ``demo input size / config input size`` (the same fraction
  of the input); a radius in original pixels is kept (it is a property of the images);
- the paper's multi-step schedule is kept unscaled, as ``configs/paper/`` runs it (``schedule_rescale:
  false``): within a short budget it is SGD at its first learning rate, 0.005;
- the benchmark recipe's 14-joint selection and intermediate supervision are not used (the demo's
  benchmark is scored like the other human networks, on the same skeleton).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from crosspose.core.errors import ConfigError

__all__ = ["CONFIG_FILES", "RECIPES", "recipe_settings"]

RECIPES = ("demo", "paper", "paper_modern")
CONFIG_FILES = {"pretrain": "pretrain_macaque.yaml", "finetune": "finetune_mpii.yaml",
                "benchmark": "benchmark_mpii.yaml"}
_MODEL_KEYS = ("optimizer", "lr_schedule", "schedule_rescale", "norm", "heatmap", "radius_units")
_DATA_KEYS = ("augmentation", "padding")
_REPO_CONFIGS = Path(__file__).resolve().parents[3] / "configs"


def recipe_settings(recipe: str, stage: str, steps: int, input_size: int,
                    configs: Path = _REPO_CONFIGS) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(model, data, trainer) overrides of ``recipe`` for a demo ``stage`` of ``steps`` optimizer steps.

    ``demo`` gives no overrides. ``stage`` is ``pretrain``, ``finetune`` (transfer and scratch) or
    ``benchmark``.
    """
    if recipe not in RECIPES:
        raise ConfigError(f"unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
    if recipe == "demo":
        return {}, {}, {}
    path = configs / recipe / CONFIG_FILES[stage]
    if not path.is_file():
        raise ConfigError(f"{path}: recipe config not found (the recipes are read from the repository's configs/)")
    cfg = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    model_cfg, data_cfg, trainer_cfg = (dict(cfg.get(k) or {}) for k in ("model", "data", "trainer"))
    model = {k: model_cfg[k] for k in _MODEL_KEYS if k in model_cfg}
    if "warmup_steps" in model_cfg:
        total = int(trainer_cfg.get("max_steps") or steps)
        model["warmup_steps"] = max(1, round(int(model_cfg["warmup_steps"]) * steps / max(total, 1)))
    if "radius" in model_cfg:
        radius = float(model_cfg["radius"])
        if model_cfg.get("radius_units", "input") == "input":
            radius *= input_size / float(data_cfg.get("input_size", input_size))
        model["radius"] = radius
    data = {k: data_cfg[k] for k in _DATA_KEYS if k in data_cfg}
    trainer = {"precision": trainer_cfg["precision"]} if "precision" in trainer_cfg else {}
    return model, data, trainer
