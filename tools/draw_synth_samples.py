"""Draw docs/synth_samples.png: a few synthetic samples of each species, raw and with skeletons.

Usage: python tools/draw_synth_samples.py [--out docs/synth_samples.png] [--seed 0] [--per-species 4]

Each species gets two rows: the images as written, then the same images with the labelled joints
(subject's left in blue, right in red, centre joints in yellow; a hollow dot is annotated but not
visible) and the limbs between them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from crosspose.core.skeletons import MACAQUE, MPII
from crosspose.data.synth import render_sample

_LEFT, _RIGHT, _CENTRE, _LIMB = (40, 110, 255), (255, 50, 40), (255, 230, 0), (60, 255, 90)


def overlay(image: np.ndarray, species: str, figures) -> np.ndarray:
    """The image with each figure's labelled joints and limbs drawn on it (RGB)."""
    out = image.copy()
    skeleton = MPII if species == "human" else MACAQUE
    for fig in figures:
        pts = fig.keypoints
        for a, b in skeleton.links:
            if fig.labelled[a] and fig.labelled[b]:
                cv2.line(out, tuple(int(round(v)) for v in pts[a]), tuple(int(round(v)) for v in pts[b]),
                         _LIMB, 1, cv2.LINE_AA)
        for j, name in enumerate(skeleton.keypoints):
            if not fig.labelled[j]:
                continue
            colour = _LEFT if name.startswith("left") else _RIGHT if name.startswith("right") else _CENTRE
            cv2.circle(out, tuple(int(round(v)) for v in pts[j]), 3, colour, -1 if fig.visible[j] else 1,
                       cv2.LINE_AA)
        if species == "human":
            x1, y1, x2, y2 = (int(round(v)) for v in fig.head_box)
            cv2.rectangle(out, (x1, y1), (x2, y2), _CENTRE, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/synth_samples.png"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-species", type=int, default=4)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--scale", type=float, default=0.75, help="resize factor of the final picture")
    args = parser.parse_args()
    rows = []
    for species in ("human", "macaque"):
        samples = [render_sample(species, args.seed, i, args.size) for i in range(args.per_species)]
        rows.append(np.concatenate([s.image for s in samples], 1))
        rows.append(np.concatenate([overlay(s.image, species, s.figures) for s in samples], 1))
    grid = np.concatenate(rows, 0)
    if args.scale != 1.0:  # smaller file for the README; the sensor noise is what costs bytes
        grid = cv2.resize(grid, None, fx=args.scale, fy=args.scale, interpolation=cv2.INTER_AREA)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"wrote {args.out} ({grid.shape[1]}x{grid.shape[0]})")


if __name__ == "__main__":
    main()
