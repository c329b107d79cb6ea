"""``crosspose ablate``: a frozen-depth x training-set-size x seed grid of transfer and scratch runs.

``crosspose ablate --config BASE.yaml --freeze none,stage2,stage4 --subset 100,250,1000 --seeds 3``

``--unfreeze "fixed;2000:stage3,5000:none"`` adds gradual unfreezing as another axis of the
transfer arm: each schedule (``;``-separated; ``fixed`` = none) runs with every ``--freeze`` level
as its starting point (model.unfreeze; crosspose.models.unfreeze).

How BASE.yaml is read: it is a ``crosspose fit`` (LightningCLI) config with ``model``, ``data`` and
``trainer`` sections (``seed_everything`` and ``ckpt_path`` are ignored: the grid sets the seeds and
every run has its own folder). ``model.optimizer`` may be LightningCLI's ``{class_path, init_args}``.
Every run of the grid is that config with, changed:

* ``data.train_file``: ``--subset N`` draws N training instances from ``data.train_file``, by seed
  (seed s takes the first N of one permutation drawn with s, so the sets are nested: the 100 of
  seed s are inside its 250); the drawn file is written to ``OUT/subsets/``. ``all`` uses every one.
* ``data.test_file``: ``--test-file`` when given; every run is scored on this one file, the same way
  (the best-validation checkpoint, the paper's metrics, ``metrics.json``).
* the arm (``--arms``): ``transfer`` keeps the config's ``model.init_from`` checkpoint (heads as
  ``model.heads`` says) and runs every ``--freeze`` level; ``scratch`` drops ``init_from`` and runs
  unfrozen only (freezing randomly initialised layers measures nothing). Both arms of a seed see the
  same images.
* ``seed_everything`` and ``data.seed``: the run's seed (``--seeds 3`` = seeds 0, 1, 2).
* ``trainer``: ``default_root_dir``, ``logger`` and ``callbacks`` are set per run.

Outputs in OUT (default ``runs/ablate/<config name>``): one folder per run (resumable: a finished
run is reused, an interrupted one resumes from its ``last.ckpt``), ``ablation.md`` (mean and spread
over seeds), ``ablation_runs.csv`` (one row per run), ``ablation.json`` (runs and summary),
``ablation_freeze.png`` (metric vs frozen depth) and ``ablation_data_efficiency.png`` (metric vs
number of human training instances, transfer and scratch).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crosspose.core.errors import ConfigError
from crosspose.core.io import atomic_path, atomic_write_text, read_yaml_mapping
from crosspose.data.coco import load_coco_keypoints, save_coco_keypoints
from crosspose.evaluation.results import headline
from crosspose.models.freeze import FREEZE_LEVELS
from crosspose.models.unfreeze import parse_unfreeze
from crosspose.training.run_folder import FolderLock, add_wait_argument

__all__ = [
    "GridRun",
    "configure_parser",
    "grid",
    "markdown_table",
    "parse_schedule",
    "plot_data_efficiency",
    "plot_freeze",
    "read_base_config",
    "run",
    "run_ablation",
    "summarize",
    "write_subset",
]

ARMS = ("transfer", "scratch")
METRICS: dict[str, tuple[str, bool]] = {  # name -> (label, higher is better)
    "pckh": ("PCKh@0.5 (%)", True),
    "f1": ("F1", True),
    "roc_auc": ("ROC AUC", True),
    "rmse": ("RMSE (px)", False),
}
_DROPPED_TRAINER_KEYS = ("default_root_dir", "logger", "callbacks")


@dataclass(frozen=True)
class GridRun:
    """One cell of the grid: ``subset`` is None for the whole training file."""

    arm: str
    freeze: str
    subset: int | None
    seed: int
    unfreeze: str = ""  # a schedule as given to --unfreeze ("2000:stage3,5000:none"), "" = fixed

    @property
    def name(self) -> str:
        n = "all" if self.subset is None else str(self.subset)
        gradual = f"-unfreeze_{self.unfreeze.replace(':', 'at').replace(',', '+')}" if self.unfreeze else ""
        return f"{self.arm}-freeze_{self.freeze}{gradual}-n{n}-seed{self.seed}"


def parse_schedule(text: str) -> dict[int, str] | None:
    """``"2000:stage3,5000:none"`` -> {2000: "stage3", 5000: "none"}; ``""``/``fixed`` -> None."""
    text = text.strip()
    if text in ("", "fixed"):
        return None
    out: dict[int, str] = {}
    for item in text.split(","):
        step, sep, level = item.partition(":")
        if not sep or not step.strip().isdigit():
            raise ConfigError(f"--unfreeze: {item!r} is not STEP:LEVEL (e.g. 2000:stage3,5000:none)")
        out[int(step)] = level.strip()
    return out


def read_base_config(path: str | Path) -> dict[str, Any]:
    """The ``model``/``data``/``trainer`` sections of a LightningCLI-style YAML, checked."""
    path = Path(path)
    cfg = read_yaml_mapping(path, "config", expected="a mapping with model/data/trainer sections")
    unknown = set(cfg) - {"model", "data", "trainer", "seed_everything", "ckpt_path", "experiment"}
    if unknown:
        raise ConfigError(f"{path}: unknown top-level keys {sorted(unknown)} (a `crosspose fit` config "
                          "has model, data, trainer)")
    out = {k: dict(cfg.get(k) or {}) for k in ("model", "data", "trainer")}
    for key in ("num_keypoints",):
        if key not in out["model"]:
            raise ConfigError(f"{path}: model.{key} is required")
    if not out["data"].get("train_file"):
        raise ConfigError(f"{path}: data.train_file is required (the pool the --subset sizes are drawn from)")
    return out


def grid(arms: Sequence[str], freeze: Sequence[str], subsets: Sequence[int | None],
         seeds: Sequence[int], unfreeze: Sequence[str] = ("",)) -> list[GridRun]:
    """The runs, transfer before scratch, small subsets first."""
    runs = []
    for n in subsets:
        for arm in arms:
            for level in (freeze if arm == "transfer" else ("none",)):
                for schedule in (unfreeze if arm == "transfer" else ("",)):
                    runs += [GridRun(arm, level, n, s, schedule) for s in seeds]
    return runs


def write_subset(train_file: str | Path, n: int | None, seed: int, out: Path) -> Path:
    """The first ``n`` instances of a seed's permutation of ``train_file``, as a COCO file at ``out``."""
    if n is None:
        return Path(train_file)
    if out.is_file():
        return out
    coco = load_coco_keypoints(train_file)
    instances = coco.instances()
    if n > len(instances):
        raise ConfigError(f"{train_file}: --subset {n} but the file has only {len(instances)} usable instances")
    order = np.random.default_rng([seed, 0x5B5E7]).permutation(len(instances))
    chosen = [instances[i] for i in order[:n]]
    image_ids = {a["image_id"] for a in chosen}
    images = []
    for image_id in sorted(image_ids):
        record = dict(coco.images[image_id])
        record["file_name"] = os.path.relpath(coco.image_path(image_id).resolve(), out.parent.resolve())
        images.append(record)
    return save_coco_keypoints(out, images, chosen, coco.category,
                               info={"description": f"{n} instances of {train_file} drawn with seed {seed}"})


def _mean_sd(values: Sequence[float]) -> tuple[float, float]:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return math.nan, math.nan
    return statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0


def summarize(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Mean and sample standard deviation over seeds of every (arm, freeze, subset)."""
    groups: dict[tuple[str, str, str, Any], list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["arm"], r["freeze"], r.get("unfreeze") or "", r["subset"]), []).append(r)
    out = []
    for (arm, level, schedule, n), members in groups.items():
        entry: dict[str, Any] = {"arm": arm, "freeze": level, "unfreeze": schedule, "subset": n,
                                 "seeds": len(members)}
        for m in METRICS:
            entry[f"{m}_mean"], entry[f"{m}_sd"] = _mean_sd([r[m] for r in members])
        out.append(entry)
    level_order = {lv: i for i, lv in enumerate(FREEZE_LEVELS)}
    out.sort(key=lambda e: (ARMS.index(e["arm"]), level_order[e["freeze"]], e["unfreeze"],
                            math.inf if e["subset"] is None else e["subset"]))
    return out


def _pm(mean: float, sd: float, digits: int) -> str:
    return "n/a" if math.isnan(mean) else f"{mean:.{digits}f} ± {sd:.{digits}f}"


def markdown_table(summary: Sequence[Mapping[str, Any]]) -> str:
    """Arm, frozen depth, training instances, seeds and mean ± sd of each metric."""
    head = "| Arm | Frozen | Humans | Seeds | " + " | ".join(label for label, _ in METRICS.values()) + " |"
    lines = [head, "|" + "---|" * (4 + len(METRICS))]
    for e in summary:
        cells = [_pm(e[f"{m}_mean"], e[f"{m}_sd"], 1 if m in ("pckh", "rmse") else 3) for m in METRICS]
        n = "all" if e["subset"] is None else str(e["subset"])
        frozen = f"{e['freeze']}, unfreeze {e['unfreeze']}" if e.get("unfreeze") else e["freeze"]
        lines.append(f"| {e['arm']} | {frozen} | {n} | {e['seeds']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def _new_plot() -> tuple[Any, Any, Any]:
    """pyplot, and a new figure and axes of the ablation plots' size."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    return plt, fig, ax


def _finish_plot(plt: Any, fig: Any, ax: Any, metric: str, title: str, out_png: Path, grid: str = "major") -> Path:
    """Label, title and save (atomically) one of the ablation plots, then free its figure."""
    ax.set_ylabel(METRICS[metric][0])
    ax.set_title(f"{title} (mean ± sd over seeds)")
    ax.grid(alpha=0.3, which=grid)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return out_png


def plot_freeze(summary: Sequence[Mapping[str, Any]], metric: str, out_png: Path) -> Path:
    """Metric vs frozen depth (transfer), one line per training-set size; scratch as dashed levels."""
    plt, fig, ax = _new_plot()
    summary = [e for e in summary if not e.get("unfreeze")]  # fixed freezing only: one depth per point
    levels = [lv for lv in FREEZE_LEVELS if any(e["freeze"] == lv and e["arm"] == "transfer" for e in summary)]
    sizes = sorted({e["subset"] for e in summary}, key=lambda n: math.inf if n is None else n)
    for i, n in enumerate(sizes):
        colour = f"C{i}"
        pts = [(levels.index(e["freeze"]), e[f"{metric}_mean"], e[f"{metric}_sd"]) for e in summary
               if e["arm"] == "transfer" and e["subset"] == n]
        label = f"{'all' if n is None else n} humans"
        if pts:
            x, y, sd = zip(*sorted(pts), strict=True)
            ax.errorbar(x, y, yerr=sd, marker="o", capsize=3, color=colour, label=f"transfer, {label}")
        for e in summary:
            if e["arm"] == "scratch" and e["subset"] == n and levels:
                ax.axhline(e[f"{metric}_mean"], color=colour, linestyle="--", linewidth=1,
                           label=f"scratch, {label}")
    ax.set_xticks(range(len(levels)), levels)
    ax.set_xlabel("frozen up to and including")
    return _finish_plot(plt, fig, ax, metric, "Frozen depth", out_png)


def plot_data_efficiency(summary: Sequence[Mapping[str, Any]], metric: str, out_png: Path,
                         pool_size: int | None = None) -> Path:
    """Metric vs number of human training instances: one line per transfer freeze level, and scratch."""
    plt, fig, ax = _new_plot()
    series: dict[str, list[tuple[float, float, float]]] = {}
    for e in summary:
        n = e["subset"] if e["subset"] is not None else pool_size
        if n is None:
            continue
        label = "scratch" if e["arm"] == "scratch" else f"transfer, frozen {e['freeze']}" + (
            f", unfreeze {e['unfreeze']}" if e.get("unfreeze") else "")
        series.setdefault(label, []).append((n, e[f"{metric}_mean"], e[f"{metric}_sd"]))
    for i, (label, pts) in enumerate(series.items()):
        x, y, sd = zip(*sorted(pts), strict=True)
        ax.errorbar(x, y, yerr=sd, marker="o", capsize=3, color="k" if label == "scratch" else f"C{i}",
                    linestyle="--" if label == "scratch" else "-", label=label)
    ax.set_xscale("log")
    sizes = sorted({n for pts in series.values() for n, _, _ in pts})
    ax.set_xticks(sizes, [str(int(n)) for n in sizes])
    ax.xaxis.set_minor_locator(plt.NullLocator())
    ax.set_xlabel("human training instances")
    return _finish_plot(plt, fig, ax, metric, "Data efficiency", out_png, grid="both")


def _check_same_base(out: Path, base: Mapping[str, Any], test_file: str) -> None:
    """Refuse to mix runs of another base config into one table (runs are reused by folder name)."""
    record = {"base": base, "test_file": test_file}
    path = out / "ablation_base.json"
    if path.is_file():
        if json.loads(path.read_text()) != json.loads(json.dumps(record, default=str)):
            raise ConfigError(f"{out}: its runs were made from another base config or test file "
                              f"(see {path}); use another --out, or delete the folder to start over")
        return
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(record, indent=1, default=str))


def run_ablation(
    base: Mapping[str, Any],
    out: str | Path,
    freeze: Sequence[str],
    subsets: Sequence[int | None],
    seeds: Sequence[int],
    arms: Sequence[str] = ARMS,
    test_file: str | None = None,
    metric: str = "pckh",
    inspect_n: int = 0,
    unfreeze: Sequence[str] = ("",),
) -> dict[str, Any]:
    """Run (or reuse) every cell, then write the table, CSV, JSON and plots; returns ablation.json.

    ``inspect_n`` > 0 adds, per run, CKA per stage against the init network on that many test crops
    and the weight movement per stage (columns ``cka_*`` and ``moved_*``; see ``crosspose inspect``).
    """
    from crosspose.training.run_folder import check_reusable
    from crosspose.training.runs import load_run_metrics, run_config, train_and_test

    out = Path(out)
    model, data, trainer = dict(base["model"]), dict(base["data"]), dict(base["trainer"])
    test_file = test_file or data.get("test_file")
    if not test_file:
        raise ConfigError("the grid needs a test set: data.test_file in the config, or --test-file")
    bad = [a for a in arms if a not in ARMS]
    if bad or not arms:
        raise ConfigError(f"--arms: choose from {', '.join(ARMS)}, got {', '.join(arms) or 'nothing'}")
    if "transfer" in arms and not model.get("init_from"):
        raise ConfigError("the transfer arm needs model.init_from (the pretrained checkpoint) in the config; "
                          "run `--arms scratch` alone otherwise")
    for level in freeze:
        if level not in FREEZE_LEVELS:
            raise ConfigError(f"--freeze: unknown level {level!r}; choose from {', '.join(FREEZE_LEVELS)}")
        for schedule in unfreeze:
            if "transfer" in arms:
                parse_unfreeze(level, parse_schedule(schedule))  # a schedule that cannot run fails now
    if "transfer" in arms and not Path(model["init_from"]).is_file():
        raise ConfigError(f"{model['init_from']}: model.init_from checkpoint not found (for the synthetic "
                          "configs, run `crosspose demo` first: it writes the data and the macaque network)")
    _check_same_base(out, base, str(test_file))
    for key in _DROPPED_TRAINER_KEYS:
        trainer.pop(key, None)

    unfreeze = ["" if u.strip() in ("", "fixed") else u.strip() for u in unfreeze]
    cells = grid(arms, freeze, subsets, seeds, unfreeze)
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for i, cell in enumerate(cells, 1):
        run_dir = out / cell.name
        reused = load_run_metrics(run_dir) is not None
        tag = f"[ablate {i}/{len(cells)} | {time.perf_counter() - t0:5.0f} s] {cell.name}"
        if not reused:
            print(f"{tag}: training", flush=True)
        train_file = write_subset(data["train_file"], cell.subset, cell.seed,
                                  out / "subsets" / f"train_n{cell.subset}_seed{cell.seed}.json")
        run_model = {**model, "freeze": cell.freeze, "unfreeze": parse_schedule(cell.unfreeze)}
        if cell.arm == "scratch":
            run_model.pop("init_from", None)
            run_model.pop("heads", None)
        run_data = {**data, "train_file": str(train_file), "test_file": str(test_file), "seed": cell.seed}
        run = {"seed_everything": cell.seed, "model": run_model, "data": run_data, "trainer": trainer}
        if reused:  # a finished folder of another configuration is refused, never tabulated
            check_reusable(run_dir, run_config(run))
        finished = load_run_metrics(run_dir) if reused else None
        metrics = finished if finished is not None else train_and_test(run_dir, run)
        row = {"arm": cell.arm, "freeze": cell.freeze, "unfreeze": cell.unfreeze, "subset": cell.subset,
               "seed": cell.seed,
               **headline(metrics), "seconds": metrics.get("run", {}).get("seconds"), "run_dir": str(run_dir)}
        if inspect_n:
            from crosspose.experiments.inspect import run_summary

            row.update(run_summary(run_dir, model.get("init_from"), test_file, inspect_n))
        rows.append(row)
        took = "reused" if reused else f"done in {row['seconds'] or 0:.0f} s"
        print(f"{tag}: {took}, PCKh@0.5 {row['pckh']:.1f}, F1 {row['f1']:.3f}", flush=True)
    return write_outputs(out, rows, metric, pool_size=len(load_coco_keypoints(data["train_file"]).instances()))


def write_outputs(out: Path, rows: Sequence[Mapping[str, Any]], metric: str = "pckh",
                  pool_size: int | None = None) -> dict[str, Any]:
    """ablation.md, ablation_runs.csv, ablation.json and the two plots."""
    summary = summarize(rows)
    table = markdown_table(summary)
    atomic_write_text(out / "ablation.md",
                      "# Frozen-layer ablation\n\nMean ± sample standard deviation over seeds; every run scored "
                      "on the same test file.\n\n" + table + "\n\n![frozen depth](ablation_freeze.png)\n\n"
                      "![data efficiency](ablation_data_efficiency.png)\n")
    table_csv = io.StringIO(newline="")
    writer = csv.DictWriter(table_csv, fieldnames=list(rows[0]) if rows else ["arm"])
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "ablation_runs.csv", table_csv.getvalue())
    result = {"metric": metric, "runs": list(rows), "summary": summary}
    atomic_write_text(out / "ablation.json", json.dumps(result, indent=1, allow_nan=True))
    plot_freeze(summary, metric, out / "ablation_freeze.png")
    plot_data_efficiency(summary, metric, out / "ablation_data_efficiency.png", pool_size)
    print(f"\n{table}\n\nwrote {out / 'ablation.md'}, ablation_runs.csv, ablation.json, ablation_freeze.png, "
          "ablation_data_efficiency.png")
    return result


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _subsets(text: str) -> list[int | None]:
    out: list[int | None] = []
    for t in _csv(text):
        if t == "all":
            out.append(None)
            continue
        try:
            n = int(t)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected sizes such as 100,250,1000 or all, got {t!r}") from None
        if n < 1:
            raise argparse.ArgumentTypeError(f"subset sizes must be positive, got {n}")
        out.append(n)
    return out


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``crosspose ablate``."""
    parser.description = __doc__.split("\n\n")[0] if __doc__ else None
    parser.add_argument("--config", required=True, type=Path, help="base `crosspose fit` YAML (model/data/trainer)")
    parser.add_argument("--freeze", type=_csv, default=None,
                        help=f"freeze levels of the transfer arm, comma-separated ({', '.join(FREEZE_LEVELS)}); "
                             "default: the config's model.freeze")
    parser.add_argument("--unfreeze", type=lambda t: [u for u in t.split(";")], default=None,
                        help="gradual-unfreezing schedules of the transfer arm, ';'-separated, each "
                             "STEP:LEVEL,... or 'fixed' (e.g. 'fixed;2000:stage3,5000:none'); "
                             "default: the config's model.unfreeze, else fixed")
    parser.add_argument("--subset", type=_subsets, default=[None],
                        help="training-set sizes drawn from data.train_file, e.g. 100,250,1000 (default all)")
    parser.add_argument("--seeds", type=int, default=1, help="number of seeds: 0..N-1 (default 1)")
    parser.add_argument("--first-seed", type=int, default=0, help="first seed (default 0)")
    parser.add_argument("--arms", type=_csv, default=None,
                        help="transfer,scratch (default both; scratch alone when the config has no init_from)")
    parser.add_argument("--test-file", default=None, help="test COCO file (default: data.test_file)")
    parser.add_argument("--metric", choices=sorted(METRICS), default="pckh", help="metric of the plots")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default runs/ablate/<config name>)")
    parser.add_argument("--inspect", type=int, default=0, metavar="N",
                        help="also record per run CKA per stage vs the init network on N test crops and the "
                             "weight movement per stage (default 0: off)")
    add_wait_argument(parser)


def run(args: argparse.Namespace) -> int:
    """Read the base config, run the grid, write the outputs."""
    base = read_base_config(args.config)
    if args.seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {args.seeds}")
    if 0 < args.inspect < 4:
        raise ConfigError(f"--inspect {args.inspect}: the unbiased CKA estimator needs at least 4 test crops")
    arms = args.arms or (list(ARMS) if base["model"].get("init_from") else ["scratch"])
    freeze = args.freeze or [base["model"].get("freeze", "none")]
    out = args.out or Path("runs/ablate") / args.config.stem
    configured = base["model"].get("unfreeze")
    unfreeze = args.unfreeze or [",".join(f"{k}:{v}" for k, v in configured.items()) if configured else "fixed"]
    with FolderLock(out, "crosspose ablate", wait=args.wait):
        run_ablation(base, out, freeze, args.subset, range(args.first_seed, args.first_seed + args.seeds), arms,
                     args.test_file, args.metric, inspect_n=args.inspect, unfreeze=unfreeze)
    return 0
