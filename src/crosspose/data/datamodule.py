"""LightningDataModule over the common format (COCO keypoints JSON + image folder)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from torch.utils.data import DataLoader

from crosspose.core.errors import ConfigError
from crosspose.core.hardware import choose_loader_workers
from crosspose.core.validate import non_negative, positive
from crosspose.data.coco import CocoKeypoints, load_coco_keypoints
from crosspose.data.dataset import ImageFolderDataset, InstanceDataset, ShardedEpochSampler
from crosspose.data.resumable import ResumableDataLoader
from crosspose.data.transforms import Augmentation
from crosspose.data.workers import worker_process_options

__all__ = ["PoseDataModule"]


class PoseDataModule(L.LightningDataModule):
    """Train/val/test/predict splits, each a COCO keypoints file.

    Args:
        train_file, val_file, test_file: COCO keypoints JSON files.
        predict_file: a COCO keypoints JSON (instances cropped by their boxes) or a folder of
            images (each image one instance).
        image_root: folder the ``file_name`` entries are relative to; default: each JSON's folder.
        input_size: network input, one number (square) or [height, width]; multiples of 16.
        padding: context around each instance box (1.25 = 25 % more than the box).
        batch_size: training batch size per process.
        eval_batch_size: validation/test/predict batch size (default: batch_size).
        num_workers: loader processes per training process; ``auto``: none when training on the
            CPU (the loader would compete with the network for the same cores: measured faster and
            smaller without), one per free core (at most 8) on a GPU. See
            :func:`crosspose.core.hardware.choose_loader_workers`.
        augmentation: training augmentation.
        seed: seed of shuffling and augmentation (independent of the model seed).
        pin_memory: pinned host memory for faster host-to-device copies (used only with a GPU).
        allow_truncated: train/evaluate on truncated image files (their missing part grey, a warning
            each) instead of stopping with an error that names the file.
        whole_frame: train and evaluate on whole frames, one animal each, as DeepLabCut does for
            single animals (random crop/zoom of the frame within ``augmentation.scale``; no boxes
            needed); default: instances cropped around their boxes.
        categories: species to use from files with several keypoint categories sharing one keypoint
            list (AP-10K, Animal-Pose): category ids, names or supercategories; default all.
        joints: train and validate on these joints of the files, by name and in this order (e.g.
            DeeperCut's 14 MPII joints); scoring matches them to the files' joints by name.
    """

    def __init__(
        self,
        train_file: str | None = None,
        val_file: str | None = None,
        test_file: str | None = None,
        predict_file: str | None = None,
        image_root: str | None = None,
        input_size: int | tuple[int, int] = 256,
        padding: float = 1.25,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int | Literal["auto"] = "auto",
        augmentation: Augmentation | None = None,
        seed: int = 0,
        pin_memory: bool = True,
        allow_truncated: bool = False,
        categories: list[str] | str | None = None,
        whole_frame: bool = False,
        joints: list[str] | None = None,
    ) -> None:
        super().__init__()
        hw = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
        if len(hw) != 2 or any(v <= 0 or v % 16 for v in hw):
            raise ConfigError(f"data.input_size must be positive multiples of 16 (output stride), got {input_size}")
        self.input_hw: tuple[int, int] = (int(hw[0]), int(hw[1]))
        positive("data.padding", padding)
        positive("data.batch_size", batch_size)
        if eval_batch_size is not None:
            positive("data.eval_batch_size", eval_batch_size)
        if isinstance(num_workers, str) and num_workers != "auto":
            raise ConfigError(f"data.num_workers must be a count or 'auto', got {num_workers!r}")
        if num_workers != "auto":
            non_negative("data.num_workers", num_workers)
        for split, f in (("train", train_file), ("val", val_file), ("test", test_file), ("predict", predict_file)):
            if f is not None and not str(f).strip():
                raise ConfigError(f"data.{split}_file is empty (give a COCO file or leave it out)")
        self.files = {"train": train_file, "val": val_file, "test": test_file, "predict": predict_file}
        self.image_root = image_root
        self.padding = padding
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.augmentation = augmentation if augmentation is not None else Augmentation()
        self.seed = seed
        self.pin_memory = pin_memory
        self.allow_truncated = allow_truncated
        self.categories = categories
        self.whole_frame = whole_frame
        self.joints = list(joints) if joints else None
        self.datasets: dict[str, InstanceDataset | ImageFolderDataset] = {}
        self._cocos: dict[str, CocoKeypoints] = {}
        self._train_loader: ResumableDataLoader | None = None
        self._train_position: dict[str, Any] | None = None  # from a checkpoint, for the next train loader

    def state_dict(self) -> dict[str, Any]:
        """The training loader's position (saved in every checkpoint; see :mod:`crosspose.data.resumable`)."""
        return {"train_loader": self._train_loader.state_dict()} if self._train_loader is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume the training loader where the checkpoint left it.

        Lightning restores the data module before anything builds a loader, but may build (and
        start iterating) the training loader before it restores the loops -- e.g. when the
        learning-rate schedule asks for the number of steps -- so the position is applied here,
        to the loader as it is built, rather than through the loops alone.
        """
        self._train_position = state.get("train_loader")
        if self._train_loader is not None and self._train_position is not None:
            self._train_loader.load_state_dict(self._train_position)

    def coco(self, split: str) -> CocoKeypoints:
        """The validated file of a split (loaded on first use, so `fit` never needs the test file)."""
        if split not in self._cocos:
            f = self.files[split]
            if f is None:
                raise ConfigError(f"no data.{split}_file given")
            self._cocos[split] = load_coco_keypoints(f, self.image_root, categories=self.categories)
        return self._cocos[split]

    def _given(self, splits: tuple[str, ...]) -> list[str]:
        return [s for s in splits if self.files[s] is not None
                and not (s == "predict" and Path(str(self.files[s])).is_dir())]

    @property
    def keypoint_names(self) -> tuple[str, ...] | None:
        """Joint names of the training file (else the first split given)."""
        if self.joints:
            return tuple(self.joints)
        given = self._given(("train", "val", "test", "predict"))
        return self.coco(given[0]).keypoint_names if given else None

    def check_keypoints(self, num_keypoints: int, stage: str = "fit") -> None:
        """One clear error when a training file's keypoint set does not fit the model.

        Evaluation splits may use another skeleton: the model is then scored on the joints both
        share, by name (the paper's cross-species baseline).
        """
        splits = ("train", "val") if stage == "fit" else ("val",) if stage == "validate" else ()
        for split in self._given(splits):
            coco = self.coco(split)
            if self.joints:  # InstanceDataset checks that the file has every named joint
                if len(self.joints) != num_keypoints:
                    raise ConfigError(f"data.joints names {len(self.joints)} joints but the model predicts "
                                      f"{num_keypoints} (model.num_keypoints)")
                continue
            if coco.num_keypoints != num_keypoints:
                raise ConfigError(
                    f"{coco.path}: the {split} file has {coco.num_keypoints} keypoints "
                    f"({', '.join(coco.keypoint_names[:4])}, ...) but the model predicts {num_keypoints} "
                    "(model.num_keypoints); use a model for this skeleton, or `model.init_from` with "
                    "`heads: reinit` to move a trained network to it"
                )

    def setup(self, stage: str) -> None:
        needed = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("predict",)}[stage]
        if stage == "fit" and self.files["train"] is None:
            raise ConfigError("`fit` needs data.train_file")
        for split in needed:
            f = self.files[split]
            if f is None:
                if split == "val":
                    continue
                raise ConfigError(f"`{stage}` needs data.{split}_file")
            if split in self.datasets:
                continue
            if split == "predict" and Path(f).is_dir():
                self.datasets[split] = ImageFolderDataset(f, self.input_hw)
                continue
            self.datasets[split] = InstanceDataset(
                self.coco(split), self.input_hw,
                augmentation=self.augmentation if split == "train" else None,
                padding=self.padding, seed=self.seed, whole_frame=self.whole_frame, joints=self.joints,
                allow_truncated=self.allow_truncated,
            )

    def _loader(self, split: str, train: bool) -> DataLoader:
        dataset = self.datasets[split]
        sampler = ShardedEpochSampler(len(dataset), shuffle=train, seed=self.seed, even_shards=train)
        workers = self.loader_workers()
        # training position (epoch, batches done) goes into the checkpoint: exact mid-epoch resume
        extra: dict[str, Any] = {"trainer": lambda: self.trainer} if train else {}
        loader_class = ResumableDataLoader if train else DataLoader
        return loader_class(
            dataset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            sampler=sampler,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            **worker_process_options(workers),
            drop_last=train and len(sampler) >= self.batch_size,
            **extra,
        )

    def loader_workers(self) -> int:
        """``num_workers`` resolved for the device the attached trainer runs on (see ``num_workers``)."""
        trainer = self.trainer
        if trainer is not None:
            device, processes = trainer.strategy.root_device.type, trainer.num_devices
        else:
            device, processes = ("cuda" if torch.cuda.is_available() else "cpu"), 1
        workers = choose_loader_workers(self.num_workers, device, processes)
        if workers == 0 and self.num_workers == "auto":
            # chosen, not forgotten: Lightning's 'does not have many workers' hint does not apply
            warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
        return workers

    def train_dataloader(self) -> DataLoader:
        loader = self._loader("train", train=True)
        assert isinstance(loader, ResumableDataLoader)
        if self._train_position is not None:
            loader.load_state_dict(self._train_position)
        self._train_loader = loader
        return loader

    def val_dataloader(self) -> DataLoader | list:
        return self._loader("val", train=False) if "val" in self.datasets else []

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict", train=False)
