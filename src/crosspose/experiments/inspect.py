"""``crosspose inspect``: what a network kept from the one it was initialised from, stage by stage.

``crosspose inspect --models macaque=PRE.ckpt scratch=SC.ckpt transfer=FT.ckpt --images human=HUMANS.json
--images macaque=MACAQUES.json --n 500 --out DIR`` runs every network on the same crops (each
instance cropped by its box through the evaluation data pipeline, identically for all networks)
and writes into DIR:

* ``inspect.json`` / ``inspect.md``: linear CKA per layer (stem, stage1-4, score-map and locref heads)
  for every pair of networks on every image set, with the unbiased minibatch estimator of Nguyen et
  al. 2021 on features average-pooled to the same grid for all networks; the relative weight
  movement ``||W - W0|| / ||W0||`` of each stage from the checkpoint named by ``init_from`` in the
  checkpoint; how much of each joint's LayerCAM falls within reach of that joint; how well stage-4
  features at the labelled joints separate species and joints;
* ``inspect_cka.png``, ``inspect_movement.png``, ``inspect_attribution.png`` (score maps and per-joint
  LayerCAM on a few crops of the first image set) and ``inspect_embedding.png`` (2-D PCA of the
  stage-4 joint features of every annotated image set, by species and by joint).

Networks with different skeletons or input sizes are compared on their backbone stages only, and
the outputs say so. ``--images`` may be a COCO keypoints file (instances cropped by their boxes) or
a folder of images (each image one crop; no joints, so no embedding and no on-joint numbers).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from crosspose.core.errors import ConfigError, CrossposeError
from crosspose.core.io import atomic_write_json, atomic_write_text
from crosspose.data.coco import load_coco_keypoints
from crosspose.evaluation.features import BACKBONE_STAGES, HEAD_LAYERS
from crosspose.evaluation.similarity import MIN_SAMPLES
from crosspose.experiments.inspect_analysis import (
    ImageSet,
    Network,
    compared_layers,
    compute_attribution,
    compute_cka,
    compute_embedding,
    load_image_set,
    load_network,
    random_network,
    weight_movement,
)

__all__ = ["configure_parser", "inspect_networks", "run", "run_summary", "what_transfers_section"]

MIN_BATCH = 8
"""Near-equal minibatches of at least this size each hold >= 4 examples, what the estimator needs."""


def _check_options(models: Mapping[str, Any], batch_size: int, grid: int, cam_layer: str,
                   inits: Mapping[str, Any]) -> None:
    if not models:
        raise ConfigError("--models: give at least one NAME=CHECKPOINT (two or more for CKA)")
    if batch_size < MIN_BATCH:
        raise ConfigError(f"--batch-size {batch_size}: the minibatch CKA estimator needs batches of at least {MIN_BATCH}")
    if grid < 1:
        raise ConfigError(f"--grid must be at least 1, got {grid}")
    if cam_layer not in BACKBONE_STAGES:
        raise ConfigError(f"--cam-layer {cam_layer!r}: choose one of {', '.join(BACKBONE_STAGES)}")
    unknown = sorted(set(inits) - set(models))
    if unknown:
        raise ConfigError(f"--init {unknown[0]}=...: no network of that name in --models ({', '.join(models)})")


def inspect_networks(
    models: Mapping[str, str | Path],
    images: Sequence[tuple[str | None, str | Path]],
    out: str | Path,
    n: int = 500,
    batch_size: int = 50,
    grid: int = 4,
    seed: int = 0,
    padding: float = 1.25,
    input_size: int | None = None,
    inits: Mapping[str, str | Path] | None = None,
    cam_layer: str = "stage3",
    attribution_n: int = 16,
    panels: int = 2,
    embed_n: int = 100,
    embedding: str = "pca",
    device: str = "cpu",
    random_reference: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Load, measure, write ``inspect.json``, ``inspect.md`` and the figures into ``out``; returns inspect.json.

    Args:
        models: network name -> checkpoint (order kept: pairs are "a vs b" in this order).
        images: (label or None, COCO keypoints file or image folder); the first set also gives the
            attribution panels; every annotated set joins the joint-feature embedding.
        n: crops per image set (a seeded sample when the set is larger).
        batch_size: minibatch of the CKA estimator.
        grid: feature maps are average-pooled to grid x grid before CKA.
        input_size: crop size for checkpoints that record none (and have no run config beside them).
        inits: name -> init checkpoint, overriding the recorded ``init_from`` (moved files).
        cam_layer: backbone stage LayerCAM reads.
        attribution_n / panels: crops for the on-joint numbers / drawn in the figure.
        embed_n: instances per annotated set whose joints enter the embedding.
        random_reference: add a freshly initialised network ("random", the first network's
            architecture) to the CKA tables: the value unrelated weights get, to read the others against.
    """
    from crosspose.experiments.inspect_figures import (
        plot_attribution,
        plot_cka,
        plot_embedding,
        plot_movement,
    )

    start = time.perf_counter()
    inits = dict(inits or {})
    _check_options(models, batch_size, grid, cam_layer, inits)
    if not images:
        raise ConfigError("--images: give at least one COCO keypoints file or image folder")
    if random_reference and "random" in models:
        raise ConfigError("--random-reference adds a network named 'random'; name yours otherwise")
    loaded = [load_network(name, path, input_size, device) for name, path in models.items()]
    networks = loaded + ([random_network(loaded[0], seed + 12345)] if random_reference else [])
    for net in networks[len(loaded):]:
        net.net.to(device)
    sizes = {net.input_hw for net in networks}
    sets: list[ImageSet] = []
    for label, source in images:
        image_set = load_image_set(source, label, n, seed, sizes, padding)
        while image_set.label in {s.label for s in sets}:
            image_set.label += "_2"
        sets.append(image_set)
    out = Path(out)
    log(f"inspect: {len(networks)} networks x {len(sets)} image sets "
        f"({', '.join(f'{s.label}: {len(s.indices)} crops' for s in sets)})")

    cka: dict[str, Any] = {}
    joint_features: dict[str, Any] = {}
    for image_set in sets:
        cka[image_set.label], joint_features[image_set.label] = compute_cka(
            networks, image_set, batch_size, grid, embed_n if image_set.annotated else 0, device)
        log(f"inspect: CKA on {image_set.label} done ({time.perf_counter() - start:.0f} s)")
    movement = {net.name: weight_movement(net, Path(inits[net.name]) if net.name in inits else None)
                for net in loaded}
    for name, m in movement.items():
        if m["note"] and m["init_from"]:
            log(f"inspect: warning: {name}: {m['note']}")
    attribution = compute_attribution(loaded, sets[0], cam_layer, max(1, attribution_n), device)
    embedded = compute_embedding({label: {n: f for n, f in per_net.items() if n != "random" or not random_reference}
                                  for label, per_net in joint_features.items()}, embedding, seed)
    log(f"inspect: attribution and embedding done ({time.perf_counter() - start:.0f} s)")

    result = _result(networks, sets, cka, movement, attribution, embedded, {
        "n": n, "batch_size": batch_size, "grid": grid, "seed": seed, "padding": padding, "cam_layer": cam_layer,
        "attribution_n": attribution_n, "embed_n": embed_n, "embedding": embedding,
        "random_reference": random_reference,
        "estimator": "linear CKA, unbiased HSIC averaged over minibatches (Nguyen et al. 2021)"})
    figures = {
        "cka": plot_cka(cka, out / "inspect_cka.png").name,
        "movement": plot_movement(movement, out / "inspect_movement.png").name,
        "attribution": plot_attribution(attribution["panels"], attribution["joints_shown"],
                                        out / "inspect_attribution.png", panels).name,
    }
    if embedded:
        figures["embedding"] = plot_embedding(embedded, out / "inspect_embedding.png").name
    result["figures"] = figures
    result["seconds"] = round(time.perf_counter() - start, 1)
    atomic_write_json(out / "inspect.json", result)
    atomic_write_text(out / "inspect.md", markdown(result))
    log(f"inspect: wrote {out / 'inspect.md'}, inspect.json and {len(figures)} figures "
        f"({result['seconds']:.0f} s)")
    return result


def _result(networks: list[Network], sets: list[ImageSet], cka: dict[str, Any], movement: dict[str, Any],
            attribution: dict[str, Any], embedded: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    comparisons = {}
    for i, a in enumerate(networks):
        for b in networks[i + 1:]:
            layers, note = compared_layers(a, b)
            comparisons[f"{a.name} vs {b.name}"] = {"layers": list(layers), "note": note}
    return {
        "models": {net.name: {"checkpoint": str(net.path), "backbone": net.meta.get("backbone"),
                              "input_size": list(net.input_hw), "keypoints": len(net.keypoint_names),
                              "init_from": net.meta.get("init_from"), "heads": net.meta.get("heads"),
                              "freeze": net.meta.get("freeze")} for net in networks},
        "image_sets": {s.label: {"source": str(s.source), "crops": len(s.indices), "annotated": s.annotated}
                       for s in sets},
        "comparisons": comparisons,
        "cka": cka,
        "movement": movement,
        "attribution": {"layer": attribution["layer"], "image_set": sets[0].label,
                        "joints_shown": attribution["joints_shown"], "networks": attribution["networks"]},
        "embedding": {name: {k: e[k] for k in ("points", "silhouette_species", "silhouette_joint", "silhouette_part")}
                      for name, e in embedded.items()},
        "settings": settings,
    }


def _cell(value: Any, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _moved(value: float | None) -> str:
    """Three significant digits: a frozen 0 and a barely moved 2e-4 must not both print as 0.000."""
    return "n/a" if value is None else "0 (unchanged)" if value == 0 else f"{value:#.3g}"


def cka_table(cka_on_set: Mapping[str, Mapping[str, float | None]], pairs: Sequence[str] | None = None) -> str:
    """Markdown: one row per layer, one column per pair."""
    pairs = list(pairs or cka_on_set)
    lines = ["| layer | " + " | ".join(pairs) + " |", "|---|" + "---|" * len(pairs)]
    for layer in BACKBONE_STAGES + HEAD_LAYERS:
        if any(layer in cka_on_set.get(p, {}) for p in pairs):
            lines.append(f"| {layer} | " + " | ".join(_cell(cka_on_set.get(p, {}).get(layer)) for p in pairs) + " |")
    return "\n".join(lines)


def movement_table(movement: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown: one row per stage, one column per network (n/a where it cannot be measured)."""
    names = list(movement)
    lines = ["| stage | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for group in BACKBONE_STAGES + ("heads",):
        cells = [_moved(movement[n]["groups"].get(group, {}).get("relative")) for n in names]
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
    notes = [f"- {n}: {m['note']}" for n, m in movement.items() if m["note"]]
    notes += [f"- {n}, {g}: {v['note']}" for n, m in movement.items() for g, v in m["groups"].items() if v["note"]]
    return "\n".join(lines + ([""] + notes if notes else []))


def markdown(result: Mapping[str, Any]) -> str:
    """inspect.md from inspect.json's content."""
    s = result["settings"]
    lines = ["# crosspose inspect: what transfers between networks", "", "| network | checkpoint | backbone | "
             "input | joints | init_from | freeze |", "|---|---|---|---|---|---|---|"]
    for name, m in result["models"].items():
        lines.append(f"| {name} | `{m['checkpoint']}` | {m['backbone']} | {m['input_size'][0]}x{m['input_size'][1]} | "
                     f"{m['keypoints']} | {'`' + str(m['init_from']) + '`' if m['init_from'] else '-'} | {m['freeze']} |")
    lines += ["", "## Representational similarity (linear CKA)", "",
              f"{s['estimator']}; minibatches of {s['batch_size']}, every layer's output average-pooled to "
              f"{s['grid']}x{s['grid']} cells for every network, so the same crop gives comparable vectors. "
              "1 = the same representation up to rotation and scale; 0 = unrelated.", ""]
    backbone_only = [f"- {pair}: {c['note']}" for pair, c in result["comparisons"].items() if c["note"]]
    lines += backbone_only + ([""] if backbone_only else [])
    if s.get("random_reference"):
        lines += ["`random` is a freshly initialised network of the first one's architecture: its column is what "
                  "unrelated weights score here (random convolutions keep much of an image's structure).", ""]
    for label, table in result["cka"].items():
        info = result["image_sets"][label]
        lines += [f"### On {info['crops']} {label} crops (`{info['source']}`)", "", cka_table(table) if table else
                  "(one network: no pairs)", ""]
    lines += ["## Weight movement from the init network", "", "Relative L2 distance ||W - W0|| / ||W0|| of the "
              "learnt weights (convolutions, BatchNorm scale and shift) of each stage; 0 = not moved (frozen).", "",
              movement_table(result["movement"]), ""]
    a = result["attribution"]
    lines += ["## Per-joint evidence", "", f"LayerCAM at {a['layer']} for each joint's peak score, on "
              f"{s['attribution_n']} {a['image_set']} crops: the share of the map within reach of the true joint "
              "(a disk of 10 % of the crop side), against the share that disk covers (chance). Grad-CAM for "
              "comparison (it averages gradients over the map, so it cannot localise one joint's evidence).", "",
              "| network | joints | LayerCAM on joint | Grad-CAM on joint | chance |", "|---|---|---|---|---|"]
    for name, e in a["networks"].items():
        lines.append(f"| {name} | {e['joints']} | {_cell(e.get('layercam_on_joint'))} | "
                     f"{_cell(e.get('gradcam_on_joint'))} | {_cell(e.get('chance'))} |")
    if result["embedding"]:
        lines += ["", "## Stage-4 features at the labelled joints", "", "Silhouette (cosine) of the stage-4 "
                  "feature vectors at every labelled joint: near 1 = well separated, near 0 = mixed.", "",
                  "| network | points | by species | by joint | by body part |", "|---|---|---|---|---|"]
        for name, e in result["embedding"].items():
            lines.append(f"| {name} | {e['points']} | {_cell(e['silhouette_species'])} | "
                         f"{_cell(e['silhouette_joint'])} | {_cell(e['silhouette_part'])} |")
    lines += ["", "## Figures", ""] + [f"![{k}]({v})" for k, v in result.get("figures", {}).items()]
    return "\n".join(lines) + "\n"


def what_transfers_section(out: str | Path, checkpoints: Mapping[str, str | Path], images: Sequence[str | Path],
                           n: int = 300) -> str:
    """The "What transfers" section of the demo report: runs ``inspect`` into ``out`` and summarises it.

    ``checkpoints`` should name ``macaque``, ``scratch`` and ``transfer``; ``images`` are the human
    test file (CKA, attribution) then the macaque file (embedding). A failure becomes a line saying
    why, so the rest of the report still stands.
    """
    out = Path(out)
    head = "\n## What transfers (feature analysis, `crosspose inspect`)\n\n"
    try:
        # an extra (embedding-only) set too small for the estimator is left out rather than failing the section
        extra = [Path(p) for p in images[1:] if len(load_coco_keypoints(p).instances()) >= MIN_SAMPLES]
        result = inspect_networks(dict(checkpoints), [(None, Path(p)) for p in [images[0], *extra]], out, n=n,
                                  panels=2, random_reference=True, log=lambda _: None)
    except CrossposeError as exc:
        return head + f"Not measured: {exc}\n"
    first = next(iter(result["cka"]))
    pairs = [p for p in result["cka"][first] if "transfer" in p]
    rel = out.name
    return head + "\n".join([
        f"Linear CKA (unbiased minibatch estimator) on {result['image_sets'][first]['crops']} {first} test crops, "
        "per stage, between the networks (1 = same representation up to rotation and scale; `random`: a freshly "
        "initialised network, the value unrelated weights get):", "",
        cka_table(result["cka"][first], pairs), "",
        *[f"- {p}: {result['comparisons'][p]['note']}" for p in pairs if result["comparisons"][p]["note"]], "",
        "How far each stage of the transfer network moved from the macaque network it started from "
        "(||W - W0|| / ||W0||):", "", movement_table({k: v for k, v in result["movement"].items() if k == "transfer"}),
        "", f"Full tables: [{rel}/inspect.md]({rel}/inspect.md).", "",
        f"![CKA]({rel}/inspect_cka.png)", "", f"![weight movement]({rel}/inspect_movement.png)", "",
        f"![per-joint evidence]({rel}/inspect_attribution.png)", "",
        *([f"![joint features]({rel}/inspect_embedding.png)", ""] if "embedding" in result["figures"] else []),
    ])


def run_summary(run_dir: str | Path, reference: str | Path | None, images: str | Path, n: int = 200,
                batch_size: int = 50) -> dict[str, float | None]:
    """Flat columns for one ablation run: CKA and weight movement per stage.

    CKA per stage against ``reference`` (the init network) on ``n`` crops of ``images``, and weight
    movement per stage (``None`` where not measurable).

    Cached in ``run_dir/inspect_summary.json`` (recomputed when the reference, images or n change).
    """
    run_dir = Path(run_dir)
    key = {"reference": str(reference), "images": str(images), "n": n}
    cache = run_dir / "inspect_summary.json"
    if cache.is_file():
        cached = json.loads(cache.read_text(encoding="utf-8"))
        if cached.get("key") == key:
            return cached["columns"]
    net = load_network("run", run_dir)
    columns: dict[str, float | None] = {f"cka_{s}": None for s in BACKBONE_STAGES}
    if reference:
        ref = load_network("reference", reference, default_input_size=net.input_hw[0])
        image_set = load_image_set(images, None, n, 0, {net.input_hw, ref.input_hw})
        table, _ = compute_cka([ref, net], image_set, batch_size, 4, 0)
        columns.update({f"cka_{s}": table["reference vs run"].get(s) for s in BACKBONE_STAGES})
    groups = weight_movement(net)["groups"]
    columns.update({f"moved_{g}": groups.get(g, {}).get("relative") for g in BACKBONE_STAGES + ("heads",)})
    atomic_write_json(cache, {"key": key, "columns": columns})
    return columns


def _named(text: str) -> tuple[str | None, str]:
    name, sep, value = text.partition("=")
    return (name.strip(), value) if sep and name.strip() and "/" not in name else (None, text)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``crosspose inspect``."""
    parser.description = (__doc__ or "").split("\n\n")[0]
    parser.add_argument("--models", nargs="+", required=True, metavar="NAME=CKPT",
                        help="networks to compare: checkpoints or run folders (their best.ckpt, else last.ckpt); "
                             "NAME defaults to the run folder's name")
    parser.add_argument("--images", action="append", required=True, metavar="[LABEL=]FILE.json|DIR",
                        help="COCO keypoints file or image folder (repeatable; the first one gives the attribution "
                             "panels, every annotated one joins the joint-feature embedding)")
    parser.add_argument("--n", type=int, default=500, help="crops per image set (default 500)")
    parser.add_argument("--out", type=Path, default=Path("runs/inspect"), help="output folder (default runs/inspect)")
    parser.add_argument("--batch-size", type=int, default=50, help="minibatch of the CKA estimator (default 50)")
    parser.add_argument("--grid", type=int, default=4, help="pool every feature map to GRID x GRID (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the image sample (default 0)")
    parser.add_argument("--padding", type=float, default=1.25, help="context around each box (default 1.25)")
    parser.add_argument("--input-size", type=int, default=None,
                        help="crop size for checkpoints that record none (default: from the checkpoint)")
    parser.add_argument("--init", action="append", default=[], metavar="NAME=CKPT",
                        help="init network of NAME, overriding the init_from its checkpoint records")
    parser.add_argument("--cam-layer", default="stage3", help="stage LayerCAM reads (default stage3)")
    parser.add_argument("--attribution-n", type=int, default=16, help="crops for the on-joint numbers (default 16)")
    parser.add_argument("--panels", type=int, default=2, help="crops drawn in the attribution figure (default 2)")
    parser.add_argument("--embed-n", type=int, default=100, help="instances per set in the embedding (default 100)")
    parser.add_argument("--embedding", choices=("pca", "umap"), default="pca", help="2-D embedding (default pca)")
    parser.add_argument("--random-reference", action="store_true",
                        help="add a freshly initialised network ('random') to the CKA tables, as the floor")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")


def run(args: argparse.Namespace) -> int:
    """Parse NAME=PATH options and run :func:`inspect_networks`."""
    models: dict[str, Path] = {}
    for text in args.models:
        name, path = _named(text)
        path_obj = Path(path)
        name = name or (path_obj.name if path_obj.is_dir() else path_obj.parent.parent.name
                        if path_obj.parent.name == "checkpoints" else path_obj.stem)
        if name in models:
            raise ConfigError(f"--models: the name {name!r} is given twice; name them NAME=CKPT")
        models[name] = path_obj
    inits = {}
    for text in args.init:
        name, path = _named(text)
        if name is None:
            raise ConfigError(f"--init {text}: expected NAME=CHECKPOINT")
        inits[name] = Path(path)
    inspect_networks(models, [_named(t) for t in args.images], args.out, n=args.n, batch_size=args.batch_size,
                     grid=args.grid, seed=args.seed, padding=args.padding, input_size=args.input_size, inits=inits,
                     cam_layer=args.cam_layer, attribution_n=args.attribution_n, panels=args.panels,
                     embed_n=args.embed_n, embedding=args.embedding, device=args.device,
                     random_reference=args.random_reference)
    return 0
