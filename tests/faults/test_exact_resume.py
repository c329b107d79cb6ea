"""A run killed at any step and resumed with ``--ckpt_path last`` ends bit-identical (CPU) to one never killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from crosspose.cli import main
from crosspose.data.dataset import ShardedEpochSampler
from crosspose.data.resumable import ResumableDataLoader
from crosspose.testing import REPO, write_tiny_coco

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _args(data: Path, run: Path, workers: int = 0) -> list[str]:
    # 10 instances in batches of 3: 3 steps an epoch (the 10th dropped), so step 4 is mid-epoch
    return ["fit", "--model.num_keypoints", "4", "--model.backbone", "resnet18", "--model.warmup_steps", "2",
            "--data.train_file", str(data), "--data.val_file", str(data), "--data.input_size", "32",
            "--data.batch_size", "3", "--data.num_workers", str(workers), "--trainer.max_epochs", "2",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--trainer.default_root_dir", str(run)]


def _last(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


def _assert_identical(a: dict, b: dict) -> None:
    assert a["global_step"] == b["global_step"]
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), f"{key} differs after resume"
    for sa, sb in zip(a["optimizer_states"][0]["state"].values(), b["optimizer_states"][0]["state"].values(),
                      strict=True):
        for name, value in sa.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(sb[name])), name


class _Positions:
    """Items are ``index * 100 + epoch``: a batch says which samples of which epoch it holds."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, item: tuple[int, int]) -> int:
        return item[0] * 100 + item[1]


def _loader(size: int = 10, batch_size: int = 3) -> ResumableDataLoader:
    return ResumableDataLoader(_Positions(size), batch_size=batch_size, drop_last=True,
                               sampler=ShardedEpochSampler(size, shuffle=True, seed=7))


def test_sampler_resumes_mid_epoch_with_the_rest_of_that_epoch() -> None:
    loader = _loader()
    loader.sampler.set_epoch(2)
    straight = [b for b in loader]
    taken = iter(loader)
    next(taken)
    state = loader.state_dict()
    fresh = _loader()
    fresh.load_state_dict(state)
    rest = [b for b in fresh]
    assert [b.tolist() for b in rest] == [b.tolist() for b in straight[1:]]
    assert all(v % 100 == 2 for b in rest for v in b.tolist())  # epoch 2's samples
    assert len(list(fresh)) == 3  # the skip applies once: the next epoch is whole


def test_a_finished_epoch_resumes_at_the_next_one() -> None:
    loader = _loader()
    list(loader)
    state = loader.state_dict()
    fresh = _loader()
    fresh.load_state_dict(state)
    assert fresh.sampler.epoch == 1


def test_a_position_from_another_data_set_or_batch_size_is_refused() -> None:
    from crosspose.core.errors import CheckpointError

    state = _loader().state_dict()
    with pytest.raises(CheckpointError, match="12"):
        _loader(size=12).load_state_dict(state)
    with pytest.raises(CheckpointError, match="batch size"):
        _loader(batch_size=2).load_state_dict(state)


def test_crash_mid_epoch_then_resume_is_bit_identical(tmp_path: Path) -> None:
    data = write_tiny_coco(tmp_path / "d", count=10, size=48, seed=2)
    assert main(_args(data, tmp_path / "straight")) == 0
    crash = ["--trainer.callbacks+=crosspose.testing.CrashAtStep", "--trainer.callbacks.step", "4"]
    with pytest.raises(RuntimeError, match="simulated crash"):
        main([*_args(data, tmp_path / "resumed"), *crash])
    assert _last(tmp_path / "resumed")["global_step"] == 4
    assert main([*_args(data, tmp_path / "resumed"), "--ckpt_path", "last"]) == 0
    straight, resumed = _last(tmp_path / "straight"), _last(tmp_path / "resumed")
    assert straight["global_step"] == 6
    _assert_identical(straight, resumed)


def test_fit_resumed_from_its_last_step_keeps_a_last_checkpoint_of_the_final_step(tmp_path: Path) -> None:
    data = write_tiny_coco(tmp_path / "d", count=10, size=48, seed=2)
    args = [*_args(data, tmp_path / "run"), "--trainer.max_epochs", "-1", "--trainer.max_steps", "2"]
    assert main(args) == 0
    assert _last(tmp_path / "run")["global_step"] == 2  # max_steps mid-epoch, no validation at step 2
    args[args.index("--trainer.max_steps") + 1] = "4"
    assert main([*args, "--ckpt_path", "last"]) == 0
    assert _last(tmp_path / "run")["global_step"] == 4


def _fit_subprocess(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "crosspose", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


@pytest.mark.slow
@pytest.mark.parametrize(("step", "during_write"), [(3, False), (5, False), (6, False), (5, True)],
                         ids=["from-mid-epoch", "from-epoch-end", "at-the-last-step", "during-checkpoint-write"])
def test_sigkill_then_resume_is_bit_identical(tmp_path: Path, step: int, during_write: bool) -> None:
    """A real SIGKILL in a subprocess (2 loader workers).

    3 steps an epoch, validation (so last.ckpt) after batch 2 of each epoch and at its end: steps
    2, 3, 5, 6. Killed after step 3 it resumes from step 2 (mid-epoch), after 5 from 3 (an epoch's
    end), after 6 from 5; killed while writing step 5's checkpoint it resumes from step 3.
    """
    data = write_tiny_coco(tmp_path / "d", count=10, size=48, seed=3)
    every = ["--trainer.val_check_interval", "2", "--trainer.check_val_every_n_epoch", "1"]
    base = [*_args(data, tmp_path / "straight", workers=2), *every]
    straight = _fit_subprocess(base)
    assert straight.returncode == 0, straight.stderr[-2000:]
    killer = (["--trainer.callbacks+=crosspose.testing.KillDuringCheckpointWrite"] if during_write
              else ["--trainer.callbacks+=crosspose.testing.CrashAtStep", "--trainer.callbacks.kill", "true"])
    run = [*_args(data, tmp_path / "resumed", workers=2), *every]
    killed = _fit_subprocess([*run, *killer, "--trainer.callbacks.step", str(step)])
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    saved = _last(tmp_path / "resumed")  # intact: written atomically, the kill hit a temp file
    assert saved["global_step"] <= step
    resumed = _fit_subprocess([*run, "--ckpt_path", "last"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = _last(tmp_path / "straight"), _last(tmp_path / "resumed")
    _assert_identical(a, b)
    best_a = torch.load(tmp_path / "straight" / "checkpoints" / "best.ckpt", weights_only=True)
    best_b = torch.load(tmp_path / "resumed" / "checkpoints" / "best.ckpt", weights_only=True)
    assert best_a["global_step"] == best_b["global_step"]
    _assert_identical(best_a, best_b)
    assert not list((tmp_path / "resumed" / "checkpoints").glob(".*")), "a temp file of the killed write is left"
