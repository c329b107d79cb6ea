"""Training rows in rounds of alternating order: the order, the mean, and the run that drives them."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from crosspose.benchmark import run as bench_run
from crosspose.benchmark.report import margins
from crosspose.benchmark.rounds import add_round, finish_rounds, round_order, round_ratios, start_rounds


def test_odd_rounds_run_the_rows_backwards() -> None:
    rows = ["dlc bn", "dlc gn", "fp32", "bf16"]
    assert round_order(rows, 0) == rows
    assert round_order(rows, 1) == rows[::-1]
    assert round_order(rows, 2) == rows


def test_a_linear_drift_cancels_from_the_mean_of_two_rounds() -> None:
    # a machine slowing down linearly: the row timed at slot t runs at true_rate * (1 - 0.05 t)
    true = {"dlc": 2.0, "crosspose": 2.6}
    summaries = {name: {"images_per_s": None} for name in true}
    order = list(true)
    slots = 0
    for index in range(2):
        for name in round_order(order, index):
            rate = true[name] * (1 - 0.05 * slots)
            slots += 1
            if index == 0:
                summaries[name]["images_per_s"] = rate
                start_rounds(summaries[name])
            else:
                add_round(summaries[name], rate)
    first_pass = summaries["crosspose"]["images_per_s"] / summaries["dlc"]["images_per_s"]
    for s in summaries.values():
        finish_rounds(s)
    mean = summaries["crosspose"]["images_per_s"] / summaries["dlc"]["images_per_s"]
    assert first_pass == pytest.approx(1.3 * 0.95)  # one pass: the drift is in the ratio
    assert mean == pytest.approx(1.3, rel=1e-3)      # alternating rounds: gone (to first order)
    assert summaries["crosspose"]["first_round_images_per_s"] == pytest.approx(2.6 * 0.95)
    assert round_ratios(summaries["crosspose"], summaries["dlc"]) == pytest.approx([1.3 * 0.95, 1.3 * 0.9 / 0.85])


def test_a_failed_round_is_a_gap_not_a_zero() -> None:
    summary = {"images_per_s": 3.0}
    add_round(summary, None)
    add_round(summary, 5.0)
    finish_rounds(summary)
    assert summary["rounds"] == [3.0, None, 5.0] and summary["images_per_s"] == 4.0
    assert round_ratios(summary, {"rounds": [1.0, 1.0, 2.0]}) == [3.0, None, 2.5]
    single = {"images_per_s": 3.0}
    finish_rounds(single)  # one round: nothing changes
    assert single == {"images_per_s": 3.0}


def test_rounds_run_every_row_in_reverse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(bench_run, "ensure_dlc", lambda venv, install: (Path("python"), ""))
    monkeypatch.setattr(bench_run, "dlc_rates",
                        lambda python, spec, work, backbone, timeout: calls.append(f"dlc {backbone}") or [1.0, 4.0])

    def crosspose_rates(row_spec: dict[str, Any], timeout: float) -> list[float | None]:
        calls.append(f"crosspose {row_spec['backbone']} {row_spec['precision']} {row_spec['stages']}")
        return [3.0, None]  # a failed inference is a gap

    monkeypatch.setattr(bench_run, "_crosspose_rates", crosspose_rates)
    monkeypatch.setattr(bench_run, "_int8_rates", lambda spec, timeout: calls.append("int8") or [10.0, 40.0])
    spec = {"device": "cpu", "backbone": "resnet50", "precision": "32", "rounds": 3}
    args = argparse.Namespace(precisions="fp32,bf16,int8", gn_backbone="resnet50_gn", dlc_venv="v", timeout=1.0)
    report: dict[str, Any] = {
        "deeplabcut": {"resnet50": {"train": {"summary": {"images_per_s": 2.0}},
                                    "infer": {"summary": {"images_per_s": 5.0}}},
                       "resnet50_gn": {"available": False, "reason": "failed"}},
        "crosspose": {"fp32": {"train": {"whole_step": {"images_per_s": 2.0}}, "infer": {"whole": {"images_per_s": 9.0}}},
                      "stages": {"train": {"model_step": {"images_per_s": 9.0}}},
                      "gn": {"train_error": "boom"},
                      "bf16": {"train": {"whole_step": {"images_per_s": 5.0}}},
                      "int8": {"result": {"ort_fp32": {"whole": {"images_per_s": 9.0}},
                                          "ort_int8": {"whole": {"images_per_s": 30.0}}}}}}
    bench_run.run_rounds(spec, args, tmp_path, report, save=None)
    # rows that ran in the first pass only; round 2 backwards, round 3 forwards
    forwards = ["dlc resnet50", "crosspose resnet50 32 whole", "crosspose resnet50 bf16 whole", "int8"]
    assert calls == forwards[::-1] + forwards
    dlc = report["deeplabcut"]["resnet50"]
    assert dlc["train"]["summary"]["rounds"] == [2.0, 1.0, 1.0]
    assert dlc["train"]["summary"]["images_per_s"] == pytest.approx(4 / 3)
    assert dlc["infer"]["summary"]["images_per_s"] == pytest.approx(13 / 3)
    fp32 = report["crosspose"]["fp32"]
    assert fp32["train"]["whole_step"]["rounds"] == [2.0, 3.0, 3.0]
    assert fp32["infer"]["whole"]["rounds"] == [9.0, None, None] and fp32["infer"]["whole"]["images_per_s"] == 9.0
    assert report["crosspose"]["int8"]["result"]["ort_int8"]["whole"]["rounds"] == [30.0, 40.0, 40.0]
    text = "\n".join(margins(report))
    assert "| same architecture, BatchNorm | 2.00x |" in text  # (8/3) / (4/3)
    assert "same architecture, BatchNorm 1.00x, 3.00x, 3.00x | 1.80x, failed, failed" in text
    assert "int8 vs DeepLabCut `resnet50` | 6.00x, 10.00x, 10.00x" in text


def test_rounds_below_one_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from crosspose.cli import main as cli_main

    assert cli_main(["benchmark", "--workdir", str(tmp_path), "--skip-dlc", "--rounds", "0"]) == 2
    assert "--rounds must be at least 1, got 0" in capsys.readouterr().err
