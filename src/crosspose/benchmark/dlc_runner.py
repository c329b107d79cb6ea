"""DeepLabCut 3's side of the benchmark: its own environment, and its phases timed beside crosspose's.

DeepLabCut 3.0.2 is not a crosspose dependency: :func:`ensure_dlc` installs it into a virtual
environment of its own (``--dlc-venv``) on first use, pinned to the versions installed here, and
:func:`run_deeplabcut` drives :mod:`crosspose.benchmark.dlc_side` -- a standalone script that
DeepLabCut's Python runs -- one phase per child process, measured like crosspose's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from crosspose.benchmark.measure import run_child, summarise_passes, summarise_steps
from crosspose.benchmark.report import DLC_KEEP_FREED_MEMORY, DLC_VERSION, dlc_keeps_memory
from crosspose.core.io import atomic_write_text

__all__ = ["conflicting_pins", "dlc_constraints", "dlc_env", "dlc_rates", "ensure_dlc",
           "installed_versions", "run_deeplabcut"]


_DLC_SCRIPT = str(Path(__file__).with_name("dlc_side.py"))
"""The standalone script DeepLabCut's own Python runs, one phase per call."""


def dlc_env(spec: dict[str, Any]) -> dict[str, str] | None:
    """Extra environment of DeepLabCut's phases.

    None: its C library's default, as its users run it. ``--dlc-malloc keep``: the tunables that keep
    freed memory, as ``crosspose analyze`` does.
    """
    return {"GLIBC_TUNABLES": DLC_KEEP_FREED_MEMORY} if dlc_keeps_memory(spec) else None


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
        atomic_write_text(constraints, "\n".join(kept) + "\n")
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
        result, peak, error = run_child([str(python), _DLC_SCRIPT, phase, *extra], env=dlc_env(spec),
                                        timeout=args.timeout, memory=memory)
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
            result["summary"] = dlc_summary(phase, result, spec)
        elif phase == "analyze":
            loop, frames = result.get("loop_seconds"), spec["video_frames"]
            result.update(frames=frames, frames_per_s=frames / loop if loop else None,
                          frames_per_s_whole_call=frames / result["total_seconds"])
        out[phase] = result
    return out


def dlc_rates(python: Path, spec: dict[str, Any], work: Path, backbone: str, timeout: float) -> list[float | None]:
    """DeepLabCut's training and inference images/s with one backbone (None for a phase that failed)."""
    rates: list[float | None] = []
    for phase, extra in (("train", _dlc_train_args(spec, work, backbone)), ("infer", _dlc_infer_args(spec, work))):
        result, _, _ = run_child([str(python), _DLC_SCRIPT, phase, *extra], env=dlc_env(spec), timeout=timeout)
        if result is None:  # a failed training leaves no snapshot for inference to time
            return rates + [None] * (2 - len(rates))
        rates.append(dlc_summary(phase, result, spec)["images_per_s"])
    return rates


def dlc_summary(phase: str, result: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
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
