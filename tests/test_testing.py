"""The test helpers of crosspose.testing that run no training: checked on trivial subprocesses."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from crosspose.testing import kill_mid_stage_and_rerun

# A stand-in for a resumable run: it checkpoints, works (long on a fresh start, which is where it is
# killed; not at all when resuming from its checkpoint), then marks the stage finished.
_STAGE = """
import pathlib, sys, time
stage = pathlib.Path(sys.argv[1]) / "cell"
ckpt = stage / "checkpoints" / "last.ckpt"
resumed = ckpt.exists()
ckpt.parent.mkdir(parents=True, exist_ok=True)
ckpt.write_text("step 2")
if not resumed:
    time.sleep(float(sys.argv[2]))
(stage / "metrics.json").write_text("resumed" if resumed else "straight")
"""


def test_kill_mid_stage_and_rerun_kills_after_the_checkpoint_and_resumes(tmp_path: Path) -> None:
    def command(out: Path) -> list[str]:
        return [sys.executable, "-c", _STAGE, str(out), "0" if out.name == "straight" else "60"]

    straight, killed = kill_mid_stage_and_rerun(command, tmp_path, stage="cell", timeout=30)
    assert (straight, killed) == (tmp_path / "straight", tmp_path / "killed")
    assert (straight / "cell" / "metrics.json").read_text() == "straight"
    assert (killed / "cell" / "metrics.json").read_text() == "resumed"  # the killed run never finished


def test_kill_mid_stage_and_rerun_fails_when_the_stage_ends_before_the_kill(tmp_path: Path) -> None:
    finish_at_once = "import pathlib, sys; p = pathlib.Path(sys.argv[1], 'cell'); p.mkdir(parents=True); " \
                     "(p / 'metrics.json').write_text('done')"

    def command(out: Path) -> list[str]:
        return [sys.executable, "-c", finish_at_once, str(out)]

    with pytest.raises(AssertionError, match="ended before it could be killed"):
        kill_mid_stage_and_rerun(command, tmp_path, stage="cell", timeout=30)


def test_kill_mid_stage_and_rerun_reports_a_failing_run(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="boom"):
        kill_mid_stage_and_rerun(lambda out: [sys.executable, "-c", "raise SystemExit('boom')"], tmp_path,
                                 stage="cell", timeout=30)
