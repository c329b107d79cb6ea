"""Many species, one skeleton: keypoint categories that share a keypoint list load as one.

AP-10K (54 species), Animal-Pose (5) and similar files give every species its own COCO category,
all with the same keypoint list. :func:`select_categories` picks the categories a caller asked for
(by id, name or supercategory, e.g. an AP-10K family) and, when they share one keypoint list, merges
them into one skeleton: the instances keep their ``category_id``, which names their species.

:func:`normalise_layout` also accepts the original Animal-Pose ``keypoints.json`` as it is released
(``images`` as an object ``{"id": "file name"}``, bbox ``[x1, y1, x2, y2]``, keypoints as nested
``[x, y, v]`` triples, a 0-based skeleton) by rewriting it into COCO's layout in memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from crosspose.core.errors import DataFormatError

__all__ = ["normalise_layout", "parse_categories", "select_categories"]


def parse_categories(spec: str | int | Sequence[str | int] | None) -> list[str] | None:
    """``"dog, cat"`` or ``["dog", 3]`` -> ``["dog", "cat"]`` / ``["dog", "3"]``; None stays None."""
    if spec is None:
        return None
    items = spec.split(",") if isinstance(spec, str) else [spec] if isinstance(spec, int) else list(spec)
    names = [str(s).strip() for s in items if str(s).strip()]
    return names or None


def _matches(category: dict[str, Any], wanted: str) -> bool:
    w = wanted.lower()
    return (str(category.get("id")) == wanted or str(category.get("name", "")).lower() == w
            or str(category.get("supercategory") or "").lower() == w)


def select_categories(
    path: Path,
    kp_categories: list[dict[str, Any]],
    category_id: int | None = None,
    categories: Sequence[str | int] | str | None = None,
) -> tuple[dict[str, Any], dict[Any, str]]:
    """The keypoint category to use and ``{category id: species name}`` of every category it covers.

    Several categories come back as one merged record (the first one's keypoints, skeleton and id;
    ``name`` lists the species) when they share one keypoint list; otherwise one clear error.
    """
    if category_id is not None:
        chosen = [c for c in kp_categories if c.get("id") == category_id]
        if not chosen:
            raise DataFormatError(path, f"no keypoint category with id {category_id}")
    else:
        wanted = parse_categories(categories)
        chosen = kp_categories
        if wanted:
            unknown = [w for w in wanted if not any(_matches(c, w) for c in kp_categories)]
            if unknown:
                known = ", ".join(f"{c.get('id')}:{c.get('name')}" for c in kp_categories[:12])
                more = f" and {len(kp_categories) - 12} more" if len(kp_categories) > 12 else ""
                raise DataFormatError(path, f"no keypoint category matches {', '.join(unknown)} (by id, name or "
                                            f"supercategory; the file has {known}{more})")
            chosen = [c for c in kp_categories if any(_matches(c, w) for w in wanted)]
    species = {c.get("id"): str(c.get("name", c.get("id"))) for c in chosen}
    if len(chosen) == 1:
        return chosen[0], species
    first = chosen[0]
    differing = [c for c in chosen if list(c.get("keypoints", [])) != list(first.get("keypoints", []))]
    if differing:
        other = differing[0]
        raise DataFormatError(path, f"several keypoint categories with different keypoint lists (id {first.get('id')} "
                                    f"'{first.get('name')}': {len(first['keypoints'])} keypoints, id {other.get('id')} "
                                    f"'{other.get('name')}': {len(other['keypoints'])}); choose the species with "
                                    "categories (--categories) or one with category_id")
    names = list(species.values())
    merged = dict(first)
    merged["name"] = ", ".join(names) if len(names) <= 3 else f"{len(names)} species ({', '.join(names[:3])}, ...)"
    merged["species"] = names
    return merged, species


def normalise_layout(raw: Any, path: Path) -> Any:
    """The original Animal-Pose ``keypoints.json`` rewritten into COCO's layout; anything else unchanged."""
    if not (isinstance(raw, dict) and isinstance(raw.get("images"), dict) and isinstance(raw.get("annotations"), list)):
        return raw
    folder = path.parent
    images = []
    for key, name in raw["images"].items():
        if not isinstance(name, str):
            raise DataFormatError(path, f"images[{key!r}] must be a file name (Animal-Pose layout)")
        # the release keeps keypoints.json beside an images/ folder
        file_name = name if (folder / name).exists() or not (folder / "images" / name).exists() else f"images/{name}"
        try:
            image_id: Any = int(key)
        except ValueError:
            image_id = key
        images.append({"id": image_id, "file_name": file_name})
    annotations = []
    for i, ann in enumerate(raw["annotations"]):
        if not isinstance(ann, dict):
            raise DataFormatError(path, "an annotation must be an object", f"annotations[{i}]")
        ann = dict(ann)
        ann.setdefault("id", i + 1)
        kps = ann.get("keypoints")
        if isinstance(kps, list) and kps and all(isinstance(k, list) for k in kps):
            ann["keypoints"] = [float(v) if j < 2 else int(v) for k in kps for j, v in enumerate(k[:3])]
        box = ann.get("bbox")
        if isinstance(box, list) and len(box) == 4 and all(isinstance(v, int | float) for v in box):
            x1, y1, x2, y2 = (float(v) for v in box)
            ann["bbox"] = [x1, y1, x2 - x1, y2 - y1]
        annotations.append(ann)
    categories = []
    for cat in raw.get("categories", []):
        cat = dict(cat) if isinstance(cat, dict) else cat
        links = cat.get("skeleton") if isinstance(cat, dict) else None
        if isinstance(links, list) and any(0 in link for link in links if isinstance(link, list)):
            cat["skeleton"] = [[a + 1, b + 1] for a, b in links]  # 0-based in this release
        categories.append(cat)
    return {**raw, "images": images, "annotations": annotations, "categories": categories,
            "info": {**(raw.get("info") or {}), "layout": "Animal-Pose keypoints.json"}}
