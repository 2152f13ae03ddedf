"""Plots the chapters share: power laws, families of loss curves, IsoFLOP profiles, the
compute frontier and the compute-optimal allocation.

Every function draws on ``ax`` (a new figure when ``ax`` is None) and returns the matplotlib
``Axes``, so a chapter can add to the plot or restyle it; nothing is shown or saved here.
Axes are logarithmic wherever the quantity is a power law, and labelled with units. Inputs
are array-likes (lists, NumPy arrays, pandas columns) of positive numbers: N (``n_params``)
in parameters, D (``n_tokens``) in tokens, C (``flops``) in FLOPs, loss in nats per token.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ._validate import in_range, one_of, positive, positive_array

if TYPE_CHECKING:
    from matplotlib.axes import Axes

#: Default axis labels, with units.
N_LABEL = "non-embedding parameters N"
D_LABEL = "training tokens D"
C_LABEL = "training compute C = 6ND (FLOPs)"
LOSS_LABEL = "validation loss (nats/token)"

#: Colour map for families of curves: ordered, and readable on the white figure background.
CMAP = "viridis"


# ----------------------------------------------------------------------------- helpers


def _axes(ax: Axes | None) -> Axes:
    import matplotlib.pyplot as plt
    from matplotlib.axes import Axes

    if ax is None:
        _, ax = plt.subplots()
    elif not isinstance(ax, Axes):
        raise ValueError(f"ax must be a matplotlib Axes or None, got {type(ax).__name__}")
    return ax


def _same_length(**arrays: np.ndarray) -> None:
    names = list(arrays)
    for name in names[1:]:
        if arrays[name].size != arrays[names[0]].size:
            raise ValueError(
                f"{name} must have as many entries as {names[0]}: "
                f"got {arrays[name].size} and {arrays[names[0]].size}"
            )


def _label(name: str, value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {value!r}")
    return value


def _groups(values: np.ndarray, rtol: float) -> list[np.ndarray]:
    """Indices of ``values`` grouped so that each group lies within ``rtol`` of its smallest."""
    order = np.argsort(values, kind="stable")
    groups: list[list[int]] = []
    anchor = None
    for i in order:
        if anchor is None or values[i] > anchor * (1.0 + rtol):
            groups.append([])
            anchor = values[i]
        groups[-1].append(int(i))
    return [np.array(g) for g in groups]


def _colours(k: int) -> list:
    import matplotlib

    cmap = matplotlib.colormaps[CMAP]
    return [cmap(0.85 * j / max(k - 1, 1)) for j in range(k)]  # stop before the pale yellow


def _si(x: float) -> str:
    """A count in 3 significant digits with k/M/B/T suffix: 6592 → '6.59k'."""
    x = float(f"{x:.3g}")  # round first, so that 999999.99 becomes 1M, not 1e+03k
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g}{suffix}"
    return f"{x:.3g}"


def _compact(x: float) -> str:
    """A tick label: '2.2' for a loss, '20k' or '1.05M' for a count, '1e+15' beyond trillions."""
    if x >= 1e15:
        return f"{x:.0e}"
    if x >= 1e3:
        return _si(x)
    return f"{x:.4g}"


def _finish_log_axes(
    ax: Axes, xlabel: str, ylabel: str, *, log_y: bool = True, legend_size: float | None = 9
) -> Axes:
    """Log x (and y) scales, axis labels, legend and readable ticks: every plot's last step."""
    ax.set_xscale("log")
    if log_y:
        ax.set_yscale("log")
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.legend(fontsize=legend_size)
    _tidy_log_axes(ax)
    return ax


def _tidy_log_axes(ax: Axes) -> None:
    """Readable ticks on log axes that span less than two decades.

    Matplotlib labels such axes with minor ticks like 2×10⁰, 3×10⁰, which crowd and overlap.
    Under 0.6 decades (a loss from 1.9 to 2.6) evenly spaced plain ticks are clearer; under
    two decades, ticks at 1, 2 and 5 times each power of ten. Wider axes are left alone.
    """
    from matplotlib import ticker

    for axis, limits in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
        lo, hi = sorted(limits)
        if axis.get_scale() != "log" or lo <= 0:
            continue
        span = np.log10(hi / lo)
        if span < 0.6:
            axis.set_major_locator(ticker.MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]))
            axis.set_minor_locator(ticker.NullLocator())
        elif span < 2:
            axis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
            axis.set_minor_locator(ticker.LogLocator(subs=np.arange(2.0, 10.0)))
        else:
            continue
        axis.set_major_formatter(ticker.FuncFormatter(lambda x, _: _compact(x)))
        axis.set_minor_formatter(ticker.NullFormatter())


def _predict(fit: Any, x: np.ndarray, method: str = "predict") -> np.ndarray:
    fn = getattr(fit, method, None)
    if not callable(fn):
        raise ValueError(
            f"fit must have a {method}() method (e.g. a helpers.fit result), "
            f"got {type(fit).__name__}"
        )
    return np.asarray(fn(x), dtype=float)


def _fit_label(fit: Any) -> str:
    k, alpha, c = (getattr(fit, name, None) for name in ("k", "alpha", "c"))
    if k is None or alpha is None:
        return "fit"
    text = (
        rf"fit: ${k:.3g}\,x^{{-{alpha:.3f}}}$"
        if alpha >= 0
        else rf"fit: ${k:.3g}\,x^{{{-alpha:.3f}}}$"
    )
    if c:
        text += f" + {c:.3g}"
    return text


# ----------------------------------------------------------------------------- plots


def power_law(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    fit: Any = None,
    *,
    xlabel: str,
    ylabel: str,
    label: str = "runs",
    fit_label: str | None = None,
    extend: float = 1.0,
    ax: Axes | None = None,
) -> Axes:
    """Points (x, y) on log-log axes and, if ``fit`` is given, its curve as a line.

    ``fit`` is anything with a ``predict(x)`` method, e.g. a
    :class:`helpers.fit.PowerLawFit`; its line spans the data's x range widened by the
    factor ``extend`` (≥ 1) on each side, to show an extrapolation. ``xlabel`` and
    ``ylabel`` are required: name the quantity and its unit. ``fit_label`` defaults to the
    fitted formula. x and y in any positive units. Returns the Axes.

    Introduced in: chapters/02_concepts.ipynb
    """
    xs = positive_array("x", x)
    ys = positive_array("y", y)
    _same_length(x=xs, y=ys)
    if not _label("xlabel", xlabel) or not _label("ylabel", ylabel):
        raise ValueError("xlabel and ylabel must be non-empty strings naming quantity and unit")
    extend = positive("extend", extend)
    if extend < 1:
        raise ValueError(f"extend must be a number >= 1, got {extend}")
    ax = _axes(ax)
    ax.scatter(xs, ys, label=_label("label", label) or None, zorder=3)
    if fit is not None:
        grid = np.geomspace(xs.min() / extend, xs.max() * extend, 100)
        line = _predict(fit, grid)
        ax.plot(
            grid, line, "--", color="C1", label=_label("fit_label", fit_label) or _fit_label(fit)
        )
    return _finish_log_axes(ax, xlabel, ylabel, legend_size=None)


def loss_families(
    n_params: Sequence[float] | np.ndarray,
    n_tokens: Sequence[float] | np.ndarray,
    loss: Sequence[float] | np.ndarray,
    *,
    by: str = "n_tokens",
    rtol: float = 0.01,
    xlabel: str | None = None,
    ylabel: str = LOSS_LABEL,
    ax: Axes | None = None,
) -> Axes:
    """Loss against one of N and D, one line per value of the other, on log-log axes.

    ``by="n_tokens"``: loss vs N (parameters), one line per data size D (tokens): where the
    lines fan out, data limits the loss. ``by="n_params"``: loss vs D, one line per model
    size N: where a line flattens, the model limits the loss. Values of the grouping
    variable within ``rtol`` (relative) of each other form one line. Lines are coloured from
    small to large by ``CMAP``. ``xlabel`` defaults to ``N_LABEL`` or ``D_LABEL``.
    Returns the Axes.

    Introduced in: chapters/02_concepts.ipynb
    """
    n = positive_array("n_params", n_params)
    d = positive_array("n_tokens", n_tokens)
    y = positive_array("loss", loss)
    _same_length(n_params=n, n_tokens=d, loss=y)
    one_of("by", by, ["n_tokens", "n_params"])
    rtol = in_range("rtol", rtol, 0.0, 0.5)
    x, group = (n, d) if by == "n_tokens" else (d, n)
    default_x, unit = (N_LABEL, "D = {} tokens") if by == "n_tokens" else (D_LABEL, "N = {}")
    ax = _axes(ax)
    groups = _groups(group, rtol)
    for colour, idx in zip(_colours(len(groups)), groups, strict=True):
        order = idx[np.argsort(x[idx], kind="stable")]
        value = float(np.exp(np.mean(np.log(group[idx]))))
        ax.plot(x[order], y[order], "o-", color=colour, label=unit.format(_si(value)))
    return _finish_log_axes(ax, _label("xlabel", xlabel) or default_x, _label("ylabel", ylabel))


def isoflop(
    n_params: Sequence[float] | np.ndarray,
    loss: Sequence[float] | np.ndarray,
    flops: Sequence[float] | np.ndarray,
    fit: Any = None,
    *,
    rtol: float = 1e-3,
    xlabel: str = N_LABEL,
    ylabel: str = LOSS_LABEL,
    ax: Axes | None = None,
) -> Axes:
    """IsoFLOP profiles: loss against N (log axis) for each compute budget C.

    Runs whose ``flops`` (the budget each run was planned for, FLOPs) agree within ``rtol``
    form one profile, drawn as points. With ``fit``, a :class:`helpers.fit.IsoFlopFit` of
    the same runs, each profile's parabola in ln N is drawn dashed and its minimum N_opt
    marked with a star (filled for the budgets the allocation law was fitted on, hollow for
    the others). Loss stays on a linear axis, as in Hoffmann et al. (2022, Fig. 3).
    Returns the Axes.

    Introduced in: chapters/05_practice.ipynb
    """
    n = positive_array("n_params", n_params)
    y = positive_array("loss", loss)
    c = positive_array("flops", flops)
    _same_length(n_params=n, loss=y, flops=c)
    rtol = in_range("rtol", rtol, 0.0, 0.5)
    groups = _groups(c, rtol)
    budgets = np.array([np.exp(np.mean(np.log(c[idx]))) for idx in groups])
    colours = _colours(len(groups))
    ax = _axes(ax)
    for colour, budget, idx in zip(colours, budgets, groups, strict=True):
        order = idx[np.argsort(n[idx], kind="stable")]
        ax.plot(n[order], y[order], "o", color=colour, label=f"C = {budget:.2g} FLOPs")
    if fit is not None:
        fields = ("budgets", "n_opt_per_budget", "loss_opt", "curvature", "used")
        if any(getattr(fit, f, None) is None for f in fields):
            raise ValueError(
                f"fit must be a helpers.fit.IsoFlopFit (from fit_isoflop), got {type(fit).__name__}"
            )
        for j, budget in enumerate(fit.budgets):
            n_opt, l_opt, curv = fit.n_opt_per_budget[j], fit.loss_opt[j], fit.curvature[j]
            if not np.isfinite(n_opt):
                continue
            match = np.flatnonzero(np.abs(budgets / budget - 1) <= max(rtol, 1e-9) * 2)
            colour = colours[int(match[0])] if match.size else "gray"
            idx = groups[int(match[0])] if match.size else np.arange(n.size)
            lo = min(n[idx].min(), n_opt) / 1.3
            hi = max(n[idx].max(), n_opt) * 1.3
            grid = np.geomspace(lo, hi, 100)
            ax.plot(grid, l_opt + 0.5 * curv * np.log(grid / n_opt) ** 2, "--", color=colour)
            face = colour if fit.used[j] else "none"
            ax.plot([n_opt], [l_opt], "*", ms=14, mec=colour, mfc=face, zorder=4)
    return _finish_log_axes(ax, _label("xlabel", xlabel), _label("ylabel", ylabel), log_y=False)


def frontier(
    flops: Sequence[float] | np.ndarray,
    loss: Sequence[float] | np.ndarray,
    *,
    n_params: Sequence[float] | np.ndarray | None = None,
    fit: Any = None,
    xlabel: str = C_LABEL,
    ylabel: str = LOSS_LABEL,
    ax: Axes | None = None,
) -> Axes:
    """Loss against compute for every run, and the compute-efficient frontier.

    The frontier is the lower envelope: at each run's C, the lowest loss any run reached
    with at most that much compute (drawn as a step line). Runs are coloured by model size
    when ``n_params`` is given. ``fit`` (anything with ``predict(flops)``, e.g. a
    :class:`helpers.fit.PowerLawFit` of loss on C) is drawn as a dashed line.
    Log-log axes. Returns the Axes.

    Introduced in: chapters/02_concepts.ipynb
    """
    c = positive_array("flops", flops)
    y = positive_array("loss", loss)
    _same_length(flops=c, loss=y)
    ax = _axes(ax)
    if n_params is None:
        ax.scatter(c, y, color="C0", label="runs", zorder=3)
    else:
        n = positive_array("n_params", n_params)
        _same_length(flops=c, n_params=n)
        groups = _groups(n, 1e-9)
        for colour, idx in zip(_colours(len(groups)), groups, strict=True):
            ax.scatter(c[idx], y[idx], color=colour, label=f"N = {_si(n[idx[0]])}", zorder=3)
    order = np.argsort(c, kind="stable")
    best = np.minimum.accumulate(y[order])
    ax.step(c[order], best, where="post", color="black", lw=1.5, label="frontier", zorder=2)
    if fit is not None:
        grid = np.geomspace(c.min(), c.max(), 100)
        ax.plot(grid, _predict(fit, grid), "--", color="C3", label=_fit_label(fit))
    return _finish_log_axes(ax, _label("xlabel", xlabel), _label("ylabel", ylabel))


def allocation(
    flops: Sequence[float] | np.ndarray,
    n_opt: Sequence[float] | np.ndarray,
    fit: Any = None,
    *,
    reference: Mapping[str, float] | None = None,
    xlabel: str = C_LABEL,
    ylabel: str = "compute-optimal parameters N_opt",
    ax: Axes | None = None,
) -> Axes:
    """The compute-optimal allocation: N_opt (parameters) against C (FLOPs), log-log.

    ``fit`` (a :class:`helpers.fit.AllocationFit`, or anything with ``n_opt(flops)``) is drawn
    as a line labelled with its exponent a. ``reference`` maps a name to an exponent, e.g.
    ``{"Kaplan": 0.73, "Chinchilla": 0.50}``: each is drawn as a dotted line through the
    geometric mean of the points, so only the slopes are compared. Returns the Axes.

    Introduced in: chapters/05_practice.ipynb
    """
    c = positive_array("flops", flops)
    n = positive_array("n_opt", n_opt)
    _same_length(flops=c, n_opt=n)
    ax = _axes(ax)
    ax.scatter(c, n, color="C0", label="measured N_opt", zorder=3)
    grid = np.geomspace(c.min() / 1.5, c.max() * 1.5, 100)
    if fit is not None:
        a = getattr(fit, "a", None)
        label = f"fit: N_opt ∝ C^{a:.2f}" if a is not None else "fit"
        ax.plot(grid, _predict(fit, grid, "n_opt"), "--", color="C1", label=label)
    if reference is not None:
        if not isinstance(reference, Mapping):
            raise ValueError(f"reference must map names to exponents, got {reference!r}")
        c0, n0 = np.exp(np.mean(np.log(c))), np.exp(np.mean(np.log(n)))
        for k, (name, a) in enumerate(reference.items()):
            a = positive(f"reference[{name!r}]", a)
            ax.plot(grid, n0 * (grid / c0) ** a, ":", color=f"C{k + 2}", label=f"{name}: C^{a:.2f}")
    return _finish_log_axes(ax, _label("xlabel", xlabel), _label("ylabel", ylabel))


__all__ = [
    "C_LABEL",
    "D_LABEL",
    "LOSS_LABEL",
    "N_LABEL",
    "allocation",
    "frontier",
    "isoflop",
    "loss_families",
    "power_law",
]
