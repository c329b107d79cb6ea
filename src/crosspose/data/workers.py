"""The data loader's worker processes: how they start, what they import, and that they end.

One way to give a :class:`torch.utils.data.DataLoader` its worker processes:
:func:`worker_process_options`. Three facts shape it, each measured or met here:

* Workers start from a fork server that preloaded the data code, not as forks of the trainer. A
  forked worker is a copy-on-write image of a process of several GiB (model, optimizer state,
  allocator caches) whose pages get copied as the trainer keeps writing them; a fork-server worker
  starts in milliseconds with the data code already imported, and receives the data set pickled
  (:class:`~crosspose.data.dataset.InstanceDataset` keeps it to a few arrays).
* A worker imports the parent's main module on start (``multiprocessing`` does so for every start
  method but fork). Entry points therefore keep Lightning out of their top-level imports
  (``crosspose.cli``, ``crosspose.benchmark.phases``): imported there, it cost ~240 MiB private
  memory in every worker. A user script that imports Lightning at its top pays that too.
* A fork-server worker's parent is the fork server, so PyTorch's own check (is my parent alive?)
  never fires when the trainer is killed (SIGKILL, the OOM killer, a preempted job): each worker
  watches the trainer's pid itself (:func:`exit_with`), and the fork server, which the workers
  keep open, ends with them.

Where there is no fork server (Windows) the platform's default start method is used.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import select
import threading
import time
from multiprocessing.context import BaseContext
from typing import Any

import cv2
import torch

__all__ = ["exit_with", "loader_worker_init", "worker_context", "worker_process_options"]

PRELOADED = ("crosspose.data.dataset", "crosspose.data.workers")
"""Modules the fork server imports once, so that each worker starts with them."""


def worker_context() -> BaseContext | None:
    """The fork-server start method with the data code preloaded; None where there is none."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return None
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(PRELOADED))
    return context


def worker_process_options(workers: int) -> dict[str, Any]:
    """DataLoader keyword arguments for ``workers`` processes serving this process (none: loads in it)."""
    if workers <= 0:
        return {"num_workers": 0}
    return {
        "num_workers": workers,
        "persistent_workers": True,
        "worker_init_fn": functools.partial(loader_worker_init, trainer_pid=os.getpid()),
        "multiprocessing_context": worker_context(),
    }


def loader_worker_init(_: int, trainer_pid: int | None = None) -> None:
    """DataLoader ``worker_init_fn``: one thread per worker; exit when the training process does.

    Each worker decodes and warps one image at a time; OpenCV's own thread pool would only
    oversubscribe the cores the other workers are using. ``trainer_pid`` (bound by
    :func:`worker_process_options`): the process the loader serves, watched with :func:`exit_with`
    when it is not this worker's parent (a fork-server worker's parent is the fork server).
    """
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    if trainer_pid is not None and trainer_pid != os.getppid():
        exit_with(trainer_pid)


def exit_with(pid: int, poll_seconds: float = 1.0) -> threading.Thread:
    """End this process (``os._exit``) as soon as process ``pid`` ends, however it ends.

    A daemon thread waits on a pidfd where the platform has one (Linux 5.3+: no polling, and it
    wakes on a zombie too), else checks every ``poll_seconds`` that the pid still exists.
    """
    try:
        handle: int | None = os.pidfd_open(pid)
    except (AttributeError, OSError):
        handle = None

    def watch() -> None:
        if handle is not None:
            select.select([handle], [], [])
        else:
            while True:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                except PermissionError:  # exists, owned by someone else
                    pass
                time.sleep(poll_seconds)
        os._exit(0)

    thread = threading.Thread(target=watch, name=f"exit-with-{pid}", daemon=True)
    thread.start()
    return thread
