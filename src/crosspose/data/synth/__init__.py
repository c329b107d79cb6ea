"""The procedural two-species data set, written in the REAL release formats.

``generate("macaque", ...)`` writes ``annotations.csv`` + ``images/`` exactly like the MacaquePose
release; ``generate("human", ...)`` writes ``mpii_human_pose_v1_u12_1.mat`` (RELEASE layout) +
``images/`` like MPII. Both are then read by the same readers as the real data
(``crosspose prepare macaquepose`` / ``crosspose prepare mpii``).

Image ``i`` of a set depends only on ``(species, seed, i, size)`` (see
:func:`~crosspose.data.synth.render.sample_rng`), so the output is byte-identical for a seed whatever
the number of workers.

What the files say about each figure:

* macaques: the 17 keypoints (null outside the image, behind an occluder or another monkey, or for a
  face point turned away from the camera) and the silhouette polygons (``cv2.findContours`` of the
  figure's visible pixels; several when an occluder cuts it);
* humans: the 16 MPII joints (joints outside the image are left out, as MPII does for truncated
  joints; occluded ones are annotated with ``is_visible = 0``), the head box around the drawn head,
  ``scale`` = standing height in pixels / 200, ``objpos`` = centre of the figure's extent, and
  ``single_person`` listing the persons whose boxes do not touch another person's.
"""

from __future__ import annotations

import math
import multiprocessing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from crosspose.core.errors import ConfigError
from crosspose.core.io import atomic_write_bytes
from crosspose.data.synth.render import RenderedFigure, Sample, render_sample, sample_rng

__all__ = [
    "JPEG_QUALITY",
    "MACAQUE_FILE",
    "MPII_FILE",
    "RenderedFigure",
    "Sample",
    "generate",
    "image_name",
    "render_sample",
    "sample_rng",
    "silhouette_polygons",
]

MPII_FILE = "mpii_human_pose_v1_u12_1.mat"
"""Name of the human release file (as the official download)."""
MACAQUE_FILE = "annotations.csv"
"""Name of the macaque release file."""
JPEG_QUALITY = 92
"""Quality of the written JPEGs (the releases ship JPEGs too)."""


def image_name(species: str, index: int) -> str:
    """File name of image ``index`` under ``images/``."""
    return f"{species}_{index:06d}.jpg"


def silhouette_polygons(mask: np.ndarray, min_area: float = 4.0) -> list[list[tuple[float, float]]]:
    """Outer contours of a boolean mask as vertex lists (several when the silhouette is cut)."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = []
    for c in contours:
        if cv2.contourArea(c) < min_area:
            continue
        c = cv2.approxPolyDP(c, 0.7, True)
        if len(c) >= 3:
            polygons.append([(float(x), float(y)) for x, y in c[:, 0]])
    return polygons


def _separated(figures: Sequence[RenderedFigure]) -> list[int]:
    """1-based indices of the persons whose (slightly grown) boxes touch no other person's box."""
    boxes = []
    for f in figures:
        lo, hi = f.keypoints.min(0), f.keypoints.max(0)
        grow = 0.1 * f.height_px
        boxes.append((lo - grow, hi + grow))
    out = []
    for i, (lo, hi) in enumerate(boxes):
        if all(np.any(hi < lo2) or np.any(hi2 < lo) for j, (lo2, hi2) in enumerate(boxes) if j != i):
            out.append(i + 1)
    return out


def _annotate(species: str, sample: Sample, name: str) -> Any:
    """The release record of one rendered image (a MacaquePose row or an MPII ``annolist`` entry)."""
    if species == "macaque":
        from crosspose.data.macaquepose import MacaqueInstance

        return name, [MacaqueInstance(
            keypoints=[(float(x), float(y)) if ok else None for (x, y), ok in zip(f.keypoints, f.labelled, strict=True)],
            polygons=silhouette_polygons(f.mask)) for f in sample.figures]
    from crosspose.data.mpii import MpiiImage, MpiiPerson

    persons = []
    for f in sample.figures:
        joints = np.where(f.labelled[:, None], f.keypoints, np.nan)
        persons.append(MpiiPerson(joints=joints, visible=f.visible.copy(), head_box=f.head_box,
                                  scale=f.height_px / 200.0, objpos=f.center))
    return MpiiImage(name=name, persons=persons, is_train=True, single_person=_separated(sample.figures))


def _make_one(job: tuple[str, int, int, int, str]) -> Any:
    """Render, save and annotate one image (runs in a worker process when ``workers > 1``)."""
    species, seed, index, size, images_dir = job
    sample = render_sample(species, seed, index, size)
    name = image_name(species, index)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(sample.image, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:  # pragma: no cover - cv2 always encodes a valid uint8 image
        raise RuntimeError(f"could not encode {name}")
    atomic_write_bytes(Path(images_dir) / name, buf.tobytes())
    return _annotate(species, sample, name)


def _worker_init() -> None:
    cv2.setNumThreads(1)  # one process per core; cv2's own threads would only compete


def generate(
    species: Literal["human", "macaque"],
    count: int,
    out: str | Path,
    seed: int,
    size: int = 256,
    workers: int = 1,
) -> Path:
    """Write ``count`` synthetic images of one species in its release format under ``out``.

    Args:
        species: ``"human"`` (MPII layout) or ``"macaque"`` (MacaquePose layout).
        count: number of images (one figure each, two in about 15%).
        out: output folder; gets ``images/`` and the annotation file.
        seed: the set's seed: the same seed gives byte-identical files.
        size: side of the square images in pixels.
        workers: processes to render with; does not change the output.

    Returns:
        The annotation file: ``out/annotations.csv`` (macaques) or ``out/mpii_human_pose_v1_u12_1.mat``
        (humans).

    Raises:
        ConfigError: unknown species or a non-positive count, size below 32 or workers below 1.
    """
    if species not in ("human", "macaque"):
        raise ConfigError(f"species must be 'human' or 'macaque', not {species!r}")
    if int(count) < 1:
        raise ConfigError(f"count must be at least 1, not {count}")
    if int(size) < 32:
        raise ConfigError(f"size must be at least 32 pixels, not {size}")
    if int(workers) < 1:
        raise ConfigError(f"workers must be at least 1, not {workers}")
    out = Path(out)
    images_dir = out / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(species, int(seed), i, int(size), str(images_dir)) for i in range(int(count))]
    if workers == 1:
        threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
        try:
            records = [_make_one(job) for job in jobs]
        finally:
            cv2.setNumThreads(threads)
    else:
        # spawn: safe even when the caller has torch's thread pools running (fork is not)
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(int(workers), initializer=_worker_init) as pool:
            chunk = max(1, min(32, math.ceil(len(jobs) / (4 * workers))))
            records = pool.map(_make_one, jobs, chunksize=chunk)
    if species == "macaque":
        from crosspose.data.macaquepose import write_release_csv

        return write_release_csv(out / MACAQUE_FILE, records, name_style="space")
    from crosspose.data.mpii import write_release_mat

    return write_release_mat(out / MPII_FILE, records)


