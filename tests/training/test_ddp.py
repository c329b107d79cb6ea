"""Two-process DDP on CPU (gloo): the same metrics as one process, no duplicated evaluation samples.

The validation set has 5 instances, which 2 ranks cannot split evenly: a padding sampler would
score one instance twice (and a dropping one would miss one). A callback records the instance
indices gathered across ranks before the module de-duplicates them, so a duplicate cannot hide.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import lightning as L
import pytest
import torch

from crosspose.data.datamodule import PoseDataModule
from crosspose.testing import RecordGatheredRows, write_tiny_coco
from crosspose.training.module import PoseEstimationModule

VAL_SIZE = 5  # odd on purpose
# the paper's metrics; not val/loss: Lightning's sync_dist averages the ranks' means, which with
# unequal shards (3 + 2) is not the mean over the 5 instances (reported to the lead)
SCALARS = ("val/pckh", "val/f1", "val/precision", "val/recall", "val/roc_auc", "val/rmse")


def _rows(path: Path) -> tuple[list[int], torch.Tensor]:
    rows = json.loads(path.read_text())
    return [int(r[0][0]) for r in rows], torch.tensor([r[1:] for r in rows])


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("ddp")
    return (write_tiny_coco(root / "train", count=8, size=64, seed=5),
            write_tiny_coco(root / "val", count=VAL_SIZE, size=64, seed=6))


@pytest.fixture(autouse=True)
def _one_thread_per_process(monkeypatch: pytest.MonkeyPatch):
    # spawned ranks read these when they import torch; 2 ranks x 1 thread on a 2-core machine
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MKL_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _module() -> PoseEstimationModule:
    L.seed_everything(0, verbose=False)
    # norm frozen: BatchNorm statistics are per-process batch statistics otherwise, and SyncBatchNorm
    # (configs/ddp) needs a GPU; everything else is the same on 1 or 2 processes
    module = PoseEstimationModule(num_keypoints=4, backbone="resnet18", norm="frozen", lr_schedule="constant",
                                  channels_last=False,
                                  optimizer=functools.partial(torch.optim.SGD, lr=0.01, momentum=0.9))
    # A random network with frozen unit statistics blows activations up layer after layer, and then
    # rounding alone moves the outcome; calibrated statistics make the comparison well-conditioned.
    bns = [m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in bns:
        m.momentum = None  # cumulative average
    module.net.backbone.train()
    with torch.no_grad():
        module.net.backbone(module.net.backbone.normalize(
            torch.randint(0, 255, (8, 3, 64, 64), generator=torch.Generator().manual_seed(0))))
    for m in bns:
        m.momentum = 0.1
    module.eval()
    return module


def _data(train: Path, val: Path, batch_size: int) -> PoseDataModule:
    return PoseDataModule(train_file=str(train), val_file=str(val), input_size=64, batch_size=batch_size,
                          eval_batch_size=1, num_workers=0, seed=3)


def _trainer(root: Path, devices: int, **kw) -> L.Trainer:
    ddp = {"strategy": "ddp_spawn", "devices": 2} if devices == 2 else {"devices": 1}
    return L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                     num_sanity_val_steps=0, default_root_dir=str(root), precision="32-true",
                     use_distributed_sampler=False,  # as crosspose runs: the sampler shards itself
                     **ddp, **kw)


def _scalars(trainer: L.Trainer) -> dict[str, float]:
    return {k: float(trainer.callback_metrics[k]) for k in SCALARS if k in trainer.callback_metrics}


def test_validation_on_two_processes_scores_each_instance_once_and_matches_one(
        files: tuple[Path, Path], tmp_path: Path) -> None:
    train, val = files
    module = _module()
    ckpt = tmp_path / "weights.ckpt"
    single = _trainer(tmp_path / "one", 1, enable_checkpointing=False,
                      callbacks=[RecordGatheredRows(str(tmp_path / "one.json"))])
    single.validate(module, _data(train, val, 4), verbose=False)
    single.save_checkpoint(ckpt)
    one = _scalars(single)

    # a fresh module from the checkpoint, validated by 2 processes (a different device count)
    two_procs = _trainer(tmp_path / "two", 2, enable_checkpointing=False,
                         callbacks=[RecordGatheredRows(str(tmp_path / "two.json"))])
    two_procs.validate(_module(), _data(train, val, 4), ckpt_path=str(ckpt), verbose=False)
    two = _scalars(two_procs)

    index_one, kp_one = _rows(tmp_path / "one.json")
    index_two, kp_two = _rows(tmp_path / "two.json")
    assert index_one == index_two == list(range(VAL_SIZE))  # no duplicate, none lost
    assert torch.allclose(kp_one, kp_two, atol=1e-3)  # the same predictions, instance by instance
    assert set(one) >= {"val/pckh", "val/f1", "val/precision", "val/recall"} and one.keys() == two.keys()
    for k in one:
        assert two[k] == pytest.approx(one[k], rel=1e-5, abs=1e-6), k


@pytest.mark.slow
def test_two_process_training_matches_one_process(files: tuple[Path, Path], tmp_path: Path) -> None:
    """Same data and effective batch (2 x 2 vs 1 x 4): same weights and validation metrics."""
    train, val = files
    single_module = _module()
    single = _trainer(tmp_path / "one", 1, max_epochs=1, enable_checkpointing=False,
                      callbacks=[RecordGatheredRows(str(tmp_path / "one.json"))])
    single.fit(single_module, _data(train, val, 4))

    ddp_module = _module()
    ddp = _trainer(tmp_path / "two", 2, max_epochs=1,
                   callbacks=[RecordGatheredRows(str(tmp_path / "two.json")),
                              L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="last")])
    ddp.fit(ddp_module, _data(train, val, 2))

    # (ddp_spawn trains in child processes: the step counter is read back from the checkpoint)
    ddp_ckpt = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    assert single.global_step == ddp_ckpt["global_step"] == 2
    index_one, kp_one = _rows(tmp_path / "one.json")
    index_two, kp_two = _rows(tmp_path / "two.json")
    assert index_one == index_two == list(range(VAL_SIZE))
    assert torch.allclose(kp_one, kp_two, atol=0.01)  # 2 SGD steps apart only by rounding
    one, two = _scalars(single), _scalars(ddp)
    assert one.keys() == two.keys() and "val/pckh" in one
    for k in one:
        assert two[k] == pytest.approx(one[k], rel=1e-3, abs=1e-3), k
    a, b = single_module.state_dict(), ddp_module.state_dict()
    assert all(torch.equal(v, ddp_ckpt["state_dict"][k]) for k, v in b.items())
    init = _module().state_dict()
    moved = 0
    for k, v in a.items():
        if not v.is_floating_point():
            continue
        change = (v - init[k]).abs().max().item()
        moved += change > 0
        # the two runs differ by rounding only: far less than what training moved
        assert (v - b[k]).abs().max().item() <= 0.01 * change + 1e-7, k
    assert moved > 10  # training happened, so the comparison means something

    # the DDP checkpoint validates on one process to the same numbers
    again = _trainer(tmp_path / "again", 1, enable_checkpointing=False)
    again.validate(_module(), _data(train, val, 4), ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"), verbose=False)
    for k, v in _scalars(again).items():
        assert v == pytest.approx(two[k], rel=1e-5, abs=1e-6), k
