"""DeepLabCut projects to the common format: ``crosspose prepare deeplabcut``.

A DeepLabCut project is a folder with ``config.yaml`` and ``labeled-data/<video>/`` folders, each
holding the labelled frames and ``CollectedData_<scorer>.h5`` (a pandas DataFrame, usually under key
``df_with_missing``) and/or the same table as ``.csv``. Columns are a MultiIndex
``scorer / bodyparts / coords`` (coords ``x``, ``y``), with an ``individuals`` level after the scorer
in multi-animal projects; rows are frames, indexed by the image path relative to the project, either
one string (``labeled-data/video/img005.png``) or, since DeepLabCut 2.2, a MultiIndex of its parts.
An empty cell (NaN) is a joint that was not labelled.

What is written (COCO keypoints, 0-based pixels as DeepLabCut's, ``file_name`` relative to the JSON):

- single-animal project: one annotation per labelled frame with bbox = the whole frame (DeepLabCut
  trains on whole frames, not on boxes);
- multi-animal project: one annotation per labelled individual (``"individual"`` names it), bbox = the
  extent of its labelled joints grown by :data:`BOX_MARGIN` and clipped to the frame. Keypoints are
  ``multianimalbodyparts`` followed by ``uniquebodyparts``; the unique parts (DeepLabCut's ``single``
  individual) form an annotation of their own;
- the category carries the bodypart names and config.yaml's skeleton; frames with no labelled joint
  are left out.

Why not sleap-io (0.9.5, its ``load_dlc``/``load_dlc_project``, read for this): it reads only the
CSV (crosspose must also read the ``.h5``, which DeepLabCut treats as the original and which may
exist alone); it takes the bodyparts from the CSV without comparing them with config.yaml and drops
skeleton edges that disagree with a warning, where a user needs an error; and it requires 20
packages, 16 of them new here (pynwb, skia-python, aiohttp, shapely, h5py, ...), for what is one
pandas table read. The reading below is the whole job and is checked against both files of a real
project in the tests. (SLEAP ``.slp`` import, :mod:`crosspose.data.sleap`, does use sleap-io: that
format is SLEAP's own, and reading it is what the library is for.)
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from crosspose.core.errors import ConfigError, DataFormatError
from crosspose.core.io import atomic_write_json

__all__ = ["BOX_MARGIN", "DlcProject", "prepare_deeplabcut", "read_collected_data", "read_deeplabcut_project"]

BOX_MARGIN = 0.1
"""Multi-animal boxes: the labelled extent grown by this fraction of its longer side on every side."""

_SINGLE = "single"  # DeepLabCut's individual name for the unique bodyparts


@dataclass
class DlcTable:
    """One CollectedData file: ``coords[row, individual, bodypart] = (x, y)``, NaN = unlabelled."""

    path: Path
    images: list[str]  # project-relative image paths, '/'-separated
    individuals: list[str]  # [""] in a single-animal file
    bodyparts: list[str]
    coords: np.ndarray  # (rows, individuals, bodyparts, 2)
    parts_by_individual: dict[str, list[str]] = field(default_factory=dict)  # as labelled, per individual


@dataclass
class DlcProject:
    """A validated DeepLabCut project, ready to be written as COCO."""

    root: Path
    config: dict[str, Any]
    keypoints: list[str]
    links: list[tuple[int, int]]
    multi_animal: bool
    tables: list[DlcTable] = field(default_factory=list)

    @property
    def task(self) -> str:
        return str(self.config.get("Task") or "animal")


# ------------------------------------------------------------------------------------ config
def _read_config(root: Path) -> dict[str, Any]:
    path = root / "config.yaml"
    if not root.is_dir():
        raise DataFormatError(root, "DeepLabCut project folder not found")
    if not path.is_file():
        raise DataFormatError(path, "not a DeepLabCut project: config.yaml is missing")
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DataFormatError(path, f"not valid YAML ({exc})") from None
    if not isinstance(config, dict):
        raise DataFormatError(path, "not a DeepLabCut config: the top level is not a mapping")
    return config


def _name_list(config: dict[str, Any], key: str, path: Path, required: bool) -> list[str]:
    value = config.get(key)
    if value is None or value == []:
        if required:
            raise DataFormatError(path, f"'{key}' is missing or empty")
        return []
    if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
        raise DataFormatError(path, f"'{key}' must be a list of names, got {value!r}")
    names = [str(v) for v in value]
    if len(set(names)) != len(names):
        raise DataFormatError(path, f"'{key}' lists a name twice: {names}")
    return names


def _project_skeleton(config: dict[str, Any], keypoints: list[str], path: Path) -> list[tuple[int, int]]:
    links = []
    for link in config.get("skeleton") or []:
        if not isinstance(link, list | tuple) or len(link) != 2:
            raise DataFormatError(path, f"skeleton entry {link!r} is not a pair of bodypart names")
        unknown = [str(n) for n in link if str(n) not in keypoints]
        if unknown:
            raise DataFormatError(path, f"skeleton link {list(link)} names {', '.join(unknown)}, which is not "
                                        f"a bodypart ({', '.join(keypoints)})")
        links.append((keypoints.index(str(link[0])), keypoints.index(str(link[1]))))
    return links


# ----------------------------------------------------------------------------- CollectedData
def _image_key(parts: Sequence[Any]) -> str:
    return "/".join(str(p) for p in parts if str(p) not in ("", "nan")).replace("\\", "/")


def _from_frame(path: Path, df: Any) -> DlcTable:
    """A DlcTable from a DataFrame in DeepLabCut's layout (what ``read_hdf`` gives)."""
    import pandas as pd

    cols = df.columns
    if not isinstance(cols, pd.MultiIndex) or cols.nlevels not in (3, 4):
        raise DataFormatError(path, "not DeepLabCut labels: columns are not scorer/bodyparts/coords "
                                    "(or scorer/individuals/bodyparts/coords)")
    names = list(cols.names)
    coords_level = cols.nlevels - 1
    if names[coords_level] not in (None, "coords"):
        raise DataFormatError(path, f"the last column level is {names[coords_level]!r}, expected 'coords'")
    index = df.index
    if isinstance(index, pd.MultiIndex):
        images = [_image_key(t) for t in index]
    else:
        images = [_image_key([v]) for v in index]
    return _table(path, images, [tuple(str(v) for v in c) for c in cols], df.to_numpy(dtype=np.float64))


def _table(path: Path, images: list[str], columns: list[tuple[str, ...]], values: np.ndarray) -> DlcTable:
    """Arrange (scorer, [individual], bodypart, coord) columns into ``(rows, individuals, bodyparts, 2)``."""
    levels = len(columns[0]) if columns else 3
    individuals: list[str] = []
    bodyparts: dict[str, list[str]] = {}
    slots: dict[tuple[str, str, str], int] = {}
    for j, col in enumerate(columns):
        ind, part, coord = (col[1], col[2], col[3]) if levels == 4 else ("", col[1], col[2])
        if coord == "likelihood":
            continue  # machine-labelled frames merged back carry it; labels have no confidence
        if coord not in ("x", "y"):
            raise DataFormatError(path, f"coords must be x and y, got {coord!r}", f"column {j + 1}")
        if ind not in bodyparts:
            individuals.append(ind)
            bodyparts[ind] = []
        if part not in bodyparts[ind]:
            bodyparts[ind].append(part)
        slots[(ind, part, coord)] = j
    all_parts = list(dict.fromkeys(p for ind in individuals for p in bodyparts[ind]))
    coords = np.full((len(images), len(individuals), len(all_parts), 2), np.nan)
    for (ind, part, coord), j in slots.items():
        coords[:, individuals.index(ind), all_parts.index(part), "xy".index(coord)] = values[:, j]
    for ind in individuals:
        for part in bodyparts[ind]:
            if (ind, part, "x") not in slots or (ind, part, "y") not in slots:
                raise DataFormatError(path, f"bodypart {part!r} has not both an x and a y column")
    return DlcTable(path, images, individuals, all_parts, coords, bodyparts)


def _read_csv(path: Path) -> DlcTable:
    """DeepLabCut's CSV: header rows scorer, [individuals,] bodyparts, coords; 1 or 3 index columns."""
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    labels = [r[0].strip() if r else "" for r in rows[:4]]
    expected = (["scorer", "individuals", "bodyparts", "coords"] if labels[1:2] == ["individuals"]
                else ["scorer", "bodyparts", "coords"])
    if labels[:len(expected)] != expected:
        raise DataFormatError(path, "not a DeepLabCut CSV: the header rows must start with "
                                    f"{', '.join(expected)} (found {', '.join(repr(v) for v in labels[:len(expected)])})")
    header = rows[:len(expected)]
    coords_row = header[-1]
    # rows indexed by path parts (DeepLabCut >= 2.2) leave those columns empty in the header
    n_index = 1 + next((i for i, v in enumerate(coords_row[1:]) if v.strip()), len(coords_row) - 1)
    width = len(coords_row)
    if width <= n_index or any(len(r) != width for r in header):
        raise DataFormatError(path, "not a DeepLabCut CSV: the header rows have different lengths or no columns")
    columns = [tuple(r[j].strip() for r in header) for j in range(n_index, width)]
    images, values = [], []
    for i, row in enumerate(rows[len(expected):], start=len(expected) + 1):
        if not any(c.strip() for c in row):
            continue
        if len(row) != width:
            raise DataFormatError(path, f"{len(row)} cells where the header has {width}", f"line {i}")
        try:
            values.append([float(c) if c.strip() else math.nan for c in row[n_index:]])
        except ValueError:
            raise DataFormatError(path, "a coordinate is not a number", f"line {i}") from None
        images.append(_image_key(row[:n_index]))
    array = np.asarray(values, np.float64).reshape(len(values), len(columns))
    return _table(path, images, columns, array)


def read_collected_data(path: str | os.PathLike[str]) -> DlcTable:
    """Read one ``CollectedData_<scorer>.h5`` or ``.csv``."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        return _read_csv(path)
    import pandas as pd

    try:
        with pd.HDFStore(path, mode="r") as store:
            keys = store.keys()
            key = "/df_with_missing" if "/df_with_missing" in keys else keys[0] if len(keys) == 1 else None
            if key is None:
                raise DataFormatError(path, f"several tables ({', '.join(keys)}) and none is df_with_missing")
            df = store[key]
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:  # RuntimeError: HDF5ExtError
        raise DataFormatError(path, f"cannot be read as a pandas HDF5 table ({exc})") from None
    return _from_frame(path, df)


def _collected_files(root: Path, scorer: str | None) -> list[Path]:
    labeled = root / "labeled-data"
    folders = sorted(p for p in labeled.iterdir() if p.is_dir()) if labeled.is_dir() else []
    chosen = []
    for folder in folders:
        found = sorted(folder.glob("CollectedData_*.h5")) or sorted(folder.glob("CollectedData_*.csv"))
        if not found:
            continue
        own = [p for p in found if p.stem == f"CollectedData_{scorer}"]
        if own:
            chosen.append(own[0])
        elif len(found) == 1:
            chosen.append(found[0])
        else:
            raise DataFormatError(folder, f"several labellers' files ({', '.join(p.name for p in found)}) and none "
                                          f"is the config's scorer {scorer!r}")
    if not chosen:
        raise DataFormatError(labeled, "no CollectedData_<scorer>.h5 or .csv in any labeled-data/<video>/ folder "
                                       "(label frames in DeepLabCut first)")
    return chosen


def _check_bodyparts(table: DlcTable, wanted: dict[str, list[str]], config_path: Path) -> None:
    for ind, parts in table.parts_by_individual.items():
        expected = wanted.get(_SINGLE if ind == _SINGLE else "*")
        if expected is None:
            raise DataFormatError(table.path, f"individual {ind!r} labels unique bodyparts but {config_path} "
                                              "has no uniquebodyparts")
        extra = [p for p in parts if p not in expected]
        missing = [p for p in expected if p not in parts]
        if extra or missing:
            what = "; ".join(s for s in (f"not in config.yaml: {', '.join(extra)}" if extra else "",
                                         f"missing: {', '.join(missing)}" if missing else "") if s)
            who = f" of individual {ind!r}" if ind else ""
            raise DataFormatError(table.path, f"the bodyparts{who} differ from {config_path}'s ({what}); "
                                              "relabel or fix config.yaml so they agree")


def read_deeplabcut_project(project: str | os.PathLike[str]) -> DlcProject:
    """Read and validate a project: config, every CollectedData file, and that each image exists."""
    root = Path(project)
    config = _read_config(root)
    config_path = root / "config.yaml"
    # older configs lack the flag; theirs is a multi-animal project when it lists individuals
    flag = config.get("multianimalproject")
    multi = bool(flag) if flag is not None else config.get("individuals") is not None
    if multi:
        multi_parts = _name_list(config, "multianimalbodyparts", config_path, required=True)
        unique = _name_list(config, "uniquebodyparts", config_path, required=False)
        keypoints = multi_parts + unique
        wanted = {"*": multi_parts, **({_SINGLE: unique} if unique else {})}
    else:
        keypoints = _name_list(config, "bodyparts", config_path, required=True)
        wanted = {"*": keypoints}
    if len(set(keypoints)) != len(keypoints):
        raise DataFormatError(config_path, "a bodypart is both a multi-animal and a unique bodypart")
    links = _project_skeleton(config, keypoints, config_path)
    tables = [read_collected_data(p) for p in _collected_files(root, config.get("scorer"))]
    for table in tables:
        if multi and table.individuals == [""]:
            raise DataFormatError(table.path, "a single-animal table (no individuals row) in a multi-animal project")
        if not multi and table.individuals != [""]:
            raise DataFormatError(table.path, "a multi-animal table (individuals row) but config.yaml is not "
                                              "a multi-animal project (multianimalproject: true)")
        _check_bodyparts(table, wanted, config_path)
        _resolve_images(root, table)
    return DlcProject(root, config, keypoints, links, multi, tables)


def _resolve_images(root: Path, table: DlcTable) -> None:
    """Replace each listed path by the file that exists, or fail naming the first missing one."""
    resolved: list[Path] = []
    missing: list[str] = []
    for name in table.images:
        candidate = root / name
        if not candidate.is_file():
            # a video folder copied from another project keeps its frames next to the labels
            candidate = table.path.parent / Path(name).name
        if candidate.is_file():
            resolved.append(candidate)
        else:
            missing.append(name)
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataFormatError(table.path, f"labelled image missing: {root / missing[0]}{more}; "
                                          f"images are looked up under the project folder {root}")
    table.images = [str(p) for p in resolved]


# ------------------------------------------------------------------------------------ COCO
def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:  # reads the header only
            return im.size
    except (OSError, UnidentifiedImageError):
        raise DataFormatError(path, "image file cannot be decoded") from None


def _box(xy: np.ndarray, width: int, height: int) -> list[float]:
    lo, hi = xy.min(0), xy.max(0)
    margin = BOX_MARGIN * max(float((hi - lo).max()), 1.0)
    x0, y0 = max(0.0, lo[0] - margin), max(0.0, lo[1] - margin)
    x1, y1 = min(float(width), hi[0] + margin), min(float(height), hi[1] + margin)
    return [float(x0), float(y0), float(max(x1 - x0, 1.0)), float(max(y1 - y0, 1.0))]


def to_coco(project: DlcProject, out: Path) -> dict[str, Any]:
    """The COCO keypoints payload of a project, ``file_name`` relative to ``out``'s folder."""
    keypoints = project.keypoints
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    image_ids: dict[str, int] = {}
    for table in project.tables:
        for row, image in enumerate(table.images):
            labelled = ~np.isnan(table.coords[row]).any(-1)  # (individuals, bodyparts)
            if not labelled.any():
                continue
            key = str(Path(image).resolve())
            if key not in image_ids:
                width, height = _image_size(Path(image))
                image_ids[key] = len(images) + 1
                images.append({"id": image_ids[key], "width": width, "height": height,
                               "file_name": os.path.relpath(key, out.parent.resolve()).replace(os.sep, "/"),
                               "dlc_path": os.path.relpath(key, project.root.resolve()).replace(os.sep, "/")})
            record = images[image_ids[key] - 1]
            for i, individual in enumerate(table.individuals):
                if not labelled[i].any():
                    continue
                kps: list[float] = [0.0, 0.0, 0] * len(keypoints)
                for b, part in enumerate(table.bodyparts):
                    if labelled[i, b]:
                        k = keypoints.index(part)
                        kps[3 * k:3 * k + 3] = [float(table.coords[row, i, b, 0]),
                                                float(table.coords[row, i, b, 1]), 2]
                if project.multi_animal:
                    bbox = _box(table.coords[row, i][labelled[i]], record["width"], record["height"])
                else:
                    bbox = [0.0, 0.0, float(record["width"]), float(record["height"])]
                ann = {"id": len(annotations) + 1, "image_id": record["id"], "category_id": 1,
                       "keypoints": kps, "num_keypoints": int(labelled[i].sum()), "iscrowd": 0,
                       "bbox": bbox, "area": bbox[2] * bbox[3]}
                if individual:
                    ann["individual"] = individual
                annotations.append(ann)
    if not annotations:
        raise DataFormatError(project.root, "no labelled joint in any CollectedData file")
    category = {"id": 1, "name": project.task, "supercategory": "animal", "keypoints": keypoints,
                "skeleton": [[a + 1, b + 1] for a, b in project.links]}
    info = {"description": f"DeepLabCut project {project.root.name}, converted by crosspose",
            "deeplabcut": {"project": str(project.root.resolve()), "scorer": project.config.get("scorer"),
                           "multi_animal": project.multi_animal,
                           "training_fraction": project.config.get("TrainingFraction"),
                           "sources": [str(t.path.resolve()) for t in project.tables]}}
    return {"info": info, "images": images, "annotations": annotations, "categories": [category]}


def _split(payload: dict[str, Any], val_fraction: float, seed: int) -> dict[str, dict[str, Any]]:
    ids = [img["id"] for img in payload["images"]]
    n_val = int(round(val_fraction * len(ids)))
    if n_val < 1 or n_val >= len(ids):
        raise ConfigError(f"--val-fraction {val_fraction} of {len(ids)} labelled frames leaves an empty part")
    order = np.random.default_rng(seed).permutation(len(ids))
    val = {ids[i] for i in order[:n_val]}
    parts = {}
    for name, keep in (("train", lambda i: i not in val), ("val", lambda i: i in val)):
        parts[name] = {**payload, "info": {**payload["info"], "split": name, "seed": seed},
                       "images": [r for r in payload["images"] if keep(r["id"])],
                       "annotations": [a for a in payload["annotations"] if keep(a["image_id"])]}
    return parts


def training_val_fraction(config: dict[str, Any]) -> float:
    """``1 - TrainingFraction[0]`` of config.yaml (DeepLabCut's own train/test split size)."""
    value = config.get("TrainingFraction")
    first = value[0] if isinstance(value, list) and value else value
    if not isinstance(first, int | float) or not 0 < float(first) < 1:
        raise ConfigError(f"config.yaml's TrainingFraction {value!r} is not a fraction between 0 and 1")
    return 1.0 - float(first)


def prepare_deeplabcut(
    project: str | os.PathLike[str],
    out: str | os.PathLike[str],
    val_fraction: float | str | None = None,
    seed: int = 0,
) -> list[Path]:
    """Convert a DeepLabCut project; returns the written files.

    Args:
        project: the project folder (holding config.yaml and labeled-data/).
        out: the COCO JSON to write; with ``val_fraction`` it names ``OUT_train.json`` and
            ``OUT_val.json`` instead (OUT itself is not written).
        val_fraction: fraction of labelled frames for validation, chosen at random by image; the
            string ``"config"`` takes ``1 - TrainingFraction`` from config.yaml.
        seed: seed of the split.

    Everything is read and validated before the first byte is written.
    """
    out = Path(out)
    dlc = read_deeplabcut_project(project)
    payload = to_coco(dlc, out)
    if val_fraction is None:
        return [atomic_write_json(out, payload, indent=None)]
    fraction = training_val_fraction(dlc.config) if val_fraction == "config" else float(val_fraction)
    parts = _split(payload, fraction, seed)
    return [atomic_write_json(out.with_name(f"{out.stem}_{name}.json"), part, indent=None)
            for name, part in parts.items()]
