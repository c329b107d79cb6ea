"""``crosspose analyze`` and ``crosspose.load``: streaming video analysis and DeepLabCut's formats.

Two kinds of network: an untrained checkpoint (any weights exercise the formats, counts and
errors), and a colour detector standing in for a trained network (its maps are computed from the
pixels, so the real pipeline -- decoding, resizing, padding, batching, map decoding, mapping back to
frame pixels -- must put the keypoints on the moving figure).
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import crosspose
from crosspose.cli import main
from crosspose.core.errors import CheckpointError, DataFormatError
from crosspose.inference.predictor import Predictor
from crosspose.models.card import ModelCard
from crosspose.testing import _COLOURS, TINY_JOINTS, write_moving_figure_video, write_tiny_checkpoint

FRAMES = 20
SIZE = (100, 150)  # not multiples of 16 on purpose


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    path = tmp_path_factory.mktemp("video") / "walk.mp4"
    return path, write_moving_figure_video(path, frames=FRAMES, size=SIZE)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt", input_size=(64, 64))


def _decoded_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


class ColourDetector:
    """A stand-in network: joint j's map is how much of its colour a 24 px window around each cell holds."""

    name = "colour-detector"

    def __init__(self) -> None:
        self.card = ModelCard(backbone="none", num_keypoints=4, keypoint_names=TINY_JOINTS,
                              links=((0, 1), (0, 2), (0, 3)), input_size=None)
        self.path = Path("colour-detector")
        self.device = torch.device("cpu")

    def __call__(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        images = frames.permute(0, 3, 1, 2).float()
        b, _, h, w = images.shape
        colours = torch.tensor(_COLOURS, dtype=torch.float32).view(1, 4, 3, 1, 1)
        weight = torch.exp(-((images[:, None] - colours) ** 2).sum(2) / (2 * 40.0**2))  # (B, 4, H, W)
        ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                                indexing="ij")
        pool = lambda t: F.avg_pool2d(t, 24, stride=8, padding=8, count_include_pad=True)  # noqa: E731
        mass = pool(weight) + 1e-6
        cx = pool(weight * xs) / mass
        cy = pool(weight * ys) / mass
        gh, gw = mass.shape[-2:]
        centre_x = torch.arange(gw, dtype=torch.float32) * 8 + 4
        centre_y = (torch.arange(gh, dtype=torch.float32) * 8 + 4).view(-1, 1)
        std = self.card.codec.locref_std
        locref = torch.stack(((cx - centre_x) / std, (cy - centre_y) / std), dim=2).reshape(b, 8, gh, gw)
        return 40 * mass - 2, locref


def test_keypoints_follow_the_moving_figure(video: tuple[Path, np.ndarray]) -> None:
    path, truth = video
    for scale, tolerance in ((1.0, 2.5), (0.5, 4.0)):
        poses = Predictor(ColourDetector(), scale=scale, batch_size=3).predict(path)  # 20 = 6 x 3 + 2
        assert poses.keypoints.shape == (FRAMES, 4, 3)
        error = np.linalg.norm(poses.keypoints[..., :2] - truth, axis=-1)
        assert error.max() < tolerance, (scale, error.max())
        # the figure moves ~100 px left to right: the trajectory is the figure's, not a constant
        assert np.ptp(poses["head"][:, 0]) > 90


def test_analyze_writes_deeplabcut_coco_and_labelled_video(video: tuple[Path, np.ndarray], checkpoint: Path,
                                                           one_torch_thread: None,
                                                           tmp_path: Path) -> None:
    path, _ = video
    out = tmp_path / "out"
    assert main(["analyze", "--model", str(checkpoint), str(path), "--out", str(out), "--labeled-video",
                 "--filter", "savgol", "--filter-window", "5", "--batch-size", "4", "--device", "cpu",
                 "--plot"]) == 0
    n = _decoded_frames(path)
    frame = pd.read_hdf(out / "walk.h5", key="df_with_missing")
    assert list(frame.columns.names) == ["scorer", "bodyparts", "coords"]
    assert list(frame.columns.get_level_values("bodyparts").unique()) == list(TINY_JOINTS)
    assert list(frame.columns.get_level_values("coords")[:3]) == ["x", "y", "likelihood"]
    assert len(frame) == n == FRAMES and list(frame.index) == list(range(n))
    likelihood = frame.xs("likelihood", level="coords", axis=1).to_numpy()
    assert ((likelihood >= 0) & (likelihood <= 1)).all()
    # DeepLabCut's CSV: three header rows, then the same numbers
    csv = pd.read_csv(out / "walk.csv", header=[0, 1, 2], index_col=0)
    assert list(csv.columns.names) == ["scorer", "bodyparts", "coords"]
    np.testing.assert_allclose(csv.to_numpy(), frame.to_numpy(), rtol=1e-6)
    coco = json.loads((out / "walk.json").read_text())
    assert [a["frame"] for a in coco["annotations"]] == list(range(n))
    assert len(coco["annotations"][0]["keypoints"]) == 3 * len(TINY_JOINTS)
    assert coco["keypoint_names"] == list(TINY_JOINTS)
    filtered = pd.read_hdf(out / "walk_filtered.h5", key="df_with_missing")
    assert filtered.shape == frame.shape
    assert _decoded_frames(out / "walk_labeled.mp4") == n
    assert (out / "walk_trajectories.png").read_bytes()[:4] == b"\x89PNG"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left


def test_python_api_images_of_any_size_and_folders(checkpoint: Path, one_torch_thread: None,
                                                   tmp_path: Path) -> None:
    import cv2

    model = crosspose.load(checkpoint, device="cpu")
    assert model.keypoint_names == TINY_JOINTS
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for h, w in ((37, 91), (64, 64), (120, 33))]
    poses = model.predict(images)
    assert poses.keypoints.shape == (3, 4, 3)
    for image, kp in zip(images, poses.keypoints, strict=True):  # sizes batched apart = one at a time
        np.testing.assert_allclose(model.predict(image).keypoints[0], kp, atol=1e-4)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, image in enumerate(images):
        cv2.imwrite(str(folder / f"f{i}.png"), image[:, :, ::-1])
    from_folder = model.predict(folder)
    assert from_folder.frames == ["f0.png", "f1.png", "f2.png"]
    np.testing.assert_allclose(from_folder.keypoints, poses.keypoints, atol=1e-4)
    frame = from_folder.to_dataframe()
    assert frame.columns.nlevels == 3 and frame.loc["f1.png"].shape == (12,)


def _zero_frame_video(path: Path) -> Path:
    """A container with its header written and no frame (AVI keeps the stream; MP4 drops it)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()
    return path


def test_bad_inputs_give_one_line_and_write_nothing(checkpoint: Path, tmp_path: Path, one_torch_thread: None,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "garbage.mp4").write_bytes(b"not a video at all" * 50)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    zero = _zero_frame_video(tmp_path / "zero.avi")
    no_stream = _zero_frame_video(tmp_path / "zero.mp4")
    good = tmp_path / "good.mp4"
    write_moving_figure_video(good, frames=3, size=(48, 64))
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    cases = [
        ([str(checkpoint), str(tmp_path / "garbage.mp4")], "cannot be read as a video"),
        ([str(checkpoint), str(zero)], "no decodable frames"),
        ([str(checkpoint), str(no_stream)], "no video stream"),
        ([str(checkpoint), str(tmp_path / "empty")], "no images"),
        ([str(checkpoint), str(tmp_path / "missing.mp4")], "input not found"),
        # a good input first: the bad second one still stops the run before any output
        ([str(checkpoint), str(good), str(tmp_path / "empty")], "no images"),
        ([str(foreign), str(good)], "not a crosspose/Lightning checkpoint"),
        ([str(tmp_path / "garbage.mp4"), str(good)], "cannot read as a weights-only checkpoint"),
    ]
    for (model, *inputs), message in cases:
        out = tmp_path / "out"
        capsys.readouterr()
        assert main(["analyze", "--model", model, *inputs, "--out", str(out)]) == 2, message
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (message, err)
        assert not out.exists() or not any(out.iterdir()), message
    with pytest.raises(DataFormatError):
        crosspose.load(checkpoint).predict(tmp_path / "empty")
    with pytest.raises(CheckpointError):
        crosspose.load(foreign)


def test_maps_are_cropped_to_the_frame_before_the_argmax() -> None:
    from crosspose.inference.geometry import decode_batch, geometry_for

    card = ModelCard(backbone="none", num_keypoints=1, keypoint_names=("a",), input_size=None)
    geometry = geometry_for(card, (20, 30), scale=1.0)
    assert geometry.padded_hw == (32, 32) and geometry.map_hw == (3, 4)
    heatmap = torch.full((1, 1, 4, 4), -9.0)
    heatmap[0, 0, 3, 3] = 9.0  # strongest response in the padding: must be ignored
    heatmap[0, 0, 1, 2] = 5.0
    points = decode_batch(card.codec.build(), geometry, heatmap, torch.zeros(1, 2, 4, 4))
    np.testing.assert_allclose(points[0, 0, :2].numpy(), [20.0, 12.0])
