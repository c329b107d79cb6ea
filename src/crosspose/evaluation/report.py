"""Compare scored runs: a Table-1-style markdown and the figures of the paper.

``crosspose report NAME=metrics.json [NAME=metrics.json ...] --out DIR`` writes ``DIR/report.md``
with the models side by side, ``roc.png`` (paper Figure 1), ``confidence_histograms.png`` (Figure 2:
confidences of correct and incorrect keypoints), ``pckh_per_joint.png``, and with ``--draw GT PRED``
``predictions.png``: predicted and ground-truth skeletons on sample images.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from crosspose.core.errors import ConfigError
from crosspose.core.io import atomic_path, atomic_write_text
from crosspose.data.coco import CocoKeypoints, load_coco_keypoints
from crosspose.evaluation.results import load_metrics

__all__ = [
    "configure_parser",
    "draw_predictions",
    "load_metrics",
    "markdown_table",
    "plot_confidence_histograms",
    "plot_pckh_per_joint",
    "plot_roc",
    "run",
    "species_table",
    "write_report",
]

_GT_COLOR = "#1a9850"
_PRED_COLOR = "#d73027"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}f}"


def _rows(m: Mapping[str, Any]) -> list[tuple[str, str]]:
    d, p, loc, c = m["detection"], m["pckh"], m["localization"], m["counts"]
    rows = [
        ("AUC", _fmt(d.get("roc_auc"))),
        ("F1", _fmt(d.get("f1"))),
        ("Precision", _fmt(d.get("precision"))),
        ("Recall", _fmt(d.get("recall"))),
        ("Average RMSE (normalised px)", _fmt(loc.get("rmse_normalized"))),
        ("Mean error (normalised px)", _fmt(loc.get("mean_error_normalized"))),
        ("RMSE (px)", _fmt(loc.get("rmse"))),
        ("PCKh@0.5", _fmt(p.get("mean"))),
        ("PCKh@0.1", _fmt(p.get("at_0_1"))),
        ("PCKh AUC (alpha 0-0.5)", _fmt(p.get("auc"))),
        ("Correct keypoints", _fmt(c.get("correct"))),
        ("Present keypoints", _fmt(c.get("present"))),
        ("Threshold t* (F1-max)", _fmt(d.get("threshold"), 3)),
    ]
    for key in ("at_0_4", "at_0_6"):
        op = d.get(key)
        if op:
            rows.append((f"P / R / F1 at {op['threshold']}",
                         f"{_fmt(op['precision'])} / {_fmt(op['recall'])} / {_fmt(op['f1'])}"))
    oks = m.get("oks") or {}
    if "ap" in oks:
        rows.append(("OKS AP / AR", f"{_fmt(oks['ap'], 3)} / {_fmt(oks['ar'], 3)}"))
    joints = m.get("joints", [])
    rows.append(("Evaluated joints", f"{len(joints)}"))
    norm = m.get("normalizer", {})
    rows.append(("Normaliser", f"{norm.get('name', '?')}"))
    rows.append(("Absent joints", str(m.get("absent", "?"))))
    return rows


def markdown_table(runs: Mapping[str, Mapping[str, Any]]) -> str:
    """Table 1 layout: one row per metric, one column per model."""
    names = list(runs)
    columns = {name: dict(_rows(m)) for name, m in runs.items()}
    labels = [label for label, _ in _rows(next(iter(runs.values())))]
    for cols in columns.values():
        labels += [k for k in cols if k not in labels]
    lines = ["| Metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for label in labels:
        lines.append(f"| {label} | " + " | ".join(columns[n].get(label, "n/a") for n in names) + " |")
    return "\n".join(lines)


def plot_roc(runs: Mapping[str, Mapping[str, Any]], out_png: Path) -> Path:
    """ROC curves of the compared models (paper Figure 1)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5.0), dpi=120)
    ax.plot([0, 1], [0, 1], ls="--", c="0.6", lw=1, label="chance")
    for name, m in runs.items():
        roc = m["detection"].get("roc_curve")
        if roc:
            ax.plot(roc["fpr"], roc["tpr"], lw=2, label=f"{name} (AUC {_fmt(m['detection']['roc_auc'])})")
        else:
            ax.plot([], [], label=f"{name} (ROC undefined)")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate", ylabel="true positive rate",
           title="ROC of keypoint correctness vs confidence")
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _save(plt, fig, out_png)


def _save(plt: Any, fig: Any, out_png: Path) -> Path:
    """Lay out, write and close a figure."""
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return out_png


def plot_confidence_histograms(runs: Mapping[str, Mapping[str, Any]], out_png: Path) -> Path:
    """Confidences of correct and incorrect keypoints, one panel per model (paper Figure 2)."""
    plt = _pyplot()
    n = len(runs)
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 3.8), dpi=120, squeeze=False)
    for ax, (name, m) in zip(axes[0], runs.items(), strict=True):
        h = m["detection"]["histogram"]
        bins = np.asarray(h["bins"])
        width = np.diff(bins)
        centers = bins[:-1] + width / 2
        ax.bar(centers - width / 4, h["correct"], width / 2, color=_GT_COLOR, label="correct")
        ax.bar(centers + width / 4, h["incorrect"], width / 2, color=_PRED_COLOR, label="incorrect")
        t = m["detection"].get("threshold")
        if t is not None:
            ax.axvline(t, c="k", ls="--", lw=1, label=f"t* = {t:.2f}")
        ax.set(xlim=(bins[0], bins[-1]), xlabel="predicted confidence", ylabel="keypoints", title=name)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8)
    fig.suptitle("Confidence of correct and incorrect keypoints (PCKh@0.5)")
    return _save(plt, fig, out_png)


def plot_pckh_per_joint(runs: Mapping[str, Mapping[str, Any]], out_png: Path) -> Path:
    """Grouped bars: PCKh@0.5 per joint for each model (a joint a model was not scored on is absent)."""
    plt = _pyplot()
    joints: list[str] = []
    for m in runs.values():
        joints += [j for j in m["pckh"]["per_joint"] if j not in joints]
    n = len(runs)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(joints) * max(1, n) ** 0.5 + 2), 4.2), dpi=120)
    x = np.arange(len(joints))
    width = 0.8 / n
    for i, (name, m) in enumerate(runs.items()):
        vals = [m["pckh"]["per_joint"].get(j) for j in joints]
        vals = [np.nan if v is None else v for v in vals]
        ax.bar(x - 0.4 + width * (i + 0.5), vals, width, label=f"{name} (mean {_fmt(m['pckh']['mean'])})")
    ax.set_xticks(x, [j.replace("_", " ") for j in joints], rotation=45, ha="right", fontsize=8)
    ax.set(ylim=(0, 118), ylabel="PCKh@0.5 (%)", title="PCKh@0.5 per joint")
    ax.set_yticks(range(0, 101, 20))
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, loc="upper center", ncol=n, frameon=False)
    return _save(plt, fig, out_png)


def species_table(runs: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Markdown lines of PCKh@0.5 per species (rows) and model (columns); none when no run has species."""
    species = list(dict.fromkeys(s for m in runs.values() for s in (m.get("species") or {})))
    if not species:
        return []
    names = list(runs)
    lines = ["", "## PCKh@0.5 per species", "", "| Species | " + " | ".join(names) + " |",
             "|---|" + "---|" * len(names)]
    for sp in species:
        cells = []
        for n in names:
            block = (runs[n].get("species") or {}).get(sp)
            cells.append(f"{_fmt(block['pckh'])} ({block['instances']})" if block else "n/a")
        lines.append(f"| {sp} | " + " | ".join(cells) + " |")
    return lines + ["", "(instances in brackets)"]


def write_report(
    runs: Mapping[str, Path | str | Mapping[str, Any]],
    out_dir: str | PathLike[str],
    title: str = "crosspose evaluation",
    notes: str = "",
) -> Path:
    """Write ``report.md`` and its figures into ``out_dir``; returns the markdown path.

    Args:
        runs: model name -> metrics.json (path, folder holding one, or its dict).
        out_dir: created if needed.
        title: the markdown's heading.
        notes: free text placed under the heading.
    """
    if not runs:
        raise ConfigError("report: no runs to compare")
    loaded: dict[str, dict[str, Any]] = {name: dict(load_metrics(src)) for name, src in runs.items()}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot_roc(loaded, out / "roc.png")
    plot_confidence_histograms(loaded, out / "confidence_histograms.png")
    plot_pckh_per_joint(loaded, out / "pckh_per_joint.png")
    lines = [f"# {title}", ""]
    if notes:
        lines += [notes, ""]
    lines += [markdown_table(loaded), ""]
    lines += ["Definitions: `docs/metrics.md`. A keypoint is correct when annotated and within 0.5 x the "
              "normaliser of the ground truth (PCKh@0.5); AUC, precision, recall and F1 treat each evaluated "
              "(instance, joint) as one sample with that label and the predicted confidence as score; "
              "P/R/F1 are at the F1-maximising threshold t*; RMSE is over present joints accepted at t*, "
              "in pixels normalised by the person scale.", ""]
    lines += ["| Model | Evaluated joints | Normaliser | Person scale |", "|---|---|---|---|"]
    for name, m in loaded.items():
        norm: dict[str, Any] = dict(m.get("normalizer") or {})
        scale: dict[str, Any] = dict(m.get("person_scale") or {})
        lines.append(f"| {name} | {', '.join(m.get('joints', []))} | {norm.get('name', '?')}: "
                     f"{norm.get('description', '')} | {scale.get('description', '?')} |")
    lines += species_table(loaded)
    lines += ["", "## ROC curves", "", "![ROC curves](roc.png)", "",
              "## Confidence of correct and incorrect keypoints", "",
              "![confidence histograms](confidence_histograms.png)", "",
              "## PCKh@0.5 per joint", "", "![PCKh per joint](pckh_per_joint.png)", ""]
    if (out / "predictions.png").is_file():
        lines += ["## Predictions (red) vs ground truth (green)", "", "![predictions](predictions.png)", ""]
    path = out / "report.md"
    atomic_write_text(path, "\n".join(lines))
    return path


def _read_image(path: Path) -> np.ndarray | None:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR) if path.is_file() else None
    return None if img is None else img[:, :, ::-1]


def draw_predictions(
    gt: CocoKeypoints,
    predictions: Sequence[Mapping[str, Any]],
    out_png: str | PathLike[str],
    n: int = 6,
    pred_keypoint_names: Sequence[str] | None = None,
) -> Path:
    """Predicted (red, marker size by confidence) and ground-truth (green) skeletons on ``n`` instances.

    Instances are spread evenly over the ground truth; each panel is cropped around both skeletons.
    A missing image file gives a grey panel with the skeletons, so the figure is still made.
    """
    from crosspose.evaluation.predictions import pair_predictions, validate_predictions
    from crosspose.evaluation.score import resolve_joints

    k_pred = gt.num_keypoints if pred_keypoint_names is None else len(pred_keypoint_names)
    preds = validate_predictions(predictions, gt, k_pred, check_category=pred_keypoint_names is None)
    _, gt_idx, pred_idx = resolve_joints(gt.keypoint_names, "all", pred_keypoint_names)
    pairs = pair_predictions(gt, preds)
    if not pairs:
        raise ConfigError("draw_predictions: no annotated instance to draw")
    picks = np.unique(np.linspace(0, len(pairs) - 1, min(n, len(pairs))).round().astype(int))
    plt = _pyplot()
    cols = min(3, len(picks))
    rows = math.ceil(len(picks) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 4.2 * rows), dpi=110, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, i in zip(axes.ravel(), picks, strict=False):
        ann, pred = pairs[int(i)]
        g = gt.keypoints(ann)
        p = np.full((gt.num_keypoints, 3), np.nan)
        p[gt_idx] = pred["keypoints"][pred_idx]
        # crop around the ground truth; far-off predictions are cut at the panel edge, not zoomed out to
        x0, y0, w, h = (float(v) for v in ann["bbox"])
        margin = 0.25 * max(w, h, 40.0)
        box = [x0 - margin, y0 - margin, x0 + w + margin, y0 + h + margin]
        img = _read_image(gt.image_path(ann["image_id"]))
        if img is not None:
            ax.imshow(img)
            box = [max(box[0], -0.5), max(box[1], -0.5), min(box[2], img.shape[1] - 0.5),
                   min(box[3], img.shape[0] - 0.5)]
        else:
            ax.set_facecolor("0.85")
            ax.text(0.5, 0.02, "image not found", transform=ax.transAxes, ha="center", fontsize=8)
        for a, b in gt.links:
            if g[a, 2] > 0 and g[b, 2] > 0:
                ax.plot(g[[a, b], 0], g[[a, b], 1], c=_GT_COLOR, lw=2)
            if not np.isnan(p[[a, b], 0]).any():
                ax.plot(p[[a, b], 0], p[[a, b], 1], c=_PRED_COLOR, lw=1.5, alpha=0.9)
        seen = g[:, 2] > 0
        ax.scatter(g[seen, 0], g[seen, 1], s=18, c=_GT_COLOR, edgecolors="white", linewidths=0.5, zorder=3)
        ok = ~np.isnan(p[:, 0])
        ax.scatter(p[ok, 0], p[ok, 1], s=10 + 40 * np.clip(p[ok, 2], 0, 1), c=_PRED_COLOR,
                   edgecolors="white", linewidths=0.5, zorder=4)
        ax.set_xlim(box[0], box[2])
        ax.set_ylim(box[3], box[1])  # image coordinates: y down
        ax.set_aspect("equal")
        ax.set_title(f"image {ann['image_id']}, annotation {ann.get('id', '?')}", fontsize=9)
        ax.axis("on")
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [plt.Line2D([], [], c=_GT_COLOR, lw=2, marker="o", label="ground truth"),
               plt.Line2D([], [], c=_PRED_COLOR, lw=1.5, marker="o", label="prediction (dot size = confidence)")]
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return out


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``crosspose report``."""
    parser.add_argument("runs", nargs="+", metavar="[NAME=]METRICS",
                        help="metrics.json files (or folders holding one); NAME defaults to the folder name")
    parser.add_argument("--out", required=True, help="output folder for report.md and the figures")
    parser.add_argument("--title", default="crosspose evaluation")
    parser.add_argument("--notes", default="", help="text placed under the title")
    parser.add_argument("--draw", nargs=2, metavar=("GT.json", "PRED.json"), default=None,
                        help="also draw predicted vs ground-truth skeletons on sample images")
    parser.add_argument("--pred-keypoints", default=None, metavar="mpii|macaque|FILE.json",
                        help="the drawn predictions' skeleton when it is not the ground truth's")
    parser.add_argument("--samples", type=int, default=6, help="number of drawn instances")


def run(args: argparse.Namespace) -> int:
    """Write the report and print its path."""
    runs: dict[str, Path] = {}
    for spec in args.runs:
        name, sep, path = spec.partition("=")
        if not sep:
            path = spec
            p = Path(spec)
            name = (p if p.is_dir() else p.parent).name or p.stem
        if name in runs:
            raise ConfigError(f"report: two runs named {name!r}; name them NAME=PATH")
        runs[name] = Path(path)
    out = Path(args.out)
    if args.draw:
        from crosspose.evaluation.predictions import load_predictions, read_keypoint_names

        gt = load_coco_keypoints(args.draw[0])
        names = read_keypoint_names(args.pred_keypoints) if args.pred_keypoints else None
        preds = load_predictions(args.draw[1], gt, names)
        draw_predictions(gt, preds, out / "predictions.png", n=args.samples, pred_keypoint_names=names)
    print(f"wrote {write_report(runs, out, title=args.title, notes=args.notes)}")
    return 0
