"""Writes ``crosspose predict`` output as a COCO keypoint results file."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import BasePredictionWriter

from crosspose.core.io import atomic_write_text
from crosspose.data.dataset import ImageFolderDataset
from crosspose.training.module import prediction_record

__all__ = ["PredictionWriter"]

log = logging.getLogger("crosspose")


class PredictionWriter(BasePredictionWriter):
    """Collects ``predict_step`` outputs and writes ``predictions.json`` in the run's log folder.

    For a COCO input each record carries ``image_id``, ``category_id``, ``annotation_id``,
    ``keypoints`` ([x, y, confidence] * K in original pixels) and ``score`` (the mean
    confidence), so ``crosspose score`` reads it directly. For an image folder, ``file_name``
    replaces the ids. Each process writes its own part (``predictions.rank<N>.json`` when several).
    """

    def __init__(self) -> None:
        super().__init__(write_interval="epoch")
        self.path: Path | None = None

    def write_on_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           predictions: Sequence[Any], batch_indices: Sequence[Any]) -> None:
        dataset = trainer.datamodule.datasets["predict"]
        records = []
        for batch in predictions:
            for index, keypoints in zip(batch["index"].tolist(), batch["keypoints"].cpu(), strict=True):
                if isinstance(dataset, ImageFolderDataset):
                    kp = keypoints.double()
                    records.append({"file_name": dataset.paths[index].name,
                                    "keypoints": [round(float(v), 3) for v in kp.reshape(-1)],
                                    "score": float(kp[:, 2].mean())})
                else:
                    records.append(prediction_record(dataset, index, keypoints))
        out_dir = Path(trainer.log_dir or trainer.default_root_dir)
        name = "predictions.json" if trainer.world_size == 1 else f"predictions.rank{trainer.global_rank}.json"
        self.path = out_dir / name
        atomic_write_text(self.path, json.dumps(records))
        log.info("wrote %d predictions to %s", len(records), self.path)
