"""Many species, one skeleton (AP-10K, Animal-Pose), and the layouts "any COCO file trains" must cover."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from crosspose.cli import main
from crosspose.core.errors import DataFormatError
from crosspose.data.coco import load_coco_keypoints
from crosspose.data.datamodule import PoseDataModule
from crosspose.evaluation.report import write_report
from crosspose.testing import write_tiny_coco, write_tiny_deeplabcut_project

# AP-10K's 17 keypoints and 1-based skeleton, as in its annotation files
AP10K_KEYPOINTS = ("left_eye", "right_eye", "nose", "neck", "root_of_tail", "left_shoulder", "left_elbow",
                   "left_front_paw", "right_shoulder", "right_elbow", "right_front_paw", "left_hip", "left_knee",
                   "left_back_paw", "right_hip", "right_knee", "right_back_paw")
AP10K_SKELETON = [[1, 2], [1, 3], [2, 3], [3, 4], [4, 5], [4, 6], [6, 7], [7, 8], [4, 9], [9, 10], [10, 11],
                  [5, 12], [12, 13], [13, 14], [5, 15], [15, 16], [16, 17]]
# (id, name, supercategory = family), a few of AP-10K's 54
AP10K_SPECIES = ((1, "antelope", "Bovidae"), (23, "monkey", "Cercopithecidae"), (26, "gorilla", "Hominidae"),
                 (24, "chimpanzee", "Hominidae"))
# Animal-Pose's 20 keypoints
ANIMALPOSE_KEYPOINTS = ("left_eye", "right_eye", "left_ear", "right_ear", "nose", "throat", "tail", "withers",
                        "left_front_elbow", "right_front_elbow", "left_back_elbow", "right_back_elbow",
                        "left_front_knee", "right_front_knee", "left_back_knee", "right_back_knee",
                        "left_front_paw", "right_front_paw", "left_back_paw", "right_back_paw")
HORSE10_BODYPARTS = ("Nose", "Eye", "Nearknee", "Nearfrontfetlock", "Nearfrontfoot", "Offknee", "Offfrontfetlock",
                     "Offfrontfoot", "Shoulder", "Midshoulder", "Elbow", "Girth", "Wither", "Nearhindhock",
                     "Nearhindfetlock", "Nearhindfoot", "Hip", "Stifle", "Offhindhock", "Offhindfetlock",
                     "Offhindfoot", "Ischium")
# the desert locust's 35 keypoints (DeepPoseKit's data set, as mmpose names them)
LOCUST_BODYPARTS = tuple(["head", "neck", "thorax", "abdomen1", "abdomen2"]
                         + [n for side in "LR" for n in (f"anttip{side}", f"antbase{side}", f"eye{side}")
                            + tuple(f"{leg}leg{side}{i}" for leg in ("fore", "mid", "hind") for i in range(1, 5))])
FAST = ["--data.input_size", "64", "--data.batch_size", "2", "--data.num_workers", "0",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def write_ap10k(folder: Path, count: int = 8) -> Path:
    """An AP-10K-style file: one category per species, all with the same 17 keypoints."""
    path = write_tiny_coco(folder, count=count, size=64, joints=AP10K_KEYPOINTS, name="ap10k.json")
    raw = json.loads(path.read_text())
    raw["categories"] = [{"id": i, "name": n, "supercategory": f, "keypoints": list(AP10K_KEYPOINTS),
                          "skeleton": AP10K_SKELETON} for i, n, f in AP10K_SPECIES]
    for k, ann in enumerate(raw["annotations"]):
        ann["category_id"] = AP10K_SPECIES[k % len(AP10K_SPECIES)][0]
    for img in raw["images"]:
        img["background"] = 2  # AP-10K's own extra field
    path.write_text(json.dumps(raw))
    return path


def test_species_sharing_keypoints_load_as_one_skeleton(tmp_path: Path) -> None:
    coco = load_coco_keypoints(write_ap10k(tmp_path / "a"))
    assert coco.keypoint_names == AP10K_KEYPOINTS and coco.num_keypoints == 17
    assert len(coco.instances()) == 8
    assert [coco.species_of(a) for a in coco.annotations[:4]] == ["antelope", "monkey", "gorilla", "chimpanzee"]
    assert coco.category_ids == {1, 23, 24, 26}
    assert coco.links[0] == (0, 1)


@pytest.mark.parametrize(("spec", "expected"), [("monkey", {"monkey"}), ("Hominidae", {"gorilla", "chimpanzee"}),
                                                ("1, monkey", {"antelope", "monkey"}), (["26"], {"gorilla"})])
def test_categories_select_species_by_name_family_or_id(tmp_path: Path, spec, expected) -> None:
    coco = load_coco_keypoints(write_ap10k(tmp_path / "a"), categories=spec)
    assert {coco.species_of(a) for a in coco.annotations} == expected
    assert len(coco.annotations) == 2 * len(expected)
    assert set(coco.images) == {a["image_id"] for a in coco.annotations}  # images of other species left out


def test_unknown_species_and_differing_keypoint_lists_are_one_clear_error(tmp_path: Path) -> None:
    path = write_ap10k(tmp_path / "a")
    with pytest.raises(DataFormatError, match="no keypoint category matches zebra"):
        load_coco_keypoints(path, categories="zebra")
    raw = json.loads(path.read_text())
    raw["categories"][1]["keypoints"] = list(AP10K_KEYPOINTS[:-1]) + ["tail_tip"]
    path.write_text(json.dumps(raw))
    with pytest.raises(DataFormatError, match="different keypoint lists"):
        load_coco_keypoints(path)
    assert load_coco_keypoints(path, categories="Hominidae").num_keypoints == 17  # a consistent selection loads


def test_select_and_split_keep_the_species(tmp_path: Path, capsys) -> None:
    path = write_ap10k(tmp_path / "a")
    out = tmp_path / "o" / "apes.json"
    assert main(["prepare", "select", "--coco", str(path), "--categories", "Hominidae", "--out", str(out)]) == 0
    apes = load_coco_keypoints(out)
    assert {c["name"] for c in json.loads(out.read_text())["categories"]} == {"gorilla", "chimpanzee"}
    assert {apes.species_of(a) for a in apes.annotations} == {"gorilla", "chimpanzee"}
    assert all(apes.image_path(i).is_file() for i in apes.images)
    assert main(["prepare", "split", "--coco", str(path), "--categories", "monkey,antelope", "--val-fraction", "0.5",
                 "--out", str(tmp_path / "s" / "s.json")]) == 0
    parts = [load_coco_keypoints(tmp_path / "s" / f"s_{p}.json") for p in ("train", "val")]
    assert sum(len(p.annotations) for p in parts) == 4
    assert {p.species_of(a) for p in parts for a in p.annotations} == {"monkey", "antelope"}


def _predictions(coco, wrong_species: str) -> list[dict]:
    preds = []
    for ann in coco.annotations:
        kp = coco.keypoints(ann).copy()
        if coco.species_of(ann) == wrong_species:
            kp[:, :2] += 40.0  # far beyond half the normaliser (64 px box / 8)
        kp[:, 2] = 0.9
        preds.append({"image_id": ann["image_id"], "category_id": ann["category_id"], "annotation_id": ann["id"],
                      "keypoints": kp.ravel().tolist(), "score": 0.9})
    return preds


def test_score_breaks_metrics_down_per_species_and_report_shows_it(tmp_path: Path, capsys) -> None:
    path = write_ap10k(tmp_path / "a")
    coco = load_coco_keypoints(path)
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps(_predictions(coco, wrong_species="monkey")))
    assert main(["score", "--gt", str(path), "--pred", str(pred), "--out", str(tmp_path / "m" / "metrics.json")]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    species = metrics["species"]
    assert set(species) == {"antelope", "monkey", "gorilla", "chimpanzee"}
    assert species["monkey"]["pckh"] == 0.0 and species["gorilla"]["pckh"] == 100.0
    assert all(s["instances"] == 2 for s in species.values())
    present = {n: s["present"] for n, s in species.items()}
    assert sum(present.values()) == metrics["counts"]["present"]
    expected_mean = 100.0 * sum(v for n, v in present.items() if n != "monkey") / sum(present.values())
    assert metrics["pckh"]["mean"] == pytest.approx(expected_mean)
    assert "monkey" in printed
    # only the apes: the monkeys' predictions are ignored, not an error
    assert main(["score", "--gt", str(path), "--pred", str(pred), "--categories", "Hominidae",
                 "--out", str(tmp_path / "apes" / "metrics.json")]) == 0
    apes = json.loads((tmp_path / "apes" / "metrics.json").read_text())
    assert apes["counts"]["instances"] == 4 and apes["pckh"]["mean"] == 100.0
    assert set(apes["species"]) == {"gorilla", "chimpanzee"}
    report = write_report({"a": metrics, "b": apes}, tmp_path / "report")
    text = report.read_text()
    assert "## PCKh@0.5 per species" in text and "| monkey | 0.00 (2) | n/a |" in text


# ------------------------------------------------------------------------- layouts that must train
def write_animalpose_release(folder: Path) -> Path:
    """Animal-Pose's keypoints.json as released: images as {id: name} beside images/, bbox x1 y1 x2 y2,
    nested [x, y, v] keypoints, a 0-based skeleton, one category per species."""
    import cv2

    rng = np.random.default_rng(0)
    (folder / "images").mkdir(parents=True)
    images, annotations = {}, []
    for i in range(4):
        name = f"2007_{i:06d}.jpg"
        cv2.imwrite(str(folder / "images" / name), rng.integers(0, 255, (60, 80, 3), dtype=np.uint8))
        images[str(i + 1)] = name
        kps = [[int(rng.integers(10, 70)), int(rng.integers(10, 50)), int(k % 3 != 0)] for k in range(20)]
        kps = [k if k[2] else [0, 0, 0] for k in kps]
        annotations.append({"image_id": i + 1, "bbox": [5, 5, 75, 55], "keypoints": kps,
                            "num_keypoints": sum(k[2] for k in kps), "category_id": 1 + i % 2})
    links = [[0, 1], [0, 2], [1, 3], [0, 4], [1, 4], [4, 5], [5, 7], [6, 7]]
    categories = [{"supercategory": "animal", "id": c, "name": n, "keypoints": list(ANIMALPOSE_KEYPOINTS),
                   "skeleton": links} for c, n in ((1, "dog"), (2, "cat"), (3, "sheep"))]
    path = folder / "keypoints.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def write_coco_person(folder: Path) -> Path:
    """COCO person_keypoints layout: extra fields, segmentation, crowd and keypoint-less annotations."""
    path = write_tiny_coco(folder, count=4, size=64, name="person_keypoints_val2017.json")
    raw = json.loads(path.read_text())
    raw["info"] = {"year": 2017, "version": "1.0"}
    raw["licenses"] = [{"id": 1, "name": "CC", "url": ""}]
    for img in raw["images"]:
        img.update(license=1, coco_url="", date_captured="", flickr_url="")
    for ann in raw["annotations"]:
        ann["segmentation"] = [[1, 1, 30, 1, 30, 30]]
    raw["annotations"].append({"id": 99, "image_id": 1, "category_id": 1, "iscrowd": 1, "keypoints": [0] * 12,
                               "num_keypoints": 0, "bbox": [0, 0, 10, 10], "area": 100,
                               "segmentation": {"counts": [0, 100], "size": [64, 64]}})
    raw["categories"] = [{"supercategory": "person", "id": 1, "name": "person", "keypoints": list(
        json.loads(path.read_text())["categories"][0]["keypoints"]), "skeleton": [[1, 2]]},
        {"supercategory": "vehicle", "id": 3, "name": "car"}]  # a box-only category beside it
    path.write_text(json.dumps(raw))
    return path


def _one_batch(train_file: Path, **kw) -> tuple[int, dict]:
    dm = PoseDataModule(train_file=str(train_file), input_size=64, batch_size=2, num_workers=0, **kw)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    return dm.coco("train").num_keypoints, batch


LAYOUTS = ["coco", "ap10k", "animalpose", "horse10-coco", "locust-coco", "horse10-deeplabcut", "locust-deeplabcut"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_layout_loads_for_training(tmp_path: Path, layout: str) -> None:
    """COCO files (incl. mmpose's Horse-10 and locust) and Animal-Pose's json as they are; DeepLabCut
    projects (Horse-10's own release, a locust labelled in DeepLabCut) after `prepare deeplabcut`."""
    if layout == "coco":
        path, k = write_coco_person(tmp_path / "c"), 4
    elif layout.endswith("-coco"):
        # mmpose's Horse-10 (one horse per frame, DeepLabCut frame paths) and locust (160 px frames) files
        names = HORSE10_BODYPARTS if layout.startswith("horse10") else LOCUST_BODYPARTS
        path, k = write_tiny_coco(tmp_path / "m", count=4, size=64, joints=names), len(names)
    elif layout == "ap10k":
        path, k = write_ap10k(tmp_path / "a"), 17
    elif layout == "animalpose":
        path, k = write_animalpose_release(tmp_path / "ap"), 20
    else:  # DeepLabCut projects: Horse-10 (h5, path-part index) and a locust (csv)
        horse = layout.startswith("horse10")
        bodyparts = HORSE10_BODYPARTS if horse else LOCUST_BODYPARTS
        write_tiny_deeplabcut_project(tmp_path / "p", bodyparts=bodyparts, videos=("BrownHorseinShadow", "Chestnut"),
                                      formats=("h5",) if horse else ("csv",), path_index=horse, scorer="Byron",
                                      frames=2)
        path, k = tmp_path / f"{layout}.json", len(bodyparts)
        assert main(["prepare", "deeplabcut", "--project", str(tmp_path / "p"), "--out", str(path)]) == 0
    num_keypoints, batch = _one_batch(path)
    assert num_keypoints == k
    assert tuple(batch["image"].shape) == (2, 3, 64, 64) and tuple(batch["keypoints"].shape) == (2, k, 2)
    assert batch["valid"].any()


def test_animalpose_release_keeps_its_coordinates(tmp_path: Path) -> None:
    path = write_animalpose_release(tmp_path / "ap")
    raw = json.loads(path.read_text())
    coco = load_coco_keypoints(path)
    assert coco.links[0] == (0, 1)  # 0-based in the release, kept as the same pair
    ann = coco.annotations[0]
    assert ann["bbox"] == [5.0, 5.0, 70.0, 50.0]
    first = raw["annotations"][0]["keypoints"]
    kp = coco.keypoints(ann)
    assert [tuple(r) for r in kp[:, :2][kp[:, 2] > 0]] == [(x, y) for x, y, v in first if v]
    assert coco.image_path(ann["image_id"]).is_file()
    assert {coco.species_of(a) for a in coco.annotations} == {"dog", "cat"}


def test_fit_on_a_species_selection(tmp_path: Path, one_torch_thread: None) -> None:
    path = write_ap10k(tmp_path / "a")
    assert main(["fit", "--model.num_keypoints", "17", "--model.backbone", "resnet18", "--model.pretrained", "false",
                 "--data.train_file", str(path), "--data.val_file", str(path), "--data.categories", "Hominidae",
                 "--trainer.fast_dev_run", "1", "--trainer.default_root_dir", str(tmp_path / "run"), *FAST]) == 0
