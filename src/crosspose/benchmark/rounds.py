"""Benchmark rows timed in rounds of alternating order, so that a drifting machine cancels out.

A shared or clock-boosting CPU changes speed over minutes. On this project's 2-core EPYC the same
crosspose fit ran at 2.46 img/s in one benchmark and 3.3 an hour later, and DeepLabCut's rows moved
up to 13 % between runs. A ratio of two rows timed ten minutes apart then holds the machine's drift
as well as the tools' difference.

``crosspose benchmark --rounds N`` times every training and inference row N times: the first round
is the full pass (training, inference, video, memory), the later rounds run each row's training and
inference phases again, in the reverse order of the round before (A B C, C B A, A B C, ...). Over an
even number of rounds each row has the same mean position in time, so a drift that is linear in time
cancels from the mean rates. The per-round ratios are kept, so the reader sees how much the machine
moved.

Pure functions over the report's summaries (``{"images_per_s": ...}`` dicts); the orchestration
that runs the phases lives in :mod:`crosspose.benchmark.run`.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any, TypeVar

__all__ = ["add_round", "finish_rounds", "round_order", "round_ratios", "start_rounds"]

T = TypeVar("T")


def round_order(rows: Sequence[T], round_index: int) -> list[T]:
    """The rows in the order round ``round_index`` (0 = the first pass) runs them: odd rounds reversed.

    >>> round_order(["dlc", "fp32", "bf16"], 1)
    ['bf16', 'fp32', 'dlc']
    """
    return list(reversed(rows)) if round_index % 2 else list(rows)


def start_rounds(summary: dict[str, Any]) -> None:
    """Make the first pass's rate round 1 of ``summary`` (idempotent)."""
    summary.setdefault("rounds", [summary.get("images_per_s")])


def add_round(summary: dict[str, Any], rate: float | None) -> None:
    """Append one later round's rate (None: that round failed; it is kept as a gap, not as zero)."""
    start_rounds(summary)
    summary["rounds"].append(rate)


def finish_rounds(summary: dict[str, Any]) -> None:
    """Set ``images_per_s`` to the mean over the rounds that ran; the first pass's own rate is kept.

    The mean, not the median: with rounds in alternating order it is the mean that a linear drift
    leaves unchanged.
    """
    rates = [r for r in summary.get("rounds", []) if r is not None]
    if len(summary.get("rounds", [])) < 2 or not rates:
        return
    summary.setdefault("first_round_images_per_s", summary.get("images_per_s"))
    summary["images_per_s"] = statistics.fmean(rates)


def round_ratios(numerator: dict[str, Any] | None, denominator: dict[str, Any] | None) -> list[float | None]:
    """Round-by-round ratio of two rows' rates (None where either round failed)."""
    a = (numerator or {}).get("rounds") or []
    b = (denominator or {}).get("rounds") or []
    return [x / y if x and y else None for x, y in zip(a, b, strict=False)]
