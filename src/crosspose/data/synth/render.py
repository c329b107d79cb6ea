"""Drawing synthetic samples: cluttered background, textured figures, occluders, lighting, labels.

One image is made from one random generator seeded by ``(seed, index)``, so a sample depends only
on those two numbers (any worker can render any index). Everything is drawn with cv2 into a part-id
map first; colours, textures and shading are then looked up per pixel with numpy, and the same id
map decides occlusion and the silhouettes, so labels always agree with the pixels.

Labelling rules (see also :func:`render_sample`):

* a joint outside the image is not labelled (MPII: left out of ``annopoints``; MacaquePose: null);
* humans (MPII): every joint inside the image is annotated; ``visible`` is False when the pixel at
  the joint shows another part of the figure, another figure or a foreground occluder;
* macaques (MacaquePose, no visibility flag): a joint hidden by another figure or an occluder is
  null, a face point (nose, eyes, ears) turned away from the camera is null; a limb joint hidden
  only by the monkey's own body keeps its position, as annotators place such joints.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from crosspose.data.synth.figures import Figure, Part, human_figure, macaque_figure, rotation

__all__ = ["RenderedFigure", "Sample", "render_sample", "sample_rng"]

SPECIES = ("human", "macaque")
_SHIFT = 4  # cv2 fixed-point bits: sub-pixel placement of shapes
_ONE = 1 << _SHIFT
_OCCLUDER = 255  # owner code of foreground occluders
_SELF_MARGIN = 0.05  # figure units (about a limb's radius): how far in front a part must be to hide a joint
# texture codes
_PLAIN, _FUR, _STRIPES, _CHECKS, _SKIN = 0, 1, 2, 3, 4


@dataclass
class RenderedFigure:
    """Ground truth of one figure as drawn.

    Attributes:
        keypoints: ``(K, 2)`` 0-based pixel positions (rounded to 0.01 px, as written), also outside
            the image.
        labelled: ``(K,)`` whether the release file gives the joint a position.
        visible: ``(K,)`` whether the joint is seen (MPII ``is_visible``).
        mask: ``(H, W)`` bool silhouette of the figure's visible pixels.
        head_box: ``(x1, y1, x2, y2)`` box around the drawn head (0-based pixels).
        height_px: standing height of the figure in pixels (MPII ``scale`` * 200).
        center: centre of the figure's extent (MPII ``objpos``).
        pose: the pose family.
    """

    keypoints: np.ndarray
    labelled: np.ndarray
    visible: np.ndarray
    mask: np.ndarray
    head_box: tuple[float, float, float, float]
    height_px: float
    center: tuple[float, float]
    pose: str


@dataclass
class Sample:
    """One rendered image (RGB, uint8) and its figures."""

    species: str
    image: np.ndarray
    figures: list[RenderedFigure]


def sample_rng(species: str, seed: int, index: int) -> np.random.Generator:
    """The generator of image ``index``: independent of every other index and of the worker count."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index), SPECIES.index(species)]))


# -------------------------------------------------------------------------------------- geometry


@dataclass
class _Placed:
    fig: Figure
    xy: dict[str, np.ndarray]  # 2-D pixel positions
    depth: dict[str, float]
    scale: float  # pixels per figure unit
    rot: np.ndarray  # 3x3 view rotation (for face normals)


def _view(species: str, pose: str, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Camera rotation and in-plane roll (radians): humans mostly frontal and upright."""
    if species == "human":
        u = rng.random()
        yaw = rng.normal(0, 35) if u < 0.6 else (rng.choice([-1, 1]) * rng.uniform(60, 120) if u < 0.85
                                                 else rng.uniform(140, 220))
        pitch = rng.uniform(-15, 15)
        roll = rng.normal(0, 8) if rng.random() > 0.07 else rng.uniform(-90, 90)
    else:
        # photographs favour monkeys turned towards the camera
        yaw = rng.normal(0, 50) if rng.random() < 0.65 else rng.uniform(-180, 180)
        pitch = rng.uniform(-20, 30)
        roll = rng.normal(0, 15) if rng.random() > 0.1 else rng.uniform(-90, 90)
    rot = rotation(np.array([1.0, 0, 0]), np.radians(pitch)) @ rotation(np.array([0, 1.0, 0]), np.radians(yaw))
    return rot, float(np.radians(roll))


def _extent(fig: Figure, xy: dict[str, np.ndarray], unit: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Bounding box of every drawn part (centres grown by their radii times ``unit``), in ``xy``'s units."""
    pts, rad = [], []
    for p in fig.parts:
        names = p.corners if p.kind == "quad" else (p.a, p.b)
        radii = (0.0,) * 4 if p.kind == "quad" else (p.ra, p.rb)
        pts += [xy[n] for n in names]
        rad += list(radii)
    pts_a, rad_a = np.array(pts), np.array(rad)[:, None] * unit
    return (pts_a - rad_a).min(0), (pts_a + rad_a).max(0)


def _place(fig: Figure, rng: np.random.Generator, size: int, fraction: float) -> _Placed:
    """Rotate, project, scale and position one figure; sometimes let it run off the image."""
    rot, roll = _view(fig.species, fig.pose, rng)
    names = list(fig.points)
    p3 = np.array([fig.points[n] for n in names]) @ rot.T
    c, s = np.cos(roll), np.sin(roll)
    r2 = np.array([[c, -s], [s, c]])
    p2 = np.stack([p3[:, 0], -p3[:, 1]], 1) @ r2.T
    xy_unit = dict(zip(names, p2, strict=True))
    lo, hi = _extent(fig, xy_unit)
    scale = fraction * size / float(max(hi - lo))
    half = (hi - lo) * scale / 2
    slack = half * 0.7 if rng.random() < 0.2 else np.zeros(2)  # 20%: partly outside the image
    centre = np.empty(2)
    for d in range(2):
        a, b = sorted((half[d] - slack[d], size - half[d] + slack[d]))
        centre[d] = rng.uniform(a, b)
    offset = centre - (lo + hi) / 2 * scale
    xy = {n: v * scale + offset for n, v in xy_unit.items()}
    depth = {n: float(z) for n, z in zip(names, p3[:, 2], strict=True)}
    return _Placed(fig, xy, depth, scale, rot)


def _fix(p: np.ndarray) -> tuple[int, int]:
    return int(round(p[0] * _ONE)), int(round(p[1] * _ONE))


def _draw_part(canvas: np.ndarray, part: Part, pl: _Placed, value: int) -> None:
    """Fill one part with ``value``: a tapered capsule (two discs and the band between) or a quad."""
    xy, s = pl.xy, pl.scale
    if part.kind == "quad":
        quad = np.array([[_fix(xy[n]) for n in part.corners]], dtype=np.int32)
        cv2.fillConvexPoly(canvas, cv2.convexHull(quad), value, cv2.LINE_8, _SHIFT)
        return
    a, b = xy[part.a], xy[part.b]
    ra, rb = part.ra * s, part.rb * s
    cv2.circle(canvas, _fix(a), int(ra * _ONE), value, -1, cv2.LINE_8, _SHIFT)
    d = b - a
    n = float(np.hypot(*d))
    if n > 1e-6:
        cv2.circle(canvas, _fix(b), int(rb * _ONE), value, -1, cv2.LINE_8, _SHIFT)
        perp = np.array([-d[1], d[0]]) / n
        quad = np.array([[_fix(a + perp * ra), _fix(b + perp * rb), _fix(b - perp * rb), _fix(a - perp * ra)]],
                        dtype=np.int32)
        cv2.fillConvexPoly(canvas, quad, value, cv2.LINE_8, _SHIFT)


# ------------------------------------------------------------------------------------- appearance


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    """An RGB colour in 0..1 from hue in degrees."""
    px = np.array([[[h / 2, s * 255, v * 255]]], dtype=np.float32).clip(0, 255).astype(np.uint8)
    return cv2.cvtColor(px, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32) / 255


_SKIN_TONES = np.array([[255, 224, 196], [234, 192, 160], [224, 172, 105], [198, 134, 66],
                        [141, 85, 36], [90, 56, 37]], dtype=np.float32) / 255


def _materials(species: str, rng: np.random.Generator) -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
    """Role -> (colour, second colour, texture code) for one figure."""
    u = rng.uniform
    if species == "human":
        skin = (_SKIN_TONES[rng.integers(len(_SKIN_TONES))] * u(0.9, 1.1, 3)).astype(np.float32).clip(0, 1)
        hair = _hsv(u(10, 40), u(0.2, 0.7), u(0.05, 0.6)) if rng.random() < 0.85 else _hsv(0, 0, u(0.6, 0.9))
        shirt = _hsv(u(0, 360), u(0.2, 1.0), u(0.2, 1.0))
        shirt2 = _hsv(u(0, 360), u(0.0, 1.0), u(0.1, 1.0))
        pants = [_hsv(u(200, 230), u(0.4, 0.8), u(0.25, 0.6)), _hsv(0, 0, u(0.05, 0.5)),
                 _hsv(u(25, 45), u(0.2, 0.5), u(0.4, 0.75)), _hsv(u(0, 360), u(0.2, 0.9), u(0.2, 0.9))]
        pant = pants[rng.integers(len(pants))]
        shirt_tex = int(rng.choice([_PLAIN, _STRIPES, _CHECKS], p=[0.55, 0.3, 0.15]))
        return {"skin": (skin, skin, _SKIN), "hair": (hair, hair, _FUR), "shirt": (shirt, shirt2, shirt_tex),
                "trousers": (pant, pant * 0.8, _PLAIN), "eye": (_hsv(0, 0, u(0.05, 0.2)),) * 2 + (_PLAIN,), "shoe": (_hsv(u(0, 40), u(0, 0.5), u(0.05, 0.4)),) * 2
                + (_PLAIN,)}
    fur = _hsv(u(15, 45), u(0.2, 0.65), u(0.3, 0.8))
    face = _hsv(u(-10, 20) % 360, u(0.25, 0.55), u(0.55, 0.9))
    hand = face * u(0.45, 0.8)
    return {"fur": (fur, fur * u(0.5, 0.8), _FUR), "face": (face, face, _SKIN), "hand": (hand, hand, _SKIN),
            "eye": (np.array([0.12, 0.09, 0.07], np.float32),) * 2 + (_PLAIN,)}


def _noise_field(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth noise in about -1..1: random cells upsampled."""
    small = rng.uniform(-1, 1, (cells, cells)).astype(np.float32)
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)


def _dull(rng: np.random.Generator, rgb: np.ndarray) -> np.ndarray:
    """Pull random colours part of the way to grey: real scenes are rarely fully saturated."""
    grey = rgb.mean(axis=-1, keepdims=True)
    return grey + (rgb - grey) * rng.uniform(0.25, 1.0)


def _background(rng: np.random.Generator, size: int, species: str) -> np.ndarray:
    """Cluttered RGB uint8 background: colour field, flat shapes, limb-like distractor sticks."""
    cells = int(rng.integers(2, 6))
    base = cv2.resize(_dull(rng, rng.uniform(0, 255, (cells, cells, 3))).astype(np.float32), (size, size),
                      interpolation=cv2.INTER_CUBIC)
    img = np.ascontiguousarray(base.clip(0, 255).astype(np.uint8))
    for _ in range(int(rng.integers(6, 30))):
        colour = tuple(int(c) for c in _dull(rng, rng.uniform(0, 255, 3)))
        kind = rng.random()
        c = tuple(int(v) for v in rng.integers(-size // 8, size + size // 8, 2))
        if kind < 0.25:
            w, h = (int(v) for v in rng.integers(size // 20, size // 2, 2))
            cv2.rectangle(img, c, (c[0] + w, c[1] + h), colour, -1)
        elif kind < 0.45:
            axes = tuple(int(v) for v in rng.integers(size // 30, size // 5, 2))
            cv2.ellipse(img, c, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1, cv2.LINE_AA)
        elif kind < 0.65:
            e = tuple(int(v) for v in rng.integers(-size // 8, size + size // 8, 2))
            cv2.line(img, c, e, colour, int(rng.integers(1, max(2, size // 25))), cv2.LINE_AA)
        elif kind < 0.8:
            pts = (np.array(c) + rng.normal(0, size / 8, (int(rng.integers(3, 7)), 2))).astype(np.int32)
            cv2.fillPoly(img, [pts], colour, cv2.LINE_AA)
        else:  # a jointed stick: looks like a limb, is not one
            p = np.array(c, dtype=np.float64)
            width = int(rng.integers(max(2, size // 60), max(3, size // 18)))
            ang = rng.uniform(0, 2 * np.pi)
            for _seg in range(int(rng.integers(1, 4))):
                q = p + rng.uniform(size / 12, size / 5) * np.array([np.cos(ang), np.sin(ang)])
                cv2.line(img, tuple(int(v) for v in p), tuple(int(v) for v in q), colour, width, cv2.LINE_AA)
                p, ang = q, ang + rng.uniform(-1.5, 1.5)
    if rng.random() < 0.5:
        k = int(rng.choice([3, 5]))
        img = cv2.GaussianBlur(img, (k, k), 0)
    return img


def _occluders(rng: np.random.Generator, ids: np.ndarray, size: int, first_id: int,
               placed: list[_Placed]) -> dict[int, tuple[np.ndarray, np.ndarray, int]]:
    """Foreground objects (bars, branches, blobs) over part of a figure; return their materials."""
    mats: dict[int, tuple[np.ndarray, np.ndarray, int]] = {}
    for i in range(int(rng.integers(1, 3))):
        value = first_id + i
        pl = placed[int(rng.integers(len(placed)))]
        target = np.array(list(pl.xy.values()))[int(rng.integers(len(pl.xy)))]  # near some body point
        centre = target + rng.normal(0, size * 0.08, 2)
        if rng.random() < 0.6:  # a bar or branch across the figure
            ang = rng.uniform(0, np.pi)
            d = np.array([np.cos(ang), np.sin(ang)]) * size
            width = float(rng.uniform(0.03, 0.09) * size)
            cv2.line(ids, _fix(centre - d), _fix(centre + d), value, max(1, int(width)), cv2.LINE_8, _SHIFT)
        else:
            axes = tuple(int(v) for v in rng.uniform(0.05, 0.15, 2) * size)
            cv2.ellipse(ids, tuple(int(v) for v in centre), axes, float(rng.uniform(0, 180)), 0, 360, value, -1)
        colour = _hsv(float(rng.uniform(0, 360)), float(rng.uniform(0, 0.8)), float(rng.uniform(0.15, 0.9)))
        mats[value] = (colour, colour * 0.7, int(rng.choice([_PLAIN, _STRIPES, _FUR])))
    return mats


# ------------------------------------------------------------------------------------------ render


def render_sample(species: str, seed: int, index: int, size: int = 256) -> Sample:
    """Render image ``index`` of the set ``(species, seed)`` at ``size`` x ``size`` pixels.

    One figure per image, two in 15% of images (they may overlap). 20% of figures are placed partly
    outside the image; 30% of images get one or two foreground occluders over a figure.
    """
    if species not in SPECIES:
        raise ValueError(f"species must be one of {SPECIES}, not {species!r}")
    rng = sample_rng(species, seed, index)
    make = human_figure if species == "human" else macaque_figure
    n_fig = 2 if rng.random() < 0.15 else 1
    placed = [_place(make(rng), rng, size, float(rng.uniform(0.45, 0.95) if n_fig == 1 else rng.uniform(0.3, 0.65)))
              for _ in range(n_fig)]
    bg = _background(rng, size, species)
    for pl in placed:  # climbers hold a branch behind them
        if pl.fig.pose == "climb":
            hands = (pl.xy["left_wrist"] + pl.xy["right_wrist"] + pl.xy["left_ankle"] + pl.xy["right_ankle"]) / 4
            axis = pl.xy["thorax"] - pl.xy["pelvis"]
            axis = axis / (np.hypot(*axis) + 1e-9) * size * 2
            colour = tuple(float(c) * 255 for c in _hsv(rng.uniform(15, 40), rng.uniform(0.3, 0.7), rng.uniform(0.2, 0.5)))
            cv2.line(bg, _fix(hands - axis), _fix(hands + axis), colour, max(2, int(0.07 * pl.scale)),
                     cv2.LINE_AA, _SHIFT)

    ids = np.zeros((size, size), np.uint8)
    lut_c1 = np.zeros((256, 3), np.float32)
    lut_c2 = np.zeros((256, 3), np.float32)
    lut_tex = np.zeros(256, np.int64)
    lut_shade = np.ones(256, np.float32)
    lut_depth = np.zeros(256, np.float64)
    owner = np.zeros(256, np.int64)
    part_ids: list[list[tuple[Part, int]]] = []
    next_id = 1
    for f, pl in enumerate(placed):  # list order is depth order between figures: later is in front
        mats = _materials(species, rng)
        depth = [(np.mean([pl.depth[n] for n in (p.corners if p.kind == "quad" else (p.a, p.b))]) + p.layer, j)
                 for j, p in enumerate(pl.fig.parts)]
        drawn = []
        for z, j in sorted(depth):
            part = pl.fig.parts[j]
            _draw_part(ids, part, pl, next_id)
            c1, c2, tex = mats[part.material]
            lut_c1[next_id], lut_c2[next_id], lut_tex[next_id] = c1, c2, tex
            lut_shade[next_id] = float(np.clip(1.0 + 0.9 * z + rng.normal(0, 0.04), 0.6, 1.3))
            owner[next_id] = f + 1
            lut_depth[next_id] = z - part.layer
            drawn.append((part, next_id))
            next_id += 1
        part_ids.append(drawn)
    if rng.random() < 0.3:
        for value, (c1, c2, tex) in _occluders(rng, ids, size, next_id, placed).items():
            lut_c1[value], lut_c2[value], lut_tex[value], owner[value] = c1, c2, tex, _OCCLUDER

    image = _shade(rng, ids, bg, lut_c1, lut_c2, lut_tex, lut_shade, size)
    owners = owner[ids]
    figures = [_label(species, pl, drawn, ids, owners == f + 1, lut_depth, size) for f, (pl, drawn)
               in enumerate(zip(placed, part_ids, strict=True))]
    return Sample(species, image, figures)


@functools.lru_cache(maxsize=4)
def _noise_bank(size: int) -> dict[str, np.ndarray]:
    """Noise textures twice the image size, made once per process from a fixed seed.

    Each image takes a window at a random offset: as random as fresh noise for our purpose, at a
    fraction of the cost, and still a function of ``(seed, index)`` only.
    """
    rng = np.random.default_rng(20240611)
    n = 2 * size
    grain = rng.standard_normal((n, n), dtype=np.float32)
    return {
        "sensor": rng.standard_normal((n, n, 3), dtype=np.float32),
        "strands_h": cv2.blur(grain, (5, 1)) * 1.6,
        "strands_v": cv2.blur(grain, (1, 5)) * 1.6,
    }


def _window(bank: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    y, x = (int(v) for v in rng.integers(0, size, 2))
    return bank[y:y + size, x:x + size]


def _shade(rng: np.random.Generator, ids: np.ndarray, bg: np.ndarray, lut_c1: np.ndarray, lut_c2: np.ndarray,
           lut_tex: np.ndarray, lut_shade: np.ndarray, size: int) -> np.ndarray:
    """Colour the id map with textures and edge shading, lay it over ``bg``, then light and add noise.

    Per-pixel work is table look-ups (``np.take``) on the id map; the second colour of striped or
    checked parts is addressed by setting bit 7 of the id (ids stay below 128).
    """
    bank = _noise_bank(size)
    tex = np.take(lut_tex, ids)
    yy = np.arange(size, dtype=np.float32)[:, None]
    xx = np.arange(size, dtype=np.float32)[None, :]
    if np.any((lut_tex == _STRIPES) | (lut_tex == _CHECKS)):
        ang = rng.uniform(0, np.pi)
        freq = 2.0 / (float(rng.uniform(4, 14)) * size / 256)
        band = ((xx * (np.cos(ang) * freq) + yy * (np.sin(ang) * freq) + 4 * size).astype(np.int32) & 1)
        band2 = ((xx * (-np.sin(ang) * freq) + yy * (np.cos(ang) * freq) + 4 * size).astype(np.int32) & 1)
        second = ((tex == _STRIPES) & (band == 1)) | ((tex == _CHECKS) & ((band ^ band2) == 1))
        ids = ids | (second.astype(np.uint8) << 7)
    lut = np.concatenate([lut_c1[:128], lut_c2[:128]]) * np.concatenate([lut_shade[:128]] * 2)[:, None] * 255
    colour = np.take(lut, ids, axis=0)
    # fur: fine strands (noise smeared along one direction) over coarse patches; others: faint mottling
    strands = _window(bank["strands_h" if rng.random() < 0.5 else "strands_v"], rng, size)
    patches = _noise_field(rng, size, 12)
    fur = np.take((lut_tex == _FUR).astype(np.float32), ids & 127)
    gain = 1.0 + fur * (0.35 * strands + 0.07 * patches) + 0.05 * patches
    # outlines and rounded-looking parts: darken near every boundary between ids
    dx = (ids[:, 1:] != ids[:, :-1]).astype(np.float32)
    dy = (ids[1:, :] != ids[:-1, :]).astype(np.float32)
    edge = np.zeros((size, size), np.float32)
    edge[:, 1:] += dx
    edge[:, :-1] += dx
    edge[1:, :] += dy
    edge[:-1, :] += dy
    edge = cv2.blur(np.minimum(edge, 1.0), (3, 3))
    gain *= 1.0 - 0.5 * edge
    background = (ids == 0).astype(np.float32)
    out = colour * gain[..., None] + bg.astype(np.float32) * background[..., None]
    # lighting: a gradient across the image, a colour cast, contrast; then blur and sensor noise
    light = 1.0 + rng.uniform(-0.4, 0.4) * (xx / size - 0.5) + rng.uniform(-0.4, 0.4) * (yy / size - 0.5)
    cast = rng.uniform(0.88, 1.12, 3).astype(np.float32) * np.float32(rng.uniform(0.6, 1.3))
    out *= light[..., None]
    out *= cast
    out = cv2.GaussianBlur(out, (0, 0), float(rng.uniform(0.3, 1.1)))
    out += _window(bank["sensor"], rng, size) * np.float32(rng.uniform(1, 8))
    return out.clip(0, 255).astype(np.uint8)


def _label(species: str, pl: _Placed, drawn: list[tuple[Part, int]], ids: np.ndarray, mask: np.ndarray,
           lut_depth: np.ndarray, size: int) -> RenderedFigure:
    """Keypoints, labels and visibility of one figure, read off the id map (see the module rules).

    A joint is hidden by its own figure only when the covering part lies clearly in front of it
    (by more than :data:`_SELF_MARGIN`): parts that merely overlap at a junction, like the tops of
    the thighs over the pelvis, do not hide it.
    """
    fig = pl.fig
    kps = np.round(np.array([pl.xy[n] for n in fig.keypoints], dtype=np.float64), 2)
    k = len(fig.keypoints)
    inside = (kps[:, 0] >= 0) & (kps[:, 0] <= size - 1) & (kps[:, 1] >= 0) & (kps[:, 1] <= size - 1)
    own_ids: list[set[int]] = [set() for _ in range(k)]
    fig_ids = {v for _, v in drawn}
    for part, v in drawn:
        for j in part.joints:
            own_ids[j].add(v)
    visible = np.zeros(k, bool)
    by_other = np.zeros(k, bool)
    for j in np.flatnonzero(inside):
        x, y = int(round(kps[j, 0])), int(round(kps[j, 1]))
        v = int(ids[min(y, size - 1), min(x, size - 1)])
        in_front = lut_depth[v] > pl.depth[fig.keypoints[j]] + _SELF_MARGIN
        visible[j] = v == 0 or v in own_ids[j] or (v in fig_ids and not in_front)
        by_other[j] = v != 0 and v not in fig_ids
    if species == "human":
        labelled = inside
    else:
        facing = np.ones(k, bool)
        for j, normal in fig.face.items():
            facing[j] = float((pl.rot @ normal)[2]) > -0.15
        labelled = inside & ~by_other & facing
        visible &= facing
    visible &= labelled
    head_pts = [(pl.xy[n], r * pl.scale) for p in fig.parts for n, r in ((p.a, p.ra), (p.b, p.rb))
                if n in fig.head and p.kind == "capsule"]
    lo = np.min([c - r for c, r in head_pts], 0) if head_pts else kps.min(0)
    hi = np.max([c + r for c, r in head_pts], 0) if head_pts else kps.max(0)
    e_lo, e_hi = _extent(fig, pl.xy, pl.scale)
    centre = (e_lo + e_hi) / 2
    return RenderedFigure(kps, labelled, visible, mask, (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])),
                          float(fig.height * pl.scale), (float(centre[0]), float(centre[1])), fig.pose)
