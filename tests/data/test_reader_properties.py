"""Property tests: mutated release files fail with the project's own error, never another one.

Every mutated input either parses or raises a CrossposeError; an unhandled exception (KeyError,
TypeError, ...) or a hang fails the test.
"""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.io
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crosspose.core.errors import CrossposeError
from crosspose.data.macaquepose import MacaqueInstance, parse_release_csv, write_release_csv
from crosspose.data.mpii import MpiiImage, MpiiPerson, load_mpii_json, parse_release, write_release_mat

pytestmark = pytest.mark.timeout(120)
SETTINGS = settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
WORK = Path(tempfile.mkdtemp(prefix="crosspose_props_"))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["name", "position", "segment",
                                                                                  "x"]), inner, max_size=3),
    max_leaves=12,
)


def _valid_csv_text() -> str:
    kps = [(10.0 + k, 20.0 + k) if k % 5 else None for k in range(17)]
    path = WORK / "valid.csv"
    write_release_csv(path, [("a.jpg", [MacaqueInstance(kps, [[(0.0, 0.0), (5.0, 0.0), (5.0, 5.0)], []])]),
                             ("b.jpg", [MacaqueInstance(kps, []), MacaqueInstance(kps, [[(1.0, 1.0)]])])],
                      name_style="space")
    return path.read_bytes().decode()


VALID_CSV = _valid_csv_text()


def _parse_or_own_error(text: str) -> None:
    path = WORK / "mutated.csv"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        parse_release_csv(path)
    except CrossposeError:
        pass


@SETTINGS
@given(st.data())
def test_mutated_csv_text(data):
    text = VALID_CSV
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["cut", "delete", "insert", "replace"]))
        i = data.draw(st.integers(0, len(text)))
        if op == "cut":
            text = text[:i]
        elif op == "delete":
            text = text[:i] + text[i + data.draw(st.integers(1, 30)):]
        elif op == "insert":
            text = text[:i] + data.draw(st.text(alphabet='[]{}",:.-0123456789enul \r\n\\', max_size=12)) + text[i:]
        else:
            text = text[:i] + data.draw(st.sampled_from(['"', ",", "]", "\n", "null", "NaN", "1e999"])) + text[i + 1:]
    _parse_or_own_error(text)


@SETTINGS
@given(st.data())
def test_csv_cells_replaced_by_arbitrary_json(data):
    lines = VALID_CSV.split("\r\n")
    header, rows = lines[0], [line for line in lines[1:] if line]
    import csv
    import io

    cells = [next(csv.reader([r])) for r in rows]
    r = data.draw(st.integers(0, len(cells) - 1))
    c = data.draw(st.integers(1, 2))
    doc = json.loads(cells[r][c])
    where = data.draw(st.sampled_from(["whole", "monkey", "entry", "leaf"]))
    value = data.draw(json_values)
    if where == "whole" or not doc:
        doc = value
    elif where == "monkey":
        doc[0] = value
    elif where == "entry" and doc[0]:
        doc[0][data.draw(st.integers(0, len(doc[0]) - 1))] = value
    elif doc[0] and isinstance(doc[0][0], dict):
        key = data.draw(st.sampled_from(sorted(doc[0][0])))
        doc[0][0][key] = value
    cells[r][c] = json.dumps(doc)
    buf = io.StringIO()
    csv.writer(buf).writerows([header.split(","), *cells])
    _parse_or_own_error(buf.getvalue())


# ----------------------------------------------------------------------------------- .mat structs


def _valid_release() -> np.ndarray:
    joints = np.full((16, 2), np.nan)
    joints[[0, 3, 8, 9]] = [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]]
    p = MpiiPerson(joints, np.array([k != 3 for k in range(16)]), (0.0, 0.0, 9.0, 9.0), 1.2, (4.0, 4.0))
    path = write_release_mat(WORK / "valid.mat", [MpiiImage("a.jpg", [p, p], True, [1]),
                                                  MpiiImage("b.jpg", [p], False, [])])
    return scipy.io.loadmat(str(path))["RELEASE"]


VALID_RELEASE = _valid_release()

mat_leaves = st.one_of(
    st.builds(lambda: np.zeros((0, 0))),
    st.integers(0, 255).map(lambda v: np.array([[v]], np.uint8)),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda v: np.array([[v]])),
    st.text(max_size=4).map(lambda s: np.array([s])),
    st.builds(lambda: np.ones((2, 3))),
    st.builds(lambda: np.array([[1, 2]], np.int16)),
    st.builds(lambda: np.array([None], dtype=object)),
    st.builds(lambda: np.empty((1, 0), dtype=object)),
    st.builds(lambda: np.zeros((1, 1), dtype=[("point", object)])),
    st.builds(lambda: np.zeros((1, 1), dtype=[("zzz", object)])),
    st.builds(lambda: np.array([True])),
    st.builds(lambda: np.array([[1 + 2j]])),
    st.none(),
)


def _slots(value, path=()):
    """Every (container, key) slot of a loaded struct, for mutation."""
    out = []
    if isinstance(value, np.ndarray) and value.dtype.names:
        for idx in np.ndindex(value.shape):
            for name in value.dtype.names:
                out.append((value[idx], name))
                out.extend(_slots(value[idx][name], (*path, name)))
    elif isinstance(value, np.ndarray) and value.dtype == object:
        for idx in np.ndindex(value.shape):
            out.append((value, idx))
            out.extend(_slots(value[idx], path))
    return out


N_SLOTS = len(_slots(copy.deepcopy(VALID_RELEASE)))


def _mutated(mutations: list[tuple[int, Any]]) -> Any:
    """A copy of the valid release with each (slot, leaf) written over that slot."""
    release = copy.deepcopy(VALID_RELEASE)
    for slot, leaf in mutations:
        slots = _slots(release)
        container, key = slots[slot % len(slots)]
        container[key] = leaf
    return release


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, N_SLOTS - 1), mat_leaves), min_size=1, max_size=3))
def test_mutated_release_structs(mutations):
    release = _mutated(mutations)
    try:
        parse_release(release, "mutated.mat")
    except CrossposeError:
        pass


@settings(deadline=None, max_examples=15)
@given(st.lists(st.tuples(st.integers(0, N_SLOTS - 1), mat_leaves.filter(lambda v: v is not None)),
                min_size=1, max_size=2))
def test_mutated_release_files(mutations):
    """The same through savemat/loadmat, where scipy can write the mutated struct at all."""
    release = _mutated(mutations)
    path = WORK / "mutated.mat"
    try:
        scipy.io.savemat(path, {"RELEASE": release})
    except Exception:
        return
    from crosspose.data.mpii import load_release_mat

    try:
        load_release_mat(path)
    except CrossposeError:
        pass


@SETTINGS
@given(st.integers(0, 2), st.sampled_from(["image", "joints", "joints_vis", "center", "scale"]), json_values)
def test_mutated_mpii_json(index, key, value):
    person = {"image": "a.jpg", "center": [5, 6], "scale": 1.0, "joints": [[1.0, 2.0]] * 16, "joints_vis": [1] * 16}
    doc = [dict(person) for _ in range(3)]
    doc[index][key] = value
    path = WORK / "mutated.json"
    path.write_text(json.dumps(doc))
    try:
        load_mpii_json(path)
    except CrossposeError:
        pass


@settings(deadline=None, max_examples=20)
@given(st.binary(max_size=300))
def test_arbitrary_bytes(blob):
    for name, reader in (("x.csv", parse_release_csv), ("x.json", load_mpii_json)):
        path = WORK / name
        path.write_bytes(blob)
        try:
            reader(path)
        except CrossposeError:
            pass
    path = WORK / "x.mat"
    path.write_bytes(blob)
    from crosspose.data.mpii import load_release_mat

    try:
        load_release_mat(path)
    except CrossposeError:
        pass
