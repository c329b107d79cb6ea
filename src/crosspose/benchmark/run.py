"""``crosspose benchmark``: training and inference throughput side by side with DeepLabCut 3.

One run, one machine, the same synthetic images, input size and batch size for both tools, both
from random weights:

* crosspose, per stage: data loading alone, the model step alone (forward + loss with on-device
  targets + backward + optimizer, on batches already in memory), the whole Lightning training step,
  and inference over an image folder (whole pipeline and model alone);
* DeepLabCut 3.0.2's PyTorch engine (its ``resnet_50`` single-animal model), training through
  ``deeplabcut.train_network`` and inference through its pose inference runner. DeepLabCut lives
  in its own virtual environment, created on first use (``--dlc-venv``), and is driven by
  :mod:`crosspose.benchmark.dlc_side`, a standalone script that its Python runs.

Every measurement runs in a child process of its own, so the peak memory of one phase (resident
set of the child and its data-loader workers, sampled; ``torch.cuda.max_memory_allocated`` on a
GPU) is not inflated by another. Throughput is the median over repeats after warm-up steps; one
repeat is a run of consecutive training steps (time between the starts of consecutive steps, so
data waiting counts) or one pass over the image folder.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np

from crosspose.core.errors import ConfigError
from crosspose.core.io import atomic_path, atomic_write_text

__all__ = [
    "DLC_VERSION",
    "PAPER_STEPS",
    "configure_parser",
    "format_report",
    "make_synthetic_images",
    "run",
    "summarise_steps",
]

DLC_VERSION = "3.0.2"
PAPER_STEPS = 164_000
"""Iterations of the paper's fine-tune (batch 8)."""

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
    """Peak resident memory of a process and all its descendants, sampled every ``interval`` s (Linux)."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid, self.interval = pid, interval
        self.peak_bytes: int | None = None
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

    def sample(self) -> int:
        todo, total = [self.pid], 0
        while todo:
            pid = todo.pop()
            total += self._rss(pid)
            todo.extend(self._children(pid))
        return total

    def _loop(self) -> None:
        while not self._stop.is_set():
            now = self.sample()
            if now and (self.peak_bytes is None or now > self.peak_bytes):
                self.peak_bytes = now
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeMemorySampler:
        if Path("/proc").is_dir():
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


def run_child(command: list[str], env: dict[str, str] | None = None, timeout: float | None = None,
              ) -> tuple[dict[str, Any] | None, int | None, str]:
    """Run a phase; returns (its JSON result or None, peak tree RSS, error text)."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    with TreeMemorySampler(proc.pid) as sampler:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            return None, sampler.peak_bytes, f"timed out after {timeout:.0f} s"
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
                        help="crosspose data-loader workers (default: 2 on CPU, as `crosspose fit`; 4 on a GPU)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--warmup", type=int, default=3, help="training steps dropped before timing (3)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (3)")
    parser.add_argument("--steps", type=int, default=4, help="training steps per repeat (4)")
    parser.add_argument("--skip-dlc", action="store_true", help="crosspose only")
    parser.add_argument("--dlc-venv", default=".bench/dlc-venv", help="DeepLabCut's own environment")
    parser.add_argument("--no-install", action="store_true", help="do not create the DeepLabCut environment")
    parser.add_argument("--dlc-backbone", default=None,
                        help="timm name for DeepLabCut's resnet_50 (default: its own, resnet50_gn)")
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
    if args.batch <= 0 or args.images < args.batch:
        raise ConfigError(f"--images ({args.images}) must be at least --batch ({args.batch}) > 0")
    gpu = device.startswith("cuda")
    precision = args.precision if args.precision != "auto" else ("bf16" if gpu else "32")
    return {
        "device": device, "size": args.size, "batch": args.batch, "backbone": args.backbone,
        "precision": precision,
        "channels_last": args.channels_last if args.channels_last is not None else True,
        "compile": bool(args.compile), "workers": args.workers if args.workers is not None else (4 if gpu else 2),
        "threads": args.threads, "warmup": args.warmup, "repeats": args.repeats, "steps": args.steps,
    }


def run(args: argparse.Namespace) -> int:
    """Generate the images, time both tools, print the side-by-side table."""
    spec = _resolve(args)
    work = Path(args.workdir).resolve()
    images = work / "images"
    marker = work / "images.json"
    wanted = {"count": args.images, "size": args.size, "seed": 0, "version": 1}
    if not (marker.is_file() and json.loads(marker.read_text()) == wanted and (work / "train.json").is_file()):
        make_synthetic_images(images, args.images, args.size)
        atomic_write_text(marker, json.dumps(wanted))
    spec.update(coco=str(work / "train.json"), folder=str(images))
    report: dict[str, Any] = {"settings": {k: v for k, v in spec.items() if k not in ("coco", "folder")},
                              "machine": machine_info(spec["device"])}
    # DeepLabCut first: its install, when needed, is the slow part and needs nothing from crosspose
    report["deeplabcut"] = {"available": False, "reason": "skipped (--skip-dlc)"} if args.skip_dlc \
        else run_deeplabcut(args, spec, work)
    report["crosspose"] = run_crosspose(spec, args.timeout)
    report["machine"]["load_average_after"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    add_flop_fractions(report, args.peak_tflops)
    text = format_report(report)
    print(text)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.json, json.dumps(report, indent=2))
    return 0 if report["crosspose"].get("train") else 1


# ------------------------------------------------------------------------------ crosspose
def run_crosspose(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Both crosspose phases, each in a child process; failures are reported, not raised."""
    out: dict[str, Any] = {}
    for phase in ("train", "infer"):
        cmd = [sys.executable, "-m", "crosspose.benchmark.phases", phase, json.dumps(spec)]
        print(f"[benchmark] crosspose {phase} ...", file=sys.stderr, flush=True)
        result, peak, error = run_child(cmd, timeout=timeout)
        if result is None:
            out[f"{phase}_error"] = error
            continue
        result["peak_rss_bytes"] = peak
        out[phase] = result
    return out


# ----------------------------------------------------------------------------- DeepLabCut
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

    It needs albumentations<=1.4.3 and filelock<3.16. The pins come from the running environment, not
    from the repository's constraints.txt, so an installed crosspose (no checkout) benchmarks the same.
    """
    clash = ("albumentations", "albucore", "filelock", "simsimd", "stringzilla", "crosspose")
    versions = installed_versions() if installed is None else installed
    lines = [f"{name}=={version}" for name, version in sorted(versions.items()) if name.lower() not in clash]
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target, "\n".join(lines) + "\n")
    return target


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
        for step in steps:
            if subprocess.run(step, stdout=fh, stderr=subprocess.STDOUT).returncode != 0:
                return None, f"install failed ({' '.join(step[-4:])}); see {log}"
    version = _installed_dlc(python)
    if version != DLC_VERSION:
        return None, f"install finished but deeplabcut {version} found; see {log}"
    return python, ""


def run_deeplabcut(args: argparse.Namespace, spec: dict[str, Any], work: Path) -> dict[str, Any]:
    """DeepLabCut's training and inference phases; {'available': False, 'reason'} when it cannot run."""
    try:
        python, reason = ensure_dlc(Path(args.dlc_venv).resolve(), install=not args.no_install)
    except OSError as exc:
        python, reason = None, f"install failed: {exc}"
    if python is None:
        return {"available": False, "reason": reason}
    script = str(Path(__file__).with_name("dlc_side.py"))
    project = work / f"dlc-{spec['size']}"
    device = spec["device"]
    b = spec["batch"]
    steps = spec["warmup"] + spec["repeats"] * spec["steps"] + 1
    out: dict[str, Any] = {"available": True, "model": args.dlc_backbone or "resnet_50 (timm resnet50_gn)"}
    phases = [("prepare", [str(project), spec["folder"], str(spec["size"])]),
              ("train", [str(project), str(steps), str(b), str(spec["size"]), device, args.dlc_backbone or ""]),
              ("infer", [str(project), spec["folder"], str(b), device, str(1 + spec["repeats"])])]
    if list(project.glob("bench-*/config.yaml")):
        phases = phases[1:]
    for phase, extra in phases:
        print(f"[benchmark] DeepLabCut {phase} ...", file=sys.stderr, flush=True)
        result, peak, error = run_child([str(python), script, phase, *extra], timeout=args.timeout)
        if result is None:
            out.update(available=phase != "prepare" and out.get("train") is not None,
                       reason=f"{phase} failed: {error}")
            if phase != "infer":
                out["available"] = False
                break
            continue
        result["peak_rss_bytes"] = peak
        if phase == "train":
            result["summary"] = summarise_steps([*result.pop("step_starts"), result["end"]],
                                                result.pop("step_images"), spec["warmup"], spec["repeats"])
        elif phase == "infer":
            result["summary"] = summarise_passes(result["pass_seconds"], result["images"])
        out[phase] = result
    return out


# -------------------------------------------------------------------------------- report
def add_flop_fractions(report: dict[str, Any], peak_tflops: float | None) -> None:
    """Achieved FLOP/s of the crosspose training step, and its fraction of the GPU's bf16 peak."""
    cp = report["crosspose"]
    train = cp.get("train")
    if not train or not train.get("train_flops_per_image"):
        return
    rate = train["whole_step"]["images_per_s"] or 0.0
    achieved = rate * train["train_flops_per_image"]
    train["achieved_tflops"] = achieved / 1e12
    gpu = report["machine"].get("gpu")
    peak = peak_tflops or (bf16_peak_tflops(gpu) if gpu else None)
    if peak:
        train["peak_bf16_tflops"] = peak
        train["fraction_of_peak"] = achieved / (peak * 1e12)


def _fmt(v: float | None, digits: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _mib(v: int | None) -> str:
    return "n/a" if v is None else f"{v / 2**20:,.0f} MiB"


def _ratio(a: float | None, b: float | None) -> str:
    return "n/a" if not a or not b else f"{a / b:.2f}x"


def format_report(report: dict[str, Any]) -> str:
    """The markdown tables: side by side, crosspose per stage, machine, paper fine-tune estimate."""
    s, m, cp, dlc = report["settings"], report["machine"], report["crosspose"], report["deeplabcut"]
    gpu = s["device"].startswith("cuda")
    mem_key = "cuda_peak_bytes" if gpu else "peak_rss_bytes"
    mem_name = "peak GPU memory (max_memory_allocated)" if gpu else "peak RSS, process + workers"
    t, i = cp.get("train") or {}, cp.get("infer") or {}
    dt, di = dlc.get("train") or {}, dlc.get("infer") or {}
    ct = (t.get("whole_step") or {}).get("images_per_s")
    ci = (i.get("whole") or {}).get("images_per_s")
    dtr = (dt.get("summary") or {}).get("images_per_s")
    dir_ = (di.get("summary") or {}).get("images_per_s")
    lines = [f"## Throughput, {s['size']} px, batch {s['batch']}, {s['device']} (images/s, median of "
             f"{s['repeats']} repeats after warm-up)", ""]
    dlc_name = f"DeepLabCut {DLC_VERSION}"
    lines += [f"| | crosspose ({s['backbone']}) | {dlc_name} ({dlc.get('model', 'resnet_50')}) | crosspose / DLC |",
              "|---|---|---|---|"]
    if not dlc.get("available") and "train" not in dlc:
        lines.append(f"| training | {_fmt(ct)} | unavailable ({dlc.get('reason')}) | n/a |")
        lines.append(f"| inference (image folder) | {_fmt(ci)} | unavailable | n/a |")
        lines.append(f"| training {mem_name} | {_mib(t.get(mem_key))} | n/a | n/a |")
        lines.append(f"| inference {mem_name} | {_mib(i.get(mem_key))} | n/a | n/a |")
    else:
        lines.append(f"| training | {_fmt(ct)} | {_fmt(dtr)} | {_ratio(ct, dtr)} |")
        lines.append(f"| inference (image folder) | {_fmt(ci)} | {_fmt(dir_)} | {_ratio(ci, dir_)} |")
        lines.append(f"| training {mem_name} | {_mib(t.get(mem_key))} | {_mib(dt.get(mem_key))} | "
                     f"{_ratio(t.get(mem_key), dt.get(mem_key))} |")
        lines.append(f"| inference {mem_name} | {_mib(i.get(mem_key))} | {_mib(di.get(mem_key))} | "
                     f"{_ratio(i.get(mem_key), di.get(mem_key))} |")
        if dlc.get("reason"):
            lines.append(f"| DeepLabCut note | | {dlc['reason']} | |")
    lines += ["", "### crosspose per stage (images/s)", "", "| stage | images/s | repeats |", "|---|---|---|"]
    stages = [("training: data loading alone", t.get("loading")), ("training: model step alone", t.get("model_step")),
              ("training: whole step (Lightning)", t.get("whole_step")),
              ("inference: model alone (forward + decode)", i.get("model")),
              ("inference: whole (read, crop, forward, decode)", i.get("whole"))]
    for name, st in stages:
        if st:
            lines.append(f"| {name} | {_fmt(st.get('images_per_s'))} | "
                         f"{', '.join(_fmt(r) for r in st.get('repeats', []))} |")
    for key in ("train_error", "infer_error"):
        if key in cp:
            lines.append(f"| {key.replace('_', ' ')} | {cp[key]} | |")
    if t.get("train_flops_per_image"):
        lines += ["", f"Model FLOPs per image: {t['train_flops_per_image'] / 1e9:.1f} GFLOP per training step "
                  f"(forward + backward), {t.get('infer_flops_per_image', 0) / 1e9:.1f} GFLOP forward; achieved "
                  f"{1000 * (t.get('achieved_tflops') or 0):,.1f} GFLOP/s in training"
                  + (f", {100 * t['fraction_of_peak']:.1f} % of the {t['peak_bf16_tflops']:.0f} TFLOP/s bf16 peak"
                     if t.get("fraction_of_peak") is not None else "") + "."]
    if t.get("bf16_numerics"):
        n = t["bf16_numerics"]
        lines += ["", f"bf16 vs fp32 on one batch: loss differs by {100 * n['loss_rel_diff']:.2f} %, score maps by "
                  f"{100 * n['heatmap_rel_rmse']:.2f} % (relative RMS), gradient cosine {n['grad_cosine']:.4f}."]
    lines += ["", bottleneck_note(t)]
    if ct:
        hours = PAPER_STEPS * s["batch"] / ct / 3600
        lines += ["", f"The paper's fine-tune ({PAPER_STEPS:,} steps x batch 8) at this crosspose training "
                  f"throughput: {hours:,.1f} h ({hours / 24:.1f} days) on this {'GPU' if gpu else 'CPU'}."]
    gpu_txt = f", GPU {m['gpu']}" if m.get("gpu") else ""
    lines += ["", f"Machine: {m['cpu']}, {m['cores']} cores{gpu_txt}; torch {m['torch']} "
              f"({t.get('threads', m['torch_threads'])} intra-op threads), crosspose precision {s['precision']}, "
              f"channels_last {s['channels_last']}, compile {s['compile']}, {s['workers']} loader workers; "
              f"DeepLabCut torch {dt.get('torch', 'n/a')} ({dt.get('threads', 'n/a')} threads); "
              f"load average before {_load(m.get('load_average'))}, after {_load(m.get('load_average_after'))}."]
    return "\n".join(lines)


def _load(v: list[float] | None) -> str:
    return "n/a" if not v else "/".join(f"{x:.2f}" for x in v)


def bottleneck_note(train: dict[str, Any]) -> str:
    """One sentence naming the stage that bounds crosspose training."""
    load = (train.get("loading") or {}).get("images_per_s")
    step = (train.get("model_step") or {}).get("images_per_s")
    whole = (train.get("whole_step") or {}).get("images_per_s")
    if not (load and step and whole):
        return "Bottleneck: not measured."
    if load < step:
        return (f"Bottleneck: data loading ({load:.1f} img/s) is slower than the model step ({step:.1f} img/s); "
                f"the whole step runs at {whole:.1f} img/s.")
    return (f"Bottleneck: the model step ({step:.1f} img/s alone; data loading alone {load:.1f} img/s, "
            f"{load / step:.0f}x faster); the whole step reaches {100 * whole / step:.0f} % of the bare model step.")


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
