"""`crosspose prepare deeplabcut`: DeepLabCut projects (h5 and csv, single and multi-animal) to COCO."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crosspose.cli import main
from crosspose.core.errors import DataFormatError
from crosspose.data.coco import load_coco_keypoints
from crosspose.data.deeplabcut import prepare_deeplabcut, read_collected_data
from crosspose.testing import SHARED_FIXTURES, requires_fixture, write_tiny_deeplabcut_project

REACHING = "deeplabcut/Reaching-Mackenzie-2018-08-30"
FAST = ["--data.input_size", "64", "--data.batch_size", "2", "--data.num_workers", "0",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def _by_path(coco) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for ann in coco.annotations:
        out.setdefault(coco.images[ann["image_id"]]["dlc_path"], []).append(ann)
    return out


def _assert_matches(coco, truth: dict, keypoints: list[str]) -> None:
    """Every labelled (image, individual) of ``truth`` is one annotation with exactly its coordinates."""
    anns = _by_path(coco)
    expected_instances = sum(1 for inds in truth.values() for parts in inds.values()
                             if any(v is not None for v in parts.values()))
    assert len(coco.annotations) == expected_instances
    for image, inds in truth.items():
        for ind, parts in inds.items():
            if all(v is None for v in parts.values()):
                continue
            matching = [a for a in anns[image] if a.get("individual", "") in (ind, "")]
            assert len(matching) == 1, (image, ind)
            kp = coco.keypoints(matching[0])
            for name, value in parts.items():
                k = keypoints.index(name)
                if value is None:
                    assert kp[k, 2] == 0
                else:
                    assert kp[k, 2] == 2 and tuple(kp[k, :2]) == value  # exact: no rounding on the way


@requires_fixture(REACHING)
def test_real_project_every_frame_equals_both_h5_and_csv(tmp_path: Path) -> None:
    project = SHARED_FIXTURES / REACHING
    folder = project / "labeled-data" / "reachingvideo1"
    out = tmp_path / "reaching.json"
    assert main(["prepare", "deeplabcut", "--project", str(project), "--out", str(out)]) == 0
    coco = load_coco_keypoints(out)
    names = ["Hand", "Finger1", "Tongue", "Joystick1", "Joystick2"]
    assert list(coco.keypoint_names) == names
    assert coco.links == ((0, 1), (3, 4))
    h5 = pd.read_hdf(folder / "CollectedData_Mackenzie.h5")
    csv = pd.read_csv(folder / "CollectedData_Mackenzie.csv", header=[0, 1, 2], index_col=0)
    assert len(h5) == len(csv) == 55 == len(coco.images) == len(coco.annotations)
    by_path = _by_path(coco)
    for table in (h5, csv):
        for path, row in table.iterrows():
            (ann,) = by_path[path]
            kp = coco.keypoints(ann)
            for k, name in enumerate(names):
                x, y = row[("Mackenzie", name, "x")], row[("Mackenzie", name, "y")]
                if np.isnan(x):
                    assert kp[k, 2] == 0
                else:
                    assert kp[k, 2] == 2 and (kp[k, 0], kp[k, 1]) == (x, y)
    assert sum(int((coco.keypoints(a)[:, 2] == 0).sum()) for a in coco.annotations) == int(h5.isna().sum().sum() / 2)
    from PIL import Image

    for img in coco.images.values():
        with Image.open(coco.image_path(img["id"])) as im:
            assert (img["width"], img["height"]) == im.size
    assert (832, 747) in {(i["width"], i["height"]) for i in coco.images.values()}
    for ann in coco.annotations:  # whole-frame instances
        img = coco.images[ann["image_id"]]
        assert ann["bbox"] == [0.0, 0.0, img["width"], img["height"]]


@requires_fixture(REACHING)
def test_fit_runs_on_the_converted_real_project(tmp_path: Path, one_torch_thread: None) -> None:
    out = tmp_path / "reaching.json"
    assert main(["prepare", "deeplabcut", "--project", str(SHARED_FIXTURES / REACHING), "--out", str(out),
                 "--val-fraction", "0.2", "--seed", "3"]) == 0
    train, val = tmp_path / "reaching_train.json", tmp_path / "reaching_val.json"
    assert not out.exists()
    assert main(["fit", "--model.num_keypoints", "5", "--model.backbone", "resnet18", "--model.pretrained", "false",
                 "--data.train_file", str(train), "--data.val_file", str(val), "--trainer.fast_dev_run", "1",
                 "--trainer.default_root_dir", str(tmp_path / "run"), *FAST]) == 0


@pytest.mark.parametrize("formats", [("h5",), ("csv",)])
@pytest.mark.parametrize("path_index", [False, True], ids=["path-string", "path-parts"])
def test_single_animal_projects(tmp_path: Path, formats: tuple[str, ...], path_index: bool) -> None:
    truth = write_tiny_deeplabcut_project(tmp_path / "p", videos=("v1", "v2"), formats=formats,
                                          path_index=path_index)
    [out] = prepare_deeplabcut(tmp_path / "p", tmp_path / "o" / "d.json")
    coco = load_coco_keypoints(out)
    assert list(coco.keypoint_names) == ["snout", "left_ear", "right_ear", "tailbase"]
    assert coco.links == ((0, 1), (0, 3))
    assert len(coco.images) == 8
    _assert_matches(coco, {k: {"": v[""]} for k, v in truth.items()}, list(coco.keypoint_names))
    assert all(coco.image_path(i).is_file() for i in coco.images)


@pytest.mark.parametrize("formats", [("h5",), ("csv",)])
def test_multi_animal_project_gives_one_instance_per_individual(tmp_path: Path, formats: tuple[str, ...]) -> None:
    truth = write_tiny_deeplabcut_project(tmp_path / "p", individuals=("mouse1", "mouse2"), unique=("led",),
                                          formats=formats, frames=3)
    [out] = prepare_deeplabcut(tmp_path / "p", tmp_path / "m.json")
    coco = load_coco_keypoints(out)
    assert list(coco.keypoint_names) == ["snout", "left_ear", "right_ear", "tailbase", "led"]
    assert {a["individual"] for a in coco.annotations} == {"mouse1", "mouse2", "single"}
    _assert_matches(coco, truth, list(coco.keypoint_names))
    for ann in coco.annotations:
        kp = coco.keypoints(ann)
        lab = kp[kp[:, 2] > 0, :2]
        x, y, w, h = ann["bbox"]
        assert (lab >= [x, y]).all() and (lab <= [x + w, y + h]).all()  # the box holds its joints
        assert w < 80 or h < 64 or len(lab) > 1


def test_val_fraction_splits_by_image_seeded(tmp_path: Path) -> None:
    write_tiny_deeplabcut_project(tmp_path / "p", frames=10)
    a = prepare_deeplabcut(tmp_path / "p", tmp_path / "a" / "d.json", val_fraction=0.3, seed=1)
    b = prepare_deeplabcut(tmp_path / "p", tmp_path / "b" / "d.json", val_fraction=0.3, seed=1)
    c = prepare_deeplabcut(tmp_path / "p", tmp_path / "c" / "d.json", val_fraction="config", seed=2)
    names = [[{i["dlc_path"] for i in json.loads(p.read_text())["images"]} for p in run] for run in (a, b, c)]
    assert names[0] == names[1]
    train, val = names[0]
    assert len(val) == 3 and len(train) == 7 and not train & val
    assert len(names[2][1]) == 2  # 1 - TrainingFraction 0.75 of 10 frames, rounded


def test_coordinates_of_h5_and_csv_readers_agree(tmp_path: Path) -> None:
    write_tiny_deeplabcut_project(tmp_path / "p", individuals=("a", "b"), path_index=True)
    folder = tmp_path / "p" / "labeled-data" / "video1"
    h5, csv = read_collected_data(folder / "CollectedData_Tester.h5"), read_collected_data(folder / "CollectedData_Tester.csv")
    assert h5.images == csv.images and h5.individuals == csv.individuals == ["a", "b"]
    assert np.array_equal(h5.coords, csv.coords, equal_nan=True)


# ----------------------------------------------------------------------------------- bad input
def _fails(tmp_path: Path, capsys, match: str) -> None:
    out = tmp_path / "out" / "d.json"
    assert main(["prepare", "deeplabcut", "--project", str(tmp_path / "p"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert match in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # nothing written


def test_missing_images_fail_before_writing(tmp_path: Path, capsys) -> None:
    write_tiny_deeplabcut_project(tmp_path / "p")
    (tmp_path / "p" / "labeled-data" / "video1" / "img002.png").unlink()
    _fails(tmp_path, capsys, "labelled image missing")


def test_bodyparts_differing_from_config_fail(tmp_path: Path, capsys) -> None:
    write_tiny_deeplabcut_project(tmp_path / "p")
    config = tmp_path / "p" / "config.yaml"
    config.write_text(config.read_text().replace("- tailbase", "- tail_tip"))
    _fails(tmp_path, capsys, "not in config.yaml: tailbase; missing: tail_tip")


def test_no_collected_data_fails(tmp_path: Path, capsys) -> None:
    write_tiny_deeplabcut_project(tmp_path / "p")
    for f in (tmp_path / "p" / "labeled-data" / "video1").glob("CollectedData_*"):
        f.unlink()
    _fails(tmp_path, capsys, "no CollectedData_<scorer>.h5 or .csv")


def test_malformed_csv_header_fails(tmp_path: Path, capsys) -> None:
    write_tiny_deeplabcut_project(tmp_path / "p", formats=("csv",))
    csv = tmp_path / "p" / "labeled-data" / "video1" / "CollectedData_Tester.csv"
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join([lines[0], lines[2], *lines[3:]]) + "\n")  # the bodyparts row lost
    _fails(tmp_path, capsys, "the header rows must start with scorer, bodyparts, coords")


def test_not_a_project_fails(tmp_path: Path, capsys) -> None:
    (tmp_path / "p").mkdir()
    _fails(tmp_path, capsys, "config.yaml is missing")


def test_frames_copied_beside_the_labels_are_found(tmp_path: Path) -> None:
    """A video folder renamed after labelling still converts: its frames sit beside CollectedData."""
    write_tiny_deeplabcut_project(tmp_path / "p")
    shutil.move(tmp_path / "p" / "labeled-data" / "video1", tmp_path / "p" / "labeled-data" / "renamed")
    [out] = prepare_deeplabcut(tmp_path / "p", tmp_path / "d.json")
    coco = load_coco_keypoints(out)
    assert all(coco.image_path(i).is_file() for i in coco.images)


def test_unreadable_h5_is_one_error(tmp_path: Path) -> None:
    write_tiny_deeplabcut_project(tmp_path / "p", formats=("h5",))
    (tmp_path / "p" / "labeled-data" / "video1" / "CollectedData_Tester.h5").write_bytes(b"not hdf5")
    with pytest.raises(DataFormatError, match="cannot be read as a pandas HDF5 table"):
        prepare_deeplabcut(tmp_path / "p", tmp_path / "d.json")


def test_the_multianimalproject_flag_decides_when_present(tmp_path: Path) -> None:
    write_tiny_deeplabcut_project(tmp_path / "p")
    config = tmp_path / "p" / "config.yaml"
    config.write_text(config.read_text() + "individuals:\n- individual1\n- individual2\n")  # DLC's template lists them
    [out] = prepare_deeplabcut(tmp_path / "p", tmp_path / "d.json")
    assert all("individual" not in a for a in json.loads(out.read_text())["annotations"])


def test_a_skeleton_naming_an_unknown_bodypart_fails(tmp_path: Path, capsys) -> None:
    write_tiny_deeplabcut_project(tmp_path / "p")
    config = tmp_path / "p" / "config.yaml"
    config.write_text(config.read_text().replace("  - tailbase\n", "  - tail\n", 1))
    _fails(tmp_path, capsys, "names tail, which is not a bodypart")
