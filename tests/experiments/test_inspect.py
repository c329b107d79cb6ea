"""`crosspose inspect` on tiny trained networks: known answers, frozen stages, bad input, the outputs."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import torch
import yaml

from crosspose.cli import main
from crosspose.core.errors import DataFormatError
from crosspose.evaluation.features import BACKBONE_STAGES
from crosspose.experiments.inspect import inspect_networks, run_summary, what_transfers_section
from crosspose.experiments.inspect_analysis import load_network, weight_movement
from crosspose.testing import write_tiny_coco
from crosspose.training.runs import train_and_test

SOURCE = ("head", "left_hand", "right_hand", "tail")
TARGET = ("left_hand", "right_hand", "nose")
QUIET = {"max_steps": 2, "enable_progress_bar": False}


def _files(data: Path, size: int = 64) -> dict:
    return {"train_file": str(data), "val_file": str(data), "test_file": str(data), "input_size": size,
            "batch_size": 4, "num_workers": 0}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A source network, a transfer of it to another skeleton with stem-stage2 frozen, and its data."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("inspect")
    source_data = write_tiny_coco(root / "src", count=8, size=64, joints=SOURCE)
    target_data = write_tiny_coco(root / "tgt", count=10, size=64, joints=TARGET, seed=3)
    model = {"num_keypoints": 4, "keypoint_names": list(SOURCE), "backbone": "resnet18"}
    train_and_test(root / "source", {"seed_everything": 0, "model": model, "data": _files(source_data), "trainer": QUIET})
    source = root / "source" / "checkpoints" / "last.ckpt"
    frozen = {"num_keypoints": 3, "keypoint_names": list(TARGET), "backbone": "resnet18",
              "init_from": str(source), "freeze": "stage2",
              "optimizer": functools.partial(torch.optim.SGD, lr=0.05)}
    train_and_test(root / "transfer", {"seed_everything": 0, "model": frozen, "data": _files(target_data),
                                        "trainer": QUIET})
    return {"source": source, "transfer": root / "transfer" / "checkpoints" / "last.ckpt",
            "source_data": source_data, "target_data": target_data, "root": root}


def _edit_checkpoint(src: Path, dst: Path, edit) -> Path:
    ckpt = torch.load(src, map_location="cpu", weights_only=True)
    edit(ckpt)
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, dst)
    return dst


def test_frozen_stages_move_exactly_zero_and_the_rest_moves(trained: dict[str, Path]) -> None:
    net = load_network("transfer", trained["transfer"])
    assert net.meta["init_from"] == str(trained["source"]) and net.meta["input_size"] == [64, 64]
    groups = weight_movement(net)["groups"]
    for stage in ("stem", "stage1", "stage2"):
        assert groups[stage]["relative"] == 0.0, stage
    assert groups["stage3"]["relative"] > 0 and groups["stage4"]["relative"] > 0
    assert groups["heads"]["relative"] is None and "reinit" in groups["heads"]["note"]


def test_shared_stage_weights_give_cka_one_there_and_lower_elsewhere(trained: dict[str, Path], tmp_path: Path,
                                                                     one_torch_thread: None) -> None:
    def rerandomise_late_stages(ckpt: dict) -> None:
        gen = torch.Generator().manual_seed(0)
        for key, value in ckpt["state_dict"].items():
            if key.startswith(("net.backbone.body.layer3.", "net.backbone.body.layer4.")) and key.endswith("weight") \
                    and value.ndim == 4:
                ckpt["state_dict"][key] = torch.randn(value.shape, generator=gen) * value.std()

    twin = _edit_checkpoint(trained["source"], tmp_path / "twin" / "checkpoints" / "last.ckpt", rerandomise_late_stages)
    result = inspect_networks({"source": trained["source"], "twin": twin}, [(None, trained["source_data"])],
                              tmp_path / "out", n=8, batch_size=8, attribution_n=4, embed_n=4, log=lambda _: None)
    table = result["cka"]["toy"]["source vs twin"]
    for stage in ("stem", "stage1", "stage2"):
        assert table[stage] == pytest.approx(1.0, abs=1e-6), stage
    assert table["stage3"] < 0.99 and table["stage4"] < 0.99
    assert result["comparisons"]["source vs twin"]["note"] is None  # same skeleton and size: heads compared too
    assert "heatmap_head" in table


def test_different_skeletons_and_input_sizes_compare_backbone_stages_only_and_say_so(
        trained: dict[str, Path], tmp_path: Path, one_torch_thread: None) -> None:
    def other_size(ckpt: dict) -> None:
        ckpt["crosspose"]["input_size"] = [32, 32]

    small = _edit_checkpoint(trained["source"], tmp_path / "small" / "checkpoints" / "last.ckpt", other_size)
    result = inspect_networks({"source": trained["source"], "transfer": trained["transfer"], "small": small},
                              [("toy", trained["source_data"]), ("other", trained["target_data"])],
                              tmp_path / "out", n=8, batch_size=8, attribution_n=4, embed_n=4, log=lambda _: None)
    notes = {pair: c["note"] for pair, c in result["comparisons"].items()}
    assert "different skeletons" in notes["source vs transfer"]
    assert "different input sizes (64x64 vs 32x32)" in notes["source vs small"]
    for pair in notes:
        assert set(result["cka"]["toy"][pair]) == set(BACKBONE_STAGES), pair
    md = (tmp_path / "out" / "inspect.md").read_text()
    assert "backbone stages only" in md
    assert result["models"]["small"]["input_size"] == [32, 32]
    assert result["embedding"]["transfer"]["silhouette_species"] is not None  # two annotated sets
    for name in ("inspect_cka.png", "inspect_movement.png", "inspect_attribution.png", "inspect_embedding.png"):
        assert (tmp_path / "out" / name).stat().st_size > 2000, name
    assert not list((tmp_path / "out").glob(".*"))  # no temp files left behind


def test_too_few_images_is_a_clear_error(trained: dict[str, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture) -> None:
    three = write_tiny_coco(tmp_path / "three", count=3, size=64, joints=SOURCE)
    with pytest.raises(DataFormatError, match="3 instance.*at least 4"):
        inspect_networks({"a": trained["source"]}, [(None, three)], tmp_path / "out", log=lambda _: None)
    code = main(["inspect", "--models", f"a={trained['source']}", "--images", str(three), "--out",
                 str(tmp_path / "cli")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and str(three) in err
    assert not (tmp_path / "cli").exists()  # nothing written


def test_missing_init_file_is_reported_not_fatal(trained: dict[str, Path], tmp_path: Path,
                                                 one_torch_thread: None) -> None:
    def moved(ckpt: dict) -> None:
        ckpt["crosspose"]["init_from"] = str(tmp_path / "gone.ckpt")

    orphan = _edit_checkpoint(trained["transfer"], tmp_path / "orphan" / "checkpoints" / "last.ckpt", moved)
    net = load_network("orphan", orphan)
    movement = weight_movement(net)
    assert movement["groups"] == {} and "gone.ckpt is not found" in movement["note"]
    assert "--init orphan=PATH" in movement["note"]
    assert weight_movement(net, trained["source"])["groups"]["stage1"]["relative"] == 0.0  # the override works


def test_cli_writes_json_markdown_and_figures(trained: dict[str, Path], tmp_path: Path,
                                              one_torch_thread: None) -> None:
    out = tmp_path / "cli"
    assert main(["inspect", "--models", f"source={trained['source']}", str(trained["transfer"]),
                 "--images", str(trained["target_data"]), "--n", "8", "--batch-size", "8", "--attribution-n", "4",
                 "--random-reference", "--out", str(out)]) == 0
    result = json.loads((out / "inspect.json").read_text())
    assert list(result["models"]) == ["source", "transfer", "random"]  # a bare checkpoint: named after its run
    assert result["image_sets"]["toy"]["crops"] == 8
    assert result["movement"]["source"]["note"].startswith("trained from scratch")
    assert result["attribution"]["networks"]["transfer"]["joints"] == 3
    assert "## Weight movement" in (out / "inspect.md").read_text()
    floor = result["cka"]["toy"]["source vs random"]  # unrelated weights: clearly below the shared stem of 1
    assert floor["stage4"] < 0.99 and result["cka"]["toy"]["source vs transfer"]["stem"] == pytest.approx(1.0, abs=1e-6)
    assert "random" not in result["movement"] and "random" not in result["attribution"]["networks"]


def test_demo_section_and_ablation_columns(trained: dict[str, Path], tmp_path: Path, one_torch_thread: None) -> None:
    section = what_transfers_section(tmp_path / "inspect", {"source": trained["source"],
                                                             "transfer": trained["transfer"]},
                                     [trained["target_data"]], n=8)
    assert "## What transfers" in section and "source vs transfer" in section and "| stage2 | 0 (unchanged) |" in section
    columns = run_summary(trained["root"] / "transfer", trained["source"], trained["target_data"], n=8, batch_size=8)
    assert columns["moved_stage2"] == 0.0 and columns["cka_stem"] == pytest.approx(1.0, abs=1e-6)
    assert (trained["root"] / "transfer" / "inspect_summary.json").is_file()
    broken = what_transfers_section(tmp_path / "x", {"a": tmp_path / "none.ckpt"}, [trained["target_data"]])
    assert "Not measured" in broken and "none.ckpt" in broken


def test_ablate_records_cka_and_movement_per_run_when_asked(trained: dict[str, Path], tmp_path: Path,
                                                            one_torch_thread: None) -> None:
    config = {
        "trainer": {"accelerator": "cpu", "max_steps": 2, "max_epochs": -1, "num_sanity_val_steps": 0,
                    "enable_progress_bar": False},
        "model": {"num_keypoints": 3, "keypoint_names": list(TARGET), "backbone": "resnet18",
                  "init_from": str(trained["source"]), "heads": "reinit"},
        "data": {**_files(trained["target_data"]), "test_file": None},
    }
    path = tmp_path / "base.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "grid"
    assert main(["ablate", "--config", str(path), "--freeze", "stage4", "--subset", "6", "--arms", "transfer,scratch",
                 "--test-file", str(trained["target_data"]), "--inspect", "8", "--out", str(out)]) == 0
    rows = {r["arm"]: r for r in json.loads((out / "ablation.json").read_text())["runs"]}
    frozen, scratch = rows["transfer"], rows["scratch"]
    assert all(frozen[f"moved_{s}"] == 0.0 for s in BACKBONE_STAGES)  # the whole backbone was frozen
    assert all(frozen[f"cka_{s}"] == pytest.approx(1.0, abs=1e-6) for s in BACKBONE_STAGES)
    assert scratch["moved_stage1"] is None and scratch["cka_stage4"] < 0.999  # no init network; a new one


def test_body_parts_group_joints_the_same_way_across_species() -> None:
    from crosspose.core.skeletons import MACAQUE, MPII
    from crosspose.experiments.inspect_analysis import body_part

    assert {body_part(j) for j in ("Left Wrist", "r_elbow", "right_shoulder")} == {"arm"}
    assert body_part("head_top") == body_part("nose") == "head" and body_part("left_ankle") == "leg"
    assert "other" not in {body_part(j) for j in MPII.keypoints + MACAQUE.keypoints}
