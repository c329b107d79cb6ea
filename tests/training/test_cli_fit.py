"""The `crosspose` training CLI: configs, run folders, resume, and errors on bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import crosspose
from crosspose.cli import main
from crosspose.models.transfer import METADATA_KEY
from crosspose.testing import REPO, assert_same_training_state, write_tiny_coco

CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))
FAST = ["--data.input_size", "64", "--data.batch_size", "2", "--data.num_workers", "0",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def _write_source_checkpoint(path: Path, backbone: str, names: list[str]) -> Path:
    """A minimal crosspose checkpoint for configs that initialise from one."""
    from crosspose.training.module import PoseEstimationModule

    module = PoseEstimationModule(num_keypoints=len(names), keypoint_names=names, backbone=backbone)
    ckpt = {"state_dict": module.state_dict(),
            "crosspose": {"backbone": backbone, "num_keypoints": len(names), "keypoint_names": names}}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, path)
    return path


@pytest.mark.parametrize("config", CONFIGS, ids=[str(c.relative_to(REPO / "configs")) for c in CONFIGS])
def test_every_config_runs_fit_with_fast_dev_run(config: Path, tmp_path: Path, tiny_timm_backbones: None) -> None:
    cfg = yaml.safe_load(config.read_text())
    model = cfg.get("model", {})
    data = write_tiny_coco(tmp_path / "d", count=6)
    names = json.loads(data.read_text())["categories"][0]["keypoints"]
    args = ["fit", "--config", str(config), "--data.train_file", str(data), "--data.val_file", str(data),
            "--model.num_keypoints", "4", "--model.keypoint_names", json.dumps(names),
            "--model.pretrained", "false",  # tests never download weights
            "--trainer.fast_dev_run", "1", "--trainer.default_root_dir", str(tmp_path / "run"), *FAST]
    trainer = cfg.get("trainer", {})
    if trainer.get("strategy") not in (None, "auto") or trainer.get("devices") not in (None, "auto", 1):
        # DDP configs are exercised on one CPU process here; the 2-process test covers DDP itself
        args += ["--trainer.strategy", "auto", "--trainer.devices", "1", "--trainer.num_nodes", "1",
                 "--trainer.accelerator", "cpu", "--trainer.sync_batchnorm", "false"]
    if trainer.get("precision", "").startswith("bf16") or trainer.get("accelerator") == "gpu":
        args += ["--trainer.precision", "32-true", "--trainer.accelerator", "cpu"]
    if cfg.get("data", {}).get("joints"):
        args += ["--data.joints", "null"]  # the toy file has its own joint names
    if model.get("intermediate_supervision_unit"):  # the tiny stand-in backbone has 2 units in stage 3
        args += ["--model.intermediate_supervision_unit", "2"]
    if model.get("compile"):  # a GPU lever: compiling on a test CPU costs minutes and checks nothing here
        args += ["--model.compile", "false"]
    if model.get("init_from"):
        src = _write_source_checkpoint(tmp_path / "src.ckpt", model.get("backbone", "resnet50"),
                                       ["a", "left_hand", "right_hand", "b", "c"])
        args += ["--model.init_from", str(src)]
    assert main(args) == 0


def _fit(tmp_path: Path, data: Path, run: str, *extra: str) -> int:
    return main(["fit", "--model.num_keypoints", "4", "--model.backbone", "resnet18",
                 "--data.train_file", str(data), "--data.val_file", str(data),
                 "--trainer.default_root_dir", str(tmp_path / run), *FAST, *extra])


def test_fit_trains_and_the_run_folder_holds_config_and_checkpoints(tmp_path: Path) -> None:
    data = write_tiny_coco(tmp_path / "d", count=16, seed=1)
    assert _fit(tmp_path, data, "run", "--trainer.max_epochs", "6", "--data.batch_size", "4",
                "--model.optimizer", "torch.optim.Adam", "--model.optimizer.lr", "0.001",
                "--model.lr_schedule", "constant") == 0
    run = tmp_path / "run"
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "checkpoints" / "best.ckpt").is_file()
    config = yaml.safe_load((run / "logs" / "version_0" / "config.yaml").read_text())
    assert config["model"]["num_keypoints"] == 4
    with (run / "logs" / "version_0" / "metrics.csv").open() as fh:
        val = [float(r["val/loss"]) for r in csv.DictReader(fh) if r.get("val/loss")]
    assert len(val) == 6
    assert val[-1] < 0.8 * val[0], val


def test_interrupted_fit_resumes_to_the_same_state(tmp_path: Path) -> None:
    data = write_tiny_coco(tmp_path / "d", count=8, seed=2)
    common = ["--data.batch_size", "4", "--model.schedule_rescale", "true", "--model.warmup_steps", "3"]
    assert _fit(tmp_path, data, "straight", "--trainer.max_epochs", "3", *common) == 0
    with pytest.raises(RuntimeError, match="simulated crash"):
        _fit(tmp_path, data, "resumed", "--trainer.max_epochs", "3", *common,
             "--trainer.callbacks+=crosspose.testing.CrashAfterEpoch", "--trainer.callbacks.epoch", "1")
    crashed = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", weights_only=True)
    assert crashed["global_step"] == 4
    assert _fit(tmp_path, data, "resumed", "--trainer.max_epochs", "3", "--ckpt_path", "last", *common) == 0
    a = torch.load(tmp_path / "straight" / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 6
    assert a["lr_schedulers"][0]["last_epoch"] == b["lr_schedulers"][0]["last_epoch"] == 6
    assert a["lr_schedulers"][0]["_last_lr"] == pytest.approx(b["lr_schedulers"][0]["_last_lr"])
    assert_same_training_state(a, b)


def _error_of(capsys: pytest.CaptureFixture[str], args: list[str]) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    return err


def test_missing_image_names_file_and_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_tiny_coco(tmp_path / "d", count=4)
    (tmp_path / "d" / "images" / "img002.png").unlink()
    err = _error_of(capsys, ["fit", "--model.num_keypoints", "4", "--model.backbone", "resnet18",
                             "--data.train_file", str(data), "--trainer.fast_dev_run", "1", *FAST])
    assert str(data) in err and "img002.png" in err and "missing" in err


def test_json_that_is_not_coco_keypoints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "mpii_val.json"
    bad.write_text(json.dumps([{"image": "a.jpg", "joints": [[1, 2]] * 16}]))
    err = _error_of(capsys, ["fit", "--model.num_keypoints", "4", "--model.backbone", "resnet18",
                             "--data.train_file", str(bad), "--trainer.fast_dev_run", "1", *FAST])
    assert str(bad) in err and "not a COCO keypoints file" in err


def test_keypoint_count_mismatch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_tiny_coco(tmp_path / "d", count=4)
    err = _error_of(capsys, ["fit", "--model.num_keypoints", "16", "--model.backbone", "resnet18",
                             "--data.train_file", str(data), "--trainer.fast_dev_run", "1", *FAST])
    assert str(data) in err and "4 keypoints" in err and "16" in err


def test_config_typo_is_reported_with_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "typo.yaml"
    cfg.write_text("model:\n  num_keypoints: 4\n  backbon: resnet18\n")
    assert main(["fit", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "backbon" in err and "Traceback" not in err


def test_test_and_predict_write_results_that_score_reads(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    data = write_tiny_coco(tmp_path / "d", count=6, seed=4)
    assert _fit(tmp_path, data, "run", "--trainer.max_epochs", "1") == 0
    ckpt = str(tmp_path / "run" / "checkpoints" / "last.ckpt")
    common = ["--model.num_keypoints", "4", "--model.backbone", "resnet18", "--ckpt_path", ckpt, *FAST]
    assert main(["test", "--data.test_file", str(data), "--trainer.default_root_dir", str(tmp_path / "t"),
                 *common]) == 0
    (metrics_path,) = (tmp_path / "t").rglob("metrics.json")
    metrics = json.loads(metrics_path.read_text())
    assert metrics["counts"]["instances"] == 6 and "pckh" in metrics and "detection" in metrics
    # fp32 like `test` (predict defaults to bf16 autocast on CPUs with bf16 units): the same numbers to rescore
    capsys.readouterr()
    assert main(["predict", "--data.predict_file", str(data), "--trainer.default_root_dir",
                 str(tmp_path / "p"), "--trainer.precision", "32-true", *common]) == 0
    assert "allocator: " in capsys.readouterr().err  # predict keeps freed memory, as analyze does, and says so
    (pred_path,) = (tmp_path / "p").rglob("predictions.json")
    preds = json.loads(pred_path.read_text())
    assert len(preds) == 6 and len(preds[0]["keypoints"]) == 12
    out = tmp_path / "scored.json"
    assert main(["score", "--gt", str(data), "--pred", str(pred_path), "--out", str(out)]) == 0
    rescored = json.loads(out.read_text())
    assert rescored["pckh"]["mean"] == pytest.approx(metrics["pckh"]["mean"])  # one code path
    assert main(["predict", "--data.predict_file", str(tmp_path / "d" / "images"), "--trainer.default_root_dir",
                 str(tmp_path / "f"), *common]) == 0
    (folder_preds,) = (tmp_path / "f").rglob("predictions.json")
    assert {p["file_name"] for p in json.loads(folder_preds.read_text())} == {f"img{i:03d}.png" for i in range(6)}
    # a bad allocator setting: one line, nothing written
    monkeypatch.setenv("CROSSPOSE_MALLOC", "always")
    capsys.readouterr()
    assert main(["predict", "--data.predict_file", str(data), "--trainer.default_root_dir", str(tmp_path / "bad"),
                 *common]) == 2
    err = capsys.readouterr().err
    assert "CROSSPOSE_MALLOC must be one of keep, default; got 'always'" in err and "Traceback" not in err
    assert not list((tmp_path / "bad").rglob("predictions.json"))


def test_predict_defaults_to_bf16_only_where_the_cpu_has_bf16_units(monkeypatch: pytest.MonkeyPatch) -> None:
    from crosspose.core import hardware
    from crosspose.training.cli import trainer_defaults

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for flags, expected in (({"avx512_bf16"}, "bf16-mixed"), ({"amx_bf16"}, "bf16-mixed"), ({"avx2"}, "32-true")):
        monkeypatch.setattr(hardware, "read_cpu_features",
                            lambda *a, f=flags, **k: hardware.CpuFeatures("cpu", frozenset(f)))
        assert trainer_defaults("predict")["precision"] == expected
        assert trainer_defaults("fit")["precision"] == "32-true"  # training: bf16 only when asked


def test_a_slim_network_trains_to_checkpoints_that_inference_loads(tmp_path: Path) -> None:
    """DeepLabCut 2's TF-slim ResNet as a trained backbone: its checkpoints carry a full model card
    (input centring without division, any input size) and `crosspose.load` rebuilds it from that card."""
    data = write_tiny_coco(tmp_path / "d", count=8, seed=1)
    assert main(["fit", "--model.num_keypoints", "4", "--model.backbone", "slim_resnet_v1_50_c8-2-2-2-2",
                 "--model.intermediate_supervision", "true", "--model.intermediate_supervision_unit", "2",
                 "--data.train_file", str(data), "--data.val_file", str(data), "--data.batch_size", "4",
                 "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.max_steps", "2", *FAST]) == 0
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    card = torch.load(ckpt, map_location="cpu", weights_only=True)[METADATA_KEY]
    assert card["std"] == [1.0, 1.0, 1.0] and card["intermediate_supervision_unit"] == 2
    predictor = crosspose.load(ckpt, device="cpu", scale=1.0)
    pose = predictor.predict(np.zeros((50, 70, 3), dtype=np.uint8))
    assert pose.keypoints.shape == (1, 4, 3)
