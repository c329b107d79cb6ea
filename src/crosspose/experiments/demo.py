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
import json
import logging
import platform
import statistics
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from crosspose.core.errors import ConfigError
from crosspose.core.hardware import choose_training_precision, read_cpu_features, usable_cores
from crosspose.core.io import atomic_write_json, atomic_write_text, read_yaml_mapping
from crosspose.core.skeletons import MACAQUE, MPII
from crosspose.data.coco import load_coco_keypoints, split_by_image
from crosspose.data.macaquepose import read_macaquepose
from crosspose.data.mpii import read_mpii
from crosspose.data.synth import generate
from crosspose.evaluation.report import draw_predictions, write_report
from crosspose.evaluation.results import headline, load_prediction_records
from crosspose.experiments.inspect import what_transfers_section
from crosspose.experiments.recipes import RECIPES, recipe_settings
from crosspose.training.run_folder import FolderLock, add_wait_argument, config_differences
from crosspose.training.runs import test_checkpoint, train_and_test

__all__ = ["Profile", "configure_parser", "load_profile", "profile_names", "run", "run_demo"]

log = logging.getLogger("crosspose")


@dataclass(frozen=True)
class Profile:
    """A demo profile: ``configs/demo/<name>.yaml``, whose ``experiment`` section holds these sizes.

    Args:
        name: the profile (file stem).
        base: the run config every stage starts from (``seed_everything``, ``model``, ``data``, ``trainer``).
        macaque_images: synthetic macaque images (pretraining set, 5 % of it for validation).
        human_images: synthetic human images (benchmark training set + validation + test).
        test_images: held-out human images for every model's score.
        subset: the humans of the transfer and scratch runs (the paper's 1,000).
        pretrain_steps, finetune_steps, benchmark_steps: optimizer steps of each model.
        seeds: seeds of the transfer and scratch runs (the pretraining uses the first).
        synth_size: side of the generated images.
        precision: training precision request (``32``, ``bf16``, ``bf16-if-supported``, ``auto``; see
            :func:`crosspose.core.hardware.choose_training_precision`), resolved on the machine that runs.
    """

    name: str
    base: dict[str, Any]
    macaque_images: int
    human_images: int
    test_images: int
    subset: int
    pretrain_steps: int
    finetune_steps: int
    benchmark_steps: int
    seeds: tuple[int, ...]
    synth_size: int = 256
    precision: str = "32"

    @property
    def trainer_precision(self) -> str:
        """Lightning's ``trainer.precision`` for :attr:`precision` on this machine's CPU or GPU."""
        device = "cuda" if torch.cuda.is_available() else "cpu"
        return choose_training_precision(read_cpu_features(), device, self.precision)

    @property
    def backbone(self) -> str:
        return str(self.base["model"].get("backbone", "resnet50"))

    @property
    def input_size(self) -> int:
        return int(self.base["data"].get("input_size", 256))

    @property
    def batch_size(self) -> int:
        return int(self.base["data"].get("batch_size", 16))

    @property
    def num_workers(self) -> int | str:
        """``data.num_workers`` as configured: ``auto`` or a count."""
        value = self.base["data"].get("num_workers", "auto")
        return value if value == "auto" else int(value)

    @property
    def generator_processes(self) -> int:
        """Processes drawing the synthetic images: the loader's count, or every usable core for ``auto``."""
        workers = self.num_workers
        return usable_cores() if workers == "auto" else max(1, int(workers))


PROFILE_DIR = Path(__file__).resolve().parents[3] / "configs" / "demo"
_SIZES = ("macaque_images", "human_images", "test_images", "subset", "pretrain_steps", "finetune_steps",
          "benchmark_steps", "seeds")


def profile_names() -> list[str]:
    """The demo profiles shipped in ``configs/demo/``."""
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def load_profile(source: str | Path) -> Profile:
    """A profile by name (``configs/demo/<name>.yaml``) or from any YAML of that layout."""
    path = Path(source)
    if not path.suffix:
        path = PROFILE_DIR / f"{source}.yaml"
        if not path.is_file():
            raise ConfigError(f"no demo profile {str(source)!r} (choose from {', '.join(profile_names())}, "
                              "or give a YAML file)")
    cfg = read_yaml_mapping(path, "demo profile",
                            expected="a demo profile (a mapping with an `experiment:` section, `kind: demo`)")
    exp = cfg.get("experiment")
    if not isinstance(exp, dict) or exp.get("kind") != "demo":
        raise ConfigError(f"{path}: not a demo profile (needs an `experiment:` section with `kind: demo`)")
    missing = [k for k in _SIZES if k not in exp]
    if missing:
        raise ConfigError(f"{path}: experiment is missing {', '.join(missing)}")
    base = {k: dict(cfg.get(k) or {}) for k in ("model", "data", "trainer")}
    base["seed_everything"] = cfg.get("seed_everything", 0)
    base["experiment"] = dict(exp)
    return Profile(name=path.stem, base=base, seeds=tuple(int(s) for s in exp["seeds"]),
                   synth_size=int(exp.get("synth_size", 256)), precision=str(exp.get("precision", "32")),
                   **{k: int(exp[k]) for k in _SIZES if k != "seeds"})


class _Stages:
    """Numbered stage lines, with the time each stage took."""

    def __init__(self, total: int) -> None:
        self.total, self.n, self.t0 = total, 0, time.perf_counter()

    def __call__(self, text: str) -> None:
        self.n += 1
        log.info("[demo %d/%d | %6.0f s] %s", self.n, self.total, time.perf_counter() - self.t0, text)


def _prepare_data(root: Path, p: Profile, stage: _Stages) -> dict[str, Path]:
    data = root / "data"
    mac_dir, hum_dir = data / "macaque_release", data / "human_release"
    stage(f"synthetic data: {p.macaque_images} macaque + {p.human_images} human images at {p.synth_size} px")
    if not (mac_dir / "annotations.csv").is_file():
        generate("macaque", p.macaque_images, mac_dir, seed=1, size=p.synth_size, workers=p.generator_processes)
    if not (hum_dir / "mpii_human_pose_v1_u12_1.mat").is_file():
        generate("human", p.human_images, hum_dir, seed=2, size=p.synth_size, workers=p.generator_processes)

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


def _stage_config(p: Profile, names: tuple[str, ...], files: tuple[Path, Path, Path], steps: int, seed: int,
                  **model: Any) -> dict[str, Any]:
    """One stage's run config: the profile's base with this stage's skeleton, data files, budget and seed."""
    train, val, test = files
    base = p.base
    return {
        "seed_everything": seed,
        "experiment": {**base["experiment"], "profile": p.name},
        "model": {**base["model"], "num_keypoints": len(names), "keypoint_names": list(names), **model},
        "data": {**base["data"], "train_file": str(train), "val_file": str(val), "test_file": str(test),
                 "seed": seed},
        "trainer": {**base["trainer"], "max_steps": steps, "precision": p.trainer_precision},
    }


def _with_recipe(config: dict[str, Any], recipe: str, stage: str, steps: int, p: Profile) -> dict[str, Any]:
    """A stage's run config with a recipe's model/data/trainer overrides (``crosspose.experiments.recipes``)."""
    m, d, t = recipe_settings(recipe, stage, steps, p.input_size)
    return {**config, "model": {**config["model"], **m}, "data": {**config["data"], **d},
            "trainer": {**config["trainer"], **t}}


def run_demo(out: Path, profile: Profile, recipe: str = "demo") -> Path:
    """Run every stage into ``out`` with a training recipe (``demo``, ``paper``, ``paper_modern``)."""
    out.mkdir(parents=True, exist_ok=True)
    p = profile
    _check_same_profile(out, p, recipe)
    stage = _Stages(8)
    t_start = time.perf_counter()
    files = _prepare_data(out, p, stage)
    atomic_write_json(out / "profile.json", {**asdict(p), "recipe": recipe})

    stage(f"pretrain on macaques ({p.backbone}, {p.input_size} px, {p.pretrain_steps} steps)")
    pre_dir = out / "pretrain_macaque"
    train_and_test(pre_dir, _with_recipe(_stage_config(
        p, MACAQUE.keypoints, (files["macaque_train"], files["macaque_val"], files["macaque_val"]),
        p.pretrain_steps, p.seeds[0]), recipe, "pretrain", p.pretrain_steps, p))
    pre_ckpt = pre_dir / "checkpoints" / ("best.ckpt" if (pre_dir / "checkpoints" / "best.ckpt").is_file()
                                          else "last.ckpt")

    stage("baseline: the macaque network on the human test set (12 shared joints)")
    baseline = test_checkpoint(pre_ckpt, out / "baseline", {
        "test_file": str(files["human_test"]), "input_size": p.input_size, "batch_size": p.batch_size,
        "num_workers": p.num_workers})

    results: dict[str, list[Any]] = {"transfer": [], "scratch": []}
    for arm in ("transfer", "scratch"):
        stage(f"{arm}: {p.subset} humans, {p.finetune_steps} steps, seeds {', '.join(map(str, p.seeds))}"
              + (" (init from the macaque network, heads re-initialised)" if arm == "transfer" else ""))
        for seed in p.seeds:
            extra = {"init_from": str(pre_ckpt), "heads": "reinit"} if arm == "transfer" else {}
            results[arm].append(train_and_test(out / f"{arm}_seed{seed}", _with_recipe(_stage_config(
                p, MPII.keypoints, (files["human_subset"], files["human_val"], files["human_test"]),
                p.finetune_steps, seed, **extra), recipe, "finetune", p.finetune_steps, p)))

    n_bench = len(load_coco_keypoints(files["human_train"]).instances())
    stage(f"benchmark: human-only on {n_bench} humans, {p.benchmark_steps} steps")
    benchmark = train_and_test(out / "benchmark_human", _with_recipe(_stage_config(
        p, MPII.keypoints, (files["human_train"], files["human_val"], files["human_test"]), p.benchmark_steps,
        p.seeds[0]), recipe, "benchmark", p.benchmark_steps, p))

    stage("report")
    runs = {
        "Baseline (macaque net)": baseline,
        f"Benchmark (human net, {n_bench} humans)": benchmark,
        f"Transfer ({p.subset} humans, seed {p.seeds[0]})": results["transfer"][0],
        f"Scratch ({p.subset} humans, seed {p.seeds[0]})": results["scratch"][0],
    }
    notes = _notes(p, n_bench, results, time.perf_counter() - t_start)
    if recipe != "demo":
        notes = (f"Training recipe: `configs/{recipe}/` (optimizer, schedule, normalisation, disk, "
                 "augmentation, padding, precision; sizes and budgets of the profile; see "
                 "crosspose.experiments.recipes). The AdamW/cosine sentence below is the demo's own "
                 "recipe and does not apply.\n\n" + notes)
    report = write_report(runs, out, title="crosspose demo: monkey-to-human transfer on synthetic data",
                          notes=notes)
    gt = load_coco_keypoints(files["human_test"])
    for name, run_dir in (("transfer", out / f"transfer_seed{p.seeds[0]}"), ("scratch", out / f"scratch_seed{p.seeds[0]}")):
        preds = load_prediction_records(run_dir / "predictions.json")
        draw_predictions(gt, preds, out / f"samples_{name}.png", n=6)
    section = what_transfers_section(out / "inspect", {"macaque": pre_ckpt, "scratch": out / f"scratch_seed{p.seeds[0]}",
                                                        "transfer": out / f"transfer_seed{p.seeds[0]}"},
                                     [files["human_test"], files["macaque_val"]])
    atomic_write_text(report, report.read_text(encoding="utf-8")
                      + "\n## Predictions on test images (green: ground truth, red: prediction)\n\n"
                        "Transfer: ![transfer samples](samples_transfer.png)\n\n"
                        "Scratch: ![scratch samples](samples_scratch.png)\n" + section)
    log.info("report: %s  (%.0f s)", report, time.perf_counter() - t_start)
    return report


def _check_same_profile(out: Path, p: Profile, recipe: str) -> None:
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
                              {k: v for k, v in json.loads(json.dumps({**asdict(p), "recipe": recipe},
                                                                      default=str)).items() if k != "seeds"})
    if diff:
        raise ConfigError(f"{out}: holds a demo run of another profile ({'; '.join(diff[:4])}); its stages "
                          "would be mixed with this one's: use another --out, or delete the folder to start over")


def _optimizer_text(p: Profile) -> str:
    opt = p.base["model"].get("optimizer") or {}
    name = str(opt.get("class_path", "SGD")).rsplit(".", 1)[-1] if isinstance(opt, dict) else str(opt)
    lr = (opt.get("init_args") or {}).get("lr") if isinstance(opt, dict) else None
    return f"{name} lr {lr}, {p.base['model'].get('lr_schedule', 'deepercut')} schedule"


def _mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f} (1 seed, no spread)"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f} (n={len(values)})"


def _notes(p: Profile, n_bench: int, results: dict[str, list[dict[str, Any]]], seconds: float) -> str:
    def metric(run: dict[str, Any], key: str) -> float:
        return float(headline(run)[key] or 0.0)

    lines = [
        f"Profile `{p.name}` (configs/demo/{p.name}.yaml): {p.backbone} at {p.input_size} px, batch "
        f"{p.batch_size}; pretraining {p.pretrain_steps} steps on {p.macaque_images} synthetic macaque images; "
        f"transfer and scratch {p.finetune_steps} steps on the same {p.subset} humans; benchmark "
        f"{p.benchmark_steps} steps on {n_bench} humans; {_optimizer_text(p)}; training precision "
        f"{p.trainer_precision} (asked: {p.precision}). Seeds: {', '.join(map(str, p.seeds))} "
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
        tv = [metric(r, key) for r in results["transfer"]]
        sv = [metric(r, key) for r in results["scratch"]]
        dv = [a - b for a, b in zip(tv, sv, strict=True)]
        lines.append(f"\n{label}: transfer {_mean_sd(tv)}, scratch {_mean_sd(sv)}, "
                     f"difference {_mean_sd(dv)}.")
    lines.append("\nThis states what was measured, whichever way it points (mean ± sample standard "
                 "deviation over the seeds).")
    return "\n".join(lines)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``crosspose demo``."""
    parser.add_argument("--profile", default="default",
                        help=f"a profile of configs/demo/ ({', '.join(profile_names())}) or a YAML file of that "
                             "layout; default: about 20 min on 2 CPU cores; full: the GPU-scale version")
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder (default runs/demo)")
    parser.add_argument("--seeds", type=str, default=None, help="comma-separated seeds of transfer/scratch")
    parser.add_argument("--workers", type=int, default=None, help="data-loader processes")
    parser.add_argument("--recipe", choices=RECIPES, default="demo",
                        help="training recipe: the demo's own (default), or that of configs/paper/ or "
                             "configs/paper_modern/ at the profile's sizes and budgets (a recipe comparison)")
    add_wait_argument(parser)


def run(args: argparse.Namespace) -> int:
    """Run the demo with the chosen profile and overrides."""
    profile = load_profile(args.profile)
    if args.seeds:
        try:
            profile = replace(profile, seeds=tuple(int(s) for s in args.seeds.split(",")))
        except ValueError:
            raise ConfigError(f"--seeds: expected comma-separated integers, got {args.seeds!r}") from None
    if args.workers is not None:
        if args.workers < 0:
            raise ConfigError(f"--workers must be 0 or more, got {args.workers}")
        base = {**profile.base, "data": {**profile.base["data"], "num_workers": args.workers}}
        profile = replace(profile, base=base)
    with FolderLock(args.out, "crosspose demo", wait=args.wait):
        run_demo(args.out, profile, args.recipe)
    return 0
