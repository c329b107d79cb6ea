"""Frames/s of ``crosspose analyze`` and where the time goes (decode, resize, network, map decoding, writing).

    python tools/measure_analyze.py --backbone resnet50 --frames 100 --scale 1 [--onnx] [--threads N]

Writes a 640x480 synthetic video and an untrained checkpoint of the given backbone (speed does not
depend on the weights), then analyses the video with PyTorch and, with ``--onnx``, ONNX Runtime.
Decode and resize run in a background thread, overlapping the network: their seconds are busy time
in that thread, and ``wait_for_frames`` is how long the network waited for them.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from crosspose.inference.analyze import analyze_video
from crosspose.inference.export import export_onnx
from crosspose.inference.predictor import load
from crosspose.testing import write_moving_figure_video, write_tiny_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--scale", default="1", help="'fit' or a factor (1 = native 640x480)")
    parser.add_argument("--input-size", type=int, default=256, help="the checkpoint's training input size")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--onnx", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    scale = args.scale if args.scale == "fit" else float(args.scale)
    root = Path(tempfile.mkdtemp(prefix="crosspose-speed-"))
    video = root / "video.mp4"
    write_moving_figure_video(video, frames=args.frames, size=(480, 640))
    ckpt = write_tiny_checkpoint(root / "model.ckpt", backbone=args.backbone,
                                 input_size=(args.input_size, args.input_size))
    models = {"pytorch": ckpt}
    if args.onnx:
        models["onnxruntime"] = export_onnx(ckpt, root / "model.onnx")
    for name, path in models.items():
        predictor = load(path, device="cpu", scale=scale, batch_size=args.batch_size)
        predictor.predict([video_frame for video_frame in _first_frames(video, args.batch_size)])  # warm-up
        report = analyze_video(predictor, video, root / name, labeled_video=False)
        print(json.dumps({"backend": name, "backbone": args.backbone, "torch_threads": torch.get_num_threads(),
                          "scale": scale, **report.times.as_dict()}))


def _first_frames(video: Path, n: int) -> list:
    import av

    frames = []
    with av.open(str(video)) as container:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == n:
                break
    return frames


if __name__ == "__main__":
    main()
