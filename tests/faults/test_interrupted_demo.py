"""A ``demo`` killed mid-stage and rerun gives the results of an uninterrupted one (CPU, same machine)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from crosspose.testing import REPO

ENV = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _profile(tmp_path: Path) -> Path:
    """The smoke profile, 4 steps a stage with a validation (and so a last.ckpt) every 2 steps."""
    cfg = yaml.safe_load((REPO / "configs" / "demo" / "smoke.yaml").read_text())
    cfg["experiment"].update(pretrain_steps=4, finetune_steps=4, benchmark_steps=4)
    cfg["trainer"].update(val_check_interval=2, check_val_every_n_epoch=None, enable_progress_bar=False)
    path = tmp_path / "interruptible.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _demo(profile: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "crosspose", "demo", "--profile", str(profile), "--out", str(out)],
                            env=ENV, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


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
    straight = _demo(profile, tmp_path / "straight")
    log, _ = straight.communicate(timeout=1200)
    assert straight.returncode == 0, log[-2000:]

    killed = _demo(profile, tmp_path / "killed")
    stage = tmp_path / "killed" / "transfer_seed0"
    deadline = time.monotonic() + 900
    while not (stage / "checkpoints" / "last.ckpt").exists() and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)  # mid-stage: after its step-2 checkpoint, before its end
    killed.communicate(timeout=60)
    assert not (stage / "metrics.json").exists()

    rerun = _demo(profile, tmp_path / "killed")
    log, _ = rerun.communicate(timeout=1200)
    assert rerun.returncode == 0, log[-2000:]
    assert _results(tmp_path / "killed") == _results(tmp_path / "straight")
