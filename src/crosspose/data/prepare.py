"""``crosspose prepare macaquepose|mpii|deeplabcut|sleap``: convert labelled data to COCO keypoints JSON.

Both sub-commands write the common format of :mod:`crosspose.data.coco` (0-based pixels,
``file_name`` relative to the output JSON's folder) and print one summary line per file.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from crosspose.core.errors import ConfigError

_MPII_EPILOG = """\
images: the annotations alone convert (width/height are read from the image files that exist,
  left out otherwise); images are required only with --resize-width/--resize or --check-images,
  and then a listed but missing image is an error that names it.
visibility: v=2 annotated and is_visible 1 (or empty), v=1 annotated with is_visible 0,
  v=0 not annotated; the JSON form has no visibility, so every annotated joint is v=2.
bbox: the square of side 200*scale centred on objpos (HRNet's +15*scale vertical shift and 1.25
  enlargement are not applied: they belong to the top-down crop); area = bbox w*h.
"""


def _resize_spec(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 1280x720, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a number strictly between 0 and 1, got {value}")
    return value


def _fraction_or_config(text: str) -> float | str:
    return "config" if text.strip().lower() == "config" else _fraction(text)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``macaquepose``, ``mpii``, ``deeplabcut``, ``sleap``, ``split`` and ``select`` sub-commands."""
    sub = parser.add_subparsers(dest="dataset", metavar="{macaquepose,mpii,deeplabcut,sleap,split,select}", required=True)

    mq = sub.add_parser(
        "macaquepose", help="MacaquePose release (annotations.csv + images/) to COCO keypoints",
        description="Convert the MacaquePose release: one annotation per monkey with mmpose's bbox "
                    "(polygon extent, +1) and area (sum of polygon shoelace areas); polygons are kept "
                    "as COCO segmentation. Every image listed in the CSV must exist.")
    mq.add_argument("--root", required=True, type=Path,
                    help="release folder holding annotations.csv and images/")
    mq.add_argument("--out", required=True, type=Path, help="COCO keypoints JSON to write")
    mq.add_argument("--csv", type=Path, default=None, help="annotations CSV (default ROOT/annotations.csv)")
    mq.add_argument("--images", type=Path, default=None, help="image folder (default ROOT/images)")
    mq.add_argument("--crops", type=Path, default=None, metavar="DIR",
                    help="write one crop per monkey here, cut out by its mask with the background blanked "
                         "(as the paper), and make the JSON describe the crops; monkeys without a polygon "
                         "are skipped")
    mq.add_argument("--length", type=_positive_int, default=640,
                    help="longer side of the crops in pixels, aspect ratio kept (default 640)")

    mp = sub.add_parser(
        "mpii", help="MPII (official RELEASE .mat or HRNet/mmpose JSON) to COCO keypoints",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_MPII_EPILOG,
        description="Convert MPII Human Pose: every annotated person of the training images by default; "
                    "each annotation carries head_box [x1,y1,x2,y2], scale, center, bbox and area.")
    mp.add_argument("--annotations", required=True, type=Path,
                    help="mpii_human_pose_v1_u12_1.mat (official release) or an HRNet/mmpose JSON "
                         "(mpii_train.json / mpii_val.json)")
    mp.add_argument("--images", required=True, type=Path, help="MPII images/ folder")
    mp.add_argument("--out", required=True, type=Path, help="COCO keypoints JSON to write")
    mp.add_argument("--head-boxes", type=Path, default=None, metavar="GT.mat",
                    help="JSON form only: HRNet's gt_valid.mat (headboxes_src, one per JSON person in "
                         "order). Without it head boxes are derived from scale: a square between upper "
                         "neck and head top with 0.6 x diagonal = 25 x scale (the official head size on "
                         "the validation split)")
    mp.add_argument("--single-person", action="store_true",
                    help="keep only images with exactly one annotated person listed in single_person "
                         "(sufficiently separated), and only that person (.mat only)")
    mp.add_argument("--subset", type=_positive_int, default=None, metavar="N",
                    help="a random N of the selected images (deterministic for --seed)")
    mp.add_argument("--seed", type=int, default=0, help="seed of --subset and --val-fraction (default 0)")
    mp.add_argument("--val-fraction", type=_fraction, default=None, metavar="F",
                    help="split the selected images: a random fraction F goes to OUT_val.json, the rest to "
                         "OUT_train.json (e.g. --out mpii.json writes mpii_train.json and mpii_val.json "
                         "in the same folder; OUT itself is not written)")
    size = mp.add_mutually_exclusive_group()
    size.add_argument("--resize-width", type=_positive_int, default=None, metavar="W",
                      help="write copies of the images resized to width W (aspect kept) into "
                           "<OUT stem>_images/ next to OUT, scaling coordinates, head boxes and scale")
    size.add_argument("--resize", type=_resize_spec, default=None, metavar="WxH",
                      help="as --resize-width but to exactly W x H pixels (scale follows the height)")
    mp.add_argument("--check-images", action="store_true",
                    help="fail when a selected image is missing, even without resizing")

    dl = sub.add_parser(
        "deeplabcut", help="a DeepLabCut project (config.yaml + labeled-data/) to COCO keypoints",
        description="Convert the labelled frames of a DeepLabCut project (single- or multi-animal; "
                    "CollectedData_<scorer>.h5, else .csv) with its bodyparts and skeleton. Single-animal "
                    "frames become whole-frame instances; multi-animal projects give one instance per "
                    "individual, boxed around its joints. Empty cells stay unlabelled (v=0). Nothing is "
                    "written unless every file and image of the project is valid.")
    dl.add_argument("--project", required=True, type=Path, help="the project folder (holding config.yaml)")
    dl.add_argument("--out", required=True, type=Path, help="COCO keypoints JSON to write")
    dl.add_argument("--val-fraction", type=_fraction_or_config, default=None, metavar="F|config",
                    help="split the labelled frames: a random fraction F goes to OUT_val.json, the rest to "
                         "OUT_train.json (OUT itself is not written); 'config' uses 1 - TrainingFraction")
    dl.add_argument("--seed", type=int, default=0, help="seed of --val-fraction (default 0)")

    sp = sub.add_parser(
        "split", help="split a COCO keypoints file by image (train/val), optionally excluding a test set",
        description="Split any COCO keypoints file by image into OUT_train.json and OUT_val.json.")
    sp.add_argument("--coco", required=True, type=Path, help="the COCO keypoints file to split")
    sp.add_argument("--out", type=Path, default=None,
                    help="names the outputs: OUT_train.json / OUT_val.json (default: --coco)")
    sp.add_argument("--val-fraction", type=float, required=True, help="fraction of images for OUT_val.json")
    sp.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    sp.add_argument("--force", action="store_true",
                    help="overwrite outputs of an earlier, different split (default: refuse them)")
    sp.add_argument("--exclude", type=Path, action="append", default=[],
                    help="a COCO file whose images are left out of both parts (repeatable), e.g. the test set")
    sp.add_argument("--categories", default=None, metavar="NAMES",
                    help="keep only these species: comma-separated category ids, names or supercategories")

    sl = sub.add_parser(
        "sleap", help="SLEAP labels (.slp) to COCO keypoints, the labelled frames as PNG",
        description="Convert the user-labelled instances of a SLEAP .slp file (through sleap-io) with its "
                    "skeleton's node names and edges. Predicted instances are not ground truth and are left out; "
                    "missing or not-visible points stay unlabelled (v=0). The labelled frames are decoded (from "
                    "the videos, or from the frames embedded in the .slp) into <OUT stem>_images/ beside OUT. "
                    "Files with one instance per frame give whole-frame instances, others one box per instance. "
                    "Nothing is written unless every labelled frame decodes.")
    sl.add_argument("--labels", required=True, type=Path, help="the SLEAP labels file (.slp)")
    sl.add_argument("--out", required=True, type=Path, help="COCO keypoints JSON to write")
    sl.add_argument("--val-fraction", type=_fraction, default=None, metavar="F",
                    help="split the labelled frames: a random fraction F goes to OUT_val.json, the rest to "
                         "OUT_train.json (OUT itself is not written)")
    sl.add_argument("--seed", type=int, default=0, help="seed of --val-fraction (default 0)")

    se = sub.add_parser(
        "select", help="the species of a many-species COCO file (AP-10K, Animal-Pose) as a new file",
        description="Write the images and instances of the chosen species (categories sharing one keypoint "
                    "list) as a new COCO file; file names are rewritten relative to it.")
    se.add_argument("--coco", required=True, type=Path, help="the COCO keypoints file")
    se.add_argument("--categories", required=True, metavar="NAMES",
                    help="comma-separated category ids, names or supercategories (e.g. an AP-10K family)")
    se.add_argument("--out", required=True, type=Path, help="COCO keypoints JSON to write")


def run(args: argparse.Namespace) -> int:
    """Run the chosen conversion and print a summary line per written file."""
    from crosspose.data.coco import load_coco_keypoints

    if args.dataset == "macaquepose":
        from crosspose.data.macaquepose import read_macaquepose

        paths = [read_macaquepose(args.root, args.out, crops_dir=args.crops, length=args.length,
                                  csv_path=args.csv, images_dir=args.images)]
    elif args.dataset == "mpii":
        from crosspose.data.mpii import read_mpii

        resize = (args.resize_width, None) if args.resize_width else args.resize
        paths = read_mpii(args.annotations, args.images, args.out, head_boxes=args.head_boxes,
                          single_person=args.single_person, subset=args.subset, seed=args.seed,
                          val_fraction=args.val_fraction, resize=resize, check_images=args.check_images)
    elif args.dataset == "deeplabcut":
        from crosspose.data.deeplabcut import prepare_deeplabcut

        paths = prepare_deeplabcut(args.project, args.out, val_fraction=args.val_fraction, seed=args.seed)
    elif args.dataset == "sleap":
        from crosspose.data.sleap import prepare_sleap

        paths = prepare_sleap(args.labels, args.out, val_fraction=args.val_fraction, seed=args.seed)
    elif args.dataset == "split":
        from crosspose.data.coco import split_by_image

        if not 0.0 < args.val_fraction < 1.0:
            raise ConfigError(f"--val-fraction must be between 0 and 1, got {args.val_fraction}")
        parts = split_by_image(args.coco, {"val": float(args.val_fraction), "train": 0}, seed=args.seed,
                               out=args.out, exclude=args.exclude, categories=args.categories,
                               overwrite=args.force)
        paths = [parts["train"], parts["val"]]
    elif args.dataset == "select":
        coco = load_coco_keypoints(args.coco, categories=args.categories)
        paths = [coco.save_subset(args.out, coco.images)]
    else:  # argparse's required sub-command makes this unreachable from the command line
        raise ConfigError(f"unknown data set {args.dataset!r}")
    for path in paths:
        coco = load_coco_keypoints(path)  # also proves the file is valid for the training code
        print(f"wrote {path}: {len(coco.images)} images, {len(coco.annotations)} annotations")
    return 0
