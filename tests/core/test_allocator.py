"""Keeping freed memory: the choice (a stand-in libc records the calls) and the effect (a real process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from crosspose.core.allocator import AllocatorChoice, keep_freed_memory
from crosspose.core.errors import ConfigError


class _RecordingLibc:
    def __init__(self, answer: int = 1) -> None:
        self.calls: list[tuple[int, int]] = []
        self.answer = answer

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return self.answer


def test_keeps_freed_memory_by_default() -> None:
    libc = _RecordingLibc()
    choice = keep_freed_memory({}, libc)
    assert choice == AllocatorChoice(True, "glibc: no mmap for large blocks, no trimming")
    # M_MMAP_MAX (-4) to 0: large blocks from the heap; M_TRIM_THRESHOLD (-1) to -1: never trim
    assert libc.calls == [(-4, 0), (-1, -1)]
    assert choice.describe().startswith("allocator: freed memory kept")


@pytest.mark.parametrize(("environ", "reason"), [
    ({"CROSSPOSE_MALLOC": "default"}, "CROSSPOSE_MALLOC=default"),
    ({"CROSSPOSE_MALLOC": " Default "}, "CROSSPOSE_MALLOC=default"),
    ({"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=1000000"}, "GLIBC_TUNABLES sets malloc: yours"),
])
def test_leaves_the_users_choice_alone(environ: dict[str, str], reason: str) -> None:
    libc = _RecordingLibc()
    assert keep_freed_memory(environ, libc) == AllocatorChoice(False, reason)
    assert libc.calls == []


def test_other_tunables_do_not_stop_it() -> None:
    libc = _RecordingLibc()
    assert keep_freed_memory({"GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX2"}, libc).kept
    assert libc.calls


def test_refused_mallopt_is_reported() -> None:
    assert keep_freed_memory({}, _RecordingLibc(answer=0)) == AllocatorChoice(False, "glibc refused mallopt")


def test_unknown_setting_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"CROSSPOSE_MALLOC must be one of keep, default; got 'always'"):
        keep_freed_memory({"CROSSPOSE_MALLOC": "always"}, _RecordingLibc())


def test_not_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    from crosspose.core import allocator

    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    assert keep_freed_memory({}) == AllocatorChoice(False, "not glibc")


_FAULTS = """
import json, resource, sys, torch
from crosspose.core.allocator import keep_freed_memory
choice = keep_freed_memory()
def churn():  # what a batch does: allocate, fill and free activations over glibc's mmap threshold
    for _ in range(4):
        t = torch.empty(16 << 20); t.fill_(1.0); del t
churn(); churn()  # glibc's aligned allocations reuse freed blocks once a few have merged
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
churn(); churn()
print(json.dumps({"kept": choice.kept, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def _faults(setting: str) -> dict[str, object]:
    env = {**os.environ, "CROSSPOSE_MALLOC": setting}
    env.pop("GLIBC_TUNABLES", None)
    out = subprocess.run([sys.executable, "-c", _FAULTS], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc: Linux only")
def test_freed_blocks_are_reused_without_page_faults() -> None:
    kept = _faults("keep")
    if not kept["kept"]:
        pytest.skip("this Linux's C library is not glibc")
    # eight 64 MiB tensors are 131,072 pages, all faulted in again with glibc's default (mmap per block);
    # kept memory is reused (at most one more heap extension while freed blocks are still merging)
    assert int(kept["faults"]) <= 16_384 + 100, kept  # type: ignore[call-overload]



def test_analyze_keeps_freed_memory_and_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from crosspose import cli
    from crosspose.inference import analyze

    asked: list[bool] = []
    monkeypatch.setattr(analyze, "keep_freed_memory", lambda: asked.append(True) or AllocatorChoice(True, "stand-in"))
    monkeypatch.setattr(analyze, "load", lambda *a, **k: (_ for _ in ()).throw(SystemExit(7)))
    with pytest.raises(SystemExit):  # stops at loading the model: the choice is made before it
        cli.main(["analyze", "--model", str(tmp_path / "m.ckpt"), str(tmp_path), "--out", str(tmp_path / "o")])
    assert asked == [True]


def test_bad_setting_is_one_line_from_analyze(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from crosspose import cli

    monkeypatch.setenv("CROSSPOSE_MALLOC", "always")
    assert cli.main(["analyze", "--model", str(tmp_path / "m.ckpt"), str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip() == ("crosspose analyze: error: CROSSPOSE_MALLOC must be one of keep, "
                                               "default; got 'always'")
    assert not (tmp_path / "o").exists()
