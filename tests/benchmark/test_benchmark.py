"""`crosspose benchmark`: a tiny crosspose-only run (DeepLabCut skipped) and the report's structure.

Nothing here is timed: the numbers of a 64 px resnet18 on a shared machine mean nothing, only that
every stage ran and was reported.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from crosspose.benchmark.run import (
    bf16_peak_tflops,
    dlc_constraints,
    format_report,
    make_synthetic_images,
    summarise_passes,
    summarise_steps,
)
from crosspose.cli import main as cli_main
from crosspose.data.coco import load_coco_keypoints


def test_summarise_steps_drops_warmup_and_takes_median_of_repeats() -> None:
    # steps of 1 s (warm-up: 5 s), batch 2 -> 2 img/s; one slow repeat must not move the median
    starts = [0.0, 5.0, 6.0, 7.0, 8.0, 9.0, 19.0, 20.0]
    out = summarise_steps(starts, [2] * len(starts), warmup=1, repeats=3)
    assert out["steps"] == 6
    assert out["repeats"] == pytest.approx([2.0, 2.0, 4 / 11])
    assert out["images_per_s"] == pytest.approx(2.0)
    assert summarise_passes([9.0, 2.0, 4.0, 2.0], images=8)["images_per_s"] == pytest.approx(4.0)


def test_synthetic_images_serve_both_tools(tmp_path: Path) -> None:
    coco = make_synthetic_images(tmp_path / "images", count=3, size=32)
    data = load_coco_keypoints(coco)
    assert len(data.instances()) == 3 and data.num_keypoints == 16
    assert all(data.image_path(i).is_file() for i in data.images)
    manifest = json.loads((tmp_path / "images" / "keypoints.json").read_text())
    assert len(manifest["images"]) == 3 and len(manifest["images"][0]["keypoints"]) == 16


def test_dlc_constraints_drop_only_clashing_pins(tmp_path: Path) -> None:
    installed = {"albumentations": "2.0.8", "filelock": "4.2.11", "torch": "2.14.1", "numpy": "2.4.6",
                 "crosspose": "0.1.0"}
    kept = dlc_constraints(tmp_path / "out" / "dlc.txt", installed).read_text().split()
    assert kept == ["numpy==2.4.6", "torch==2.14.1"]
    from_env = dlc_constraints(tmp_path / "env.txt").read_text().split()
    assert any(line.startswith("torch==") for line in from_env)
    assert not any(line.startswith(("albumentations==", "crosspose==")) for line in from_env)
    assert bf16_peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert bf16_peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert bf16_peak_tflops("Some Unknown GPU") is None


def test_crosspose_side_runs_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_json = tmp_path / "report.json"
    status = cli_main(["benchmark", "--workdir", str(tmp_path / "run"), "--skip-dlc", "--backbone", "resnet18",
                       "--size", "32", "--batch", "2", "--images", "4", "--warmup", "1", "--repeats", "1",
                       "--steps", "1", "--workers", "0", "--device", "cpu", "--json", str(out_json)])
    text = capsys.readouterr().out
    assert status == 0, text
    report = json.loads(out_json.read_text())
    cp = report["crosspose"]
    for stage in ("loading", "model_step", "whole_step"):
        assert cp["train"][stage]["images_per_s"] > 0, stage
    assert cp["infer"]["whole"]["images_per_s"] > 0 and cp["infer"]["images"] == 4
    assert cp["train"]["train_flops_per_image"] > cp["train"]["infer_flops_per_image"] > 0
    assert cp["train"]["peak_rss_bytes"] is None or cp["train"]["peak_rss_bytes"] > 0
    assert report["deeplabcut"] == {"available": False, "reason": "skipped (--skip-dlc)"}
    assert report["machine"]["cores"] and report["machine"]["torch"]
    assert "unavailable (skipped (--skip-dlc))" in text
    assert "training: model step alone" in text and "Machine:" in text and "164,000" in text
    assert format_report(report) in text


def test_unavailable_dlc_is_a_row_not_a_failure(tmp_path: Path) -> None:
    report = {"settings": {"size": 32, "batch": 2, "device": "cpu", "repeats": 1, "backbone": "resnet18",
                           "precision": "32", "channels_last": False, "compile": False, "workers": 0},
              "machine": {"cpu": "x", "cores": 2, "torch": "t", "torch_threads": 2},
              "crosspose": {"train_error": "boom"},
              "deeplabcut": {"available": False, "reason": "install failed (pip)"}}
    text = format_report(report)
    assert "DeepLabCut 3.0.2" in text and "unavailable (install failed (pip))" in text
    assert "train error | boom" in text


def test_bad_size_is_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = cli_main(["benchmark", "--workdir", str(tmp_path), "--skip-dlc", "--size", "30"])
    assert status == 2
    assert "multiple of 16" in capsys.readouterr().err


@pytest.mark.skipif(sys.platform != "linux", reason="memory sampling reads /proc")
def test_tree_memory_sampler_sees_the_process(tmp_path: Path) -> None:
    from crosspose.benchmark.run import run_child

    result, peak, error = run_child([sys.executable, "-c", "import json; b = bytearray(50_000_000); "
                                     "import time; time.sleep(0.3); print(json.dumps({'ok': len(b)}))"])
    assert error == "" and result == {"ok": 50_000_000}
    assert peak is not None and peak > 50_000_000
