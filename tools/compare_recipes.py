"""Recipe comparison on the synthetic two-species data: configs/paper/ vs configs/paper_modern/.

Runs ``crosspose demo``'s experiment once per recipe (``--recipe``, crosspose.experiments.recipes) on
ONE shared synthetic data set, at a reduced size that fits a busy 2-core CPU (ResNet-18 at 64 px,
batch 8, 100 pretraining and 60 fine-tuning steps, 200 humans, 3 seeds), then prints the
transfer/scratch table of both. Larger runs: ``crosspose demo --recipe paper`` and ``--recipe
paper_modern`` with any ``--profile``.

    PYTHONPATH=src python tools/compare_recipes.py --out runs/recipes
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import replace
from pathlib import Path

from crosspose.experiments.demo import PROFILES, _prepare_data, _Stages, run_demo

MINI = replace(PROFILES["default"], name="recipes-mini", input_size=64, batch_size=8, macaque_images=300,
               human_images=600, test_images=100, subset=200, pretrain_steps=100, finetune_steps=60,
               benchmark_steps=60, seeds=(0, 1, 2), synth_size=128, num_workers=0)


def _table(root: Path, recipes: list[str]) -> str:
    lines = ["| recipe | arm | PCKh@0.5 (%) | F1 | per seed PCKh |", "|---|---|---|---|---|"]
    for recipe in recipes:
        for arm in ("transfer", "scratch"):
            runs = [json.loads((root / recipe / f"{arm}_seed{s}" / "metrics.json").read_text()) for s in MINI.seeds]
            pckh = [r["pckh"]["mean"] for r in runs]
            f1 = [r["detection"]["f1"] for r in runs]
            lines.append(f"| {recipe} | {arm} | {statistics.mean(pckh):.2f} ± {statistics.stdev(pckh):.2f} | "
                         f"{statistics.mean(f1):.3f} ± {statistics.stdev(f1):.3f} | "
                         + " / ".join(f"{v:.2f}" for v in pckh) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/recipes"))
    parser.add_argument("--recipes", default="paper,paper_modern")
    args = parser.parse_args()
    recipes = args.recipes.split(",")
    _prepare_data(args.out / "shared", MINI, _Stages(2))
    for recipe in recipes:
        out = args.out / recipe
        out.mkdir(parents=True, exist_ok=True)
        if not (out / "data").exists():
            (out / "data").symlink_to((args.out / "shared" / "data").resolve())
        run_demo(out, MINI, recipe)
    print(_table(args.out, recipes))


if __name__ == "__main__":
    main()
