"""``crosspose benchmark``: training and inference throughput side by side with DeepLabCut 3.

One run, one machine, the same synthetic images, input size and batch size for both tools, both
from random weights:

* crosspose, per stage: data loading alone, the model step alone (forward + loss with on-device
  targets + backward + optimizer, on batches already in memory), the whole Lightning training step,
  and inference over an image folder (whole pipeline and model alone);
* DeepLabCut 3.0.2's PyTorch engine (its ``resnet_50`` single-animal model), training through
  ``deeplabcut.train_network`` and inference through its pose inference runner. DeepLabCut lives
  in its own virtual environment, created on first use (``--dlc-venv``), and is driven by
  :mod:`crosspose.benchmark.dlc_side`, a standalone script that its Python runs;
* video analysis (:mod:`crosspose.benchmark.video`): ``crosspose analyze`` (PyTorch fp32 and bf16,
  ONNX Runtime fp32 and int8) and DeepLabCut's ``analyze_videos`` on the same synthetic 640x480
  video (``--video-frames``, ``--video-size``), frames/s, crosspose's time per stage, and each
  tool's ``.h5`` read back (one row per frame).

Every measurement runs in a child process of its own, so the peak memory of one phase (resident
set of the child and its data-loader workers, sampled; ``torch.cuda.max_memory_allocated`` on a
GPU) is not inflated by another. Throughput is the median over repeats after warm-up steps; one
repeat is a run of consecutive training steps (time between the starts of consecutive steps, so
data waiting counts) or one pass over the image folder. The training and inference rows run again in rounds of reversed order (``--rounds``, 2 by default) and report
the mean: the machine's drift over the run cancels (:mod:`crosspose.benchmark.rounds`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from crosspose.benchmark.dlc_runner import dlc_rates, ensure_dlc, run_deeplabcut
from crosspose.benchmark.measure import label_workers, run_child
from crosspose.benchmark.report import PAPER_STEPS, format_report
from crosspose.benchmark.rounds import add_round, finish_rounds, round_order, start_rounds
from crosspose.benchmark.video import check_outputs, prepare_video, video_rows
from crosspose.core.errors import ConfigError
from crosspose.core.hardware import choose_loader_workers
from crosspose.core.io import atomic_path, atomic_write_text
from crosspose.core.native import cflags

__all__ = ["PAPER_STEPS", "configure_parser", "make_synthetic_images", "run", "run_crosspose", "run_rounds"]


_NUM_KEYPOINTS = 16
# Dense bf16 tensor-core peaks (TFLOP/s) from the vendors' data sheets; --peak-tflops overrides.
# ("NVIDIA H100 80GB HBM3" is the SXM part; PCIe and NVL say so in their names.)
_BF16_PEAK_TFLOPS = {"H200": 989.0, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H100": 989.0,
                     "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10G": 70.0, "A10": 125.0,
                     "RTX 4090": 165.0, "V100": 125.0}


# ------------------------------------------------------------------------------------ data
def make_synthetic_images(folder: Path, count: int, size: int, seed: int = 0) -> Path:
    """``count`` smooth random RGB frames (JPEG, ``size`` x ``size``) with 16 random keypoints each.

    Writes the images, ``keypoints.json`` (DeepLabCut's side reads it) and ``train.json`` (COCO
    keypoints, one whole-image instance per frame, for crosspose). Returns the COCO file.
    """
    import cv2

    from crosspose.core.skeletons import MPII
    from crosspose.data.coco import save_coco_keypoints

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images, annotations, manifest = [], [], []
    for i in range(count):
        # low-frequency colour fields plus a few discs: compresses and decodes like a real frame,
        # unlike white noise (the worst case for JPEG)
        frame = cv2.resize(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), (size, size),
                           interpolation=cv2.INTER_CUBIC)
        for _ in range(6):
            centre = tuple(int(v) for v in rng.integers(0, size, 2))
            colour = tuple(int(v) for v in rng.integers(0, 256, 3))
            cv2.circle(frame, centre, int(rng.integers(size // 32 + 1, size // 6 + 2)), colour, -1)
        name = f"frame{i:04d}.jpg"
        with atomic_path(folder / name) as tmp:
            cv2.imwrite(str(tmp), frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
        xy = rng.uniform(size * 0.06, size * 0.94, (_NUM_KEYPOINTS, 2)).round(2)
        manifest.append({"file_name": name, "keypoints": xy.tolist()})
        images.append({"id": i + 1, "file_name": f"{folder.name}/{name}", "width": size, "height": size})
        kp = np.concatenate([xy, np.full((_NUM_KEYPOINTS, 1), 2.0)], axis=1)
        annotations.append({"id": i + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0,
                            "num_keypoints": _NUM_KEYPOINTS, "area": float(size * size),
                            "bbox": [0.0, 0.0, float(size), float(size)], "keypoints": kp.reshape(-1).tolist()})
    atomic_write_text(folder / "keypoints.json",
                      json.dumps({"num_keypoints": _NUM_KEYPOINTS, "size": size, "images": manifest}))
    coco = folder.parent / "train.json"
    save_coco_keypoints(coco, images, annotations, MPII.coco_category())
    return coco


# ------------------------------------------------------------------------------- machine
def machine_info(device: str) -> dict[str, Any]:
    """CPU model, cores, torch version, threads and the GPU if one is used."""
    import cv2
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            names = [ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "opencv_threads": cv2.getNumThreads(), "python": platform.python_version(), "device": device,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def bf16_peak_tflops(gpu_name: str) -> float | None:
    """Dense bf16 peak of a known GPU (longest matching key first), or None."""
    for key in sorted(_BF16_PEAK_TFLOPS, key=len, reverse=True):
        if key.lower() in gpu_name.lower():
            return _BF16_PEAK_TFLOPS[key]
    return None


# ----------------------------------------------------------------------------------- CLI
def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``crosspose benchmark``."""
    parser.add_argument("--workdir", default=".bench/run", help="synthetic images and DeepLabCut project (.bench/run)")
    parser.add_argument("--size", type=int, default=256, help="input size in pixels, square (256)")
    parser.add_argument("--batch", type=int, default=8, help="batch size for training and inference (8)")
    parser.add_argument("--images", type=int, default=64, help="synthetic images (64)")
    parser.add_argument("--backbone", default="resnet50", help="crosspose backbone (resnet50)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (auto: cuda when available)")
    parser.add_argument("--precision", default="auto", choices=["auto", "32", "bf16"],
                        help="crosspose precision (auto: bf16 mixed on a GPU, 32 on CPU)")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                        help="NHWC memory format (default: on, as `crosspose fit`; measured faster on CPU too)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the crosspose network")
    parser.add_argument("--workers", type=int, default=None,
                        help="crosspose data-loader workers (default: what `crosspose fit` chooses for "
                        "`data.num_workers: auto`: none on the CPU, one per free core up to 8 on a GPU)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--warmup", type=int, default=3, help="training steps dropped before timing (3)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (3)")
    parser.add_argument("--steps", type=int, default=4, help="training steps per repeat (4)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="times every training and inference row runs, each round in the reverse order of the one before, "
                             "so that the machine's drift cancels from the mean (2; 1 = a single pass)")
    parser.add_argument("--gn-backbone", default="resnet50_gn",
                        help="crosspose also with this GroupNorm backbone, DeepLabCut's default ('' skips)")
    parser.add_argument("--precisions", default="fp32,bf16,int8",
                        help="crosspose precision rows on a CPU; those the CPU lacks are marked (fp32,bf16,int8)")
    parser.add_argument("--accuracy-checkpoint", default=None,
                        help="a trained checkpoint: accuracy cost of bf16/int8 (px vs fp32, PCKh) on --accuracy-data")
    parser.add_argument("--accuracy-data", default=None, help="COCO test file for --accuracy-checkpoint")
    parser.add_argument("--accuracy-size", type=int, default=256, help="input size of that checkpoint (256)")
    parser.add_argument("--video-frames", type=int, default=300,
                        help="frames of the synthetic video both tools analyse (300; 0 skips the video row)")
    parser.add_argument("--video-size", default="640x480", help="video frame size WxH (640x480)")
    parser.add_argument("--calibration-frames", type=int, default=8,
                        help="video frames the int8 model is calibrated on (8)")
    parser.add_argument("--skip-dlc", action="store_true", help="crosspose only")
    parser.add_argument("--skip-crosspose", action="store_true", help="DeepLabCut only (a re-run under other load)")
    parser.add_argument("--dlc-venv", default=".bench/dlc-venv", help="DeepLabCut's own environment")
    parser.add_argument("--no-install", action="store_true", help="do not create the DeepLabCut environment")
    parser.add_argument("--dlc-backbones", default="resnet50,resnet50_gn",
                        help="timm names for DeepLabCut's resnet_50, one row each (resnet50,resnet50_gn; "
                             "resnet50_gn is its default)")
    parser.add_argument("--dlc-malloc", choices=("default", "keep"), default="default",
                        help="DeepLabCut's allocator: its C library's default, as its users run it (default), or "
                             "'keep': GLIBC_TUNABLES that keep freed memory, as crosspose analyze does")
    parser.add_argument("--peak-tflops", type=float, default=None, help="device bf16 peak for the fraction")
    parser.add_argument("--json", default=None, help="also write the whole report here")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds allowed per phase")


def _resolve(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda but torch sees no GPU")
    if args.size <= 0 or args.size % 16:
        raise ConfigError(f"--size must be a positive multiple of 16, got {args.size}")
    if args.rounds < 1:
        raise ConfigError(f"--rounds must be at least 1, got {args.rounds}")
    if args.batch <= 0 or args.images < args.batch:
        raise ConfigError(f"--images ({args.images}) must be at least --batch ({args.batch}) > 0")
    try:
        vw, vh = (int(v) for v in args.video_size.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--video-size must be WxH (e.g. 640x480), got {args.video_size!r}") from None
    if args.video_frames < 0 or vw <= 0 or vh <= 0 or vw % 16 or vh % 16:
        raise ConfigError(f"--video-size sides must be positive multiples of 16 and --video-frames >= 0, got "
                          f"{args.video_size}, {args.video_frames}")
    gpu = device.startswith("cuda")
    precision = args.precision if args.precision != "auto" else ("bf16" if gpu else "32")
    return {
        "device": device, "size": args.size, "batch": args.batch, "backbone": args.backbone,
        "precision": precision,
        "channels_last": args.channels_last if args.channels_last is not None else True,
        "compile": bool(args.compile),
        "workers": choose_loader_workers("auto" if args.workers is None else args.workers, "cuda" if gpu else "cpu"),
        "threads": args.threads, "warmup": args.warmup, "repeats": args.repeats, "steps": args.steps,
        "rounds": args.rounds, "dlc_malloc": args.dlc_malloc,
        "video_frames": args.video_frames, "video_size": [vh, vw], "calibration_frames": args.calibration_frames,
    }


def run(args: argparse.Namespace) -> int:
    """Generate the images, time both tools, print the side-by-side tables (the JSON grows as phases end)."""
    from crosspose.core.hardware import precision_support, read_cpu_features

    started = time.perf_counter()
    spec = _resolve(args)
    work = Path(args.workdir).resolve()
    images = work / "images"
    marker = work / "images.json"
    wanted = {"count": args.images, "size": args.size, "seed": 0, "version": 1}
    if not (marker.is_file() and json.loads(marker.read_text()) == wanted and (work / "train.json").is_file()):
        make_synthetic_images(images, args.images, args.size)
        atomic_write_text(marker, json.dumps(wanted))
    spec.update(coco=str(work / "train.json"), folder=str(images))
    features = read_cpu_features()
    report: dict[str, Any] = {"settings": {k: v for k, v in spec.items() if k not in ("coco", "folder")},
                              "machine": machine_info(spec["device"]),
                              "precision_support": precision_support(features, spec["device"]),
                              "deeplabcut": {}, "crosspose": {}}
    report["machine"].update(cpu_flags=features.relevant_flags(), torch_capability=features.torch_capability,
                             isa_limit=features.isa_limit, native_cflags=" ".join(cflags()),
                             mkl_enable_instructions=os.environ.get("MKL_ENABLE_INSTRUCTIONS"))

    def save() -> None:
        report["machine"]["seconds"] = time.perf_counter() - started
        if args.json:
            from crosspose.core.io import atomic_write_json

            atomic_write_json(args.json, report, indent=2)

    if spec["video_frames"]:
        print("[benchmark] video row: writing the video and the models ...", file=sys.stderr, flush=True)
        int8 = "int8" in args.precisions.split(",") and not report["precision_support"].get("int8")
        prepared = prepare_video(spec, work / "video", int8, args.timeout)
        report["video"] = {"prepare": prepared, "crosspose": {}}
        if "error" not in prepared:
            spec["video"] = prepared["video"]
        save()
    # DeepLabCut first: its install, when needed, is the slow part and needs nothing from crosspose
    for backbone in [] if args.skip_dlc else [b for b in args.dlc_backbones.split(",") if b]:
        report["deeplabcut"][backbone] = run_deeplabcut(args, spec, work, backbone)
        save()
    if args.skip_dlc:
        report["deeplabcut"]["skipped"] = {"available": False, "reason": "skipped (--skip-dlc)"}
    if not args.skip_crosspose:
        run_crosspose(spec, args, report, save)
        if not spec["device"].startswith("cuda"):
            print("[benchmark] this CPU's matrix-multiply rates ...", file=sys.stderr, flush=True)
            matmul = _phase({**spec, "precision_support": report["precision_support"]}, "matmul", args.timeout)
            report["machine"]["matmul"] = {k: v for k, v in matmul.items() if k not in ("memory", "peak_rss_bytes")}
            save()
    run_rounds(spec, args, work, report, save)
    if not args.skip_crosspose:
        if spec.get("video"):
            report["video"]["crosspose"] = video_rows(spec, report["video"]["prepare"], report["precision_support"],
                                                      [p for p in args.precisions.split(",") if p], args.timeout)
    if spec.get("video"):
        check_outputs({name: r.get("analyze") or {} for name, r in report["deeplabcut"].items()
                       if isinstance(r, dict)}, spec["video_frames"], reference=None)
    report["machine"]["load_average_after"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    add_flop_fractions(report, args.peak_tflops)
    save()
    text = format_report(report)
    print(text)
    return 0 if args.skip_crosspose or (report["crosspose"].get("fp32") or {}).get("train") else 1


# ------------------------------------------------------------------------------ crosspose
def _phase(spec: dict[str, Any], phase: str, timeout: float) -> dict[str, Any]:
    """One crosspose phase in its own child process: its result with memory, or {'error'}."""
    cmd = [sys.executable, "-m", "crosspose.benchmark.phases", phase, json.dumps(spec)]
    memory: dict[str, Any] = {}
    result, peak, error = run_child(cmd, timeout=timeout, memory=memory)
    if result is None:
        return {"error": error}
    result["peak_rss_bytes"] = peak
    result["memory"] = label_workers(memory, result.pop("worker_pids", {}))
    return result


def run_crosspose(spec: dict[str, Any], args: argparse.Namespace, report: dict[str, Any],
                  save: Any = None) -> dict[str, Any]:
    """Every crosspose row, each phase in a child process; failures are reported, not raised.

    Rows: ``fp32`` (the configured backbone: the Lightning fit alone, as ``crosspose fit`` runs it,
    so its memory compares with DeepLabCut's training process; inference), ``stages`` (the same
    network's training stages apart -- loading alone, model step alone, FLOPs -- in a process of
    their own, because their allocations would inflate the fit's memory), ``gn`` (the
    GroupNorm backbone: whole step, inference), ``bf16`` (training as an option, inference),
    ``int8`` (ONNX Runtime inference), ``accuracy`` (a trained checkpoint's keypoints in each precision).
    """
    out: dict[str, Any] = report["crosspose"]
    support = report["precision_support"]
    wanted = [p for p in args.precisions.split(",") if p]
    cpu = not spec["device"].startswith("cuda")
    for key, row_spec, phases in crosspose_rows(spec, args):
        entry = out.setdefault(key, {"backbone": row_spec["backbone"], "precision": row_spec["precision"]})
        if key == "bf16" and support.get("bf16"):
            entry["unsupported"] = support["bf16"]
            continue
        for phase in phases:
            print(f"[benchmark] crosspose {key} {phase} ...", file=sys.stderr, flush=True)
            result = _phase(row_spec, phase, args.timeout)
            if "error" in result:
                entry[f"{phase}_error"] = result["error"]
            else:
                entry[phase] = result
            if save:
                save()
    if cpu and "int8" in wanted:
        if support.get("int8"):
            out["int8"] = {"unsupported": support["int8"]}
        else:
            print("[benchmark] crosspose int8 (export, calibrate, ONNX Runtime) ...", file=sys.stderr, flush=True)
            result = _phase({**spec, "onnx_dir": str(Path(args.workdir).resolve() / "int8")}, "int8", args.timeout)
            out["int8"] = {"error": result["error"]} if "error" in result else {"result": result}
    if args.accuracy_checkpoint and args.accuracy_data:
        print("[benchmark] accuracy of fp32 / bf16 / int8 on the checkpoint ...", file=sys.stderr, flush=True)
        acc_spec = {**spec, "checkpoint": str(Path(args.accuracy_checkpoint).resolve()),
                    "test_file": str(Path(args.accuracy_data).resolve()), "accuracy_size": args.accuracy_size}
        out["accuracy"] = _phase(acc_spec, "accuracy", args.timeout)
    if save:
        save()
    return out


def crosspose_rows(spec: dict[str, Any], args: argparse.Namespace) -> list[tuple[str, dict[str, Any], tuple[str, ...]]]:
    """(key, phase spec, phases) of every PyTorch crosspose row, in the order the first pass runs them."""
    wanted = [p for p in args.precisions.split(",") if p]
    rows: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [("fp32", {**spec, "stages": "whole"}, ("train", "infer")),
                                                               ("stages", {**spec, "stages": "apart"}, ("train",))]
    if args.gn_backbone and args.gn_backbone != spec["backbone"]:
        rows.append(("gn", {**spec, "backbone": args.gn_backbone, "stages": "whole"}, ("train", "infer")))
    if not spec["device"].startswith("cuda") and "bf16" in wanted and spec["precision"] != "bf16":
        rows.append(("bf16", {**spec, "precision": "bf16", "stages": "whole"}, ("train", "infer")))
    return rows


def run_rounds(spec: dict[str, Any], args: argparse.Namespace, work: Path, report: dict[str, Any],
               save: Any = None) -> None:
    """Rounds 2..N of every training and inference row that ran, each round in the reverse order of the one before.

    A row is one tool configuration: its training phase, then its inference phase (DeepLabCut's
    inference reads the snapshot its training just wrote). Each summary keeps its rate per round;
    ``images_per_s`` becomes their mean (:mod:`crosspose.benchmark.rounds` says why). The video rows
    are single cold runs and are not repeated.
    """
    rows: list[tuple[str, list[dict[str, Any]], Any]] = []  # (label, summaries, runs the phases -> rates)
    dlc = {b: r for b, r in report["deeplabcut"].items()
           if isinstance(r, dict) and ((r.get("train") or {}).get("summary") or {}).get("images_per_s")}
    python = ensure_dlc(Path(args.dlc_venv).resolve(), install=False)[0] if dlc else None
    for backbone, result in dlc.items():
        if python is not None:
            summaries = [result["train"]["summary"], (result.get("infer") or {}).get("summary")]
            rows.append((f"DeepLabCut {backbone}", summaries,
                         lambda b=backbone: dlc_rates(python, spec, work, b, args.timeout)))
    for key, row_spec, _ in crosspose_rows(spec, args):
        entry = report["crosspose"].get(key) or {}
        summaries = [(entry.get("train") or {}).get("whole_step"), (entry.get("infer") or {}).get("whole")]
        if key != "stages" and any(summaries):
            rows.append((f"crosspose {key}", summaries,
                         lambda s=row_spec: _crosspose_rates(s, args.timeout)))
    int8 = (report["crosspose"].get("int8") or {}).get("result") or {}
    if int8.get("ort_int8"):
        rows.append(("crosspose int8", [int8["ort_fp32"].get("whole"), int8["ort_int8"].get("whole")],
                     lambda: _int8_rates({**spec, "onnx_dir": str(work / "int8")}, args.timeout)))
    for _, summaries, _ in rows:
        for summary in filter(None, summaries):
            start_rounds(summary)
    for index in range(1, spec["rounds"]):
        for label, summaries, time_it in round_order(rows, index):
            print(f"[benchmark] round {index + 1}/{spec['rounds']}: {label} ...", file=sys.stderr, flush=True)
            for summary, rate in zip(summaries, time_it(), strict=True):
                if summary:
                    add_round(summary, rate)
            if save:
                save()
    for _, summaries, _ in rows:
        for summary in filter(None, summaries):
            finish_rounds(summary)


def _crosspose_rates(row_spec: dict[str, Any], timeout: float) -> list[float | None]:
    """Training and inference images/s of one crosspose row (None for a phase that failed)."""
    train = _phase(row_spec, "train", timeout)
    infer = _phase(row_spec, "infer", timeout)
    return [(train.get("whole_step") or {}).get("images_per_s"), (infer.get("whole") or {}).get("images_per_s")]


def _int8_rates(spec: dict[str, Any], timeout: float) -> list[float | None]:
    """ONNX Runtime fp32 and int8 images/s of the files the first pass wrote to ``spec["onnx_dir"]``."""
    result = _phase({**spec, "reuse_onnx": True}, "int8", timeout)
    return [((result.get(k) or {}).get("whole") or {}).get("images_per_s") for k in ("ort_fp32", "ort_int8")]


# -------------------------------------------------------------------------------- report
def add_flop_fractions(report: dict[str, Any], peak_tflops: float | None) -> None:
    """Achieved FLOP/s of the crosspose training step, and its fraction of the GPU's bf16 peak."""
    train = (report["crosspose"].get("stages") or {}).get("train")
    fit = (report["crosspose"].get("fp32") or {}).get("train") or {}
    if not train or not train.get("train_flops_per_image") or not fit.get("whole_step"):
        return
    rate = fit["whole_step"]["images_per_s"] or 0.0
    achieved = rate * train["train_flops_per_image"]
    train["achieved_tflops"] = achieved / 1e12
    gpu = report["machine"].get("gpu")
    peak = peak_tflops or (bf16_peak_tflops(gpu) if gpu else None)
    if peak:
        train["peak_bf16_tflops"] = peak
        train["fraction_of_peak"] = achieved / (peak * 1e12)


def main(argv: list[str] | None = None) -> int:
    """``python tools/benchmark.py`` entry point (same options as ``crosspose benchmark``)."""
    parser = argparse.ArgumentParser(prog="benchmark", description=__doc__.splitlines()[0])
    configure_parser(parser)
    try:
        return run(parser.parse_args(argv))
    except ConfigError as exc:
        print(f"benchmark: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
