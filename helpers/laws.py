"""Published scaling laws and their constants, with citations.

Every constant here is copied from the paper named beside it (see the course's
``references.bib``); nothing is fitted in this module. Units: N in parameters, D in
tokens, C in FLOPs unless a name says otherwise, loss in nats per token.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ._validate import positive_array

if TYPE_CHECKING:
    import pandas as pd

#: One petaflop/s-day in FLOPs: 1e15 FLOP/s for 86,400 s (Kaplan et al. 2020, Sec. 1.3).
PF_DAY = 1e15 * 86_400


@dataclass(frozen=True)
class KaplanConstants:
    """Constants of Kaplan et al. (2020), Sec. 1.2 and Eq. (1.5).

    ``alpha_n, n_c``: L(N) = (N_c/N)^alpha_N, N non-embedding parameters.
    ``alpha_d, d_c``: L(D) = (D_c/D)^alpha_D, D tokens (early-stopped, large models).
    ``alpha_c, c_c_pf_days``: L(C_min) = (C_c/C_min)^alpha_C, C in PF-days.
    ``joint_*``: L(N, D) = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D, their Eq. (1.5)
    with the separately fitted constants of their Table 2.
    """

    alpha_n: float = 0.076
    n_c: float = 8.8e13
    alpha_d: float = 0.095
    d_c: float = 5.4e13
    alpha_c: float = 0.050
    c_c_pf_days: float = 3.1e8
    joint_alpha_n: float = 0.076
    joint_alpha_d: float = 0.103
    joint_n_c: float = 6.4e13
    joint_d_c: float = 1.8e13
    #: Compute-optimal allocation exponents: N_opt ~ C^0.73, D_opt ~ C^0.27.
    a: float = 0.73
    b: float = 0.27


KAPLAN = KaplanConstants()


@dataclass(frozen=True)
class ChinchillaParams:
    """Parameters of L(N, D) = E + A/N^alpha + B/D^beta (Hoffmann et al. 2022, Eq. 2).

    N is the total parameter count, D training tokens, L in nats per token.
    """

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    source: str = ""


#: Hoffmann et al. (2022) Approach 3, as printed in the paper (rounded).
HOFFMANN_PRINTED = ChinchillaParams(
    E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28, source="Hoffmann et al. 2022, Eq. 10"
)
#: The same fit with the unrounded values from the paper's TeX source.
HOFFMANN_UNROUNDED = ChinchillaParams(
    E=1.6934,
    A=406.40,
    B=410.72,
    alpha=0.33917,
    beta=0.28491,
    source="Hoffmann et al. 2022, TeX source of Eq. 10",
)
#: Besiroglu et al. (2024)'s refit of Approach 3 on the 245 runs they read off Hoffmann et
#: al.'s Figure 4 (240 after dropping the five highest losses): their Huber-likelihood
#: estimate, all five constants from that one fit (their ``data_analysis.ipynb``).
BESIROGLU = ChinchillaParams(
    E=1.81686,
    A=482.006,
    B=2085.43,
    alpha=0.34781,
    beta=0.36585,
    source="Besiroglu et al. 2024, Huber-likelihood fit",
)

#: The law the course plans with: the refit, whose allocation (about 20 tokens per
#: parameter at Chinchilla's compute) agrees with Hoffmann et al.'s Approaches 1 and 2.
#: Hoffmann et al.'s own Approach 3 constants give about 59 (chapter 4 shows why).
PLANNING = BESIROGLU

#: Chinchilla's compute-optimal exponents N_opt ~ C^a, D_opt ~ C^b, per approach
#: (Hoffmann et al. 2022, Table 2).
HOFFMANN_EXPONENTS = {
    "Approach 1": (0.50, 0.50),
    "Approach 2": (0.49, 0.51),
    "Approach 3": (0.46, 0.54),
}

#: Repeated data (Muennighoff et al. 2023, Eq. 5): the fitted decay constant R_D* of
#: the effective-data formula D' = U + U·R_D*·(1 − exp(−R/R_D*)), R = epochs − 1.
MUENNIGHOFF_R_D_STAR = 15.4


@dataclass(frozen=True)
class PublishedRun:
    """A published training run: total parameters and training tokens."""

    name: str
    n_params: float
    n_tokens: float
    source: str


#: Training runs whose N and D are stated in their papers.
PUBLISHED_RUNS = (
    PublishedRun("GPT-3", 175e9, 300e9, "Brown et al. 2020, Table 2.2 and Sec. 2.2"),
    PublishedRun("Gopher", 280e9, 300e9, "Rae et al. 2021; Hoffmann et al. 2022, Table 1"),
    PublishedRun("Chinchilla", 70e9, 1.4e12, "Hoffmann et al. 2022, Table 1"),
    PublishedRun("LLaMA-65B", 65.2e9, 1.4e12, "Touvron et al. 2023, Table 2"),
)


def kaplan_loss(
    n_params: float | np.ndarray | None = None,
    n_tokens: float | np.ndarray | None = None,
    constants: KaplanConstants = KAPLAN,
) -> float | np.ndarray:
    """Kaplan et al. (2020)'s test loss in nats per token.

    With only ``n_params`` (non-embedding parameters) this is L(N), the loss of a model
    trained to convergence; with only ``n_tokens`` it is L(D); with both it is the joint
    L(N, D) of their Eq. (1.5).

    Introduced in: chapters/01_background.ipynb
    """
    if n_params is None and n_tokens is None:
        raise ValueError("kaplan_loss needs n_params, n_tokens, or both; got neither")
    k = constants
    if n_tokens is None:
        n = positive_array("n_params", n_params)
        out = (k.n_c / n) ** k.alpha_n
    elif n_params is None:
        d = positive_array("n_tokens", n_tokens)
        out = (k.d_c / d) ** k.alpha_d
    else:
        n = positive_array("n_params", n_params)
        d = positive_array("n_tokens", n_tokens)
        ratio = k.joint_alpha_n / k.joint_alpha_d
        out = ((k.joint_n_c / n) ** ratio + k.joint_d_c / d) ** k.joint_alpha_d
    return out if np.ndim(n_params) or np.ndim(n_tokens) else float(out[0])


def kaplan_compute_loss(flops: float | np.ndarray, constants: KaplanConstants = KAPLAN):
    """Kaplan et al. (2020)'s L(C_min) in nats per token, with ``flops`` in FLOPs.

    Introduced in: chapters/01_background.ipynb
    """
    c = positive_array("flops", flops) / PF_DAY
    out = (constants.c_c_pf_days / c) ** constants.alpha_c
    return out if np.ndim(flops) else float(out[0])


def chinchilla_loss(
    n_params: float | np.ndarray,
    n_tokens: float | np.ndarray,
    params: ChinchillaParams = PLANNING,
) -> float | np.ndarray:
    """L(N, D) = E + A/N^alpha + B/D^beta in nats per token (Hoffmann et al. 2022, Eq. 2).

    ``n_params`` is the total parameter count N, ``n_tokens`` the training tokens D;
    arrays broadcast against each other. ``params`` defaults to the planning law
    (``PLANNING``, Besiroglu et al.'s refit).

    Introduced in: chapters/01_background.ipynb
    """
    n = positive_array("n_params", n_params)
    d = positive_array("n_tokens", n_tokens)
    out = params.E + params.A / n**params.alpha + params.B / d**params.beta
    return out if np.ndim(n_params) or np.ndim(n_tokens) else float(out[0])


def compute_optimal(
    flops: float | np.ndarray, params: ChinchillaParams = PLANNING
) -> tuple[float | np.ndarray, float | np.ndarray]:
    """The (N_opt, D_opt) that minimise ``chinchilla_loss`` subject to 6·N·D = ``flops``.

    Closed form (Hoffmann et al. 2022, Eq. 4): N_opt = G·(C/6)^a and D_opt = (C/6)^b / G
    with G = (alpha·A / (beta·B))^(1/(alpha+beta)), a = beta/(alpha+beta),
    b = alpha/(alpha+beta). ``flops`` in FLOPs; returns parameters and tokens.
    ``params`` defaults to the planning law (``PLANNING``, Besiroglu et al.'s refit).

    Introduced in: chapters/01_background.ipynb
    """
    c = positive_array("flops", flops)
    p = params
    g = (p.alpha * p.A / (p.beta * p.B)) ** (1 / (p.alpha + p.beta))
    a = p.beta / (p.alpha + p.beta)
    b = p.alpha / (p.alpha + p.beta)
    n_opt = g * (c / 6) ** a
    d_opt = (c / 6) ** b / g
    if np.ndim(flops):
        return n_opt, d_opt
    return float(n_opt[0]), float(d_opt[0])


#: Hoffmann et al. (2022)'s runs as Besiroglu et al. (2024) read them off Figure 4, shipped
#: unchanged in ``helpers/published/`` (its README gives the provenance), and the md5 of
#: the file as published (epoch-research/analyzing-chinchilla, commit 92258837).
HOFFMANN_RUNS_CSV = Path(__file__).with_name("published") / "chinchilla_svg_extracted.csv"
HOFFMANN_RUNS_MD5 = "0e6c634f7ff189463f2638cb60fc32ab"


def hoffmann_runs() -> pd.DataFrame:
    """The 245 training runs of Hoffmann et al. (2022) read off their Figure 4 by
    Besiroglu et al. (2024), as a pandas DataFrame with one row per run.

    Columns: ``n_params`` (N, parameters), ``n_tokens`` (D = C/(6N), tokens), ``flops``
    (C, FLOPs) and ``loss`` (nats per token), in the file's order. The file's md5 is
    checked first, so a damaged copy raises ValueError rather than giving a different fit.
    Besiroglu et al.'s refit drops the 5 highest losses and fits the other 240.

    Introduced in: chapters/04_math.ipynb
    """
    import pandas as pd  # here, so that ``import helpers`` stays fast

    raw = HOFFMANN_RUNS_CSV.read_bytes()
    digest = hashlib.md5(raw, usedforsecurity=False).hexdigest()
    if digest != HOFFMANN_RUNS_MD5:
        raise ValueError(
            f"{HOFFMANN_RUNS_CSV} has md5 {digest}, not {HOFFMANN_RUNS_MD5}: the file is "
            "damaged or was changed; restore it from helpers/published/ in the course repository"
        )
    table = pd.read_csv(io.BytesIO(raw))
    n, c = table["Model Size"].to_numpy(float), table["Training FLOP"].to_numpy(float)
    return pd.DataFrame(
        {"n_params": n, "n_tokens": c / (6 * n), "flops": c, "loss": table["loss"].to_numpy(float)}
    )
