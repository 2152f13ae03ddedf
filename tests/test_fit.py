"""Tests of helpers.fit: each fit recovers a known law from seeded synthetic data."""

from __future__ import annotations

import time

import numpy as np
import pytest

from helpers import fit, laws

TRUTH = laws.HOFFMANN_UNROUNDED
A_TRUE = TRUTH.beta / (TRUTH.alpha + TRUTH.beta)
#: One start near typical values: enough for resampled fits of well-behaved data.
ONE_START = {"a": [5.0], "b": [5.0], "e": [0.5], "alpha": [0.5], "beta": [0.5]}


def chinchilla_data(n_points: int, seed: int, noise: float = 0.005):
    """N ∈ [1e7, 1e10], D ∈ [1e8, 1e12] log-uniform; loss with log-normal noise."""
    rng = np.random.default_rng(seed)
    n = np.exp(rng.uniform(np.log(1e7), np.log(1e10), n_points))
    d = np.exp(rng.uniform(np.log(1e8), np.log(1e12), n_points))
    loss = laws.chinchilla_loss(n, d, TRUTH) * np.exp(rng.normal(0.0, noise, n_points))
    return n, d, loss


@pytest.fixture(scope="module")
def data200():
    return chinchilla_data(200, seed=0)


@pytest.fixture(scope="module")
def fit200(data200):
    return fit.fit_chinchilla(*data200)


# ----------------------------------------------------------------------------- Chinchilla


def test_chinchilla_recovers_known_law(fit200, data200):
    for name in ("E", "alpha", "beta"):
        assert getattr(fit200, name) == pytest.approx(getattr(TRUTH, name), rel=0.03), name
    for name in ("A", "B"):
        assert getattr(fit200, name) == pytest.approx(getattr(TRUTH, name), rel=0.20), name
    assert fit200.a == pytest.approx(A_TRUE, abs=0.01)
    assert fit200.a + fit200.b == pytest.approx(1.0)
    assert fit200.r2 > 0.99
    assert fit200.n_starts == 32
    assert fit200.residuals.shape == (200,)
    # The optimum is at least as good as the law that made the data.
    assert fit200.objective <= fit.chinchilla_objective(TRUTH, *data200) * (1 + 1e-9)


def test_chinchilla_result_plugs_into_laws(fit200):
    params = fit200.params
    assert isinstance(params, laws.ChinchillaParams)
    n_opt, d_opt = laws.compute_optimal(1e22, params)
    n_true, d_true = laws.compute_optimal(1e22, TRUTH)
    assert n_opt == pytest.approx(n_true, rel=0.15)
    assert 6 * n_opt * d_opt == pytest.approx(1e22)
    assert fit200.predict(1e9, 2e10) == pytest.approx(laws.chinchilla_loss(1e9, 2e10, params))
    truth = laws.chinchilla_loss(1e9, 2e10, TRUTH)
    assert fit200.predict(1e9, 2e10) == pytest.approx(truth, rel=0.01)


def test_chinchilla_coarse_grid_is_fast_on_40_points():
    data = chinchilla_data(40, seed=1)
    start = time.perf_counter()
    result = fit.fit_chinchilla(*data, grid="coarse")
    assert time.perf_counter() - start <= 20.0
    assert result.alpha == pytest.approx(TRUTH.alpha, rel=0.1)


def test_chinchilla_objective_is_huber_sum():
    n, d, loss = chinchilla_data(10, seed=2)
    r = np.log(laws.chinchilla_loss(n, d, TRUTH)) - np.log(loss)
    delta = 1e-3
    huber = np.where(np.abs(r) <= delta, r**2 / 2, delta * (np.abs(r) - delta / 2))
    got = fit.chinchilla_objective(TRUTH, n, d, loss, delta=delta)
    assert got == pytest.approx(huber.sum(), rel=1e-9)
    mean = fit.chinchilla_objective(TRUTH, n, d, loss, delta=delta, reduction="mean")
    assert mean == pytest.approx(huber.mean(), rel=1e-9)


def test_mean_reduction_stops_early(fit200, data200):
    """Besiroglu et al. (2024): with a mean, L-BFGS stops far from the optimum."""
    mean_fit = fit.fit_chinchilla(*data200, reduction="mean")
    assert mean_fit.reduction == "mean"
    # Both objectives are reported as sums, so they compare directly.
    assert mean_fit.objective > 1.5 * fit200.objective
    assert mean_fit.n_iter < fit200.n_iter
    assert abs(mean_fit.A / TRUTH.A - 1) > 0.2  # far from the law that made the data


def test_chinchilla_skips_starts_whose_constants_overflow(data200, monkeypatch):
    # A start that runs off to B = e^800 has a finite objective but no float B: skip it.
    real = fit.optimize.minimize
    calls = []

    def minimize(fun, x0, **kwargs):
        sol = real(fun, x0, **kwargs)
        calls.append(1)
        if len(calls) == 1:  # the first start "wins" with an overflowing constant
            sol.x = np.array([sol.x[0], 800.0, sol.x[2], sol.x[3], 50.0])
            sol.fun = -1.0
        return sol

    monkeypatch.setattr(fit.optimize, "minimize", minimize)
    result = fit.fit_chinchilla(*data200)
    assert np.isfinite(result.B) and result.objective >= 0
    monkeypatch.setattr(
        fit.optimize,
        "minimize",
        lambda fun, x0, **kw: type(
            "S", (), {"x": np.array([0.0, 800.0, 0.0, 0.3, 0.3]), "fun": 0.1, "nfev": 1, "nit": 1}
        )(),
    )
    with pytest.raises(ValueError, match="finite A, B and E"):
        fit.fit_chinchilla(*data200)


def test_chinchilla_custom_grid(data200):
    result = fit.fit_chinchilla(*data200, grid=ONE_START)
    assert result.n_starts == 1
    assert result.alpha == pytest.approx(TRUTH.alpha, rel=0.03)


def test_chinchilla_restores_blas_threads():
    from threadpoolctl import threadpool_info

    def blas_threads():
        return [d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas"]

    before = blas_threads()
    fit.fit_chinchilla(*chinchilla_data(10, seed=3), grid=ONE_START)
    assert blas_threads() == before


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"n_params": [1e8] * 4, "n_tokens": [1e9] * 4, "loss": [3.0] * 4}, "at least 5"),
        ({"loss": [3.0, -1.0, 3.0, 3.0, 3.0, 3.0]}, "loss"),
        ({"n_tokens": [1e9, np.nan, 1e9, 1e9, 1e9, 1e9]}, "n_tokens"),
        ({"n_params": [1e8] * 5}, "n_params"),
        ({"reduction": "median"}, "reduction"),
        ({"delta": 0.0}, "delta"),
        ({"grid": "huge"}, "grid"),
        ({"grid": {"a": [1.0]}}, "grid"),
    ],
)
def test_chinchilla_bad_input(kwargs, needle):
    args = {
        "n_params": np.geomspace(1e7, 1e9, 6),
        "n_tokens": np.geomspace(1e9, 1e11, 6),
        "loss": np.linspace(3.0, 2.5, 6),
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=needle):
        fit.fit_chinchilla(**args)


# ----------------------------------------------------------------------------- power laws


def test_power_law_without_offset_recovers_exponent():
    rng = np.random.default_rng(3)
    x = np.geomspace(1e3, 1e8, 30)
    y = 3.0 * x**-0.5 * np.exp(rng.normal(0, 0.01, x.size))
    result = fit.fit_power_law(x, y, offset=False)
    assert result.alpha == pytest.approx(0.5, abs=0.01)
    assert result.k == pytest.approx(3.0, rel=0.1)
    assert result.c == 0.0
    assert result.r2 > 0.99
    assert result.predict(1e4) == pytest.approx(3.0 * 1e4**-0.5, rel=0.02)


def test_power_law_with_offset_recovers_floor_and_exponent():
    rng = np.random.default_rng(4)
    x = np.geomspace(1e3, 1e7, 30)
    y = (2.0 + 50.0 * x**-0.3) * np.exp(rng.normal(0, 0.002, x.size))
    result = fit.fit_power_law(x, y)
    assert result.alpha == pytest.approx(0.3, rel=0.05)
    assert result.c == pytest.approx(2.0, rel=0.03)
    assert result.k == pytest.approx(50.0, rel=0.2)
    # Ignoring the floor gives a much smaller, wrong exponent.
    assert fit.fit_power_law(x, y, offset=False).alpha < 0.2


@pytest.mark.parametrize(
    ("x", "y", "offset", "needle"),
    [
        ([1.0, 2.0], [3.0, 2.0], True, "at least 3 points"),
        ([1.0], [3.0], False, "at least"),
        ([1.0, 0.0, 3.0], [3.0, 2.0, 1.0], True, "x"),
        ([1.0, 2.0, 3.0], [3.0, np.nan, 1.0], True, "y"),
        ([1.0, 2.0, 3.0], [3.0, 2.0], True, "y must have as many"),
        ([2.0, 2.0, 2.0], [3.0, 2.0, 1.0], True, "distinct"),
        ([1.0, 2.0, 3.0], [3.0, 2.0, 1.0], "yes", "offset"),
    ],
)
def test_power_law_bad_input(x, y, offset, needle):
    with pytest.raises(ValueError, match=needle):
        fit.fit_power_law(x, y, offset=offset)


# ----------------------------------------------------------------------------- Kaplan


def test_kaplan_recovers_joint_law():
    k = laws.KAPLAN
    rng = np.random.default_rng(5)
    n = np.exp(rng.uniform(np.log(1e6), np.log(1e10), 60))
    d = np.exp(rng.uniform(np.log(1e8), np.log(1e11), 60))
    loss = laws.kaplan_loss(n, d) * np.exp(rng.normal(0, 0.005, 60))
    result = fit.fit_kaplan(n, d, loss)
    assert result.alpha_n == pytest.approx(k.joint_alpha_n, rel=0.05)
    assert result.alpha_d == pytest.approx(k.joint_alpha_d, rel=0.05)
    assert result.r2 > 0.99
    assert result.predict(1e9, 1e10) == pytest.approx(laws.kaplan_loss(1e9, 1e10), rel=0.01)


def test_kaplan_bad_input():
    with pytest.raises(ValueError, match="at least 4"):
        fit.fit_kaplan([1e6, 1e7, 1e8], [1e9, 1e9, 1e9], [3.0, 2.8, 2.6])
    with pytest.raises(ValueError, match="loss"):
        fit.fit_kaplan([1e6] * 4, [1e9] * 4, [3.0, 0.0, 2.0, 1.0])


# ----------------------------------------------------------------------------- Approach 2


def isoflop_data(budgets, spread=8.0, centre=1.0, seed=6):
    """Nine sizes per budget from N_opt·centre/spread to N_opt·centre·spread."""
    rng = np.random.default_rng(seed)
    n_all, d_all, loss_all, c_all = [], [], [], []
    for c in budgets:
        n_opt, _ = laws.compute_optimal(c, TRUTH)
        n = n_opt * centre * np.geomspace(1 / spread, spread, 9)
        d = c / (6 * n)
        loss = laws.chinchilla_loss(n, d, TRUTH) * np.exp(rng.normal(0, 0.001, n.size))
        n_all += list(n)
        d_all += list(d)
        loss_all += list(loss)
        c_all += [c] * n.size
    return n_all, d_all, loss_all, c_all


def test_isoflop_recovers_allocation_exponent():
    budgets = [1e18, 1e19, 1e20, 1e21]
    result = fit.fit_isoflop(*isoflop_data(budgets))
    assert result.a == pytest.approx(A_TRUE, abs=0.02)
    assert result.a + result.b == pytest.approx(1.0)
    assert result.status == ("interior",) * 4
    assert result.interior.all()
    want = [laws.compute_optimal(c, TRUTH)[0] for c in budgets]
    np.testing.assert_allclose(result.n_opt_per_budget, want, rtol=0.1)
    np.testing.assert_allclose(result.d_opt_per_budget * 6 * result.n_opt_per_budget, budgets)
    assert result.n_opt(1e20) == pytest.approx(want[2], rel=0.1)


def test_isoflop_flags_extrapolated_minimum():
    n, d, loss, c = isoflop_data([1e18, 1e19, 1e20])
    n2, d2, loss2, c2 = isoflop_data([1e21], spread=2.0, centre=1 / 30)  # all far too small
    result = fit.fit_isoflop(n + n2, d + d2, loss + loss2, c + c2)
    assert result.status == ("interior", "interior", "interior", "edge")
    assert list(result.used) == [True, True, True, False]
    assert result.a == pytest.approx(A_TRUE, abs=0.03)
    with pytest.raises(ValueError, match="flops"):
        fit.fit_isoflop(n[:9] + n2, d[:9] + d2, loss[:9] + loss2, c[:9] + c2)
    forced = fit.fit_isoflop(
        n[:9] + n2, d[:9] + d2, loss[:9] + loss2, c[:9] + c2, include_exterior=True
    )
    assert forced.used.sum() == 2


def test_isoflop_bad_input():
    with pytest.raises(ValueError, match="flops must have as many"):
        fit.fit_isoflop([1e6, 2e6, 3e6], [1e8, 1e8, 1e8], [3.0, 2.9, 3.1], [1e15, 1e15])


# ----------------------------------------------------------------------------- Approach 1


def envelope_curves():
    tokens = np.geomspace(1e7, 1e12, 60)
    return [
        fit.TrainingCurve(n, tokens, laws.chinchilla_loss(n, tokens, TRUTH))
        for n in np.geomspace(1e7, 1e10, 16)
    ]


def test_envelope_recovers_allocation_exponent():
    curves = envelope_curves()
    result = fit.fit_envelope(curves)
    assert result.a == pytest.approx(A_TRUE, abs=0.03)
    assert result.at_edge.any() and not result.at_edge.all()
    assert not (result.used & result.at_edge).any()
    sizes = {cv.n_params for cv in curves}
    assert set(result.n_opt_per_flops[result.used]) <= sizes
    # Tuples and mappings are accepted too.
    as_tuples = [(cv.n_params, cv.n_tokens, cv.loss) for cv in curves]
    assert fit.fit_envelope(as_tuples).a == pytest.approx(result.a)


def test_envelope_bad_input():
    tokens = np.geomspace(1e7, 1e9, 5)
    with pytest.raises(ValueError, match="curves needs at least 2"):
        fit.fit_envelope([(1e6, tokens, np.linspace(3, 2, 5))])
    with pytest.raises(ValueError, match=r"curves\[1\].loss"):
        fit.fit_envelope([(1e6, tokens, np.linspace(3, 2, 5)), (2e6, tokens, [3.0, 2.0])])
    with pytest.raises(ValueError, match="n_grid"):
        fit.fit_envelope(envelope_curves(), n_grid=1)


# ----------------------------------------------------------------------------- exact compute


def truth_fit() -> fit.ChinchillaFit:
    """The published law as a ChinchillaFit (for its frontier)."""
    t = TRUTH
    return fit.ChinchillaFit(
        E=t.E, A=t.A, B=t.B, alpha=t.alpha, beta=t.beta, r2=1.0, objective=0.0, n_starts=1,
        n_iter=0, n_evals=0, delta=1e-3, reduction="sum", residuals=np.zeros(1),
    )  # fmt: skip


def test_frontier_with_6n_is_the_closed_form():
    budgets = np.geomspace(1e18, 1e24, 7)
    front = truth_fit().frontier(budgets)
    n_want, d_want = laws.compute_optimal(budgets, TRUTH)
    np.testing.assert_allclose(front.n_opt_per_flops, n_want, rtol=1e-6)
    np.testing.assert_allclose(front.d_opt_per_flops, d_want, rtol=1e-6)
    assert front.a == pytest.approx(A_TRUE, abs=1e-6) and front.a + front.b == pytest.approx(1)
    with pytest.raises(ValueError, match="flops"):
        truth_fit().frontier([1e20])
    with pytest.raises(ValueError, match="flops_per_token"):
        truth_fit().frontier(budgets, flops_per_token=3.0)


def test_frontier_with_a_cost_that_falls_per_parameter():
    # cost(N) = 6 N^(1 - eps) · N0^eps: small models cost more per parameter. Minimising
    # A/N^alpha + B (cost(N)/C)^beta gives N_opt ∝ C^(beta / (alpha + beta (1 - eps))).
    eps, n0 = 0.1, 1e9
    cost = lambda n: 6.0 * n ** (1 - eps) * n0**eps  # noqa: E731
    front = truth_fit().frontier(np.geomspace(1e18, 1e24, 7), cost)
    want = TRUTH.beta / (TRUTH.alpha + TRUTH.beta * (1 - eps))
    assert front.a == pytest.approx(want, abs=1e-5) and front.a > A_TRUE
    assert front.b == pytest.approx(1 - (1 - eps) * want, abs=1e-5)
    np.testing.assert_allclose(front.d_opt_per_flops * cost(front.n_opt_per_flops), front.flops)


def test_isoflop_and_envelope_with_exact_compute():
    n, d, loss, c = isoflop_data([1e18, 1e19, 1e20, 1e21])
    six = fit.fit_isoflop(n, d, loss, c)
    same = fit.fit_isoflop(n, d, loss, c, flops_per_token=lambda x: 6.0 * x)
    assert same.a == pytest.approx(six.a) and same.b == pytest.approx(six.b)
    cost = lambda x: 9.0 * x  # noqa: E731 - 1.5x the FLOPs of 6N at every size
    dearer = fit.fit_isoflop(n, d, loss, c, flops_per_token=cost)
    np.testing.assert_allclose(dearer.d_opt_per_budget * cost(dearer.n_opt_per_budget), c[::9])
    curves = envelope_curves()
    env = fit.fit_envelope(curves, flops_per_token=lambda x: 6.0 * x)
    assert env.a == pytest.approx(fit.fit_envelope(curves).a)
    with pytest.raises(ValueError, match="flops_per_token"):
        fit.fit_envelope(curves, flops_per_token="exact")


# ----------------------------------------------------------------------------- bootstrap


def power_law_sample(n_points: int, seed: int):
    rng = np.random.default_rng(seed)
    x = np.geomspace(1e3, 1e8, n_points)
    return x, 3.0 * x**-0.5 * np.exp(rng.normal(0, 0.05, n_points))


def test_bootstrap_covers_truth_and_widens_with_fewer_points():
    """Over 30 seeded data sets, the 95 % intervals hold the true exponent most of the time
    (measured: ≈ 94 % at 80 points, ≈ 88 % at 10 over 200 sets), and are wider with 10
    points than with 80."""
    kw = {"attrs": ("alpha",), "n_boot": 200, "offset": False}
    coverage, width = {}, {}
    for n_points in (80, 10):
        hits, widths = [], []
        for s in range(30):
            res = fit.bootstrap(
                fit.fit_power_law, *power_law_sample(n_points, 100 + s), seed=s, **kw
            )
            lo, hi = res.ci["alpha"]
            hits.append(lo < 0.5 < hi)
            widths.append(hi - lo)
        coverage[n_points], width[n_points] = np.mean(hits), np.mean(widths)
    assert coverage[80] >= 0.75 and coverage[10] >= 0.75
    assert width[10] > 1.5 * width[80]


def test_bootstrap_is_seeded():
    data = power_law_sample(20, seed=8)
    first = fit.bootstrap(fit.fit_power_law, *data, attrs=("alpha", "k"), n_boot=50, seed=3)
    again = fit.bootstrap(fit.fit_power_law, *data, attrs=("alpha", "k"), n_boot=50, seed=3)
    other = fit.bootstrap(fit.fit_power_law, *data, attrs=("alpha", "k"), n_boot=50, seed=4)
    assert first.ci == again.ci
    assert first.ci != other.ci
    assert first.samples["alpha"].size + first.n_failed == 50
    assert first.estimate["alpha"] == pytest.approx(fit.fit_power_law(*data).alpha)


def test_bootstrap_workers_give_the_same_samples():
    data = chinchilla_data(30, seed=5)
    kw = {"attrs": ("alpha", "a"), "n_boot": 12, "seed": 2, "grid": ONE_START}
    alone = fit.bootstrap(fit.fit_chinchilla, *data, workers=1, **kw)
    shared = fit.bootstrap(fit.fit_chinchilla, *data, workers=2, **kw)
    for name in kw["attrs"]:
        np.testing.assert_array_equal(shared.samples[name], alone.samples[name])
    assert shared.ci == alone.ci and shared.n_failed == alone.n_failed


def test_bootstrap_chinchilla_exponents():
    data = chinchilla_data(60, seed=9)
    res = fit.bootstrap(
        fit.fit_chinchilla,
        *data,
        attrs=("alpha", "beta", "a"),
        n_boot=25,
        seed=1,
        grid=ONE_START,
    )
    assert res.ci["alpha"][0] < TRUTH.alpha < res.ci["alpha"][1]
    assert res.ci["beta"][0] < TRUTH.beta < res.ci["beta"][1]
    assert res.ci["a"][0] < A_TRUE < res.ci["a"][1]


def test_bootstrap_bad_input():
    x, y = power_law_sample(10, seed=0)
    with pytest.raises(ValueError, match="attrs"):
        fit.bootstrap(fit.fit_power_law, x, y, attrs=("gamma",), n_boot=5)
    with pytest.raises(ValueError, match="n_boot"):
        fit.bootstrap(fit.fit_power_law, x, y, n_boot=0)
    with pytest.raises(ValueError, match=r"arrays\[1\]"):
        fit.bootstrap(fit.fit_power_law, x, y[:5], n_boot=5)
    with pytest.raises(ValueError, match="seed"):
        fit.bootstrap(fit.fit_power_law, x, y, seed=-1)
    with pytest.raises(ValueError, match="level"):
        fit.bootstrap(fit.fit_power_law, x, y, level=1.0)
    with pytest.raises(ValueError, match="workers"):
        fit.bootstrap(fit.fit_power_law, x, y, n_boot=5, workers=0)
