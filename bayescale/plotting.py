"""Figures of a fit, drawn with matplotlib's object API (no pyplot, no global backend change).

Examples
--------
>>> import bayescale as bs
>>> fig = bs.plotting.plot_fit(bs.load_fit("chinchilla.nc"))  # doctest: +SKIP
>>> fig.savefig("fit.png")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from bayescale.forecast import forecast
from bayescale.results import Fit

if TYPE_CHECKING:
    from matplotlib.figure import Figure

BAND_PROB = 0.9


def new_figure(width: float, height: float) -> Figure:
    """A matplotlib Figure attached to the Agg canvas (it can be saved without pyplot).

    matplotlib is imported here, not with bayescale: it takes about 0.4 s to import, which a
    script or command that draws nothing should not pay.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def plot_fit(fit: Fit, *, prob: float = BAND_PROB) -> Figure:
    """Data and fitted law, with posterior predictive intervals.

    Left: the outcome against the law's first input, with the fitted curve and its band. For
    laws of model size and tokens (``N``, ``D``) the curves follow each compute budget of the
    data (``C = 6 N D``), which is how such runs are usually laid out (IsoFLOP profiles); for
    other multi-input laws the curves hold the other inputs at their median. Right: observed
    against predicted with the central ``prob`` interval of the posterior predictive.

    Returns
    -------
    matplotlib.figure.Figure
    """
    runs = fit.runs_frame()
    inputs = list(fit.law.input_names)
    groups = list(fit.spec.group_columns)
    outcome = fit.outcome
    figure = new_figure(11, 4.5)
    curve_axis, check_axis = figure.subplots(1, 2)

    if set(inputs) == {"N", "D"} and not groups:
        _isoflop_panel(curve_axis, fit, runs, prob)
    else:
        _first_input_panel(curve_axis, fit, runs, inputs, groups, prob)

    table = fit.forecast(runs[inputs + groups], prob=prob).table()
    low, high = [c for c in table.columns if c.startswith("q")][:2]
    predicted = table["median"].to_numpy()
    observed = runs[outcome].to_numpy()
    check_axis.errorbar(
        predicted,
        observed,
        xerr=[predicted - table[low].to_numpy(), table[high].to_numpy() - predicted],
        fmt="o",
        ms=3,
        alpha=0.6,
        elinewidth=0.8,
    )
    span = [min(observed.min(), table[low].min()), max(observed.max(), table[high].max())]
    check_axis.plot(span, span, color="black", lw=1)
    check_axis.set_xscale("log")
    check_axis.set_yscale("log")
    check_axis.set_xlabel(f"predicted {outcome} (median, {prob:.0%} interval)")
    check_axis.set_ylabel(f"observed {outcome}")
    inside = np.mean((observed >= table[low]) & (observed <= table[high]))
    check_axis.set_title(f"{inside:.0%} of runs inside their {prob:.0%} predictive interval")
    figure.suptitle(f"{fit.law.title or fit.law.name}: {fit.law.formula_text}")
    return figure


def _isoflop_panel(axis, fit: Fit, runs, prob: float) -> None:
    n = runs["N"].to_numpy()
    loss = runs[fit.outcome].to_numpy()
    compute = 6.0 * n * runs["D"].to_numpy()
    budgets = _compute_buckets(compute)
    for budget, color in zip(budgets, _colors(len(budgets)), strict=True):
        members = np.abs(np.log(compute / budget)) < 0.25
        n_grid = np.geomspace(n[members].min() / 1.5, n[members].max() * 1.5, 60)
        table = forecast(fit, {"N": n_grid, "D": budget / (6.0 * n_grid)}, prob=prob).table()
        low, high = [c for c in table.columns if c.startswith("curve_q")][:2]
        axis.fill_between(n_grid, table[low], table[high], color=color, alpha=0.25, lw=0)
        axis.plot(n_grid, table["curve_median"], color=color, lw=1.2)
        axis.scatter(n[members], loss[members], color=color, s=10, label=f"C = {budget:.1e}")
    outside = ~np.any([np.abs(np.log(compute / b)) < 0.25 for b in budgets], axis=0)
    if outside.any():
        axis.scatter(n[outside], loss[outside], color="grey", s=8, label="other budgets")
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("model parameters N (tokens D = C / 6N)")
    axis.set_ylabel(fit.outcome)
    axis.set_title(f"IsoFLOP profiles: fitted law with {prob:.0%} band")
    axis.legend(fontsize=7, ncols=2)


def _compute_buckets(compute: np.ndarray, max_buckets: int = 9) -> list[float]:
    """Compute budgets shared by at least 3 runs (within a factor e^0.25), largest groups first."""
    buckets: list[float] = []
    for value in sorted(compute, key=lambda c: -np.sum(np.abs(np.log(compute / c)) < 0.25)):
        members = np.abs(np.log(compute / value)) < 0.25
        if members.sum() >= 3 and all(abs(np.log(value / b)) > 0.5 for b in buckets):
            buckets.append(float(np.exp(np.mean(np.log(compute[members])))))
        if len(buckets) == max_buckets:
            break
    return sorted(buckets)


def _first_input_panel(axis, fit: Fit, runs, inputs, groups, prob: float) -> None:
    first = inputs[0]
    x = runs[first].to_numpy()
    loss = runs[fit.outcome].to_numpy()
    grid = np.geomspace(x.min() / 2, x.max() * 2, 80)
    labels = fit.group_labels(groups[0]) if groups else [None]
    for label, color in zip(labels, _colors(len(labels)), strict=True):
        members = np.ones(len(runs), dtype=bool)
        if label is not None:
            members = runs[groups[0]].to_numpy() == label
        point = {
            name: np.full_like(grid, np.median(runs[name].to_numpy()[members]))
            for name in inputs[1:]
        }
        point[first] = grid
        for column in groups:
            point[column] = [runs[column].to_numpy()[members][0]] * len(grid)
        table = forecast(fit, point, prob=prob).table()
        low, high = [c for c in table.columns if c.startswith("curve_q")][:2]
        axis.fill_between(grid, table[low], table[high], color=color, alpha=0.25, lw=0)
        axis.plot(grid, table["curve_median"], color=color, lw=1.2)
        axis.scatter(x[members], loss[members], color=color, s=10, label=label)
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel(first)
    axis.set_ylabel(fit.outcome)
    others = " (other inputs at their median)" if len(inputs) > 1 else ""
    axis.set_title(f"fitted law with {prob:.0%} band{others}")
    if labels[0] is not None and len(labels) <= 12:
        axis.legend(fontsize=7)


def _colors(n: int):
    from matplotlib import colormaps

    return [colormaps["viridis"](v) for v in np.linspace(0.05, 0.9, max(n, 1))][:n]
