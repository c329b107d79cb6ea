"""Builds the model card (:mod:`crosspose.models.card`) of a module being trained, for its checkpoints."""

from __future__ import annotations

from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Any

from crosspose.core.skeletons import flip_pairs_from_names
from crosspose.models.card import CodecCard, ModelCard

__all__ = ["describe_module", "save_module"]


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
        intermediate_supervision_unit=hp.intermediate_supervision_unit,
        head_output=str(hp.head_output),
        freeze=str(hp.freeze),
        named=module.keypoint_names is not None,
    )


def save_module(module: Any, path: str | PathLike[str], input_size: tuple[int, int] | None = None,
                meta: Mapping[str, Any] | None = None) -> Path:
    """Write ``module`` (weights, hyper-parameters, model card) as a checkpoint outside a training run.

    Every reader takes the file: Lightning's ``load_from_checkpoint``, ``crosspose analyze`` /
    ``export`` / ``predict`` (:func:`crosspose.inference.model.build_network`) and ``init_from``. For
    converted and benchmark networks, which no trainer saves. The card is the one the module's own
    ``on_save_checkpoint`` writes in training; ``input_size`` (H, W) goes into it where no data
    module gave one, and ``meta`` adds or overrides entries (provenance). Written atomically.

    Example:
        >>> from crosspose.training.module import PoseEstimationModule
        >>> module = PoseEstimationModule(num_keypoints=2, backbone="resnet18", pretrained=False)
        >>> save_module(module, "net.ckpt", input_size=(64, 64))  # doctest: +SKIP
    """
    from lightning import __version__ as lightning_version

    from crosspose.core.io import atomic_torch_save
    from crosspose.models.transfer import METADATA_KEY

    checkpoint: dict[str, Any] = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                                  "pytorch-lightning_version": lightning_version}
    module.on_save_checkpoint(checkpoint)  # the card a trained checkpoint carries
    if input_size is not None:
        checkpoint[METADATA_KEY]["input_size"] = [int(input_size[0]), int(input_size[1])]
    checkpoint[METADATA_KEY].update(meta or {})
    return atomic_torch_save(checkpoint, path)
