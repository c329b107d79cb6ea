"""``validate``/``test``/``predict`` from a checkpoint alone, and no config that contradicts it.

The checkpoint's model card (:mod:`crosspose.models.card`) supplies the model's and the data's
options (``--model.num_keypoints``, ``--data.input_size``, ...) as if given first on the command
line, so a user's ``--config`` or option still reads after them; every option the card decides is
then compared with the card, and a different value is a :class:`ConfigError` (a model trained at
128 px silently run at 256 px gives other keypoints).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from crosspose.core.errors import ConfigError
from crosspose.models.card import ModelCard
from crosspose.models.transfer import METADATA_KEY

__all__ = ["CARD_COMMANDS", "card_arguments", "check_config_against_card", "find_ckpt_path", "read_card"]

CARD_COMMANDS = ("validate", "test", "predict")


def find_ckpt_path(args: Sequence[str]) -> str | None:
    """The value of ``--ckpt_path`` in a command line (last one wins, as in the parser)."""
    found = None
    for i, arg in enumerate(args):
        if arg == "--ckpt_path" and i + 1 < len(args):
            found = args[i + 1]
        elif arg.startswith("--ckpt_path="):
            found = arg.split("=", 1)[1]
    return found


def read_card(path: str | Path) -> ModelCard | None:
    """The card of a crosspose checkpoint with one; None for older checkpoints, missing or foreign files."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # Lightning reports unreadable checkpoints itself
        return None
    return card_of(ckpt, path)


def card_of(checkpoint: Any, path: str | Path) -> ModelCard | None:
    """The card inside a loaded checkpoint (None for older checkpoints and foreign files)."""
    meta = checkpoint.get(METADATA_KEY) if isinstance(checkpoint, dict) else None
    if not isinstance(meta, dict) or "card_version" not in meta:
        return None
    return ModelCard.from_dict(meta, str(path))


def _decided(card: ModelCard) -> dict[str, Any]:
    """Config keys the card decides -> their values in the card."""
    out: dict[str, Any] = {
        "model.num_keypoints": card.num_keypoints,
        "model.keypoint_names": list(card.keypoint_names) if card.named else None,
        "model.backbone": card.backbone,
        "model.intermediate_supervision": card.intermediate_supervision,
        "model.heatmap": card.codec.kind,
        "model.radius": card.codec.radius,
        "model.sigma": card.codec.sigma,
        "model.locref_std": card.codec.locref_std,
    }
    if card.input_size is not None:
        out["data.input_size"] = list(card.input_size)
    if card.padding is not None:
        out["data.padding"] = card.padding
    return out


def card_arguments(card: ModelCard) -> list[str]:
    """Command-line options that set what the card decides (to go before the user's own)."""
    args: list[str] = []
    for key, value in _decided(card).items():
        if value is not None:
            args += [f"--{key}", json.dumps(value) if isinstance(value, list | bool) else str(value)]
    return args


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, int) and not isinstance(a, bool) and isinstance(b, list | tuple):
        a = [a, a]  # input_size: 128 means [128, 128]
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float | int) and isinstance(b, float | int) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-6)
    return a == b


def check_config_against_card(config: Any, card: ModelCard, ckpt_path: str) -> None:
    """Raise ConfigError naming every option whose value differs from the checkpoint's card.

    ``config`` is the parsed subcommand config (a jsonargparse Namespace or nested dict).
    ``keypoint_names`` and ``sigma`` left empty are not a contradiction.
    """
    problems = []
    for key, expected in _decided(card).items():
        section, name = key.split(".")
        node = config[section] if not hasattr(config, "get") or config.get(section) is not None else None
        got = node.get(name) if node is not None and hasattr(node, "get") else None
        if (got is None and name in ("keypoint_names", "sigma")) or (name == "keypoint_names" and expected is None):
            continue
        if not _same(got, expected):
            problems.append(f"{key} is {got!r}, the checkpoint's is {expected!r}")
    if problems:
        raise ConfigError(f"{ckpt_path}: the config contradicts the checkpoint's model card: "
                          + "; ".join(problems) + " (leave these options out: the checkpoint supplies them)")
