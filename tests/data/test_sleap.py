"""``crosspose prepare sleap``: tiny .slp files written here with sleap-io, video-backed and embedded."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from crosspose.cli import main
from crosspose.core.errors import DataFormatError
from crosspose.data.coco import load_coco_keypoints
from crosspose.data.dataset import read_rgb
from crosspose.data.sleap import prepare_sleap
from crosspose.testing import TINY_JOINTS, write_moving_figure_video

sio = pytest.importorskip("sleap_io")

SIZE = (100, 150)
EDGES = ((0, 1), (0, 2), (0, 3))
FRAMES = (1, 3, 5, 7, 9)


def _write_slp(folder: Path, multi: bool = False, embed: bool = False, predicted: bool = True) -> tuple[Path, np.ndarray]:
    """A .slp labelling FRAMES of a moving-figure video; frame 3 has its tail missing, frame 5 its hand hidden."""
    folder.mkdir(parents=True, exist_ok=True)
    truth = write_moving_figure_video(folder / "walk.mp4", frames=10, size=SIZE)
    skeleton = sio.Skeleton(nodes=list(TINY_JOINTS), edges=list(EDGES), name="figure")
    video = sio.Video.from_filename(str(folder / "walk.mp4"))
    tracks = [sio.Track(name="a"), sio.Track(name="b")]
    frames = []
    for f in FRAMES:
        points = truth[f].astype(np.float64)
        if f == 3:
            points[3] = np.nan
        if f == 5:  # not visible: x, y, visible
            points = np.concatenate([points, np.ones((4, 1))], axis=1)
            points[1, 2] = 0
        instances = [sio.Instance.from_numpy(points, skeleton=skeleton, track=tracks[0] if multi else None)]
        if multi:
            instances.append(sio.Instance.from_numpy(truth[f][:, :2] + [5.0, 10.0], skeleton=skeleton, track=tracks[1]))
        if predicted:
            instances.append(sio.PredictedInstance.from_numpy(np.asarray(truth[f], np.float64) + 1.0,
                                                              skeleton=skeleton, point_scores=np.ones(4), score=1.0))
        frames.append(sio.LabeledFrame(video=video, frame_idx=f, instances=instances))
    # a frame with a prediction only: not a labelled frame
    frames.append(sio.LabeledFrame(video=video, frame_idx=0, instances=[
        sio.PredictedInstance.from_numpy(np.asarray(truth[0], np.float64), skeleton=skeleton,
                                         point_scores=np.ones(4), score=1.0)]))
    labels = sio.Labels(labeled_frames=frames, videos=[video], skeletons=[skeleton], tracks=tracks if multi else [])
    path = folder / "labels.slp"
    sio.save_slp(labels, str(path), embed="user" if embed else False, verbose=False)
    return path, truth


@pytest.mark.parametrize("embed", [False, True], ids=["video", "embedded"])
def test_single_instance_labels(tmp_path: Path, embed: bool) -> None:
    slp, truth = _write_slp(tmp_path / "p", embed=embed)
    if embed:  # the frames travel inside the .slp: the video is no longer needed
        (tmp_path / "p" / "walk.mp4").unlink()
    [out] = prepare_sleap(slp, tmp_path / "o" / "walk.json")
    coco = load_coco_keypoints(out)
    assert list(coco.keypoint_names) == list(TINY_JOINTS) and coco.links == EDGES
    assert len(coco.images) == len(FRAMES) == len(coco.annotations)  # predicted-only frame 0 left out
    payload = coco.images
    for ann in coco.annotations:
        img = payload[ann["image_id"]]
        f = img["frame"]
        kp = coco.keypoints(ann)
        expected = truth[f].copy()
        visible = np.ones(4, bool)
        if f == 3:
            visible[3] = False
        if f == 5:
            visible[1] = False
        assert (kp[:, 2] == np.where(visible, 2, 0)).all(), f
        np.testing.assert_allclose(kp[visible, :2], expected[visible], atol=1e-4)  # user points, not predicted
        assert ann["bbox"] == [0.0, 0.0, SIZE[1], SIZE[0]]  # one instance per frame: whole frame
        image = read_rgb(coco.image_path(img["id"]))
        assert image.shape == (*SIZE, 3)
        if not embed:  # the PNG is the video's frame f (lossless copy of what sleap-io decodes)
            import cv2

            capture = cv2.VideoCapture(str(tmp_path / "p" / "walk.mp4"))
            for _ in range(f + 1):
                ok, bgr = capture.read()
            capture.release()
            assert ok and np.abs(image.astype(int) - bgr[:, :, ::-1].astype(int)).mean() < 1.0
    info = json.loads(out.read_text())["info"]["sleap"]
    assert info["predicted_instances_ignored"] == len(FRAMES) + 1 and info["multi_instance"] is False
    assert not [p for p in (tmp_path / "o").iterdir() if p.name.startswith(".")]  # no temp folder left


def test_multi_instance_labels_split_and_fit(tmp_path: Path, one_torch_thread: None) -> None:
    slp, truth = _write_slp(tmp_path / "p", multi=True)
    out = tmp_path / "o" / "walk.json"
    assert main(["prepare", "sleap", "--labels", str(slp), "--out", str(out), "--val-fraction", "0.4",
                 "--seed", "1"]) == 0
    assert not out.exists()
    train, val = load_coco_keypoints(out.with_name("walk_train.json")), load_coco_keypoints(out.with_name("walk_val.json"))
    assert (len(train.images), len(val.images)) == (3, 2)
    anns = train.annotations + val.annotations
    assert len(anns) == 2 * len(FRAMES) and {a["individual"] for a in anns} == {"a", "b"}
    for coco in (train, val):
        for ann in coco.annotations:
            kp = coco.keypoints(ann)[coco.keypoints(ann)[:, 2] > 0, :2]
            x, y, w, h = ann["bbox"]
            assert (kp >= [x, y]).all() and (kp <= [x + w, y + h]).all() and w < SIZE[1]  # boxed, not whole frame
    assert main(["fit", "--model.num_keypoints", "4", "--model.backbone", "resnet18", "--model.pretrained", "false",
                 "--data.train_file", str(out.with_name("walk_train.json")),
                 "--data.val_file", str(out.with_name("walk_val.json")), "--trainer.fast_dev_run", "1",
                 "--trainer.default_root_dir", str(tmp_path / "run"), "--data.input_size", "64",
                 "--data.batch_size", "2", "--data.num_workers", "0", "--trainer.enable_progress_bar", "false",
                 "--trainer.enable_model_summary", "false"]) == 0


def test_bad_labels_give_one_line_and_write_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    slp, _ = _write_slp(tmp_path / "p")
    (tmp_path / "notes.slp").write_text("not HDF5 at all")
    (tmp_path / "labels.json").write_text("{}")
    moved = tmp_path / "moved"
    moved.mkdir()
    (moved / "labels.slp").write_bytes(slp.read_bytes())  # the video stays behind: not found
    skeleton = sio.Skeleton(nodes=list(TINY_JOINTS))
    video = sio.Video.from_filename(str(tmp_path / "p" / "walk.mp4"))
    empty = tmp_path / "empty.slp"
    sio.save_slp(sio.Labels(labeled_frames=[sio.LabeledFrame(video=video, frame_idx=0, instances=[
        sio.PredictedInstance.from_numpy(np.zeros((4, 2)), skeleton=skeleton, point_scores=np.ones(4), score=1.0)])],
        videos=[video], skeletons=[skeleton]), str(empty), verbose=False)
    (tmp_path / "p" / "walk.mp4").rename(tmp_path / "p" / "elsewhere.mp4")
    cases = [
        (tmp_path / "notes.slp", "cannot be read as SLEAP labels"),
        (tmp_path / "labels.json", "not a SLEAP labels file"),
        (tmp_path / "missing.slp", "not found"),
        (moved / "labels.slp", "video"),
        (slp, "not found"),
        (empty, "no user-labelled frames (1 predicted"),
    ]
    for path, message in cases:
        out = tmp_path / "out"
        capsys.readouterr()
        assert main(["prepare", "sleap", "--labels", str(path), "--out", str(out / "x.json")]) == 2, message
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0] and str(path.name) in err[0], (message, err)
        assert not out.exists() or not any(out.iterdir()), message
    with pytest.raises(DataFormatError):
        prepare_sleap(empty, tmp_path / "out" / "x.json")


def test_a_moved_project_finds_its_video_beside_the_slp(tmp_path: Path) -> None:
    slp, _ = _write_slp(tmp_path / "p", predicted=False)
    (tmp_path / "p").rename(tmp_path / "moved")  # the .slp holds the old, now missing, video path
    [out] = prepare_sleap(tmp_path / "moved" / "labels.slp", tmp_path / "o" / "walk.json")
    coco = load_coco_keypoints(out)
    assert len(coco.images) == len(FRAMES)
    assert json.loads(out.read_text())["info"]["sleap"]["predicted_instances_ignored"] == 1  # frame 0's
