"""MPII Human Pose: the official RELEASE .mat and the HRNet/mmpose JSON form, reader and writer.

Both forms are read into :class:`MpiiImage` / :class:`MpiiPerson` records (0-based pixels, NaN
where absent) and written to the common COCO keypoints format by :func:`read_mpii`.

The release .mat and its quirks live in :mod:`crosspose.data.mpii_release`; its records and
readers are exported here too, so ``crosspose.data.mpii`` is the one place to import MPII from.

Visibility in the COCO output: ``v = 2`` for an annotated joint with ``is_visible`` 1 or empty
(mostly neck and head top, which are rarely occluded), ``v = 1`` for ``is_visible`` 0, ``v = 0``
for a joint that is not annotated. The JSON form has no visibility (its ``joints_vis`` means
*annotated*), so every annotated joint there is ``v = 2``.

Head boxes of the JSON form live in HRNet's ``gt_valid.mat`` (``headboxes_src``, 2x2xN, 1-based,
one column per JSON person in order). Without that file they are *derived*: a square centred
between upper neck and head top whose diagonal is ``25 * scale / 0.6``. On the validation split
``scale`` was computed from the head box as ``0.6 * diagonal / 25`` (true to 1e-15 on all 2958
persons of ``detections.mat``), so the derived box gives exactly the official head size
``0.6 * diagonal`` used by PCKh; its position is an approximation.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from crosspose.core.errors import ConfigError, DataFormatError
from crosspose.core.io import atomic_path
from crosspose.core.skeletons import MPII
from crosspose.data.coco import bbox_from_keypoints, read_json_file, save_coco_keypoints
from crosspose.data.images import decode_bgr, image_size
from crosspose.data.mpii_release import (
    HEAD_SIZE_FACTOR,
    MALFORMED_ERRORS,
    NO_HEAD_BOX,
    NUM_JOINTS,
    MalformedField,
    MpiiImage,
    MpiiPerson,
    load_mat,
    load_release_mat,
    parse_release,
    write_release_mat,
)

__all__ = [
    "HEAD_SIZE_FACTOR",
    "NUM_JOINTS",
    "MpiiImage",
    "MpiiPerson",
    "load_head_boxes",
    "load_mpii_json",
    "load_release_mat",
    "parse_release",
    "person_annotation",
    "read_mpii",
    "select_images",
    "split_paths",
    "write_release_mat",
]

_UPPER_NECK, _HEAD_TOP = MPII.index("upper_neck"), MPII.index("head_top")


# ------------------------------------------------------------------------------ the JSON form


def load_head_boxes(path: str | PathLike[str]) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Read HRNet's ``gt_valid.mat`` / mmpose's ``mpii_gt_val.mat``.

    Returns:
        ``(boxes (N, 4) x1 y1 x2 y2 0-based, joints (N, 16, 2) 0-based or None,
        missing (N, 16) bool or None)``; the joints serve to check the file matches the JSON.
    """
    path = Path(path)
    data = load_mat(path)
    hb = data.get("headboxes_src")
    if not isinstance(hb, np.ndarray) or hb.ndim != 3 or hb.shape[:2] != (2, 2) or hb.dtype.kind not in "biuf":
        raise DataFormatError(path, "no 'headboxes_src' array of shape 2x2xN (HRNet's gt_valid.mat layout)")
    hb = hb.astype(np.float64)
    boxes = np.stack([hb[0, 0], hb[0, 1], hb[1, 0], hb[1, 1]], axis=1) - 1
    joints = missing = None
    pos, miss = data.get("pos_gt_src"), data.get("jnt_missing")
    if isinstance(pos, np.ndarray) and pos.shape == (NUM_JOINTS, 2, len(boxes)) and pos.dtype.kind in "biuf":
        joints = np.transpose(pos.astype(np.float64), (2, 0, 1)) - 1
        if isinstance(miss, np.ndarray) and miss.shape == (NUM_JOINTS, len(boxes)):
            missing = miss.T.astype(bool)
    return boxes, joints, missing


def _derived_head_box(joints: np.ndarray, scale: float) -> tuple[float, float, float, float]:
    """Square between upper neck and head top with ``0.6 x diagonal = 25 x scale``."""
    neck, top = joints[_UPPER_NECK], joints[_HEAD_TOP]
    if not (np.isfinite(neck).all() and np.isfinite(top).all() and math.isfinite(scale)):
        return NO_HEAD_BOX
    cx, cy = (neck + top) / 2
    half = 25 * scale / HEAD_SIZE_FACTOR / math.sqrt(2) / 2
    return (float(cx - half), float(cy - half), float(cx + half), float(cy + half))


def _xy(v: Any, what: str) -> tuple[float, float]:
    if (not isinstance(v, list) or len(v) != 2
            or not all(isinstance(c, int | float) and not isinstance(c, bool) and math.isfinite(c) for c in v)):
        raise MalformedField(f"{what} must be [x, y] with two finite numbers, got {json.dumps(v)[:60]}")
    return float(v[0]), float(v[1])


def load_mpii_json(
    path: str | PathLike[str], head_boxes: str | PathLike[str] | None = None
) -> tuple[list[MpiiImage], str]:
    """Read the HRNet/mmpose MPII JSON (a list of persons, 1-based coordinates) into images.

    Persons are grouped by image in order of first appearance. Coordinates and ``center`` are
    1-based in this form (HRNet subtracts 1 on load) and are returned 0-based.

    Args:
        path: ``mpii_train.json`` / ``mpii_val.json`` (or mmpose's test sample).
        head_boxes: HRNet's ``gt_valid.mat``, one head box per JSON person in order; without it
            head boxes are derived from ``scale`` (module docstring).

    Returns:
        ``(images, how the head boxes were obtained)``.
    """
    path = Path(path)
    raw = read_json_file(path)
    if not isinstance(raw, list):
        raise DataFormatError(path, "not the HRNet/mmpose MPII form: expected a list of persons "
                                    "(a COCO file needs no conversion)")
    boxes = gt_joints = gt_missing = None
    if head_boxes is not None:
        boxes, gt_joints, gt_missing = load_head_boxes(head_boxes)
        if len(boxes) != len(raw):
            raise DataFormatError(head_boxes, f"holds {len(boxes)} head boxes but {path} lists {len(raw)} "
                                              "persons; the head-box file must belong to this JSON")
    by_name: dict[str, MpiiImage] = {}
    for i, person in enumerate(raw):
        where = f"person {i} (image {person.get('image')!r})" if isinstance(person, dict) else f"person {i}"
        try:
            if not isinstance(person, dict) or not isinstance(person.get("image"), str) or not person["image"]:
                raise MalformedField("a person must be an object with an 'image' name")
            scale = person.get("scale", math.nan)
            if not isinstance(scale, int | float) or isinstance(scale, bool):
                raise MalformedField(f"'scale' must be a number, got {scale!r}")
            scale = float(scale) if math.isfinite(scale) and scale > 0 else math.nan
            center = _xy(person["center"], "'center'") if "center" in person else (math.nan, math.nan)
            objpos = (center[0] - 1, center[1] - 1) if center[0] != -1 else (math.nan, math.nan)
            joints = np.full((NUM_JOINTS, 2), np.nan)
            if "joints" in person:
                js, vis = person["joints"], person.get("joints_vis")
                if not isinstance(js, list) or len(js) != NUM_JOINTS:
                    raise MalformedField(f"'joints' must list {NUM_JOINTS} [x, y] pairs")
                if not isinstance(vis, list) or len(vis) != NUM_JOINTS or not all(v in (0, 1) for v in vis):
                    raise MalformedField(f"'joints_vis' must list {NUM_JOINTS} flags 0 or 1")
                for k, (xy, v) in enumerate(zip(js, vis, strict=True)):
                    x, y = _xy(xy, f"joints[{k}]")
                    if v:
                        joints[k] = (x - 1, y - 1)
        except MALFORMED_ERRORS as exc:
            raise DataFormatError(path, str(exc), where) from None
        if boxes is not None:
            head_box = tuple(float(v) for v in boxes[i])
            if gt_joints is not None:
                both = np.isfinite(joints).all(1)
                if gt_missing is not None:
                    both &= ~gt_missing[i]
                if both.any() and np.abs(gt_joints[i][both] - joints[both]).max() > 1.0:
                    raise DataFormatError(head_boxes or path, f"person {i} does not match {path.name} person {i} "
                                                      f"(image {person['image']}); the head-box file belongs "
                                                      "to another split")
        else:
            head_box = _derived_head_box(joints, scale)
        img = by_name.setdefault(person["image"], MpiiImage(name=person["image"]))
        img.persons.append(MpiiPerson(joints=joints, visible=np.isfinite(joints).all(1),
                                      head_box=head_box, scale=scale, objpos=objpos))  # type: ignore[arg-type]
    how = (f"head boxes from {head_boxes}" if head_boxes is not None else
           "head boxes derived from scale: square between upper neck and head top, "
           "0.6 x diagonal = 25 x scale")
    return list(by_name.values()), how


# ------------------------------------------------------------------------------ COCO conversion


def _move(x: float, s: float) -> float:
    """Map a 0-based pixel coordinate through a resize by ``s`` (pixel-centre convention)."""
    return (x + 0.5) * s - 0.5 if s != 1.0 else x


def person_annotation(
    person: MpiiPerson, ann_id: int, image_id: int, sx: float = 1.0, sy: float = 1.0,
    person_index: int | None = None,
) -> dict[str, Any]:
    """The COCO annotation of one person, coordinates resized by ``(sx, sy)``.

    ``bbox`` is the square of side ``200 x scale`` (the person height) centred on ``objpos``,
    not clipped to the image and *without* HRNet's ``+15 x scale`` downward centre shift and 1.25
    enlargement, which belong to the top-down crop of the data module; without ``scale`` or
    ``objpos`` it is the tight box around the joints. ``area`` is the bbox's ``w x h``.
    ``scale`` follows the height (``x sy``).
    """
    joints = np.asarray(person.joints, dtype=np.float64).reshape(NUM_JOINTS, 2)
    kps = np.zeros((NUM_JOINTS, 3))
    for k in range(NUM_JOINTS):
        if np.isfinite(joints[k]).all():
            kps[k] = (_move(joints[k, 0], sx), _move(joints[k, 1], sy), 2.0 if person.visible[k] else 1.0)
    ann: dict[str, Any] = {"id": ann_id, "image_id": image_id, "category_id": 1,
                           "keypoints": kps.reshape(-1).tolist(),
                           "num_keypoints": int((kps[:, 2] > 0).sum()), "iscrowd": 0}
    cx, cy = person.objpos
    have_centre = math.isfinite(cx) and math.isfinite(cy)
    if have_centre:
        ann["center"] = [_move(cx, sx), _move(cy, sy)]
    if math.isfinite(person.scale):
        ann["scale"] = person.scale * sy
    if have_centre and math.isfinite(person.scale):
        half = 100.0 * person.scale
        ann["bbox"] = [ann["center"][0] - half * sx, ann["center"][1] - half * sy, 2 * half * sx, 2 * half * sy]
    else:
        ann["bbox"] = bbox_from_keypoints(kps)
    ann["area"] = float(ann["bbox"][2] * ann["bbox"][3])
    if all(math.isfinite(v) for v in person.head_box):
        x1, y1, x2, y2 = person.head_box
        ann["head_box"] = [_move(x1, sx), _move(y1, sy), _move(x2, sx), _move(y2, sy)]
    if person_index is not None:
        ann["person_index"] = person_index
    return ann


def select_images(
    images: Sequence[MpiiImage], *, single_person: bool = False, subset: int | None = None,
    seed: int = 0, train_only: bool = True,
) -> list[tuple[int, MpiiImage, list[int]]]:
    """Choose images and persons to convert.

    Returns ``(image index 0-based, image, 0-based indices of the kept persons)``: annotated
    persons (at least one joint) of the training images; with ``single_person`` only images with
    exactly one annotated person listed in ``single_person``, and only that person; with
    ``subset`` a random ``subset`` of those images drawn with ``numpy.random.default_rng(seed)``.
    """
    chosen = []
    for i, img in enumerate(images):
        if train_only and not img.is_train:
            continue
        keep = [r for r, p in enumerate(img.persons) if p.annotated.any()]
        if single_person:
            if img.single_person is None:
                raise ConfigError("--single-person needs the official .mat: this data has no "
                                  "single_person lists")
            separated = set(img.single_person)
            keep = [r for r in keep if r + 1 in separated]
            if len(keep) != 1:
                continue
        if keep:
            chosen.append((i, img, keep))
    if subset is not None:
        if not 0 < subset <= len(chosen):
            raise ConfigError(f"--subset {subset}: only {len(chosen)} images qualify")
        picks = np.random.default_rng(seed).choice(len(chosen), size=subset, replace=False)
        chosen = [chosen[j] for j in sorted(int(p) for p in picks)]
    return chosen


def split_paths(out_json: str | PathLike[str]) -> tuple[Path, Path]:
    """``OUT.json`` -> ``(OUT_train.json, OUT_val.json)``."""
    out = Path(out_json)
    return out.with_name(f"{out.stem}_train{out.suffix}"), out.with_name(f"{out.stem}_val{out.suffix}")


def _image_size(path: Path) -> tuple[int, int] | None:
    if not path.is_file():
        return None
    return image_size(path)


def read_mpii(
    annotations: str | PathLike[str],
    images_dir: str | PathLike[str],
    out_json: str | PathLike[str],
    *,
    head_boxes: str | PathLike[str] | None = None,
    single_person: bool = False,
    subset: int | None = None,
    seed: int = 0,
    val_fraction: float | None = None,
    resize: tuple[int, int | None] | None = None,
    check_images: bool = False,
) -> list[Path]:
    """Convert MPII (RELEASE .mat or HRNet/mmpose JSON) to COCO keypoints.

    Args:
        annotations: the ``.mat`` (official release) or ``.json`` (HRNet/mmpose form).
        images_dir: the MPII ``images/`` folder; ``file_name`` is written relative to the JSON.
        out_json: output file; with ``val_fraction`` see :func:`split_paths`.
        head_boxes: ``gt_valid.mat`` for the JSON form (see :func:`load_mpii_json`).
        single_person, subset, seed: see :func:`select_images`.
        val_fraction: fraction of the selected images (drawn with ``seed``) written to the
            ``_val`` file, the rest to ``_train``; split by image so no image is in both.
        resize: ``(W, None)`` keeps the aspect ratio at width W, ``(W, H)`` forces the size;
            resized copies go to ``<OUT stem>_images/`` next to the JSON and every coordinate,
            head box and ``scale`` is scaled to match.
        check_images: fail when a selected image is missing even without resizing.

    Images are needed only for resizing or ``check_images``; otherwise a missing image just
    leaves ``width``/``height`` out of its record, so a user with annotations only can convert.

    Returns:
        The written JSON path(s): ``[OUT]`` or ``[OUT_train, OUT_val]``.
    """
    annotations, images_dir, out_json = Path(annotations), Path(images_dir), Path(out_json)
    if annotations.suffix.lower() == ".json":
        images, how = load_mpii_json(annotations, head_boxes)
    else:
        if head_boxes is not None:
            raise ConfigError("--head-boxes is for the JSON form; the .mat carries its own head boxes")
        images, how = load_release_mat(annotations), "head boxes from the release"
    chosen = select_images(images, single_person=single_person, subset=subset, seed=seed)
    if not chosen:
        raise ConfigError(f"{annotations}: no annotated person left to convert")
    if resize is not None or check_images:
        missing = [img.name for _, img, _ in chosen if not (images_dir / img.name).is_file()]
        if missing:
            more = f" (and {len(missing) - 1} more missing)" if len(missing) > 1 else ""
            raise DataFormatError(annotations, f"image is listed but missing from {images_dir}{more}",
                                  f"image {missing[0]}")
    groups: list[tuple[Path, list]] = [(out_json, chosen)]
    if val_fraction is not None:
        if not 0 < val_fraction < 1:
            raise ConfigError(f"--val-fraction must be between 0 and 1, got {val_fraction}")
        n_val = round(val_fraction * len(chosen))
        if not 1 <= n_val < len(chosen):
            raise ConfigError(f"--val-fraction {val_fraction} of {len(chosen)} images leaves an empty split")
        order = np.random.default_rng([seed, 1]).permutation(len(chosen))
        val_set = {int(j) for j in order[:n_val]}
        train_path, val_path = split_paths(out_json)
        groups = [(train_path, [c for j, c in enumerate(chosen) if j not in val_set]),
                  (val_path, [c for j, c in enumerate(chosen) if j in val_set])]
    resized_dir = out_json.parent / f"{out_json.stem}_images"
    written = []
    for path, group in groups:
        records: list[dict[str, Any]] = []
        anns: list[dict[str, Any]] = []
        for i, img, keep in group:
            src = images_dir / img.name
            size = _image_size(src)
            sx = sy = 1.0
            file_path = src
            if resize is not None:
                assert size is not None  # checked above
                size, (sx, sy) = _resize_image(src, resized_dir / img.name, size, resize)
                file_path = resized_dir / img.name
            rec: dict[str, Any] = {"id": i + 1, "file_name": os.path.relpath(file_path, path.parent)}
            if size is not None:
                rec["width"], rec["height"] = size
            records.append(rec)
            for r in keep:
                anns.append(person_annotation(img.persons[r], len(anns) + 1, i + 1, sx, sy, person_index=r + 1))
        info: dict[str, Any] = {"description": "MPII converted by crosspose prepare mpii", "source": str(annotations),
                "head_boxes": how, "image_id": "1-based annolist index (.mat) / order of first appearance (JSON)"}
        if resize is not None:
            info["resize"] = list(resize)
        written.append(save_coco_keypoints(path, records, anns, MPII.coco_category(), info=info))
    return written


def _resize_image(
    src: Path, dst: Path, size: tuple[int, int], resize: tuple[int, int | None]
) -> tuple[tuple[int, int], tuple[float, float]]:
    import cv2

    w, h = size
    nw = int(resize[0])
    nh = int(resize[1]) if resize[1] is not None else max(1, round(h * nw / w))
    pixels = decode_bgr(src)
    interp = cv2.INTER_AREA if nw < w else cv2.INTER_LINEAR
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dst) as tmp:
        if not cv2.imwrite(str(tmp), cv2.resize(pixels, (nw, nh), interpolation=interp)):
            raise DataFormatError(dst, "cannot write the resized image")
    return (nw, nh), (nw / w, nh / h)
