"""The model card a crosspose checkpoint carries: everything needed to run it without its config.

A checkpoint saved by :class:`~crosspose.training.module.PoseEstimationModule` stores, under the key
``"crosspose"``, the network (backbone, keypoints, heads), how images were fed to it in training
(input size, padding, normalisation), how its maps are decoded (codec) and the skeleton (names,
left/right flip pairs, limbs for drawing). ``predict``, ``test``, ``analyze`` and
:func:`crosspose.load` read it; a config that contradicts it is refused.

The card is a flat dict of JSON values so it survives ``torch.load(weights_only=True)``, ONNX
metadata (as a JSON string) and a human reading it. Older checkpoints hold only ``backbone``,
``num_keypoints``, ``keypoint_names`` and ``freeze``; :meth:`ModelCard.from_dict` fills the rest
with the defaults they were trained with and marks the input size unknown.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from crosspose.core.codecs import HeatmapCodec
from crosspose.core.errors import CheckpointError
from crosspose.core.skeletons import flip_pairs_from_names

__all__ = ["CARD_VERSION", "CodecCard", "ModelCard"]

CARD_VERSION = 1


@dataclass(frozen=True)
class CodecCard:
    """How the heads' maps are decoded (see :class:`~crosspose.core.codecs.HeatmapCodec`)."""

    kind: str = "disk"
    stride: int = 8
    radius: float = 17.0
    sigma: float | None = None
    locref_std: float = 7.2801

    def build(self) -> HeatmapCodec:
        """The codec these settings describe."""
        return HeatmapCodec(kind=self.kind, stride=self.stride, radius=self.radius,  # type: ignore[arg-type]
                            sigma=self.sigma, locref_std=self.locref_std)


@dataclass(frozen=True)
class ModelCard:
    """What a trained network is and how to feed it.

    Attributes:
        backbone: timm ResNet name.
        num_keypoints: J.
        keypoint_names: joint names in channel order (``joint_0`` ... when the run had none).
        flip_pairs: left/right joint index pairs.
        links: limbs as 0-based joint index pairs (for drawing).
        input_size: (H, W) of the training input, or None when unknown (an old checkpoint).
        padding: context around each instance box in training (1.25 = 25 % more than the box).
        mean, std: per-channel RGB normalisation in 0-255 units (the network applies it itself).
        codec: score-map decoding.
        intermediate_supervision: the network has a stage-3 head (changes the state dict).
        intermediate_supervision_unit: the stage-3 unit feeding that head (None: the last), e.g.
            DeepLabCut's ``intermediate_supervision_layer``.
        output_stride: the backbone's stride; inputs are padded to a multiple of it.
        freeze: frozen part of the backbone during training (kept for ``init_from``).
        named: the names are the data's (False: ``joint_<j>`` stand-ins, stored as null).
    """

    backbone: str
    num_keypoints: int
    keypoint_names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...] = ()
    links: tuple[tuple[int, int], ...] = ()
    input_size: tuple[int, int] | None = None
    padding: float | None = None
    mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    codec: CodecCard = field(default_factory=CodecCard)
    intermediate_supervision: bool = False
    intermediate_supervision_unit: int | None = None
    output_stride: int = 16
    freeze: str = "none"
    named: bool = True

    @property
    def input_multiple(self) -> int:
        """What an input's height and width must be a multiple of.

        The backbone's stride for timm ResNets; 1 for TF-slim ones, which take any size (TensorFlow's
        "SAME" padding) and whose results padding would change.
        """
        return 1 if self.backbone.startswith("slim_resnet") else self.output_stride

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict (lists, not tuples) with ``card_version``."""
        out = json.loads(json.dumps(asdict(self)))
        out["card_version"] = CARD_VERSION
        if not self.named:  # stand-in names must not pass for real ones (heads: map matches by name)
            out["keypoint_names"] = None
        del out["named"]
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, meta: dict[str, Any], source: str = "checkpoint") -> ModelCard:
        """Read a card (or an older checkpoint's partial metadata); ``source`` names it in errors."""
        try:
            k = int(meta["num_keypoints"])
            names = tuple(meta.get("keypoint_names") or (f"joint_{j}" for j in range(k)))
            if len(names) != k:
                raise ValueError(f"{len(names)} keypoint names for {k} keypoints")
            size = meta.get("input_size")
            codec = meta.get("codec") or {}
            return cls(
                backbone=str(meta["backbone"]),
                num_keypoints=k,
                keypoint_names=names,
                flip_pairs=tuple((int(a), int(b)) for a, b in meta.get("flip_pairs", flip_pairs_from_names(names))),
                links=tuple((int(a), int(b)) for a, b in meta.get("links", ())),
                input_size=(int(size[0]), int(size[1])) if size else None,
                padding=float(meta["padding"]) if meta.get("padding") is not None else None,
                mean=tuple(float(v) for v in meta.get("mean", cls.mean)),  # type: ignore[arg-type]
                std=tuple(float(v) for v in meta.get("std", cls.std)),  # type: ignore[arg-type]
                codec=CodecCard(**{key: codec[key] for key in ("kind", "stride", "radius", "sigma", "locref_std")
                                   if key in codec}),
                intermediate_supervision=bool(meta.get("intermediate_supervision", False)),
                intermediate_supervision_unit=(int(meta["intermediate_supervision_unit"])
                                               if meta.get("intermediate_supervision_unit") is not None else None),
                output_stride=int(meta.get("output_stride", 16)),
                freeze=str(meta.get("freeze", "none")),
                named=bool(meta.get("keypoint_names")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{source}: crosspose model card is incomplete or malformed ({exc!r})") from None

    @classmethod
    def from_json(cls, text: str, source: str = "model") -> ModelCard:
        try:
            return cls.from_dict(json.loads(text), source)
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{source}: crosspose model card is not valid JSON ({exc})") from None
