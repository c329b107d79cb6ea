"""``crosspose.load(model)``: a trained network as a Python object that predicts keypoints with names.

Example:
    >>> import crosspose                                           # doctest: +SKIP
    >>> model = crosspose.load("runs/reaching/checkpoints/best.ckpt")   # or "model.onnx"
    >>> poses = model.predict("session1.mp4")                      # a video, folder, image or arrays
    >>> poses["wrist"][:3]                                         # (frames, [x, y, confidence])
    >>> poses.to_dataframe()                                       # DeepLabCut's table
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crosspose.inference.geometry import Scale, decode_batch, geometry_for
from crosspose.inference.model import Backend, open_backend
from crosspose.inference.results import PoseSequence
from crosspose.inference.sources import (
    InputSource,
    StageTimes,
    iter_frames,
    resolve_inputs,
    video_frame_count,
)
from crosspose.inference.stream import stream_batches

__all__ = ["Predictor", "load"]


class Predictor:
    """A network with its model card, run on frames of any size.

    Args:
        backend: a loaded checkpoint or ONNX model (:func:`load` makes one).
        scale: ``"fit"`` (frames scaled to the training input size) or a resize factor (1 = native).
        batch_size: frames per network call.
    """

    def __init__(self, backend: Backend, scale: Scale = "fit", batch_size: int = 8) -> None:
        self.backend = backend
        self.card = backend.card
        self.codec = self.card.codec.build()
        self.scale = scale
        self.batch_size = batch_size

    @property
    def keypoint_names(self) -> tuple[str, ...]:
        return self.card.keypoint_names

    @property
    def scorer(self) -> str:
        """DeepLabCut-style scorer name: the network and the file it came from."""
        return f"crosspose_{self.card.backbone}_{self.backend.path.stem}"

    def __repr__(self) -> str:
        size = "x".join(map(str, self.card.input_size)) if self.card.input_size else "?"
        choice = getattr(self.backend, "precision", None)  # stand-in backends may have none
        precision = f" in {choice.precision}" if choice is not None else ""
        return (f"Predictor({self.backend.path.name}: {self.card.backbone}, {self.card.num_keypoints} keypoints, "
                f"trained at {size} px, {self.backend.name}{precision} on {self.backend.device})")

    def run(self, frames: Iterable[np.ndarray], times: StageTimes | None = None, total: int | None = None,
            progress: bool = False, batch_size: int | None = None, desc: str = "frames") -> np.ndarray:
        """Keypoints (N, K, 3) of a stream of RGB uint8 frames, in frame pixels; memory stays bounded."""
        times = times if times is not None else StageTimes()
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=total, unit="frame", desc=desc, dynamic_ncols=True, leave=False)
        chunks: list[np.ndarray] = []
        start = time.perf_counter()
        pin = self.backend.device.type == "cuda"
        try:
            for batch in stream_batches(frames, lambda hw: geometry_for(self.card, hw, self.scale),
                                        batch_size or self.batch_size, times, pin_memory=pin):
                t = time.perf_counter()
                heatmap, locref = self.backend(batch.frames)
                t2 = time.perf_counter()
                chunks.append(decode_batch(self.codec, batch.geometry, heatmap, locref).numpy().astype(np.float32))
                times.decode_maps += time.perf_counter() - t2
                times.network += t2 - t
                if not times.first_call_frames:
                    times.first_call, times.first_call_frames = t2 - t, len(batch.frames)
                times.frames += len(batch.frames)
                if bar is not None:
                    bar.update(len(batch.frames))
        finally:
            if bar is not None:
                bar.close()
            times.wall += time.perf_counter() - start
        k = self.card.num_keypoints
        return np.concatenate(chunks) if chunks else np.zeros((0, k, 3), np.float32)

    def predict_source(self, source: InputSource, times: StageTimes | None = None, progress: bool = False,
                       batch_size: int | None = None) -> PoseSequence:
        """Keypoints of one checked input (see :func:`~crosspose.inference.sources.resolve_inputs`)."""
        times = times if times is not None else StageTimes()
        total = video_frame_count(source.path) if source.kind == "video" else len(source.images)
        keypoints = self.run(iter_frames(source, times), times, total, progress, batch_size, desc=source.path.name)
        frames: list[Any] = (list(range(len(keypoints))) if source.kind == "video"
                             else [p.name for p in source.images])
        return PoseSequence(keypoints, self.keypoint_names, self.card.links, frames, self.scorer, source.path)

    def predict(self, inputs: str | Path | np.ndarray | Sequence[np.ndarray], progress: bool = False,
                batch_size: int | None = None) -> PoseSequence:
        """Keypoints with names for a video, an image folder, an image file, or RGB uint8 arrays.

        Arrays: one image (H, W, 3), a stack (N, H, W, 3) or a list of images (sizes may differ).
        Returns a :class:`~crosspose.inference.results.PoseSequence`: ``.keypoints`` (N, K, 3),
        ``poses["joint"]``, ``.to_dataframe()`` (DeepLabCut's layout), ``.to_coco()``.
        """
        if isinstance(inputs, str | Path):
            return self.predict_source(resolve_inputs([inputs])[0], progress=progress, batch_size=batch_size)
        images = [inputs] if isinstance(inputs, np.ndarray) and inputs.ndim == 3 else list(inputs)
        for i, image in enumerate(images):
            image = np.asarray(image)
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(f"image {i}: expected RGB uint8 (H, W, 3), got {image.dtype} {image.shape}")
        keypoints = self.run(images, total=len(images), progress=progress, batch_size=batch_size)
        return PoseSequence(keypoints, self.keypoint_names, self.card.links, list(range(len(images))), self.scorer)


def load(model: str | Path, device: str | torch.device | None = None, scale: Scale = "fit",
         batch_size: int = 8, precision: str = "auto", compile: str = "auto") -> Predictor:
    """Load a crosspose checkpoint (``.ckpt``, weights-only export included) or an exported ``.onnx``.

    Args:
        model: the file; everything else (input size, skeleton, codec) comes from its model card.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``; default: the GPU when there is one.
        scale: ``"fit"`` or a resize factor (see :func:`crosspose.inference.geometry.frame_scale`).
        batch_size: frames per network call.
        precision: ``"auto"`` (bf16 autocast on a GPU with bf16 and on a CPU with bf16 units, AVX512-BF16
            or AMX; fp16 on a GPU without bf16; fp32 otherwise), ``"fp32"``, ``"bf16"``, ``"fp16"`` (GPU),
            or ``"int8"`` (an int8 ``.onnx`` from ``crosspose quantize``). An ``.onnx`` model runs in its
            own precision. ``predictor.backend.precision`` says what was chosen and why.
        compile: ``"auto"`` (a checkpoint runs through ``torch.compile`` where that was measured to pay:
            bf16 on a CPU with AMX, about 2x, after seconds of compiling per frame size), ``"on"`` or
            ``"off"``. ``predictor.backend.compiled`` says what was chosen and why.

    Raises:
        ConfigError: a precision this machine or file cannot run natively (e.g. bf16 on a CPU without
            bf16 units: emulated bf16 would be slower than fp32).
    """
    return Predictor(open_backend(model, device, precision, compile), scale=scale, batch_size=batch_size)
