"""Back-testing: fit on the small scales, predict the large ones, and score the forecasts.

:func:`backtest` splits a table of runs along a scale axis, fits bayescale on the small scales,
predicts the held-out large ones, and in the same run computes the baselines a user would
otherwise reach for:

``curve_fit``
    :func:`scipy.optimize.curve_fit` of the law on the raw outcome, started at the prior
    medians, with non-parametric bootstrap intervals (resampling the training runs).
``huber``
    the multi-start L-BFGS fit of Hoffmann et al. (2022) and Besiroglu et al. (2024): the Huber
    loss (delta = 1e-3) of log residuals summed over runs, parameters on the log scale, the best of
    many starts, with bootstrap intervals.
``last_value``
    the last observed outcome along the axis (no interval).

:func:`backtest_curves` does the same for many curves at once (a benchmark of learning curves):
each candidate law is fitted to every curve in one batched program, PSIS-LOO stacking picks per
curve, and :meth:`CurvesBacktest.table` pools the scores by domain.

Scores, over the held-out runs (``y`` observed, ``m`` the method's median forecast):

* ``rmsle``: ``sqrt(mean((log m - log y)^2))``, the metric of Alabdulmohsin et al. (2022) and
  Caballero et al. (2022);
* ``relative_error``: ``mean(|m - y| / y)``, as Gadre et al. (2024) report;
* ``mlpd``: mean log predictive density of the held-out outcomes (Lee et al. 2025); for the point
  fits, a normal density on log y with the bootstrap variance of the forecast plus the training
  residual variance (a generous density for them);
* ``coverage_50``, ``coverage_80``, ``coverage_90``, ``coverage_95``: share of held-out outcomes
  inside the central interval (for bayescale the posterior predictive, for the point fits the
  bootstrap percentile interval of the curve, which is what papers report);
* ``msce``: mean squared calibration error, the mean over central intervals of mass 0.1, ...,
  0.9 of (coverage - mass)^2.

Examples
--------
>>> import bayescale as bs  # doctest: +SKIP
>>> result = bs.backtest(frame, "power_law_floor", y="loss", axis="x",
...                      fraction=0.6)  # doctest: +SKIP
>>> result.metrics  # doctest: +SKIP
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bayescale.data import read_table
from bayescale.errors import DataError, SettingsError
from bayescale.inference import fit as bayes_fit
from bayescale.laws import Law, get_law
from bayescale.pointfit import curve_fit_point, free_and_fixed, huber_fit, predict
from bayescale.results import Fit

COVERAGE_LEVELS = (0.5, 0.8, 0.9, 0.95)
"""Central-interval masses whose coverage is reported."""
CALIBRATION_LEVELS = tuple(np.round(np.arange(0.1, 0.91, 0.1), 2))
"""Central-interval masses averaged in the mean squared calibration error."""
_ALL_LEVELS = tuple(sorted({*COVERAGE_LEVELS, *CALIBRATION_LEVELS}))
BASELINES = ("curve_fit", "huber", "last_value")


@dataclass(frozen=True)
class Split:
    """Which runs train and which are held out.

    Attributes
    ----------
    train, test : ndarray of int
        Row positions in the table.
    description : str
    """

    train: np.ndarray
    test: np.ndarray
    description: str


def split_runs(
    frame: pd.DataFrame,
    axis: str,
    *,
    cut: float | None = None,
    fraction: float | None = None,
    train_flag: str | None = None,
) -> Split:
    """Split runs along a scale axis: give exactly one of ``cut``, ``fraction``, ``train_flag``.

    Parameters
    ----------
    frame : DataFrame
    axis : str
        The column ordering the runs (model size, tokens, compute, examples seen).
    cut : float
        Train on runs with ``axis <= cut``.
    fraction : float
        Train on the first ``fraction`` of the distinct axis values (rounded up, at least 2).
    train_flag : str
        A column that is 1 for training runs and 0 for held-out ones (a built-in split).

    Raises
    ------
    SettingsError
        If not exactly one rule is given, or the split leaves either side empty.
    """
    rules = [r for r in (cut, fraction, train_flag) if r is not None]
    if len(rules) != 1:
        raise SettingsError("give exactly one of cut=, fraction= and train_flag=")
    if axis not in frame.columns:
        raise DataError(
            f"axis column {axis!r} not found; columns: {', '.join(map(str, frame.columns))}"
        )
    values = pd.to_numeric(frame[axis], errors="coerce").to_numpy(dtype=float)
    if train_flag is not None:
        if train_flag not in frame.columns:
            raise DataError(f"train flag column {train_flag!r} not found")
        mask = pd.to_numeric(frame[train_flag], errors="coerce").to_numpy() == 1
        description = f"built-in split ({train_flag} == 1 trains)"
    elif cut is not None:
        mask = values <= cut
        description = f"{axis} <= {cut:g} trains"
    else:
        if not 0 < fraction < 1:
            raise SettingsError(f"fraction must lie in (0, 1), got {fraction}")
        distinct = np.unique(values)
        keep = max(2, math.ceil(fraction * distinct.size))
        mask = values <= distinct[min(keep, distinct.size) - 1]
        description = f"first {fraction:.0%} of {axis} values train"
    train, test = np.flatnonzero(mask), np.flatnonzero(~mask)
    if train.size == 0 or test.size == 0:
        side = "training" if train.size == 0 else "held-out"
        raise SettingsError(f"the split ({description}) leaves no {side} runs")
    return Split(train, test, description)


@dataclass(frozen=True, eq=False)
class MethodForecast:
    """One method's forecast of the held-out runs.

    Attributes
    ----------
    method : str
    median : ndarray
        Point forecast (median) per held-out run.
    draws : ndarray or None
        Draws ``(sample, run)`` from which central intervals are read.
    log_density : ndarray or None
        Log predictive density of each held-out outcome.
    note : str
        Why a method produced no forecast, if it failed.
    """

    method: str
    median: np.ndarray
    draws: np.ndarray | None = None
    log_density: np.ndarray | None = None
    note: str = ""


def score(forecast: MethodForecast, observed: np.ndarray) -> dict[str, float]:
    """The back-testing scores of one method (see the module docstring)."""
    out: dict[str, float] = {"method": forecast.method}
    median = np.asarray(forecast.median, dtype=float)
    ok = np.isfinite(median) & (median > 0)
    if not ok.all():
        nan_scores = {k: math.nan for k in _score_names()}
        return {**out, **nan_scores, "note": forecast.note or "no forecast"}
    out["rmsle"] = float(np.sqrt(np.mean((np.log(median) - np.log(observed)) ** 2)))
    out["relative_error"] = float(np.mean(np.abs(median - observed) / observed))
    out["mlpd"] = (
        float(np.mean(forecast.log_density)) if forecast.log_density is not None else math.nan
    )
    if forecast.draws is not None:
        for level in COVERAGE_LEVELS:
            out[f"coverage_{round(level * 100)}"] = _coverage(forecast.draws, observed, level)
        out["msce"] = float(
            np.mean([(_coverage(forecast.draws, observed, q) - q) ** 2 for q in CALIBRATION_LEVELS])
        )
    else:
        for level in COVERAGE_LEVELS:
            out[f"coverage_{round(level * 100)}"] = math.nan
        out["msce"] = math.nan
    out["note"] = forecast.note
    return out


def _score_names() -> list[str]:
    return (
        ["rmsle", "relative_error", "mlpd"]
        + [f"coverage_{round(q * 100)}" for q in COVERAGE_LEVELS]
        + ["msce"]
    )


def _coverage(draws: np.ndarray, observed: np.ndarray, level: float) -> float:
    low, high = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return float(np.mean((observed >= low) & (observed <= high)))


@dataclass(frozen=True, eq=False)
class BacktestResult:
    """Scores and forecasts of a back-test.

    Attributes
    ----------
    metrics : DataFrame
        One row per method (``bayescale`` first), the scores as columns.
    forecasts : DataFrame
        One row per held-out run and method: axis value, observed outcome, median, 90% interval.
    split : Split
    fit : Fit
        The bayescale fit on the training runs.
    """

    metrics: pd.DataFrame
    forecasts: pd.DataFrame
    split: Split
    fit: Fit | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def backtest(
    data: str | Path | pd.DataFrame,
    law: str | Law,
    *,
    y: str,
    axis: str,
    x: Mapping[str, str] | None = None,
    cut: float | None = None,
    fraction: float | None = None,
    train_flag: str | None = None,
    baselines: Sequence[str] = BASELINES,
    bootstrap: int = 200,
    seed: int = 0,
    fit_options: Mapping[str, Any] | None = None,
    discrepancy: str | None = None,
) -> BacktestResult:
    """Fit on the small scales, forecast the held-out large ones, score bayescale and baselines.

    Parameters
    ----------
    data : path or DataFrame
    law : str or Law
    y : str
        Outcome column.
    axis : str
        Column ordering the runs along scale (an input or any numeric column).
    x : mapping, optional
        ``{input: column}`` as in :func:`bayescale.fit`.
    cut, fraction, train_flag
        The split; see :func:`split_runs`.
    baselines : sequence of str
        Any of ``curve_fit``, ``huber``, ``last_value``.
    bootstrap : int
        Bootstrap refits of the point-fit baselines.
    seed : int
        Seed of the bayescale fit and of the bootstrap.
    fit_options : mapping, optional
        Passed to :func:`bayescale.fit` (``likelihood``, ``priors``, ``draws``, ...).
    discrepancy : {None, "walk"}
        Passed to bayescale's forecast (:func:`bayescale.forecast.forecast`): ``"walk"`` adds
        the law's own error (a walk and a drift, estimated from the residuals and from
        leave-future-out refits) to the forecast.

    Returns
    -------
    BacktestResult
    """
    law = get_law(law)
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        raise SettingsError(f"unknown baseline {unknown[0]!r}; choose from {', '.join(BASELINES)}")
    frame = data if isinstance(data, pd.DataFrame) else read_table(data)
    frame = frame.reset_index(drop=True)
    split = split_runs(frame, axis, cut=cut, fraction=fraction, train_flag=train_flag)
    columns = {i: (x or {}).get(i, i) for i in law.input_names}
    train, test = frame.iloc[split.train], frame.iloc[split.test]
    options = dict(fit_options or {})
    options.setdefault("seed", seed)
    result = bayes_fit(train, law, y=y, x=x, **options)
    points = pd.DataFrame({i: pd.to_numeric(test[c]).to_numpy(float) for i, c in columns.items()})
    observed = pd.to_numeric(test[y]).to_numpy(float)
    forecasts = [_bayescale_forecast(result, points, observed, discrepancy)]
    train_inputs = {i: pd.to_numeric(train[c]).to_numpy(float) for i, c in columns.items()}
    train_y = pd.to_numeric(train[y]).to_numpy(float)
    test_inputs = {i: points[i].to_numpy() for i in law.input_names}
    rng = np.random.default_rng(seed)
    forecasts += baseline_forecasts(
        baselines,
        law,
        train_inputs,
        train_y,
        pd.to_numeric(train[axis]).to_numpy(float),
        test_inputs,
        observed,
        bootstrap,
        rng,
    )
    metrics = pd.DataFrame([score(f, observed) for f in forecasts]).set_index("method")
    rows = []
    axis_values = pd.to_numeric(test[axis]).to_numpy(float)
    for f in forecasts:
        low = high = np.full(observed.size, np.nan)
        if f.draws is not None:
            low, high = np.quantile(f.draws, [0.05, 0.95], axis=0)
        for i in range(observed.size):
            rows.append(
                {
                    "method": f.method,
                    axis: axis_values[i],
                    "observed": observed[i],
                    "median": f.median[i],
                    "q05": low[i],
                    "q95": high[i],
                }
            )
    return BacktestResult(metrics, pd.DataFrame(rows), split, result)


def _bayescale_forecast(
    result: Fit, points: pd.DataFrame, observed: np.ndarray, discrepancy: str | None
) -> MethodForecast:
    from bayescale.forecast import log_predictive_density

    prediction = result.forecast(points, discrepancy=discrepancy)
    draws = prediction.predictive.reshape(-1, prediction.n_points)
    return MethodForecast(
        "bayescale",
        np.median(draws, axis=0),
        draws,
        log_predictive_density(result, points, observed, discrepancy=discrepancy),
    )


# ---------------------------------------------------------------------------- point fits
def baseline_forecasts(
    baselines: Sequence[str],
    law: Law,
    inputs: Mapping[str, np.ndarray],
    y: np.ndarray,
    axis_values: np.ndarray,
    test_inputs: Mapping[str, np.ndarray],
    observed: np.ndarray,
    bootstrap: int,
    rng: np.random.Generator,
) -> list[MethodForecast]:
    """The baselines' forecasts of the held-out runs: ``last_value`` (the outcome of the training
    run furthest along ``axis_values``) and the point fits of :func:`point_fit_forecast`."""
    out = []
    for name in baselines:
        if name == "last_value":
            last = y[np.argsort(axis_values, kind="stable")[-1]]
            out.append(MethodForecast("last_value", np.full(observed.size, last)))
        else:
            out.append(
                point_fit_forecast(name, law, inputs, y, test_inputs, observed, bootstrap, rng)
            )
    return out


def point_fit_forecast(
    method: str,
    law: Law,
    inputs: Mapping[str, np.ndarray],
    y: np.ndarray,
    test_inputs: Mapping[str, np.ndarray],
    observed: np.ndarray,
    bootstrap: int,
    rng: np.random.Generator,
) -> MethodForecast:
    """A point-fit baseline with non-parametric bootstrap intervals (see the module docstring).

    Fixed parameters keep their value; an anchor is fixed at the geometric mean of the fitted
    runs, as :func:`bayescale.fit` fixes it. A failed fit gives a forecast of NaN with the reason.
    """
    fitter = curve_fit_point if method == "curve_fit" else huber_fit
    free, fixed = free_and_fixed(law, inputs=inputs)
    try:
        best = fitter(law, free, fixed, inputs, y, None)
    except (RuntimeError, ValueError, FloatingPointError) as exc:
        return _failed(method, observed, f"{method} failed: {exc}")
    if best is None:
        return _failed(method, observed, f"{method} did not converge")
    point = predict(law, free, fixed, best, test_inputs)
    curves = []
    n = y.size
    for _ in range(bootstrap):
        sample = rng.integers(0, n, n)
        subset = {k: v[sample] for k, v in inputs.items()}
        try:
            refit = fitter(law, free, fixed, subset, y[sample], best)
        except (RuntimeError, ValueError, FloatingPointError):
            continue
        if refit is not None:
            curves.append(predict(law, free, fixed, refit, test_inputs))
    if not curves or not np.all(np.isfinite(point)) or np.any(point <= 0):
        return _failed(method, observed, f"{method}: no usable bootstrap refit")
    curves = np.array([c for c in curves if np.all(np.isfinite(c)) and np.all(c > 0)])
    residual = np.log(y) - np.log(predict(law, free, fixed, best, inputs))
    spread = np.sqrt(np.var(np.log(curves), axis=0) + np.var(residual))
    from scipy.stats import norm  # imported where used: it adds about 0.3 s to ``import bayescale``

    density = norm(np.log(point), spread).logpdf(np.log(observed)) - np.log(observed)
    return MethodForecast(method, point, curves, density)


def _failed(method: str, observed: np.ndarray, note: str) -> MethodForecast:
    return MethodForecast(method, np.full(observed.size, np.nan), note=note)


# ---------------------------------------------------------------------------- many curves
@dataclass(frozen=True, eq=False)
class CurvesBacktest:
    """Scores of a back-test over many curves (see :func:`backtest_curves`).

    Attributes
    ----------
    scores : DataFrame
        One row per curve and method: the curve's label, its ``group`` (for example the domain),
        the number of held-out points, the scores of :func:`score`, and for bayescale the law
        with the largest stacking weight and whether any candidate passed the adequacy checks.
    points : DataFrame
        One row per held-out point and method: observed value, median and 90% interval.
    """

    scores: pd.DataFrame
    points: pd.DataFrame

    def table(self) -> pd.DataFrame:
        """Per group and method: median and mean RMSLE over curves, mean relative error and
        MLPD, coverage of every central interval over all held-out points, and MSCE of the
        pooled coverages."""
        rows = []
        for (group, method), part in self.points.groupby(["group", "method"], sort=True):
            curves = self.scores[
                (self.scores["group"] == group) & (self.scores["method"] == method)
            ]
            row = {
                "group": group,
                "method": method,
                "curves": len(curves),
                "points": len(part),
                "median_rmsle": float(np.nanmedian(curves["rmsle"])),
                "mean_rmsle": float(np.nanmean(curves["rmsle"])),
                "relative_error": float(np.nanmean(curves["relative_error"])),
                "mlpd": float(part["log_density"].mean()),  # NaN for a method without density
            }
            pooled = {q: float(part[f"in_{round(q * 100)}"].mean()) for q in _ALL_LEVELS}
            for level in COVERAGE_LEVELS:
                row[f"coverage_{round(level * 100)}"] = pooled[level]
            row["msce"] = float(np.mean([(pooled[q] - q) ** 2 for q in CALIBRATION_LEVELS]))
            rows.append(row)
        return pd.DataFrame(rows).set_index(["group", "method"])


def backtest_curves(
    frame: pd.DataFrame,
    laws: Sequence[str | Law],
    *,
    by: str,
    y: str,
    axis: str,
    group: str | None = None,
    fraction: float | None = None,
    train_flag: str | None = None,
    baselines: Sequence[str] = BASELINES,
    baseline_law: str | Law | None = None,
    bootstrap: int = 200,
    seed: int = 0,
    fit_options: Mapping[str, Any] | None = None,
    discrepancy: str | None = None,
) -> CurvesBacktest:
    """Back-test many curves at once: batched fits of each candidate law, law selection per curve.

    Each curve (the rows sharing a value of ``by``) is split by ``fraction`` or ``train_flag``
    (as in :func:`split_runs`). Every candidate law is fitted to all the training parts in one
    compiled program (:func:`bayescale.batch.fit_batch`). With several candidates, each curve's
    forecast is the stacked forecast of :func:`bayescale.selection.select` (PSIS-LOO stacking
    weights; its mixture predictive density is scored), given even where no candidate passes the
    adequacy checks (recorded in the ``adequate`` column) so that every curve is scored. The
    baselines fit ``baseline_law`` (default: the first candidate) curve by curve.

    Parameters
    ----------
    frame : DataFrame
    laws : sequence of str or Law
        Candidate laws with a single input, the column ``axis``.
    by : str
        Column labelling the curves.
    y, axis : str
        Outcome column and the scale column (the laws' input).
    group : str, optional
        Column grouping curves in the summary table (for example a domain).
    fraction, train_flag
        The split of each curve; see :func:`split_runs`.
    baselines, bootstrap, seed
        As in :func:`backtest`.
    baseline_law : str or Law, optional
    fit_options : mapping, optional
        Passed to :func:`bayescale.batch.fit_batch` (``draws``, ``priors``, ...).
    discrepancy : {None, "walk"}
        As in :func:`backtest`, for every candidate.

    Returns
    -------
    CurvesBacktest
    """
    from bayescale.batch import fit_batch
    from bayescale.forecast import log_predictive_density
    from bayescale.selection import select

    laws = [get_law(law) for law in laws]
    if any(len(law.input_names) != 1 for law in laws) or len({law.input_names for law in laws}) > 1:
        raise SettingsError(
            "the candidate laws must have one input, with the same name in each: "
            + ", ".join(f"{law.name} ({', '.join(law.input_names)})" for law in laws)
        )
    input_name = laws[0].input_names[0]
    baseline_law = get_law(baseline_law) if baseline_law is not None else laws[0]
    if baseline_law.input_names != (input_name,):
        raise SettingsError(f"the baseline law must have the one input {input_name!r}")
    for column in (by, y, axis, *([group] if group else [])):
        if column not in frame.columns:
            raise DataError(
                f"column {column!r} not found; columns: {', '.join(map(str, frame.columns))}"
            )
    splits, train_parts = {}, {}
    for label, curve in frame.groupby(by, sort=True):
        curve = curve.reset_index(drop=True)
        split = split_runs(curve, axis, fraction=fraction, train_flag=train_flag)
        splits[str(label)] = (curve, split)
        train_parts[str(label)] = curve.iloc[split.train].reset_index(drop=True)
    options = {"seed": seed, **dict(fit_options or {})}
    batches = {}
    for law in laws:
        with warnings.catch_warnings():  # each fit's convergence is scored below, not raised
            warnings.simplefilter("ignore")
            batches[law.name] = fit_batch(train_parts, law, y=y, x={input_name: axis}, **options)
    rng = np.random.default_rng(seed)
    score_rows, point_rows = [], []
    for label, (curve, split) in splits.items():
        train, test = curve.iloc[split.train], curve.iloc[split.test]
        observed = pd.to_numeric(test[y]).to_numpy(float)
        train_x = pd.to_numeric(train[axis]).to_numpy(float)
        train_y = pd.to_numeric(train[y]).to_numpy(float)
        test_x = pd.to_numeric(test[axis]).to_numpy(float)
        points = pd.DataFrame({input_name: test_x})
        fits = {name: batch.fits[label] for name, batch in batches.items()}
        info = {"converged": all(fit.diagnostics.converged for fit in fits.values())}
        if len(fits) == 1:
            ((name, fit),) = fits.items()
            bayes = _bayescale_forecast(fit, points, observed, discrepancy)
            info.update(law=name, adequate=True)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                selection = select(fits)
            stacked = selection.forecast(points, seed=seed, force=True, discrepancy=discrepancy)
            draws = stacked.predictive.reshape(-1, observed.size)
            # the stacked predictive density: log sum_k w_k p_k(y)
            log_terms = [
                np.log(max(float(selection.weights[name]), 1e-300))
                + log_predictive_density(fit, points, observed, discrepancy=discrepancy)
                for name, fit in fits.items()
            ]
            density = np.logaddexp.reduce(np.array(log_terms), axis=0)
            bayes = MethodForecast("bayescale", np.median(draws, axis=0), draws, density)
            info.update(law=selection.best, adequate=selection.adequate)
        forecasts = [bayes] + baseline_forecasts(
            baselines,
            baseline_law,
            {input_name: train_x},
            train_y,
            train_x,
            {input_name: test_x},
            observed,
            bootstrap,
            rng,
        )
        group_value = str(curve[group].iloc[0]) if group else "all"
        for forecast in forecasts:
            row = {"curve": label, "group": group_value, "held_out": observed.size}
            row.update(score(forecast, observed))
            if forecast.method == "bayescale":
                row.update(info)
            score_rows.append(row)
            point_rows.extend(_point_rows(label, group_value, forecast, observed))
    return CurvesBacktest(pd.DataFrame(score_rows), pd.DataFrame(point_rows))


def _point_rows(label: str, group: str, forecast: MethodForecast, observed: np.ndarray) -> list:
    """Held-out points of one curve and method, with which central intervals hold each."""
    rows = []
    bounds = {}
    if forecast.draws is not None:
        for level in _ALL_LEVELS:
            bounds[level] = np.quantile(forecast.draws, [(1 - level) / 2, (1 + level) / 2], axis=0)
    for i, value in enumerate(observed):
        row = {
            "curve": label,
            "group": group,
            "method": forecast.method,
            "observed": value,
            "median": forecast.median[i],
            "log_density": math.nan if forecast.log_density is None else forecast.log_density[i],
        }
        for level in _ALL_LEVELS:
            key = f"in_{round(level * 100)}"
            if level in bounds:
                low, high = bounds[level][0][i], bounds[level][1][i]
                row[key] = float(low <= value <= high)
            else:
                row[key] = math.nan
        rows.append(row)
    return rows
