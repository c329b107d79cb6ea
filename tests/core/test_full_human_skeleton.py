"""DeepLabCut's full_human joints read as MPII's."""

from __future__ import annotations

from crosspose.core.skeletons import FULL_HUMAN, FULL_HUMAN_TO_MPII, MPII, canonical_joint_name, match_joints

# Written out by hand from DeeperCut's LSP order ("1" = the subject's right).
EXPECTED = {
    "ankle1": "right_ankle", "knee1": "right_knee", "hip1": "right_hip", "hip2": "left_hip",
    "knee2": "left_knee", "ankle2": "left_ankle", "wrist1": "right_wrist", "elbow1": "right_elbow",
    "shoulder1": "right_shoulder", "shoulder2": "left_shoulder", "elbow2": "left_elbow", "wrist2": "left_wrist",
    "chin": "upper_neck", "forehead": "head_top",
}


def test_full_human_order_and_mpii_mapping() -> None:
    assert list(FULL_HUMAN.keypoints) == list(EXPECTED)
    assert FULL_HUMAN_TO_MPII == EXPECTED
    mapping = match_joints(FULL_HUMAN.keypoints, MPII.keypoints)  # MPII index -> full_human index
    assert {MPII.keypoints[t]: FULL_HUMAN.keypoints[s] for t, s in mapping.items()} == {
        v: k for k, v in EXPECTED.items()}
    assert "pelvis" not in {MPII.keypoints[t] for t in mapping} and len(mapping) == 14


def test_flip_pairs_swap_ones_and_twos() -> None:
    names = FULL_HUMAN.keypoints
    pairs = {frozenset((names[a], names[b])) for a, b in FULL_HUMAN.flip_pairs}
    assert pairs == {frozenset((f"{j}1", f"{j}2")) for j in ("ankle", "knee", "hip", "wrist", "elbow", "shoulder")}


def test_ordinary_names_are_unchanged() -> None:
    assert canonical_joint_name("Left Eye") == "left_eye"
    assert canonical_joint_name("paw1") == "paw1"  # only DeeperCut's human limb names are numbered sides
    assert canonical_joint_name("hip3") == "hip3"


def test_links_are_deeplabcuts_full_human_skeleton() -> None:
    """DeepLabCut 3.0.2's create_pretrained_project_tensorflow skeleton, written out by name."""
    dlc = [("ankle1", "knee1"), ("ankle2", "knee2"), ("knee1", "hip1"), ("knee2", "hip2"), ("hip1", "hip2"),
           ("shoulder1", "shoulder2"), ("shoulder1", "hip1"), ("shoulder2", "hip2"), ("shoulder1", "elbow1"),
           ("shoulder2", "elbow2"), ("chin", "forehead"), ("elbow1", "wrist1"), ("elbow2", "wrist2")]
    names = FULL_HUMAN.keypoints
    assert [(names[a], names[b]) for a, b in FULL_HUMAN.links] == dlc
