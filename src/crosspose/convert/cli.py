"""``crosspose convert``: DeepLabCut 2 / 3 networks and TF-slim ImageNet weights -> crosspose checkpoints.

    crosspose convert dlc-tf --snapshot dlc-models/.../train/snapshot-1030000 --out full_human.ckpt
    crosspose convert dlc-tf --snapshot resnet_v1_50.ckpt --out slim_r50_imagenet.ckpt
    crosspose convert dlc-pytorch --snapshot train/snapshot-200.pt --config train/pytorch_config.yaml --out m.ckpt

Nothing is downloaded: the files come from DeepLabCut's model zoo (see docs/deeplabcut_models.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["configure_parser", "run"]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="source", required=True, metavar="SOURCE")
    tf = sub.add_parser("dlc-tf", help="a DeepLabCut 2 TensorFlow snapshot or a TF-slim resnet_v1_*.ckpt",
                        description="Convert a DeepLabCut 2 (TensorFlow) ResNet snapshot, or TF-slim's ImageNet "
                                    "resnet_v1_*.ckpt (backbone only), without TensorFlow.")
    tf.add_argument("--snapshot", required=True, type=Path,
                    help="checkpoint prefix DIR/snapshot-N (or one of its files), or a V1 resnet_v1_50.ckpt")
    tf.add_argument("--pose-cfg", type=Path, default=None,
                    help="DeepLabCut's pose_cfg.yaml (joint names, net type); default: beside the snapshot")
    tf.add_argument("--out", required=True, type=Path, help="the crosspose checkpoint to write (.ckpt)")
    pt = sub.add_parser("dlc-pytorch", help="a DeepLabCut 3 (PyTorch) single-animal ResNet snapshot",
                        description="Convert a DeepLabCut 3 resnet_50 / resnet_101 snapshot (timm backbone, "
                                    "HeatmapHead) with its pytorch_config.yaml.")
    pt.add_argument("--snapshot", required=True, type=Path, help="DeepLabCut 3's snapshot-N.pt")
    pt.add_argument("--config", required=True, type=Path, help="the model's pytorch_config.yaml")
    pt.add_argument("--out", required=True, type=Path, help="the crosspose checkpoint to write (.ckpt)")


def run(args: argparse.Namespace) -> int:
    if args.source == "dlc-pytorch":
        from crosspose.convert.dlc_pytorch import convert_dlc_pytorch

        pt = convert_dlc_pytorch(args.snapshot, args.config, args.out)
        print(f"wrote {args.out}: backbone {pt.backbone}, {pt.num_keypoints} joints, DeepLabCut 3 heads "
              f"(model.head_output: full, model.heatmap: {pt.heatmap}); {len(pt.tensors)} tensors mapped")
        if pt.method != "bu":
            print(f"note: a {pt.method!r} (top-down) model: crosspose crops each instance itself, without "
                  "DeepLabCut's detector")
        return 0
    from crosspose.convert.dlc_tf import convert_dlc_tf

    model = convert_dlc_tf(args.snapshot, args.out, args.pose_cfg)
    what = (f"{model.num_keypoints} joints" if model.has_heads else "backbone only (use heads: reinit)")
    interm = f", intermediate supervision at block3/unit_{model.intermediate_unit}" if model.intermediate_unit else ""
    print(f"wrote {args.out}: backbone {model.backbone}, {what}{interm}; "
          f"{len(model.tensors)} tensors mapped, {len(model.ignored)} other variables ignored")
    print(f"use it with: model.backbone: {model.backbone}, model.init_from: {args.out}"
          + (", model.norm: frozen" if model.has_heads else ""))
    return 0
