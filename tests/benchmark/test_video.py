"""The benchmark's video row: its summaries, h5 read-back, report table, and a tiny crosspose-only run.

Nothing here is timed: only that every row ran, wrote one h5 row per frame and was reported.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from crosspose.benchmark.report import format_report, video_table
from crosspose.benchmark.video import (
    check_outputs,
    h5_rows,
    keypoint_difference,
    stage_shares,
    summarise_analysis,
)
from crosspose.cli import main as cli_main


def test_stage_shares_are_of_wall_plus_writing() -> None:
    times = {"decode": 1.0, "resize": 0.5, "network": 6.0, "decode_maps": 0.5, "write": 2.0,
             "wait_for_frames": 0.2, "wall": 8.0, "frames": 100}
    shares = stage_shares(times)
    assert shares["network"] == pytest.approx(0.6) and shares["write"] == pytest.approx(0.2)
    assert shares["decode"] == pytest.approx(0.1) and shares["wait_for_frames"] == pytest.approx(0.02)
    assert stage_shares({"wall": 0.0}) == {}
    summary = summarise_analysis(times, 100)
    assert summary["frames_per_s"] == pytest.approx(12.5) and summary["frames_per_s_with_writing"] == 10.0


def test_keypoint_difference_ignores_missing_joints() -> None:
    ref = np.zeros((2, 3, 3))
    other = ref.copy()
    other[0, 0, :2] = (3.0, 4.0)  # 5 px off
    other[1, 2, 0] = np.nan  # not found in one of them: left out, not counted as 0
    diff = keypoint_difference(ref, other)
    assert diff["px_mean"] == pytest.approx(1.0) and diff["px_max"] == pytest.approx(5.0)
    assert diff["px_median"] == 0.0
    with pytest.raises(ValueError, match="different shapes"):
        keypoint_difference(ref, ref[:1])


def _write_h5(path: Path, rows: int, offset: float = 0.0) -> Path:
    import pandas as pd

    columns = pd.MultiIndex.from_product([["scorer"], ["a", "b"], ["x", "y", "likelihood"]],
                                         names=["scorer", "bodyparts", "coords"])
    values = np.arange(rows * 6, dtype=float).reshape(rows, 6) + offset
    pd.DataFrame(values, columns=columns).to_hdf(path, key="df_with_missing", mode="w")
    return path


def test_outputs_are_read_back_and_compared(tmp_path: Path) -> None:
    rows = {"ref": {"h5": str(_write_h5(tmp_path / "a.h5", 4))},
            "other": {"h5": str(_write_h5(tmp_path / "b.h5", 4, offset=1.0))},
            "short": {"h5": str(_write_h5(tmp_path / "c.h5", 3))},
            "broken": {"h5": str(tmp_path / "missing.h5")}, "skipped": {"unsupported": "no"}}
    count, kp = h5_rows(rows["ref"]["h5"])
    assert count == 4 and kp.shape == (4, 2, 3)
    check_outputs(rows, frames=4, reference="ref")
    assert rows["ref"]["h5_check"] == "ok" and "vs_reference" not in rows["ref"]
    assert rows["other"]["vs_reference"]["px_mean"] == pytest.approx(np.sqrt(2))
    assert rows["short"]["h5_check"] == "3 rows for 4 frames" and "vs_reference" not in rows["short"]
    assert rows["broken"]["h5_check"].startswith("unreadable")
    assert "h5_check" not in rows["skipped"]


def test_video_table_prints_every_row_and_margin() -> None:
    no_bf16 = "not supported on this CPU (no avx512_bf16 / amx_bf16)"
    shares = {"decode": 0.1, "resize": 0.05, "network": 0.7, "decode_maps": 0.05, "write": 0.1, "wait_for_frames": 0.0}
    report = {
        "settings": {"batch": 8, "backbone": "resnet50", "video_frames": 300, "video_size": [480, 640]},
        "deeplabcut": {"resnet50": {"available": True, "analyze": {"frames_per_s": 2.0, "frames_per_s_whole_call": 1.5,
                                                                    "h5_check": "ok"}},
                       "resnet50_gn": {"available": False, "reason": "install failed"}},
        "video": {"prepare": {"quantize": {"calibration_images": 8}, "quantize_seconds": 30.0},
                  "crosspose": {"pytorch fp32": {"frames_per_s": 5.0, "shares": shares, "h5_check": "ok",
                                                 "allocator": "allocator: freed memory kept (glibc)"},
                                "pytorch bf16": {"unsupported": no_bf16},
                                "onnxruntime int8": {"frames_per_s": 9.0, "shares": shares, "h5_check": "ok",
                                                     "vs_reference": {"px_mean": 0.25, "px_median": 0.1}}}}}
    text = "\n".join(video_table(report))
    assert "300 frames of 640x480, batch 8" in text
    assert "| DeepLabCut 3.0.2 `analyze_videos` | `resnet50` (BatchNorm), fp32 | 2.00 | 1.50 |" in text
    assert "`resnet50_gn` (GroupNorm) | install failed |" in text
    assert "| 5.00 | n/a | 2.50x / n/a | 10 / 5 / 70 / 5 / 10 / 0 |" in text
    assert f"pytorch bf16 | {no_bf16} |" in text
    assert "| 0.25 / 0.10 | ok |" in text and "calibrated on 8 frames" in text
    assert "crosspose analyze ran with allocator: freed memory kept (glibc); DeepLabCut with its C library's" in text
    # --dlc-malloc keep: DeepLabCut ran with the same allocator setting, and the table says so
    report["settings"]["dlc_malloc"] = "keep"
    text = "\n".join(video_table(report))
    assert "| DeepLabCut 3.0.2 (freed memory kept) `analyze_videos` | `resnet50` (BatchNorm), fp32 | 2.00 |" in text
    assert ("DeepLabCut with freed memory kept (--dlc-malloc keep: GLIBC_TUNABLES=glibc.malloc.mmap_max=0:"
            "glibc.malloc.trim_threshold=4294967296)") in text
    failed = {**report, "video": {"prepare": {"error": "exit 1: boom"}}}
    assert "failed (exit 1: boom)" in "\n".join(video_table(failed))
    assert video_table({"settings": {}}) == []


@pytest.mark.slow
def test_video_row_runs_on_a_tiny_network(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """crosspose analyze of a small video in every precision this CPU has; each h5 has one row per frame."""
    from crosspose.core.hardware import precision_support, read_cpu_features

    out_json = tmp_path / "report.json"
    status = cli_main(["benchmark", "--workdir", str(tmp_path / "run"), "--skip-dlc", "--backbone", "resnet18",
                       "--size", "32", "--batch", "2", "--images", "2", "--warmup", "1", "--repeats", "1",
                       "--steps", "1", "--workers", "0", "--gn-backbone", "", "--video-frames", "5",
                       "--video-size", "64x48", "--calibration-frames", "2", "--json", str(out_json)])
    text = capsys.readouterr().out
    assert status == 0, text
    report = json.loads(out_json.read_text())
    rows = report["video"]["crosspose"]
    support = precision_support(read_cpu_features())
    expected = ["pytorch fp32", "onnxruntime fp32"] + [n for n, p in (("pytorch bf16", "bf16"),
                                                                      ("onnxruntime int8", "int8")) if not support[p]]
    if not support["bf16"]:  # bf16 as auto runs it (fused oneDNN calls) and compiled (a no-op compile here)
        expected.append("pytorch bf16 compiled")
        assert rows["pytorch bf16 compiled"]["compile_reason"] == "compile: on (on: asked for)"
        assert not rows["pytorch bf16"]["compiled"]
    for name in expected:
        assert rows[name]["h5_check"] == "ok" and rows[name]["frames"] == 5, (name, rows[name])
        assert rows[name]["frames_per_s"] > 0 and set(rows[name]["shares"]) >= {"decode", "network", "write"}
    assert rows["onnxruntime fp32"]["vs_reference"]["px_mean"] < 0.5  # the same arithmetic, another runtime
    assert "### Video analysis: 5 frames of 64x48" in text and format_report(report) in text
