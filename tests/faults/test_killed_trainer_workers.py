"""A SIGKILLed training process leaves no loader worker (nor fork server) behind.

Forkserver workers are children of the fork server, not of the trainer, so PyTorch's parent check
never sees the trainer die; before ``loader_worker_init`` watched the trainer's pid, a killed
``crosspose fit`` left its workers and the fork server running (and holding their memory) forever.
The trainer here builds its loader the way :class:`PoseDataModule` does (``worker_process_options``)
without importing Lightning, which would double the test's time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from crosspose.testing import write_tiny_coco

TRAINER = """
import sys, time
from torch.utils.data import DataLoader
from crosspose.data.coco import load_coco_keypoints
from crosspose.data.dataset import InstanceDataset
from crosspose.data.workers import worker_process_options

def main():
    dataset = InstanceDataset(load_coco_keypoints(sys.argv[1]), (32, 32))
    batches = iter(DataLoader(dataset, batch_size=2, **worker_process_options(2)))
    next(batches)
    print("ready", flush=True)
    time.sleep(300)

if __name__ == "__main__":
    main()
"""


def _descendants(pid: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_workers_exit_when_the_trainer_is_killed(tmp_path: Path) -> None:
    if not Path("/proc/self/stat").exists():
        import pytest

        pytest.skip("reads the process tree from /proc (Linux)")
    coco = write_tiny_coco(tmp_path, count=4, size=32)
    script = tmp_path / "trainer.py"
    script.write_text(TRAINER, encoding="utf-8")
    trainer = subprocess.Popen([sys.executable, str(script), str(coco)], stdout=subprocess.PIPE, text=True)
    helpers: set[int] = set()
    try:
        assert trainer.stdout is not None and trainer.stdout.readline().strip() == "ready"
        helpers = _descendants(trainer.pid)
        assert len(helpers) >= 3  # the fork server and two workers (and a resource tracker)
        os.kill(trainer.pid, signal.SIGKILL)
        trainer.wait(timeout=10)
        killed = time.monotonic()
        while time.monotonic() < killed + 15 and any(_alive(p) for p in helpers):
            time.sleep(0.1)
        print(f"helpers gone {time.monotonic() - killed:.1f} s after the kill")
        left = sorted(p for p in helpers if _alive(p))
        assert not left, f"still running after the trainer was killed: {left}"
    finally:
        for pid in helpers | {trainer.pid}:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
