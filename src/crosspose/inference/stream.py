"""Frames -> network batches in a background thread, so decoding overlaps the network.

Memory is bounded whatever the video's length: a small ring of batch buffers (pinned when the
network runs on a GPU) is filled by the producer thread and handed over through a queue of at most
``prefetch`` batches. Frames of one size share a batch; a change of size (images of a folder)
starts a new one.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from crosspose.inference.geometry import FrameGeometry
from crosspose.inference.sources import StageTimes

__all__ = ["Batch", "stream_batches"]

_DONE = object()


@dataclass
class Batch:
    """``frames``: (n, H, W, 3) uint8 network input; ``first``: index of its first frame in the source."""

    frames: torch.Tensor
    geometry: FrameGeometry
    first: int


class _Ring:
    """Reused batch buffers per input size (a batch is free again once the consumer took the next two)."""

    def __init__(self, size: int, batch_size: int, pin: bool) -> None:
        self.size, self.batch_size, self.pin = size, batch_size, pin
        self.buffers: dict[tuple[int, int], list[torch.Tensor]] = {}
        self.next = 0

    def take(self, hw: tuple[int, int]) -> torch.Tensor:
        if hw not in self.buffers:
            self.buffers = {}  # a new size: the old buffers are no longer needed
            self.buffers[hw] = []
            for _ in range(self.size):
                buf = torch.empty((self.batch_size, *hw, 3), dtype=torch.uint8)
                self.buffers[hw].append(buf.pin_memory() if self.pin else buf)
        self.next = (self.next + 1) % self.size
        return self.buffers[hw][self.next]


def stream_batches(frames: Iterable[np.ndarray], geometry_of: Callable[[tuple[int, int]], FrameGeometry],
                   batch_size: int, times: StageTimes, pin_memory: bool = False,
                   prefetch: int = 2) -> Iterator[Batch]:
    """Yield batches of prepared frames; decoding and resizing run in a background thread.

    Errors in the thread (an unreadable frame) are raised here, in the caller's thread.
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be positive, got {batch_size}")
    out: queue.Queue = queue.Queue(maxsize=prefetch)
    stop = threading.Event()
    # prefetch queued + one being filled + one in the consumer's hands + one spare
    ring = _Ring(prefetch + 3, batch_size, pin_memory)

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            geometries: dict[tuple[int, int], FrameGeometry] = {}
            buf: torch.Tensor | None = None
            geom: FrameGeometry | None = None
            n = first = index = 0
            for frame in frames:
                hw = (int(frame.shape[0]), int(frame.shape[1]))
                if hw not in geometries:
                    geometries[hw] = geometry_of(hw)
                g = geometries[hw]
                if buf is not None and (g != geom or n == batch_size):
                    if not put(Batch(buf[:n], geom, first)):  # type: ignore[arg-type]
                        return
                    buf = None
                if buf is None:
                    buf, geom, n, first = ring.take(g.padded_hw), g, 0, index
                t = time.perf_counter()
                g.prepare(frame, buf[n].numpy())
                times.resize += time.perf_counter() - t
                n += 1
                index += 1
                if stop.is_set():
                    return
            if buf is not None and n:
                put(Batch(buf[:n], geom, first))  # type: ignore[arg-type]
            put(_DONE)
        except BaseException as exc:  # handed to the consumer, which raises it
            put(exc)

    thread = threading.Thread(target=produce, name="crosspose-decode", daemon=True)
    thread.start()
    try:
        while True:
            t = time.perf_counter()
            item = out.get()
            times.wait_for_frames += time.perf_counter() - t
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)
