"""Trajectory plot of an analysed input: x and y of every joint over the frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from crosspose.core.io import atomic_path
from crosspose.inference.results import PoseSequence

__all__ = ["plot_trajectories"]


def plot_trajectories(poses: PoseSequence, target: str | Path, pcutoff: float = 0.6) -> Path:
    """Write a PNG: x (top) and y (bottom, image rows downwards) of each joint per frame.

    Frames where a joint's likelihood is below ``pcutoff`` are gaps, as in DeepLabCut's plots.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_x, ax_y) = plt.subplots(2, 1, figsize=(9, 5), sharex=True, constrained_layout=True)
    frames = np.arange(len(poses))
    for j, name in enumerate(poses.keypoint_names):
        kp = poses.keypoints[:, j].astype(np.float64)
        hidden = kp[:, 2] < pcutoff
        ax_x.plot(frames, np.where(hidden, np.nan, kp[:, 0]), label=name, lw=1)
        ax_y.plot(frames, np.where(hidden, np.nan, kp[:, 1]), lw=1)
    ax_x.set_ylabel("x (px)")
    ax_y.set_ylabel("y (px)")
    ax_y.invert_yaxis()
    ax_y.set_xlabel("frame")
    ax_x.set_title(f"{poses.source.name if poses.source else 'trajectories'} (likelihood >= {pcutoff})")
    ax_x.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    try:
        with atomic_path(target) as tmp:
            fig.savefig(tmp, dpi=120)
    finally:
        plt.close(fig)
    return Path(target)
