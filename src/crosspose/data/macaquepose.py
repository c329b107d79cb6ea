"""MacaquePose release (``annotations.csv`` + ``images/``): reader, writer and per-monkey crops.

The release CSV has one row per image and the header ``image file name,keypoinbts,segmentation``
(the second column is misspelled in the release; ``keypoints`` is accepted too). Both JSON cells
list the monkeys of the image in the same order:

- ``keypoinbts``: per monkey, 17 ``{"name": ..., "position": [x, y] | null}`` dicts. Names are
  matched by name (spaces or underscores), never by position in the list.
- ``segmentation``: per monkey, a list of ``{"segment": [[x, y], ...]}`` polygons (several when
  the monkey is occluded, possibly empty).

Each monkey becomes one COCO annotation whose ``bbox`` and ``area`` are computed as mmpose's
converter does (bbox over all polygon vertices with the ``+ 1`` on width and height, area the sum
of the polygons' shoelace areas), so our JSON matches mmpose's ``macaque_*.json`` number for number.
A monkey without any non-empty polygon (mmpose would write a nonsense box) gets the tight box
around its labelled keypoints and ``area = w * h``.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, Literal

import numpy as np

from crosspose.core.errors import DataFormatError
from crosspose.core.io import atomic_path
from crosspose.core.skeletons import MACAQUE, canonical_joint_name
from crosspose.data.coco import bbox_from_keypoints, save_coco_keypoints
from crosspose.data.images import decode_bgr, image_size

__all__ = [
    "CSV_HEADER",
    "MacaqueInstance",
    "MacaqueRow",
    "crop_instance",
    "instance_annotation",
    "instance_bbox_area",
    "parse_release_csv",
    "polygon_area",
    "read_macaquepose",
    "write_release_csv",
]

CSV_HEADER = ("image file name", "keypoinbts", "segmentation")
"""The release's header, misspelling included."""

_KEYPOINT_COLUMNS = ("keypoinbts", "keypoints")
_NAME_INDEX = {canonical_joint_name(n): i for i, n in enumerate(MACAQUE.keypoints)}


@dataclass
class MacaqueInstance:
    """One monkey as the release stores it.

    Attributes:
        keypoints: 17 entries in ``MACAQUE.keypoints`` order, 0-based pixels, ``None`` = null.
        polygons: the monkey's polygons (vertex lists in pixels); a polygon may be empty.
    """

    keypoints: list[tuple[float, float] | None]
    polygons: list[list[tuple[float, float]]] = field(default_factory=list)


@dataclass
class MacaqueRow:
    """One CSV row: an image and its monkeys. ``row`` is the 1-based data row (header excluded)."""

    row: int
    image: str
    instances: list[MacaqueInstance]


# --------------------------------------------------------------------------------------- reading


@contextlib.contextmanager
def _wide_csv_fields() -> Iterator[None]:
    """Polygon cells of the release exceed csv's default 128 KiB field limit."""
    old = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)
    try:
        yield
    finally:
        csv.field_size_limit(old)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _point(v: Any, what: str, fail: Callable[[str], Exception]) -> tuple[float, float]:
    if not isinstance(v, list) or len(v) != 2 or not all(_is_number(c) for c in v):
        raise fail(f"{what} must be [x, y] with two finite numbers, got {json.dumps(v)[:60]}")
    return float(v[0]), float(v[1])


def _parse_keypoints(cell: Any, fail: Callable[[str], Exception]) -> list[list[tuple[float, float] | None]]:
    if not isinstance(cell, list):
        raise fail("the keypoints cell must be a JSON list over monkeys")
    monkeys = []
    for m, monkey in enumerate(cell, 1):
        if not isinstance(monkey, list):
            raise fail(f"keypoints of monkey {m} must be a list of {{name, position}} entries")
        points: list[tuple[float, float] | None] = [None] * MACAQUE.num_keypoints
        seen: set[int] = set()
        for entry in monkey:
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or "position" not in entry:
                raise fail(f"monkey {m}: a keypoint entry must be {{\"name\": str, \"position\": [x, y] | null}}, "
                           f"got {json.dumps(entry)[:60]}")
            k = _NAME_INDEX.get(canonical_joint_name(entry["name"]))
            if k is None:
                raise fail(f"monkey {m}: unknown keypoint name {entry['name']!r}")
            if k in seen:
                raise fail(f"monkey {m}: keypoint {entry['name']!r} is listed twice")
            seen.add(k)
            if entry["position"] is not None:
                points[k] = _point(entry["position"], f"monkey {m} {entry['name']!r} position", fail)
        monkeys.append(points)
    return monkeys


def _parse_segmentation(cell: Any, fail: Callable[[str], Exception]) -> list[list[list[tuple[float, float]]]]:
    if not isinstance(cell, list):
        raise fail("the segmentation cell must be a JSON list over monkeys")
    monkeys = []
    for m, polys in enumerate(cell, 1):
        if not isinstance(polys, list):
            raise fail(f"segmentation of monkey {m} must be a list of {{\"segment\": [[x, y], ...]}} entries")
        out = []
        for p, poly in enumerate(polys, 1):
            if not isinstance(poly, dict) or not isinstance(poly.get("segment"), list):
                raise fail(f"monkey {m} polygon {p} must be {{\"segment\": [[x, y], ...]}}, "
                           f"got {json.dumps(poly)[:60]}")
            out.append([_point(v, f"monkey {m} polygon {p} vertex", fail) for v in poly["segment"]])
        monkeys.append(out)
    return monkeys


def parse_release_csv(path: str | PathLike[str]) -> list[MacaqueRow]:
    """Read and validate a MacaquePose ``annotations.csv``.

    Raises:
        DataFormatError: naming the file, the row (and image) and the problem, for a missing file,
            a wrong header, a truncated row, a cell that is not JSON or not in the release layout,
            or an image listed twice.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "file not found")
    rows: list[MacaqueRow] = []
    first_row: dict[str, int] = {}
    number, last_line = 0, 0  # the last complete data row, for errors csv raises mid-row
    try:
        with _wide_csv_fields(), path.open("r", encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh, strict=True)
            header = next(reader, None)
            if header is None:
                raise DataFormatError(path, "empty file (expected the header "
                                            f"'{','.join(CSV_HEADER)}')")
            cols = [h.strip().lower() for h in header]
            try:
                i_name = cols.index("image file name")
                i_kp = next(cols.index(c) for c in _KEYPOINT_COLUMNS if c in cols)
                i_seg = cols.index("segmentation")
            except (ValueError, StopIteration):
                raise DataFormatError(path, f"header {header!r} is not the MacaquePose header "
                                            f"'{','.join(CSV_HEADER)}'", "line 1") from None
            width = max(i_name, i_kp, i_seg) + 1
            last_line = reader.line_num
            for cells in reader:
                if not cells or (len(cells) == 1 and not cells[0].strip()):
                    last_line = reader.line_num
                    continue  # blank line
                number += 1
                image = cells[0].strip() if cells else ""
                where = f"row {number} (line {reader.line_num}, image {image!r})"

                def fail(problem: str, where: str = where) -> DataFormatError:
                    return DataFormatError(path, problem, where)

                if len(cells) < width:
                    raise fail(f"truncated row: {len(cells)} cell(s), expected {width} "
                               f"({', '.join(CSV_HEADER)})")
                image = cells[i_name].strip()
                if not image:
                    raise fail("empty image file name")
                parsed = []
                for column, idx in (("keypoints", i_kp), ("segmentation", i_seg)):
                    try:
                        parsed.append(json.loads(cells[idx]))
                    except json.JSONDecodeError as exc:
                        raise fail(f"the {header[idx].strip()!r} cell is not valid JSON "
                                   f"({exc.msg} at character {exc.pos})") from None
                    except RecursionError:
                        raise fail(f"the {column} cell is nested too deeply") from None
                kps = _parse_keypoints(parsed[0], fail)
                segs = _parse_segmentation(parsed[1], fail)
                if len(kps) != len(segs):
                    raise fail(f"{header[i_kp].strip()!r} lists {len(kps)} monkey(s) but 'segmentation' "
                               f"lists {len(segs)}")
                if image in first_row:
                    raise fail(f"image listed twice (first in row {first_row[image]})")
                first_row[image] = number
                last_line = reader.line_num
                rows.append(MacaqueRow(number, image, [MacaqueInstance(k, s) for k, s in zip(kps, segs,
                                                                                         strict=True)]))
    except csv.Error as exc:
        raise DataFormatError(path, f"broken CSV ({exc}); a quoted JSON cell is probably truncated",
                              f"row {number + 1} (from line {last_line + 1})") from None
    except UnicodeDecodeError:
        raise DataFormatError(path, "not a UTF-8 text file") from None
    return rows


# --------------------------------------------------------------------------------------- writing


def write_release_csv(
    path: str | PathLike[str],
    entries: Sequence[tuple[str, Sequence[MacaqueInstance]]],
    name_style: Literal["underscore", "space"] = "underscore",
) -> Path:
    """Write an ``annotations.csv`` in the release layout (header misspelling included).

    Args:
        path: the CSV file to write (parent folders are created).
        entries: ``(image file name relative to images/, monkeys in that image)`` per row.
        name_style: keypoint names as ``left_eye`` or ``left eye``.
    """
    if name_style not in ("underscore", "space"):
        raise ValueError(f"name_style must be 'underscore' or 'space', not {name_style!r}")
    names = [n.replace("_", " ") if name_style == "space" else n for n in MACAQUE.keypoints]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)  # "\r\n" line ends and minimal quoting, as the release
        writer.writerow(CSV_HEADER)
        for image, instances in entries:
            kps, segs = [], []
            for inst in instances:
                if len(inst.keypoints) != MACAQUE.num_keypoints:
                    raise ValueError(f"{image}: a monkey needs {MACAQUE.num_keypoints} keypoints, "
                                     f"got {len(inst.keypoints)}")
                kps.append([{"name": n, "position": None if p is None else [float(p[0]), float(p[1])]}
                            for n, p in zip(names, inst.keypoints, strict=True)])
                segs.append([{"segment": [[float(x), float(y)] for x, y in poly]} for poly in inst.polygons])
            writer.writerow([image, json.dumps(kps), json.dumps(segs)])
    return path


# ------------------------------------------------------------------------------ COCO conversion


def polygon_area(polygon: Sequence[tuple[float, float]]) -> float:
    """Shoelace area of one polygon (0 for fewer than 3 vertices)."""
    if len(polygon) < 3:
        return 0.0
    xy = np.asarray(polygon, dtype=np.float64)
    x, y = xy[:, 0], xy[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def instance_bbox_area(inst: MacaqueInstance) -> tuple[list[float], float]:
    """``([x, y, w, h], area)`` as mmpose's converter computes them.

    The box spans every polygon vertex, with ``+ 1`` on width and height (mmpose counts pixels);
    the area is the sum of the polygons' shoelace areas. Without any non-empty polygon: the tight
    box around the labelled keypoints and ``area = w * h``.
    """
    polys = [p for p in inst.polygons if len(p) > 0]
    if polys:
        xy = np.concatenate([np.asarray(p, dtype=np.float64) for p in polys])
        lo, hi = xy.min(0), xy.max(0)
        bbox = [float(lo[0]), float(lo[1]), float(hi[0] - lo[0] + 1), float(hi[1] - lo[1] + 1)]
        return bbox, float(sum(polygon_area(p) for p in polys))
    bbox = bbox_from_keypoints(_keypoint_array(inst))
    return bbox, float(bbox[2] * bbox[3])


def _keypoint_array(inst: MacaqueInstance) -> np.ndarray:
    kps = np.zeros((MACAQUE.num_keypoints, 3))
    for k, p in enumerate(inst.keypoints):
        if p is not None:
            kps[k] = (p[0], p[1], 2.0)  # the release has no visibility flag: labelled = visible
    return kps


def instance_annotation(inst: MacaqueInstance, ann_id: int, image_id: int) -> dict[str, Any]:
    """The COCO annotation of one monkey (mmpose's fields and numbers)."""
    kps = _keypoint_array(inst)
    bbox, area = instance_bbox_area(inst)
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": 1,
        "keypoints": kps.reshape(-1).tolist(),
        "num_keypoints": int((kps[:, 2] > 0).sum()),
        "bbox": bbox,
        "area": area,
        "iscrowd": 0,
        "segmentation": [np.asarray(p, dtype=np.float64).reshape(-1).tolist() for p in inst.polygons if p],
    }


def crop_instance(
    image: np.ndarray, inst: MacaqueInstance, length: int = 640
) -> tuple[np.ndarray, MacaqueInstance] | None:
    """Cut one monkey out by its mask, as the paper did.

    The crop spans the mask's polygons and the labelled keypoints (clipped to the image), every
    pixel outside the mask is blanked to black, and the crop is resized so its longer side is
    ``length`` px with the aspect ratio kept. Keypoints and polygons are mapped with the resize's
    pixel-centre convention ``x' = (x - x0 + 0.5) * s - 0.5``.

    Returns:
        ``(crop, monkey in crop coordinates)``, or ``None`` when the monkey has no non-empty polygon
        or its box lies outside the image.
    """
    import cv2

    polys = [np.asarray(p, dtype=np.float64) for p in inst.polygons if len(p) > 0]
    if not polys:
        return None
    h, w = image.shape[:2]
    pts = np.concatenate([*polys, np.asarray([p for p in inst.keypoints if p is not None], dtype=np.float64).reshape(-1, 2)])
    x0, y0 = max(0, math.floor(pts[:, 0].min())), max(0, math.floor(pts[:, 1].min()))
    x1, y1 = min(w, math.floor(pts[:, 0].max()) + 1), min(h, math.floor(pts[:, 1].max()) + 1)
    if x1 <= x0 or y1 <= y0:
        return None
    cw, ch = x1 - x0, y1 - y0
    mask = np.zeros((ch, cw), dtype=np.uint8)
    shift = 4  # sub-pixel polygon vertices for fillPoly
    cv2.fillPoly(mask, [np.round((p - (x0, y0)) * (1 << shift)).astype(np.int32) for p in polys], 255,
                 lineType=cv2.LINE_8, shift=shift)
    crop = image[y0:y1, x0:x1].copy()
    crop[mask == 0] = 0
    s = length / max(cw, ch)
    nw, nh = max(1, round(cw * s)), max(1, round(ch * s))
    sx, sy = nw / cw, nh / ch
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    crop = cv2.resize(crop, (nw, nh), interpolation=interp)

    def tr(p: tuple[float, float]) -> tuple[float, float]:
        return ((p[0] - x0 + 0.5) * sx - 0.5, (p[1] - y0 + 0.5) * sy - 0.5)

    moved = MacaqueInstance(
        keypoints=[None if p is None else tr(p) for p in inst.keypoints],
        polygons=[[tr(v) for v in poly] for poly in inst.polygons],
    )
    return crop, moved


def _image_size(path: Path) -> tuple[int, int]:
    return image_size(path)


def _check_images(csv_path: Path, images_dir: Path, rows: Sequence[MacaqueRow]) -> None:
    missing = [r for r in rows if not (images_dir / r.image).is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more missing)" if len(missing) > 1 else ""
        first = missing[0]
        raise DataFormatError(csv_path, f"image {first.image!r} is listed but missing from {images_dir}{more}",
                              f"row {first.row}")


def read_macaquepose(
    root: str | PathLike[str],
    out_json: str | PathLike[str],
    crops_dir: str | PathLike[str] | None = None,
    length: int = 640,
    csv_path: str | PathLike[str] | None = None,
    images_dir: str | PathLike[str] | None = None,
) -> Path:
    """Convert a MacaquePose release to the common COCO keypoints format.

    Args:
        root: the release folder (``annotations.csv`` + ``images/``).
        out_json: the COCO file to write; ``file_name`` entries are relative to its folder.
        crops_dir: when given, write one crop per monkey there (see :func:`crop_instance`) and
            make the JSON describe the crops (one image, one annotation each; ``source_image`` and
            ``source_annotation`` say where each came from). Monkeys without a polygon are skipped.
        length: longer side of the crops in pixels.
        csv_path, images_dir: override ``root/annotations.csv`` and ``root/images``.

    Returns:
        The path of the written JSON.

    Raises:
        DataFormatError: malformed CSV (see :func:`parse_release_csv`), an image listed but
            missing, or an image that cannot be read.
    """
    root = Path(root)
    csv_path = Path(csv_path) if csv_path is not None else root / "annotations.csv"
    images_dir = Path(images_dir) if images_dir is not None else root / "images"
    out_json = Path(out_json)
    if length < 1:
        raise ValueError("length must be a positive number of pixels")
    rows = parse_release_csv(csv_path)
    _check_images(csv_path, images_dir, rows)
    json_dir = out_json.parent
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    info: dict[str, Any] = {"description": "MacaquePose converted by crosspose prepare macaquepose",
            "source": str(csv_path)}
    if crops_dir is None:
        for image_id, row in enumerate(rows, 1):
            src = images_dir / row.image
            w, h = _image_size(src)
            images.append({"id": image_id, "file_name": os.path.relpath(src, json_dir), "width": w, "height": h})
            for inst in row.instances:
                annotations.append(instance_annotation(inst, len(annotations) + 1, image_id))
    else:
        import cv2

        crops_dir = Path(crops_dir)
        skipped = 0
        for row in rows:
            src = images_dir / row.image
            pixels = decode_bgr(src, where=f"row {row.row} of {csv_path}")
            for m, inst in enumerate(row.instances, 1):
                cropped = crop_instance(pixels, inst, length)
                if cropped is None:
                    skipped += 1
                    continue
                crop, moved = cropped
                rel = Path(row.image)
                dst = crops_dir / rel.parent / f"{rel.stem}_{m}{rel.suffix or '.jpg'}"
                dst.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(dst) as tmp:
                    if not cv2.imwrite(str(tmp), crop):
                        raise DataFormatError(dst, "cannot write the crop (unsupported extension or disk full?)")
                crop_id = len(images) + 1
                images.append({"id": crop_id, "file_name": os.path.relpath(dst, json_dir),
                               "width": int(crop.shape[1]), "height": int(crop.shape[0]),
                               "source_image": row.image, "source_annotation": m})
                annotations.append(instance_annotation(moved, len(annotations) + 1, crop_id))
        info.update({"crops": str(crops_dir), "crop_length": length, "skipped_without_mask": skipped})
    return save_coco_keypoints(out_json, images, annotations, MACAQUE.coco_category(), info=info)
