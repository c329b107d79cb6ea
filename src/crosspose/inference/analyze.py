r"""``crosspose analyze``: keypoints of videos, image folders and images, in DeepLabCut's and COCO's formats.

Per input ``<stem>`` it writes, into ``--out``: ``<stem>.h5`` (DeepLabCut's table under
``df_with_missing``), ``<stem>.csv`` (the same, three header rows), ``<stem>.json`` (COCO keypoint
results, ``frame`` per video frame or ``file_name`` per image); with ``--filter``, the filtered
``<stem>_filtered.h5``/``.csv`` beside the raw ones (as DeepLabCut's filterpredictions); with
``--labeled`` (alias ``--labeled-video``), ``<stem>_labeled.mp4`` for a video, ``<stem>_labeled/`` (one PNG per
image) for an image folder, ``<stem>_labeled.png`` for one image (drawn from the filtered keypoints when
filtering); with ``--format nwb``, ``<stem>.nwb`` (NWB with ndx-pose); with ``--plot``,
``<stem>_trajectories.png`` (x and y of every joint over the frames).
Every input is checked before the first is analysed; every file is written atomically.

``--precision auto`` (the default) runs a checkpoint under bf16 autocast on a GPU with bf16 and on
a CPU that reports bf16 units (AVX512-BF16, AMX), fp32 elsewhere; an ``.onnx`` model runs in its own
precision (an int8 one from ``crosspose quantize``). ``--compile auto`` (the default) runs a checkpoint
through ``torch.compile`` with frozen weights where that was measured to pay (bf16 on a CPU with AMX).
Both choices and their reasons are printed.

Example:
    crosspose analyze --model runs/reach/checkpoints/best.ckpt session1.mp4 frames/ --out analysed \\
        --labeled-video --pcutoff 0.6 --filter median --filter-window 5
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crosspose.core.allocator import keep_freed_memory
from crosspose.core.errors import ConfigError
from crosspose.core.hardware import COMPILE_SETTINGS
from crosspose.inference.model import PRECISIONS
from crosspose.inference.predictor import Predictor, load
from crosspose.inference.results import PoseSequence, smooth
from crosspose.inference.sources import InputSource, StageTimes, resolve_inputs

__all__ = ["FORMATS", "AnalysisReport", "analyze_input", "analyze_video", "configure_parser", "run"]

FORMATS = ("h5", "csv", "json", "nwb")
DEFAULT_FORMATS = ("h5", "csv", "json")


@dataclass
class AnalysisReport:
    """What one input gave: the keypoints, the files written and where the time went."""

    source: Path
    poses: PoseSequence
    outputs: list[Path] = field(default_factory=list)
    times: StageTimes = field(default_factory=StageTimes)


def _write(poses: PoseSequence, source: InputSource, out_dir: Path, stem: str, formats: Sequence[str]) -> list[Path]:
    written = []
    for fmt in formats:
        target = out_dir / f"{stem}.{fmt}"
        if fmt == "nwb":
            from crosspose.inference.nwb import write_nwb

            written.append(write_nwb(poses, target, fps=source.fps if source.kind == "video" else None,
                                     images=source.images or None))
        else:
            written.append({"h5": poses.write_h5, "csv": poses.write_csv, "json": poses.write_json}[fmt](target))
    return written


def analyze_input(predictor: Predictor, source: InputSource, out_dir: Path, formats: Sequence[str] = DEFAULT_FORMATS,
                  labeled_video: bool = False, pcutoff: float = 0.6, filter: str | None = None,
                  filter_window: int = 5, batch_size: int | None = None, progress: bool = False,
                  plot: bool = False) -> AnalysisReport:
    """Analyse one checked input (:func:`~crosspose.inference.sources.resolve_inputs`) and write its files."""
    times = StageTimes()
    poses = predictor.predict_source(source, times, progress=progress, batch_size=batch_size)
    t = time.perf_counter()
    report = AnalysisReport(source.path, poses, times=times)
    report.outputs += _write(poses, source, out_dir, source.stem, formats)
    drawn = poses
    if filter:
        drawn = smooth(poses, filter, filter_window)  # type: ignore[arg-type]
        report.outputs += _write(drawn, source, out_dir, f"{source.stem}_filtered", [f for f in formats if f != "json"])
    if labeled_video:
        from crosspose.inference.labeled_video import (
            labeled_output_name,
            write_labeled_images,
            write_labeled_video,
        )

        target = out_dir / labeled_output_name(source.stem, source.kind, len(source.images), source.path.is_file())
        if source.kind == "video":
            report.outputs.append(write_labeled_video(source.path, drawn, target, pcutoff))
        else:
            report.outputs.append(write_labeled_images(source.images, drawn, target, pcutoff))
    if plot:
        from crosspose.inference.plots import plot_trajectories

        report.outputs.append(plot_trajectories(drawn, out_dir / f"{source.stem}_trajectories.png", pcutoff))
    times.write += time.perf_counter() - t
    return report


def analyze_video(model: str | Path | Predictor, video: str | Path, out_dir: str | Path,
                  precision: str = "auto", compile: str = "auto", **options: Any) -> AnalysisReport:
    """Analyse one video (or folder/image) with a checkpoint, ``.onnx`` or loaded Predictor.

    ``precision`` and ``compile`` apply when ``model`` is a file (see :func:`crosspose.inference.predictor.load`).

    ``options`` are :func:`analyze_input`'s (formats, labeled_video, pcutoff, filter, batch_size ...);
    ``report.times`` holds frames/s and the seconds spent decoding, resizing, in the network,
    decoding maps and writing (for ``crosspose benchmark``).
    """
    predictor = model if isinstance(model, Predictor) else load(model, precision=precision, compile=compile)
    return analyze_input(predictor, resolve_inputs([video])[0], Path(out_dir), **options)


def _formats(text: str) -> list[str]:
    formats = [f.strip().lower() for f in text.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ConfigError(f"--format {text!r}: choose from {', '.join(FORMATS)}")
    return formats


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add this command's options to ``parser``."""
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="videos (.mp4 .avi .mov .mkv), image folders or images")
    parser.add_argument("--model", required=True,
                        help="a crosspose checkpoint (.ckpt) or an exported model (.onnx); nothing else is needed")
    parser.add_argument("--out", required=True, type=Path, help="output folder (created)")
    parser.add_argument("--format", default="h5,csv,json", help="comma-separated: h5, csv, json, nwb (default: h5,csv,json; nwb = "
                             "NWB with ndx-pose: one PoseEstimationSeries per joint, the skeleton, timestamps)")
    parser.add_argument("--labeled", "--labeled-video", dest="labeled_video", action="store_true",
                        help="also draw the keypoints above --pcutoff and the skeleton: <stem>_labeled.mp4 for a "
                             "video, <stem>_labeled/ (one PNG per image) for an image folder, "
                             "<stem>_labeled.png for one image")
    parser.add_argument("--plot", action="store_true",
                        help="also write <stem>_trajectories.png: x and y of every joint over the frames")
    parser.add_argument("--pcutoff", type=float, default=0.6,
                        help="confidence below which a keypoint is not drawn (default 0.6, as DeepLabCut)")
    parser.add_argument("--filter", choices=("median", "savgol"),
                        help="also write temporally filtered <stem>_filtered.h5/.csv")
    parser.add_argument("--filter-window", type=int, default=5, help="filter length in frames, odd (default 5)")
    parser.add_argument("--batch-size", type=int, default=8, help="frames per network call (default 8)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N (default: the GPU if there is one)")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="arithmetic of a .ckpt model: auto (default) = bf16 autocast on a GPU with bf16 "
                             "(fp16 without) and on a CPU that reports bf16 units (avx512_bf16 / amx_bf16), "
                             "fp32 otherwise; fp32; bf16 (refused on a CPU without bf16 units: emulated bf16 "
                             "is slower than fp32); fp16 (GPU). An .onnx model runs in its own precision "
                             "(fp32 from export, int8 from crosspose quantize): auto, or that precision. "
                             "Maps are decoded in fp32 either way; the choice and why is printed")
    parser.add_argument("--compile", default="auto", choices=COMPILE_SETTINGS,
                        help="run a .ckpt model through torch.compile with frozen weights: auto (default) = on "
                             "for bf16 on a CPU with AMX (measured ~2x there, after seconds of compiling per "
                             "frame size), off elsewhere; on; off. Falls back to eager, with a warning, if "
                             "compiling fails; the choice and why is printed")
    parser.add_argument("--scale", default="fit",
                        help="'fit' (frames scaled to the training input size; default) or a resize factor "
                             "(1 = native resolution, for networks trained on whole frames)")


def _scale(text: str) -> float | str:
    if text == "fit":
        return text
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"--scale must be 'fit' or a positive number, got {text!r}") from None
    if not value > 0:
        raise ConfigError(f"--scale must be positive, got {text}")
    return value


def run(args: argparse.Namespace) -> int:
    """Run the command with parsed ``args``; returns the exit status."""
    formats = _formats(args.format)
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be positive, got {args.batch_size}")
    if args.filter and (args.filter_window < 3 or args.filter_window % 2 == 0):
        raise ConfigError(f"--filter-window must be an odd number >= 3, got {args.filter_window}")
    if not 0 <= args.pcutoff <= 1:
        raise ConfigError(f"--pcutoff must be in [0, 1], got {args.pcutoff}")
    scale = _scale(args.scale)
    # frames at their native size make activations of 100+ MiB; without this each batch faults them in anew
    allocator = keep_freed_memory()
    if args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"--out {args.out} is a file; give a folder for the outputs")
    predictor = load(args.model, device=args.device, scale=scale, batch_size=args.batch_size,
                     precision=args.precision, compile=args.compile)
    sources = resolve_inputs(args.inputs)  # every input checked before anything is written
    print(predictor)
    print(predictor.backend.precision.describe())
    print(predictor.backend.compiled.describe())
    print(allocator.describe())
    for source in sources:
        report = analyze_input(predictor, source, args.out, formats, args.labeled_video, args.pcutoff,
                               args.filter, args.filter_window, progress=True, plot=args.plot)
        t = report.times
        print(f"{source.path}: {t.frames} frames, {t.frames / max(t.wall, 1e-9):.1f} frames/s "
              f"-> {', '.join(str(p) for p in report.outputs)}")
    return 0
