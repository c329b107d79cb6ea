"""Skeleton kinematics of the synthetic figures: a human and a macaque built from the same parts.

Both species are posed in 3-D with the same limb model (upper segment, lower segment, hand or foot
as capsules whose joints sit at the segment junctions), so that what a network learns about limbs on
one species carries over to the other. They differ in proportions (long legs and an upright trunk for
humans; a long horizontal trunk, short neck, long arms and a tail for macaques), in pose
distributions (mostly upright humans; quadruped, sitting and climbing macaques) and in the head
(a round head with hair and a head box for humans; a face with eyes, ears and muzzle for macaques).

Figure frame: ``x`` points to the subject's own LEFT, ``y`` up, ``z`` forward (where the figure
faces). The renderer rotates it to the camera (which looks along ``-z``, so an unrotated figure
faces the camera and its left appears on the image's right), projects orthographically and sorts
parts by depth.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from crosspose.core.skeletons import MACAQUE, MPII

__all__ = ["HUMAN_POSES", "MACAQUE_POSES", "Figure", "Part", "human_figure", "macaque_figure", "rotation"]

X = np.array([1.0, 0.0, 0.0])
Y = np.array([0.0, 1.0, 0.0])
Z = np.array([0.0, 0.0, 1.0])


@dataclass(frozen=True)
class Part:
    """One drawn piece of a figure.

    Attributes:
        a, b: names of the capsule's end points (equal for a disc).
        ra, rb: radii at the two ends, in figure units (standing human = 1).
        material: role the renderer colours (``"shirt"``, ``"fur"``, ``"face"``, ...).
        joints: keypoint indices this part carries: a joint covered only by one of its own parts
            is not occluded.
        layer: tie-breaker added to the depth so that e.g. eyes stay on top of the face.
        kind: ``"capsule"`` or ``"quad"`` (``a``/``b`` unused; ``corners`` gives four points).
    """

    a: str
    b: str
    ra: float
    rb: float
    material: str
    joints: tuple[int, ...] = ()
    layer: float = 0.0
    kind: str = "capsule"
    corners: tuple[str, ...] = ()


@dataclass
class Figure:
    """A posed figure in its own 3-D frame.

    Attributes:
        species: ``"human"`` or ``"macaque"``.
        pose: name of the pose family it was drawn from.
        points: named 3-D points (keypoints and construction points).
        keypoints: point names in the species' skeleton order (MPII or MACAQUE).
        parts: what to draw.
        height: standing height in figure units (MPII ``scale`` = height in pixels / 200).
        head: names of the points whose discs make the head (for the MPII head box).
        face: keypoint index -> outward normal of that face point; hidden when it faces away.
    """

    species: str
    pose: str
    points: dict[str, np.ndarray]
    keypoints: tuple[str, ...]
    parts: list[Part]
    height: float
    head: tuple[str, ...] = ()
    face: dict[int, np.ndarray] = field(default_factory=dict)


def rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    """3x3 right-handed rotation about ``axis`` by ``angle`` radians (Rodrigues)."""
    k = np.asarray(axis, dtype=np.float64)
    k = k / np.linalg.norm(k)
    kx = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + np.sin(angle) * kx + (1.0 - np.cos(angle)) * (kx @ kx)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _limb_dir(flex: float, abd: float, side: int) -> np.ndarray:
    """Direction of an upper limb segment: hanging down, swung forward by ``flex`` and out by ``abd``.

    Degrees; ``side`` is +1 for the subject's left (+x), -1 for the right.
    """
    f, a = np.radians(flex), np.radians(abd)
    v = np.array([0.0, -np.cos(f), np.sin(f)])
    return rotation(Z, side * a) @ v


def _bend(upper: np.ndarray, hint: np.ndarray, angle: float) -> np.ndarray:
    """Lower segment: ``upper`` turned by ``angle`` degrees towards ``hint`` (the way the joint bends)."""
    axis = np.cross(upper, hint)
    if np.linalg.norm(axis) < 1e-3:  # hint along the limb: any perpendicular will do
        axis = np.cross(upper, X if abs(upper[0]) < 0.9 else Y)
    return rotation(axis, np.radians(angle)) @ upper


def _add_limb(
    pts: dict[str, np.ndarray], parts: list[Part], root: str, names: tuple[str, str, str],
    lengths: tuple[float, float, float], radii: tuple[float, float, float, float],
    upper: np.ndarray, lower: np.ndarray, end: np.ndarray, materials: tuple[str, str, str],
    joints: tuple[int, int, int],
) -> None:
    """Add upper segment, lower segment and hand/foot: root -> mid -> end -> tip.

    Both species use this one function, so their limbs look alike: tapered capsules meeting at the
    joints, a knuckle-like overlap at each junction.
    """
    mid, tip_joint, tip = names
    pts[mid] = pts[root] + lengths[0] * upper
    pts[tip_joint] = pts[mid] + lengths[1] * lower
    pts[tip] = pts[tip_joint] + lengths[2] * end
    j_root, j_mid, j_end = joints
    parts.append(Part(root, mid, radii[0], radii[1], materials[0], (j_root, j_mid)))
    parts.append(Part(mid, tip_joint, radii[1] * 0.85, radii[2], materials[1], (j_mid, j_end)))
    parts.append(Part(tip_joint, tip, radii[2] * 1.05, radii[3], materials[2], (j_end,), layer=-0.002))


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


# ------------------------------------------------------------------------------------------- humans

HUMAN_POSES: dict[str, float] = {
    "stand": 0.22, "walk": 0.18, "run": 0.10, "gesture": 0.18,
    "sit": 0.08, "crouch": 0.06, "bend": 0.06, "sport": 0.12,
}
"""Human pose families and their probabilities: mostly upright, as in MPII."""


def _human_angles(pose: str, rng: np.random.Generator) -> dict[str, float | tuple[float, float]]:
    """Joint angles (degrees) per pose family: lean, per-side leg and arm angles."""
    u = lambda lo, hi: _u(rng, lo, hi)  # noqa: E731
    arm = lambda: (u(-15, 35), u(5, 30), u(0, 70))  # noqa: E731  flex, abd, elbow
    leg = lambda: (u(-8, 12), u(0, 10), u(0, 15))  # noqa: E731  flex, abd, knee
    lean = float(rng.normal(0, 5))
    if pose == "walk":
        s = u(10, 35)
        legs = [(s, u(0, 8), u(0, 20)), (-s, u(0, 8), u(10, 40))]
        a = u(10, 40)
        arms = [(-a, u(0, 15), u(10, 60)), (a, u(0, 15), u(10, 70))]
        lean = u(0, 10)
    elif pose == "run":
        legs = [(u(30, 75), u(0, 10), u(40, 100)), (u(-35, -5), u(0, 10), u(40, 115))]
        arms = [(u(-60, -20), u(0, 20), u(70, 110)), (u(20, 70), u(0, 20), u(70, 110))]
        lean = u(5, 20)
    elif pose == "gesture":
        legs = [leg(), leg()]
        arms = [(u(-30, 180), u(0, 170), u(0, 140)) for _ in range(2)]
    elif pose == "sit":
        legs = [(u(70, 100), u(0, 25), u(60, 110)) for _ in range(2)]
        arms = [(u(0, 70), u(0, 25), u(20, 110)) for _ in range(2)]
        lean = u(-10, 15)
    elif pose == "crouch":
        legs = [(u(90, 130), u(10, 35), u(100, 145)) for _ in range(2)]
        arms = [(u(0, 90), u(0, 30), u(0, 100)) for _ in range(2)]
        lean = u(15, 45)
    elif pose == "bend":
        legs = [(u(-5, 15), u(0, 15), u(0, 20)) for _ in range(2)]
        arms = [(u(30, 110), u(0, 25), u(0, 60)) for _ in range(2)]
        lean = u(40, 90)
    elif pose == "sport":
        legs = [(u(-35, 70), u(10, 50), u(0, 100)) for _ in range(2)]
        arms = [(u(-40, 180), u(10, 150), u(0, 130)) for _ in range(2)]
        lean = float(rng.normal(0, 12))
    else:  # stand
        legs = [leg(), leg()]
        arms = [arm(), arm()]
    if rng.random() < 0.5:  # which side takes the first draw
        legs, arms = legs[::-1], arms[::-1]
    return {"lean": lean, "side_lean": float(rng.normal(0, 4)), "twist": float(rng.normal(0, 12)),
            "legs": legs, "arms": arms}


def human_figure(rng: np.random.Generator, pose: str | None = None) -> Figure:
    """A human with MPII joints, standing height 1, in a pose drawn from :data:`HUMAN_POSES`."""
    if pose is None:
        pose = str(rng.choice(list(HUMAN_POSES), p=list(HUMAN_POSES.values())))
    k = {n: i for i, n in enumerate(MPII.keypoints)}
    ang = _human_angles(pose, rng)
    build = _u(rng, 0.85, 1.2)  # slim .. broad
    long_sleeves, shorts = rng.random() < 0.5, rng.random() < 0.3

    pts: dict[str, np.ndarray] = {"pelvis": np.zeros(3)}
    body = (rotation(Y, np.radians(ang["twist"])) @ rotation(Z, np.radians(ang["side_lean"]))
            @ rotation(X, np.radians(ang["lean"])))  # type: ignore[arg-type]
    spine = body @ Y
    pts["thorax"] = pts["pelvis"] + 0.30 * spine
    neck_dir = _unit(spine + 0.15 * body @ Z)
    pts["upper_neck"] = pts["thorax"] + 0.07 * neck_dir
    head_rot = rotation(Y, np.radians(rng.normal(0, 25))) @ rotation(X, np.radians(rng.normal(0, 15)))
    head_up = _unit(body @ head_rot @ Y)
    face = _unit(body @ head_rot @ Z)
    head_r = 0.06
    pts["head_low"] = pts["upper_neck"] + 0.045 * head_up
    pts["head_high"] = pts["upper_neck"] + 0.075 * head_up
    pts["head_top"] = pts["head_high"] + head_r * head_up
    pts["hair"] = pts["head_high"] - 0.02 * face + 0.004 * head_up
    head_left = np.cross(head_up, face)
    for side, name in ((1, "left"), (-1, "right")):  # eyes show which way the face is turned
        pts[f"{name}_eye"] = pts["head_high"] + 0.052 * face - 0.005 * head_up + side * 0.022 * head_left
    for side, name in ((1, "left"), (-1, "right")):
        pts[f"{name}_hip"] = pts["pelvis"] + side * 0.06 * X
        pts[f"{name}_hip_out"] = pts["pelvis"] + side * 0.095 * build * X + 0.02 * spine
        pts[f"{name}_shoulder"] = pts["thorax"] + body @ (side * 0.105 * build * X - 0.01 * Y)
        pts[f"{name}_shoulder_out"] = pts["thorax"] + body @ (side * 0.13 * build * X - 0.02 * Y)

    parts: list[Part] = [
        Part("", "", 0, 0, "shirt", (k["thorax"], k["left_shoulder"], k["right_shoulder"], k["pelvis"]),
             layer=-0.02, kind="quad",
             corners=("left_shoulder_out", "right_shoulder_out", "right_hip_out", "left_hip_out")),
        Part("pelvis", "thorax", 0.085 * build, 0.095 * build, "shirt",
             (k["pelvis"], k["thorax"]), layer=-0.02),
        Part("left_hip", "right_hip", 0.075 * build, 0.075 * build, "trousers",
             (k["left_hip"], k["right_hip"], k["pelvis"]), layer=-0.015),
        Part("thorax", "upper_neck", 0.03, 0.028, "skin", (k["thorax"], k["upper_neck"]), layer=-0.03),
        Part("hair", "hair", head_r * 1.04, head_r * 1.04, "hair", (k["head_top"], k["upper_neck"])),
        Part("head_low", "head_high", head_r * 0.92, head_r, "skin", (k["head_top"], k["upper_neck"])),
        Part("left_eye", "left_eye", 0.008, 0.008, "eye", layer=0.01),
        Part("right_eye", "right_eye", 0.008, 0.008, "eye", layer=0.01),
    ]
    for (side, name), leg, arm in zip(((1, "left"), (-1, "right")), ang["legs"], ang["arms"], strict=True):  # type: ignore[arg-type]
        flex, abd, knee = leg
        thigh = _limb_dir(flex, abd, side)
        shin = _bend(thigh, -Z, knee)
        foot = _bend(shin, Z, _u(rng, 70, 100))
        _add_limb(pts, parts, f"{name}_hip", (f"{name}_knee", f"{name}_ankle", f"{name}_toe"),
                  (0.245, 0.245, 0.07), (0.058 * build, 0.042, 0.031, 0.022), thigh, shin, foot,
                  ("trousers", "skin" if shorts else "trousers", "shoe"),
                  (k[f"{name}_hip"], k[f"{name}_knee"], k[f"{name}_ankle"]))
        flex, abd, elbow = arm
        upper = body @ _limb_dir(flex, abd, side)
        hint = body @ _unit(np.array([side * _u(rng, -0.6, 0.4), _u(rng, -0.3, 0.8), 1.0]))
        fore = _bend(upper, hint, elbow)
        hand = _bend(fore, hint, _u(rng, -20, 30))
        _add_limb(pts, parts, f"{name}_shoulder", (f"{name}_elbow", f"{name}_wrist", f"{name}_hand"),
                  (0.175, 0.155, 0.065), (0.037 * build, 0.03, 0.023, 0.02), upper, fore, hand,
                  ("shirt", "shirt" if long_sleeves else "skin", "skin"),
                  (k[f"{name}_shoulder"], k[f"{name}_elbow"], k[f"{name}_wrist"]))
    return Figure("human", pose, pts, MPII.keypoints, parts, height=1.0, head=("hair", "head_low", "head_high"))


# ------------------------------------------------------------------------------------------ macaques

MACAQUE_POSES: dict[str, float] = {"quadruped": 0.4, "sit": 0.35, "climb": 0.25}
"""Macaque pose families and their probabilities."""


def _macaque_angles(pose: str, rng: np.random.Generator) -> dict:
    u = lambda lo, hi: _u(rng, lo, hi)  # noqa: E731
    if pose == "quadruped":
        s = u(0, 25)
        arms = [(s, u(0, 15), u(0, 35)), (-s, u(0, 15), u(0, 35))]
        legs = [(u(15, 60), u(0, 20), u(40, 100)) for _ in range(2)]
        return {"pitch": u(-10, 20), "arms": arms, "legs": legs, "head_up": 0.35}
    if pose == "sit":
        arms = [(u(-10, 80), u(0, 30), u(0, 110)) for _ in range(2)]
        legs = [(u(60, 110), u(15, 50), u(90, 150)) for _ in range(2)]
        return {"pitch": u(50, 90), "arms": arms, "legs": legs, "head_up": 0.6}
    arms = [(u(120, 180), u(10, 50), u(10, 80)), (u(30, 160), u(10, 60), u(10, 100))]
    legs = [(u(40, 110), u(25, 60), u(50, 120)) for _ in range(2)]
    if rng.random() < 0.5:
        arms = arms[::-1]
    return {"pitch": u(70, 100), "arms": arms, "legs": legs, "head_up": 0.5}


def macaque_figure(rng: np.random.Generator, pose: str | None = None) -> Figure:
    """A macaque with the 17 MacaquePose keypoints, in a pose drawn from :data:`MACAQUE_POSES`.

    Units match :func:`human_figure` (a macaque's trunk is about 0.36 of a standing human), so the
    renderer's scale choice, not the species, decides how big a figure appears.
    """
    if pose is None:
        pose = str(rng.choice(list(MACAQUE_POSES), p=list(MACAQUE_POSES.values())))
    k = {n: i for i, n in enumerate(MACAQUE.keypoints)}
    ang = _macaque_angles(pose, rng)
    build = _u(rng, 0.9, 1.15)
    pitch = np.radians(ang["pitch"])
    spine = np.array([0.0, np.sin(pitch), np.cos(pitch)])
    pts: dict[str, np.ndarray] = {"pelvis": np.zeros(3)}
    pts["thorax"] = 0.36 * spine
    neck_dir = _unit(spine + ang["head_up"] * Y + 0.3 * Z)
    pts["head"] = pts["thorax"] + 0.1 * neck_dir
    yaw = rng.normal(0, 35) if pose != "climb" else rng.uniform(-110, 110)
    head_rot = rotation(Y, np.radians(yaw)) @ rotation(X, np.radians(rng.normal(-5, 20)))
    face = _unit(head_rot @ Z)
    up = _unit(head_rot @ Y)
    left = np.cross(up, face)
    r = 0.075
    c = pts["head"]
    pts["face"] = c + 0.5 * r * face - 0.05 * r * up
    pts["muzzle"] = c + 0.8 * r * face - 0.3 * r * up
    pts["nose"] = c + 1.02 * r * face - 0.15 * r * up
    face_normals = {k["nose"]: face}
    for side, name in ((1, "left"), (-1, "right")):
        pts[f"{name}_eye"] = c + 0.8 * r * face + 0.25 * r * up + side * 0.36 * r * left
        pts[f"{name}_ear"] = c - 0.1 * r * face + 0.25 * r * up + side * 1.0 * r * left
        face_normals[k[f"{name}_eye"]] = _unit(0.8 * face + 0.25 * up + side * 0.45 * left)
        face_normals[k[f"{name}_ear"]] = _unit(-0.1 * face + side * left)
        pts[f"{name}_shoulder"] = pts["thorax"] + side * 0.07 * build * X - 0.02 * spine
        pts[f"{name}_hip"] = pts["pelvis"] + side * 0.055 * build * X + 0.02 * spine
    tail_dir = _unit(-spine - 0.6 * Y + rng.normal(0, 0.3, 3))
    pts["tail0"] = pts["pelvis"] - 0.05 * spine
    pts["tail1"] = pts["tail0"] + 0.11 * tail_dir
    pts["tail2"] = pts["tail1"] + 0.11 * _unit(tail_dir + rng.normal(0, 0.6, 3))

    parts: list[Part] = [
        Part("pelvis", "thorax", 0.08 * build, 0.09 * build, "fur",
             (k["left_hip"], k["right_hip"], k["left_shoulder"], k["right_shoulder"]), layer=-0.02),
        Part("tail0", "tail1", 0.022, 0.017, "fur", ()),
        Part("tail1", "tail2", 0.017, 0.01, "fur", ()),
        Part("thorax", "head", 0.05 * build, 0.045, "fur", (k["left_shoulder"], k["right_shoulder"]),
             layer=-0.03),
        Part("head", "head", r, r, "fur", (k["nose"], k["left_eye"], k["right_eye"], k["left_ear"],
                                           k["right_ear"])),
        Part("face", "face", 0.62 * r, 0.62 * r, "face", (k["nose"], k["left_eye"], k["right_eye"])),
        Part("muzzle", "muzzle", 0.4 * r, 0.4 * r, "face", (k["nose"],), layer=0.002),
    ]
    for name in ("left", "right"):
        parts.append(Part(f"{name}_ear", f"{name}_ear", 0.3 * r, 0.3 * r, "face", (k[f"{name}_ear"],)))
        parts.append(Part(f"{name}_eye", f"{name}_eye", 0.13 * r, 0.13 * r, "eye", (k[f"{name}_eye"],),
                          layer=0.004))
    for (side, name), leg, arm in zip(((1, "left"), (-1, "right")), ang["legs"], ang["arms"], strict=True):
        flex, abd, knee = leg
        thigh = _limb_dir(flex, abd, side)
        shin = _bend(thigh, -Z, knee)
        foot = _bend(shin, Z, _u(rng, 60, 100))
        _add_limb(pts, parts, f"{name}_hip", (f"{name}_knee", f"{name}_ankle", f"{name}_toe"),
                  (0.19, 0.19, 0.1), (0.055 * build, 0.04, 0.027, 0.02), thigh, shin, foot,
                  ("fur", "fur", "hand"), (k[f"{name}_hip"], k[f"{name}_knee"], k[f"{name}_ankle"]))
        flex, abd, elbow = arm
        upper = _limb_dir(flex, abd, side)
        hint = _unit(np.array([side * _u(rng, -0.5, 0.3), _u(rng, -0.2, 0.6), 1.0]))
        fore = _bend(upper, hint, elbow)
        hand = _bend(fore, hint, _u(rng, -10, 40))
        _add_limb(pts, parts, f"{name}_shoulder", (f"{name}_elbow", f"{name}_wrist", f"{name}_hand"),
                  (0.17, 0.17, 0.07), (0.04 * build, 0.031, 0.023, 0.019), upper, fore, hand,
                  ("fur", "fur", "hand"), (k[f"{name}_shoulder"], k[f"{name}_elbow"], k[f"{name}_wrist"]))
    return Figure("macaque", pose, pts, MACAQUE.keypoints, parts, height=0.55, head=("head",),
                  face=face_normals)
