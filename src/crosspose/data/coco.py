"""The common format: one COCO keypoints JSON plus an image folder.

Every reader writes it and the data module, the scorer and the report read it through
:func:`load_coco_keypoints`, which validates once and fails with one :class:`DataFormatError` that
names the file, the entry and the problem.

Conventions (COCO's own, plus two optional MPII fields):
- coordinates are 0-based pixels of the original image; ``keypoints`` is ``[x, y, v] * K`` with
  ``v = 0`` unannotated, 1 annotated but occluded, 2 visible;
- ``bbox`` is ``[x, y, w, h]``; the category's ``skeleton`` is 1-based (we keep links 0-based);
- ``file_name`` is relative to the image root, which defaults to the JSON file's folder;
- MPII annotations may carry ``head_box`` ``[x1, y1, x2, y2]`` and ``scale`` (person height / 200).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from crosspose.core.errors import DataFormatError
from crosspose.core.io import atomic_write_text
from crosspose.data.species import normalise_layout, select_categories

__all__ = [
    "CocoKeypoints",
    "bbox_from_keypoints",
    "load_coco_keypoints",
    "read_json_file",
    "save_coco_keypoints",
    "split_by_image",
]


@dataclass
class CocoKeypoints:
    """A validated COCO keypoints file (one keypoint category, or several species sharing one keypoint list).

    Attributes:
        path: the JSON file.
        image_root: folder that ``file_name`` entries are relative to.
        images: image id -> image record (``file_name``, ``width``, ``height``, ...).
        annotations: the person/animal instances of the keypoint category, in file order.
        category: the keypoint category record (merged when several species share its keypoints).
        raw: the whole parsed file, for fields a caller wants to pass through.
        species: category id -> species (category) name of every category the annotations come from.
    """

    path: Path
    image_root: Path
    images: dict[int, dict[str, Any]]
    annotations: list[dict[str, Any]]
    category: dict[str, Any]
    raw: dict[str, Any] = field(repr=False)
    species: dict[Any, str] = field(default_factory=dict)

    @property
    def keypoint_names(self) -> tuple[str, ...]:
        return tuple(self.category["keypoints"])

    @property
    def num_keypoints(self) -> int:
        return len(self.category["keypoints"])

    @property
    def links(self) -> tuple[tuple[int, int], ...]:
        """Limbs, 0-based (COCO stores them 1-based)."""
        return tuple((int(a) - 1, int(b) - 1) for a, b in self.category.get("skeleton", []))

    @property
    def category_id(self) -> int:
        return int(self.category["id"])

    @property
    def category_ids(self) -> frozenset[Any]:
        """Every category id the annotations may carry (several when species share the skeleton)."""
        return frozenset(self.species) | {self.category["id"]}

    def species_of(self, ann: Mapping[str, Any]) -> str:
        """The species (category name) of an annotation."""
        cid = ann.get("category_id", self.category["id"])
        return self.species.get(cid, str(self.category.get("name", cid)))

    def keypoints(self, ann: Mapping[str, Any]) -> np.ndarray:
        """``(K, 3)`` float array of x, y, v for one annotation."""
        return np.asarray(ann["keypoints"], dtype=np.float64).reshape(self.num_keypoints, 3)

    def image_path(self, image_id: int) -> Path:
        return self.image_root / self.images[image_id]["file_name"]

    def subset(self, annotation_ids: Iterable[Any]) -> CocoKeypoints:
        """The same file restricted to some annotations (and the images they are on)."""
        keep = set(annotation_ids)
        anns = [a for a in self.annotations if a.get("id") in keep]
        image_ids = {a["image_id"] for a in anns}
        images = {i: r for i, r in self.images.items() if i in image_ids}
        return CocoKeypoints(path=self.path, image_root=self.image_root, images=images, annotations=anns,
                             category=self.category, raw=self.raw, species=self.species)

    def save_subset(self, path: str | PathLike[str], image_ids: Iterable[int]) -> Path:
        """Write the given images and all their annotations as a new file.

        ``file_name`` entries are rewritten relative to the new file's folder, so it can live anywhere.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        keep = set(image_ids)
        images = []
        for image_id in keep & set(self.images):
            record = dict(self.images[image_id])
            record["file_name"] = os.path.relpath(self.image_path(image_id).resolve(), path.parent.resolve())
            images.append(record)
        images.sort(key=lambda r: r["id"])
        anns = [a for a in self.annotations if a["image_id"] in keep]
        return save_coco_keypoints(path, images, anns, self._categories(),
                                   info={"description": f"subset of {self.path.name}", "images": len(images)})

    def _categories(self) -> list[dict[str, Any]]:
        """The file's own category records behind this (possibly merged) category."""
        if len(self.species) <= 1:
            return [self.category]
        return [c for c in self.raw["categories"] if isinstance(c, dict) and c.get("id") in self.species]

    def instances(self) -> list[dict[str, Any]]:
        """Annotations usable for training and evaluation: not crowd, at least one labelled joint."""
        return [
            a for a in self.annotations
            if not a.get("iscrowd", 0) and (np.asarray(a["keypoints"][2::3]) > 0).any()
        ]


def _fail(path: Path, problem: str, where: str | None = None) -> DataFormatError:
    return DataFormatError(path, problem, where)


def read_json_file(path: str | PathLike[str]) -> Any:
    """Parse a JSON file, or raise one DataFormatError saying why it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise _fail(path, "file not found")
    try:
        with path.open("r", encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise _fail(path, f"not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    except UnicodeDecodeError:
        raise _fail(path, "not a UTF-8 text file") from None


def load_coco_keypoints(
    path: str | PathLike[str],
    image_root: str | PathLike[str] | None = None,
    category_id: int | None = None,
    categories: Sequence[str | int] | str | None = None,
) -> CocoKeypoints:
    """Read and validate a COCO keypoints file.

    Args:
        path: the JSON file.
        image_root: folder of the images; defaults to the JSON file's folder.
        category_id: which category to use when the file has several with keypoints.
        categories: species to keep (category ids, names or supercategories; a list or
            ``"dog,cat"``); default all. Categories sharing one keypoint list load as one skeleton
            (:mod:`crosspose.data.species`); with a selection, images without a selected instance
            are left out.

    Raises:
        DataFormatError: the file is missing, not JSON, or not COCO keypoints; the message names
            the entry at fault.
    """
    path = Path(path)
    raw = normalise_layout(read_json_file(path), path)
    if not isinstance(raw, dict):
        raise _fail(path, "not a COCO keypoints file: the top level is not an object "
                          "(an HRNet/mmpose MPII list? convert it with `crosspose prepare mpii`)")
    for key in ("images", "annotations", "categories"):
        if not isinstance(raw.get(key), list):
            raise _fail(path, f"not a COCO keypoints file: no '{key}' list")

    kp_categories = [c for c in raw["categories"] if isinstance(c, dict) and c.get("keypoints")]
    if not kp_categories:
        raise _fail(path, "not a COCO keypoints file: no category has a 'keypoints' list")
    category, species = select_categories(path, kp_categories, category_id, categories)
    names = category["keypoints"]
    if not all(isinstance(n, str) for n in names):
        raise _fail(path, "category 'keypoints' must be a list of joint names")
    num_kp = len(names)
    for link in category.get("skeleton", []) or []:
        if (not isinstance(link, list | tuple) or len(link) != 2
                or not all(isinstance(i, int) and 1 <= i <= num_kp for i in link)):
            raise _fail(path, f"category skeleton link {link!r} is not a 1-based pair within 1..{num_kp}")

    images: dict[int, dict[str, Any]] = {}
    for i, img in enumerate(raw["images"]):
        where = f"images[{i}]"
        if not isinstance(img, dict) or "id" not in img or "file_name" not in img:
            raise _fail(path, "an image needs 'id' and 'file_name'", where)
        if img["id"] in images:
            raise _fail(path, f"duplicate image id {img['id']}", where)
        images[img["id"]] = img

    cid = category["id"]
    annotations: list[dict[str, Any]] = []
    seen_ids: set[Any] = set()
    for i, ann in enumerate(raw["annotations"]):
        if not isinstance(ann, dict):
            raise _fail(path, "an annotation must be an object", f"annotations[{i}]")
        if ann.get("category_id", cid) not in species:
            continue
        where = f"annotation id {ann.get('id', '?')} (annotations[{i}])"
        if "id" in ann:
            if ann["id"] in seen_ids:
                raise _fail(path, f"duplicate annotation id {ann['id']}", where)
            seen_ids.add(ann["id"])
        if ann.get("image_id") not in images:
            raise _fail(path, f"image_id {ann.get('image_id')!r} is not in 'images'", where)
        kps = ann.get("keypoints")
        if not isinstance(kps, list) or len(kps) != 3 * num_kp:
            got = len(kps) if isinstance(kps, list) else type(kps).__name__
            raise _fail(path, f"'keypoints' must hold 3 x {num_kp} numbers (x, y, v), got {got}", where)
        if not all(isinstance(v, int | float) and math.isfinite(v) for v in kps):
            raise _fail(path, "'keypoints' holds a value that is not a finite number", where)
        for key in ("bbox", "head_box"):
            box = ann.get(key)
            if box is not None and (not isinstance(box, list) or len(box) != 4
                                    or not all(isinstance(v, int | float) and math.isfinite(v) for v in box)):
                raise _fail(path, f"'{key}' must be 4 finite numbers", where)
        if "bbox" not in ann:
            ann["bbox"] = bbox_from_keypoints(np.asarray(kps, float).reshape(num_kp, 3))
        annotations.append(ann)

    if categories is not None:
        kept = {a["image_id"] for a in annotations}
        images = {i: r for i, r in images.items() if i in kept}
    root = Path(image_root) if image_root is not None else path.parent
    return CocoKeypoints(path=path, image_root=root, images=images, annotations=annotations,
                         category=category, raw=raw, species=species)


def bbox_from_keypoints(keypoints: np.ndarray) -> list[float]:
    """Tight ``[x, y, w, h]`` around the labelled joints (COCO fallback when no bbox is given)."""
    labelled = keypoints[keypoints[:, 2] > 0, :2]
    if len(labelled) == 0:
        return [0.0, 0.0, 0.0, 0.0]
    lo, hi = labelled.min(0), labelled.max(0)
    return [float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])]


def save_coco_keypoints(
    path: str | PathLike[str],
    images: Sequence[Mapping[str, Any]],
    annotations: Iterable[Mapping[str, Any]],
    category: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    info: Mapping[str, Any] | None = None,
) -> Path:
    """Write a COCO keypoints file (creates the parent folder); ``category`` may be a list of species."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "info": dict(info or {"description": "written by crosspose"}),
        "images": [dict(i) for i in images],
        "annotations": [dict(a) for a in annotations],
        "categories": [dict(category)] if isinstance(category, Mapping) else [dict(c) for c in category],
    }
    atomic_write_text(path, json.dumps(payload))  # never leave a half-written file behind
    return path


def _image_files(coco: CocoKeypoints) -> set[Path]:
    return {coco.image_path(i).resolve() for i in coco.images}


def split_by_image(
    source: str | PathLike[str],
    parts: Mapping[str, int | float],
    seed: int = 0,
    out: str | PathLike[str] | None = None,
    exclude: Sequence[str | PathLike[str]] = (),
    overwrite: bool = False,
    categories: Sequence[str | int] | str | None = None,
) -> dict[str, Path]:
    """Split a COCO file by image into named parts, written as ``<out stem>_<part>.json``.

    Args:
        source: the file to split.
        parts: part name -> image count (int) or fraction (float); the last part takes the rest.
        seed: seed of the random order.
        out: names the outputs (default: ``source``); written next to it.
        exclude: files whose images are left out of every part (e.g. a held-out test set),
            matched by image file path.
        categories: species to keep (see :func:`load_coco_keypoints`); default all.

    An existing output holding exactly this split's images is kept as it is (a pipeline can call
    this again cheaply); one holding other images -- a stale output of an earlier split -- is an
    error unless ``overwrite``. No labelled image, or a part that would get none, is an error.
    """
    coco = load_coco_keypoints(source, categories=categories)
    banned = set()
    for other in exclude:
        o = load_coco_keypoints(other)
        banned |= {o.image_path(i).resolve() for i in o.images}
    ids = sorted({a["image_id"] for a in coco.instances()
                  if coco.image_path(a["image_id"]).resolve() not in banned})
    if not ids:
        why = " (every image is in an excluded file)" if banned and coco.instances() else ""
        raise DataFormatError(source, f"no image with a labelled instance to split{why}")
    order = np.random.default_rng(seed).permutation(len(ids))
    ids = [ids[i] for i in order]
    stem = Path(out) if out is not None else Path(source)
    written, start = {}, 0
    names = list(parts)
    for i, name in enumerate(names):
        size = parts[name]
        n = len(ids) - start if i == len(names) - 1 else (
            int(round(size * len(ids))) if isinstance(size, float) else int(size))
        if n > len(ids) - start:
            raise DataFormatError(source, f"cannot take {n} images for '{name}': only {len(ids) - start} left")
        if n <= 0:
            raise DataFormatError(source, f"the '{name}' part would get no image (of {len(ids)}); use a larger "
                                          "share or more images")
        path = stem.with_name(f"{stem.stem}_{name}.json")
        chosen = ids[start:start + n]
        if not path.is_file() or overwrite:
            coco.save_subset(path, chosen)
        elif _image_files(load_coco_keypoints(path)) != {coco.image_path(i).resolve() for i in chosen}:
            raise DataFormatError(path, f"exists from an earlier split with other images than this split's "
                                        f"'{name}' part; delete it, choose another --out, or overwrite it (--force)")
        written[name] = path
        start += n
    return written
