"""Skeleton definitions: the one place that knows joint names, order, flip pairs and limbs.

MPII follows the official joint ids (0 r_ankle ... 15 l_wrist) with mmpose's spelled-out names, so
that the 12 limb joints MPII shares with MacaquePose carry *identical* names and every cross-species
operation (head mapping, baseline scoring) is a plain name match. "left" is always the subject's
own left, in both data sets.

DeepLabCut's ``full_human`` network (DeeperCut's 14 LSP-style joints) names its joints ``ankle1``
... ``forehead``, with "1" the subject's right; :func:`canonical_joint_name` reads those names as
MPII's (``ankle1`` = ``right_ankle``, ``chin`` = ``upper_neck``, ``forehead`` = ``head_top``), so
a converted ``full_human`` is scored on MPII and maps its heads onto MPII by the same name match.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["FULL_HUMAN", "FULL_HUMAN_TO_MPII", "MACAQUE", "MPII", "SHARED_LIMB_JOINTS", "SKELETONS", "Skeleton", "canonical_joint_name", "flip_pairs_from_names", "flip_permutation", "get_skeleton", "match_joints"]


_SIDE = re.compile(r"^(left|right|l|r)(?:[ _\-])(.+)$", re.IGNORECASE)
_DLC_NUMBERED = re.compile(r"^(ankle|knee|hip|wrist|elbow|shoulder)_?([12])$")
_DLC_HEAD = {"chin": "upper_neck", "forehead": "head_top"}


def canonical_joint_name(name: str) -> str:
    """Normalise a joint name so spellings from different releases compare equal.

    ``"left eye"``, ``"Left_Eye"`` and ``"l_eye"`` all become ``"left_eye"``; DeepLabCut
    ``full_human``'s ``"ankle1"`` becomes ``"right_ankle"`` ("1" = right), ``"chin"`` ``"upper_neck"``
    and ``"forehead"`` ``"head_top"`` (what DeeperCut's 14 joints are on MPII).
    """
    text = re.sub(r"[\s\-]+", "_", name.strip().lower())
    numbered = _DLC_NUMBERED.match(text)
    if numbered:
        return f"{'right' if numbered.group(2) == '1' else 'left'}_{numbered.group(1)}"
    if text in _DLC_HEAD:
        return _DLC_HEAD[text]
    m = _SIDE.match(text)
    if m:
        side = "left" if m.group(1) in ("left", "l") else "right"
        text = f"{side}_{m.group(2)}"
    return text


def flip_pairs_from_names(names: Sequence[str]) -> tuple[tuple[int, int], ...]:
    """Left/right pairs found by name, so any COCO-format category gets its flip pairs."""
    canon = [canonical_joint_name(n) for n in names]
    index = {n: i for i, n in enumerate(canon)}
    pairs = []
    for i, n in enumerate(canon):
        if n.startswith("left_"):
            j = index.get("right_" + n[len("left_"):])
            if j is not None:
                pairs.append((i, j))
    return tuple(sorted(pairs))


@dataclass(frozen=True)
class Skeleton:
    """A named keypoint set.

    Args:
        name: short identifier (``"mpii"``, ``"macaque"``).
        keypoints: joint names in channel order.
        links: limbs as 0-based index pairs, for drawing and for COCO's ``skeleton`` field.
        sigmas: COCO OKS sigmas, one per keypoint, where the data set defines them.
    """

    name: str
    keypoints: tuple[str, ...]
    links: tuple[tuple[int, int], ...]
    sigmas: tuple[float, ...] | None = None
    flip_pairs: tuple[tuple[int, int], ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "flip_pairs", flip_pairs_from_names(self.keypoints))
        n = len(self.keypoints)
        for a, b in self.links:
            if not (0 <= a < n and 0 <= b < n):
                raise ValueError(f"skeleton {self.name}: link ({a}, {b}) outside 0..{n - 1}")

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoints)

    def index(self, name: str) -> int:
        return self.keypoints.index(name)

    def coco_category(self, category_id: int = 1, supercategory: str | None = None) -> dict:
        """The COCO ``categories`` entry; COCO's ``skeleton`` is 1-based."""
        return {
            "id": category_id,
            "name": "person" if self.name == "mpii" else self.name,
            "supercategory": supercategory or ("person" if self.name == "mpii" else "animal"),
            "keypoints": list(self.keypoints),
            "skeleton": [[a + 1, b + 1] for a, b in self.links],
        }


MPII = Skeleton(
    name="mpii",
    keypoints=(
        "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
        "pelvis", "thorax", "upper_neck", "head_top",
        "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist",
    ),
    links=(
        (0, 1), (1, 2), (2, 6), (6, 3), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9),
        (7, 12), (12, 11), (11, 10), (7, 13), (13, 14), (14, 15),
    ),
)
"""MPII Human Pose, in the order of the official joint ids."""

_COCO17_SIGMAS = (
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072,
    0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089,
)

MACAQUE = Skeleton(
    name="macaque",
    keypoints=(
        "nose", "left_eye", "right_eye", "left_ear", "right_ear",
        "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
        "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    ),
    links=(
        (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7),
        (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
    ),
    sigmas=_COCO17_SIGMAS,
)
"""MacaquePose: the 17 COCO-order keypoints of the release (COCO's OKS sigmas, as mmpose uses)."""

# Order and skeleton as DeepLabCut 3.0.2 writes them for model="full_human":
# deeplabcut/create_project/modelzoo.py, create_pretrained_project_tensorflow (config["bodyparts"],
# config["skeleton"]). "1" = the subject's right is DeeperCut's LSP convention (DeepLabCut only
# numbers the sides).
FULL_HUMAN = Skeleton(
    name="full_human",
    keypoints=(
        "ankle1", "knee1", "hip1", "hip2", "knee2", "ankle2",
        "wrist1", "elbow1", "shoulder1", "shoulder2", "elbow2", "wrist2", "chin", "forehead",
    ),
    links=((0, 1), (5, 4), (1, 2), (4, 3), (2, 3), (8, 9), (8, 2), (9, 3), (8, 7), (9, 10), (12, 13),
           (7, 6), (10, 11)),
)
"""DeepLabCut's model-zoo ``full_human`` (DeeperCut's ResNet-101, LSP order; "1" = right)."""

FULL_HUMAN_TO_MPII: dict[str, str] = {n: canonical_joint_name(n) for n in FULL_HUMAN.keypoints}
"""``full_human`` joint -> the MPII joint it is scored as (all 14 are in MPII)."""

SKELETONS: dict[str, Skeleton] = {s.name: s for s in (MPII, MACAQUE, FULL_HUMAN)}

SHARED_LIMB_JOINTS: tuple[str, ...] = tuple(
    n for n in MPII.keypoints if n in set(MACAQUE.keypoints)
)
"""The 12 limb joints both skeletons share (shoulders, elbows, wrists, hips, knees, ankles)."""


def get_skeleton(name: str) -> Skeleton:
    """A built-in skeleton by name (``mpii``, ``macaque``, ...); ConfigError names the choices."""
    try:
        return SKELETONS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown skeleton {name!r}; known: {', '.join(SKELETONS)}") from None


def flip_permutation(num_keypoints: int, flip_pairs: Sequence[tuple[int, int]]) -> list[int]:
    """``perm[k]`` is the joint whose data lands in slot k after a horizontal flip."""
    perm = list(range(num_keypoints))
    for a, b in flip_pairs:
        perm[a], perm[b] = b, a
    return perm


def match_joints(source: Sequence[str], target: Sequence[str]) -> dict[int, int]:
    """Map target joint index -> source joint index for joints whose canonical names agree."""
    src = {canonical_joint_name(n): i for i, n in enumerate(source)}
    out = {}
    for j, n in enumerate(target):
        i = src.get(canonical_joint_name(n))
        if i is not None:
            out[j] = i
    return out
