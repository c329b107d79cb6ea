"""Builds the model card (:mod:`crosspose.models.card`) of a module being trained, for its checkpoints."""

from __future__ import annotations

from typing import Any

from crosspose.core.skeletons import flip_pairs_from_names
from crosspose.models.card import CodecCard, ModelCard

__all__ = ["describe_module"]


def describe_module(module: Any) -> ModelCard:
    """The card of a :class:`~crosspose.training.module.PoseEstimationModule`.

    Input size, padding and limbs come from the trainer's data module when there is one (the
    data decides them, not the model); a module saved without a trainer gets no input size.
    """
    hp = module.hparams
    names = tuple(module.keypoint_names or (f"joint_{j}" for j in range(hp.num_keypoints)))
    dm = getattr(module.trainer, "datamodule", None) if module._trainer is not None else None
    input_size = tuple(int(v) for v in dm.input_hw) if dm is not None and hasattr(dm, "input_hw") else None
    padding = float(dm.padding) if dm is not None and hasattr(dm, "padding") else None
    links: tuple[tuple[int, int], ...] = ()
    if dm is not None and hasattr(dm, "coco"):
        for split in ("train", "val", "test"):
            if dm.files.get(split):
                coco = dm.coco(split)
                if coco.num_keypoints == hp.num_keypoints:
                    links = coco.links
                break
    backbone = module.net.backbone
    codec = module.codec
    return ModelCard(
        backbone=str(hp.backbone),
        num_keypoints=int(hp.num_keypoints),
        keypoint_names=names,
        flip_pairs=flip_pairs_from_names(names),
        links=links,
        input_size=input_size,  # type: ignore[arg-type]
        padding=padding,
        mean=tuple(float(v) for v in backbone.mean.flatten()),  # type: ignore[arg-type]
        std=tuple(float(v) for v in backbone.std.flatten()),  # type: ignore[arg-type]
        codec=CodecCard(kind=codec.kind, stride=codec.stride, radius=float(codec.radius),
                        sigma=codec.sigma, locref_std=float(codec.locref_std)),
        intermediate_supervision=bool(hp.intermediate_supervision),
        intermediate_supervision_unit=(int(hp.intermediate_supervision_unit)
                                       if hp.get("intermediate_supervision_unit") is not None else None),
        freeze=str(hp.freeze),
        named=module.keypoint_names is not None,
    )
