"""What ``analyze`` reads: videos, image folders, single images; checked before anything is written.

Decoder choice, by measurement (``tools/measure_decoders.py``: every frame of a 640x480 H.264 video to
an RGB array, best of 3-5 interleaved runs, 2-core AMD EPYC shared with other jobs, load ~15):

====================  =======================  ==========================
decoder               static scene, 600 fr.    busy scene, 300 frames
====================  =======================  ==========================
OpenCV VideoCapture   1330-1410 fr/s, 0.65 ms  410-510 fr/s, 1.66 ms
PyAV, threads AUTO    1040-1130 fr/s, 0.82 ms  310-350 fr/s, 1.8-2.1 ms
PyAV, threads SLICE    570-920 fr/s, 0.83 ms   240-260 fr/s, 1.8-1.9 ms
====================  =======================  ==========================

(ms = CPU milliseconds per frame over all threads, what counts when decoding shares the cores with
the network.) OpenCV is faster by both measures, so it decodes; PyAV (already a dependency) only
probes a video up front, because its exceptions say why a file is unreadable where OpenCV just
returns no frame, and writes the labelled video. torchcodec is not installed in the project's
environment and was not measured.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from crosspose.core.errors import DataFormatError
from crosspose.data.dataset import IMAGE_SUFFIXES, read_rgb

__all__ = ["VIDEO_SUFFIXES", "InputSource", "StageTimes", "iter_frames", "resolve_inputs", "video_frame_count"]

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv")


@dataclass
class StageTimes:
    """Seconds spent per stage of an analysis (busy time; decode and resize overlap the network)."""

    decode: float = 0.0
    resize: float = 0.0
    network: float = 0.0
    decode_maps: float = 0.0
    write: float = 0.0
    wait_for_frames: float = 0.0
    wall: float = 0.0
    frames: int = 0
    # the first network call alone: it holds one-off costs (torch.compile's compile, allocator warm-up)
    first_call: float = 0.0
    first_call_frames: int = 0

    def as_dict(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {k: round(float(v), 4) for k, v in self.__dict__.items()}
        out["frames_per_s"] = round(self.frames / self.wall, 2) if self.wall > 0 else 0.0
        steady = self.wall - self.first_call
        out["frames_per_s_after_first_call"] = (round((self.frames - self.first_call_frames) / steady, 2)
                                                if steady > 0 and self.frames > self.first_call_frames else None)
        return out


@dataclass
class InputSource:
    """One input: a video, or a set of images (a folder, or one image)."""

    path: Path
    kind: str  # "video" | "images"
    images: list[Path] = field(default_factory=list)
    fps: float | None = None

    @property
    def stem(self) -> str:
        return self.path.stem if self.kind == "video" or self.path.is_file() else self.path.name


def _probe_video(path: Path) -> float:
    """Open a video and decode its first frame; returns its frame rate. DataFormatError if unusable."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataFormatError(path, "the file has no video stream")
            stream = container.streams.video[0]
            rate = float(stream.average_rate or stream.guessed_rate or 30)
            for _ in container.decode(stream):
                return rate
    except DataFormatError:
        raise
    except Exception as exc:  # PyAV raises many types (InvalidDataError, FFmpegError, ...)
        raise DataFormatError(path, f"cannot be read as a video ({type(exc).__name__}: "
                                    f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from None
    raise DataFormatError(path, "the video has no decodable frames")


def resolve_inputs(paths: Sequence[str | Path]) -> list[InputSource]:
    """Classify and check every input up front, so a bad one stops the run before any output."""
    sources = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise DataFormatError(path, "input not found")
        if path.is_dir():
            images = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not images:
                raise DataFormatError(path, f"no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
            sources.append(InputSource(path, "images", images))
        elif path.suffix.lower() in VIDEO_SUFFIXES:
            sources.append(InputSource(path, "video", fps=_probe_video(path)))
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            sources.append(InputSource(path, "images", [path]))
        else:
            raise DataFormatError(path, f"not a video ({', '.join(VIDEO_SUFFIXES)}), an image or a folder")
    stems = [s.stem for s in sources]
    if len(set(stems)) != len(stems):
        dup = next(s for s in stems if stems.count(s) > 1)
        raise DataFormatError(paths[stems.index(dup)], f"two inputs share the name {dup!r}; their outputs "
                              "would overwrite each other (analyse them into different --out folders)")
    return sources


def _video_frames(path: Path, times: StageTimes) -> Iterator[np.ndarray]:
    import cv2

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise DataFormatError(path, "OpenCV cannot open this video")
    try:
        while True:
            t = time.perf_counter()
            ok, bgr = capture.read()
            if not ok:  # the end (OpenCV does not tell a damaged tail from the end)
                return
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            times.decode += time.perf_counter() - t
            yield rgb
    finally:
        capture.release()


def video_frame_count(path: Path) -> int | None:
    """The container's frame count (for a progress bar; may be missing or approximate)."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    capture.release()
    return count if count > 0 else None


def _image_frames(images: Sequence[Path], times: StageTimes) -> Iterator[np.ndarray]:
    for path in images:
        t = time.perf_counter()
        rgb = read_rgb(path)
        times.decode += time.perf_counter() - t
        yield rgb


def iter_frames(source: InputSource, times: StageTimes) -> Iterator[np.ndarray]:
    """RGB uint8 frames of a source, in order; decode time goes to ``times.decode``."""
    if source.kind == "video":
        return _video_frames(source.path, times)
    return _image_frames(source.images, times)
