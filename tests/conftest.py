"""Shared fixtures. Helpers that subprocesses also need live in :mod:`crosspose.testing`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from crosspose.testing import REPO, SHARED_FIXTURES, write_tiny_coco


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Tiny convolutions on a shared 2-core machine: extra threads only wait for each other."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_coco(tmp_path: Path) -> Path:
    return write_tiny_coco(tmp_path / "tiny")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    """``../shared/fixtures``; the test skips, saying so, when it is absent (a user's fresh clone)."""
    if not SHARED_FIXTURES.is_dir():
        pytest.skip(f"real fixtures folder {SHARED_FIXTURES} is absent")
    return SHARED_FIXTURES


@pytest.fixture
def tiny_timm_backbones(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every timm ResNet built as resnet18: a config's wiring is tested, not its backbone's size.

    (torchgeo's trainer tests do the same with ``timm.create_model``.)
    """
    import timm

    real = timm.create_model

    def tiny(name: str, *args: object, **kwargs: object) -> object:
        return real("resnet18", *args, **kwargs)

    monkeypatch.setattr(timm, "create_model", tiny)


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (``make test`` runs two workers): one torch thread per worker, not two each.

    ``torch.compile`` is a no-op in the tests and the commands they start (``TORCH_COMPILE_DISABLE``):
    inference compiles by default for bf16 on CPUs with AMX, which would add seconds of compiling to
    every predict/analyze test on such a machine. tests/inference/test_compile_inference.py tests the
    compiled path itself.

    The fused GroupNorm kernel is built into a temporary folder of this run (about a second per
    worker), not into the user's ``~/.cache/crosspose/native``.
    """
    import os
    import tempfile

    os.environ["TORCH_COMPILE_DISABLE"] = "1"
    if "CROSSPOSE_NATIVE_CACHE" not in os.environ:
        config._crosspose_native_cache = tempfile.mkdtemp(prefix="crosspose-native-")  # type: ignore[attr-defined]
        os.environ["CROSSPOSE_NATIVE_CACHE"] = config._crosspose_native_cache  # type: ignore[attr-defined]

    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)


def pytest_unconfigure(config: pytest.Config) -> None:
    import os
    import shutil

    folder = getattr(config, "_crosspose_native_cache", None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
        os.environ.pop("CROSSPOSE_NATIVE_CACHE", None)
