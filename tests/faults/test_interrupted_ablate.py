"""An ``ablate`` killed mid-cell and rerun gives the table of an uninterrupted one (CPU, same machine)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crosspose.testing import crosspose_command, kill_mid_stage_and_rerun, write_tiny_coco


def _config(tmp_path: Path) -> Path:
    data = write_tiny_coco(tmp_path / "d", count=6, size=48, seed=5)
    config = tmp_path / "base.yaml"
    config.write_text(
        "model:\n  num_keypoints: 4\n  backbone: resnet18\n  pretrained: false\n  warmup_steps: 2\n"
        f"data:\n  train_file: {data}\n  val_file: {data}\n  test_file: {data}\n  input_size: 32\n"
        "  batch_size: 2\n  num_workers: 0\n"
        "trainer:\n  max_steps: 7\n  max_epochs: -1\n  enable_progress_bar: false\n")
    return config


def _rows(out: Path) -> list[dict]:
    rows = json.loads((out / "ablation.json").read_text())["runs"]
    return [{k: v for k, v in r.items() if k not in ("seconds", "run_dir")} for r in rows]


@pytest.mark.slow
def test_ablate_killed_mid_cell_then_rerun_gives_the_uninterrupted_table(tmp_path: Path) -> None:
    config = _config(tmp_path)
    straight, killed = kill_mid_stage_and_rerun(
        lambda out: crosspose_command("ablate", "--config", str(config), "--seeds", "2", "--out", str(out)),
        tmp_path, stage="scratch-freeze_none-nall-seed0", timeout=900)
    assert _rows(killed) == _rows(straight)
    assert (killed / "ablation.md").read_text() == (straight / "ablation.md").read_text()
