"""Helpers for crosspose's tests and for users who test their own extensions: toy data, fixtures, faults.

Importable (unlike a ``conftest.py``), so subprocesses, DDP workers and ``--trainer.callbacks``
class paths reach them too. Nothing here is used by crosspose itself.

Example:
    >>> from pathlib import Path; import tempfile
    >>> from crosspose.testing import write_tiny_coco
    >>> path = write_tiny_coco(Path(tempfile.mkdtemp()) / "toy", count=2, size=32)
    >>> path.name
    'data.json'
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from lightning.pytorch import Callback

from crosspose.data.coco import save_coco_keypoints

__all__ = ["REPO", "SHARED_FIXTURES", "TINY_JOINTS", "CrashAfterEpoch", "CrashAtStep", "KillDuringCheckpointWrite",
           "RecordGatheredRows", "assert_same_training_state", "crosspose_command", "kill_mid_stage_and_rerun",
           "overfit_tiny_module", "requires_compiler", "requires_fixture",
           "write_moving_figure_video", "write_tiny_checkpoint", "write_tiny_coco", "write_tiny_deeplabcut_project"]

REPO = Path(__file__).resolve().parents[2]
"""The checkout root (meaningful in a source checkout, where the tests run)."""

SHARED_FIXTURES = Path(os.environ.get("CROSSPOSE_FIXTURES", REPO.parent / "shared" / "fixtures"))
"""Real release-format samples (``../shared/fixtures`` beside the checkout, or ``$CROSSPOSE_FIXTURES``)."""

TINY_JOINTS = ("head", "left_hand", "right_hand", "tail")
_COLOURS = ((255, 60, 60), (60, 255, 60), (60, 60, 255), (255, 255, 60))


def requires_fixture(*relative: str) -> Any:
    """A pytest ``skipif`` mark: skip, saying which file is missing, when a real fixture is absent."""
    import pytest

    missing = [r for r in relative if not (SHARED_FIXTURES / r).exists()]
    reason = f"real fixture {SHARED_FIXTURES / missing[0]} is absent (a fresh clone has no ../shared)" if missing else ""
    return pytest.mark.skipif(bool(missing), reason=reason)


def requires_compiler() -> Any:
    """A pytest ``skipif`` mark: skip when no C compiler is on PATH (native kernels cannot be built)."""
    import pytest

    from crosspose.core.native import find_compiler

    return pytest.mark.skipif(find_compiler() is None,
                              reason="no C compiler on this machine: native kernels cannot be built")


def write_tiny_coco(folder: Path, count: int = 12, size: int = 96, seed: int = 0,
                    name: str = "data.json", joints: tuple[str, ...] = TINY_JOINTS) -> Path:
    """A learnable toy set: each joint is a coloured blob on a noisy background; returns the COCO file."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(count):
        img = rng.integers(0, 80, (size, size, 3), dtype=np.uint8)
        kps: list[float] = []
        pts = rng.uniform(size * 0.2, size * 0.8, (len(joints), 2))
        for j, (x, y) in enumerate(pts):
            cv2.circle(img, (int(round(x)), int(round(y))), 5, _COLOURS[j % len(_COLOURS)], -1)
            v = 0 if (i % 5 == 4 and j == len(joints) - 1) else 2  # a few unlabelled joints
            kps += [float(x), float(y), v] if v else [0.0, 0.0, 0]
        fname = f"images/img{i:03d}.png"
        cv2.imwrite(str(folder / fname), img[:, :, ::-1])
        images.append({"id": i + 1, "file_name": fname, "width": size, "height": size})
        annotations.append({"id": i + 1, "image_id": i + 1, "category_id": 1, "keypoints": kps,
                            "num_keypoints": sum(1 for v in kps[2::3] if v), "iscrowd": 0,
                            "bbox": [0.0, 0.0, float(size), float(size)], "area": float(size * size)})
    links = [[1, j] for j in range(2, len(joints) + 1)]
    category = {"id": 1, "name": "toy", "keypoints": list(joints), "skeleton": links}
    return save_coco_keypoints(folder / name, images, annotations, category)


def write_tiny_deeplabcut_project(
    root: Path,
    bodyparts: tuple[str, ...] = ("snout", "left_ear", "right_ear", "tailbase"),
    individuals: tuple[str, ...] | None = None,
    unique: tuple[str, ...] = (),
    videos: tuple[str, ...] = ("video1",),
    frames: int = 4,
    size: tuple[int, int] = (80, 64),
    formats: tuple[str, ...] = ("h5", "csv"),
    path_index: bool = False,
    scorer: str = "Tester",
    seed: int = 0,
) -> dict[str, Any]:
    """A DeepLabCut project in DeepLabCut's own layout, written with pandas as DeepLabCut writes it.

    ``individuals`` makes it multi-animal (``unique`` adds unique bodyparts under ``single``);
    ``path_index`` indexes rows by path parts (DeepLabCut >= 2.2) instead of one path string. Frame
    ``f`` leaves joint ``f % len(bodyparts)`` of the first individual unlabelled (an empty cell).
    Returns ``{image path relative to root: {individual: {bodypart: (x, y) or None}}}``.
    """
    import pandas as pd
    import yaml

    rng = np.random.default_rng(seed)
    width, height = size
    multi = individuals is not None
    inds = list(individuals or ("",))
    config: dict[str, Any] = {"Task": "tiny", "scorer": scorer, "date": "Jan1", "TrainingFraction": [0.75],
                              "skeleton": [[bodyparts[0], bodyparts[1]], [bodyparts[0], bodyparts[-1]]],
                              "video_sets": {f"/videos/{v}.mp4": {"crop": f"0, {width}, 0, {height}"}
                                             for v in videos}}
    if multi:
        config.update(multianimalproject=True, individuals=inds, multianimalbodyparts=list(bodyparts),
                      uniquebodyparts=list(unique), bodyparts="MULTI!")
    else:
        config.update(multianimalproject=False, bodyparts=list(bodyparts))
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    labels: dict[str, Any] = {}
    columns = [(scorer, ind, part, c) for ind in inds for part in bodyparts for c in "xy"]
    if multi and unique:
        columns += [(scorer, "single", part, c) for part in unique for c in "xy"]
    for video in videos:
        folder = root / "labeled-data" / video
        folder.mkdir(parents=True, exist_ok=True)
        rows, index = [], []
        for f in range(frames):
            name = f"img{f:03d}.png"
            img = rng.integers(0, 80, (height, width, 3), dtype=np.uint8)
            row: list[Any] = []
            truth: dict[str, Any] = {}
            for i, ind in enumerate(inds + (["single"] if multi and unique else [])):
                parts = unique if ind == "single" else bodyparts
                truth[ind] = {}
                for j, part in enumerate(parts):
                    x, y = rng.uniform(0.15 * width, 0.85 * width), rng.uniform(0.15 * height, 0.85 * height)
                    if i == 0 and j == f % len(parts):
                        truth[ind][part] = None
                        row += [np.nan, np.nan]
                        continue
                    cv2.circle(img, (int(round(x)), int(round(y))), 3, _COLOURS[j % len(_COLOURS)], -1)
                    truth[ind][part] = (float(x), float(y))
                    row += [x, y]
            cv2.imwrite(str(folder / name), img[:, :, ::-1])
            rows.append(row)
            index.append(("labeled-data", video, name))
            labels[f"labeled-data/{video}/{name}"] = truth
        names = ["scorer", "individuals", "bodyparts", "coords"] if multi else ["scorer", "bodyparts", "coords"]
        cols = pd.MultiIndex.from_tuples([c if multi else (c[0], c[2], c[3]) for c in columns], names=names)
        idx = pd.MultiIndex.from_tuples(index) if path_index else pd.Index(["/".join(t) for t in index])
        df = pd.DataFrame(np.asarray(rows, np.float64), index=idx, columns=cols)
        if "h5" in formats:
            df.to_hdf(folder / f"CollectedData_{scorer}.h5", key="df_with_missing", mode="w")
        if "csv" in formats:
            df.to_csv(folder / f"CollectedData_{scorer}.csv")
    return labels


class CrashAfterEpoch(Callback):
    """Simulates a crash at the end of an epoch (for resume tests)."""

    def __init__(self, epoch: int = 0) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.current_epoch == self.epoch:
            raise RuntimeError(f"simulated crash after epoch {self.epoch}")


def write_moving_figure_video(path: Path, frames: int = 30, size: tuple[int, int] = (100, 150), fps: int = 25,
                              joints: tuple[str, ...] = TINY_JOINTS) -> np.ndarray:
    """A short H.264 video of a figure (one coloured blob per joint) moving across a noisy background.

    Returns the true joint positions, (frames, K, 2) x, y in pixels. Blob colours are
    ``_COLOURS`` in joint order (pure enough for a colour detector to find them).
    """
    import av

    h, w = size
    rng = np.random.default_rng(0)
    background = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
    offsets = np.array([[0.0, -12.0], [-14.0, 0.0], [14.0, 0.0], [0.0, 14.0]])[: len(joints)]
    truth = np.zeros((frames, len(joints), 2))
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(frames):
            t = i / max(frames - 1, 1)
            centre = np.array([25 + t * (w - 50), h / 2 + (h / 5) * np.sin(2 * np.pi * t)])
            image = background.copy()
            for j, off in enumerate(offsets):
                x, y = centre + off
                truth[i, j] = (x, y)
                cv2.circle(image, (int(round(x)), int(round(y))), 5, _COLOURS[j % len(_COLOURS)], -1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return truth


def write_tiny_checkpoint(path: Path, joints: tuple[str, ...] = TINY_JOINTS, backbone: str = "resnet18",
                          input_size: tuple[int, int] | None = (64, 64), seed: int = 0) -> Path:
    """A crosspose checkpoint with untrained weights and a full model card (no training needed)."""
    import torch

    from crosspose.core.skeletons import flip_pairs_from_names
    from crosspose.models.card import ModelCard
    from crosspose.training.module import PoseEstimationModule

    torch.manual_seed(seed)
    module = PoseEstimationModule(num_keypoints=len(joints), keypoint_names=list(joints), backbone=backbone)
    card = ModelCard(backbone=backbone, num_keypoints=len(joints), keypoint_names=tuple(joints),
                     flip_pairs=flip_pairs_from_names(joints), links=tuple((0, j) for j in range(1, len(joints))),
                     input_size=input_size, padding=1.25)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": module.state_dict(), "crosspose": card.to_dict(),
                "hyper_parameters": dict(module.hparams), "optimizer_states": [{"note": "stand-in"}]}, path)
    return path


def overfit_tiny_module(folder: Path, steps: int = 40, size: int = 64, count: int = 4, seed: int = 0) -> Any:
    """A resnet18 PoseEstimationModule overfitted on ``count`` toy images, and their batch at ``size`` px.

    Reduced-precision tests need score maps with real peaks: on random weights the maps are flat and
    any rounding moves the argmax anywhere. Returns ``(module, batch)``, the module in eval mode.
    """
    import torch

    from crosspose.data.coco import load_coco_keypoints
    from crosspose.data.dataset import InstanceDataset
    from crosspose.training.module import PoseEstimationModule

    coco = load_coco_keypoints(write_tiny_coco(folder, count=count, size=96, seed=seed))
    dataset = InstanceDataset(coco, (size, size), padding=1.0)
    batch = {k: torch.stack([dataset[i][k] for i in range(len(dataset))]) for k in dataset[0]}
    torch.manual_seed(seed)
    module = PoseEstimationModule(num_keypoints=coco.num_keypoints, backbone="resnet18", radius=17.0 * size / 256)
    module.prepare_network()
    optimizer = torch.optim.Adam(module.parameters(), lr=2e-3)
    module.train()
    for _ in range(steps):
        loss = module._losses(batch, module(batch["image"]))["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return module.eval(), batch


class CrashAtStep(Callback):
    """Simulates a crash after optimizer step ``step``: an exception, or with ``kill`` a SIGKILL.

    An exception lets Lightning save ``last.ckpt`` on the way out; a SIGKILL leaves only what was
    saved before it (the honest model of a power cut or the OOM killer).
    """

    def __init__(self, step: int = 1, kill: bool = False) -> None:
        self.step, self.kill = step, kill

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if trainer.global_step == self.step:
            if self.kill:
                import signal

                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError(f"simulated crash after step {self.step}")


class KillDuringCheckpointWrite(Callback):
    """SIGKILLs the process halfway through writing the first checkpoint after optimizer step ``step``.

    It swaps the trainer's CheckpointIO for one whose serialisation writes half of the bytes to
    the temporary file and then kills the process: what a power cut mid-write leaves.
    """

    def __init__(self, step: int = 1) -> None:
        self.step = step

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        import io
        import signal

        import torch

        from crosspose.training.checkpointing import AtomicCheckpointIO

        callback = self

        class _Killing(AtomicCheckpointIO):
            def write(self, checkpoint: dict[str, Any], tmp: Path) -> None:
                if trainer.global_step < callback.step:
                    return super().write(checkpoint, tmp)
                buffer = io.BytesIO()
                torch.save(checkpoint, buffer)
                data = buffer.getvalue()
                with open(tmp, "wb") as fh:
                    fh.write(data[: len(data) // 2])
                    fh.flush()
                    os.fsync(fh.fileno())
                os.kill(os.getpid(), signal.SIGKILL)

        trainer.strategy.checkpoint_io = _Killing()


def crosspose_command(*args: str) -> list[str]:
    """The command line ``python -m crosspose ARGS`` with this interpreter."""
    return [sys.executable, "-m", "crosspose", *args]


def _start(command: Sequence[str]) -> subprocess.Popen[str]:
    # this checkout's crosspose, and one thread each: runs are compared bit for bit, and the machine is shared
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen(list(command), env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def _finish(command: Sequence[str], timeout: float) -> None:
    process = _start(command)
    log, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, log[-2000:]


def kill_mid_stage_and_rerun(command: Callable[[Path], Sequence[str]], root: Path, stage: str,
                             timeout: float) -> tuple[Path, Path]:
    """Run a command straight, and again killed mid-stage then rerun, for the two to be compared.

    ``command(out)`` is the command line writing into ``out``. It runs to the end into
    ``root/straight``; then into ``root/killed``, SIGKILLed once the run folder ``stage`` there has
    its ``checkpoints/last.ckpt`` (after a checkpoint, before the stage ends: its ``metrics.json``
    must not exist yet), and rerun there to the end. Each run must exit 0 within ``timeout`` seconds.

    Returns:
        ``(root/straight, root/killed)``.
    """
    straight, killed = root / "straight", root / "killed"
    _finish(command(straight), timeout)

    process = _start(command(killed))
    checkpoint = killed / stage / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + timeout
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    assert not (killed / stage / "metrics.json").exists(), f"{stage} ended before it could be killed"

    _finish(command(killed), timeout)
    return straight, killed


def assert_same_training_state(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Two loaded checkpoints hold the same weights and SGD momentum (to float tolerance).

    For a resumed run against an uninterrupted one: the momentum says the optimizer resumed too.
    """
    sa, sb = a["optimizer_states"][0]["state"], b["optimizer_states"][0]["state"]
    assert sa.keys() == sb.keys() and len(sa) > 0
    for k in sa:
        assert torch.allclose(sa[k]["momentum_buffer"], sb[k]["momentum_buffer"], atol=1e-5, rtol=1e-4)
    for k, v in a["state_dict"].items():
        assert torch.allclose(v.float(), b["state_dict"][k].float(), atol=1e-5, rtol=1e-4), k


class RecordGatheredRows(Callback):
    """Rank 0 writes the prediction rows of every rank, gathered before de-duplication, by index.

    Here, not in the DDP test: spawned ranks unpickle it by module name, and a test module's name
    (``tests.training...``) can resolve to another distribution's top-level ``tests`` package.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:  # runs before the module's hook
        from crosspose.training.distributed import gather_rows

        if trainer.sanity_checking:
            return
        gathered = gather_rows(torch.cat(pl_module._eval_rows))  # (N, 1 + K, 3): index row, then x, y, conf
        if trainer.is_global_zero:
            rows = sorted(gathered.tolist(), key=lambda r: r[0][0])
            Path(self.path).write_text(json.dumps(rows))
