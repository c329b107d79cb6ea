"""Keypoints as NWB (Neurodata Without Borders) with the ndx-pose extension: ``analyze --format nwb``.

One ``.nwb`` file per input holds, in the processing module ``behavior``:

- ``Skeletons`` with one ``Skeleton`` (the network's joint names as nodes, its limbs as edges);
- a ``PoseEstimation`` linking that skeleton and the source (an external-file ``ImageSeries`` in
  ``acquisition`` naming the video, or each image of a folder), with ``scorer`` (the network),
  ``source_software`` "crosspose" and its version, and one ``PoseEstimationSeries`` per joint:
  ``data`` (N, 2) x, y in the frame's pixels, ``confidence`` (N,), and ``timestamps``.

Timestamps are frame index / frame rate (seconds) for a video; images have no time, so for an image
folder they are the image's index (0, 1, ...), and every series' description says so. The first
joint's series holds the timestamps and the others link to them (NWB's way of sharing one time base).

Why pynwb + ndx-pose directly and not sleap-io's ``save_nwb`` (0.9.5, read for this): sleap-io is
installed anyway (for ``prepare sleap``) and brings both, so the weight is the same; but its writer
needs a ``Labels`` of one Python ``PredictedInstance`` per frame, truncates the frame rate to an
integer (29.97 fps would be written as 29, shifting every timestamp), takes ``video_sample_rate`` as
a period when no timestamps are given, drops frames whose joint is NaN from that joint's series, and
names the container after the track. Building the few NWB objects ourselves writes our arrays exactly.
"""

from __future__ import annotations

import datetime
import uuid
from pathlib import Path

import numpy as np

from crosspose.core.io import atomic_path
from crosspose.inference.results import PoseSequence

__all__ = ["REFERENCE_FRAME", "write_nwb"]

REFERENCE_FRAME = ("(0, 0) is the centre of the top-left pixel of the analysed frame, x to the right, y down, "
                   "in the frame's own pixels (as DeepLabCut's coordinates: pixel [row i, column j] is at x=j, y=i)")

CONFIDENCE_DEFINITION = ("the network's score-map value at the keypoint, in [0, 1] (DeepLabCut's "
                         "'likelihood'; the same number as the .h5's)")


def write_nwb(poses: PoseSequence, path: str | Path, fps: float | None = None,
              images: list[Path] | None = None) -> Path:
    """Write ``poses`` to ``path`` as NWB with ndx-pose, atomically.

    Args:
        poses: the keypoints of one input (``poses.source`` is the video or folder).
        path: the ``.nwb`` file to write.
        fps: the video's frame rate; ``None`` for images (timestamps are then frame indices).
        images: for an image input, the analysed image files in order (named by the source series).
    """
    from ndx_pose import PoseEstimation, PoseEstimationSeries, Skeleton, Skeletons
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.image import ImageSeries

    import crosspose

    n = len(poses)
    video = fps is not None
    if video:
        timestamps = np.arange(n, dtype=np.float64) / float(fps)  # type: ignore[arg-type]
        time_note = f"timestamps are frame index / {fps:g} fps (seconds from the first frame)"
    else:
        timestamps = np.arange(n, dtype=np.float64)
        time_note = "timestamps are the image's index in the folder (images have no time), not seconds"
    source = str(poses.source) if poses.source is not None else ""

    nwbfile = NWBFile(session_description=f"crosspose analyze of {source or 'images'}",
                      identifier=str(uuid.uuid4()),
                      session_start_time=datetime.datetime.now(datetime.UTC))
    if video:
        source_series = ImageSeries(name="source_video", description=f"the analysed video ({time_note})",
                                    unit="n.a.", external_file=[source], format="external",
                                    starting_frame=[0], rate=float(fps), num_samples=n)  # type: ignore[arg-type]
    else:
        files = [str(p) for p in (images or [])] or [str(f) for f in poses.frames]
        source_series = ImageSeries(name="source_images", description=f"the analysed images ({time_note})",
                                    unit="n.a.", external_file=files, format="external",
                                    starting_frame=list(range(len(files))), timestamps=timestamps)
    nwbfile.add_acquisition(source_series)

    skeleton = Skeleton(name="skeleton", nodes=list(poses.keypoint_names),
                        edges=np.asarray(poses.links, dtype=np.uint8).reshape(-1, 2))
    behavior = nwbfile.create_processing_module(name="behavior", description="keypoints estimated by crosspose")
    behavior.add(Skeletons(skeletons=[skeleton]))

    series: list[PoseEstimationSeries] = []
    for j, name in enumerate(poses.keypoint_names):
        xy = np.ascontiguousarray(poses.keypoints[:, j, :2], dtype=np.float64)
        series.append(PoseEstimationSeries(
            name=name, description=f"estimated position of {name}; {time_note}", data=xy, unit="pixels",
            reference_frame=REFERENCE_FRAME, confidence=poses.keypoints[:, j, 2].astype(np.float64),
            confidence_definition=CONFIDENCE_DEFINITION,
            timestamps=series[0] if series else timestamps))  # one time base, linked
    behavior.add(PoseEstimation(
        name="PoseEstimation", pose_estimation_series=series, skeleton=skeleton, source_video=source_series,
        description=f"keypoints of {source or 'images'} estimated by crosspose; {time_note}",
        scorer=poses.scorer, source_software="crosspose", source_software_version=crosspose.__version__))

    with atomic_path(path) as tmp, NWBHDF5IO(str(tmp), "w") as io:
        io.write(nwbfile)
    return Path(path)
