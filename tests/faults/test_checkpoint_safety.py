"""Checkpoints: a pickled payload is refused at every load entry point; writes are atomic and fail loudly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from crosspose.cli import main
from crosspose.core.errors import CheckpointError
from crosspose.testing import write_tiny_coco

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAST = ["--model.num_keypoints", "4", "--model.backbone", "resnet18", "--data.input_size", "32",
        "--data.batch_size", "2", "--data.num_workers", "0", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false"]


class _Payload:
    """Unpickling this creates a file: proof that loading ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


@pytest.fixture
def evil_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A real crosspose checkpoint plus a pickled object; the environment asks torch for unsafe loads."""
    from crosspose.training.module import PoseEstimationModule

    module = PoseEstimationModule(num_keypoints=4, backbone="resnet18")
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil" / "last.ckpt"
    path.parent.mkdir()
    torch.save({"state_dict": module.state_dict(), "global_step": 0, "pytorch-lightning_version": "2.6.0",
                "crosspose": {"backbone": "resnet18", "num_keypoints": 4}, "extra": _Payload(marker)}, path)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    return path, marker


def _refused(capsys: pytest.CaptureFixture[str], args: list[str], path: Path) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert str(path) in err and "refused" in err


@pytest.mark.parametrize("command", ["fit", "validate", "test", "predict"])
def test_cli_ckpt_path_refuses_a_pickle_payload(command: str, evil_checkpoint: tuple[Path, Path], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    path, marker = evil_checkpoint
    data = write_tiny_coco(tmp_path / "d", count=4, size=48)
    split = {"fit": "train_file", "validate": "val_file", "test": "test_file", "predict": "predict_file"}[command]
    _refused(capsys, [command, f"--data.{split}", str(data), "--trainer.default_root_dir", str(tmp_path / "r"),
                      "--ckpt_path", str(path), *FAST], path)
    assert not marker.exists()


def test_init_from_refuses_a_pickle_payload(evil_checkpoint: tuple[Path, Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    path, marker = evil_checkpoint
    data = write_tiny_coco(tmp_path / "d", count=4, size=48)
    assert main(["fit", "--data.train_file", str(data), "--model.init_from", str(path), "--trainer.fast_dev_run",
                 "1", "--trainer.default_root_dir", str(tmp_path / "r"), *FAST]) == 2
    assert str(path) in capsys.readouterr().err
    assert not marker.exists()


def test_programmatic_runs_refuse_a_pickle_payload(evil_checkpoint: tuple[Path, Path], tmp_path: Path) -> None:
    """The demo/ablate paths: scoring a checkpoint, and the automatic resume from a run's last.ckpt."""
    from crosspose.training.runs import test_checkpoint, train_and_test

    path, marker = evil_checkpoint
    data = write_tiny_coco(tmp_path / "d", count=4, size=48)
    with pytest.raises(CheckpointError, match="refused"):
        test_checkpoint(path, tmp_path / "scored", {"test_file": str(data), "input_size": 32, "num_workers": 0})
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    os.link(path, run / "checkpoints" / "last.ckpt")
    with pytest.raises(CheckpointError, match="refused"):
        train_and_test(run, {"model": {"num_keypoints": 4, "backbone": "resnet18"},
                             "data": {"train_file": str(data), "val_file": str(data), "test_file": str(data),
                                      "input_size": 32, "batch_size": 2, "num_workers": 0},
                             "trainer": {"max_steps": 1, "enable_progress_bar": False}})
    assert not marker.exists()


def test_missing_and_corrupt_ckpt_path_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_tiny_coco(tmp_path / "d", count=4, size=48)
    common = ["--data.test_file", str(data), "--trainer.default_root_dir", str(tmp_path / "r"), *FAST]
    missing = tmp_path / "nope.ckpt"
    assert main(["test", "--ckpt_path", str(missing), *common]) == 2
    err = capsys.readouterr().err.strip()
    assert str(missing) in err and "Traceback" not in err and len(err.splitlines()) == 1, err
    corrupt = tmp_path / "half.ckpt"
    corrupt.write_bytes(b"PK\x03\x04" + b"\x00" * 50)
    assert main(["test", "--ckpt_path", str(corrupt), *common]) == 2
    err = capsys.readouterr().err.strip()
    assert str(corrupt) in err and "Traceback" not in err and len(err.splitlines()) == 1, err


def _fit_args(tmp_path: Path, run: Path) -> list[str]:
    data = write_tiny_coco(tmp_path / "d", count=4, size=48)
    return ["fit", "--data.train_file", str(data), "--data.val_file", str(data), "--trainer.max_epochs", "1",
            "--trainer.default_root_dir", str(run), *FAST]


def test_a_file_where_the_checkpoint_folder_should_be_is_one_line(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoints").write_text("not a folder")
    assert main(_fit_args(tmp_path, run)) == 2
    err = capsys.readouterr().err.strip()
    errors = [line for line in err.splitlines() if line.startswith("crosspose fit: error")]
    assert len(errors) == 1 and str(run / "checkpoints") in errors[0] and "Traceback" not in err, err


def test_a_failing_checkpoint_write_fails_the_run_and_keeps_the_old_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The target is unwritable (simulated: os.replace fails, as on a read-only or full filesystem)."""
    import crosspose.core.io as core_io

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    real_replace = os.replace

    def refuse(src: str, dst: str) -> None:
        if str(dst).endswith(".ckpt"):
            raise OSError(30, "Read-only file system")
        real_replace(src, dst)

    monkeypatch.setattr(core_io.os, "replace", refuse)
    assert main(_fit_args(tmp_path, run)) == 2  # Lightning's own writer would end with 0 and no checkpoint
    err = capsys.readouterr().err.strip()
    assert "cannot write the checkpoint" in err and "Read-only" in err and "Traceback" not in err, err
    assert not list((run / "checkpoints").iterdir()), "a temp file was left behind"


def test_atomic_checkpoint_io_keeps_the_previous_file_when_a_write_dies(tmp_path: Path) -> None:
    from crosspose.training.checkpointing import AtomicCheckpointIO

    class Dies(AtomicCheckpointIO):
        def write(self, checkpoint: dict, tmp: Path) -> None:
            tmp.write_bytes(b"half")
            raise OSError(28, "No space left on device")

    target = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"global_step": 1}, target)
    with pytest.raises(CheckpointError, match="No space left"):
        Dies().save_checkpoint({"global_step": 2}, target)
    assert AtomicCheckpointIO().load_checkpoint(target)["global_step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]
