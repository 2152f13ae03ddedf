"""Time Hoffmann et al. (2022)'s full initialisation grid against the coarse one.

Both grids fit the same synthetic data — losses drawn from a published Chinchilla law with
0.5 % multiplicative log-normal noise, N ∈ [1e7, 1e10], D ∈ [1e8, 1e12] — at 40 and 200
points. Prints each fit's time (coarse: median of 5), the full/coarse time ratio, and
whether the two reach the same optimum (objective and parameters). Pure NumPy/SciPy,
BLAS on one thread (as fit_chinchilla sets it); about 1.5 minutes on a loaded 2-core
machine.

Run: .venv/bin/python benchmarks/fit_grid.py
"""

from __future__ import annotations

import time

import numpy as np

from helpers import fit, laws

NAMES = ("E", "A", "B", "alpha", "beta")


def synthetic(params: laws.ChinchillaParams, n_points: int, seed: int):
    """Seeded (n_params, n_tokens, loss) drawn log-uniformly, with 0.5 % log-normal noise."""
    rng = np.random.default_rng(seed)
    n = np.exp(rng.uniform(np.log(1e7), np.log(1e10), n_points))
    d = np.exp(rng.uniform(np.log(1e8), np.log(1e12), n_points))
    loss = laws.chinchilla_loss(n, d, params) * np.exp(rng.normal(0.0, 0.005, n_points))
    return n, d, loss


def timed(grid: str, data, repeats: int) -> tuple[fit.ChinchillaFit, float]:
    """The fit and its median wall time over ``repeats`` runs (timing here is noisy)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fit.fit_chinchilla(*data, grid=grid)
        times.append(time.perf_counter() - start)
    return result, float(np.median(times))


def main() -> None:
    if fit.threadpool_limits is not None:
        how = "threadpoolctl"
    elif fit._scipy_openblas_threads() is not None:
        how = "scipy's bundled OpenBLAS"
    else:
        how = "nothing found: BLAS threads not limited"
    print(f"BLAS limited to one thread during L-BFGS-B via: {how}")
    print(
        f"{'law':<22}{'points':>7}{'grid':>8}{'starts':>8}{'time s':>9}{'objective':>13}  "
        + "  ".join(f"{k:>8}" for k in NAMES)
    )
    cases = ((laws.HOFFMANN_UNROUNDED, 40), (laws.HOFFMANN_UNROUNDED, 200), (laws.BESIROGLU, 40))
    for law, n_points in cases:
        data = synthetic(law, n_points, seed=n_points)
        coarse, t_coarse = timed("coarse", data, repeats=5)
        full, t_full = timed("full", data, repeats=1)
        for name, res, t in (("coarse", coarse, t_coarse), ("full", full, t_full)):
            print(
                f"{law.source[:21]:<22}{n_points:>7}{name:>8}{res.n_starts:>8}{t:>9.2f}"
                f"{res.objective:>13.6e}  " + "  ".join(f"{getattr(res, k):>8.4g}" for k in NAMES)
            )
        rel_obj = (coarse.objective - full.objective) / full.objective
        rel_par = max(abs(getattr(coarse, k) / getattr(full, k) - 1) for k in NAMES)
        same = abs(rel_obj) < 1e-6 and rel_par < 1e-3
        print(
            f"  -> full/coarse time ratio {t_full / t_coarse:.0f}x; objective coarse-full "
            f"{rel_obj:+.2e} (relative); largest parameter difference {rel_par:.2e}; "
            f"same optimum: {'yes' if same else 'NO'}"
        )


if __name__ == "__main__":
    main()
