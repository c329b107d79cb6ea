"""An ``ablate`` killed mid-cell and rerun gives the table of an uninterrupted one (CPU, same machine)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crosspose.testing import REPO, write_tiny_coco

ENV = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _config(tmp_path: Path) -> Path:
    data = write_tiny_coco(tmp_path / "d", count=6, size=48, seed=5)
    config = tmp_path / "base.yaml"
    config.write_text(
        "model:\n  num_keypoints: 4\n  backbone: resnet18\n  pretrained: false\n  warmup_steps: 2\n"
        f"data:\n  train_file: {data}\n  val_file: {data}\n  test_file: {data}\n  input_size: 32\n"
        "  batch_size: 2\n  num_workers: 0\n"
        "trainer:\n  max_steps: 7\n  max_epochs: -1\n  enable_progress_bar: false\n")
    return config


def _ablate(config: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "crosspose", "ablate", "--config", str(config), "--seeds", "2",
                             "--out", str(out)], env=ENV, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _rows(out: Path) -> list[dict]:
    rows = json.loads((out / "ablation.json").read_text())["runs"]
    return [{k: v for k, v in r.items() if k not in ("seconds", "run_dir")} for r in rows]


@pytest.mark.slow
def test_ablate_killed_mid_cell_then_rerun_gives_the_uninterrupted_table(tmp_path: Path) -> None:
    config = _config(tmp_path)
    straight = _ablate(config, tmp_path / "straight")
    log, _ = straight.communicate(timeout=900)
    assert straight.returncode == 0, log[-2000:]

    killed = _ablate(config, tmp_path / "killed")
    first_cell = tmp_path / "killed" / "scratch-freeze_none-nall-seed0" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 600
    while not first_cell.exists() and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)  # mid-cell: after its first checkpoint, before its end
    killed.communicate(timeout=60)
    assert not (tmp_path / "killed" / "scratch-freeze_none-nall-seed0" / "metrics.json").exists()

    rerun = _ablate(config, tmp_path / "killed")
    log, _ = rerun.communicate(timeout=900)
    assert rerun.returncode == 0, log[-2000:]
    assert _rows(tmp_path / "killed") == _rows(tmp_path / "straight")
    assert (tmp_path / "killed" / "ablation.md").read_text() == (tmp_path / "straight" / "ablation.md").read_text()
