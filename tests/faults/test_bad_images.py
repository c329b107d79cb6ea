"""Odd image files through prepare, fit and predict: EXIF-rotated, truncated, and not the declared size."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from crosspose.cli import main
from crosspose.core.errors import DataFormatError
from crosspose.data.images import decode_bgr, exif_orientation, image_size
from crosspose.testing import write_tiny_coco

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAST = ["--model.num_keypoints", "4", "--model.backbone", "resnet18", "--data.input_size", "32",
        "--data.batch_size", "2", "--data.num_workers", "0", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false"]


def _save_rotated_jpeg(path: Path, pixels_rgb: np.ndarray, orientation: int = 6) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels_rgb).save(path, format="JPEG", quality=95, exif=exif.tobytes())


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _as_jpeg(coco_file: Path, index: int) -> Path:
    """Re-save image ``index`` of a tiny COCO set as JPEG (the JSON updated to name it)."""
    coco = json.loads(coco_file.read_text())
    record = coco["images"][index]
    png = coco_file.parent / record["file_name"]
    jpg = png.with_suffix(".jpg")
    cv2.imwrite(str(jpg), cv2.imread(str(png)))
    record["file_name"] = str(Path(record["file_name"]).with_suffix(".jpg"))
    coco_file.write_text(json.dumps(coco))
    return jpg


def test_exif_orientation_is_ignored_the_same_way_in_sizes_and_pixels(tmp_path: Path) -> None:
    stored = np.zeros((40, 64, 3), np.uint8)  # 64 wide, 40 high as stored
    stored[:, :8] = 255
    path = tmp_path / "rotated.jpg"
    _save_rotated_jpeg(path, stored)
    assert exif_orientation(path) == 6
    assert cv2.imread(str(path)).shape[:2] == (64, 40)  # what OpenCV's default would train on: rotated
    assert decode_bgr(path).shape[:2] == (40, 64)
    assert image_size(path) == (64, 40)  # what prepare writes into the JSON: the same grid


def test_exif_rotated_image_trains_and_predicts_in_its_stored_grid(tmp_path: Path) -> None:
    data = write_tiny_coco(tmp_path / "d", count=4, size=48)
    jpg = _as_jpeg(data, 1)
    _save_rotated_jpeg(jpg, cv2.imread(str(jpg))[:, :, ::-1])
    run = tmp_path / "run"
    assert main(["fit", "--data.train_file", str(data), "--trainer.max_steps", "1", "--trainer.max_epochs", "-1",
                 "--trainer.default_root_dir", str(run), *FAST]) == 0
    assert main(["predict", "--data.predict_file", str(tmp_path / "d" / "images"), "--trainer.default_root_dir",
                 str(tmp_path / "p"), "--ckpt_path", str(run / "checkpoints" / "last.ckpt"), *FAST]) == 0


@pytest.mark.parametrize("command", ["fit", "predict"])
def test_truncated_image_is_an_error_naming_it(command: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    data = write_tiny_coco(tmp_path / "d", count=4, size=48)
    jpg = _as_jpeg(data, 2)
    _truncate(jpg)
    if command == "fit":
        args = ["fit", "--data.train_file", str(data), "--trainer.fast_dev_run", "1"]
    else:
        args = ["predict", "--data.predict_file", str(tmp_path / "d" / "images")]
    assert main([*args, "--trainer.default_root_dir", str(tmp_path / "r"), *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert "truncated" in err and str(jpg) in err and "Traceback" not in err, err


def test_truncated_image_allowed_is_a_warning(tmp_path: Path) -> None:
    data = write_tiny_coco(tmp_path / "d", count=4, size=48)
    _truncate(_as_jpeg(data, 2))
    with pytest.warns(UserWarning, match="truncated"):
        assert main(["fit", "--data.train_file", str(data), "--trainer.fast_dev_run", "1",
                     "--data.allow_truncated", "true", "--trainer.default_root_dir", str(tmp_path / "r"), *FAST]) == 0


def test_truncated_png_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cut.png"
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    _truncate(path)
    with pytest.raises(DataFormatError, match="truncated|cannot be decoded"):
        decode_bgr(path)


def test_image_smaller_than_declared_is_an_error_naming_it(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    data = write_tiny_coco(tmp_path / "d", count=4, size=48)
    cv2.imwrite(str(tmp_path / "d" / "images" / "img001.png"), np.zeros((1, 1, 3), np.uint8))
    assert main(["fit", "--data.train_file", str(data), "--trainer.fast_dev_run", "2",  # 2 batches: every image
                 "--trainer.default_root_dir", str(tmp_path / "r"), *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert "img001.png" in err and "1x1" in err and "48x48" in err and "Traceback" not in err, err


def test_an_error_inside_a_loader_worker_is_one_line(tmp_path: Path) -> None:
    """In a fresh process: forking loader workers from a test process full of threads can hang."""
    import os
    import subprocess
    import sys

    from crosspose.testing import REPO

    data = write_tiny_coco(tmp_path / "d", count=4, size=48)
    cv2.imwrite(str(tmp_path / "d" / "images" / "img003.png"), np.zeros((1, 1, 3), np.uint8))
    args = ["fit", "--data.train_file", str(data), "--trainer.fast_dev_run", "2",
            "--trainer.default_root_dir", str(tmp_path / "r"), *FAST, "--data.num_workers", "1"]
    done = subprocess.run([sys.executable, "-m", "crosspose", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"})
    assert done.returncode == 2, done.stderr[-2000:]
    err = [line for line in done.stderr.splitlines() if line.startswith("crosspose fit: error")]
    assert len(err) == 1 and "img003.png" in err[0] and str(data) in err[0] and "Traceback" not in done.stderr, \
        done.stderr[-2000:]


@pytest.mark.parametrize(("option", "value"), [("--data.batch_size", "-2"), ("--data.num_workers", "-1"),
                                               ("--model.optimizer.lr", "-0.1")])
def test_negative_settings_are_one_line(option: str, value: str, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    data = write_tiny_coco(tmp_path / "d", count=4, size=48)
    extra = ["--model.optimizer", "torch.optim.SGD"] if "lr" in option else []
    assert main(["fit", "--data.train_file", str(data), "--trainer.fast_dev_run", "1",
                 "--trainer.default_root_dir", str(tmp_path / "r"), *FAST, *extra, option, value]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and value in err and "Traceback" not in err, err


def test_prepare_sizes_an_exif_rotated_release_image_in_its_stored_grid(tmp_path: Path) -> None:
    from crosspose.data.coco import load_coco_keypoints
    from crosspose.data.dataset import InstanceDataset
    from crosspose.data.macaquepose import read_macaquepose
    from crosspose.data.synth import generate

    release = tmp_path / "release"
    generate("macaque", 3, release, seed=0, size=64, workers=1)
    first = sorted((release / "images").iterdir())[0]
    pixels = cv2.imread(str(first))[:, :, ::-1]
    _save_rotated_jpeg(first, np.ascontiguousarray(pixels[:, :48]))  # non-square, orientation 6
    out = read_macaquepose(release, tmp_path / "macaque.json")
    coco = load_coco_keypoints(out)
    (record,) = [r for r in coco.images.values() if Path(r["file_name"]).name == first.name]
    assert (record["width"], record["height"]) == (48, 64)
    dataset = InstanceDataset(coco, (32, 32))
    for i in range(len(dataset)):  # every instance decodes at its declared size: no mismatch error
        dataset[i]
