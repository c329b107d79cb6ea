"""``data.num_workers``: ``auto`` resolved for the trainer's device; workers carry the data code only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from crosspose.core.errors import ConfigError
from crosspose.data.datamodule import PoseDataModule
from crosspose.testing import write_tiny_coco


def test_auto_loads_in_the_training_process_on_the_cpu(tmp_path: Path) -> None:
    coco = write_tiny_coco(tmp_path, count=4)
    dm = PoseDataModule(train_file=str(coco), input_size=64, batch_size=2)
    assert dm.num_workers == "auto"
    dm.setup("fit")
    assert dm.loader_workers() == 0
    assert dm.train_dataloader().num_workers == 0
    assert PoseDataModule(train_file=str(coco), num_workers=3).loader_workers() == 3


@pytest.mark.parametrize("bad", [-1, "many"])
def test_a_bad_worker_count_is_a_config_error(bad: object) -> None:
    with pytest.raises(ConfigError, match="num_workers"):
        PoseDataModule(num_workers=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("module", ["crosspose.cli", "crosspose.benchmark.phases"])
def test_entry_modules_do_not_import_lightning(module: str) -> None:
    # A loader worker (forkserver/spawn) starts by importing the parent's main module: these are
    # the main modules of `crosspose ...` (its script imports crosspose.cli) and the benchmark's
    # phases (`python -m crosspose`'s crosspose.__main__ is never re-imported by multiprocessing).
    # Lightning imported there would be paid again in every worker (~240 MiB private each).
    code = f"import sys, importlib; importlib.import_module({module!r}); print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert not {m for m in loaded if m.split(".")[0] in {"lightning", "timm", "matplotlib"}}


def test_training_batches_do_not_depend_on_the_worker_count(tmp_path: Path) -> None:
    # what lets `auto` pick a count per machine: every augmentation draw depends on (seed, epoch, index)
    coco = write_tiny_coco(tmp_path, count=6, size=48)

    def batches(workers: int) -> list[dict]:
        dm = PoseDataModule(train_file=str(coco), input_size=32, batch_size=2, num_workers=workers, seed=5)
        dm.setup("fit")
        return list(dm.train_dataloader())

    alone, two = batches(0), batches(2)
    assert len(alone) == len(two) == 3
    for a, b in zip(alone, two, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key
