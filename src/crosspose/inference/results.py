"""Keypoints of a sequence of frames, and their file formats: DeepLabCut's table, COCO results.

DeepLabCut's layout (what its ``analyze_videos`` writes and its tools read): a pandas DataFrame,
one row per frame, index = frame number, columns a MultiIndex with levels ``scorer``,
``bodyparts``, ``coords`` and coords ``x``, ``y``, ``likelihood``; in HDF5 under the key
``df_with_missing`` (table format), in CSV with the three header rows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from crosspose.core.io import atomic_path, atomic_write_json, atomic_write_text

__all__ = ["PoseSequence", "smooth"]

DLC_KEY = "df_with_missing"


@dataclass
class PoseSequence:
    """Keypoints of every frame of one input.

    Attributes:
        keypoints: (N, K, 3) float32: x, y in the frame's pixels, confidence in [0, 1].
        keypoint_names: K joint names.
        links: limbs as joint index pairs (for drawing).
        frames: per row, the frame number (video) or the image file name (images).
        scorer: the scorer name in DeepLabCut's header (which network produced this).
        source: the analysed file or folder.
    """

    keypoints: np.ndarray
    keypoint_names: tuple[str, ...]
    links: tuple[tuple[int, int], ...]
    frames: list[int] | list[str]
    scorer: str = "crosspose"
    source: Path | None = None

    def __len__(self) -> int:
        return len(self.keypoints)

    def __getitem__(self, name: str) -> np.ndarray:
        """(N, 3) x, y, confidence of one joint by name."""
        return self.keypoints[:, self.keypoint_names.index(name)]

    def to_dataframe(self) -> Any:
        """A pandas DataFrame in DeepLabCut's layout (index: frame numbers, or image names for images)."""
        import pandas as pd

        columns = pd.MultiIndex.from_product(
            [[self.scorer], list(self.keypoint_names), ["x", "y", "likelihood"]],
            names=["scorer", "bodyparts", "coords"])
        data = self.keypoints.reshape(len(self), -1).astype(np.float64)
        return pd.DataFrame(data, columns=columns, index=pd.Index(self.frames))

    def to_coco(self) -> list[dict[str, Any]]:
        """COCO keypoint results: ``frame`` (video) or ``file_name`` (image), ``keypoints``, ``score``."""
        key = "frame" if self.frames and isinstance(self.frames[0], int | np.integer) else "file_name"
        out = []
        for frame, kp in zip(self.frames, self.keypoints, strict=True):
            kp = kp.astype(np.float64)
            out.append({key: frame if key == "file_name" else int(frame),  # type: ignore[call-overload]
                        "category_id": 1,
                        "keypoints": [round(float(v), 3) for v in kp.reshape(-1)],
                        "score": round(float(kp[:, 2].mean()), 5)})
        return out

    def write_h5(self, path: str | Path) -> Path:
        frame = self.to_dataframe()
        with atomic_path(path) as tmp:
            frame.to_hdf(tmp, key=DLC_KEY, format="table", mode="w")
        return Path(path)

    def write_csv(self, path: str | Path) -> Path:
        return atomic_write_text(path, self.to_dataframe().to_csv())

    def write_json(self, path: str | Path) -> Path:
        return atomic_write_json(path, {"keypoint_names": list(self.keypoint_names),
                                        "skeleton": [[a + 1, b + 1] for a, b in self.links],
                                        "scorer": self.scorer, "source": str(self.source or ""),
                                        "annotations": self.to_coco()}, indent=None)


def smooth(poses: PoseSequence, method: Literal["median", "savgol"], window: int) -> PoseSequence:
    """X and y of each joint filtered over time (confidences unchanged), as DeepLabCut's filterpredictions.

    ``median``: running median of ``window`` frames (odd); ``savgol``: Savitzky-Golay, cubic,
    over ``window`` frames. Sequences shorter than the window are returned unchanged.
    """
    from scipy.signal import medfilt, savgol_filter

    if window < 3 or window % 2 == 0:
        raise ValueError(f"filter window must be an odd number >= 3, got {window}")
    kp = poses.keypoints.copy()
    if len(kp) >= window:
        xy = kp[..., :2].astype(np.float64)
        if method == "median":
            xy = medfilt(xy, kernel_size=(window, 1, 1))
        elif method == "savgol":
            xy = savgol_filter(xy, window_length=window, polyorder=min(3, window - 1), axis=0)
        else:
            raise ValueError(f"unknown filter {method!r} (median, savgol)")
        kp[..., :2] = xy
    return replace(poses, keypoints=kp)
