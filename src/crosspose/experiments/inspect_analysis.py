"""The measurements behind ``crosspose inspect``: load networks and image sets, run them, measure.

Every network sees the same instances with the same evaluation crop (one dataset per input size,
the same indices). The maths lives in :mod:`crosspose.evaluation.similarity`, ``.movement``,
``.attribution`` and ``.features`` (usable on any ``nn.Module``); this module applies it to
crosspose checkpoints.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from crosspose.core.errors import CheckpointError, ConfigError, CrossposeError, DataFormatError
from crosspose.core.skeletons import canonical_joint_name, match_joints
from crosspose.data.coco import load_coco_keypoints
from crosspose.data.dataset import ImageFolderDataset, InstanceDataset
from crosspose.evaluation.attribution import cam_maps, disk_masks, joint_peak, mass_inside
from crosspose.evaluation.features import (
    BACKBONE_STAGES,
    HEAD_LAYERS,
    pool_features,
    pose_network_layers,
    record_features,
    sample_at_points,
)
from crosspose.evaluation.movement import GroupMovement, relative_weight_movement
from crosspose.evaluation.similarity import MIN_SAMPLES, MinibatchCKA
from crosspose.models.transfer import read_checkpoint

__all__ = [
    "BODY_PARTS",
    "ImageSet",
    "Network",
    "body_part",
    "checkpoint_of",
    "compared_layers",
    "compute_attribution",
    "compute_cka",
    "compute_embedding",
    "load_image_set",
    "load_network",
    "random_network",
    "resolve_init",
    "weight_movement",
]

ATTRIBUTION_JOINTS = ("left_wrist", "right_elbow", "left_knee", "right_ankle")
"""Limb joints shown in the attribution panels when the image set has them."""


@dataclass
class Network:
    """A loaded checkpoint: ``net`` in eval mode, its joints, its input size and its metadata."""

    name: str
    path: Path
    net: torch.nn.Module
    keypoint_names: tuple[str, ...]
    input_hw: tuple[int, int]
    meta: dict[str, Any]


@dataclass
class ImageSet:
    """The same instances, cropped identically, at each input size a network needs."""

    label: str
    source: Path
    indices: np.ndarray
    datasets: dict[tuple[int, int], InstanceDataset | ImageFolderDataset] = field(default_factory=dict)
    keypoint_names: tuple[str, ...] = ()

    @property
    def annotated(self) -> bool:
        return bool(self.keypoint_names)


def _input_hw(path: Path, meta: dict[str, Any], default: int | None) -> tuple[int, int]:
    """The crop size a network was trained at: its metadata, else its run's config.yaml, else ``default``."""
    size: Any = meta.get("input_size")
    config = path.parent.parent / "config.yaml"
    if size is None and config.is_file():
        size = ((yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("data") or {}).get("input_size")
    if size is None:
        size = default
    if size is None:
        raise CheckpointError(f"{path}: the checkpoint does not record its input size and there is no "
                              f"{config} beside it; pass --input-size")
    hw = (int(size), int(size)) if isinstance(size, int | float) else tuple(int(v) for v in size)
    return hw  # type: ignore[return-value]


def checkpoint_of(path: str | Path) -> Path:
    """A checkpoint file, or a run folder's ``checkpoints/best.ckpt`` (else ``last.ckpt``)."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.ckpt", "last.ckpt"):
            if (path / "checkpoints" / name).is_file():
                return path / "checkpoints" / name
        raise CheckpointError(f"{path}: a folder without checkpoints/best.ckpt or checkpoints/last.ckpt")
    return path


def load_network(name: str, path: str | Path, default_input_size: int | None = None,
                 device: str = "cpu") -> Network:
    """A crosspose checkpoint (or run folder) as an eval-mode network (weights only; no timm download)."""
    from crosspose.training.module import PoseEstimationModule

    path = checkpoint_of(path)
    _, meta = read_checkpoint(path)  # a clear CheckpointError for a missing or foreign file
    try:
        module = PoseEstimationModule.load_from_checkpoint(str(path), map_location="cpu", weights_only=True,
                                                           pretrained=False, compile=False)
    except CrossposeError:
        raise
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot load as a crosspose network ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from None
    net = module.net.to(device).eval()
    names = tuple(module.keypoint_names or meta.get("keypoint_names") or
                  (f"joint{i}" for i in range(module.hparams.num_keypoints)))
    meta = {**meta, "backbone": module.hparams.backbone, "freeze": module.hparams.freeze,
            "init_from": meta.get("init_from", module.hparams.init_from),
            "heads": meta.get("heads", module.hparams.heads)}
    return Network(name, path, net, names, _input_hw(path, meta, default_input_size), meta)


def random_network(like: Network, seed: int = 12345) -> Network:
    """A freshly initialised network of ``like``'s architecture, skeleton and input size.

    The CKA floor: what two networks with unrelated weights score on these crops with this pooling
    (random convolutions keep much of an image's structure, so it is far from 0).
    """
    from crosspose.models.network import PoseNetwork

    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        net = PoseNetwork(len(like.keypoint_names), str(like.meta.get("backbone") or "resnet50")).eval()
    finally:
        torch.random.set_rng_state(state)  # the caller's random stream is not ours to move
    meta = {"backbone": like.meta.get("backbone"), "init_from": None, "heads": None, "freeze": "none"}
    return Network("random", Path(f"(fresh random init, seed {seed})"), net, like.keypoint_names, like.input_hw, meta)


def load_image_set(source: str | Path, label: str | None, n: int, seed: int, sizes: set[tuple[int, int]],
                   padding: float = 1.25) -> ImageSet:
    """Up to ``n`` instances of a COCO keypoints file (cropped by their boxes) or images of a folder.

    The choice is a seeded sample, in file order; every size in ``sizes`` gets its own dataset over
    the same instances and the same evaluation crop.
    """
    source = Path(source)
    if source.is_dir():
        datasets: dict[tuple[int, int], Any] = {hw: ImageFolderDataset(source, hw) for hw in sizes}
        names: tuple[str, ...] = ()
        label = label or source.name
    else:
        coco = load_coco_keypoints(source)
        datasets = {hw: InstanceDataset(coco, hw, None, padding) for hw in sizes}
        names = coco.keypoint_names
        label = label or str(coco.category.get("name") or source.stem)
    total = len(next(iter(datasets.values())))
    if total < MIN_SAMPLES:
        raise DataFormatError(source, f"{total} instance(s); the unbiased CKA estimator needs at least "
                                      f"{MIN_SAMPLES} (and gives stable values from a few hundred)")
    if n < MIN_SAMPLES:
        raise ConfigError(f"--n {n}: the unbiased CKA estimator needs at least {MIN_SAMPLES} images")
    chosen = np.arange(total) if n >= total else np.sort(np.random.default_rng(seed).choice(total, n, replace=False))
    return ImageSet(label, source, chosen, datasets, names)


def _batches(indices: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Near-equal batches: with batch_size >= 8 every one holds at least MIN_SAMPLES examples."""
    return np.array_split(indices, max(1, math.ceil(len(indices) / batch_size)))


def _items(image_set: ImageSet, hw: tuple[int, int], indices: np.ndarray) -> dict[str, torch.Tensor]:
    items = [image_set.datasets[hw][int(i)] for i in indices]
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def compared_layers(a: Network, b: Network) -> tuple[tuple[str, ...], str | None]:
    """Layers two networks are compared on, and why the heads are left out (if they are)."""
    if a.keypoint_names != b.keypoint_names:
        return BACKBONE_STAGES, (f"different skeletons ({len(a.keypoint_names)} vs {len(b.keypoint_names)} "
                                 "joints): backbone stages only")
    if a.input_hw != b.input_hw:
        return BACKBONE_STAGES, (f"different input sizes ({a.input_hw[0]}x{a.input_hw[1]} vs "
                                 f"{b.input_hw[0]}x{b.input_hw[1]}): backbone stages only")
    return BACKBONE_STAGES + HEAD_LAYERS, None


def _finite(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 4)


def compute_cka(networks: list[Network], image_set: ImageSet, batch_size: int, grid: int,
                embed_n: int = 0, device: str = "cpu") -> tuple[dict[str, dict[str, float | None]], dict[str, Any]]:
    """CKA per pair and layer on one image set; also stage-4 joint features of its first ``embed_n`` instances."""
    acc = {(a.name, b.name, layer): MinibatchCKA() for a, b in itertools.combinations(networks, 2)
           for layer in compared_layers(a, b)[0]}
    joints: dict[str, list[np.ndarray]] = {n.name: [] for n in networks}
    labels: dict[str, list[str]] = {n.name: [] for n in networks}
    seen = 0
    with torch.inference_mode():
        for batch in _batches(image_set.indices, batch_size):
            items = {hw: _items(image_set, hw, batch) for hw in image_set.datasets}
            pooled: dict[str, dict[str, torch.Tensor]] = {}
            take = max(0, min(len(batch), embed_n - seen)) if image_set.annotated else 0
            for net in networks:
                it = items[net.input_hw]
                with record_features(pose_network_layers(net.net)) as feats:
                    net.net(it["image"].to(device))
                pooled[net.name] = {k: pool_features(v, grid).cpu() for k, v in feats.items()}
                if take:
                    points = sample_at_points(feats["stage4"][:take].float(), it["keypoints"][:take].to(device),
                                              net.input_hw).cpu()
                    valid = it["valid"][:take]
                    joints[net.name].append(points[valid].numpy())
                    names = np.array([canonical_joint_name(n) for n in image_set.keypoint_names])
                    labels[net.name] += names[np.nonzero(valid.numpy())[1]].tolist()
            seen += take
            for (a, b, layer), cka in acc.items():
                cka.update(pooled[a][layer], pooled[b][layer])
    table: dict[str, dict[str, float | None]] = {}
    for (a, b, layer), cka in acc.items():
        table.setdefault(f"{a} vs {b}", {})[layer] = _finite(cka.compute())
    joint_features = {n: {"features": np.concatenate(joints[n]) if joints[n] else np.zeros((0, 0)),
                          "joints": labels[n]} for n in joints}
    return table, joint_features


def resolve_init(net: Network, override: Path | None = None) -> tuple[Path | None, str | None]:
    """The checkpoint ``net`` was initialised from, or (None, why not)."""
    recorded = override or net.meta.get("init_from")
    if not recorded:
        return None, "trained from scratch (no init_from): nothing to measure movement against"
    candidates = [Path(recorded)]
    if not Path(recorded).is_absolute():  # recorded relative to where the run was started
        candidates += [parent / recorded for parent in net.path.resolve().parents]
    for candidate in candidates:
        if candidate.is_file():
            return candidate, None
    return None, (f"its init_from checkpoint {recorded} is not found (moved or deleted?); "
                  f"pass --init {net.name}=PATH to measure weight movement")


def weight_movement(net: Network, override: Path | None = None) -> dict[str, Any]:
    """Per-stage relative movement from the init network, or a note saying why there is none."""
    init, why = resolve_init(net, override)
    if init is None:
        return {"init_from": net.meta.get("init_from"), "note": why, "groups": {}}
    init_state, _ = read_checkpoint(init)
    groups = relative_weight_movement(net.net.state_dict(), init_state)
    if net.meta.get("heads") == "reinit" and "heads" in groups:
        groups["heads"] = GroupMovement(None, groups["heads"].tensors, groups["heads"].elements,
                                        "re-initialised for this skeleton (heads: reinit)")
    return {"init_from": str(init), "note": None, "groups": {g: m.as_dict() for g, m in groups.items()}}


def _attribution_joints(image_set: ImageSet, networks: list[Network], count: int = 4) -> list[str]:
    names = [canonical_joint_name(n) for n in image_set.keypoint_names]
    coverage = {n: sum(canonical_joint_name(n) in {canonical_joint_name(k) for k in net.keypoint_names}
                       for net in networks) for n in names}
    preferred = [j for j in ATTRIBUTION_JOINTS if coverage.get(j)]
    rest = sorted((j for j in names if coverage[j] and j not in preferred), key=lambda j: -coverage[j])
    return (preferred + rest)[:count]


def compute_attribution(networks: list[Network], image_set: ImageSet, layer: str, count: int,
                        device: str = "cpu") -> dict[str, Any]:
    """LayerCAM (and Grad-CAM, for comparison) of every joint on ``count`` crops; on-joint mass per network."""
    indices = image_set.indices[:count]
    shown = _attribution_joints(image_set, networks) if image_set.annotated else []
    result: dict[str, Any] = {"layer": layer, "joints_shown": shown, "networks": {}, "panels": {}}
    for net in networks:
        it = _items(image_set, net.input_hw, indices)
        images = it["image"].to(device)
        if image_set.annotated:
            mapping = match_joints(net.keypoint_names, image_set.keypoint_names)  # set joint -> net joint
        else:
            mapping = {j: j for j in range(min(4, len(net.keypoint_names)))}
        set_joints = sorted(mapping)
        targets = [joint_peak(mapping[j]) for j in set_joints]
        target_layer = pose_network_layers(net.net)[layer]
        if targets:
            cams, gradcams, output = cam_maps(net.net, target_layer, images, targets, size=net.input_hw)
            cams, gradcams = cams.cpu(), gradcams.cpu()
        else:
            cams = gradcams = torch.zeros(0, len(indices), *net.input_hw)
            with torch.inference_mode():
                output = net.net(images)
        scores = torch.sigmoid(output["heatmap"].float()).cpu()
        entry: dict[str, Any] = {"joints": len(set_joints)}
        if image_set.annotated and set_joints:
            radius = 0.1 * max(net.input_hw)
            points = it["keypoints"][:, set_joints].permute(1, 0, 2).reshape(-1, 2)
            valid = it["valid"][:, set_joints].permute(1, 0).reshape(-1)
            masks = disk_masks(net.input_hw, points, radius).view(len(set_joints), len(indices), *net.input_hw)
            for key, maps in (("layercam_on_joint", cams), ("gradcam_on_joint", gradcams)):
                fractions = mass_inside(maps, masks).reshape(-1)[valid]
                entry[key] = _finite(float(torch.nanmean(fractions))) if len(fractions) else None
            entry["chance"] = _finite(math.pi * radius ** 2 / (net.input_hw[0] * net.input_hw[1]))
            entry["radius_px"] = round(radius, 1)
        result["networks"][net.name] = entry
        canon = [canonical_joint_name(n) for n in image_set.keypoint_names]
        result["panels"][net.name] = {
            "images": it["image"], "keypoints": it.get("keypoints"), "valid": it.get("valid"),
            "score_max": scores.amax(dim=1),
            "cams": {canon[j] if canon else net.keypoint_names[mapping[j]]: cams[t] for t, j in enumerate(set_joints)},
            "peaks": {canon[j] if canon else net.keypoint_names[mapping[j]]: _peaks(scores[:, mapping[j]], net.input_hw)
                      for j in set_joints},
            "gt_index": {canon[j]: j for j in set_joints} if canon else {},
        }
    return result


def _peaks(score_map: torch.Tensor, input_hw: tuple[int, int]) -> torch.Tensor:
    """(B, h, w) score map -> (B, 2) input-pixel (x, y) of each maximum (cell centres)."""
    b, h, w = score_map.shape
    flat = score_map.reshape(b, -1).argmax(dim=1)
    stride_y, stride_x = input_hw[0] / h, input_hw[1] / w
    return torch.stack(((flat % w).float() * stride_x + stride_x / 2, (flat // w).float() * stride_y + stride_y / 2), 1)


BODY_PARTS: dict[str, tuple[str, ...]] = {
    "head": ("nose", "eye", "ear", "head", "neck", "chin", "mouth"),
    "arm": ("shoulder", "elbow", "wrist", "hand", "paw"),
    "leg": ("hip", "knee", "ankle", "foot"),
    "trunk": ("pelvis", "thorax", "spine", "back", "tail"),
}


def body_part(joint: str) -> str:
    """Coarse body part of a joint name, comparable across species (``left_wrist`` -> ``arm``)."""
    name = canonical_joint_name(joint)
    for part, words in BODY_PARTS.items():
        if any(w in name for w in words):
            return part
    return "other"


def compute_embedding(joint_features: dict[str, dict[str, dict[str, Any]]], method: str = "pca",
                      seed: int = 0) -> dict[str, dict[str, Any]]:
    """2-D embedding of stage-4 joint features per network, over every annotated image set.

    Args:
        joint_features: image-set label -> network -> ``{"features": (N, C), "joints": [name] * N}``.
        method: ``pca`` (always available) or ``umap`` (needs the umap-learn package).

    Returns:
        network -> ``{"xy", "species", "joints", "parts", "silhouette_species", "silhouette_joint",
        "silhouette_part"}``; the silhouettes (cosine, in the full feature space) say how much the
        features separate by species, by joint and by body part (head, arm, leg, trunk, the same
        across species): near 1 well apart, near 0 mixed.
    """
    from sklearn.metrics import silhouette_score

    networks = list(dict.fromkeys(n for per_net in joint_features.values() for n in per_net))
    out: dict[str, dict[str, Any]] = {}
    for name in networks:
        parts = [(label, per_net[name]) for label, per_net in joint_features.items()
                 if name in per_net and len(per_net[name]["joints"])]
        if not parts:
            continue
        x = np.concatenate([p["features"] for _, p in parts]).astype(np.float64)
        species = [label for label, p in parts for _ in p["joints"]]
        joints = [j for _, p in parts for j in p["joints"]]
        if method == "umap":
            try:
                import umap  # type: ignore[import-not-found]
            except ImportError:
                raise ConfigError("--embedding umap needs the umap-learn package; use --embedding pca") from None
            xy = umap.UMAP(n_components=2, random_state=seed).fit_transform(x)
        else:
            centred = x - x.mean(axis=0)
            _, _, vt = np.linalg.svd(centred, full_matrices=False)
            xy = centred @ vt[:2].T
        parts_of = [body_part(j) for j in joints]
        entry: dict[str, Any] = {"xy": np.asarray(xy), "species": species, "joints": joints, "parts": parts_of,
                                 "points": len(joints)}
        for key, labels in (("silhouette_species", species), ("silhouette_joint", joints),
                            ("silhouette_part", parts_of)):
            k = len(set(labels))
            entry[key] = (_finite(float(silhouette_score(x, labels, metric="cosine", random_state=seed,
                                                         sample_size=min(len(labels), 2000))))
                          if 1 < k < len(labels) else None)
        out[name] = entry
    return out
