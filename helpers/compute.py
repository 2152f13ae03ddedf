"""Compute: FLOPs of training and inference.

Introduced in: chapters/01_background.ipynb (C ≈ 6·N·D); measured in chapters/02_concepts.ipynb.
"""

from __future__ import annotations

from ._validate import positive
from .laws import PF_DAY


def training_flops(n_params: float, n_tokens: float) -> float:
    """C ≈ 6·N·D: FLOPs to train ``n_params`` parameters on ``n_tokens`` tokens.

    2 FLOPs per parameter per token in the forward pass, 4 in the backward pass
    (Kaplan et al. 2020, Sec. 2.1). Returns FLOPs.

    Introduced in: chapters/01_background.ipynb
    """
    return 6.0 * positive("n_params", n_params) * positive("n_tokens", n_tokens)


def pf_days(flops: float) -> float:
    """Convert FLOPs to petaflop/s-days (1 PF-day = 8.64e19 FLOPs).

    Introduced in: chapters/01_background.ipynb
    """
    return positive("flops", flops) / PF_DAY
