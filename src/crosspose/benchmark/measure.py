"""The benchmark's instruments: images/s from step and pass times, and the memory of a process tree.

Every phase of ``crosspose benchmark`` runs in a child process (:func:`run_child`) so one phase's
peak memory is not inflated by another; :class:`TreeMemorySampler` follows the child and its
data-loader workers. The phases (:mod:`crosspose.benchmark.phases`, :mod:`crosspose.benchmark.video`)
and the driver (:mod:`crosspose.benchmark.run`) import from here, never the reverse.
"""

from __future__ import annotations

import itertools
import json
import os
import statistics
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["TreeMemorySampler", "label_workers", "run_child", "summarise_passes", "summarise_steps"]


def summarise_steps(starts: list[float], images: list[int], warmup: int, repeats: int) -> dict[str, Any]:
    """Images/s from step start times: drop ``warmup`` steps, split the rest into ``repeats`` runs.

    Step i lasts from its start to the start of step i + 1 (so a step that waits for data pays for
    it); the last start only closes the step before it. Returns the median and every repeat.
    """
    durations = [b - a for a, b in itertools.pairwise(starts)][warmup:]
    counts = images[warmup: warmup + len(durations)]
    if not durations:
        return {"images_per_s": None, "repeats": [], "steps": 0}
    repeats = max(1, min(repeats, len(durations)))
    chunks = np.array_split(np.arange(len(durations)), repeats)
    rates = [float(sum(counts[i] for i in c) / sum(durations[i] for i in c)) for c in chunks if len(c)]
    return {"images_per_s": statistics.median(rates), "repeats": rates, "steps": len(durations)}


def summarise_passes(seconds: list[float], images: int, warmup: int = 1) -> dict[str, Any]:
    """Images/s of whole passes over a folder, the first ``warmup`` passes dropped."""
    kept = seconds[warmup:] or seconds
    rates = [images / s for s in kept]
    return {"images_per_s": statistics.median(rates), "repeats": rates, "passes": len(kept)}


class TreeMemorySampler:
    """Peak memory of a process and all its descendants, sampled every ``interval`` s (Linux).

    Two totals, because forked processes share pages: ``peak_bytes`` sums each process's resident
    set (RSS; shared pages counted once per process, what a naive monitor shows), ``peak_pss_bytes``
    sums proportional set sizes (PSS: each shared page split between its sharers; what the processes
    really take from the machine). ``processes`` keeps each process's own peaks and its role: the
    measured process is ``main``, its descendants ``worker N`` in order of appearance.

    RSS (``/proc/PID/statm``, a counter) is read every ``interval``; PSS only when the tree's summed RSS
    passes the highest RSS at which PSS was read by 1 %, and otherwise every ``pss_interval`` s (so the
    PSS peak may be missed by about 1 %). PSS comes from ``smaps_rollup``, which walks the process's
    page tables under its memory-map lock: read ten times a second it slowed the measured training
    (bf16 ResNet-50, 2-core EPYC, two pairs) from 6.26 / 6.42 to 5.19 / 5.14 img/s.
    """

    def __init__(self, pid: int, interval: float = 0.1, pss_interval: float = 2.0) -> None:
        self.pid, self.interval, self.pss_interval = pid, interval, pss_interval
        self.peak_bytes: int | None = None
        self.peak_pss_bytes: int | None = None
        self.processes: dict[int, dict[str, Any]] = {}
        self.samples = self.pss_reads = 0
        self._last_pss = -float("inf")
        self._pss_read_at_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    @staticmethod
    def _children(pid: int) -> list[int]:
        out: list[int] = []
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as fh:
                    out.extend(int(c) for c in fh.read().split())
        except OSError:
            pass
        return out

    @staticmethod
    def _rss(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/statm", encoding="ascii") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return 0

    @staticmethod
    def _pss(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as fh:
                for line in fh:
                    if line.startswith("Pss:"):
                        return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            pass
        return 0

    def sample(self) -> int:
        """Summed RSS of the tree now (and, as a side effect, the per-process and PSS peaks)."""
        tree, todo = [], [(self.pid, 0)]
        while todo:
            pid, parent = todo.pop()
            tree.append((pid, parent, self._rss(pid)))
            todo.extend((child, pid) for child in self._children(pid))
        total = sum(rss for _, _, rss in tree)
        self.samples += 1
        now = time.monotonic()
        read_pss = total > 1.01 * self._pss_read_at_rss or now - self._last_pss >= self.pss_interval
        if read_pss:
            self._last_pss = now
            self._pss_read_at_rss = max(self._pss_read_at_rss, total)
            self.pss_reads += 1
        total_pss = 0
        for pid, parent, rss in tree:
            if not rss:
                continue
            entry = self.processes.get(pid)
            if entry is None:
                entry = self.processes[pid] = {"pid": pid, "role": self._role(pid, parent),
                                               "peak_rss_bytes": 0, "peak_pss_bytes": 0}
            entry["peak_rss_bytes"] = max(entry["peak_rss_bytes"], rss)
            if read_pss:
                pss = self._pss(pid)
                total_pss += pss
                entry["peak_pss_bytes"] = max(entry["peak_pss_bytes"], pss)
        if total_pss and (self.peak_pss_bytes is None or total_pss > self.peak_pss_bytes):
            self.peak_pss_bytes = total_pss
        if total and (self.peak_bytes is None or total > self.peak_bytes):
            self.peak_bytes = total
        return total

    def _role(self, pid: int, parent: int) -> str:
        """main, forkserver, resource tracker, or the n-th other process (a loader worker)."""
        if pid == self.pid:
            return "main"
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmdline = fh.read().decode("utf-8", "replace")
        except OSError:
            cmdline = ""
        if "forkserver" in cmdline and parent == self.pid:
            return "forkserver (data code preloaded)"
        if "resource_tracker" in cmdline:
            return "resource tracker"
        workers = sum(1 for e in self.processes.values() if e["role"].startswith("child"))
        return f"child {workers + 1}"

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def breakdown(self) -> dict[str, Any]:
        """Totals and per-process peaks, JSON-ready."""
        return {"peak_rss_bytes": self.peak_bytes, "peak_pss_bytes": self.peak_pss_bytes,
                "processes": list(self.processes.values())}

    def __enter__(self) -> TreeMemorySampler:
        if Path("/proc").is_dir():
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


def run_child(command: list[str], env: dict[str, str] | None = None, timeout: float | None = None,
              memory: dict[str, Any] | None = None) -> tuple[dict[str, Any] | None, int | None, str]:
    """Run a phase; returns (its JSON result or None, peak tree RSS, error text).

    ``memory``, when given, receives :meth:`TreeMemorySampler.breakdown` (PSS and per process).
    """
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    with TreeMemorySampler(proc.pid) as sampler:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            return None, sampler.peak_bytes, f"timed out after {timeout:.0f} s"
    if memory is not None:
        memory.update(sampler.breakdown())
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (err or out).strip().splitlines()[-6:]
        return None, sampler.peak_bytes, f"exit {proc.returncode}: " + " | ".join(tail)
    return json.loads(lines[-1]), sampler.peak_bytes, ""


def label_workers(memory: dict[str, Any], worker_pids: dict[str, list[int]]) -> dict[str, Any]:
    """Name each sampled worker after the loader that started it (the phase reports their pids)."""
    roles = {pid: f"{stage}: loader worker {i + 1}" for stage, pids in worker_pids.items()
             for i, pid in enumerate(pids)}
    memory["processes"] = [{**p, "role": roles.get(p.get("pid"), p["role"]) if p["role"].startswith("child")
                            else p["role"]} for p in memory.get("processes", [])]
    return memory
