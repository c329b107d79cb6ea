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
import itertools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from crosspose.benchmark.report import DLC_VERSION, PAPER_STEPS, format_report
from crosspose.benchmark.rounds import add_round, finish_rounds, round_order, start_rounds
from crosspose.benchmark.video import check_outputs, prepare_video, video_rows
from crosspose.core.errors import ConfigError
from crosspose.core.hardware import choose_loader_workers
from crosspose.core.io import atomic_path, atomic_write_text

__all__ = [
    "DLC_VERSION",
    "PAPER_STEPS",
    "TreeMemorySampler",
    "configure_parser",
    "format_report",
    "make_synthetic_images",
    "run",
    "run_crosspose",
    "run_deeplabcut",
    "summarise_steps",
]


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


# ------------------------------------------------------------------------------ statistics
def summarise_steps(starts: list[float], images: list[int], warmup: int, repeats: int) -> dict[str, Any]:
    """Images/s from step start times: drop ``warmup`` steps, split the rest into ``repeats`` runs.

    Step i lasts from its start to the start of step i + 1 (so a step that waits for data pays for
    it); the last start only closes the step before it. Returns the median and every repeat.
    """
    durations = [b - a for a, b in itertools.pairwise(starts)][warmup:]
    counts = images[warmup: warmup + len(durations)]
    if not durations:
        return {"images_per_s": None, "repeats": [], "steps": 0}
    repeats = max(1, min(repeats, len(durations)))
    chunks = np.array_split(np.arange(len(durations)), repeats)
    rates = [float(sum(counts[i] for i in c) / sum(durations[i] for i in c)) for c in chunks if len(c)]
    return {"images_per_s": statistics.median(rates), "repeats": rates, "steps": len(durations)}


def summarise_passes(seconds: list[float], images: int, warmup: int = 1) -> dict[str, Any]:
    """Images/s of whole passes over a folder, the first ``warmup`` passes dropped."""
    kept = seconds[warmup:] or seconds
    rates = [images / s for s in kept]
    return {"images_per_s": statistics.median(rates), "repeats": rates, "passes": len(kept)}


# --------------------------------------------------------------------------------- memory
class TreeMemorySampler:
    """Peak memory of a process and all its descendants, sampled every ``interval`` s (Linux).

    Two totals, because forked processes share pages: ``peak_bytes`` sums each process's resident
    set (RSS; shared pages counted once per process, what a naive monitor shows), ``peak_pss_bytes``
    sums proportional set sizes (PSS: each shared page split between its sharers; what the processes
    really take from the machine). ``processes`` keeps each process's own peaks and its role: the
    measured process is ``main``, its descendants ``worker N`` in order of appearance.

    RSS (``/proc/PID/statm``, a counter) is read every ``interval``; PSS only when the tree's summed RSS
    passes the highest RSS at which PSS was read by 1 %, and otherwise every ``pss_interval`` s (so the
    PSS peak may be missed by about 1 %). PSS comes from ``smaps_rollup``, which walks the process's
    page tables under its memory-map lock: read ten times a second it slowed the measured training
    (bf16 ResNet-50, 2-core EPYC, two pairs) from 6.26 / 6.42 to 5.19 / 5.14 img/s.
    """

    def __init__(self, pid: int, interval: float = 0.1, pss_interval: float = 2.0) -> None:
        self.pid, self.interval, self.pss_interval = pid, interval, pss_interval
        self.peak_bytes: int | None = None
        self.peak_pss_bytes: int | None = None
        self.processes: dict[int, dict[str, Any]] = {}
        self.samples = self.pss_reads = 0
        self._last_pss = -float("inf")
        self._pss_read_at_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    @staticmethod
    def _children(pid: int) -> list[int]:
        out: list[int] = []
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as fh:
                    out.extend(int(c) for c in fh.read().split())
        except OSError:
            pass
        return out

    @staticmethod
    def _rss(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/statm", encoding="ascii") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return 0

    @staticmethod
    def _pss(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as fh:
                for line in fh:
                    if line.startswith("Pss:"):
                        return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            pass
        return 0

    def sample(self) -> int:
        """Summed RSS of the tree now (and, as a side effect, the per-process and PSS peaks)."""
        tree, todo = [], [(self.pid, 0)]
        while todo:
            pid, parent = todo.pop()
            tree.append((pid, parent, self._rss(pid)))
            todo.extend((child, pid) for child in self._children(pid))
        total = sum(rss for _, _, rss in tree)
        self.samples += 1
        now = time.monotonic()
        read_pss = total > 1.01 * self._pss_read_at_rss or now - self._last_pss >= self.pss_interval
        if read_pss:
            self._last_pss = now
            self._pss_read_at_rss = max(self._pss_read_at_rss, total)
            self.pss_reads += 1
        total_pss = 0
        for pid, parent, rss in tree:
            if not rss:
                continue
            entry = self.processes.get(pid)
            if entry is None:
                entry = self.processes[pid] = {"pid": pid, "role": self._role(pid, parent),
                                               "peak_rss_bytes": 0, "peak_pss_bytes": 0}
            entry["peak_rss_bytes"] = max(entry["peak_rss_bytes"], rss)
            if read_pss:
                pss = self._pss(pid)
                total_pss += pss
                entry["peak_pss_bytes"] = max(entry["peak_pss_bytes"], pss)
        if total_pss and (self.peak_pss_bytes is None or total_pss > self.peak_pss_bytes):
            self.peak_pss_bytes = total_pss
        if total and (self.peak_bytes is None or total > self.peak_bytes):
            self.peak_bytes = total
        return total

    def _role(self, pid: int, parent: int) -> str:
        """main, forkserver, resource tracker, or the n-th other process (a loader worker)."""
        if pid == self.pid:
            return "main"
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmdline = fh.read().decode("utf-8", "replace")
        except OSError:
            cmdline = ""
        if "forkserver" in cmdline and parent == self.pid:
            return "forkserver (data code preloaded)"
        if "resource_tracker" in cmdline:
            return "resource tracker"
        workers = sum(1 for e in self.processes.values() if e["role"].startswith("child"))
        return f"child {workers + 1}"

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def breakdown(self) -> dict[str, Any]:
        """Totals and per-process peaks, JSON-ready."""
        return {"peak_rss_bytes": self.peak_bytes, "peak_pss_bytes": self.peak_pss_bytes,
                "processes": list(self.processes.values())}

    def __enter__(self) -> TreeMemorySampler:
        if Path("/proc").is_dir():
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


def run_child(command: list[str], env: dict[str, str] | None = None, timeout: float | None = None,
              memory: dict[str, Any] | None = None) -> tuple[dict[str, Any] | None, int | None, str]:
    """Run a phase; returns (its JSON result or None, peak tree RSS, error text).

    ``memory``, when given, receives :meth:`TreeMemorySampler.breakdown` (PSS and per process).
    """
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    with TreeMemorySampler(proc.pid) as sampler:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            return None, sampler.peak_bytes, f"timed out after {timeout:.0f} s"
    if memory is not None:
        memory.update(sampler.breakdown())
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (err or out).strip().splitlines()[-6:]
        return None, sampler.peak_bytes, f"exit {proc.returncode}: " + " | ".join(tail)
    return json.loads(lines[-1]), sampler.peak_bytes, ""


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
        "rounds": args.rounds,
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
    report["machine"].update(cpu_flags=features.relevant_flags(), torch_capability=features.torch_capability)

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
                         lambda b=backbone: _dlc_rates(python, spec, work, b, args.timeout)))
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


def _dlc_rates(python: Path, spec: dict[str, Any], work: Path, backbone: str, timeout: float) -> list[float | None]:
    """DeepLabCut's training and inference images/s with one backbone (None for a phase that failed)."""
    rates: list[float | None] = []
    for phase, extra in (("train", _dlc_train_args(spec, work, backbone)), ("infer", _dlc_infer_args(spec, work))):
        result, _, _ = run_child([str(python), _DLC_SCRIPT, phase, *extra], timeout=timeout)
        if result is None:  # a failed training leaves no snapshot for inference to time
            return rates + [None] * (2 - len(rates))
        rates.append(_dlc_summary(phase, result, spec)["images_per_s"])
    return rates


def _dlc_summary(phase: str, result: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """Images/s of a DeepLabCut train or infer phase, from the raw times its script printed (consumed)."""
    if phase == "train":
        return summarise_steps([*result.pop("step_starts"), result["end"]], result.pop("step_images"),
                               spec["warmup"], spec["repeats"])
    return summarise_passes(result["pass_seconds"], result["images"])


def _dlc_infer_args(spec: dict[str, Any], work: Path) -> list[str]:
    return [str(work / f"dlc-{spec['size']}"), spec["folder"], str(spec["batch"]), spec["device"],
            str(1 + spec["repeats"])]


def _dlc_train_args(spec: dict[str, Any], work: Path, backbone: str) -> list[str]:
    steps = spec["warmup"] + spec["repeats"] * spec["steps"] + 1
    return [str(work / f"dlc-{spec['size']}"), str(steps), str(spec["batch"]), str(spec["size"]), spec["device"],
            backbone]


def label_workers(memory: dict[str, Any], worker_pids: dict[str, list[int]]) -> dict[str, Any]:
    """Name each sampled worker after the loader that started it (the phase reports their pids)."""
    roles = {pid: f"{stage}: loader worker {i + 1}" for stage, pids in worker_pids.items()
             for i, pid in enumerate(pids)}
    memory["processes"] = [{**p, "role": roles.get(p.get("pid"), p["role"]) if p["role"].startswith("child")
                            else p["role"]} for p in memory.get("processes", [])]
    return memory


# ----------------------------------------------------------------------------- DeepLabCut
_DLC_SCRIPT = str(Path(__file__).with_name("dlc_side.py"))
"""The standalone script DeepLabCut's own Python runs, one phase per call."""

def _dlc_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _installed_dlc(python: Path) -> str | None:
    if not python.is_file():
        return None
    probe = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('deeplabcut'))"],
                           capture_output=True, text=True)
    return probe.stdout.strip() if probe.returncode == 0 else None


def installed_versions() -> dict[str, str]:
    """The versions installed beside crosspose (made from constraints.txt by ``make``), by package name."""
    import importlib.metadata as metadata

    return {dist.metadata["Name"].lower(): dist.version for dist in metadata.distributions()
            if dist.metadata["Name"]}


def dlc_constraints(target: Path, installed: dict[str, str] | None = None) -> Path:
    """Pin DeepLabCut's environment to the versions installed here, minus those DeepLabCut 3.0.2 cannot use.

    It needs albumentations<=1.4.3, filelock<3.16 and pandas<3. The pins come from the running environment, not
    from the repository's constraints.txt, so an installed crosspose (no checkout) benchmarks the same.
    """
    clash = ("albumentations", "albucore", "filelock", "simsimd", "stringzilla", "crosspose", "pandas")
    versions = installed_versions() if installed is None else installed
    lines = [f"{name}=={version}" for name, version in sorted(versions.items()) if name.lower() not in clash]
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target, "\n".join(lines) + "\n")
    return target


def conflicting_pins(pip_output: str) -> set[str]:
    """Package names whose constraint pip reports as the cause of a failed resolution."""
    import re

    return {m.lower() for m in re.findall(r"requested \(constraint\) ([A-Za-z0-9_.\-]+)==", pip_output)}


def ensure_dlc(venv: Path, install: bool) -> tuple[Path | None, str]:
    """DeepLabCut's Python, creating its environment when allowed; (None, reason) when unavailable."""
    python = _dlc_python(venv)
    version = _installed_dlc(python)
    if version == DLC_VERSION:
        return python, ""
    if not install:
        return None, f"not installed in {venv} (run without --no-install to create it)"
    print(f"[benchmark] installing deeplabcut=={DLC_VERSION} into {venv} (several minutes, once) ...",
          file=sys.stderr, flush=True)
    log = venv.parent / "dlc-install.log"
    venv.parent.mkdir(parents=True, exist_ok=True)
    constraints = dlc_constraints(venv.parent / "dlc-constraints.txt")
    pins = [ln.strip() for ln in constraints.read_text().splitlines() if ln.startswith(("torch==", "torchvision=="))]
    steps = [[sys.executable, "-m", "venv", str(venv)],
             [str(python), "-m", "pip", "install", "--upgrade", "pip"],
             [str(python), "-m", "pip", "install", f"deeplabcut=={DLC_VERSION}", *pins, "-c", str(constraints)]]
    with log.open("w", encoding="utf-8") as fh:
        for step in steps[:2]:
            if subprocess.run(step, stdout=fh, stderr=subprocess.STDOUT).returncode != 0:
                return None, f"install failed ({' '.join(step[-4:])}); see {log}"
    # a pin DeepLabCut cannot take (pip names it "The user requested (constraint) NAME==V") is
    # dropped and pip tried again, so a newer environment here does not block the benchmark
    for _ in range(8):
        done = subprocess.run(steps[2], capture_output=True, text=True)
        with log.open("a", encoding="utf-8") as fh:
            fh.write(done.stdout + done.stderr)
        if done.returncode == 0:
            break
        clashing = conflicting_pins(done.stdout + done.stderr)
        if not clashing:
            return None, f"install failed (pip install deeplabcut=={DLC_VERSION}); see {log}"
        kept = [ln for ln in constraints.read_text().splitlines()
                if ln.split("==")[0].lower() not in clashing]
        constraints.write_text("\n".join(kept) + "\n")
    else:
        return None, f"install failed (pins kept clashing); see {log}"
    version = _installed_dlc(python)
    if version != DLC_VERSION:
        return None, f"install finished but deeplabcut {version} found; see {log}"
    return python, ""


def run_deeplabcut(args: argparse.Namespace, spec: dict[str, Any], work: Path, backbone: str) -> dict[str, Any]:
    """DeepLabCut's training and inference phases with one timm backbone.

    Returns {'available': False, 'reason'} when it cannot run. Each backbone trains in the same
    project; inference reads the snapshot just trained.
    """
    try:
        python, reason = ensure_dlc(Path(args.dlc_venv).resolve(), install=not args.no_install)
    except OSError as exc:
        python, reason = None, f"install failed: {exc}"
    if python is None:
        return {"available": False, "reason": reason}
    project = work / f"dlc-{spec['size']}"
    device = spec["device"]
    b = spec["batch"]
    out: dict[str, Any] = {"available": True, "model": f"resnet_50 (timm {backbone})"}
    phases = [("prepare", [str(project), spec["folder"], str(spec["size"])]),
              ("train", _dlc_train_args(spec, work, backbone)),
              ("infer", _dlc_infer_args(spec, work))]
    if spec.get("video"):
        dest = work / "video" / f"dlc-{backbone}"
        if dest.is_dir():  # analyze_videos skips a video whose output exists
            shutil.rmtree(dest)
        phases.append(("analyze", [str(project), spec["video"], str(b), device, backbone, str(dest)]))
    if list(project.glob("bench-*/config.yaml")):
        phases = phases[1:]
    for phase, extra in phases:
        print(f"[benchmark] DeepLabCut {phase} ...", file=sys.stderr, flush=True)
        memory: dict[str, Any] = {}
        result, peak, error = run_child([str(python), _DLC_SCRIPT, phase, *extra], timeout=args.timeout, memory=memory)
        if result is None:
            out.update(available=phase != "prepare" and out.get("train") is not None,
                       reason=f"{phase} failed: {error}")
            if phase == "analyze":
                out["analyze"] = {"error": error}
            elif phase != "infer":
                out["available"] = False
                break
            continue
        result["peak_rss_bytes"] = peak
        result["memory"] = memory
        if phase in ("train", "infer"):
            result["summary"] = _dlc_summary(phase, result, spec)
        elif phase == "analyze":
            loop, frames = result.get("loop_seconds"), spec["video_frames"]
            result.update(frames=frames, frames_per_s=frames / loop if loop else None,
                          frames_per_s_whole_call=frames / result["total_seconds"])
        out[phase] = result
    return out


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
