"""SLEAP labels to the common format: ``crosspose prepare sleap``.

A SLEAP project is one ``.slp`` file (HDF5): skeletons, videos (files on disk, or frames embedded in
the ``.slp`` itself by "export training package") and labelled frames, each holding user-labelled
instances and/or the network's predicted ones. It is read with sleap-io (``load_slp``), the talmolab
library SLEAP itself is built on: the format is SLEAP's own and versioned, so its reference reader
is safer than reading the HDF5 tables here (unlike DeepLabCut's one pandas table, see
:mod:`crosspose.data.deeplabcut`).

What is written (COCO keypoints, 0-based pixels as SLEAP's, ``file_name`` relative to the JSON):

- one annotation per **user-labelled** instance. Predicted instances are the network's guesses, not
  ground truth, and are left out (their count is kept in ``info.sleap.predicted_instances_ignored``);
  a frame holding only predictions is not a labelled frame;
- a point that is missing (NaN) or marked not visible is unlabelled (v=0); an instance with no
  labelled point is dropped; the track name, when there is one, is kept as ``"individual"``;
- as ``prepare deeplabcut``: when no frame holds more than one instance the frames become
  whole-frame instances (single-animal training); otherwise each instance is boxed around its
  labelled points (grown by :data:`~crosspose.data.deeplabcut.BOX_MARGIN`, clipped to the frame);
- every labelled frame is decoded (from its video, or from the frames embedded in the ``.slp``) and
  written as PNG to ``<OUT stem>_images/<video n>_<video stem>/frame_<index>.png`` beside the
  output, so training needs neither the videos nor SLEAP.

A video path stored in the ``.slp`` that no longer exists is also looked up beside the ``.slp``
(by its relative path, then by its name), as SLEAP does when a project folder has moved. Everything
is read and checked before anything is written; the images go to a temporary folder that replaces
``<OUT stem>_images`` only once every frame decoded, and the JSON is written last, atomically.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crosspose.core.errors import ConfigError, DataFormatError
from crosspose.core.io import atomic_directory, atomic_write_json
from crosspose.data.deeplabcut import _box, _split

__all__ = ["SleapFrame", "SleapLabels", "prepare_sleap", "read_sleap"]


@dataclass
class SleapFrame:
    """One labelled frame: its video, frame index and user instances (``(K, 2)`` points, NaN = unlabelled)."""

    video: int
    index: int
    instances: list[np.ndarray]
    individuals: list[str]
    image: Callable[[], np.ndarray]  # decodes the frame (H, W, C) uint8


@dataclass
class SleapLabels:
    """A validated ``.slp`` file, ready to be written as COCO."""

    path: Path
    keypoints: list[str]
    links: list[tuple[int, int]]
    skeleton_name: str
    video_names: list[str]
    frames: list[SleapFrame] = field(default_factory=list)
    predicted_ignored: int = 0
    videos: list[Any] = field(default_factory=list)  # sleap-io Videos opened for decoding

    def close(self) -> None:
        for video in self.videos:
            video.close()

    @property
    def multi_instance(self) -> bool:
        return any(len(f.instances) > 1 for f in self.frames)


def _load(path: Path) -> Any:
    import sleap_io as sio

    if not path.is_file():
        raise DataFormatError(path, "SLEAP labels file not found")
    if path.suffix.lower() != ".slp":
        raise DataFormatError(path, "not a SLEAP labels file (.slp)")
    try:
        return sio.load_slp(str(path), open_videos=False)
    except Exception as exc:  # h5py / sleap-io raise OSError, KeyError, ValueError ... for foreign files
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise DataFormatError(path, f"cannot be read as SLEAP labels ({type(exc).__name__}: {first})") from None


def _find(name: str, slp: Path) -> Path | None:
    """A stored path as it is, relative to the .slp's folder, or by its name beside the .slp."""
    for candidate in (Path(name), slp.parent / name, slp.parent / Path(name.replace("\\", "/")).name):
        if candidate.is_file():
            return candidate
    return None


def _relink(video: Any, slp: Path) -> None:
    """Point ``video`` at a file that exists (its frames are embedded, or its file is found) or fail."""
    if isinstance(video.filename, list):  # an image sequence
        found = [_find(str(f), slp) for f in video.filename]
        if None in found:
            missing = video.filename[found.index(None)]
            raise DataFormatError(slp, f"labelled image {missing} not found (also looked beside the .slp)")
        video.replace_filename([str(p) for p in found], open=False)
        return
    name = str(video.filename)
    if Path(name).resolve() == slp.resolve():  # frames embedded in the .slp itself
        return
    found_one = _find(name, slp)
    if found_one is None:
        raise DataFormatError(slp, f"video {name} not found (also looked beside the .slp, in {slp.parent}); "
                                   "move it back or re-export the labels with embedded frames")
    video.replace_filename(str(found_one), open=False)


def _reader(lf: Any) -> Callable[[], np.ndarray]:
    return lambda: np.asarray(lf.video[int(lf.frame_idx)])


def read_sleap(path: str | os.PathLike[str]) -> SleapLabels:
    """Read and check a ``.slp`` file: one skeleton, user-labelled frames, every needed video present."""
    slp = Path(path)
    labels = _load(slp)
    used = {id(inst.skeleton): inst.skeleton for lf in labels.labeled_frames for inst in lf.user_instances}
    if len(used) > 1:
        names = ", ".join(repr(s.name) for s in used.values())
        raise DataFormatError(slp, f"user instances use {len(used)} skeletons ({names}); crosspose trains one "
                                   "keypoint list, so split the project in SLEAP first")
    if not used and not labels.skeletons:
        raise DataFormatError(slp, "no skeleton and no labelled frame")
    skeleton = next(iter(used.values())) if used else labels.skeletons[0]
    keypoints = [str(n) for n in skeleton.node_names]
    links = [(int(a), int(b)) for a, b in skeleton.edge_inds]
    video_ids = {id(v): i for i, v in enumerate(labels.videos)}
    out = SleapLabels(slp, keypoints, links, str(skeleton.name or "animal"),
                      [Path(str(v.filename[0] if isinstance(v.filename, list) else v.filename)).stem
                       for v in labels.videos])
    needed: dict[int, Any] = {}
    for lf in labels.labeled_frames:
        out.predicted_ignored += len(lf.predicted_instances)
        instances, individuals = [], []
        for inst in lf.user_instances:
            points = np.asarray(inst.numpy(invisible_as_nan=True), np.float64)[:, :2]
            if np.isnan(points).any(-1).all():
                continue
            instances.append(points)
            individuals.append(str(inst.track.name) if inst.track is not None else "")
        if not instances:
            continue
        v = video_ids[id(lf.video)]
        needed[v] = lf.video
        out.frames.append(SleapFrame(v, int(lf.frame_idx), instances, individuals, _reader(lf)))
    if not out.frames:
        more = (f" ({out.predicted_ignored} predicted instances are not ground truth and are left out)"
                if out.predicted_ignored else "")
        raise DataFormatError(slp, f"no user-labelled frames{more}; label frames in SLEAP first")
    for video in needed.values():
        _relink(video, slp)
        try:
            video.open()
        except Exception as exc:  # OpenCV/imageio/h5py, each with its own error types
            raise DataFormatError(slp, f"video {video.filename} cannot be opened ({type(exc).__name__}: "
                                       f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from None
        out.videos.append(video)
    return out


def _decode(labels: SleapLabels, frame: SleapFrame) -> np.ndarray:
    where = f"{labels.video_names[frame.video]}, frame {frame.index}"
    try:
        image = np.asarray(frame.image())
    except Exception as exc:  # video backends raise their own types for a damaged or short file
        raise DataFormatError(labels.path, f"cannot decode labelled frame ({type(exc).__name__}: "
                                           f"{str(exc).splitlines()[0][:200] if str(exc) else ''})", where) from None
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3) or image.size == 0:
        raise DataFormatError(labels.path, f"labelled frame decodes to an array of shape {image.shape}", where)
    return image.astype(np.uint8)


def _write_png(image: np.ndarray, target: Path) -> None:
    import cv2

    bgr = image[:, :, 0] if image.shape[2] == 1 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(target), bgr):
        raise OSError(f"cannot write {target}")


def _annotations(labels: SleapLabels, frame: SleapFrame, image_id: int, width: int, height: int,
                 first_id: int) -> list[dict[str, Any]]:
    anns: list[dict[str, Any]] = []
    for points, individual in zip(frame.instances, frame.individuals, strict=True):
        labelled = ~np.isnan(points).any(-1)
        kps: list[float] = []
        for (x, y), ok in zip(points, labelled, strict=True):
            kps += [float(x), float(y), 2] if ok else [0.0, 0.0, 0]
        bbox = (_box(points[labelled], width, height) if labels.multi_instance
                else [0.0, 0.0, float(width), float(height)])
        ann: dict[str, Any] = {"id": first_id + len(anns), "image_id": image_id, "category_id": 1,
                               "keypoints": kps, "num_keypoints": int(labelled.sum()), "iscrowd": 0,
                               "bbox": bbox, "area": bbox[2] * bbox[3]}
        if individual:
            ann["individual"] = individual
        anns.append(ann)
    return anns


def _write_images(labels: SleapLabels, images_dir: Path) -> dict[str, Any]:
    """Decode every labelled frame into a temp folder; on success it replaces ``images_dir``."""
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    with atomic_directory(images_dir) as tmp:
        for frame in labels.frames:
            image = _decode(labels, frame)
            height, width = image.shape[:2]
            relative = Path(f"{frame.video:02d}_{labels.video_names[frame.video]}") / f"frame_{frame.index:06d}.png"
            _write_png(image, tmp / relative)
            image_id = len(images) + 1
            images.append({"id": image_id, "width": int(width), "height": int(height),
                           "file_name": (Path(images_dir.name) / relative).as_posix(),
                           "sleap_video": labels.video_names[frame.video], "frame": frame.index})
            annotations += _annotations(labels, frame, image_id, int(width), int(height), len(annotations) + 1)
    return {"images": images, "annotations": annotations}


def prepare_sleap(labels_file: str | os.PathLike[str], out: str | os.PathLike[str],
                  val_fraction: float | None = None, seed: int = 0) -> list[Path]:
    """Convert a SLEAP ``.slp`` file; returns the written JSON files.

    Args:
        labels_file: the ``.slp`` file.
        out: the COCO JSON to write; with ``val_fraction`` it names ``OUT_train.json`` and
            ``OUT_val.json`` instead (OUT itself is not written). The frames go to
            ``<OUT stem>_images/`` beside it either way.
        val_fraction: fraction of labelled frames for validation, chosen at random by frame.
        seed: seed of the split.
    """
    out = Path(out)
    labels = read_sleap(labels_file)
    if val_fraction is not None:  # a split that cannot be made fails before any image is decoded
        n_val = int(round(val_fraction * len(labels.frames)))
        if n_val < 1 or n_val >= len(labels.frames):
            raise ConfigError(f"--val-fraction {val_fraction} of {len(labels.frames)} labelled frames leaves "
                              "an empty part")
    try:
        body = _write_images(labels, out.parent / f"{out.stem}_images")
    finally:
        labels.close()
    category = {"id": 1, "name": labels.skeleton_name, "supercategory": "animal", "keypoints": labels.keypoints,
                "skeleton": [[a + 1, b + 1] for a, b in labels.links]}
    info = {"description": f"SLEAP labels {labels.path.name}, converted by crosspose",
            "sleap": {"labels": str(labels.path.resolve()), "videos": labels.video_names,
                      "multi_instance": labels.multi_instance,
                      "predicted_instances_ignored": labels.predicted_ignored}}
    payload = {"info": info, **body, "categories": [category]}
    if val_fraction is None:
        return [atomic_write_json(out, payload, indent=None)]
    parts = _split(payload, float(val_fraction), seed)
    return [atomic_write_json(out.with_name(f"{out.stem}_{name}.json"), part, indent=None)
            for name, part in parts.items()]
