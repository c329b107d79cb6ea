"""DeepLabCut 3 side of ``crosspose benchmark``: run by the Python of DeepLabCut's OWN environment.

This file is executed as a script (``DLC_PYTHON benchmark_dlc.py PHASE ...``), never imported by
crosspose: it may import only the standard library at module level, because crosspose itself is
not installed in DeepLabCut's environment (and DeepLabCut is not installed in crosspose's). It
prints one JSON object on its last stdout line; the parent computes every statistic from the raw
per-step timestamps so that both tools are summarised by the same code.

Phases:
    prepare  WORK IMAGES SIZE: a single-animal project over the benchmark's synthetic
             images (their 16 keypoints), and its ``resnet_50`` training set (PyTorch engine).
    train    WORK STEPS BATCH SIZE DEVICE [TIMM_NAME]: ``deeplabcut.train_network`` from random weights for
             enough epochs to run STEPS steps; the start time and batch size of every step.
    infer    WORK IMAGES BATCH DEVICE REPEATS: DeepLabCut's pose inference runner over the image
             folder, REPEATS passes, wall time of each.
    analyze  WORK VIDEO BATCH DEVICE TIMM_NAME DEST: ``deeplabcut.analyze_videos`` of VIDEO into DEST
             with the snapshot the train phase left (or, when there is none for TIMM_NAME, one saved
             from DeepLabCut's own randomly initialised model); the time of its frames loop, the whole
             call, and the ``.h5`` it wrote.
"""

from __future__ import annotations

import glob
import json
import math
import os
import sys
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no hub here: weights are random on purpose


def _offline_random_weights() -> None:
    """Build every DeepLabCut pose model without its ImageNet backbone (the crosspose side is random too)."""
    from deeplabcut.pose_estimation_pytorch.models import model as dlc_model

    build = dlc_model.PoseModel.build

    def build_random(cfg, weight_init=None, pretrained_backbone=False):  # noqa: ANN001, ANN202
        return build(cfg, weight_init=weight_init, pretrained_backbone=False)

    dlc_model.PoseModel.build = staticmethod(build_random)


def _project(work: str) -> str:
    found = sorted(glob.glob(os.path.join(work, "bench-*", "config.yaml")))
    if not found:
        raise SystemExit(f"no DeepLabCut project under {work}; run the prepare phase first")
    return found[0]


def prepare(work: str, images: str, size: int) -> dict:
    """Create DeepLabCut's project from the benchmark images."""
    import cv2
    import deeplabcut
    import numpy as np
    import pandas as pd
    from deeplabcut.utils import auxiliaryfunctions

    manifest = json.load(open(os.path.join(images, "keypoints.json"), encoding="utf-8"))
    os.makedirs(work, exist_ok=True)
    video = os.path.join(work, "clip.mp4")
    if not os.path.exists(video):  # a project needs one video; its frames are never used
        writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"mp4v"), 10, (size, size))  # type: ignore[attr-defined]
        for _ in range(3):
            writer.write(np.zeros((size, size, 3), np.uint8))
        writer.release()
    config = deeplabcut.create_new_project("bench", "crosspose", [video], working_directory=work,
                                           copy_videos=True)
    cfg = auxiliaryfunctions.read_config(config)
    bodyparts = [f"kp{i}" for i in range(manifest["num_keypoints"])]
    cfg["bodyparts"] = bodyparts
    auxiliaryfunctions.write_config(config, cfg)
    labeled = os.path.join(os.path.dirname(config), "labeled-data", "clip")
    os.makedirs(labeled, exist_ok=True)
    index, rows = [], []
    for item in manifest["images"]:
        target = os.path.join(labeled, item["file_name"])
        if not os.path.exists(target):
            os.symlink(os.path.join(os.path.abspath(images), item["file_name"]), target)
        index.append(("labeled-data", "clip", item["file_name"]))
        rows.append([v for xy in item["keypoints"] for v in xy])
    columns = pd.MultiIndex.from_product([[cfg["scorer"]], bodyparts, ["x", "y"]],
                                         names=["scorer", "bodyparts", "coords"])
    frame = pd.DataFrame(np.asarray(rows, dtype=float), index=pd.MultiIndex.from_tuples(index), columns=columns)
    frame.to_hdf(os.path.join(labeled, f"CollectedData_{cfg['scorer']}.h5"), key="df_with_missing", mode="w")
    deeplabcut.create_training_dataset(config, net_type="resnet_50", engine=deeplabcut.Engine.PYTORCH,
                                       Shuffles=[1], userfeedback=False)
    return {"config": str(config)}


def train(work: str, steps: int, batch: int, size: int, device: str, backbone: str | None) -> dict:
    """Time DeepLabCut's training steps."""
    import deeplabcut
    import torch
    from deeplabcut.pose_estimation_pytorch.runners import train as dlc_train

    _offline_random_weights()
    config = _project(work)
    starts: list[float] = []
    sizes: list[int] = []
    original_step = dlc_train.PoseTrainingRunner.step

    def timed_step(self, batch_, mode="train"):  # noqa: ANN001, ANN202
        if mode == "train":
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            starts.append(time.perf_counter())
            sizes.append(int(batch_["image"].shape[0]))
        return original_step(self, batch_, mode)

    dlc_train.PoseTrainingRunner.step = timed_step
    n_train = _train_set_size(config)
    per_epoch = math.ceil(n_train / batch)
    epochs = math.ceil((steps + 1) / per_epoch)
    updates: dict[str, Any] = {
        "data.train.crop_sampling.width": size,
        "data.train.crop_sampling.height": size,
        "model.backbone.pretrained": False,
        "runner.eval_interval": 10**6,  # no evaluation epochs inside the timed run
    }
    if backbone:
        updates["model.backbone.model_name"] = backbone
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    deeplabcut.train_network(config, shuffle=1, epochs=epochs, batch_size=batch, save_epochs=10**6,
                             device=device, pytorch_cfg_updates=updates)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    end = time.perf_counter()
    return {
        "step_starts": starts, "step_images": sizes, "end": end, "total_s": end - t0, "epochs": epochs,
        "threads": torch.get_num_threads(), "torch": torch.__version__, "deeplabcut": deeplabcut.__version__,
        "cuda_peak_bytes": torch.cuda.max_memory_allocated() if device.startswith("cuda") else None,
    }


def _train_set_size(config: str) -> int:
    import pickle

    docs = glob.glob(os.path.join(os.path.dirname(config), "training-datasets", "**", "Documentation_*.pickle"),
                     recursive=True)
    if docs:
        with open(docs[0], "rb") as fh:
            meta = pickle.load(fh)
        # (data, train indices, test indices, fraction)
        return len(meta[1])
    return 1


def infer(work: str, images: str, batch: int, device: str, repeats: int) -> dict:
    """Time DeepLabCut's inference passes over the image folder."""
    import deeplabcut
    import torch
    from deeplabcut.pose_estimation_pytorch.apis.utils import get_pose_inference_runner

    _offline_random_weights()
    config = _project(work)
    model_dir = glob.glob(os.path.join(os.path.dirname(config), "dlc-models-pytorch", "**", "train"), recursive=True)
    snapshots = sorted(glob.glob(os.path.join(model_dir[0], "snapshot-*.pt"))) if model_dir else []
    if not snapshots:
        raise SystemExit("no DeepLabCut snapshot: run the train phase first")
    runner = get_pose_inference_runner(os.path.join(model_dir[0], "pytorch_config.yaml"), snapshots[-1],
                                       batch_size=batch, device=device)
    paths = sorted(os.path.join(images, f) for f in os.listdir(images) if f.endswith((".jpg", ".png")))
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    seconds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        predictions = runner.inference(paths)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - t0)
    return {
        "pass_seconds": seconds, "images": len(paths), "predictions": len(predictions),
        "threads": torch.get_num_threads(), "torch": torch.__version__, "deeplabcut": deeplabcut.__version__,
        "cuda_peak_bytes": torch.cuda.max_memory_allocated() if device.startswith("cuda") else None,
    }


def _model_folder(config: str) -> str:
    found = glob.glob(os.path.join(os.path.dirname(config), "dlc-models-pytorch", "**", "train"), recursive=True)
    if not found:
        raise SystemExit("no DeepLabCut model folder: run the prepare phase first")
    return found[0]


def _snapshot_for(folder: str, backbone: str) -> str:
    """A snapshot of ``backbone`` in ``folder``: the trained one when it fits, else one saved from a fresh model.

    analyze_videos refuses to run without a snapshot file. The train phase leaves one for the
    backbone it trained last; when that is another backbone (or training failed), DeepLabCut's own
    model, built from the same pytorch_config.yaml with random weights, is saved in its place.
    """
    import torch
    from deeplabcut.pose_estimation_pytorch.models import PoseModel
    from deeplabcut.utils import auxiliaryfunctions

    cfg_path = os.path.join(folder, "pytorch_config.yaml")
    cfg = auxiliaryfunctions.read_plainconfig(cfg_path)
    if cfg["model"]["backbone"].get("model_name") != backbone:
        cfg["model"]["backbone"]["model_name"] = backbone
        auxiliaryfunctions.write_plainconfig(cfg_path, cfg)
    torch.manual_seed(0)
    model = PoseModel.build(cfg["model"], pretrained_backbone=False)
    snapshots = sorted(glob.glob(os.path.join(folder, "snapshot-*.pt")))
    for path in snapshots:
        try:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["model"])
            return path
        except (RuntimeError, KeyError):
            continue
    for path in snapshots:  # another backbone's weights: analyze_videos would pick them up and fail
        os.remove(path)
    path = os.path.join(folder, "snapshot-000.pt")
    torch.save({"model": model.state_dict(), "metadata": {"epoch": 0}}, path)
    return path


def analyze(work: str, video: str, batch: int, device: str, backbone: str, dest: str) -> dict:
    """Time ``deeplabcut.analyze_videos`` on the video (a fresh DEST, so nothing is skipped as done)."""
    import deeplabcut
    import torch
    from deeplabcut.pose_estimation_pytorch.apis import videos as dlc_videos

    _offline_random_weights()
    config = _project(work)
    snapshot = _snapshot_for(_model_folder(config), backbone)
    loop: list[float] = []
    original = dlc_videos.video_inference

    def timed(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        t0 = time.perf_counter()
        out = original(*args, **kwargs)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        loop.append(time.perf_counter() - t0)
        return out

    dlc_videos.video_inference = timed
    os.makedirs(dest, exist_ok=True)
    t0 = time.perf_counter()
    deeplabcut.analyze_videos(config, [video], shuffle=1, batch_size=batch, device=device, destfolder=dest,
                              save_as_csv=False, auto_track=False)
    total = time.perf_counter() - t0
    h5 = sorted(glob.glob(os.path.join(dest, "*.h5")))
    return {"loop_seconds": loop[0] if loop else None, "total_seconds": total, "h5": h5[0] if h5 else None,
            "snapshot": snapshot, "threads": torch.get_num_threads(), "torch": torch.__version__,
            "deeplabcut": deeplabcut.__version__}


def main(argv: list[str]) -> int:
    """Run one phase and print its JSON result last."""
    phase, work = argv[0], argv[1]
    if phase == "prepare":
        result = prepare(work, argv[2], int(argv[3]))
    elif phase == "train":
        result = train(work, int(argv[2]), int(argv[3]), int(argv[4]), argv[5],
                       argv[6] if len(argv) > 6 and argv[6] else None)
    elif phase == "infer":
        result = infer(work, argv[2], int(argv[3]), argv[4], int(argv[5]))
    elif phase == "analyze":
        result = analyze(work, argv[2], int(argv[3]), argv[4], argv[5], argv[6])
    else:
        raise SystemExit(f"unknown phase {phase!r}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
