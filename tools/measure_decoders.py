"""Frames/s of the video decoders crosspose could use, on one video (the numbers in inference/sources.py).

    python tools/measure_decoders.py VIDEO [--repeats 3]

Each decoder turns every frame into an RGB uint8 array (what the network needs); best of N runs,
as wall-clock frames/s and as CPU milliseconds per frame (all threads).
"""

from __future__ import annotations

import argparse
import time


def pyav(path: str, thread_type: str) -> tuple[float, float]:
    import av

    start, cpu, n = time.perf_counter(), time.process_time(), 0
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = thread_type
        for frame in container.decode(stream):
            frame.to_ndarray(format="rgb24")
            n += 1
    return n / (time.perf_counter() - start), (time.process_time() - cpu) / n * 1e3


def opencv(path: str) -> tuple[float, float]:
    import cv2

    start, cpu, n = time.perf_counter(), time.process_time(), 0
    capture = cv2.VideoCapture(path)
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        n += 1
    capture.release()
    return n / (time.perf_counter() - start), (time.process_time() - cpu) / n * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("video")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    runs = {"pyav (thread_type AUTO)": lambda: pyav(args.video, "AUTO"),
            "pyav (thread_type SLICE)": lambda: pyav(args.video, "SLICE"),
            "opencv VideoCapture": lambda: opencv(args.video)}
    best = {name: (0.0, float("inf")) for name in runs}
    for _ in range(args.repeats):  # interleaved, so a burst of load hits every decoder alike
        for name, fn in runs.items():
            fps, cpu_ms = fn()
            best[name] = (max(best[name][0], fps), min(best[name][1], cpu_ms))
    for name, (fps, cpu_ms) in best.items():
        # CPU ms per frame matters when decoding shares the cores with a CPU-bound network
        print(f"{name:28s} {fps:8.0f} frames/s  {cpu_ms:6.2f} CPU ms/frame")


if __name__ == "__main__":
    main()
