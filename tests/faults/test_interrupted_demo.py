"""A ``demo`` killed mid-stage and rerun gives the results of an uninterrupted one (CPU, same machine)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from crosspose.testing import REPO, crosspose_command, kill_mid_stage_and_rerun


def _profile(tmp_path: Path) -> Path:
    """The smoke profile, 4 steps a stage with a validation (and so a last.ckpt) every 2 steps."""
    cfg = yaml.safe_load((REPO / "configs" / "demo" / "smoke.yaml").read_text())
    cfg["experiment"].update(pretrain_steps=4, finetune_steps=4, benchmark_steps=4)
    cfg["trainer"].update(val_check_interval=2, check_val_every_n_epoch=None, enable_progress_bar=False)
    path = tmp_path / "interruptible.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _results(out: Path) -> dict[str, dict]:
    """Every stage's metrics.json, less the timing, and the report's tables (not its timing line)."""
    results = {}
    for path in sorted(out.glob("*/metrics.json")):
        metrics = json.loads(path.read_text())
        metrics.get("run", {}).pop("seconds", None)
        metrics.pop("source", None)  # these two name files inside the run's own folder
        metrics.pop("sources", None)
        results[path.parent.name] = metrics
    tables = [line for line in (out / "report.md").read_text().splitlines() if line.startswith("|")]
    return {"stages": results, "tables": {"lines": tables}}


@pytest.mark.slow
def test_demo_killed_mid_stage_then_rerun_gives_the_uninterrupted_results(tmp_path: Path) -> None:
    profile = _profile(tmp_path)
    straight, killed = kill_mid_stage_and_rerun(
        lambda out: crosspose_command("demo", "--profile", str(profile), "--out", str(out)), tmp_path,
        stage="transfer_seed0", timeout=1200)
    assert _results(killed) == _results(straight)
