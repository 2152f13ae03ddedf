"""Tests of helpers.plot: every plot runs, returns its Axes, uses log axes and labels them."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display in tests

import matplotlib.pyplot as plt
import numpy as np
import pytest

from helpers import plot
from helpers.fit import fit_isoflop, fit_power_law

# A synthetic grid: 3 sizes x 3 budgets from a Chinchilla-like law with an interior optimum.
N = np.repeat([1e4, 3e4, 1e5], 3)
D = np.tile([1e6, 2e6, 4e6], 3)
LOSS = 1.5 + 40 / N**0.4 + 60 / D**0.3


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _legend_texts(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_power_law_draws_points_and_fit() -> None:
    x = np.array([1e3, 1e4, 1e5, 1e6])
    y = 5.0 * x**-0.1
    fit = fit_power_law(x, y, offset=False)
    ax = plot.power_law(x, y, fit, xlabel="parameters N", ylabel="loss (nats/token)", extend=2)
    assert isinstance(ax, matplotlib.axes.Axes)
    assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")
    assert ax.get_xlabel() == "parameters N" and ax.get_ylabel() == "loss (nats/token)"
    (line,) = ax.get_lines()
    gx, gy = line.get_data()
    assert gx.min() == pytest.approx(500) and gx.max() == pytest.approx(2e6)  # extended 2x
    np.testing.assert_allclose(gy, 5.0 * gx**-0.1, rtol=1e-9)  # the fit's own curve
    assert any("0.100" in t for t in _legend_texts(ax))  # the exponent is in the label


def test_power_law_draws_on_a_given_axes_and_checks_input() -> None:
    _, ax = plt.subplots()
    assert plot.power_law([1, 2], [3, 4], xlabel="x (u)", ylabel="y (u)", ax=ax) is ax
    assert not ax.get_lines()  # no fit, no line
    with pytest.raises(ValueError, match="y must have as many"):
        plot.power_law([1, 2, 3], [1, 2], xlabel="x", ylabel="y")
    with pytest.raises(ValueError, match="x must hold finite numbers > 0"):
        plot.power_law([0, 2], [1, 2], xlabel="x", ylabel="y")
    with pytest.raises(ValueError, match="xlabel and ylabel"):
        plot.power_law([1, 2], [1, 2], xlabel="", ylabel="y")
    with pytest.raises(ValueError, match="extend"):
        plot.power_law([1, 2], [1, 2], xlabel="x", ylabel="y", extend=0.5)
    with pytest.raises(ValueError, match="predict"):
        plot.power_law([1, 2], [1, 2], object(), xlabel="x", ylabel="y")
    with pytest.raises(ValueError, match="ax must be"):
        plot.power_law([1, 2], [1, 2], xlabel="x", ylabel="y", ax="axes")


@pytest.mark.parametrize(
    "by, xlabel, first",
    [("n_tokens", "parameters", "D = 1M tokens"), ("n_params", "tokens", "N = 10k")],
)
def test_loss_families_one_line_per_group(by: str, xlabel: str, first: str) -> None:
    ax = plot.loss_families(N, D, LOSS, by=by)
    lines = ax.get_lines()
    assert len(lines) == 3
    assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")
    assert xlabel in ax.get_xlabel() and "nats" in ax.get_ylabel()
    assert _legend_texts(ax)[0] == first
    x0, y0 = lines[0].get_data()
    assert np.all(np.diff(x0) > 0)  # sorted along x
    want = LOSS[D == 1e6] if by == "n_tokens" else LOSS[N == 1e4]
    np.testing.assert_allclose(y0, want)


def test_loss_families_groups_nearby_values_and_checks_input() -> None:
    d = D * np.repeat([1.0, 1.001, 0.999], 3)  # budgets rounded to whole steps
    assert len(plot.loss_families(N, d, LOSS).get_lines()) == 3
    assert len(plot.loss_families(N, d, LOSS, rtol=0.0).get_lines()) > 3
    with pytest.raises(ValueError, match="by must be one of"):
        plot.loss_families(N, D, LOSS, by="flops")
    with pytest.raises(ValueError, match="loss must have as many"):
        plot.loss_families(N, D, LOSS[:-1])
    with pytest.raises(ValueError, match="rtol"):
        plot.loss_families(N, D, LOSS, rtol=2)


def test_isoflop_profiles_with_fit() -> None:
    sizes = np.geomspace(1e4, 1e6, 5)
    budgets = [1e12, 1e13]
    n = np.concatenate([sizes, sizes])
    c = np.repeat(budgets, 5)
    loss = 1.5 + 400 / n**0.34 + 400 / (c / (6 * n)) ** 0.28
    fit = fit_isoflop(n, c / (6 * n), loss, c)
    ax = plot.isoflop(n, loss, c, fit)
    assert ax.get_xscale() == "log" and ax.get_yscale() == "linear"
    assert "parameters" in ax.get_xlabel() and "loss" in ax.get_ylabel()
    stars = [ln for ln in ax.get_lines() if ln.get_marker() == "*"]
    assert len(stars) == 2
    for star, n_opt in zip(stars, fit.n_opt_per_budget, strict=True):
        assert star.get_xdata()[0] == pytest.approx(n_opt)
    assert len(_legend_texts(ax)) == 2  # one entry per budget
    with pytest.raises(ValueError, match="IsoFlopFit"):
        plot.isoflop(n, loss, c, fit_power_law(n, loss, offset=False))


def test_frontier_is_the_running_minimum() -> None:
    c = 6 * N * D
    ax = plot.frontier(c, LOSS, n_params=N)
    assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")
    assert "FLOPs" in ax.get_xlabel() and "loss" in ax.get_ylabel()
    (step,) = [ln for ln in ax.get_lines() if ln.get_label() == "frontier"]
    order = np.argsort(c)
    np.testing.assert_allclose(step.get_ydata(), np.minimum.accumulate(LOSS[order]))
    assert sum(t.startswith("N = ") for t in _legend_texts(ax)) == 3
    with pytest.raises(ValueError, match="n_params must have as many"):
        plot.frontier(c, LOSS, n_params=N[:2])


def test_allocation_with_fit_and_reference_slopes() -> None:
    c = np.geomspace(1e15, 1e19, 5)
    n_opt = 0.1 * c**0.5
    sizes = np.geomspace(1e4, 1e6, 5)
    nn = np.tile(sizes, 2)
    cc = np.repeat([1e12, 1e13], 5)
    fit = fit_isoflop(nn, cc / (6 * nn), 1.5 + 400 / nn**0.34 + 400 / (cc / 6 / nn) ** 0.28, cc)
    ax = plot.allocation(c, n_opt, fit, reference={"Kaplan": 0.73, "Chinchilla": 0.5})
    assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")
    assert "FLOPs" in ax.get_xlabel() and "N_opt" in ax.get_ylabel()
    texts = _legend_texts(ax)
    assert any("Kaplan: C^0.73" in t for t in texts) and any(f"{fit.a:.2f}" in t for t in texts)
    chinchilla = [ln for ln in ax.get_lines() if ln.get_label().startswith("Chinchilla")][0]
    gx, gy = chinchilla.get_data()
    slope = np.polyfit(np.log(gx), np.log(gy), 1)[0]
    assert slope == pytest.approx(0.5)
    with pytest.raises(ValueError, match="reference"):
        plot.allocation(c, n_opt, reference={"bad": -1.0})


def test_narrow_log_axes_get_plain_tick_labels() -> None:
    ax = plot.loss_families(N, D, LOSS, by="n_params")  # D: 0.6 decades; loss: 0.14 decades
    fmt_y = ax.yaxis.get_major_formatter()
    assert fmt_y(2.5, 0) == "2.5"  # not 2.5×10⁰
    assert ax.xaxis.get_major_formatter()(2e6, 0) == "2M"
    ticks = [t for t in ax.get_yticks() if LOSS.min() <= t <= LOSS.max()]
    assert len(ticks) >= 2  # a narrow range still gets several labelled ticks
    wide = plot.power_law([1e2, 1e8], [1e-3, 1e3], xlabel="x (u)", ylabel="y (u)")
    assert wide.xaxis.get_major_formatter()(2e6, 0) != "2M"  # wide axes keep matplotlib's
