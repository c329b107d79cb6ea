"""The figures of ``crosspose inspect``, each written atomically through :func:`crosspose.core.io.atomic_path`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from crosspose.core.io import atomic_path
from crosspose.evaluation.features import BACKBONE_STAGES, HEAD_LAYERS

__all__ = ["plot_attribution", "plot_cka", "plot_embedding", "plot_movement"]

LAYERS = BACKBONE_STAGES + HEAD_LAYERS
_GROUPS = BACKBONE_STAGES + ("heads",)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def _save(plt: Any, fig: Any, out_png: Path, dpi: int = 100) -> Path:
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
    return out_png


def plot_cka(cka: Mapping[str, Mapping[str, Mapping[str, float | None]]], out_png: Path) -> Path:
    """One heat map per image set, stacked: layers (rows) x network pairs (columns), values in the cells."""
    plt = _pyplot()
    sets = list(cka)
    pairs = list(next(iter(cka.values()))) if sets else []
    fig, axes = plt.subplots(max(1, len(sets)), 1, figsize=(2.2 + 1.15 * max(1, len(pairs)), 0.6 + 3.0 * max(1, len(sets))),
                             squeeze=False, layout="constrained")
    image = None
    for ax, label in zip(axes[:, 0], sets, strict=False):
        grid = np.array([[np.nan if cka[label][p].get(layer) is None else cka[label][p][layer] for p in pairs]
                         for layer in LAYERS], dtype=float)
        cmap = plt.get_cmap("viridis").copy()
        cmap.set_bad("#dddddd")
        image = ax.imshow(np.ma.masked_invalid(grid), vmin=0, vmax=1, cmap=cmap, aspect="auto")
        for (r, c), v in np.ndenumerate(grid):
            ax.text(c, r, "n/a" if np.isnan(v) else f"{v:.2f}", ha="center", va="center", fontsize=8,
                    color="black" if np.isnan(v) or v > 0.55 else "white")
        ax.set_xticks(range(len(pairs)), [p.replace(" vs ", "\nvs ") for p in pairs], fontsize=7)
        ax.set_yticks(range(len(LAYERS)), LAYERS, fontsize=8)
        ax.set_title(f"linear CKA on {label} crops", fontsize=9)
    if image is not None:
        fig.colorbar(image, ax=axes[:, 0].tolist(), shrink=0.8, label="CKA (1 = same representation)")
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)
    return out_png


def plot_movement(movement: Mapping[str, Mapping[str, Any]], out_png: Path) -> Path:
    """Relative weight movement per stage, one bar per network that has an init network."""
    plt = _pyplot()
    measured = {n: m for n, m in movement.items() if any(g.get("relative") is not None for g in m["groups"].values())}
    fig, ax = plt.subplots(figsize=(6.0, 3.4))
    width = 0.8 / max(1, len(measured))
    for i, (name, m) in enumerate(measured.items()):
        values = [m["groups"].get(g, {}).get("relative") for g in _GROUPS]
        xs = [k + (i - (len(measured) - 1) / 2) * width for k in range(len(_GROUPS))]
        ax.bar([x for x, v in zip(xs, values, strict=True) if v is not None],
               [v for v in values if v is not None], width=width, label=name, color=f"C{i}")
        for x, v in zip(xs, values, strict=True):  # say why a bar is missing: frozen (0) or not measurable
            ax.text(x, v if v is not None else 0, "0" if v == 0 else ("n/a" if v is None else ""), ha="center",
                    va="bottom", fontsize=8, color=f"C{i}")
    ax.set_xticks(range(len(_GROUPS)), _GROUPS)
    ax.set_ylabel("||W - W0|| / ||W0||")
    ax.set_title("How far fine-tuning moved each stage from its init network", fontsize=9)
    if measured:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no network records an init_from checkpoint", ha="center", transform=ax.transAxes)
    ax.grid(axis="y", alpha=0.3)
    return _save(plt, fig, out_png)


def _grey(image: np.ndarray) -> np.ndarray:
    return np.asarray(image, dtype=np.float32).mean(axis=0) / 255.0


def plot_attribution(panels: Mapping[str, Mapping[str, Any]], joints: Sequence[str], out_png: Path,
                     images: int = 2) -> Path:
    """Rows: crop x network; columns: all-joint score map, then LayerCAM of each shown joint.

    Markers: ground truth (green circle) and the network's score-map peak (red cross) of that joint.
    """
    plt = _pyplot()
    names = list(panels)
    if not joints:  # an image folder: no joint names, show what each network has
        joints = list(next(iter(panels.values()))["cams"])[:4] if panels else []
    n_images = min(images, min((len(p["images"]) for p in panels.values()), default=0))
    rows, cols = max(1, n_images * len(names)), 1 + len(joints)
    fig, axes = plt.subplots(rows, cols, figsize=(1.75 * cols, 1.75 * rows), squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for i in range(n_images):
        for r, name in enumerate(names):
            p = panels[name]
            row = axes[i * len(names) + r]
            grey = _grey(p["images"][i].numpy())
            h, w = grey.shape
            row[0].imshow(grey, cmap="gray", vmin=0, vmax=1)
            row[0].imshow(p["score_max"][i].numpy(), cmap="magma", alpha=0.55, vmin=0, vmax=1,
                          extent=(-0.5, w - 0.5, h - 0.5, -0.5))
            row[0].set_ylabel(name, fontsize=8)
            if i == 0 and r == 0:
                row[0].set_title("score maps (max)", fontsize=8)
            for c, joint in enumerate(joints, start=1):
                ax = row[c]
                if i == 0 and r == 0:
                    ax.set_title(f"LayerCAM {joint}", fontsize=7)
                ax.imshow(grey, cmap="gray", vmin=0, vmax=1)
                if joint not in p["cams"]:
                    ax.text(w / 2, h / 2, "no such\njoint", ha="center", va="center", fontsize=7, color="white")
                    continue
                cam = p["cams"][joint][i].numpy()
                ax.imshow(cam / cam.max() if cam.max() > 0 else cam, cmap="jet", alpha=0.45, vmin=0, vmax=1)
                gt = p["gt_index"].get(joint)
                if gt is not None and bool(p["valid"][i, gt]):
                    x, y = p["keypoints"][i, gt].tolist()
                    ax.plot(x, y, "o", mfc="none", mec="#00ff66", ms=7, mew=1.5)
                px, py = p["peaks"][joint][i].tolist()
                ax.plot(px, py, "x", color="red", ms=6, mew=1.5)
    fig.suptitle("Per-joint evidence: green o ground truth, red x predicted peak", fontsize=8)
    return _save(plt, fig, out_png, dpi=80)


def plot_embedding(embedding: Mapping[str, Mapping[str, Any]], out_png: Path) -> Path:
    """Rows: networks; left coloured by species (image set), right by body part (marker: species)."""
    plt = _pyplot()
    names = list(embedding)
    fig, axes = plt.subplots(max(1, len(names)), 2, figsize=(8.0, 2.9 * max(1, len(names))), squeeze=False)
    for row, name in zip(axes, names, strict=False):
        e = embedding[name]
        xy = np.asarray(e["xy"])
        for ax, key, title in ((row[0], "species", "species"), (row[1], "parts", "body part")):
            labels = list(e[key])
            uniques = list(dict.fromkeys(labels))
            cmap = plt.get_cmap("tab10" if len(uniques) <= 10 else "tab20")
            species = np.array(e["species"])
            for k, u in enumerate(uniques):
                sel = np.array([lab == u for lab in labels])
                labelled = False
                for s_i, s in enumerate(dict.fromkeys(e["species"])):
                    part = sel & (species == s)
                    if part.any():
                        ax.scatter(xy[part, 0], xy[part, 1], s=5, alpha=0.6, color=cmap(k % cmap.N),
                                   marker="o^sD"[s_i % 4], label=None if labelled else u)
                        labelled = True
            sil = e.get(f"silhouette_{'species' if key == 'species' else 'part'}")
            ax.set_title(f"{name}: stage-4 joint features by {title}"
                         + (f" (silhouette {sil:.2f})" if sil is not None else ""), fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.legend(fontsize=7, markerscale=2, loc="best", frameon=False)
    fig.suptitle("PCA of stage-4 features at labelled joints (marker: species)", fontsize=9)
    return _save(plt, fig, out_png, dpi=80)
