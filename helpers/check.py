"""Self-checks for notebooks: one ✓ line when a result is right, an AssertionError if not.

Stripped notebooks give nbval no stored output to compare, so these checks are what
makes running a chapter a test.
"""

from __future__ import annotations

import math

import numpy as np

from ._validate import _real, positive


def check_close(name: str, got: float, want: float, rtol: float = 1e-6) -> float:
    """Check that ``got`` is within relative tolerance ``rtol`` of ``want``.

    Prints ``✓ name: got (want want, rtol)`` and returns the relative error, or raises
    ``AssertionError`` saying by how much it missed. Both values must be finite numbers;
    ``rtol`` must be > 0.

    Introduced in: chapters/01_background.ipynb
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    rtol = positive("rtol", rtol)
    g, w = _real(got), _real(want)  # text ("1e20"), booleans and None are not numbers
    if g is None or w is None:
        raise ValueError(f"got and want must be numbers, got {got!r} and {want!r}")
    if not (math.isfinite(g) and math.isfinite(w)):
        raise AssertionError(f"✗ {name}: got {g!r}, want {w!r}: not a finite number")
    err = abs(g - w) / abs(w) if w != 0 else abs(g)
    if err > rtol:
        raise AssertionError(
            f"✗ {name}: got {g:.6g}, want {w:.6g} (relative error {err:.3g} > rtol {rtol:g})"
        )
    print(f"✓ {name}: {g:.6g} (want {w:.6g}, rtol {rtol:g})")
    return err


def check_true(name: str, condition: bool | np.bool_, detail: str = "") -> None:
    """Check that ``condition`` holds: print ``✓ name`` or raise ``AssertionError``.

    ``detail`` is printed beside the name in both cases (e.g. the numbers compared).

    Introduced in: chapters/01_background.ipynb
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    if not isinstance(condition, (bool, np.bool_)):
        raise ValueError(f"condition must be a bool, got {type(condition).__name__}")
    suffix = f" ({detail})" if detail else ""
    if not condition:
        raise AssertionError(f"✗ {name}{suffix}")
    print(f"✓ {name}{suffix}")
