"""Self-describing checkpoints: the model card, and predict/test from the checkpoint alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from crosspose.cli import main
from crosspose.core.errors import CheckpointError
from crosspose.models.card import ModelCard
from crosspose.testing import write_tiny_coco

QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
         "--data.num_workers", "0"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(checkpoint of a tiny run at 48 x 64 px, padding 1.5, radius 9, its data file)."""
    root = tmp_path_factory.mktemp("card")
    data = write_tiny_coco(root / "d", count=4, size=64)
    torch.set_num_threads(1)
    assert main(["fit", "--model.num_keypoints", "4", "--model.backbone", "resnet18", "--model.radius", "9",
                 "--data.train_file", str(data), "--data.val_file", str(data), "--data.input_size", "[48, 64]",
                 "--data.padding", "1.5", "--data.batch_size", "2", "--trainer.max_steps", "2",
                 "--trainer.default_root_dir", str(root / "run"), *QUIET]) == 0
    return root / "run" / "checkpoints" / "last.ckpt", data


def test_checkpoint_records_input_size_padding_codec_and_skeleton(trained: tuple[Path, Path]) -> None:
    ckpt, data = trained
    card = ModelCard.from_dict(torch.load(ckpt, weights_only=True)["crosspose"])
    category = json.loads(data.read_text())["categories"][0]
    assert card.input_size == (48, 64) and card.padding == 1.5
    assert card.codec.radius == 9 and card.codec.kind == "disk" and card.codec.stride == 8
    assert card.keypoint_names == tuple(category["keypoints"])
    assert card.flip_pairs == ((1, 2),)  # left_hand / right_hand
    assert [list(link) for link in card.links] == [[a - 1, b - 1] for a, b in category["skeleton"]]
    assert card.backbone == "resnet18"
    assert ModelCard.from_dict(card.to_dict()) == card


def test_old_and_broken_metadata(tmp_path: Path) -> None:
    old = ModelCard.from_dict({"backbone": "resnet50", "num_keypoints": 2, "keypoint_names": ["left_a", "right_a"]})
    assert old.input_size is None and old.flip_pairs == ((0, 1),)
    unnamed = ModelCard(backbone="resnet18", num_keypoints=2, keypoint_names=("joint_0", "joint_1"), named=False)
    assert unnamed.to_dict()["keypoint_names"] is None  # stand-ins are not stored as real names
    assert ModelCard.from_dict(unnamed.to_dict()) == unnamed
    with pytest.raises(CheckpointError, match="malformed"):
        ModelCard.from_dict({"backbone": "resnet50", "num_keypoints": 3, "keypoint_names": ["a"]}, "x.ckpt")


def test_predict_needs_only_the_checkpoint_and_refuses_a_contradicting_config(
        trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt, data = trained
    out = tmp_path / "pred"
    common = ["--ckpt_path", str(ckpt), "--data.predict_file", str(data), "--trainer.default_root_dir", str(out),
              *QUIET]
    assert main(["predict", *common]) == 0
    alone = json.loads((out / "logs" / "version_0" / "predictions.json").read_text())
    # the same options given explicitly (as the training config would) give the same keypoints
    assert main(["predict", *common, "--data.input_size", "[48, 64]", "--data.padding", "1.5",
                 "--model.num_keypoints", "4"]) == 0
    explicit = json.loads((out / "logs" / "version_1" / "predictions.json").read_text())
    assert [p["keypoints"] for p in alone] == [p["keypoints"] for p in explicit]
    capsys.readouterr()
    assert main(["predict", *common, "--data.input_size", "256"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data.input_size is 256" in err[0] and "[48, 64]" in err[0]
    assert main(["test", "--ckpt_path", str(ckpt), "--data.test_file", str(data), "--model.backbone", "resnet50",
                 "--trainer.default_root_dir", str(out), *QUIET]) == 2
    assert "model.backbone is 'resnet50'" in capsys.readouterr().err


def test_a_module_saved_outside_training_loads_everywhere(tmp_path: Path) -> None:
    from crosspose.inference.model import build_network
    from crosspose.training.card import save_module
    from crosspose.training.module import PoseEstimationModule

    torch.manual_seed(0)
    module = PoseEstimationModule(num_keypoints=3, keypoint_names=["nose", "left_eye", "right_eye"],
                                  backbone="resnet18", pretrained=False, radius=11.0)
    path = save_module(module, tmp_path / "sub" / "net.ckpt", input_size=(48, 64), meta={"source": "here"})
    assert [p.name for p in path.parent.iterdir()] == ["net.ckpt"]  # atomic: no temporary file left
    net, card = build_network(path)  # what analyze, export and predict read
    assert card.input_size == (48, 64) and card.keypoint_names == ("nose", "left_eye", "right_eye")
    assert card.codec.radius == 11.0 and card.flip_pairs == ((1, 2),)
    assert torch.load(path, weights_only=True)["crosspose"]["source"] == "here"
    again = PoseEstimationModule.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    for name, tensor in module.state_dict().items():
        assert torch.equal(again.state_dict()[name], tensor), name
        assert torch.equal(net.state_dict()[name.removeprefix("net.")], tensor), name
