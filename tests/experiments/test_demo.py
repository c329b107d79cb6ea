"""`crosspose demo` end to end on its smoke profile: every stage, the report, and reuse on rerun."""

from __future__ import annotations

import json
from pathlib import Path

from crosspose.cli import main

TABLE1_ROWS = ("| AUC", "| F1", "| Precision", "| Recall", "| Average RMSE", "| PCKh@0.5", "| Correct keypoints")


def test_demo_runs_every_stage_and_reports_all_four_models(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--profile", "smoke", "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    header = next(line for line in report.splitlines() if line.startswith("| Metric"))
    for model in ("Baseline (macaque net)", "Benchmark (human net", "Transfer (16 humans", "Scratch (16 humans"):
        assert model in header
    for row in TABLE1_ROWS:
        assert any(line.startswith(row) for line in report.splitlines()), row
    assert "Seeds: 0, 1" in report and "Transfer vs scratch on the same humans" in report
    assert "## What transfers" in report and "macaque vs transfer" in report and "Not measured" not in report
    for png in ("roc.png", "confidence_histograms.png", "pckh_per_joint.png", "samples_transfer.png"):
        assert (out / png).stat().st_size > 1000
    baseline = json.loads((out / "baseline" / "metrics.json").read_text())
    assert len(baseline["joints"]) == 12  # macaque net scored on the shared limb joints only
    transfer = json.loads((out / "transfer_seed0" / "metrics.json").read_text())
    assert transfer["run"]["global_step"] == 3 and len(transfer["joints"]) == 14

    # a rerun reuses every finished stage: no run folder is touched again
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/metrics.json")}
    assert main(["demo", "--profile", "smoke", "--out", str(out)]) == 0
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/metrics.json")} == stamps
