"""One way to build a run: `crosspose fit`, the demo and the ablation get the same trainer for one YAML."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import pytest
import yaml

from crosspose.cli import main
from crosspose.experiments import ablate, demo
from crosspose.testing import REPO, write_tiny_coco
from crosspose.training import runs

SMOKE = REPO / "configs" / "demo" / "smoke.yaml"


class _Built(Exception):
    """Stops a run once its trainer exists."""


def _describe(trainer: L.Trainer) -> list[tuple[Any, ...]]:
    """Callbacks and loggers, with paths relative to the run folder (the runs differ only there)."""
    root = Path(trainer.default_root_dir)

    def rel(path: Any) -> str | None:
        return None if path is None else str(Path(path).relative_to(root))

    callbacks = sorted((type(c).__name__, rel(getattr(c, "dirpath", None)), getattr(c, "filename", None),
                        getattr(c, "monitor", None), getattr(c, "mode", None)) for c in trainer.callbacks)
    loggers = [(type(lg).__name__, rel(lg.save_dir), lg.name) for lg in trainer.loggers]
    return [*callbacks, *loggers]


@pytest.fixture
def capture(monkeypatch: pytest.MonkeyPatch) -> list[L.Trainer]:
    """Every trainer built by build_run or the CLI is recorded and never trains."""
    seen: list[L.Trainer] = []

    def record(self: L.Trainer, *args: Any, **kwargs: Any) -> None:
        seen.append(self)
        raise _Built

    monkeypatch.setattr(L.Trainer, "fit", record)
    return seen


def test_fit_demo_and_ablate_build_the_same_trainer(tmp_path: Path, capture: list[L.Trainer]) -> None:
    data = write_tiny_coco(tmp_path / "d", count=4, size=64)
    with pytest.raises(_Built):
        main(["fit", "--config", str(SMOKE), "--data.train_file", str(data), "--data.val_file", str(data),
              "--model.num_keypoints", "4", "--trainer.default_root_dir", str(tmp_path / "fit")])
    profile = demo.load_profile(SMOKE)
    config = demo._stage_config(profile, ("head", "left_hand", "right_hand", "tail"), (data, data, data), 3, 0)
    with pytest.raises(_Built):
        runs.train_and_test(tmp_path / "demo", config)
    cfg = yaml.safe_load(SMOKE.read_text())
    cfg["model"]["num_keypoints"] = 4
    cfg["data"].update(train_file=str(data), val_file=str(data))
    (tmp_path / "ablate.yaml").write_text(yaml.safe_dump(cfg))
    base = ablate.read_base_config(tmp_path / "ablate.yaml")
    with pytest.raises(_Built):
        ablate.run_ablation(base, tmp_path / "ablate", freeze=["none"], subsets=[None], seeds=[0],
                            arms=["scratch"], test_file=str(data))
    fit, demo_trainer, ablate_trainer = capture
    assert _describe(fit) == _describe(demo_trainer) == _describe(ablate_trainer)
    kinds = {entry[0] for entry in _describe(fit)}
    assert {"ModelCheckpoint", "CSVLogger", "TensorBoardLogger", "ValidationLine"} <= kinds
