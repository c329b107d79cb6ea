"""DeeperCut's loss: score-map term + 0.05 x Huber on location refinement.

Both terms reduce as TensorFlow's ``SUM_BY_NONZERO_WEIGHTS``, which is what DeeperCut used: the
weighted sum divided by the number of elements whose weight is non-zero. With every joint weighted
1 the score-map term is the plain mean over B*K*h*w; the locref term is the mean over the cells of
the disks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from crosspose.core.codecs import HeatmapCodec, Targets

__all__ = ["masked_mean", "pose_loss"]


def masked_mean(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """sum(w * v) / count(w != 0), 0 when every weight is 0."""
    weight = weight.expand_as(values).to(values.dtype)
    count = (weight != 0).sum()
    return (values * weight).sum() / count.clamp(min=1)


def pose_loss(
    outputs: dict[str, torch.Tensor],
    targets: Targets,
    codec: HeatmapCodec,
    locref_weight: float = 0.05,
    huber_delta: float = 1.0,
) -> dict[str, torch.Tensor]:
    """Loss terms for one batch; ``loss`` is what is optimised.

    Score maps: sigmoid cross-entropy for the disk codec, mean squared error on the raw output for
    the Gaussian codec. The stage-3 head, when present, gets the same score-map loss.
    """

    def score_term(logits: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if codec.score_activation == "sigmoid":
            per_elem = F.binary_cross_entropy_with_logits(logits, targets.heatmap, reduction="none")
        else:
            per_elem = (logits - targets.heatmap).square()
        return masked_mean(per_elem, targets.heatmap_weight)

    heatmap = score_term(outputs["heatmap"])
    locref = masked_mean(
        F.huber_loss(outputs["locref"].float(), targets.locref, reduction="none", delta=huber_delta),
        targets.locref_mask,
    )
    terms = {"heatmap": heatmap, "locref": locref}
    total = heatmap + locref_weight * locref
    if "heatmap_stage3" in outputs:
        terms["heatmap_stage3"] = score_term(outputs["heatmap_stage3"])
        total = total + terms["heatmap_stage3"]
    terms["loss"] = total
    return terms
