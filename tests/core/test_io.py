"""The atomic writer: complete or absent, never truncated; failures name the file and leave nothing.

And the YAML-mapping reader: its errors are one ConfigError naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from crosspose.core.errors import ConfigError
from crosspose.core.io import atomic_path, atomic_write_json, atomic_write_text, read_yaml_mapping


def test_writes_and_replaces_leaving_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "metrics.json"
    atomic_write_json(target, {"a": 1})
    atomic_write_json(target, {"a": 2})
    assert target.read_text() == '{\n "a": 2\n}'
    assert sorted(p.name for p in target.parent.iterdir()) == ["metrics.json"]


def test_a_failing_writer_keeps_the_old_file_and_removes_its_temp(tmp_path: Path) -> None:
    target = tmp_path / "table.md"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer died")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["table.md"]


def test_temp_keeps_the_suffix_writers_choose_formats_by(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "video.mp4") as tmp:
        assert tmp.suffix == ".mp4" and tmp.parent == tmp_path
        tmp.write_bytes(b"x")


def test_nan_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        atomic_write_json(tmp_path / "m.json", {"x": float("nan")})
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_is_an_oserror_naming_the_file(tmp_path: Path) -> None:
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(OSError, match=r"metrics\.json"):
            atomic_write_text(tmp_path / "metrics.json", "x")
    finally:
        tmp_path.chmod(0o700)


def test_unwritable_target_is_an_oserror_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "runs"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(OSError, match=r"runs/metrics.json"):
        atomic_write_text(blocker / "metrics.json", "x")
    assert blocker.read_text() == "a file where a folder should be"


def test_read_yaml_mapping_reads_a_mapping_and_an_empty_file_as_empty(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("model:\n  num_keypoints: 4\n")
    (tmp_path / "empty.yaml").write_text("")
    assert read_yaml_mapping(tmp_path / "a.yaml") == {"model": {"num_keypoints": 4}}
    assert read_yaml_mapping(tmp_path / "empty.yaml") == {}


@pytest.mark.parametrize(("text", "problem"), [
    (None, "profile not found"),
    ("model: [1, 2\n", "not valid YAML (while parsing"),
    ("- a\n- b\n", "expected a mapping with sections"),
])
def test_read_yaml_mapping_errors_name_the_file(tmp_path: Path, text: str | None, problem: str) -> None:
    path = tmp_path / "bad.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        read_yaml_mapping(path, "profile", expected="a mapping with sections")
    message = str(exc.value)
    assert message.startswith(f"{path}: ") and problem in message and "\n" not in message


def test_atomic_directory_replaces_whole_or_leaves_the_old_folder(tmp_path: Path) -> None:
    from crosspose.core.io import atomic_directory

    target = tmp_path / "frames"
    with atomic_directory(target) as tmp:
        (tmp / "a.png").write_bytes(b"1")
    with atomic_directory(target) as tmp:  # a rerun replaces, it does not merge
        (tmp / "b.png").write_bytes(b"2")
    assert sorted(p.name for p in target.iterdir()) == ["b.png"]
    with pytest.raises(RuntimeError), atomic_directory(target) as tmp:
        (tmp / "c.png").write_bytes(b"3")
        raise RuntimeError("decode failed")
    assert sorted(p.name for p in target.iterdir()) == ["b.png"]  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]  # no temp folders left
