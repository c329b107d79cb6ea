"""``crosspose analyze --format nwb``: NWB with ndx-pose, read back with pynwb and compared with the .h5."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import crosspose
from crosspose.cli import main
from crosspose.testing import TINY_JOINTS, write_moving_figure_video, write_tiny_checkpoint

pynwb = pytest.importorskip("pynwb")
pytest.importorskip("ndx_pose")

FPS = 20


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt", input_size=(64, 64))


def _read(path: Path) -> dict:
    with pynwb.NWBHDF5IO(str(path), "r") as io:
        nwb = io.read()
        pose = nwb.processing["behavior"]["PoseEstimation"]
        skeletons = nwb.processing["behavior"]["Skeletons"]
        series = {name: (np.asarray(s.data[:]), np.asarray(s.confidence[:]), np.asarray(s.timestamps[:]),
                         s.reference_frame, s.unit) for name, s in pose.pose_estimation_series.items()}
        return {"series": series, "nodes": list(pose.skeleton.nodes[:]),
                "edges": [tuple(int(v) for v in e) for e in pose.skeleton.edges[:]],
                "skeletons": list(skeletons.skeletons), "scorer": pose.scorer,
                "software": pose.source_software, "version": pose.source_software_version,
                "source": list(pose.source_video.external_file[:]), "description": pose.description}


def test_nwb_equals_the_h5_for_a_video(checkpoint: Path, one_torch_thread: None, tmp_path: Path) -> None:
    video = tmp_path / "walk.mp4"
    write_moving_figure_video(video, frames=12, size=(100, 150), fps=FPS)
    out = tmp_path / "out"
    assert main(["analyze", "--model", str(checkpoint), str(video), "--out", str(out), "--format", "h5,nwb",
                 "--device", "cpu"]) == 0
    frame = pd.read_hdf(out / "walk.h5", key="df_with_missing")
    scorer = frame.columns.get_level_values("scorer")[0]
    nwb = _read(out / "walk.nwb")
    assert set(nwb["series"]) == set(TINY_JOINTS)
    for joint in TINY_JOINTS:
        data, confidence, timestamps, reference, unit = nwb["series"][joint]
        assert data.shape == (len(frame), 2) and unit == "pixels" and "top-left pixel" in reference
        np.testing.assert_array_equal(data[:, 0], frame[(scorer, joint, "x")].to_numpy())
        np.testing.assert_array_equal(data[:, 1], frame[(scorer, joint, "y")].to_numpy())
        np.testing.assert_array_equal(confidence, frame[(scorer, joint, "likelihood")].to_numpy())
        np.testing.assert_allclose(timestamps, np.arange(len(frame)) / FPS)
    card = crosspose.load(checkpoint, device="cpu").card
    assert nwb["nodes"] == list(TINY_JOINTS) and nwb["edges"] == [tuple(link) for link in card.links]
    assert len(nwb["skeletons"]) == 1
    assert nwb["scorer"] == scorer and nwb["software"] == "crosspose" and nwb["version"] == crosspose.__version__
    assert nwb["source"] == [str(video)]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left


def test_nwb_for_an_image_folder_states_frame_index_timestamps(checkpoint: Path, one_torch_thread: None,
                                                                tmp_path: Path) -> None:
    import cv2

    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(folder / f"f{i}.png"), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    out = tmp_path / "out"
    assert main(["analyze", "--model", str(checkpoint), str(folder), "--out", str(out), "--format", "nwb",
                 "--device", "cpu"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["frames.nwb"]
    nwb = _read(out / "frames.nwb")
    poses = crosspose.load(checkpoint, device="cpu").predict(folder)
    for j, joint in enumerate(TINY_JOINTS):
        data, confidence, timestamps, _, _ = nwb["series"][joint]
        np.testing.assert_allclose(data, poses.keypoints[:, j, :2], atol=1e-4)
        np.testing.assert_allclose(confidence, poses.keypoints[:, j, 2], atol=1e-5)
        np.testing.assert_array_equal(timestamps, [0.0, 1.0, 2.0])
    assert "image's index" in nwb["description"]
    assert nwb["source"] == [str(folder / f"f{i}.png") for i in range(3)]


def test_unknown_format_is_one_clear_error(checkpoint: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", "--model", str(checkpoint), str(tmp_path), "--out", str(tmp_path / "o"),
                 "--format", "h5,parquet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nwb" in err[0] and "parquet" in err[0]
