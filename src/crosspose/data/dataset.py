"""Instance datasets over the common format, and the sampler that shards them across processes.

One sample is one annotated instance (person or animal), cropped around its box: the top-down
protocol MPII's evaluation uses (the ground-truth person position is known). Predictions are
mapped back to original image pixels with the inverse of the crop matrix.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Dataset, Sampler

from crosspose.core.errors import CheckpointError, ConfigError, DataFormatError
from crosspose.core.skeletons import flip_pairs_from_names
from crosspose.data.coco import CocoKeypoints
from crosspose.data.images import decode_bgr
from crosspose.data.transforms import Augmentation, InstanceTransform, frame_box, invert_affine, sample_seed

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageFolderDataset",
    "InstanceDataset",
    "ShardedEpochSampler",
    "read_rgb",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def read_rgb(path: Path, source: Path | None = None, where: str | None = None,
             expected_size: tuple[int, int] | None = None, allow_truncated: bool = False) -> np.ndarray:
    """Decode an image as RGB uint8 (see :mod:`crosspose.data.images`), or raise a DataFormatError.

    ``expected_size`` is the (width, height) the annotation file declares: keypoints are in that
    pixel grid, so an image of another size would train on wrong positions (or on padding).
    """
    image = decode_bgr(path, source, where, allow_truncated=allow_truncated)
    if expected_size is not None and (image.shape[1], image.shape[0]) != tuple(expected_size):
        raise DataFormatError(source or path, f"image {path} decodes to {image.shape[1]}x{image.shape[0]} "
                              f"pixels but the annotation file says {expected_size[0]}x{expected_size[1]}", where)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class InstanceDataset(Dataset):
    """The instances of a COCO keypoints file, cropped and (for training) augmented.

    Items are dicts of tensors: ``image`` (3, H, W) uint8, ``keypoints`` (K, 2) input pixels,
    ``valid`` (K,) bool, ``to_original`` (2, 3) input->original pixels, ``zoom`` input pixels per
    original pixel (the disk radius in original units needs it), ``index`` (instance number).
    An item may be requested as ``(index, epoch)`` (what :class:`ShardedEpochSampler` yields) so
    that its augmentation depends only on the run seed, the epoch and the index.

    Args:
        coco: the validated file.
        input_hw: network input (H, W).
        augmentation: None for evaluation.
        padding: context around each instance box.
        seed: run seed for the augmentation.
        check_images: verify up front that every image exists (one clear error before training).
        allow_truncated: decode truncated image files (a warning each) instead of failing.
        whole_frame: each sample is a whole frame with its one instance (DeepLabCut's single-animal
            way: no boxes needed; training crops and zooms the frame at random); boxes and ``padding``
            are not used. A frame with several instances is an error.
        joints: train on these joints of the file only, by name, in this order (e.g. DeeperCut's
            14 MPII joints); default: all of them.
    """

    def __init__(
        self,
        coco: CocoKeypoints,
        input_hw: tuple[int, int],
        augmentation: Augmentation | None = None,
        padding: float = 1.25,
        seed: int = 0,
        check_images: bool = True,
        allow_truncated: bool = False,
        whole_frame: bool = False,
        joints: Sequence[str] | None = None,
    ) -> None:
        self.coco = coco
        self.allow_truncated = allow_truncated
        self.instances = coco.instances()
        if not self.instances:
            raise DataFormatError(coco.path, "no annotated instances (every annotation is crowd or has no labelled joint)")
        self.seed = seed
        self.whole_frame = whole_frame
        if whole_frame:
            self._check_one_per_frame()
        names = list(coco.keypoint_names)
        missing = [j for j in joints or () if j not in names]
        if missing:
            raise DataFormatError(coco.path, f"no joint named {', '.join(missing)} (data.joints); "
                                             f"the file has {', '.join(names)}")
        columns = [names.index(j) for j in joints] if joints else list(range(len(names)))
        self.keypoint_names = tuple(names[c] for c in columns)
        self.transform = InstanceTransform(
            input_hw, augmentation, 1.0 if whole_frame else padding, flip_pairs_from_names(self.keypoint_names),
            len(columns), whole_frame=whole_frame,
        )
        self._keypoints = np.stack([coco.keypoints(a)[columns] for a in self.instances]).astype(np.float64)
        # What a loader worker reads, as a few flat arrays: a worker gets these (pickled once) instead of
        # the file's Python dicts, and reading them never writes the refcounts that make forked workers
        # copy every page of a list of dicts (the classic DataLoader "memory leak").
        self._paths = np.array([str(coco.image_path(a["image_id"])) for a in self.instances])
        self._file_names = np.array([str(coco.images[a["image_id"]]["file_name"]) for a in self.instances])
        self._boxes = np.array([a["bbox"] for a in self.instances], dtype=np.float64).reshape(-1, 4)
        # the size each image's record declares (-1: none), which the decoded image must match
        self._declared = np.array([_declared_size(coco.images[a["image_id"]]) for a in self.instances],
                                  dtype=np.int64).reshape(-1, 2)
        self._source = coco.path
        if check_images:
            self._check_images()

    def __getstate__(self) -> dict[str, Any]:
        # workers need only the arrays; the main process keeps the file for annotation() and scoring
        return {**self.__dict__, "coco": None, "instances": None}

    def _check_one_per_frame(self) -> None:
        seen: dict[object, int] = {}
        for ann in self.instances:
            if ann["image_id"] in seen:
                name = self.coco.images[ann["image_id"]]["file_name"]
                raise ConfigError(f"{self.coco.path}: image {name} holds several annotated instances, but "
                                  "data.whole_frame trains one animal per frame; use box crops (whole_frame: false)")
            seen[ann["image_id"]] = 1

    def _check_images(self) -> None:
        missing = [iid for iid in dict.fromkeys(a["image_id"] for a in self.instances)
                   if not self.coco.image_path(iid).is_file()]
        if missing:
            first = self.coco.images[missing[0]]["file_name"]
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise DataFormatError(
                self.coco.path,
                f"image listed but missing: {self.coco.image_path(missing[0])}{more}; "
                f"images are looked up under {self.coco.image_root}",
                where=f"image {first} (id {missing[0]})",
            )

    def __len__(self) -> int:
        return len(self._keypoints)

    def annotation(self, index: int) -> dict[str, Any]:
        return self.instances[index]

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        index, epoch = item if isinstance(item, tuple) else (item, 0)
        width, height = self._declared[index]
        image = read_rgb(Path(self._paths[index]), self._source, where=f"image {self._file_names[index]}",
                         expected_size=(int(width), int(height)) if width > 0 else None,
                         allow_truncated=self.allow_truncated)
        bbox = frame_box(image.shape[1], image.shape[0]) if self.whole_frame else self._boxes[index]
        crop, xy, valid, matrix, zoom = self.transform(
            image, self._keypoints[index], bbox, sample_seed(self.seed, epoch, index)
        )
        return {
            "image": torch.from_numpy(crop).permute(2, 0, 1),
            "keypoints": torch.from_numpy(xy),
            "valid": torch.from_numpy(valid),
            "to_original": torch.from_numpy(invert_affine(matrix).astype(np.float32)),
            "zoom": torch.tensor(zoom, dtype=torch.float32),
            "index": torch.tensor(index, dtype=torch.long),
        }


def _declared_size(record: dict[str, Any]) -> tuple[int, int]:
    """(width, height) an image record declares, or (-1, -1) when it declares none."""
    if "width" in record and "height" in record:
        return int(record["width"]), int(record["height"])
    return -1, -1


class ImageFolderDataset(Dataset):
    """Every image of a folder as one instance covering the whole image (prediction only)."""

    def __init__(self, folder: str | Path, input_hw: tuple[int, int], padding: float = 1.0) -> None:
        self.folder = Path(folder)
        self.paths = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.paths:
            raise DataFormatError(self.folder, f"no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        self.transform = InstanceTransform(input_hw, None, padding, (), 0)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        index = item[0] if isinstance(item, tuple) else item
        image = read_rgb(self.paths[index])
        h, w = image.shape[:2]
        crop, _, _, matrix, _ = self.transform(image, np.zeros((0, 3)), (0, 0, w, h), 0)
        return {
            "image": torch.from_numpy(crop).permute(2, 0, 1),
            "to_original": torch.from_numpy(invert_affine(matrix).astype(np.float32)),
            "index": torch.tensor(index, dtype=torch.long),
        }


class ShardedEpochSampler(Sampler[tuple[int, int]]):
    """Yields ``(index, epoch)``; shuffles by (seed, epoch) and shards across DDP ranks.

    Training shards drop the remainder so every rank runs the same number of steps. Evaluation
    shards do NOT pad (Lightning's DistributedSampler repeats samples to even them out, which
    double-counts them in metrics); the module gathers the shards and scores each instance once.

    Args:
        size: number of samples.
        shuffle: new permutation each epoch.
        seed: run seed.
        even_shards: drop the remainder so all ranks get equally many samples (training).
    """

    def __init__(self, size: int, shuffle: bool, seed: int = 0, even_shards: bool = False) -> None:
        self.size, self.shuffle, self.seed, self.even_shards = size, shuffle, seed, even_shards
        self.epoch = 0
        self._resume: tuple[int, int] | None = None  # (epoch, samples of this rank's shard already used)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def state_dict(self, samples_done: int = 0) -> dict[str, int]:
        """The position to resume from: the epoch and how many of this rank's samples it has used."""
        return {"epoch": self.epoch, "samples_done": int(samples_done), "size": self.size, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from a :meth:`state_dict`: the next iteration of that epoch skips the used samples.

        The skip applies once, and only if the epoch being iterated is the saved one. A state of
        another data set (size or seed differ) would silently train on other samples: refused.
        """
        if (state.get("size"), state.get("seed")) != (self.size, self.seed):
            raise CheckpointError(
                f"the checkpoint's training loader drew from {state.get('size')} samples with seed "
                f"{state.get('seed')}; this run's has {self.size} with seed {self.seed}: an exact resume "
                "needs the same training file and data.seed")
        self.epoch = int(state["epoch"])
        self._resume = (self.epoch, int(state["samples_done"]))

    @staticmethod
    def _rank_world() -> tuple[int, int]:
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1

    def _indices(self) -> Sequence[int]:
        if self.shuffle:
            return np.random.default_rng([self.seed & 0xFFFFFFFF, self.epoch]).permutation(self.size).tolist()
        return range(self.size)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        rank, world = self._rank_world()
        indices = list(self._indices())
        if self.even_shards and world > 1:
            indices = indices[: len(indices) - len(indices) % world]
        start = 0
        if self._resume is not None and self._resume[0] == self.epoch:
            start = self._resume[1]  # once: the next epoch is whole again
        self._resume = None
        for i in indices[rank::world][start:]:
            yield (i, self.epoch)

    def __len__(self) -> int:
        rank, world = self._rank_world()
        n = self.size - (self.size % world if self.even_shards else 0)
        return len(range(rank, n, world))
