"""Labelled output: the input's frames with the keypoints above the p-cutoff and the skeleton drawn.

A video gives a labelled video; an image folder a folder of labelled PNGs; an image a labelled PNG.
All three draw with :func:`draw_pose`.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from crosspose.core.errors import DataFormatError
from crosspose.core.io import atomic_directory, atomic_path
from crosspose.inference.results import PoseSequence

__all__ = ["draw_pose", "labeled_output_name", "write_labeled_images", "write_labeled_video"]


def _colours(k: int) -> list[tuple[int, int, int]]:
    hsv = np.stack([np.linspace(0, 179, k, endpoint=False), np.full(k, 220), np.full(k, 255)], axis=1)
    rgb = cv2.cvtColor(hsv.astype(np.uint8)[None], cv2.COLOR_HSV2RGB)[0]
    return [(int(col[0]), int(col[1]), int(col[2])) for col in rgb]


def draw_pose(frame: np.ndarray, keypoints: np.ndarray, links: tuple[tuple[int, int], ...], pcutoff: float,
              radius: int | None = None) -> np.ndarray:
    """Draw one frame's joints (confidence >= ``pcutoff``) and the limbs between two such joints, in place."""
    h, w = frame.shape[:2]
    radius = radius or max(2, round(min(h, w) / 120))
    colours = _colours(len(keypoints))
    shown = keypoints[:, 2] >= pcutoff
    for a, b in links:
        if shown[a] and shown[b]:
            pa = (round(float(keypoints[a, 0])), round(float(keypoints[a, 1])))
            pb = (round(float(keypoints[b, 0])), round(float(keypoints[b, 1])))
            cv2.line(frame, pa, pb, (255, 255, 255), max(1, radius // 2), cv2.LINE_AA)
    for j, (x, y, _) in enumerate(keypoints):
        if shown[j]:
            cv2.circle(frame, (round(float(x)), round(float(y))), radius, colours[j], -1, cv2.LINE_AA)
    return frame


def write_labeled_video(video: Path, poses: PoseSequence, target: Path, pcutoff: float) -> Path:
    """Decode ``video`` again, draw ``poses`` on every frame, encode H.264 (MPEG-4 if missing) to ``target``.

    The frame count must match ``poses`` (it came from the same decoding); nothing is left at
    ``target`` if anything fails.
    """
    import av

    from crosspose.inference.sources import InputSource, StageTimes, iter_frames

    with av.open(str(video)) as probe:
        stream = probe.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or Fraction(30)
    with atomic_path(target) as tmp, av.open(str(tmp), "w") as dst:
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        out: Any = dst.add_stream(codec, rate=rate)
        out.pix_fmt = "yuv420p"
        out.thread_type = "AUTO"
        n = 0
        # the decoder that produced the keypoints, so frame n here is frame n there
        for rgb in iter_frames(InputSource(Path(video), "video"), StageTimes()):
            if n == 0:
                out.width, out.height = rgb.shape[1] - rgb.shape[1] % 2, rgb.shape[0] - rgb.shape[0] % 2
            if n >= len(poses):
                raise DataFormatError(video, f"decoded more frames ({n + 1}) than were analysed ({len(poses)})")
            draw_pose(rgb, poses.keypoints[n], poses.links, pcutoff)
            rgb = np.ascontiguousarray(rgb[: int(out.height), : int(out.width)])  # yuv420p needs even sizes
            for packet in out.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                dst.mux(packet)
            n += 1
        for packet in out.encode():
            dst.mux(packet)
        if n != len(poses):
            raise DataFormatError(video, f"decoded {n} frames for the labelled video but {len(poses)} were analysed")
    return target


def labeled_output_name(stem: str, kind: str, images: int, single_file: bool) -> str:
    """Where the labelled output of an input goes: ``<stem>_labeled.mp4``, ``.png`` or ``<stem>_labeled/``."""
    if kind == "video":
        return f"{stem}_labeled.mp4"
    return f"{stem}_labeled.png" if single_file and images == 1 else f"{stem}_labeled"


def _png(image: np.ndarray, target: Path) -> None:
    if not cv2.imwrite(str(target), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write {target}")


def write_labeled_images(images: list[Path], poses: PoseSequence, target: Path, pcutoff: float) -> Path:
    """Draw ``poses`` on each of ``images``: one PNG at ``target`` (a ``.png`` name) or a folder of PNGs.

    In a folder each image keeps its stem (its full name when two stems collide, ``a.jpg`` and
    ``a.png``). The folder is filled under a temporary name and swapped in whole, so an error leaves
    no partial folder and an earlier run's folder is replaced only on success.
    """
    from crosspose.data.dataset import read_rgb

    if len(images) != len(poses):
        raise DataFormatError(images[0] if images else target,
                              f"{len(images)} images but {len(poses)} analysed frames")
    if target.suffix == ".png":
        with atomic_path(target) as tmp:
            _png(draw_pose(read_rgb(images[0]), poses.keypoints[0], poses.links, pcutoff), tmp)
        return target
    stems = [p.stem for p in images]
    names = [f"{p.stem}.png" for p in images] if len(set(stems)) == len(stems) else [f"{p.name}.png" for p in images]
    with atomic_directory(target) as tmp_dir:
        for path, name, keypoints in zip(images, names, poses.keypoints, strict=True):
            _png(draw_pose(read_rgb(path), keypoints, poses.links, pcutoff), tmp_dir / name)
    return target
