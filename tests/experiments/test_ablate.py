"""``crosspose ablate``: a tiny grid end to end, resumability, subsets and the summary."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from crosspose.cli import main
from crosspose.data.coco import load_coco_keypoints
from crosspose.experiments import ablate
from crosspose.testing import REPO, write_tiny_coco

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _source_checkpoint(path: Path) -> Path:
    from crosspose.training.module import PoseEstimationModule

    names = ["a", "left_hand", "right_hand", "b", "c"]
    module = PoseEstimationModule(num_keypoints=len(names), keypoint_names=names, backbone="resnet18")
    torch.save({"state_dict": module.state_dict(),
                "crosspose": {"backbone": "resnet18", "num_keypoints": len(names), "keypoint_names": names}}, path)
    return path


def _base_config(tmp_path: Path) -> tuple[Path, Path]:
    train = write_tiny_coco(tmp_path / "train", count=10, size=64, seed=1)
    val = write_tiny_coco(tmp_path / "val", count=3, size=64, seed=2)
    test = write_tiny_coco(tmp_path / "test", count=5, size=64, seed=3)
    cfg = {
        "seed_everything": 7,
        "trainer": {"accelerator": "cpu", "max_steps": 2, "max_epochs": -1, "val_check_interval": 2,
                    "check_val_every_n_epoch": None, "num_sanity_val_steps": 0, "enable_progress_bar": False,
                    "precision": "32-true", "default_root_dir": str(tmp_path / "ignored")},
        "model": {"num_keypoints": 4, "backbone": "resnet18", "lr_schedule": "constant",
                  "optimizer": {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.01, "momentum": 0.9}},
                  "init_from": str(_source_checkpoint(tmp_path / "source.ckpt")), "heads": "reinit"},
        "data": {"train_file": str(train), "val_file": str(val), "input_size": 64, "batch_size": 4,
                 "num_workers": 0},
    }
    path = tmp_path / "base.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path, test


def test_tiny_grid_end_to_end_and_a_second_invocation_reruns_nothing(tmp_path: Path, monkeypatch) -> None:
    config, test = _base_config(tmp_path)
    out = tmp_path / "grid"
    args = ["ablate", "--config", str(config), "--freeze", "none,stage4", "--subset", "4,6", "--seeds", "1",
            "--arms", "transfer,scratch", "--test-file", str(test), "--out", str(out)]
    assert main(args) == 0

    names = {"transfer-freeze_none-n4-seed0", "transfer-freeze_stage4-n4-seed0", "scratch-freeze_none-n4-seed0",
             "transfer-freeze_none-n6-seed0", "transfer-freeze_stage4-n6-seed0", "scratch-freeze_none-n6-seed0"}
    assert {p.name for p in out.iterdir() if p.is_dir() and p.name != "subsets"} == names
    for name in names:
        cfg = yaml.safe_load((out / name / "config.yaml").read_text())
        assert cfg["data"]["test_file"] == str(test)
        assert ("init_from" in cfg["model"]) == name.startswith("transfer")
        assert cfg["model"]["freeze"] == ("stage4" if "stage4" in name else "none")
        assert cfg["model"]["optimizer"]["init_args"] == {"lr": 0.01, "momentum": 0.9}
        assert json.loads((out / name / "metrics.json").read_text())["counts"]
    # a frozen-backbone transfer run really kept the source backbone
    src = torch.load(tmp_path / "source.ckpt", weights_only=True)["state_dict"]
    tuned = torch.load(out / "transfer-freeze_stage4-n4-seed0" / "checkpoints" / "last.ckpt",
                       weights_only=True)["state_dict"]
    key = "net.backbone.body.layer4.1.conv2.weight"
    assert torch.equal(src[key], tuned[key])

    table = (out / "ablation.md").read_text()
    assert "| transfer | stage4 | 4 | 1 |" in table and "| scratch | none | 6 | 1 |" in table
    with (out / "ablation_runs.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6 and all(0 <= float(r["pckh"]) <= 100 for r in rows)
    for png in ("ablation_freeze.png", "ablation_data_efficiency.png"):
        assert (out / png).stat().st_size > 5000

    stamps = {n: (out / n / "metrics.json").stat().st_mtime_ns for n in names}

    def no_training(*a, **k):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr("crosspose.training.runs.train_and_test", no_training)
    (out / "ablation.md").unlink()
    assert main(args) == 0
    assert (out / "ablation.md").read_text() == table
    assert stamps == {n: (out / n / "metrics.json").stat().st_mtime_ns for n in names}

    # a changed base config is refused rather than mixed into the same table
    config.write_text(config.read_text().replace("lr: 0.01", "lr: 0.02"))
    assert main(args) == 2


def test_subsets_are_deterministic_nested_and_portable(tmp_path: Path) -> None:
    pool = write_tiny_coco(tmp_path / "pool", count=12, size=64)
    a4 = ablate.write_subset(pool, 4, seed=3, out=tmp_path / "s" / "a4.json")
    a8 = ablate.write_subset(pool, 8, seed=3, out=tmp_path / "s" / "a8.json")
    again = ablate.write_subset(pool, 4, seed=3, out=tmp_path / "t" / "again.json")
    other = ablate.write_subset(pool, 8, seed=4, out=tmp_path / "s" / "b8.json")
    ids = {p: {a["id"] for a in load_coco_keypoints(p).annotations} for p in (a4, a8, again, other)}
    assert len(ids[a4]) == 4 and ids[a4] == ids[again] and ids[a4] < ids[a8]
    assert ids[a8] != ids[other]
    coco = load_coco_keypoints(a8)
    assert all(coco.image_path(i).is_file() for i in coco.images)
    with pytest.raises(ablate.ConfigError, match="only 12"):
        ablate.write_subset(pool, 50, seed=0, out=tmp_path / "s" / "too_many.json")


def test_summary_mean_and_sample_spread_over_seeds() -> None:
    rows = [{"arm": "transfer", "freeze": "stage2", "subset": 10, "seed": s, "pckh": v, "f1": 0.5,
             "roc_auc": None, "rmse": 2.0} for s, v in enumerate((40.0, 50.0, 60.0))]
    (entry,) = ablate.summarize(rows)
    assert entry["seeds"] == 3 and entry["pckh_mean"] == pytest.approx(50.0) and entry["pckh_sd"] == pytest.approx(10.0)
    assert math.isnan(entry["roc_auc_mean"])
    assert "50.0 ± 10.0" in ablate.markdown_table([entry]) and "n/a" in ablate.markdown_table([entry])


def test_grid_runs_scratch_unfrozen_only() -> None:
    cells = ablate.grid(["transfer", "scratch"], ["none", "stage2"], [5], [0, 1])
    assert sum(c.arm == "transfer" for c in cells) == 4
    assert {c.freeze for c in cells if c.arm == "scratch"} == {"none"}


def test_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config, test = _base_config(tmp_path)
    assert main(["ablate", "--config", str(config), "--freeze", "stage9", "--test-file", str(test),
                 "--out", str(tmp_path / "o")]) == 2
    assert "stage9" in capsys.readouterr().err
    no_init = yaml.safe_load(config.read_text())
    del no_init["model"]["init_from"]
    config.write_text(yaml.safe_dump(no_init))
    assert main(["ablate", "--config", str(config), "--arms", "transfer", "--test-file", str(test),
                 "--out", str(tmp_path / "o2")]) == 2
    assert "init_from" in capsys.readouterr().err


def test_the_shipped_tiny_config_is_a_valid_base() -> None:
    base = ablate.read_base_config(REPO / "configs" / "ablate" / "synthetic_tiny.yaml")
    assert base["model"]["backbone"] == "resnet18" and base["model"]["init_from"]
    assert base["trainer"]["max_steps"] <= 200  # tiny: minutes on a CPU


def test_unfreeze_schedules_are_an_axis_of_the_transfer_arm(tmp_path: Path) -> None:
    config, test = _base_config(tmp_path)
    out = tmp_path / "grid"
    assert main(["ablate", "--config", str(config), "--freeze", "stage4", "--unfreeze", "fixed;1:none",
                 "--subset", "4", "--arms", "transfer,scratch", "--test-file", str(test), "--out", str(out)]) == 0
    gradual = out / "transfer-freeze_stage4-unfreeze_1atnone-n4-seed0"
    assert gradual.is_dir() and (out / "transfer-freeze_stage4-n4-seed0").is_dir()
    assert yaml.safe_load((gradual / "config.yaml").read_text())["model"]["unfreeze"] == {1: "none"}
    table = (out / "ablation.md").read_text()
    assert "| transfer | stage4, unfreeze 1:none | 4 |" in table and "| transfer | stage4 | 4 |" in table
    with (out / "ablation_runs.csv").open() as fh:
        assert sorted(r["unfreeze"] for r in csv.DictReader(fh)) == ["", "", "1:none"]


def test_a_schedule_that_cannot_run_is_refused_before_any_training(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    config, test = _base_config(tmp_path)
    assert main(["ablate", "--config", str(config), "--freeze", "none", "--unfreeze", "1:stage2",
                 "--subset", "4", "--test-file", str(test), "--out", str(tmp_path / "g")]) == 2
    assert "does not unfreeze" in capsys.readouterr().err
    assert not any((tmp_path / "g").glob("transfer-*"))
