"""Run folders: recorded config, refusal to reuse with another, finished marker, lock, fit overwrite guard."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from crosspose.cli import main
from crosspose.core.errors import ConfigError
from crosspose.testing import REPO, write_tiny_coco
from crosspose.training.run_folder import (
    FolderLock,
    check_reusable,
    config_differences,
    is_finished,
    record_config,
    recorded_config,
)

CONFIG = {"model": {"backbone": "resnet18", "num_keypoints": 4}, "data": {"batch_size": 8}, "seed": 0}


def test_record_then_same_config_is_reusable(tmp_path: Path) -> None:
    record_config(tmp_path, CONFIG)
    assert recorded_config(tmp_path) == CONFIG
    assert json.loads((tmp_path / "run.json").read_text())["crosspose"]
    check_reusable(tmp_path, json.loads(json.dumps(CONFIG)))


def test_another_config_is_refused_naming_what_differs(tmp_path: Path) -> None:
    record_config(tmp_path, CONFIG)
    other = {**CONFIG, "model": {"backbone": "resnet34", "num_keypoints": 4}}
    with pytest.raises(ConfigError, match=r"model\.backbone: 'resnet18' -> 'resnet34'"):
        check_reusable(tmp_path, other)
    check_reusable(tmp_path, other, force=True)
    assert config_differences({"a": 1}, {"b": 2}) == ["a: 1 -> '<unset>'", "b: '<unset>' -> 2"]


def test_finished_only_with_a_complete_marker(tmp_path: Path) -> None:
    assert not is_finished(tmp_path)
    (tmp_path / "metrics.json").write_text('{"pckh": {"mean": 5')  # truncated by a crash
    assert not is_finished(tmp_path)
    (tmp_path / "metrics.json").write_text('{"pckh": {"mean": 5}}')  # the test's file, before the run summary
    assert not is_finished(tmp_path)
    (tmp_path / "metrics.json").write_text('{"pckh": {"mean": 5}, "run": {"global_step": 3}}')
    assert is_finished(tmp_path)


def test_a_second_holder_is_refused_and_a_waiter_gets_the_folder(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import sys, time
        from crosspose.training.run_folder import FolderLock
        with FolderLock({str(tmp_path)!r}, "crosspose ablate"):
            print("locked", flush=True)
            time.sleep(float(sys.argv[1]))
    """)
    holder = subprocess.Popen([sys.executable, "-c", script, "2"], stdout=subprocess.PIPE, text=True,
                              env={"PYTHONPATH": str(REPO / "src")})
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(ConfigError, match=r"in use by crosspose ablate \(pid \d+"):
            FolderLock(tmp_path, "crosspose ablate").acquire()
        with FolderLock(tmp_path, "crosspose ablate", wait=30):  # the holder releases after 2 s
            pass
    finally:
        holder.wait(timeout=30)


def test_concurrent_ablate_into_one_folder_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_tiny_coco(tmp_path / "d", count=4, size=48)
    config = tmp_path / "base.yaml"
    config.write_text(f"model:\n  num_keypoints: 4\n  backbone: resnet18\ndata:\n  train_file: {data}\n"
                      f"  test_file: {data}\n")
    out = tmp_path / "out"
    with FolderLock(out, "crosspose ablate"):
        assert main(["ablate", "--config", str(config), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "in use by crosspose ablate" in err and str(out) in err


def test_demo_into_a_folder_of_another_profile_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dataclasses import asdict

    from crosspose.experiments.demo import load_profile

    (tmp_path / "profile.json").write_text(json.dumps(asdict(load_profile("smoke")), default=str))
    assert main(["demo", "--profile", "default", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "another profile" in err and "input_size" in err


def test_programmatic_run_refuses_a_folder_of_another_config(tmp_path: Path) -> None:
    from crosspose.training.runs import train_and_test

    record_config(tmp_path, {"seed_everything": 0, "model": {"backbone": "resnet18"}})
    with pytest.raises(ConfigError, match="model.backbone"):
        train_and_test(tmp_path, {"seed_everything": 0, "model": {"backbone": "resnet34"}})


def test_fit_refuses_a_run_folder_with_checkpoints_unless_resuming(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"earlier run")
    data = write_tiny_coco(tmp_path / "d", count=4, size=48)
    assert main(["fit", "--model.num_keypoints", "4", "--model.backbone", "resnet18", "--data.train_file",
                 str(data), "--data.num_workers", "0", "--trainer.max_epochs", "1",
                 "--trainer.default_root_dir", str(run)]) == 2
    err = capsys.readouterr().err
    assert "--ckpt_path last" in err and str(run) in err
    assert (run / "checkpoints" / "last.ckpt").read_bytes() == b"earlier run"


def test_loader_workers_and_display_settings_do_not_count_as_another_config(tmp_path: Path) -> None:
    record_config(tmp_path, {"data": {"num_workers": 2, "batch_size": 8}, "trainer": {"enable_progress_bar": True}})
    check_reusable(tmp_path, {"data": {"num_workers": 0, "batch_size": 8}, "trainer": {"enable_progress_bar": False}})
    with pytest.raises(ConfigError, match="batch_size"):
        check_reusable(tmp_path, {"data": {"num_workers": 2, "batch_size": 4}})
