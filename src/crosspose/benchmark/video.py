"""The video row of ``crosspose benchmark``: ``crosspose analyze`` on a 640x480 video, per precision.

The same synthetic video, network (ResNet-50 single-animal, random weights, the benchmark's 16
joints) and batch size go to ``crosspose analyze`` (PyTorch fp32, PyTorch bf16 autocast where the
CPU has bf16 units, ONNX Runtime fp32 and int8) and to DeepLabCut's ``analyze_videos`` (in
:mod:`crosspose.benchmark.dlc_side`). Both tools see every frame at its native 640x480: DeepLabCut's
single-animal models run on whole frames, so crosspose runs with ``scale=1`` (not ``fit``), or the
two would not do the same arithmetic.

``python -m crosspose.benchmark.video prepare|analyze SPEC_JSON`` runs one step in a child process
(so each row's peak memory is its own) and prints one JSON object last. Every row runs once over
the whole video from a cold start, as a user's ``crosspose analyze`` call does; DeepLabCut's row
does the same, so neither gets a warm-up the other lacks.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from crosspose.core.allocator import keep_freed_memory

__all__ = ["STAGES", "h5_rows", "keypoint_difference", "stage_shares", "summarise_analysis", "write_video"]

STAGES = ("decode", "resize", "network", "decode_maps", "write")
"""crosspose's analysis stages (:class:`~crosspose.inference.sources.StageTimes`), in pipeline order."""
_JOINTS = tuple(f"kp{i}" for i in range(16))  # the names DeepLabCut's side gives the same 16 joints


# ------------------------------------------------------------------------------ pure summaries
def stage_shares(times: dict[str, float | None]) -> dict[str, float]:
    """Each stage's busy seconds as a share of the analysis wall time (decode/resize overlap the network).

    Decoding and resizing run in a background thread while the network runs, so the shares may sum
    to more than 1; ``wait_for_frames`` (the network idle, waiting for frames) says how much of the
    decoding was not hidden. Writing happens after the frames loop: its share is of the wall time
    plus the writing.
    """
    wall = float(times.get("wall") or 0.0)
    total = wall + float(times.get("write") or 0.0)
    if total <= 0:
        return {}
    out = {stage: float(times.get(stage) or 0.0) / total for stage in STAGES}
    out["wait_for_frames"] = float(times.get("wait_for_frames") or 0.0) / total
    return out


def summarise_analysis(times: dict[str, float | None], frames: int) -> dict[str, Any]:
    """Frames/s of the frames loop and end to end (loop + writing), and the stage shares."""
    wall, write = float(times.get("wall") or 0.0), float(times.get("write") or 0.0)
    return {"frames": frames, "frames_per_s": frames / wall if wall > 0 else None,
            "frames_per_s_with_writing": frames / (wall + write) if wall + write > 0 else None,
            "shares": stage_shares(times)}


def keypoint_difference(reference: np.ndarray, other: np.ndarray) -> dict[str, float | None]:
    """Mean and median pixel distance between two (N, K, >=2) keypoint arrays; frames must match."""
    a, b = np.asarray(reference, dtype=np.float64), np.asarray(other, dtype=np.float64)
    if a.shape[:2] != b.shape[:2]:
        raise ValueError(f"keypoints of different shapes: {a.shape} vs {b.shape}")
    dist = np.linalg.norm(a[..., :2] - b[..., :2], axis=-1)
    dist = dist[np.isfinite(dist)]
    if dist.size == 0:
        return {"px_mean": None, "px_median": None, "px_max": None}
    return {"px_mean": float(dist.mean()), "px_median": float(np.median(dist)), "px_max": float(dist.max())}


def h5_rows(path: str | Path) -> tuple[int, np.ndarray]:
    """Rows of a DeepLabCut-layout ``.h5`` (either tool's) and its (rows, K, 3) x, y, likelihood."""
    import pandas as pd

    frame = pd.read_hdf(path)
    values = frame.to_numpy(dtype=np.float64)
    return len(frame), values.reshape(len(frame), -1, 3)


# --------------------------------------------------------------------------------- the inputs
def write_video(path: Path, frames: int, size: tuple[int, int], fps: int = 30, seed: int = 0) -> Path:
    """An H.264 (or MPEG-4) video of ``size`` = (H, W): discs drifting over a smooth colour field.

    Smooth content compresses and decodes like a real recording (white noise would make decoding
    the bottleneck); the discs move so that frames differ.
    """
    import av
    import cv2

    from crosspose.core.io import atomic_path

    h, w = size
    rng = np.random.default_rng(seed)
    background = cv2.resize(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
    start = rng.uniform((0, 0), (w, h), (8, 2))
    velocity = rng.uniform(-4, 4, (8, 2))
    colours = rng.integers(0, 256, (8, 3))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, av.open(str(tmp), "w", format="mp4") as container:
        stream = container.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(frames):
            image = background.copy()
            for (x, y), colour in zip(np.mod(start + i * velocity, (w, h)), colours, strict=True):
                cv2.circle(image, (int(x), int(y)), min(h, w) // 20, tuple(int(c) for c in colour), -1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.asarray(image, dtype=np.uint8), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _random_checkpoint(path: Path, backbone: str) -> Path:
    """A checkpoint of the benchmark's network from random weights, with the model card analyze reads."""
    import torch

    from crosspose.training.card import save_module
    from crosspose.training.module import PoseEstimationModule

    torch.manual_seed(0)
    module = PoseEstimationModule(num_keypoints=len(_JOINTS), keypoint_names=list(_JOINTS), backbone=backbone,
                                  pretrained=False)
    return save_module(module, path, input_size=(256, 256))


def prepare(spec: dict[str, Any]) -> dict[str, Any]:
    """The video, the checkpoint, its ONNX export and (when asked) the int8 model calibrated on the video."""
    import time

    import cv2

    from crosspose.inference.export import export_onnx
    from crosspose.inference.quantize import quantize_onnx

    work = Path(spec["work"])
    h, w = spec["video_size"]
    out: dict[str, Any] = {"video": str(write_video(work / "video.mp4", spec["video_frames"], (h, w)))}
    ckpt = _random_checkpoint(work / "model.ckpt", spec["backbone"])
    out["checkpoint"] = str(ckpt)
    out["onnx_fp32"] = str(export_onnx(ckpt, work / "model.onnx"))
    if spec.get("int8"):
        calib = work / "calibration"
        calib.mkdir(exist_ok=True)
        capture = cv2.VideoCapture(out["video"])
        for i in range(spec.get("calibration_frames", 8)):  # the user's own frames, as `crosspose quantize` asks
            ok, bgr = capture.read()
            if not ok:
                break
            cv2.imwrite(str(calib / f"frame{i:03d}.png"), bgr)
        capture.release()
        t0 = time.perf_counter()
        out["quantize"] = quantize_onnx(out["onnx_fp32"], calib, work / "model-int8.onnx", input_size=(h, w),
                                        calibration_images=spec.get("calibration_frames", 8))
        out["quantize_seconds"] = time.perf_counter() - t0
        out["onnx_int8"] = out["quantize"]["out"]  # with the model card: quantize copies it across
    return out


# ------------------------------------------------------------------------------- one analysis
def analyze(spec: dict[str, Any]) -> dict[str, Any]:
    """``crosspose analyze`` of the video with one model file and precision; the h5 only (as DeepLabCut)."""
    import time

    import torch

    from crosspose.inference.analyze import analyze_input
    from crosspose.inference.predictor import load
    from crosspose.inference.sources import resolve_inputs
    from crosspose.models.inference import did_compile

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    t0 = time.perf_counter()
    # each row names its precision (fp32 / bf16 / int8), as `crosspose analyze --precision` does
    predictor = load(spec["model"], device=spec["device"], scale=1.0, batch_size=spec["batch"],
                     precision=spec["precision"], compile=spec.get("compile", "auto"))
    out_dir = Path(spec["out"])
    report = analyze_input(predictor, resolve_inputs([spec["video"]])[0], out_dir, formats=("h5",),
                           batch_size=spec["batch"])
    total = time.perf_counter() - t0
    times = report.times.as_dict()
    return {"times": times, "total_seconds": total,
            "frames_per_s_whole_call": report.times.frames / total if total > 0 else None, "h5": str(report.outputs[0]), "backend": predictor.backend.name,
            "precision": predictor.backend.precision.precision,
            # compiled = it did compile, not merely that it was asked to (a failed compile runs eagerly)
            "compiled": did_compile(getattr(predictor.backend, "net", None)),
            "compile_reason": predictor.backend.compiled.describe(),
            "frames_per_s_after_first_call": times.get("frames_per_s_after_first_call"),
            "first_call_seconds": times.get("first_call"),
            "threads": torch.get_num_threads(), **summarise_analysis(times, int(report.times.frames))}


# ------------------------------------------------------------------------- the parent's side
def _child(step: str, spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    from crosspose.benchmark.measure import run_child

    memory: dict[str, Any] = {}
    result, peak, error = run_child([sys.executable, "-m", "crosspose.benchmark.video", step, json.dumps(spec)],
                                    timeout=timeout, memory=memory)
    if result is None:
        return {"error": error}
    result.update(peak_rss_bytes=peak, memory=memory)
    return result


def prepare_video(spec: dict[str, Any], work: Path, int8: bool, timeout: float) -> dict[str, Any]:
    """Write the video and the models once (a child process); {'error'} when that fails."""
    prep = {"work": str(work), "video_size": spec["video_size"], "video_frames": spec["video_frames"],
            "backbone": spec["backbone"], "int8": int8, "calibration_frames": spec.get("calibration_frames", 8)}
    return _child("prepare", prep, timeout)


def video_rows(spec: dict[str, Any], prepared: dict[str, Any], support: dict[str, str | None],
               wanted: list[str], timeout: float) -> dict[str, Any]:
    """Every crosspose row over the prepared video; each row's output read back and compared with fp32.

    Rows the CPU cannot run fast (``support`` names the reason) are kept with that reason.
    """
    work = Path(prepared["video"]).parent
    # bf16 twice: as `auto` runs it (fused oneDNN calls on a CPU) and through torch.compile (`--compile on`)
    plan = [("pytorch fp32", prepared["checkpoint"], "fp32", "auto"),
            ("pytorch bf16", prepared["checkpoint"], "bf16", "auto"),
            ("pytorch bf16 compiled", prepared["checkpoint"], "bf16", "on"),
            ("onnxruntime fp32", prepared["onnx_fp32"], "fp32", "auto"),
            ("onnxruntime int8", prepared.get("onnx_int8"), "int8", "auto")]
    rows: dict[str, Any] = {}
    for name, model, precision, compile in plan:
        if precision != "fp32" and precision not in wanted:
            continue
        if precision != "fp32" and support.get(precision):
            rows[name] = {"unsupported": support[precision]}
            continue
        if model is None:
            rows[name] = {"error": "no int8 model (quantisation failed)"}
            continue
        print(f"[benchmark] crosspose analyze, video, {name} ...", file=sys.stderr, flush=True)
        out = work / ("out-" + name.replace(" ", "-"))
        rows[name] = _child("analyze", {"model": model, "video": prepared["video"], "out": str(out),
                                        "batch": spec["batch"], "device": spec["device"],
                                        "threads": spec.get("threads"), "precision": precision,
                                        "compile": compile}, timeout)
    check_outputs(rows, spec["video_frames"], reference="pytorch fp32")
    return rows


def check_outputs(rows: dict[str, Any], frames: int, reference: str | None) -> None:
    """Read each row's ``.h5`` back: one row per frame, and the keypoint distance to ``reference`` (in place)."""
    keypoints: dict[str, np.ndarray] = {}
    for name, row in rows.items():
        if not row.get("h5"):
            continue
        try:
            count, kp = h5_rows(row["h5"])
        except (OSError, ValueError, KeyError) as exc:
            row["h5_check"] = f"unreadable: {type(exc).__name__}: {exc}"
            continue
        row["h5_rows"] = count
        row["h5_check"] = "ok" if count == frames else f"{count} rows for {frames} frames"
        keypoints[name] = kp
    if reference in keypoints:
        for name, kp in keypoints.items():
            if name != reference and kp.shape[:2] == keypoints[reference].shape[:2]:
                rows[name]["vs_reference"] = keypoint_difference(keypoints[reference], kp)


def main(argv: list[str]) -> int:
    """Run one step in this child process and print its JSON result last."""
    step, spec = argv[0], json.loads(argv[1])
    if step == "prepare":
        print(json.dumps(prepare(spec)))
        return 0
    allocator = keep_freed_memory()  # as `crosspose analyze` does; preparing (export, quantize) does not need it
    print(json.dumps({**analyze(spec), "allocator": allocator.describe()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
