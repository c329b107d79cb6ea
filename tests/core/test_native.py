"""Building a C source with the host's compiler: cached, atomic, and one clear error when it fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from crosspose.core.native import NativeBuildError, load_library
from crosspose.testing import requires_compiler

pytestmark = requires_compiler()


def test_builds_once_then_loads_from_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CROSSPOSE_NATIVE_CACHE", str(tmp_path / "cache"))
    source = tmp_path / "add.c"
    source.write_text("int crosspose_add(int a, int b) { return a + b; }\n")
    assert load_library(source).crosspose_add(2, 3) == 5
    (built,) = (tmp_path / "cache").iterdir()
    stamp = built.stat().st_mtime_ns
    assert load_library(source).crosspose_add(4, 5) == 9
    assert [p.stat().st_mtime_ns for p in (tmp_path / "cache").iterdir()] == [stamp]  # not rebuilt
    source.write_text("int crosspose_add(int a, int b) { return a + b + 1; }\n")  # an edited kernel: a new build
    assert load_library(source).crosspose_add(2, 3) == 6
    assert len(list((tmp_path / "cache").iterdir())) == 2


def test_a_compile_error_names_the_file_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CROSSPOSE_NATIVE_CACHE", str(tmp_path / "cache"))
    source = tmp_path / "broken.c"
    source.write_text("int crosspose_broken( { return }\n")
    with pytest.raises(NativeBuildError, match=r"compiling .*broken\.c failed \(.*\): .*error"):
        load_library(source)
    assert list((tmp_path / "cache").iterdir()) == []  # no half-written library for the next process to load


def test_no_compiler_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC", "no-such-compiler")
    with pytest.raises(NativeBuildError, match="no C compiler: 'no-such-compiler' is not on PATH"):
        load_library(tmp_path / "x.c")


def test_a_onednn_cap_below_avx512_builds_without_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import platform

    from crosspose.core import native

    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    assert native.cflags() == native.CFLAGS
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")
    assert native.cflags() == native.CFLAGS
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # an emulated AVX2 machine: the kernels as it would run them
    assert native.cflags() == (*native.CFLAGS, "-mno-avx512f")
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")  # not an x86 flag: nothing added
    assert native.cflags() == native.CFLAGS
