"""``crosspose synth``: write the procedural data set of one species in its release format."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``crosspose synth``."""
    parser.add_argument("--species", required=True, choices=("human", "macaque"),
                        help="human: MPII .mat + images/; macaque: MacaquePose annotations.csv + images/")
    parser.add_argument("--count", required=True, type=int, help="number of images")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="set seed; same seed, same bytes (default 0)")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    parser.add_argument("--workers", type=int, default=1,
                        help="rendering processes; the output does not depend on it (default 1)")


def run(args: argparse.Namespace) -> int:
    """Generate the set and say where it went and how fast."""
    from crosspose.data.synth import generate

    start = time.perf_counter()
    path = generate(args.species, args.count, args.out, seed=args.seed, size=args.size, workers=args.workers)
    took = time.perf_counter() - start
    print(f"wrote {args.count} {args.species} images to {Path(args.out) / 'images'} and {path} "
          f"in {took:.1f} s ({args.count / max(took, 1e-9):.0f} images/s)")
    return 0
