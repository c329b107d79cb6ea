"""Cross-species initialisation: init_from with heads reinit | keep | map."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from crosspose.core.errors import CheckpointError
from crosspose.testing import write_tiny_coco
from crosspose.training.module import PoseEstimationModule
from crosspose.training.runs import train_and_test

SOURCE = ("head", "left_hand", "right_hand", "tail")
TARGET = ("left_hand", "right_hand", "nose")  # two joints shared with SOURCE, by name


@pytest.fixture(scope="module")
def source_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model trained for a few steps on one 'species'."""
    root = tmp_path_factory.mktemp("pretrain")
    data = write_tiny_coco(root / "d", count=8, size=64, joints=SOURCE)
    files = {"train_file": str(data), "val_file": str(data), "test_file": str(data), "input_size": 64,
             "batch_size": 4, "num_workers": 0}
    metrics = train_and_test(root / "run", {
        "seed_everything": 0, "model": {"num_keypoints": 4, "keypoint_names": list(SOURCE), "backbone": "resnet18"},
        "data": files, "trainer": {"max_steps": 3, "enable_progress_bar": False}})
    assert metrics["run"]["global_step"] == 3
    return root / "run" / "checkpoints" / "last.ckpt"


def _source_state(path: Path) -> dict[str, torch.Tensor]:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    return {k[len("net."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}


def _target(ckpt: Path, heads: str, names=TARGET, backbone: str = "resnet18") -> PoseEstimationModule:
    module = PoseEstimationModule(num_keypoints=len(names), keypoint_names=list(names), backbone=backbone,
                                  init_from=str(ckpt), heads=heads)
    module.prepare_network()
    return module


def test_reinit_loads_the_whole_backbone_and_makes_new_heads(source_checkpoint: Path) -> None:
    src = _source_state(source_checkpoint)
    module = _target(source_checkpoint, "reinit")
    state = module.net.state_dict()
    backbone = [k for k in state if k.startswith("backbone.")]
    assert any("running_mean" in k for k in backbone)  # normalisation statistics load too
    for k in backbone:
        assert torch.equal(state[k], src[k]), k
    assert module.net.heatmap_head.deconv.weight.shape[1] == 3
    assert module.net.locref_head.deconv.weight.shape[1] == 6
    assert torch.count_nonzero(module.net.heatmap_head.deconv.bias) == 0  # fresh DeeperCut init


def test_transfer_run_starts_its_step_counter_at_zero(source_checkpoint: Path, tmp_path: Path) -> None:
    data = write_tiny_coco(tmp_path / "d", count=8, size=64, joints=TARGET, seed=5)
    files = {"train_file": str(data), "val_file": str(data), "test_file": str(data), "input_size": 64,
             "batch_size": 4, "num_workers": 0}
    metrics = train_and_test(tmp_path / "ft", {
        "seed_everything": 0, "data": files, "trainer": {"max_steps": 2, "enable_progress_bar": False},
        "model": {"num_keypoints": 3, "keypoint_names": list(TARGET), "backbone": "resnet18",
                  "init_from": str(source_checkpoint)}})
    ckpt = torch.load(tmp_path / "ft" / "checkpoints" / "last.ckpt", weights_only=True)
    assert metrics["run"]["global_step"] == 2 and ckpt["global_step"] == 2  # not 3 + 2
    assert ckpt["lr_schedulers"][0]["last_epoch"] == 2


def test_map_copies_exactly_the_matching_channels(source_checkpoint: Path) -> None:
    src = _source_state(source_checkpoint)
    module = _target(source_checkpoint, "map")
    hw, lw = module.net.heatmap_head.deconv, module.net.locref_head.deconv
    for t, s in ((0, 1), (1, 2)):  # left_hand <- source 1, right_hand <- source 2
        assert torch.equal(hw.weight[:, t], src["heatmap_head.deconv.weight"][:, s])
        assert torch.equal(hw.bias[t], src["heatmap_head.deconv.bias"][s])
        for c in (0, 1):
            assert torch.equal(lw.weight[:, 2 * t + c], src["locref_head.deconv.weight"][:, 2 * s + c])
            assert torch.equal(lw.bias[2 * t + c], src["locref_head.deconv.bias"][2 * s + c])
    # nose has no match: freshly initialised, equal to no source channel
    for s in range(4):
        assert not torch.equal(hw.weight[:, 2], src["heatmap_head.deconv.weight"][:, s])
    assert module.transfer_summary["mapped"] == {"left_hand": "left_hand", "right_hand": "right_hand"}


def test_keep_copies_heads_and_refuses_another_keypoint_count(source_checkpoint: Path) -> None:
    src = _source_state(source_checkpoint)
    module = _target(source_checkpoint, "keep", names=SOURCE)
    assert torch.equal(module.net.heatmap_head.deconv.weight, src["heatmap_head.deconv.weight"])
    with pytest.raises(CheckpointError, match="heads: keep needs the same keypoints"):
        _target(source_checkpoint, "keep")


def test_other_backbone_is_one_clear_error(source_checkpoint: Path) -> None:
    with pytest.raises(CheckpointError, match=r"backbone is 'resnet18'.*'resnet34'"):
        _target(source_checkpoint, "reinit", backbone="resnet34")


def test_foreign_checkpoint_is_not_unpickled(tmp_path: Path) -> None:
    import argparse

    bad = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}, "payload": argparse.Namespace(code="not weights")}, bad)
    with pytest.raises(CheckpointError, match="weights-only"):
        _target(bad, "reinit")


def test_load_weights_file_errors_are_one_line_naming_the_file(tmp_path: Path) -> None:
    from crosspose.models.transfer import load_weights_file

    with pytest.raises(CheckpointError, match="snapshot not found"):
        load_weights_file(tmp_path / "absent.pt", "snapshot", "a DeepLabCut 3 snapshot")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError) as exc:
        load_weights_file(garbage, "snapshot", "a DeepLabCut 3 snapshot")
    assert str(exc.value).startswith(f"{garbage}: cannot read as a DeepLabCut 3 snapshot (")
    assert "\n" not in str(exc.value)
    torch.save({"model": {"w": torch.ones(2)}}, tmp_path / "ok.pt")
    assert torch.equal(load_weights_file(tmp_path / "ok.pt")["model"]["w"], torch.ones(2))
