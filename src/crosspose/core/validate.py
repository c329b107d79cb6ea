"""Checks of user-facing options, raised as one-line :class:`~crosspose.core.errors.ConfigError` s.

Each option is checked where it is defined (the class that takes it), named as the user writes it
(``model.radius``, ``data.batch_size``), so a bad value fails before any work starts, with the same
message from ``crosspose fit``, a YAML file or Python.

Example:
    >>> positive("model.radius", 17.0)
    17.0
    >>> positive("model.radius", -1)
    Traceback (most recent call last):
    ...
    crosspose.core.errors.ConfigError: model.radius must be positive, got -1
"""

from __future__ import annotations

import math
from typing import TypeVar

from crosspose.core.errors import ConfigError

__all__ = ["at_least", "non_negative", "positive", "probability", "value_range"]

N = TypeVar("N", int, float)


def _number(name: str, value: N) -> N:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    return value


def positive(name: str, value: N) -> N:
    """``value`` > 0."""
    if _number(name, value) <= 0:
        raise ConfigError(f"{name} must be positive, got {value}")
    return value


def non_negative(name: str, value: N) -> N:
    """``value`` >= 0."""
    if _number(name, value) < 0:
        raise ConfigError(f"{name} must be 0 or more, got {value}")
    return value


def at_least(name: str, value: N, low: N) -> N:
    """``value`` >= ``low``."""
    if _number(name, value) < low:
        raise ConfigError(f"{name} must be at least {low}, got {value}")
    return value


def probability(name: str, value: float) -> float:
    """0 <= ``value`` <= 1."""
    if not 0 <= _number(name, value) <= 1:
        raise ConfigError(f"{name} must be a probability in [0, 1], got {value}")
    return value


def value_range(name: str, value: tuple[float, float] | list[float], low: float = -math.inf) -> tuple[float, float]:
    """A (min, max) pair with min <= max, both >= ``low``."""
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a [min, max] pair, got {value!r}") from None
    if not (math.isfinite(a) and math.isfinite(b)) or a > b or a < low:
        bound = f", both at least {low}" if low > -math.inf else ""
        raise ConfigError(f"{name} must be a [min, max] pair with min <= max{bound}, got {value!r}")
    return a, b
