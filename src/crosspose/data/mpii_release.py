"""MPII Human Pose's official RELEASE .mat (``mpii_human_pose_v1_u12_1.mat``): its records, reader and writer.

The release as scipy loads it is full of quirks, all handled here: every leaf is a 2-D array, often
uint8/uint16 (cast to float *before* subtracting 1, or 0 wraps to 255); ``is_visible`` is an int, a
string ``'0'``/``'1'`` or empty; ``annopoints`` may be missing, empty or partial (points are indexed
by ``id``, never by position); a squeezed load turns one-element struct arrays into scalar structs;
coordinates are 1-based (MATLAB). Records come out in 0-based pixels, NaN where absent.

:mod:`crosspose.data.mpii` reads the JSON form and writes both forms to COCO keypoints.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from crosspose.core.errors import DataFormatError
from crosspose.core.io import atomic_path

__all__ = [
    "HEAD_SIZE_FACTOR",
    "MALFORMED_ERRORS",
    "NO_HEAD_BOX",
    "NUM_JOINTS",
    "MalformedField",
    "MpiiImage",
    "MpiiPerson",
    "load_mat",
    "load_release_mat",
    "parse_release",
    "write_release_mat",
]

NUM_JOINTS = 16
HEAD_SIZE_FACTOR = 0.6
"""PCKh's head size is ``0.6 x`` the head-box diagonal (MPII's evaluation code)."""
NO_HEAD_BOX = (math.nan,) * 4


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
    head_box: tuple[float, float, float, float] = NO_HEAD_BOX
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
    with atomic_path(path) as tmp, tmp.open("w+b") as fh:
        scipy.io.savemat(fh, {"RELEASE": release}, do_compression=True)
        # scipy writes the creation time into the 116-byte MAT 5 text header; a fixed text makes the
        # same annotations give the same bytes (deterministic synthetic sets, reproducible files)
        fh.seek(0)
        fh.write(b"MATLAB 5.0 MAT-file, Platform: posix, Created by: crosspose".ljust(116, b" "))
    return path


# ---------------------------------------------------------------------------------- reading .mat


class MalformedField(Exception):
    """A malformed leaf or field; the reader turns it into a DataFormatError naming the file and the place."""


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
    raise MalformedField(f"expected a struct, got {type(x).__name__} {getattr(x, 'dtype', '')}".strip())


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
            raise MalformedField(f"{what}: expected one value, got {arr.size}")
        return _number(arr.ravel()[0], what)
    if arr.size != 1:
        raise MalformedField(f"{what}: expected one value, got shape {arr.shape}")
    v = arr.ravel()[0]
    if arr.dtype.kind in "US":
        text = v.decode("latin-1") if isinstance(v, bytes) else str(v)
        try:
            value = float(text.strip())
        except ValueError:
            raise MalformedField(f"{what}: {text!r} is not a number") from None
    elif arr.dtype.kind in "biuf":
        value = float(v)  # before any arithmetic: uint8 - 1 would wrap around
    else:
        raise MalformedField(f"{what}: unexpected {arr.dtype} value")
    return value if math.isfinite(value) else None


def _string(x: Any, what: str) -> str:
    arr = np.asarray(x)
    if arr.dtype == object and arr.size == 1:
        return _string(arr.ravel()[0], what)
    if arr.dtype.kind in "US" and arr.size >= 1:
        v = arr.ravel()[0]
        return v.decode("latin-1") if isinstance(v, bytes) else str(v)
    raise MalformedField(f"{what}: expected a string")


def _int_list(x: Any, what: str) -> list[int]:
    arr = np.asarray(x)
    if arr.dtype == object:
        out: list[int] = []
        for el in arr.ravel(order="F"):
            out.extend(_int_list(el, what))
        return out
    if arr.dtype.kind not in "biuf":
        raise MalformedField(f"{what}: expected numbers")
    vals = arr.astype(np.float64).ravel(order="F")
    if not np.isfinite(vals).all() or (vals != np.round(vals)).any():
        raise MalformedField(f"{what}: expected whole numbers")
    return [int(v) for v in vals]


def _person(rect: Any) -> MpiiPerson:
    box = [_number(_field(rect, k), k) for k in ("x1", "y1", "x2", "y2")]
    head_box = tuple(v - 1 for v in box if v is not None) if all(v is not None for v in box) else NO_HEAD_BOX
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
            raise MalformedField(f"point id {jid} is not a joint id 0..{NUM_JOINTS - 1}")
        k = int(jid)
        if np.isfinite(joints[k]).all():
            raise MalformedField(f"joint id {k} is annotated twice")
        x, y = _number(_field(p, "x"), "point.x"), _number(_field(p, "y"), "point.y")
        if x is None or y is None:
            continue  # a point without coordinates is a missing joint
        joints[k] = (x - 1, y - 1)
        flag = _number(_field(p, "is_visible"), "point.is_visible")
        visible[k] = True if flag is None else bool(flag)  # empty flag: see module docstring
    return MpiiPerson(joints=joints, visible=visible, head_box=head_box,  # type: ignore[arg-type]
                      scale=math.nan if scale is None else scale, objpos=objpos)


MALFORMED_ERRORS = (MalformedField, TypeError, ValueError, IndexError, KeyError, AttributeError, OverflowError, RecursionError)


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
    except MALFORMED_ERRORS as exc:
        raise DataFormatError(source, f"RELEASE is not a struct ({exc})", "RELEASE") from None
    if len(recs) != 1:
        raise DataFormatError(source, f"RELEASE must be a 1x1 struct, got {len(recs)} elements", "RELEASE")
    rel = recs[0]
    if _field(rel, "annolist") is None:
        raise DataFormatError(source, "RELEASE has no 'annolist' field", "RELEASE")
    try:
        annolist = _records(_field(rel, "annolist"))
    except MALFORMED_ERRORS as exc:
        raise DataFormatError(source, f"malformed annolist ({exc})", "RELEASE.annolist") from None
    n = len(annolist)

    def per_image(name: str, conv: Callable[[Any], Any]) -> list[Any] | None:
        value = _field(rel, name)
        if value is None:
            return None
        try:
            items = list(np.asarray(value).ravel(order="F"))
            if len(items) != n:
                raise MalformedField(f"has {len(items)} entries for {n} annolist entries")
            return [conv(v) for v in items]
        except MALFORMED_ERRORS as exc:
            raise DataFormatError(source, f"malformed {name} ({exc})", f"RELEASE.{name}") from None

    train = per_image("img_train", lambda v: bool(_number(v, "img_train") or 0))
    single = per_image("single_person", lambda v: _int_list(v, "single_person"))
    images = []
    for i, entry in enumerate(annolist):
        where = f"annolist({i + 1})"
        try:
            img_recs = _records(_field(entry, "image"))
            if not img_recs:
                raise MalformedField("has no image.name")
            name = _string(_field(img_recs[0], "name"), "image.name").strip()
            if not name:
                raise MalformedField("image.name is empty")
            persons = []
            for r, rect in enumerate(_records(_field(entry, "annorect"))):
                try:
                    persons.append(_person(rect))
                except MALFORMED_ERRORS as exc:
                    raise DataFormatError(source, str(exc), f"{where}.annorect({r + 1}) (image {name})") from None
        except DataFormatError:
            raise
        except MALFORMED_ERRORS as exc:
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
    data = load_mat(path)
    if "RELEASE" not in data:
        found = ", ".join(k for k in data if not k.startswith("__")) or "none"
        raise DataFormatError(path, f"no RELEASE struct (variables: {found}); expected the official "
                                    "mpii_human_pose_v1_u12_1.mat")
    return parse_release(data["RELEASE"], path)


def load_mat(path: Path) -> dict[str, Any]:
    """A MATLAB v5 .mat file as scipy loads it, or a DataFormatError naming the file."""
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
