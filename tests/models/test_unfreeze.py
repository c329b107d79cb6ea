"""Unfreeze schedules: parsing and the level in force at each step."""

from __future__ import annotations

import pytest

from crosspose.core.errors import ConfigError
from crosspose.models.unfreeze import level_at, parse_unfreeze


def test_schedule_is_sorted_and_gives_the_level_of_each_step() -> None:
    schedule = parse_unfreeze("backbone", {5000: "none", 2000: "stage3"})
    assert schedule == [(2000, "stage3"), (5000, "none")]
    assert [level_at("backbone", schedule, s) for s in (0, 1999, 2000, 4999, 5000, 10**6)] == [
        "backbone", "backbone", "stage3", "stage3", "none", "none"]
    assert parse_unfreeze("stage2", None) == [] and level_at("stage2", [], 10) == "stage2"


@pytest.mark.parametrize("freeze, schedule, message", [
    ("stage2", {100: "stage3"}, "does not unfreeze"),        # freezes more
    ("backbone", {100: "stage3", 200: "stage3"}, "does not unfreeze"),  # nothing new
    ("none", {100: "none"}, "does not unfreeze"),
    ("backbone", {100: "stage9"}, "unknown level"),
    ("backbone", {-5: "none"}, "non-negative"),
    ("backbone", {"soon": "none"}, "integers"),
])
def test_bad_schedules_are_config_errors(freeze: str, schedule: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_unfreeze(freeze, schedule)
