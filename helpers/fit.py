"""Fitting scaling laws to measured losses: power laws, Kaplan, Chinchilla, IsoFLOP, envelope.

Every fit here works in log space, because losses and their differences span orders of
magnitude and multiplicative noise becomes additive there. Conventions shared by all results:

- ``residuals`` are observed minus fitted, in natural log of the fitted quantity
  (log y for power laws, log loss for Kaplan and Chinchilla, log N_opt for allocation fits).
- ``r2`` is the coefficient of determination of those logs: 1 − Σ r² / Σ (log y − mean)².

Units: N (``n_params``) in parameters, D (``n_tokens``) in tokens, C (``flops``) in FLOPs,
loss in nats per token (or per character: any fixed unit works, the fits do not care).

The methods follow Kaplan et al. (2020), Hoffmann et al. (2022, Sec. 3 and App. D.2), and the
replication of Besiroglu et al. (2024), whose lesson is built in: ``fit_chinchilla`` minimises
the *sum* of Huber losses, because a mean makes L-BFGS stop before it reaches the optimum.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
from scipy import optimize, special
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from . import laws
from ._parallel import mp_context, usable_cores
from ._validate import (
    in_range,
    non_negative_int,
    number_array,
    one_of,
    positive,
    positive_array,
    positive_int,
)

#: Hoffmann et al. (2022, App. D.2)'s initialisation grid for Approach 3, in the log-sum-exp
#: parametrisation (A = e^a, B = e^b, E = e^e): 5·5·5·6·6 = 4,500 starts.
FULL_GRID: Mapping[str, tuple[float, ...]] = MappingProxyType(
    {
        "alpha": (0.0, 0.5, 1.0, 1.5, 2.0),
        "beta": (0.0, 0.5, 1.0, 1.5, 2.0),
        "e": (-1.0, -0.5, 0.0, 0.5, 1.0),
        "a": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0),
        "b": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0),
    }
)

#: Two values per parameter, each taken from ``FULL_GRID``: 32 starts. On synthetic data from
#: the Hoffmann and Besiroglu laws (40 and 200 points) and from a small-model law
#: (E 0.8, A 30, B 300, α 0.5, β 0.4), it reached the full grid's optimum ~200× faster
#: (``benchmarks/fit_grid.py``). On other data, compare with ``grid="full"`` once.
COARSE_GRID: Mapping[str, tuple[float, ...]] = MappingProxyType(
    {
        "alpha": (0.5, 1.5),
        "beta": (0.5, 1.5),
        "e": (-1.0, 0.5),
        "a": (5.0, 15.0),
        "b": (5.0, 15.0),
    }
)

_GRID_KEYS = ("a", "b", "e", "alpha", "beta")

#: L-BFGS-B stopping rules. scipy's ``ftol`` compares the drop in the objective with
#: max(|f|, 1), so for Huber sums (≪ 1) it is an absolute threshold: its default 2.2e-9
#: stops fits of ~40 points early, so it is tightened. ``gtol`` keeps scipy's default 1e-5
#: on the largest gradient entry: the gradient of a sum grows with the number of points,
#: that of a mean does not, which is why a mean stops early (Besiroglu et al. 2024).
_LBFGS_OPTIONS = MappingProxyType({"ftol": 1e-12, "gtol": 1e-5, "maxiter": 15000})
#: Largest log of A, B or E a fit may return: e^700 is near float64's limit (e^709.8).
_MAX_LOG_CONSTANT = 700.0


@contextlib.contextmanager
def _one_blas_thread() -> Iterator[None]:
    """Limit BLAS to one thread while L-BFGS-B runs, then restore it.

    scipy's L-BFGS-B calls BLAS/LAPACK on 5×5 matrices; on a loaded 2-core machine
    OpenBLAS's thread hand-offs made each call ~1 ms and coarse-grid fits 8–80× slower
    (0.2 s → 1.5–17 s) than with one thread.
    """
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _readonly(arr: np.ndarray) -> np.ndarray:
    out = np.array(arr)
    out.setflags(write=False)
    return out


def _r2(observed: np.ndarray, residuals: np.ndarray) -> float:
    total = float(np.sum((observed - observed.mean()) ** 2))
    if total == 0.0:
        return float("nan")
    return 1.0 - float(np.sum(residuals**2)) / total


def _same_length(**arrays: np.ndarray) -> None:
    names = list(arrays)
    first = names[0]
    for name in names[1:]:
        if arrays[name].size != arrays[first].size:
            raise ValueError(
                f"{name} must have as many entries as {first}: "
                f"got {arrays[name].size} and {arrays[first].size}"
            )


# --------------------------------------------------------------------------------------
# Power laws
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PowerLawFit:
    """A fitted y = k·x^(−alpha) + c (c = 0 when fitted without offset).

    ``residuals`` are log y − log ŷ; ``r2`` is the R² of log y.
    """

    k: float
    alpha: float
    c: float
    r2: float
    residuals: np.ndarray = field(repr=False, compare=False)
    offset: bool = True

    def predict(self, x: float | np.ndarray) -> float | np.ndarray:
        """ŷ = k·x^(−alpha) + c at ``x`` (same units as the fitted x, must be > 0).

        Introduced in: chapters/02_concepts.ipynb
        """
        xs = positive_array("x", x)
        out = self.k * xs ** (-self.alpha) + self.c
        return out if np.ndim(x) else float(out[0])


def fit_power_law(
    x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, offset: bool = True
) -> PowerLawFit:
    """Fit y = k·x^(−alpha) (+ c when ``offset``) to positive data, in log space.

    Without offset this is linear least squares of log y on log x (2 parameters). With
    offset, c ≥ 0 is an irreducible floor (like E in Chinchilla's law, or L_∞ in Kaplan et
    al. 2020's fits of loss vs compute) and the 3 parameters are found by nonlinear least
    squares of log y (``scipy.optimize.least_squares``), started from several floors
    c₀ ∈ {0, 0.5, 0.9}·min(y) with k and alpha from the linear fit of log(y − c₀); the best
    wins. ``x`` and ``y`` are any positive quantities (e.g. parameters and nats per token).
    A positive alpha means y falls as x grows.

    Introduced in: chapters/02_concepts.ipynb
    """
    if not isinstance(offset, (bool, np.bool_)):
        raise ValueError(f"offset must be True or False, got {offset!r}")
    n_par = 3 if offset else 2
    xs = positive_array("x", x)
    ys = positive_array("y", y)
    _same_length(x=xs, y=ys)
    if xs.size < n_par:
        raise ValueError(
            f"x and y need at least {n_par} points for {n_par} parameters "
            f"(offset={offset}), got {xs.size}"
        )
    if np.unique(xs).size < 2:
        raise ValueError("x must hold at least 2 distinct values to fit an exponent")
    lx, ly = np.log(xs), np.log(ys)

    if not offset:
        slope, intercept = np.polyfit(lx, ly, 1)
        res = ly - (intercept + slope * lx)
        return PowerLawFit(
            k=float(np.exp(intercept)),
            alpha=float(-slope),
            c=0.0,
            r2=_r2(ly, res),
            residuals=_readonly(res),
            offset=False,
        )

    def resid(theta: np.ndarray) -> np.ndarray:
        log_k, alpha, c = theta
        return np.log(np.exp(log_k - alpha * lx) + c) - ly

    def jac(theta: np.ndarray) -> np.ndarray:
        log_k, alpha, c = theta
        p = np.exp(log_k - alpha * lx)
        yhat = p + c
        return np.column_stack([p / yhat, -lx * p / yhat, 1.0 / yhat])

    best = None
    for frac in (0.0, 0.5, 0.9):
        c0 = frac * ys.min()
        slope, intercept = np.polyfit(lx, np.log(ys - c0), 1)
        sol = optimize.least_squares(
            resid,
            x0=np.array([intercept, -slope, c0]),
            jac=jac,
            bounds=([-np.inf, -np.inf, 0.0], [np.inf, np.inf, np.inf]),
            x_scale="jac",
        )
        if best is None or sol.cost < best.cost:
            best = sol
    log_k, alpha, c = best.x
    res = -best.fun
    return PowerLawFit(
        k=float(np.exp(log_k)),
        alpha=float(alpha),
        c=float(c),
        r2=_r2(ly, res),
        residuals=_readonly(res),
        offset=True,
    )


# --------------------------------------------------------------------------------------
# Kaplan et al. (2020), Eq. (1.5)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KaplanFit:
    """A fitted L(N, D) = [(N_c/N)^(alpha_n/alpha_d) + D_c/D]^alpha_d (Kaplan et al. 2020).

    ``residuals`` are log L − log L̂; ``r2`` is the R² of log L.
    """

    alpha_n: float
    alpha_d: float
    n_c: float
    d_c: float
    r2: float
    residuals: np.ndarray = field(repr=False, compare=False)

    def predict(
        self, n_params: float | np.ndarray, n_tokens: float | np.ndarray
    ) -> float | np.ndarray:
        """L̂ in the fitted loss unit for ``n_params`` parameters and ``n_tokens`` tokens.

        Introduced in: chapters/02_concepts.ipynb
        """
        n = positive_array("n_params", n_params)
        d = positive_array("n_tokens", n_tokens)
        out = ((self.n_c / n) ** (self.alpha_n / self.alpha_d) + self.d_c / d) ** self.alpha_d
        return out if np.ndim(n_params) or np.ndim(n_tokens) else float(out[0])


def fit_kaplan(
    n_params: Sequence[float] | np.ndarray,
    n_tokens: Sequence[float] | np.ndarray,
    loss: Sequence[float] | np.ndarray,
) -> KaplanFit:
    """Fit Kaplan et al. (2020)'s Eq. (1.5), L = [(N_c/N)^(α_N/α_D) + D_c/D]^α_D.

    Least squares on log L (``scipy.optimize.least_squares`` with the analytic Jacobian) in
    the parameters α_N, α_D, log N_c, log D_c, from a small grid of exponents
    α_N, α_D ∈ {0.05, 0.1, 0.3}; N_c and D_c start where each term alone would explain the
    median loss. ``n_params`` in parameters (Kaplan count non-embedding ones), ``n_tokens``
    in tokens, ``loss`` in nats per token; at least 4 points.

    Introduced in: chapters/02_concepts.ipynb
    """
    n = positive_array("n_params", n_params)
    d = positive_array("n_tokens", n_tokens)
    y = positive_array("loss", loss)
    _same_length(n_params=n, n_tokens=d, loss=y)
    if n.size < 4:
        raise ValueError(f"n_params, n_tokens and loss need at least 4 points, got {n.size}")
    ln, ld, ly = np.log(n), np.log(d), np.log(y)

    def parts(theta: np.ndarray) -> tuple[np.ndarray, ...]:
        alpha_n, alpha_d, log_nc, log_dc = theta
        u = (alpha_n / alpha_d) * (log_nc - ln)
        v = log_dc - ld
        s = np.logaddexp(u, v)
        wu = np.exp(u - s)
        return u, s, wu

    def resid(theta: np.ndarray) -> np.ndarray:
        _, s, _ = parts(theta)
        return theta[1] * s - ly

    def jac(theta: np.ndarray) -> np.ndarray:
        alpha_n, alpha_d, log_nc, _ = theta
        u, s, wu = parts(theta)
        return np.column_stack([wu * (log_nc - ln), s - wu * u, alpha_n * wu, alpha_d * (1.0 - wu)])

    med_n, med_d, med_ly = np.median(ln), np.median(ld), np.median(ly)
    best = None
    for alpha_n, alpha_d in itertools.product((0.05, 0.1, 0.3), repeat=2):
        x0 = np.array([alpha_n, alpha_d, med_n + med_ly / alpha_n, med_d + med_ly / alpha_d])
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            try:
                sol = optimize.least_squares(
                    resid,
                    x0=x0,
                    jac=jac,
                    bounds=([1e-4, 1e-4, -np.inf, -np.inf], np.inf),
                    x_scale="jac",
                )
            except ValueError:  # a start whose residuals overflow: skip it
                continue
        if np.isfinite(sol.cost) and (best is None or sol.cost < best.cost):
            best = sol
    if best is None:
        raise ValueError("fit_kaplan found no finite fit; check that loss falls with n_params")
    alpha_n, alpha_d, log_nc, log_dc = best.x
    res = -best.fun
    return KaplanFit(
        alpha_n=float(alpha_n),
        alpha_d=float(alpha_d),
        n_c=float(np.exp(log_nc)),
        d_c=float(np.exp(log_dc)),
        r2=_r2(ly, res),
        residuals=_readonly(res),
    )


# --------------------------------------------------------------------------------------
# Hoffmann et al. (2022), Approach 3
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChinchillaFit:
    """A fitted L(N, D) = E + A/N^alpha + B/D^beta (Hoffmann et al. 2022, Approach 3).

    ``a``, ``b`` are the allocation exponents N_opt ∝ C^a, D_opt ∝ C^b. ``residuals`` are
    log L − log L̂, ``r2`` the R² of log L. ``objective`` is the *sum* of Huber losses at the
    fit whatever ``reduction`` was minimised, so fits compare; ``reduction`` records which.
    ``n_starts`` is the number of L-BFGS-B starts, ``n_iter`` the iterations of the winning
    start and ``n_evals`` the objective evaluations over all starts.
    """

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    r2: float
    objective: float
    n_starts: int
    n_iter: int
    n_evals: int
    delta: float
    reduction: str
    residuals: np.ndarray = field(repr=False, compare=False)

    @property
    def a(self) -> float:
        """N_opt ∝ C^a with a = beta/(alpha + beta) (Hoffmann et al. 2022, Eq. 4)."""
        return self.beta / (self.alpha + self.beta)

    @property
    def b(self) -> float:
        """D_opt ∝ C^b with b = alpha/(alpha + beta) (Hoffmann et al. 2022, Eq. 4)."""
        return self.alpha / (self.alpha + self.beta)

    @property
    def params(self) -> laws.ChinchillaParams:
        """The fit as ``laws.ChinchillaParams``, for ``laws.compute_optimal`` and friends."""
        return laws.ChinchillaParams(
            E=self.E, A=self.A, B=self.B, alpha=self.alpha, beta=self.beta, source="fit_chinchilla"
        )

    def predict(
        self, n_params: float | np.ndarray, n_tokens: float | np.ndarray
    ) -> float | np.ndarray:
        """L̂ = E + A/N^alpha + B/D^beta for ``n_params`` parameters and ``n_tokens`` tokens.

        Introduced in: chapters/03_algorithm.ipynb
        """
        return laws.chinchilla_loss(n_params, n_tokens, self.params)

    def frontier(
        self,
        flops: Sequence[float] | np.ndarray,
        flops_per_token: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> FrontierFit:
        """The law's compute-optimal frontier at each budget of ``flops`` (FLOPs).

        At each C the N minimising L̂(N, C / cost(N)) is found numerically (bounded Brent
        search in ln N, ``scipy.optimize.minimize_scalar``); cost(N) is FLOPs per token,
        6·N when ``flops_per_token`` is None, where the answer is the closed form with
        a = :attr:`a` (``laws.compute_optimal``), or e.g. the exact count of a family of
        shapes, :class:`helpers.compute.FlopsPerToken`, where small models cost more per
        parameter and a is no longer β/(α+β). ``a``, ``b``, ``k_n``, ``k_d`` are then fitted
        in log-log over the budgets given (at least 2). Returns a :class:`FrontierFit`.

        Introduced in: chapters/05_practice.ipynb
        """
        from scipy.optimize import minimize_scalar

        c = positive_array("flops", flops, min_len=2)
        if np.unique(c).size < 2:
            raise ValueError("flops must hold at least 2 different budgets to fit an exponent")
        _per_token(flops_per_token, np.array([1.0]))  # checks the argument

        def loss_at(u: float, budget: float) -> float:
            n = math.exp(u)
            return float(self.predict(n, budget / float(_per_token(flops_per_token, n))))

        n_opt = np.empty(c.size)
        for i, budget in enumerate(c):
            top = math.log(budget / 6.0)  # N at which D would be one token under 6ND
            best = minimize_scalar(
                loss_at, bounds=(0.0, top), args=(budget,), method="bounded",
                options={"xatol": 1e-9, "maxiter": 500},
            )  # fmt: skip
            n_opt[i] = math.exp(best.x)
        d_opt = c / _per_token(flops_per_token, n_opt)
        law = _allocation_law(c, n_opt, flops_per_token)
        return FrontierFit(
            **law,
            flops=_readonly(c),
            n_opt_per_flops=_readonly(n_opt),
            d_opt_per_flops=_readonly(d_opt),
            loss_opt=_readonly(np.asarray(self.predict(n_opt, d_opt), dtype=float)),
        )


def _huber_objective(
    theta: np.ndarray, ln: np.ndarray, ld: np.ndarray, ly: np.ndarray, delta: float, scale: float
) -> tuple[float, np.ndarray]:
    """Σ Huber_δ(LSE(a − α log N, b − β log D, e) − log L)·scale and its gradient."""
    a, b, e, alpha, beta = theta
    t1 = a - alpha * ln
    t2 = b - beta * ld
    m = np.maximum(np.maximum(t1, t2), e)
    x1, x2, x3 = np.exp(t1 - m), np.exp(t2 - m), np.exp(e - m)
    tot = x1 + x2 + x3
    r = m + np.log(tot) - ly
    value = float(np.sum(special.huber(delta, r))) * scale
    g = np.clip(r, -delta, delta) * (scale / tot)
    g1, g2 = g * x1, g * x2
    grad = np.array(
        [g1.sum(), g2.sum(), float(np.dot(g, x3)), -float(np.dot(g1, ln)), -float(np.dot(g2, ld))]
    )
    return value, grad


def _grid_starts(grid: str | Mapping[str, Sequence[float]]) -> np.ndarray:
    if isinstance(grid, str):
        one_of("grid", grid, ("coarse", "full"))
        spec = COARSE_GRID if grid == "coarse" else FULL_GRID
    elif isinstance(grid, Mapping):
        if set(grid) != set(_GRID_KEYS):
            raise ValueError(
                f"grid must be 'coarse', 'full' or a mapping with keys {list(_GRID_KEYS)}, "
                f"got keys {sorted(grid)}"
            )
        spec = grid
    else:
        raise ValueError(f"grid must be 'coarse', 'full' or a mapping, got {grid!r}")
    values = []
    for key in _GRID_KEYS:
        vals = number_array(f"grid[{key!r}]", spec[key])
        if vals.ndim != 1 or vals.size == 0 or not np.all(np.isfinite(vals)):
            raise ValueError(f"grid[{key!r}] must be a non-empty list of finite numbers")
        values.append(vals)
    return np.array(list(itertools.product(*values)), dtype=float)


def chinchilla_objective(
    params: laws.ChinchillaParams,
    n_params: Sequence[float] | np.ndarray,
    n_tokens: Sequence[float] | np.ndarray,
    loss: Sequence[float] | np.ndarray,
    *,
    delta: float = 1e-3,
    reduction: str = "sum",
) -> float:
    """Hoffmann et al. (2022, App. D.2)'s objective at ``params``: the sum (or mean) over runs
    of Huber_δ(log L̂ − log L), the Huber loss being r²/2 for |r| ≤ δ and δ(|r| − δ/2) beyond.

    ``n_params`` in parameters, ``n_tokens`` in tokens, ``loss`` in nats per token; the
    value is dimensionless. Use it to compare fits (e.g. the printed and the refitted law).

    Introduced in: chapters/04_math.ipynb
    """
    if not isinstance(params, laws.ChinchillaParams):
        raise ValueError(f"params must be a laws.ChinchillaParams, got {type(params).__name__}")
    n = positive_array("n_params", n_params)
    d = positive_array("n_tokens", n_tokens)
    y = positive_array("loss", loss)
    _same_length(n_params=n, n_tokens=d, loss=y)
    delta = positive("delta", delta)
    one_of("reduction", reduction, ("sum", "mean"))
    for name in ("E", "A", "B"):
        positive(f"params.{name}", getattr(params, name))
    theta = np.array(
        [math.log(params.A), math.log(params.B), math.log(params.E), params.alpha, params.beta]
    )
    scale = 1.0 if reduction == "sum" else 1.0 / n.size
    value, _ = _huber_objective(theta, np.log(n), np.log(d), np.log(y), delta, scale)
    return value


def fit_chinchilla(
    n_params: Sequence[float] | np.ndarray,
    n_tokens: Sequence[float] | np.ndarray,
    loss: Sequence[float] | np.ndarray,
    *,
    grid: str | Mapping[str, Sequence[float]] = "coarse",
    delta: float = 1e-3,
    reduction: str = "sum",
    progress: bool = False,
) -> ChinchillaFit:
    """Fit L(N, D) = E + A/N^α + B/D^β as Hoffmann et al. (2022, App. D.2) did (Approach 3).

    Minimises Σ Huber_δ(log L̂ − log L) with log L̂ = LSE(a − α log N, b − β log D, e),
    A = e^a, B = e^b, E = e^e, by L-BFGS-B (scipy, analytic gradient, default tolerances)
    from every point of an initialisation grid; the lowest objective wins.

    ``grid``: ``"full"`` is Hoffmann's 4,500 starts (α, β ∈ {0, 0.5, …, 2},
    e ∈ {−1, −0.5, …, 1}, a, b ∈ {0, 5, …, 25}); ``"coarse"`` (default) 2 values per
    parameter, 32 starts; or a mapping from "a", "b", "e", "alpha", "beta" to values.
    ``reduction="sum"`` is the right objective; ``"mean"`` divides it by the number of
    points, which shrinks the gradient until L-BFGS-B's tolerances stop it early — the flaw
    Besiroglu et al. (2024) found in the original fit. It is here so the course can show it.
    ``n_params`` in parameters, ``n_tokens`` in tokens, ``loss`` in nats per token (any
    fixed unit), at least 5 points. ``progress`` shows a tqdm bar over the starts.

    Introduced in: chapters/03_algorithm.ipynb
    """
    n = positive_array("n_params", n_params)
    d = positive_array("n_tokens", n_tokens)
    y = positive_array("loss", loss)
    _same_length(n_params=n, n_tokens=d, loss=y)
    if n.size < 5:
        raise ValueError(
            f"n_params, n_tokens and loss need at least 5 points for 5 parameters, got {n.size}"
        )
    delta = positive("delta", delta)
    one_of("reduction", reduction, ("sum", "mean"))
    if not isinstance(progress, (bool, np.bool_)):
        raise ValueError(f"progress must be True or False, got {progress!r}")
    starts = _grid_starts(grid)
    # The grid is listed as (alpha, beta, e, a, b) in the paper; _grid_starts orders the
    # columns as _GRID_KEYS = (a, b, e, alpha, beta), the order of theta.
    ln, ld, ly = np.log(n), np.log(d), np.log(y)
    scale = 1.0 if reduction == "sum" else 1.0 / n.size

    best, n_evals = None, 0
    with _one_blas_thread(), np.errstate(over="ignore", invalid="ignore"):
        for x0 in tqdm(starts, desc="fit_chinchilla starts", disable=not progress):
            sol = optimize.minimize(
                _huber_objective,
                x0,
                args=(ln, ld, ly, delta, scale),
                jac=True,
                method="L-BFGS-B",
                options=dict(_LBFGS_OPTIONS),
            )
            n_evals += int(sol.nfev)
            # A, B and E must be floats: a start that ran off to e^710 and beyond (a data
            # term so steep it acts as a step, seen on bootstrap resamples) is no fit.
            finite = np.all(np.isfinite(sol.x)) and np.isfinite(sol.fun)
            finite = finite and bool(np.max(sol.x[:3]) < _MAX_LOG_CONSTANT)
            if finite and (best is None or sol.fun < best.fun):
                best = sol
    if best is None:
        raise ValueError(
            "fit_chinchilla: no start gave a finite objective with finite A, B and E; "
            "check the data"
        )
    theta = best.x
    total, _ = _huber_objective(theta, ln, ld, ly, delta, 1.0)
    a_log, b_log, e_log, alpha, beta = (float(v) for v in theta)
    log_pred = np.logaddexp(np.logaddexp(a_log - alpha * ln, b_log - beta * ld), e_log)
    res = ly - log_pred
    return ChinchillaFit(
        E=math.exp(e_log),
        A=math.exp(a_log),
        B=math.exp(b_log),
        alpha=alpha,
        beta=beta,
        r2=_r2(ly, res),
        objective=total,
        n_starts=int(starts.shape[0]),
        n_iter=int(best.nit),
        n_evals=n_evals,
        delta=delta,
        reduction=reduction,
        residuals=_readonly(res),
    )


# --------------------------------------------------------------------------------------
# Hoffmann et al. (2022), Approaches 2 and 1
# --------------------------------------------------------------------------------------


def _per_token(flops_per_token: Callable[[np.ndarray], np.ndarray] | None, n: np.ndarray):
    """FLOPs per token of N parameters: ``flops_per_token(n)``, or 6·N when it is None."""
    if flops_per_token is None:
        return 6.0 * n
    if not callable(flops_per_token):
        raise ValueError(
            "flops_per_token must be None (C = 6·N·D) or a function of N, such as "
            f"helpers.compute.FlopsPerToken(configs); got {flops_per_token!r:.60}"
        )
    return np.asarray(flops_per_token(n), dtype=float)


def _allocation_law(flops: np.ndarray, n_opt: np.ndarray, flops_per_token=None) -> dict:
    """Fit log N_opt = log k_n + a log C. With C = 6·N·D (``flops_per_token`` None),
    D_opt = C/(6 N_opt) then has b = 1 − a exactly; otherwise D_opt = C / cost(N_opt) is
    fitted as k_d·C^b on its own. Returns the fields of an :class:`AllocationFit`."""
    lc, lnopt = np.log(flops), np.log(n_opt)
    slope, intercept = np.polyfit(lc, lnopt, 1)
    res = lnopt - (intercept + slope * lc)
    k_n = math.exp(intercept)
    if flops_per_token is None:
        # log D_opt = log C − log 6 − log N_opt  ⇒  D_opt = (1/(6 k_n))·C^(1 − a) exactly.
        b, k_d = 1.0 - float(slope), 1.0 / (6.0 * k_n)
    else:
        b, log_k_d = np.polyfit(lc, np.log(flops / _per_token(flops_per_token, n_opt)), 1)
        b, k_d = float(b), math.exp(log_k_d)
    return dict(a=float(slope), b=b, k_n=k_n, k_d=k_d, r2=_r2(lnopt, res), residuals=_readonly(res))


@dataclass(frozen=True)
class AllocationFit:
    """Compute-optimal allocation N_opt = k_n·C^a, D_opt = k_d·C^b (b = 1 − a when C = 6ND;
    with an exact count of C, where a small model costs more than 6N per token, a + b ≠ 1).

    ``r2`` and ``residuals`` belong to the fit of log N_opt on log C over the points used.
    """

    a: float
    b: float
    k_n: float
    k_d: float
    r2: float
    residuals: np.ndarray = field(repr=False, compare=False)

    def n_opt(self, flops: float | np.ndarray) -> float | np.ndarray:
        """Compute-optimal parameters at ``flops`` FLOPs.

        Introduced in: chapters/03_algorithm.ipynb
        """
        c = positive_array("flops", flops)
        out = self.k_n * c**self.a
        return out if np.ndim(flops) else float(out[0])

    def d_opt(self, flops: float | np.ndarray) -> float | np.ndarray:
        """Compute-optimal training tokens at ``flops`` FLOPs.

        Introduced in: chapters/03_algorithm.ipynb
        """
        c = positive_array("flops", flops)
        out = self.k_d * c**self.b
        return out if np.ndim(flops) else float(out[0])


@dataclass(frozen=True)
class FrontierFit(AllocationFit):
    """A fitted law's compute-optimal frontier (:meth:`ChinchillaFit.frontier`): aligned
    arrays over the budgets ``flops`` (FLOPs) of ``n_opt_per_flops`` (parameters),
    ``d_opt_per_flops`` (tokens) and the law's loss there, ``loss_opt``; ``a`` and ``b`` are
    the log-log slopes of N_opt and D_opt over those budgets."""

    flops: np.ndarray = field(default=None, repr=False, compare=False)
    n_opt_per_flops: np.ndarray = field(default=None, repr=False, compare=False)
    d_opt_per_flops: np.ndarray = field(default=None, repr=False, compare=False)
    loss_opt: np.ndarray = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class IsoFlopFit(AllocationFit):
    """Approach 2: one parabola of loss in log N per compute budget, then N_opt ∝ C^a.

    Per budget (arrays aligned with ``budgets``, in FLOPs): ``n_runs``, the parabola's
    minimiser ``n_opt`` (parameters; NaN when the parabola opens downwards or has < 3
    sizes), ``d_opt`` = C/(6·n_opt) tokens (or C / cost(n_opt), :func:`fit_isoflop`), the
    parabola's minimum ``loss_opt``, its ``curvature`` (d²L/d(ln N)²), and ``status``:
    "interior" (minimum inside the sizes tried), "edge" (minimum extrapolated beyond
    them), "concave" or "too few sizes".
    ``used`` marks the budgets the power law was fitted on.
    """

    budgets: np.ndarray = field(default=None, repr=False, compare=False)
    n_runs: np.ndarray = field(default=None, repr=False, compare=False)
    n_opt_per_budget: np.ndarray = field(default=None, repr=False, compare=False)
    d_opt_per_budget: np.ndarray = field(default=None, repr=False, compare=False)
    loss_opt: np.ndarray = field(default=None, repr=False, compare=False)
    curvature: np.ndarray = field(default=None, repr=False, compare=False)
    status: tuple[str, ...] = ()
    used: np.ndarray = field(default=None, repr=False, compare=False)

    @property
    def interior(self) -> np.ndarray:
        """True for budgets whose parabola has its minimum inside the sizes tried."""
        return np.array([s == "interior" for s in self.status])


def _group_budgets(flops: np.ndarray, rtol: float) -> list[np.ndarray]:
    order = np.argsort(flops, kind="stable")
    groups: list[list[int]] = []
    anchor = None
    for i in order:
        if anchor is None or flops[i] > anchor * (1.0 + rtol):
            groups.append([])
            anchor = flops[i]
        groups[-1].append(int(i))
    return [np.array(g) for g in groups]


def fit_isoflop(
    n_params: Sequence[float] | np.ndarray,
    n_tokens: Sequence[float] | np.ndarray,
    loss: Sequence[float] | np.ndarray,
    flops: Sequence[float] | np.ndarray,
    *,
    include_exterior: bool = False,
    rtol: float = 1e-3,
    flops_per_token: Callable[[np.ndarray], np.ndarray] | None = None,
) -> IsoFlopFit:
    """Hoffmann et al. (2022)'s Approach 2: IsoFLOP profiles → N_opt(C) → N_opt ∝ C^a.

    Runs whose ``flops`` (the nominal compute budget each run was planned for, in FLOPs)
    agree within ``rtol`` form one IsoFLOP profile. For each, a parabola of loss in ln N
    (``n_params`` in parameters) gives N_opt(C) at its minimum, and D_opt = C/(6·N_opt), or
    C / ``flops_per_token``(N_opt) when the budgets count exact FLOPs (e.g.
    :class:`helpers.compute.FlopsPerToken` of the sweep's shapes).
    A minimum outside the range of sizes tried is an extrapolation: it is flagged "edge"
    and, unless ``include_exterior``, left out of the power-law fit, as are profiles that
    open downwards. ``n_tokens`` (tokens) is checked against C only in length; with C =
    6ND the returned exponents satisfy a + b = 1. Needs ≥ 2 usable budgets, else ValueError.

    Introduced in: chapters/03_algorithm.ipynb
    """
    n = positive_array("n_params", n_params)
    d = positive_array("n_tokens", n_tokens)
    y = positive_array("loss", loss)
    c = positive_array("flops", flops)
    _same_length(n_params=n, n_tokens=d, loss=y, flops=c)
    if not isinstance(include_exterior, (bool, np.bool_)):
        raise ValueError(f"include_exterior must be True or False, got {include_exterior!r}")
    rtol = in_range("rtol", rtol, 0.0, 0.5)

    groups = _group_budgets(c, rtol)
    k = len(groups)
    budgets = np.empty(k)
    n_runs = np.empty(k, dtype=int)
    n_opt = np.full(k, np.nan)
    loss_opt = np.full(k, np.nan)
    curv = np.full(k, np.nan)
    status: list[str] = []
    for j, idx in enumerate(groups):
        budgets[j] = float(np.exp(np.mean(np.log(c[idx]))))
        n_runs[j] = idx.size
        ln = np.log(n[idx])
        if np.unique(ln).size < 3:
            status.append("too few sizes")
            continue
        p2, p1, p0 = np.polyfit(ln, y[idx], 2)
        curv[j] = 2.0 * p2
        if p2 <= 0:
            status.append("concave")
            continue
        x_min = -p1 / (2.0 * p2)
        n_opt[j] = math.exp(x_min)
        loss_opt[j] = p0 - p1 * p1 / (4.0 * p2)
        status.append("interior" if ln.min() < x_min < ln.max() else "edge")
    d_opt = np.full(k, np.nan)
    found = np.isfinite(n_opt)
    d_opt[found] = budgets[found] / _per_token(flops_per_token, n_opt[found])
    ok = np.array([s == "interior" or (include_exterior and s == "edge") for s in status])
    if ok.sum() < 2:
        counts = {s: status.count(s) for s in sorted(set(status))}
        hint = "" if include_exterior else "; include_exterior=True also uses 'edge' minima"
        raise ValueError(
            f"flops: need at least 2 IsoFLOP budgets with a usable minimum, got {int(ok.sum())} "
            f"of {k} (status counts {counts}){hint}"
        )
    law = _allocation_law(budgets[ok], n_opt[ok], flops_per_token)
    return IsoFlopFit(
        **law,
        budgets=_readonly(budgets),
        n_runs=_readonly(n_runs),
        n_opt_per_budget=_readonly(n_opt),
        d_opt_per_budget=_readonly(d_opt),
        loss_opt=_readonly(loss_opt),
        curvature=_readonly(curv),
        status=tuple(status),
        used=_readonly(ok),
    )


@dataclass(frozen=True)
class TrainingCurve:
    """One run's training curve: ``n_params`` parameters, ``n_tokens`` tokens seen at each
    evaluation, and the ``loss`` (nats per token) measured there."""

    n_params: float
    n_tokens: np.ndarray
    loss: np.ndarray


@dataclass(frozen=True)
class EnvelopeFit(AllocationFit):
    """Approach 1: the lower envelope of loss over FLOPs and the sizes that attain it.

    Aligned arrays over the log-spaced FLOP grid: ``flops`` (FLOPs), ``loss_envelope``,
    ``n_opt_per_flops`` (the N of the curve that attains the envelope), ``d_opt_per_flops``
    (C/(6·N), or C / cost(N) with :func:`fit_envelope`'s ``flops_per_token``), ``at_edge``
    (the winner is the smallest or largest model covering that C,
    so the true optimum may lie beyond the sizes tried) and ``used`` (fitted points).
    """

    flops: np.ndarray = field(default=None, repr=False, compare=False)
    loss_envelope: np.ndarray = field(default=None, repr=False, compare=False)
    n_opt_per_flops: np.ndarray = field(default=None, repr=False, compare=False)
    d_opt_per_flops: np.ndarray = field(default=None, repr=False, compare=False)
    at_edge: np.ndarray = field(default=None, repr=False, compare=False)
    used: np.ndarray = field(default=None, repr=False, compare=False)


def _as_curve(j: int, curve: Any) -> tuple[float, np.ndarray, np.ndarray]:
    if isinstance(curve, TrainingCurve):
        n, t, y = curve.n_params, curve.n_tokens, curve.loss
    elif isinstance(curve, Mapping):
        try:
            n, t, y = curve["n_params"], curve["n_tokens"], curve["loss"]
        except KeyError:
            raise ValueError(
                f"curves[{j}] must have keys 'n_params', 'n_tokens', 'loss'; got {sorted(curve)}"
            ) from None
    else:
        try:
            n, t, y = curve
        except (TypeError, ValueError):
            raise ValueError(
                f"curves[{j}] must be a TrainingCurve, a mapping or a tuple "
                f"(n_params, n_tokens, loss); got {type(curve).__name__}"
            ) from None
    n = positive(f"curves[{j}].n_params", n)
    t = positive_array(f"curves[{j}].n_tokens", t, min_len=2)
    y = positive_array(f"curves[{j}].loss", y, min_len=2)
    if t.size != y.size:
        raise ValueError(
            f"curves[{j}].loss must have as many entries as curves[{j}].n_tokens: "
            f"got {y.size} and {t.size}"
        )
    order = np.argsort(t, kind="stable")
    t, y = t[order], y[order]
    if np.any(np.diff(t) <= 0):
        raise ValueError(f"curves[{j}].n_tokens must hold distinct values")
    return n, t, y


def fit_envelope(
    curves: Sequence[TrainingCurve | Mapping[str, Any] | tuple],
    *,
    n_grid: int = 100,
    exclude_edges: bool = True,
    flops_per_token: Callable[[np.ndarray], np.ndarray] | None = None,
) -> EnvelopeFit:
    """Hoffmann et al. (2022)'s Approach 1: the lower envelope of training curves.

    Each curve (a ``TrainingCurve``, a mapping with keys n_params/n_tokens/loss, or a tuple
    of the three) is placed on a FLOPs axis by C = 6·N·tokens, or C = ``flops_per_token``(N)
    · tokens with an exact count (e.g. :class:`helpers.compute.FlopsPerToken` of the
    curves' shapes; then D_opt = C / cost(N_opt) and a + b ≠ 1). On ``n_grid`` log-spaced C
    between the smallest and largest C seen, each curve covering C is interpolated linearly
    in ln C, and the lowest loss and the N that attains it are recorded; then
    N_opt = k_n·C^a is fitted by least squares in log-log (and D_opt = C/(6·N_opt), so
    b = 1 − a). With ``exclude_edges`` (default) grid points whose winner is the smallest or
    largest model covering that C are left out, since the optimum may lie beyond them.
    Note that an intermediate point of a run with a long cosine schedule overstates the
    loss a run of that length would reach; Hoffmann et al. varied the schedule for this.

    Introduced in: chapters/03_algorithm.ipynb
    """
    if isinstance(curves, (str, bytes)) or not isinstance(curves, Sequence):
        raise ValueError(f"curves must be a sequence of training curves, got {curves!r:.60}")
    if len(curves) < 2:
        raise ValueError(f"curves needs at least 2 runs of different sizes, got {len(curves)}")
    n_grid = positive_int("n_grid", n_grid)
    if n_grid < 2:
        raise ValueError(f"n_grid must be an integer >= 2, got {n_grid}")
    if not isinstance(exclude_edges, (bool, np.bool_)):
        raise ValueError(f"exclude_edges must be True or False, got {exclude_edges!r}")
    parsed = [_as_curve(j, cv) for j, cv in enumerate(curves)]
    sizes = np.array([p[0] for p in parsed])
    if np.unique(sizes).size < 2:
        raise ValueError("curves must include at least 2 different n_params")
    cost = _per_token(flops_per_token, sizes)
    log_c = [np.log(cost[j] * t) for j, (_, t, _) in enumerate(parsed)]
    grid = np.linspace(min(lc[0] for lc in log_c), max(lc[-1] for lc in log_c), n_grid)

    env = np.full(n_grid, np.inf)
    winner = np.full(n_grid, np.nan)
    at_edge = np.ones(n_grid, dtype=bool)
    for g, x in enumerate(grid):
        covering = [j for j, lc in enumerate(log_c) if lc[0] <= x <= lc[-1]]
        for j in covering:
            val = float(np.interp(x, log_c[j], parsed[j][2]))
            if val < env[g]:
                env[g], winner[g] = val, sizes[j]
        cover_sizes = sizes[covering]
        at_edge[g] = cover_sizes.size < 3 or winner[g] in (cover_sizes.min(), cover_sizes.max())
    flops = np.exp(grid)
    used = ~at_edge if exclude_edges else np.isfinite(winner)
    if np.unique(np.log(flops[used])).size < 2 or np.unique(winner[used]).size < 2:
        raise ValueError(
            f"curves: the envelope has {int(used.sum())} usable grid points attained by "
            f"{np.unique(winner[used]).size} sizes; need 2 or more of each "
            "(add sizes between the extremes, or pass exclude_edges=False)"
        )
    law = _allocation_law(flops[used], winner[used], flops_per_token)
    d_opt = np.full(n_grid, np.nan)
    won = np.isfinite(winner)
    d_opt[won] = flops[won] / _per_token(flops_per_token, winner[won])
    return EnvelopeFit(
        **law,
        flops=_readonly(flops),
        loss_envelope=_readonly(env),
        n_opt_per_flops=_readonly(winner),
        d_opt_per_flops=_readonly(d_opt),
        at_edge=_readonly(at_edge),
        used=_readonly(used),
    )


# --------------------------------------------------------------------------------------
# Bootstrap
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BootstrapResult:
    """Percentile bootstrap of scalar attributes of a fit.

    ``estimate[name]`` is the attribute on the full data, ``samples[name]`` its values over
    the successful resamples, ``ci[name]`` the (low, high) percentile interval at ``level``.
    ``n_failed`` counts resamples whose refit raised ValueError (e.g. too few distinct points).
    """

    estimate: Mapping[str, float]
    ci: Mapping[str, tuple[float, float]]
    samples: Mapping[str, np.ndarray] = field(repr=False, compare=False)
    level: float = 0.95
    n_boot: int = 0
    n_failed: int = 0


def _refit_attrs(
    fit_fn: Callable[..., Any],
    attrs: tuple[str, ...],
    fit_kwargs: Mapping[str, Any],
    cols: Sequence[np.ndarray],
) -> tuple[float, ...] | None:
    """One bootstrap refit: the named attributes of ``fit_fn(*cols)``, or None if it fails."""
    try:
        fit = fit_fn(*cols, **fit_kwargs)
    except ValueError:
        return None
    return tuple(float(getattr(fit, name)) for name in attrs)


def bootstrap(
    fit_fn: Callable[..., Any],
    *arrays: Sequence[float] | np.ndarray,
    attrs: Sequence[str] = ("alpha",),
    n_boot: int = 200,
    seed: int = 0,
    level: float = 0.95,
    progress: bool = False,
    workers: int | None = 1,
    **fit_kwargs: Any,
) -> BootstrapResult:
    """Percentile bootstrap: resample the points (rows of ``arrays``) with replacement,
    refit with ``fit_fn(*resampled, **fit_kwargs)``, and report the ``level`` interval of
    each attribute named in ``attrs`` (e.g. "alpha", "beta", "a").

    ``arrays`` are the fit's data columns, all the same length (e.g. n_params, n_tokens,
    loss); units are whatever ``fit_fn`` expects. The same ``seed`` gives the same
    resamples and so the same intervals. Resamples whose refit raises ValueError are
    skipped and counted; if more than half fail, ValueError is raised.

    ``workers`` processes share the refits (``None``: every core this process may use); the
    resamples are drawn first and the refits kept in order, so any number of workers gives
    the same samples. With more than one, ``fit_fn`` must be picklable (a module-level
    function such as :func:`fit_chinchilla`, not a lambda), and a *script* must call
    ``bootstrap`` under ``if __name__ == "__main__":``, as for :func:`helpers.sweep.run_sweep`.

    Introduced in: chapters/05_practice.ipynb
    """
    if not callable(fit_fn):
        raise ValueError(f"fit_fn must be a callable fit function, got {fit_fn!r}")
    if not arrays:
        raise ValueError("arrays: pass the data columns to resample, e.g. n_params, loss")
    cols = []
    for j, arr in enumerate(arrays):
        cols.append(number_array(f"arrays[{j}]", arr))
    n = cols[0].size
    for j, col in enumerate(cols[1:], start=1):
        if col.size != n:
            raise ValueError(f"arrays[{j}] must have {n} entries like arrays[0], got {col.size}")
    if n < 2:
        raise ValueError(f"arrays need at least 2 points to resample, got {n}")
    if isinstance(attrs, str) or not attrs or not all(isinstance(s, str) for s in attrs):
        raise ValueError(f"attrs must be a non-empty list of attribute names, got {attrs!r}")
    n_boot = positive_int("n_boot", n_boot)
    non_negative_int("seed", seed)
    level = in_range("level", level, 0.0, 1.0)
    if level in (0.0, 1.0):
        raise ValueError(f"level must be strictly between 0 and 1, got {level}")

    full = fit_fn(*cols, **fit_kwargs)
    estimate = {}
    for name in attrs:
        if not hasattr(full, name):
            raise ValueError(
                f"attrs: the fit result {type(full).__name__} has no attribute {name!r}"
            )
        estimate[name] = float(getattr(full, name))

    if workers is None:
        workers = usable_cores()
    workers = positive_int("workers", workers)

    rng = np.random.default_rng(seed)
    resamples = [rng.integers(0, n, size=n) for _ in range(n_boot)]  # drawn before any refit
    jobs = ([col[idx] for col in cols] for idx in resamples)
    refit = functools.partial(_refit_attrs, fit_fn, tuple(attrs), fit_kwargs)
    if workers == 1 or n_boot == 1:
        refits = map(refit, jobs)
        pool = None
    else:
        import concurrent.futures as cf

        pool = cf.ProcessPoolExecutor(max_workers=min(workers, n_boot), mp_context=mp_context())
        refits = pool.map(refit, jobs, chunksize=max(1, n_boot // (4 * workers)))
    draws: dict[str, list[float]] = {name: [] for name in attrs}
    n_failed = 0
    try:
        for values in tqdm(refits, total=n_boot, desc="bootstrap", disable=not progress):
            if values is None:
                n_failed += 1
                continue
            for name, value in zip(attrs, values, strict=True):
                draws[name].append(value)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    if n_failed * 2 > n_boot:
        raise ValueError(
            f"n_boot: {n_failed} of {n_boot} refits failed; the data are too few to bootstrap"
        )
    tail = 100.0 * (1.0 - level) / 2.0
    samples = {name: _readonly(np.array(v, dtype=float)) for name, v in draws.items()}
    ci = {
        name: (float(np.percentile(s, tail)), float(np.percentile(s, 100.0 - tail)))
        for name, s in samples.items()
    }
    return BootstrapResult(
        estimate=MappingProxyType(estimate),
        ci=MappingProxyType(ci),
        samples=MappingProxyType(samples),
        level=level,
        n_boot=n_boot,
        n_failed=n_failed,
    )
