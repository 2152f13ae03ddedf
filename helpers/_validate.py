"""Argument checks shared by every public helper.

Each function raises ``ValueError`` with a message that names the argument and says what
is allowed, and returns the value (as a float or an array) when it is fine.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np


def positive(name: str, value: float) -> float:
    """Return ``value`` as a float if it is a finite number > 0, else raise ValueError."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}") from None
    if not math.isfinite(x) or x <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return x


def positive_int(name: str, value: int) -> int:
    """Return ``value`` if it is an integer >= 1, else raise ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def in_range(name: str, value: float, low: float, high: float) -> float:
    """Return ``value`` as a float if ``low <= value <= high``, else raise ValueError."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in [{low}, {high}], got {value!r}") from None
    if not (low <= x <= high):
        raise ValueError(f"{name} must be a number in [{low}, {high}], got {value!r}")
    return x


def positive_array(name: str, values: Iterable[float] | float, *, min_len: int = 1) -> np.ndarray:
    """Return ``values`` as a 1-D float array whose entries are all finite and > 0.

    Raises ValueError naming ``name`` if any entry is NaN, infinite or <= 0, or if there
    are fewer than ``min_len`` entries.
    """
    arr = np.atleast_1d(np.asarray(values, dtype=float))
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size < min_len:
        raise ValueError(f"{name} needs at least {min_len} values, got {arr.size}")
    bad = ~np.isfinite(arr) | (arr <= 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name} must hold finite numbers > 0; entry {i} is {arr[i]!r}")
    return arr


def one_of(name: str, value: str, allowed: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``allowed``, else raise ValueError listing them."""
    allowed = list(allowed)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value
