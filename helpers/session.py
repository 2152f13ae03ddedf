"""One call at the top of every chapter: seeds, plot style, print precision."""

from __future__ import annotations

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


def setup(seed: int = 0, precision: int = 4) -> None:
    """Seed Python, NumPy and PyTorch with ``seed``; set the plot style and print precision.

    ``precision`` is the number of significant digits NumPy prints (>= 1). PyTorch is
    seeded only if it is installed and already importable.

    Introduced in: chapters/01_background.ipynb
    """
    non_negative_int("seed", seed)
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
