"""MPII Human Pose: the official RELEASE .mat and the HRNet/mmpose JSON form, reader and writer.

Both forms are read into :class:`MpiiImage` / :class:`MpiiPerson` records (0-based pixels, NaN
where absent) and written to the common COCO keypoints format by :func:`read_mpii`.

The official ``mpii_human_pose_v1_u12_1.mat`` as scipy loads it is full of quirks, all handled
here: every leaf is a 2-D array, often uint8/uint16 (cast to float *before* subtracting 1, or 0
wraps to 255); ``is_visible`` is an int, a string ``'0'``/``'1'`` or empty; ``annopoints`` may be
missing, empty or partial (points are indexed by ``id``, never by position); a squeezed load turns
one-element struct arrays into scalar structs; coordinates are 1-based (MATLAB).

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from crosspose.core.errors import ConfigError, DataFormatError
from crosspose.core.io import atomic_path
from crosspose.core.skeletons import MPII
from crosspose.data.coco import bbox_from_keypoints, read_json_file, save_coco_keypoints
from crosspose.data.images import decode_bgr, image_size

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

NUM_JOINTS = 16
HEAD_SIZE_FACTOR = 0.6
"""PCKh's head size is ``0.6 x`` the head-box diagonal (MPII's evaluation code)."""
_UPPER_NECK, _HEAD_TOP = MPII.index("upper_neck"), MPII.index("head_top")
_NAN4 = (math.nan,) * 4


@dataclass
class MpiiPerson:
    """One annotated rectangle (``annorect``) in 0-based pixels.

    Attributes:
        joints: ``(16, 2)`` float, official joint-id order, NaN where not annotated.
        visible: ``(16,)`` bool, the ``is_visible`` flag of annotated joints (empty flag = True).
        head_box: ``(x1, y1, x2, y2)``; NaNs when the release has none.
        scale: person height / 200 px; NaN when absent.
        objpos: rough centre ``(x, y)``; NaNs when absent.
    """

    joints: np.ndarray
    visible: np.ndarray
    head_box: tuple[float, float, float, float] = _NAN4
    scale: float = math.nan
    objpos: tuple[float, float] = (math.nan, math.nan)

    @property
    def annotated(self) -> np.ndarray:
        """``(16,)`` bool: which joints carry coordinates."""
        return np.asarray(np.isfinite(np.asarray(self.joints, dtype=np.float64)).all(axis=1))

    @property
    def head_size(self) -> float:
        """PCKh normaliser: 0.6 x head-box diagonal (NaN without a head box)."""
        x1, y1, x2, y2 = self.head_box
        return HEAD_SIZE_FACTOR * math.hypot(x2 - x1, y2 - y1)


@dataclass
class MpiiImage:
    """One ``annolist`` entry.

    Attributes:
        name: image file name (``image.name``).
        persons: the image's rectangles, in ``annorect`` order.
        is_train: ``img_train`` flag.
        single_person: 1-based indices of the sufficiently separated persons; ``None`` = all.
    """

    name: str
    persons: list[MpiiPerson] = field(default_factory=list)
    is_train: bool = True
    single_person: list[int] | None = None


# ---------------------------------------------------------------------------------- writing .mat


def _leaf(v: float) -> np.ndarray:
    """A MATLAB double scalar, or ``[]`` for a missing value."""
    return np.zeros((0, 0)) if not math.isfinite(v) else np.array([[float(v)]])


def _struct_array(fields: Sequence[str], rows: Sequence[Sequence[Any]]) -> np.ndarray:
    arr = np.empty((1, len(rows)), dtype=[(f, object) for f in fields])
    for i, row in enumerate(rows):
        for f, v in zip(fields, row, strict=True):
            arr[0, i][f] = v
    return arr


def _person_struct_row(p: MpiiPerson) -> list[Any]:
    joints = np.asarray(p.joints, dtype=np.float64).reshape(NUM_JOINTS, 2)
    vis = np.asarray(p.visible, dtype=bool).reshape(NUM_JOINTS)
    points = [(_leaf(joints[k, 0] + 1), _leaf(joints[k, 1] + 1), np.array([[k]], dtype=np.uint8),
               np.array([[int(vis[k])]], dtype=np.uint8))
              for k in range(NUM_JOINTS) if np.isfinite(joints[k]).all()]
    annopoints = (_struct_array(["point"], [[_struct_array(["x", "y", "id", "is_visible"], points)]])
                  if points else np.zeros((0, 0)))
    objpos = _struct_array(["x", "y"], [[_leaf(p.objpos[0] + 1), _leaf(p.objpos[1] + 1)]])
    return [*(_leaf(v + 1) for v in p.head_box), annopoints, _leaf(p.scale), objpos]


def write_release_mat(path: str | PathLike[str], images: Sequence[MpiiImage]) -> Path:
    """Write a .mat whose ``loadmat(path)['RELEASE']`` has the official layout.

    Fields ``annolist`` (``image.name``, ``annorect`` with head box, ``annopoints.point``,
    ``scale``, ``objpos``; ``frame_sec``, ``vididx``), ``img_train``, ``single_person``, ``act``,
    ``version``, ``video_list``. Coordinates are written 1-based, as MATLAB; missing values as
    ``[]``. ``single_person=None`` is written as every person of the image.
    """
    import scipy.io

    rect_fields = ["x1", "y1", "x2", "y2", "annopoints", "scale", "objpos"]
    annolist_rows = []
    for img in images:
        rects = (_struct_array(rect_fields, [_person_struct_row(p) for p in img.persons])
                 if img.persons else np.zeros((0, 0)))
        annolist_rows.append([_struct_array(["name"], [[np.array([img.name])]]), rects,
                              np.zeros((0, 0)), np.zeros((0, 0))])
    n = len(images)
    annolist = _struct_array(["image", "annorect", "frame_sec", "vididx"], annolist_rows)
    single = np.empty((n, 1), dtype=object)
    act = np.empty((n, 1), dtype=[("cat_name", object), ("act_name", object), ("act_id", object)])
    for i, img in enumerate(images):
        idx = img.single_person if img.single_person is not None else range(1, len(img.persons) + 1)
        idx = list(idx)
        single[i, 0] = np.array(idx, dtype=np.float64).reshape(-1, 1) if idx else np.zeros((0, 0))
        act[i, 0] = (np.zeros((0, 0)), np.zeros((0, 0)), np.array([[-1.0]]))
    release = np.empty((1, 1), dtype=[(f, object) for f in
                                      ("annolist", "img_train", "version", "single_person", "act", "video_list")])
    release[0, 0] = (annolist,
                     np.array([[1.0 if img.is_train else 0.0 for img in images]]).reshape(1, n),
                     np.array(["12"]), single, act, np.empty((1, 0), dtype=object))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(path), {"RELEASE": release}, do_compression=True)
    # scipy writes the creation time into the 116-byte MAT 5 text header; a fixed text makes the
    # same annotations give the same bytes (deterministic synthetic sets, reproducible files)
    with path.open("r+b") as fh:
        fh.write(b"MATLAB 5.0 MAT-file, Platform: posix, Created by: crosspose".ljust(116, b" "))
    return path


# ---------------------------------------------------------------------------------- reading .mat


class _Bad(Exception):
    """A malformed leaf; turned into a DataFormatError with the location by the caller."""


def _records(x: Any) -> list[Any]:
    """The elements of a (possibly squeezed, possibly empty) struct array, MATLAB order."""
    if x is None:
        return []
    if isinstance(x, np.void):
        return [x]
    if hasattr(x, "_fieldnames"):  # scipy mat_struct (struct_as_record=False)
        return [x]
    if isinstance(x, np.ndarray):
        if x.size == 0:
            return []
        if x.dtype.names:
            return list(x.ravel(order="F"))
        if x.dtype == object:
            out: list[Any] = []
            for el in x.ravel(order="F"):
                out.extend(_records(el))
            return out
    raise _Bad(f"expected a struct, got {type(x).__name__} {getattr(x, 'dtype', '')}".strip())


def _field(rec: Any, name: str) -> Any:
    if isinstance(rec, np.void):
        names = rec.dtype.names or ()
        return rec[name] if name in names else None
    return getattr(rec, name, None) if hasattr(rec, "_fieldnames") else None


def _number(x: Any, what: str) -> float | None:
    """One number from a scipy leaf: None for ``[]`` or non-finite; ints cast to float first."""
    if x is None:
        return None
    arr = np.asarray(x)
    if arr.size == 0:
        return None
    if arr.dtype == object:
        if arr.size != 1:
            raise _Bad(f"{what}: expected one value, got {arr.size}")
        return _number(arr.ravel()[0], what)
    if arr.size != 1:
        raise _Bad(f"{what}: expected one value, got shape {arr.shape}")
    v = arr.ravel()[0]
    if arr.dtype.kind in "US":
        text = v.decode("latin-1") if isinstance(v, bytes) else str(v)
        try:
            value = float(text.strip())
        except ValueError:
            raise _Bad(f"{what}: {text!r} is not a number") from None
    elif arr.dtype.kind in "biuf":
        value = float(v)  # before any arithmetic: uint8 - 1 would wrap around
    else:
        raise _Bad(f"{what}: unexpected {arr.dtype} value")
    return value if math.isfinite(value) else None


def _string(x: Any, what: str) -> str:
    arr = np.asarray(x)
    if arr.dtype == object and arr.size == 1:
        return _string(arr.ravel()[0], what)
    if arr.dtype.kind in "US" and arr.size >= 1:
        v = arr.ravel()[0]
        return v.decode("latin-1") if isinstance(v, bytes) else str(v)
    raise _Bad(f"{what}: expected a string")


def _int_list(x: Any, what: str) -> list[int]:
    arr = np.asarray(x)
    if arr.dtype == object:
        out: list[int] = []
        for el in arr.ravel(order="F"):
            out.extend(_int_list(el, what))
        return out
    if arr.dtype.kind not in "biuf":
        raise _Bad(f"{what}: expected numbers")
    vals = arr.astype(np.float64).ravel(order="F")
    if not np.isfinite(vals).all() or (vals != np.round(vals)).any():
        raise _Bad(f"{what}: expected whole numbers")
    return [int(v) for v in vals]


def _person(rect: Any) -> MpiiPerson:
    box = [_number(_field(rect, k), k) for k in ("x1", "y1", "x2", "y2")]
    head_box = tuple(v - 1 for v in box if v is not None) if all(v is not None for v in box) else _NAN4
    scale = _number(_field(rect, "scale"), "scale")
    objpos = (math.nan, math.nan)
    pos = _records(_field(rect, "objpos"))
    if pos:
        ox, oy = _number(_field(pos[0], "x"), "objpos.x"), _number(_field(pos[0], "y"), "objpos.y")
        if ox is not None and oy is not None:
            objpos = (ox - 1, oy - 1)
    joints = np.full((NUM_JOINTS, 2), np.nan)
    visible = np.zeros(NUM_JOINTS, dtype=bool)
    annopoints = _records(_field(rect, "annopoints"))
    points = _records(_field(annopoints[0], "point")) if annopoints else []
    for p in points:
        jid = _number(_field(p, "id"), "point.id")
        if jid is None or jid != int(jid) or not 0 <= jid < NUM_JOINTS:
            raise _Bad(f"point id {jid} is not a joint id 0..{NUM_JOINTS - 1}")
        k = int(jid)
        if np.isfinite(joints[k]).all():
            raise _Bad(f"joint id {k} is annotated twice")
        x, y = _number(_field(p, "x"), "point.x"), _number(_field(p, "y"), "point.y")
        if x is None or y is None:
            continue  # a point without coordinates is a missing joint
        joints[k] = (x - 1, y - 1)
        flag = _number(_field(p, "is_visible"), "point.is_visible")
        visible[k] = True if flag is None else bool(flag)  # empty flag: see module docstring
    return MpiiPerson(joints=joints, visible=visible, head_box=head_box,  # type: ignore[arg-type]
                      scale=math.nan if scale is None else scale, objpos=objpos)


_MALFORMED = (_Bad, TypeError, ValueError, IndexError, KeyError, AttributeError, OverflowError, RecursionError)


def parse_release(release: Any, source: str | PathLike[str]) -> list[MpiiImage]:
    """Parse a loaded ``RELEASE`` struct (any scipy load mode) into :class:`MpiiImage` records.

    Args:
        release: ``loadmat(...)['RELEASE']`` (struct_as_record or not, squeezed or not).
        source: the file it came from, for error messages.

    Raises:
        DataFormatError: naming the file, the ``annolist(i).annorect(r)`` entry and the problem.
    """
    try:
        recs = _records(release)
    except _MALFORMED as exc:
        raise DataFormatError(source, f"RELEASE is not a struct ({exc})", "RELEASE") from None
    if len(recs) != 1:
        raise DataFormatError(source, f"RELEASE must be a 1x1 struct, got {len(recs)} elements", "RELEASE")
    rel = recs[0]
    if _field(rel, "annolist") is None:
        raise DataFormatError(source, "RELEASE has no 'annolist' field", "RELEASE")
    try:
        annolist = _records(_field(rel, "annolist"))
    except _MALFORMED as exc:
        raise DataFormatError(source, f"malformed annolist ({exc})", "RELEASE.annolist") from None
    n = len(annolist)

    def per_image(name: str, conv: Callable[[Any], Any]) -> list[Any] | None:
        value = _field(rel, name)
        if value is None:
            return None
        try:
            items = list(np.asarray(value).ravel(order="F"))
            if len(items) != n:
                raise _Bad(f"has {len(items)} entries for {n} annolist entries")
            return [conv(v) for v in items]
        except _MALFORMED as exc:
            raise DataFormatError(source, f"malformed {name} ({exc})", f"RELEASE.{name}") from None

    train = per_image("img_train", lambda v: bool(_number(v, "img_train") or 0))
    single = per_image("single_person", lambda v: _int_list(v, "single_person"))
    images = []
    for i, entry in enumerate(annolist):
        where = f"annolist({i + 1})"
        try:
            img_recs = _records(_field(entry, "image"))
            if not img_recs:
                raise _Bad("has no image.name")
            name = _string(_field(img_recs[0], "name"), "image.name").strip()
            if not name:
                raise _Bad("image.name is empty")
            persons = []
            for r, rect in enumerate(_records(_field(entry, "annorect"))):
                try:
                    persons.append(_person(rect))
                except _MALFORMED as exc:
                    raise DataFormatError(source, str(exc), f"{where}.annorect({r + 1}) (image {name})") from None
        except DataFormatError:
            raise
        except _MALFORMED as exc:
            raise DataFormatError(source, f"malformed entry: {exc}", where) from None
        images.append(MpiiImage(name=name, persons=persons,
                                is_train=True if train is None else train[i],
                                single_person=None if single is None else single[i]))
    return images


def load_release_mat(path: str | PathLike[str]) -> list[MpiiImage]:
    """Read the official ``mpii_human_pose_v1_u12_1.mat`` (or any .mat with a RELEASE struct).

    Raises:
        DataFormatError: not a readable .mat, no ``RELEASE`` variable, or a malformed entry.
    """
    path = Path(path)
    data = _loadmat(path)
    if "RELEASE" not in data:
        found = ", ".join(k for k in data if not k.startswith("__")) or "none"
        raise DataFormatError(path, f"no RELEASE struct (variables: {found}); expected the official "
                                    "mpii_human_pose_v1_u12_1.mat")
    return parse_release(data["RELEASE"], path)


def _loadmat(path: Path) -> dict[str, Any]:
    import scipy.io

    if not path.is_file():
        raise DataFormatError(path, "file not found")
    try:
        return scipy.io.loadmat(str(path))
    except NotImplementedError:
        raise DataFormatError(path, "MATLAB v7.3 (HDF5) .mat files are not supported; "
                                    "re-save it with save(..., '-v7')") from None
    except Exception as exc:  # scipy raises many types for a corrupt file; all mean the same here
        raise DataFormatError(path, f"not a readable MATLAB .mat file ({type(exc).__name__}: {exc})") from None


# ------------------------------------------------------------------------------ the JSON form


def load_head_boxes(path: str | PathLike[str]) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Read HRNet's ``gt_valid.mat`` / mmpose's ``mpii_gt_val.mat``.

    Returns:
        ``(boxes (N, 4) x1 y1 x2 y2 0-based, joints (N, 16, 2) 0-based or None,
        missing (N, 16) bool or None)``; the joints serve to check the file matches the JSON.
    """
    path = Path(path)
    data = _loadmat(path)
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
        return _NAN4
    cx, cy = (neck + top) / 2
    half = 25 * scale / HEAD_SIZE_FACTOR / math.sqrt(2) / 2
    return (float(cx - half), float(cy - half), float(cx + half), float(cy + half))


def _xy(v: Any, what: str) -> tuple[float, float]:
    if (not isinstance(v, list) or len(v) != 2
            or not all(isinstance(c, int | float) and not isinstance(c, bool) and math.isfinite(c) for c in v)):
        raise _Bad(f"{what} must be [x, y] with two finite numbers, got {json.dumps(v)[:60]}")
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
                raise _Bad("a person must be an object with an 'image' name")
            scale = person.get("scale", math.nan)
            if not isinstance(scale, int | float) or isinstance(scale, bool):
                raise _Bad(f"'scale' must be a number, got {scale!r}")
            scale = float(scale) if math.isfinite(scale) and scale > 0 else math.nan
            center = _xy(person["center"], "'center'") if "center" in person else (math.nan, math.nan)
            objpos = (center[0] - 1, center[1] - 1) if center[0] != -1 else (math.nan, math.nan)
            joints = np.full((NUM_JOINTS, 2), np.nan)
            if "joints" in person:
                js, vis = person["joints"], person.get("joints_vis")
                if not isinstance(js, list) or len(js) != NUM_JOINTS:
                    raise _Bad(f"'joints' must list {NUM_JOINTS} [x, y] pairs")
                if not isinstance(vis, list) or len(vis) != NUM_JOINTS or not all(v in (0, 1) for v in vis):
                    raise _Bad(f"'joints_vis' must list {NUM_JOINTS} flags 0 or 1")
                for k, (xy, v) in enumerate(zip(js, vis, strict=True)):
                    x, y = _xy(xy, f"joints[{k}]")
                    if v:
                        joints[k] = (x - 1, y - 1)
        except _MALFORMED as exc:
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
