"""One call at the top of every chapter: seeds, plot style, print precision.

The course's seed is 0 unless the environment variable ``SCALING_COURSE_SEED`` sets another
(``SCALING_COURSE_SEED=3 jupyter lab``): :func:`setup` seeds with it, and every training
helper (model initialisation, batch order, sweep designs) uses it when no seed is given, so
a reader can rerun every chapter with another seed without editing a line.
"""

from __future__ import annotations

import os
import random

import numpy as np

from ._validate import non_negative_int, positive_int

#: Plot style: opaque white figures with dark text, so plots stay readable when the
#: website is shown in dark mode (a transparent figure would put black text on black).
PLOT_STYLE = {
    "figure.figsize": (6.4, 4.0),
    "figure.dpi": 100,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
    "axes.facecolor": "white",
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "font.size": 11,
}


#: The environment variable that sets the course's seed.
SEED_VARIABLE = "SCALING_COURSE_SEED"


def course_seed() -> int:
    """The course's seed: ``$SCALING_COURSE_SEED`` if it is set (an integer >= 0), else 0.

    Introduced in: chapters/05_practice.ipynb
    """
    text = os.environ.get(SEED_VARIABLE, "").strip()
    if not text:
        return 0
    if not text.isdigit():
        raise ValueError(f"{SEED_VARIABLE} must be an integer >= 0, got {text!r}")
    return int(text)


def resolve_seed(seed: int | None) -> int:
    """``seed`` checked (an integer >= 0), or :func:`course_seed` if it is None.

    Introduced in: chapters/05_practice.ipynb
    """
    return course_seed() if seed is None else non_negative_int("seed", seed)


def setup(seed: int | None = None, precision: int = 4) -> None:
    """Seed Python, NumPy and PyTorch with ``seed`` (``None``: :func:`course_seed`); set the
    plot style and print precision.

    ``precision`` is the number of significant digits NumPy prints (>= 1). PyTorch is
    seeded only if it is installed and already importable.

    Introduced in: chapters/01_background.ipynb
    """
    seed = resolve_seed(seed)
    positive_int("precision", precision)
    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch
    except ImportError:  # the background chapters need no torch
        pass
    else:
        torch.manual_seed(seed)
    np.set_printoptions(precision=precision, suppress=False)

    import matplotlib as mpl

    mpl.rcParams.update(PLOT_STYLE)
