"""Argument checks shared by every public helper.

Each function raises ``ValueError`` with a message that names the argument and says what
is allowed, and returns the value (as a float, an int or an array) when it is fine.

A number is an int, a float, a NumPy integer or float, or a one-element array or tensor of
them. Text is not a number even when ``float()`` would parse it (``"1e20"``), nor are
bytes, booleans (``float(True)`` is 1.0) or None: passed where a number belongs, each is a
mistake that would otherwise be computed with silently.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

#: What ``float()`` or ``np.asarray(..., dtype=float)`` would take but is not a number.
_NOT_NUMBERS = (str, bytes, bytearray, bool, np.bool_)


def _numeric_dtype(dtype: Any) -> bool:
    """True for an integer or floating dtype: NumPy's, PyTorch's or pandas'."""
    try:
        return np.dtype(dtype).kind in "iuf"
    except TypeError:  # torch.float32, pandas' Float64 and the like
        text = str(dtype).lower()
        return not any(word in text for word in ("bool", "complex", "str", "object", "categ"))


def _real(value: Any) -> float | None:
    """``value`` as a float if it is a number (see the module docstring), else None."""
    if value is None or isinstance(value, _NOT_NUMBERS):
        return None
    dtype = getattr(value, "dtype", None)
    if dtype is not None and not _numeric_dtype(dtype):
        return None
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _got(value: Any) -> str:
    """``value`` for an error message: its repr (shortened), with its type if not a number."""
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    if value is None or _real(value) is not None:
        return text
    return f"{text} ({type(value).__name__})"


def positive(name: str, value: float) -> float:
    """Return ``value`` as a float if it is a finite number > 0, else raise ValueError."""
    x = _real(value)
    if x is None or not math.isfinite(x) or x <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {_got(value)}")
    return x


def non_negative(name: str, value: float) -> float:
    """Return ``value`` as a float if it is a finite number >= 0, else raise ValueError."""
    x = _real(value)
    if x is None or not math.isfinite(x) or x < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {_got(value)}")
    return x


def positive_int(name: str, value: int) -> int:
    """Return ``value`` if it is an integer >= 1, else raise ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {_got(value)}")
    return int(value)


def non_negative_int(name: str, value: int) -> int:
    """Return ``value`` if it is an integer >= 0 (a seed, a step), else raise ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {_got(value)}")
    return int(value)


def in_range(name: str, value: float, low: float, high: float) -> float:
    """Return ``value`` as a float if ``low <= value <= high``, else raise ValueError."""
    x = _real(value)
    if x is None or not (low <= x <= high):
        raise ValueError(f"{name} must be a number in [{low}, {high}], got {_got(value)}")
    return x


def below_one(name: str, value: float) -> float:
    """Return ``value`` as a float if ``0 <= value < 1`` (a decay rate such as AdamW's β₂),
    else raise ValueError."""
    x = _real(value)
    if x is None or not (0.0 <= x < 1.0):
        raise ValueError(f"{name} must be a number in [0, 1), got {_got(value)}")
    return x


def number_array(name: str, values: Any, *, what: str = "numbers") -> np.ndarray:
    """Return ``values`` (a number or a sequence, array or tensor of numbers) as a 1-D float
    array, any sign; raise ValueError naming ``name`` for text, bytes, booleans, None, or a
    sequence or array holding any of them. ``what`` is how the message names what is allowed.
    """
    allowed = f"{name} must hold {what} (a number or a 1-D array of them)"
    if isinstance(values, (list, tuple)):
        bad = [i for i, v in enumerate(values) if v is None or isinstance(v, _NOT_NUMBERS)]
        if bad:
            raise ValueError(f"{allowed}; entry {bad[0]} is {_got(values[bad[0]])}")
    if values is None or isinstance(values, _NOT_NUMBERS):
        raise ValueError(f"{allowed}, got {_got(values)}")
    try:
        arr = np.asarray(values)
    except (TypeError, ValueError):
        raise ValueError(f"{allowed}, got {_got(values)}") from None
    if arr.dtype == object:  # e.g. Python ints too large for int64, or mixed number types
        flat = [_real(v) for v in arr.ravel()]
        if any(v is None for v in flat):
            raise ValueError(f"{allowed}, got {_got(values)}")
        arr = np.array(flat, dtype=float).reshape(arr.shape)
    elif not _numeric_dtype(arr.dtype):
        raise ValueError(f"{allowed}, got {_got(arr)}")
    arr = np.atleast_1d(arr.astype(float))
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def positive_array(name: str, values: Iterable[float] | float, *, min_len: int = 1) -> np.ndarray:
    """Return ``values`` as a 1-D float array whose entries are all finite and > 0.

    Raises ValueError naming ``name`` if ``values`` is not numbers (see
    :func:`number_array`), if any entry is NaN, infinite or <= 0, or if there are fewer
    than ``min_len`` entries.
    """
    arr = number_array(name, values, what="finite numbers > 0")
    if arr.size < min_len:
        raise ValueError(f"{name} needs at least {min_len} values, got {arr.size}")
    bad = ~np.isfinite(arr) | (arr <= 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name} must hold finite numbers > 0; entry {i} is {arr[i]!r}")
    return arr


def id_array(name: str, ids: Any, min_len: int = 1) -> np.ndarray:
    """Return ``ids`` (a 1-D integer NumPy array or tensor of token ids) as a NumPy array
    with at least ``min_len`` entries, else raise ValueError naming ``name``."""
    if hasattr(ids, "detach") and hasattr(ids, "cpu"):  # a torch tensor
        ids = ids.detach().cpu().numpy()
    if not isinstance(ids, np.ndarray) or ids.ndim != 1 or ids.dtype.kind not in "iu":
        raise ValueError(
            f"{name} must be a 1-D integer array or tensor of token ids, got {_got(ids)}"
        )
    if ids.shape[0] < min_len:
        raise ValueError(f"{name} must hold at least {min_len} tokens here, got {ids.shape[0]}")
    return ids


def one_of(name: str, value: str, allowed: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``allowed``, else raise ValueError listing them."""
    allowed = list(allowed)
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {_got(value)}")
    return value
