"""``crosspose demo``: the paper's experiment end to end on the synthetic two-species data.

Stages (each reused when its output exists, so a rerun continues where it stopped):
1. generate synthetic macaques (MacaquePose release layout) and humans (MPII RELEASE .mat);
2. convert both with the real readers (``crosspose prepare``) and split them;
3. pretrain on macaques;
4. baseline: the macaque network scored on the human test set (12 shared joints);
5. transfer: fine-tune the macaque network on 1,000 humans, heads re-initialised (per seed);
6. scratch: the same 1,000 humans, same budget, no pretraining (per seed) -- the controlled
   comparison the paper lacks;
7. benchmark: human-only on a larger human set;
8. report: ``report.md`` with the Table-1 comparison, transfer vs scratch over seeds, and plots.

Every model is scored on ONE held-out human test set with the paper's metrics.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import statistics
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from crosspose.core.errors import ConfigError
from crosspose.core.io import atomic_write_text
from crosspose.core.skeletons import MACAQUE, MPII
from crosspose.data.coco import load_coco_keypoints, split_by_image
from crosspose.data.macaquepose import read_macaquepose
from crosspose.data.mpii import read_mpii
from crosspose.data.synth import generate
from crosspose.evaluation.report import draw_predictions, write_report
from crosspose.training.run_folder import FolderLock, config_differences
from crosspose.training.runs import test_checkpoint, train_and_test

__all__ = ["Profile", "PROFILES", "run_demo", "configure_parser", "run"]


@dataclass(frozen=True)
class Profile:
    """Sizes and budgets of one demo run.

    Args:
        backbone: timm ResNet.
        input_size: network input (square).
        batch_size: per step.
        macaque_images: synthetic macaque images (pretraining set, 5 % of it for validation).
        human_images: synthetic human images (benchmark training set + validation + test).
        test_images: held-out human images for every model's score.
        subset: the humans of the transfer and scratch runs (the paper's 1,000).
        pretrain_steps, finetune_steps, benchmark_steps: optimizer steps of each model.
        lr: AdamW learning rate (cosine schedule, short warm-up).
        seeds: seeds of the transfer and scratch runs (the pretraining uses the first).
        synth_size: side of the generated images.
        num_workers: data-loader processes.
    """

    name: str
    backbone: str
    input_size: int
    batch_size: int
    macaque_images: int
    human_images: int
    test_images: int
    subset: int
    pretrain_steps: int
    finetune_steps: int
    benchmark_steps: int
    lr: float
    seeds: tuple[int, ...]
    synth_size: int = 256
    num_workers: int = 2


PROFILES: dict[str, Profile] = {
    # under 20 minutes on 2 CPU cores: a small network, small inputs, short schedules, 3 seeds
    "default": Profile(name="default", backbone="resnet18", input_size=128, batch_size=16,
                       macaque_images=1500, human_images=3000, test_images=300, subset=1000,
                       pretrain_steps=400, finetune_steps=150, benchmark_steps=150, lr=1e-3, seeds=(0, 1, 2)),
    # GPU scale: the paper's ResNet-50 at 256 px, three seeds for the transfer/scratch spread
    "full": Profile(name="full", backbone="resnet50", input_size=256, batch_size=16,
                    macaque_images=15000, human_images=12000, test_images=1000, subset=1000,
                    pretrain_steps=30000, finetune_steps=6000, benchmark_steps=12000, lr=5e-4,
                    seeds=(0, 1, 2), num_workers=8),
    # seconds: exercises every stage in the tests
    "smoke": Profile(name="smoke", backbone="resnet18", input_size=64, batch_size=4, macaque_images=24,
                     human_images=40, test_images=8, subset=16, pretrain_steps=3, finetune_steps=3,
                     benchmark_steps=3, lr=1e-3, seeds=(0, 1), synth_size=128, num_workers=0),
}


class _Stages:
    """Numbered stage lines, with the time each stage took."""

    def __init__(self, total: int) -> None:
        self.total, self.n, self.t0 = total, 0, time.perf_counter()

    def __call__(self, text: str) -> None:
        self.n += 1
        print(f"\n[demo {self.n}/{self.total} | {time.perf_counter() - self.t0:6.0f} s] {text}", flush=True)


def _prepare_data(root: Path, p: Profile, stage: _Stages) -> dict[str, Path]:
    data = root / "data"
    mac_dir, hum_dir = data / "macaque_release", data / "human_release"
    stage(f"synthetic data: {p.macaque_images} macaque + {p.human_images} human images at {p.synth_size} px")
    if not (mac_dir / "annotations.csv").is_file():
        generate("macaque", p.macaque_images, mac_dir, seed=1, size=p.synth_size, workers=max(1, p.num_workers))
    if not (hum_dir / "mpii_human_pose_v1_u12_1.mat").is_file():
        generate("human", p.human_images, hum_dir, seed=2, size=p.synth_size, workers=max(1, p.num_workers))

    stage("convert with the release readers (crosspose prepare macaquepose / mpii) and split")
    mac_json = data / "macaque.json"
    if not mac_json.is_file():
        read_macaquepose(mac_dir, mac_json)
    hum_json = data / "human.json"
    if not hum_json.is_file():
        read_mpii(hum_dir / "mpii_human_pose_v1_u12_1.mat", hum_dir / "images", hum_json)
    mac = split_by_image(mac_json, {"val": 0.05, "train": 0}, seed=0)
    hum = split_by_image(hum_json, {"test": p.test_images, "val": 0.05, "train": 0}, seed=0)
    # the 1,000 humans of transfer and scratch: drawn from the benchmark's training images
    subset = split_by_image(hum["train"], {f"subset{p.subset}": p.subset, "rest": 0}, seed=0)
    return {"macaque_train": mac["train"], "macaque_val": mac["val"], "human_train": hum["train"],
            "human_val": hum["val"], "human_test": hum["test"], "human_subset": subset[f"subset{p.subset}"]}


def _model(p: Profile, skeleton_names: tuple[str, ...], **extra: Any) -> dict[str, Any]:
    return {
        "num_keypoints": len(skeleton_names), "keypoint_names": list(skeleton_names), "backbone": p.backbone,
        "radius": 17.0 * p.input_size / 256,  # DeeperCut's 17 px at 256 px, scaled with the input
        "optimizer": functools.partial(torch.optim.AdamW, lr=p.lr, weight_decay=1e-4),
        "lr_schedule": "cosine", "warmup_steps": max(1, min(100, p.finetune_steps // 10)), **extra,
    }


def _data(p: Profile, train: Path, val: Path, test: Path, seed: int) -> dict[str, Any]:
    return {"train_file": str(train), "val_file": str(val), "test_file": str(test), "input_size": p.input_size,
            "batch_size": p.batch_size, "num_workers": p.num_workers, "seed": seed,
            "augmentation": {"flip": True}}


def _trainer(steps: int) -> dict[str, Any]:
    return {"max_steps": steps, "max_epochs": -1, "val_check_interval": None, "check_val_every_n_epoch": 1,
            "log_every_n_steps": 10}


def run_demo(out: Path, profile: Profile) -> Path:
    """Run every stage into ``out``; returns the report path."""
    out.mkdir(parents=True, exist_ok=True)
    p = profile
    _check_same_profile(out, p)
    stage = _Stages(8)
    t_start = time.perf_counter()
    files = _prepare_data(out, p, stage)
    atomic_write_text(out / "profile.json", json.dumps(asdict(p), indent=1))

    stage(f"pretrain on macaques ({p.backbone}, {p.input_size} px, {p.pretrain_steps} steps)")
    pre_dir = out / "pretrain_macaque"
    pre_model = _model(p, MACAQUE.keypoints)
    train_and_test(pre_dir, pre_model, _data(p, files["macaque_train"], files["macaque_val"], files["macaque_val"],
                                             p.seeds[0]), _trainer(p.pretrain_steps), seed=p.seeds[0])
    pre_ckpt = pre_dir / "checkpoints" / ("best.ckpt" if (pre_dir / "checkpoints" / "best.ckpt").is_file()
                                          else "last.ckpt")

    stage("baseline: the macaque network on the human test set (12 shared joints)")
    baseline = test_checkpoint(pre_ckpt, out / "baseline", {
        "test_file": str(files["human_test"]), "input_size": p.input_size, "batch_size": p.batch_size,
        "num_workers": p.num_workers})

    results: dict[str, list[dict[str, Any]]] = {"transfer": [], "scratch": []}
    for arm in ("transfer", "scratch"):
        stage(f"{arm}: {p.subset} humans, {p.finetune_steps} steps, seeds {', '.join(map(str, p.seeds))}"
              + (" (init from the macaque network, heads re-initialised)" if arm == "transfer" else ""))
        for seed in p.seeds:
            extra = {"init_from": str(pre_ckpt), "heads": "reinit"} if arm == "transfer" else {}
            results[arm].append(train_and_test(
                out / f"{arm}_seed{seed}", _model(p, MPII.keypoints, **extra),
                _data(p, files["human_subset"], files["human_val"], files["human_test"], seed),
                _trainer(p.finetune_steps), seed=seed))

    n_bench = len(load_coco_keypoints(files["human_train"]).instances())
    stage(f"benchmark: human-only on {n_bench} humans, {p.benchmark_steps} steps")
    benchmark = train_and_test(out / "benchmark_human", _model(p, MPII.keypoints),
                               _data(p, files["human_train"], files["human_val"], files["human_test"], p.seeds[0]),
                               _trainer(p.benchmark_steps), seed=p.seeds[0])

    stage("report")
    runs = {
        "Baseline (macaque net)": baseline,
        f"Benchmark (human net, {n_bench} humans)": benchmark,
        f"Transfer ({p.subset} humans, seed {p.seeds[0]})": results["transfer"][0],
        f"Scratch ({p.subset} humans, seed {p.seeds[0]})": results["scratch"][0],
    }
    notes = _notes(p, n_bench, results, time.perf_counter() - t_start)
    report = write_report(runs, out, title="crosspose demo: monkey-to-human transfer on synthetic data",
                          notes=notes)
    gt = load_coco_keypoints(files["human_test"])
    for name, run_dir in (("transfer", out / f"transfer_seed{p.seeds[0]}"), ("scratch", out / f"scratch_seed{p.seeds[0]}")):
        preds = json.loads((run_dir / "predictions.json").read_text())
        draw_predictions(gt, preds, out / f"samples_{name}.png", n=6)
    atomic_write_text(report, report.read_text(encoding="utf-8")
                      + "\n## Predictions on test images (green: ground truth, red: prediction)\n\n"
                      "Transfer: ![transfer samples](samples_transfer.png)\n\n"
                      "Scratch: ![scratch samples](samples_scratch.png)\n")
    print(f"\nreport: {report}  ({time.perf_counter() - t_start:.0f} s)")
    return report


def _check_same_profile(out: Path, p: Profile) -> None:
    """Stages are reused by folder: refuse a folder that holds another profile's stages."""
    path = out / "profile.json"
    if not path.is_file():
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        old = {"profile.json": "unreadable"}
    # more or fewer seeds reuse the shared stages and the seeds' own run folders: not a mix
    diff = config_differences({k: v for k, v in old.items() if k != "seeds"},
                              {k: v for k, v in asdict(p).items() if k != "seeds"})
    if diff:
        raise ConfigError(f"{out}: holds a demo run of another profile ({'; '.join(diff[:4])}); its stages "
                          "would be mixed with this one's: use another --out, or delete the folder to start over")


def _mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f} (1 seed, no spread)"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f} (n={len(values)})"


def _notes(p: Profile, n_bench: int, results: dict[str, list[dict[str, Any]]], seconds: float) -> str:
    def metric(run: dict[str, Any], key: str) -> float:
        return float(run["pckh"]["mean"]) if key == "pckh" else float(run["detection"]["f1"])

    lines = [
        f"Profile `{p.name}`: {p.backbone} at {p.input_size} px, batch {p.batch_size}; pretraining "
        f"{p.pretrain_steps} steps on {p.macaque_images} synthetic macaque images; transfer and scratch "
        f"{p.finetune_steps} steps on the same {p.subset} humans; benchmark {p.benchmark_steps} steps on "
        f"{n_bench} humans; AdamW lr {p.lr}, cosine schedule. Seeds: {', '.join(map(str, p.seeds))} "
        f"(data generation seeds 1 = macaques, 2 = humans; splits seed 0).",
        f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, {'CUDA' if torch.cuda.is_available() else 'CPU only'}; "
        f"total time {seconds / 60:.1f} min (stages reused from an earlier run count as 0).",
        "",
        "## Transfer vs scratch on the same humans (the controlled comparison)",
        "",
        "| seed | transfer PCKh@0.5 | scratch PCKh@0.5 | transfer F1 | scratch F1 |",
        "|---|---|---|---|---|",
    ]
    for t, s, seed in zip(results["transfer"], results["scratch"], p.seeds, strict=True):
        lines.append(f"| {seed} | {metric(t, 'pckh'):.2f} | {metric(s, 'pckh'):.2f} | "
                     f"{metric(t, 'f1'):.3f} | {metric(s, 'f1'):.3f} |")
    for key, label in (("pckh", "PCKh@0.5"), ("f1", "F1")):
        t = [metric(r, key) for r in results["transfer"]]
        s = [metric(r, key) for r in results["scratch"]]
        d = [a - b for a, b in zip(t, s, strict=True)]
        lines.append(f"\n{label}: transfer {_mean_sd(t)}, scratch {_mean_sd(s)}, "
                     f"difference {_mean_sd(d)}.")
    lines.append("\nThis states what was measured, whichever way it points (mean ± sample standard "
                 "deviation over the seeds).")
    return "\n".join(lines)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", choices=sorted(PROFILES), default="default",
                        help="default: about 20 min on 2 CPU cores; full: the GPU-scale version (3 seeds)")
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder (default runs/demo)")
    parser.add_argument("--seeds", type=str, default=None, help="comma-separated seeds of transfer/scratch")
    parser.add_argument("--workers", type=int, default=None, help="data-loader processes")
    parser.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                        help="when another crosspose process works in --out, wait this long for it (default: "
                             "stop at once)")


def run(args: argparse.Namespace) -> int:
    profile = PROFILES[args.profile]
    if args.seeds:
        profile = replace(profile, seeds=tuple(int(s) for s in args.seeds.split(",")))
    if args.workers is not None:
        profile = replace(profile, num_workers=args.workers)
    with FolderLock(args.out, "crosspose demo", wait=args.wait):
        run_demo(args.out, profile)
    return 0
