"""Choosing between candidate laws: PSIS-LOO, stacking, stacked forecasts and model checks.

Several laws can describe the same runs (a power law with or without a floor, Chinchilla or
Kaplan). :func:`select` scores each fit by its expected log predictive density estimated with
Pareto-smoothed importance-sampling leave-one-out cross-validation (PSIS-LOO, Vehtari, Gelman &
Gabry 2017) through ArviZ, weighs the candidates by stacking of predictive distributions (Yao,
Vehtari, Simpson & Gelman 2018), and checks whether each candidate describes the data at all.
Stacking always returns weights that sum to one, even when every candidate is wrong; the checks
are what stops a confident forecast from a law that does not fit.

The adequacy rule
-----------------
A candidate *describes the data* when it passes all three checks below (each is computed by
:func:`check_law`, and the thresholds are module constants):

1. **Pareto k**: at most 10% of runs have a Pareto k above ArviZ's threshold
   (``min(1 - 1/log10(S), 0.7)`` for ``S`` draws). More means the posterior changes a lot when
   single runs are left out: outliers, or a law that bends to fit individual runs.
2. **Residual structure** (a posterior predictive check, Gelman et al., *Bayesian Data Analysis*,
   ch. 6): the runs are sorted by the law's fitted value within each group, and the lag-1
   autocorrelation of the residuals ``y - mu`` is computed draw by draw, for the observed
   outcomes and for replicated ones. Its posterior predictive p-value
   ``P(T(y_rep) >= T(y))`` must be at least 0.01. A law that cannot follow the shape of the
   data (a monotone law on a curve that turns back up, a floor where there is none) leaves
   runs of same-signed residuals, which the noise model of the fit cannot produce.
3. **Trend**: the law's fitted values must rank the runs: Kendall's tau between the median
   fitted value and the observed outcome must be positive with one-sided p-value below 0.05.
   On trendless data a scaling law has nothing to extrapolate; its forecast would come from the
   prior and the functional form alone.

The share of runs inside the central 90% of their leave-one-out predictive distribution
(from LOO-PIT) is reported beside them as a calibration check; a share more than three binomial
standard deviations from 90% also counts as a failure.

When no candidate passes, :attr:`Selection.adequate` is false, :meth:`Selection.summary` says so
in capitals, and :meth:`Selection.forecast` refuses (raises :class:`NoAdequateLawError`) unless
asked with ``force=True``.

Examples
--------
>>> import bayescale as bs
>>> fits = {"floor": fit_floor, "no floor": fit_plain}  # doctest: +SKIP
>>> choice = bs.select(fits)  # doctest: +SKIP
>>> print(choice.summary())  # doctest: +SKIP
>>> choice.forecast({"x": 1e12}).table()  # doctest: +SKIP
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bayescale.errors import BayescaleError, SettingsError
from bayescale.forecast import Forecast
from bayescale.results import Fit

PARETO_K_SHARE_MAX = 0.10
"""Check 1: the largest share of runs whose Pareto k exceeds ArviZ's threshold."""
RESIDUAL_P_MIN = 0.01
"""Check 2: the smallest posterior predictive p-value of the residual autocorrelation."""
TREND_P_MAX = 0.05
"""Check 3: the largest one-sided p-value of Kendall's tau between fitted and observed values."""
COVERAGE_PROB = 0.9
"""Nominal mass of the leave-one-out predictive intervals whose coverage is reported."""
COVERAGE_SD_MAX = 3.0
"""Coverage further than this many binomial standard deviations from nominal fails."""


class NoAdequateLawError(BayescaleError):
    """No candidate law describes the data, so no forecast is given (see :mod:`selection`)."""


@dataclass(frozen=True)
class LawCheck:
    """Whether one fitted law describes its data (see the adequacy rule in the module docs).

    Attributes
    ----------
    name : str
    n_runs : int
    pareto_k_threshold : float
    pareto_k_high : int
        Runs whose Pareto k exceeds the threshold.
    max_pareto_k : float
    residual_p : float
        Posterior predictive p-value of the lag-1 residual autocorrelation.
    trend_tau, trend_p : float
        Kendall's tau between fitted and observed values, and its one-sided p-value.
    loo_coverage : float
        Share of runs inside the central 90% of their LOO predictive distribution.
    problems : tuple of str
        The checks that failed, in words.
    """

    name: str
    n_runs: int
    pareto_k_threshold: float
    pareto_k_high: int
    max_pareto_k: float
    residual_p: float
    trend_tau: float
    trend_p: float
    loo_coverage: float
    problems: tuple[str, ...] = field(default_factory=tuple)

    @property
    def adequate(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "adequate": self.adequate,
            "n_runs": self.n_runs,
            "pareto_k_threshold": self.pareto_k_threshold,
            "pareto_k_high": self.pareto_k_high,
            "max_pareto_k": self.max_pareto_k,
            "residual_p": self.residual_p,
            "trend_tau": self.trend_tau,
            "trend_p": self.trend_p,
            "loo_coverage": self.loo_coverage,
            "problems": list(self.problems),
        }


def loo(fit: Fit):
    """PSIS-LOO of a fit (ArviZ's :func:`arviz_stats.loo`, pointwise), ArviZ's warnings muted
    (their content is in the returned ``pareto_k``)."""
    import arviz_stats  # imported where used: it adds about 0.2 s to ``import bayescale``

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return arviz_stats.loo(fit.datatree, pointwise=True)


def check_law(fit: Fit, name: str | None = None, elpd=None) -> LawCheck:
    """Run the three adequacy checks of the module documentation on one fit.

    Parameters
    ----------
    fit : Fit
    name : str, optional
        Name used in messages (defaults to the law's name).
    elpd : ELPDData, optional
        A PSIS-LOO result already computed for this fit.

    Returns
    -------
    LawCheck
    """
    name = name or fit.law.name
    elpd = loo(fit) if elpd is None else elpd
    pareto_k = np.asarray(elpd.pareto_k.values, dtype=float)
    threshold = float(elpd.good_k)
    high = int(np.sum(pareto_k > threshold))
    n_runs = pareto_k.size

    observed = np.asarray(fit.datatree["observed_data"][fit.outcome].values, dtype=float)
    replicated = np.asarray(fit.datatree["posterior_predictive"][fit.outcome].values, dtype=float)
    replicated = replicated.reshape(-1, observed.size)
    mean = fitted_means(fit)
    order = _residual_order(fit, np.median(mean, axis=0))
    residual_p = _autocorrelation_p(observed, replicated, mean, order)
    from scipy.stats import kendalltau  # imported where used, as arviz_stats in loo()

    tau, trend_p = kendalltau(np.median(mean, axis=0), observed, alternative="greater")
    tau = 0.0 if math.isnan(tau) else float(tau)
    trend_p = 1.0 if math.isnan(trend_p) else float(trend_p)
    coverage = _loo_coverage(fit)

    problems = []
    if not fit.diagnostics.converged:
        problems.append(
            "the fit did not converge (see its diagnostics): its LOO numbers are not reliable"
        )
    if high > PARETO_K_SHARE_MAX * n_runs:
        problems.append(
            f"{high} of {n_runs} runs have Pareto k > {threshold:.2f} (max {pareto_k.max():.2f}): "
            "the fit hinges on single runs"
        )
    if residual_p < RESIDUAL_P_MIN:
        problems.append(
            f"residuals run in long same-signed stretches along the fitted curve (posterior "
            f"predictive p = {residual_p:.3g} < {RESIDUAL_P_MIN}): the law's shape does not "
            "follow the data (non-monotone data, or a wrong functional form)"
        )
    if trend_p >= TREND_P_MAX:
        problems.append(
            f"the fitted law does not rank the runs (Kendall tau {tau:.2f}, p = {trend_p:.2f}): "
            "the data show no trend that the law can follow"
        )
    nominal_sd = math.sqrt(COVERAGE_PROB * (1 - COVERAGE_PROB) / n_runs)
    if abs(coverage - COVERAGE_PROB) > COVERAGE_SD_MAX * nominal_sd:
        problems.append(
            f"{coverage:.0%} of runs lie inside their {COVERAGE_PROB:.0%} leave-one-out "
            f"predictive interval (expected {COVERAGE_PROB:.0%} +- "
            f"{COVERAGE_SD_MAX * nominal_sd:.0%})"
        )
    return LawCheck(
        name=name,
        n_runs=n_runs,
        pareto_k_threshold=threshold,
        pareto_k_high=high,
        max_pareto_k=float(pareto_k.max()),
        residual_p=float(residual_p),
        trend_tau=tau,
        trend_p=trend_p,
        loo_coverage=float(coverage),
        problems=tuple(problems),
    )


def fitted_means(fit: Fit) -> np.ndarray:
    """Draws of the law's mean at every fitted run, shape ``(samples, runs)`` (core forecast)."""
    runs = fit.runs_frame()
    spec = fit.spec
    columns = [*fit.law.input_names, *spec.group_columns, *spec.covariate_columns]
    curve = fit.forecast(runs[columns]).curve
    return curve.reshape(-1, curve.shape[-1])


def _residual_order(fit: Fit, fitted: np.ndarray) -> np.ndarray:
    """Run order for the residual check: by group, then by fitted value; a boundary marker."""
    runs = fit.runs_frame()
    keys = [runs[c].to_numpy() for c in fit.spec.group_columns]
    order = np.lexsort([fitted, *keys[::-1]]) if keys else np.argsort(fitted, kind="stable")
    return order


def _autocorrelation_p(observed, replicated, mean, order) -> float:
    """Posterior predictive p-value of the lag-1 autocorrelation of residuals along ``order``."""
    observed_residual = (observed[None, :] - mean)[:, order]
    replicated_residual = (replicated - mean)[:, order]
    statistic_observed = _lag1(observed_residual)
    statistic_replicated = _lag1(replicated_residual)
    return float(np.mean(statistic_replicated >= statistic_observed))


def _lag1(residual: np.ndarray) -> np.ndarray:
    """Lag-1 autocorrelation (uncentred: a systematic offset counts as structure) per draw."""
    numerator = np.sum(residual[:, 1:] * residual[:, :-1], axis=1)
    denominator = np.sum(residual**2, axis=1)
    return numerator / np.where(denominator > 0, denominator, np.inf)


def _loo_coverage(fit: Fit) -> float:
    """Share of runs whose LOO-PIT lies inside the central ``COVERAGE_PROB`` interval."""
    import arviz_stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pit = arviz_stats.loo_pit(fit.datatree)
    values = np.asarray(pit[fit.outcome].values, dtype=float).ravel()
    low, high = (1 - COVERAGE_PROB) / 2, (1 + COVERAGE_PROB) / 2
    return float(np.mean((values > low) & (values < high)))


# ---------------------------------------------------------------------------- selection
@dataclass(frozen=True, eq=False)
class Selection:
    """The candidates compared by PSIS-LOO, their stacking weights and their checks.

    Attributes
    ----------
    table : pandas.DataFrame
        ArviZ's comparison table (rank, elpd, p, elpd_diff, weight, se, dse, warning), one row
        per candidate, best first.
    fits : dict of str to Fit
    checks : dict of str to LawCheck
    method : str
        How the weights were computed (``stacking`` by default).
    """

    table: pd.DataFrame
    fits: dict[str, Fit]
    checks: dict[str, LawCheck]
    method: str

    @property
    def weights(self) -> pd.Series:
        """The candidates' weights (sum to one), in the order of :attr:`table`."""
        return self.table["weight"].astype(float)

    @property
    def best(self) -> str:
        """The candidate with the highest expected log predictive density."""
        return str(self.table.index[0])

    @property
    def adequate(self) -> bool:
        """Whether at least one candidate describes the data."""
        return any(check.adequate for check in self.checks.values())

    def warning(self) -> str | None:
        """The loud message when no candidate describes the data, else ``None``."""
        if self.adequate:
            return None
        lines = ["NO CANDIDATE LAW DESCRIBES THESE DATA; a forecast from them is not trustworthy:"]
        for name, check in self.checks.items():
            lines += [f"  {name}: {problem}" for problem in check.problems]
        return "\n".join(lines)

    def summary(self) -> str:
        """Table of candidates with weights and checks, and the verdict."""
        lines = [
            f"{'candidate':<20}{'elpd_loo':>10}{'se':>8}{'elpd_diff':>11}{'weight':>8}"
            f"{'k>thr':>7}  describes the data"
        ]
        for name, row in self.table.iterrows():
            check = self.checks[name]
            lines.append(
                f"{name:<20}{row['elpd']:>10.2f}{row['se']:>8.2f}{row['elpd_diff']:>11.2f}"
                f"{row['weight']:>8.3f}{check.pareto_k_high:>7d}  "
                + ("yes" if check.adequate else "NO: " + "; ".join(check.problems))
            )
        message = self.warning()
        lines.append(message if message else f"best by PSIS-LOO: {self.best}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "adequate": self.adequate,
            "best": self.best,
            "candidates": [
                {
                    "name": str(name),
                    "elpd_loo": float(row["elpd"]),
                    "se": float(row["se"]),
                    "elpd_diff": float(row["elpd_diff"]),
                    "weight": float(row["weight"]),
                    "check": self.checks[name].to_dict(),
                }
                for name, row in self.table.iterrows()
            ],
        }

    def forecast(
        self,
        at,
        *,
        prob: float = 0.9,
        seed: int | None = None,
        force: bool = False,
        discrepancy: str | None = None,
    ) -> Forecast:
        """Stacked forecast: a mixture of the candidates' predictive draws by their weights.

        Parameters
        ----------
        at : mapping, list or DataFrame
            Points, as for :meth:`Fit.forecast`; every candidate must accept them.
        prob : float
        seed : int, optional
            Seed of the observation noise (passed to each candidate's forecast); the choice of
            draws is deterministic.
        force : bool
            Give the forecast even when no candidate describes the data.
        discrepancy : {None, "walk"}
            Passed to each candidate's forecast (see :func:`bayescale.forecast.forecast`).

        Returns
        -------
        Forecast
            ``curve`` and ``predictive`` of shape ``(1, samples, points)``: each mixture draw is
            one candidate's draw (curve and predictive from the same candidate and draw), with
            each candidate contributing in proportion to its weight.

        Raises
        ------
        NoAdequateLawError
            When no candidate describes the data and ``force`` is false.
        """
        if not self.adequate and not force:
            raise NoAdequateLawError(
                "no candidate law describes these data, so the stacked forecast is withheld "
                "(pass force=True to get it anyway): "
                + "; ".join(f"{n}: {c.problems[0]}" for n, c in self.checks.items())
            )
        forecasts = {
            name: fit.forecast(at, prob=prob, seed=seed, discrepancy=discrepancy)
            for name, fit in self.fits.items()
        }
        sizes = [f.curve.shape[0] * f.curve.shape[1] for f in forecasts.values()]
        weights = self.weights.reindex(list(forecasts)).to_numpy()
        curves, predictives = [], []
        for prediction, index in zip(
            forecasts.values(), mixture_indices(sizes, weights), strict=True
        ):
            n_points = prediction.curve.shape[-1]
            curves.append(prediction.curve.reshape(-1, n_points)[index])
            predictives.append(prediction.predictive.reshape(-1, n_points)[index])
        first = next(iter(forecasts.values()))
        return Forecast(
            points=first.points,
            curve=np.concatenate(curves)[None],
            predictive=np.concatenate(predictives)[None],
            prob=prob,
            outcome=first.outcome,
        )


def mixture_indices(sizes: Sequence[int], weights) -> list[np.ndarray]:
    """Which draws of each candidate make up a mixture of ``min(sizes)`` draws in which each
    candidate contributes in proportion to its weight: evenly spaced indices into each
    candidate's ``sizes[k]`` draws (none for a candidate whose share rounds to zero).

    Examples
    --------
    >>> [i.tolist() for i in mixture_indices([8, 10], [0.75, 0.25])]
    [[0, 1, 2, 4, 5, 6], [0, 5]]
    """
    counts = _allocate(np.asarray(weights, dtype=float), min(sizes))
    return [
        np.floor(np.arange(count) * (size / max(count, 1))).astype(np.int64)
        for size, count in zip(sizes, counts, strict=True)
    ]


def _allocate(weights: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` draws in proportion to ``weights`` (largest remainders)."""
    weights = np.clip(np.asarray(weights, dtype=float), 0.0, None)
    weights = weights / weights.sum()
    exact = weights * total
    counts = np.floor(exact).astype(np.int64)
    remainder = total - counts.sum()
    counts[np.argsort(-(exact - counts), kind="stable")[:remainder]] += 1
    return counts


def select(
    fits: Mapping[str, Fit] | Sequence[Fit],
    *,
    method: str = "stacking",
) -> Selection:
    """Compare candidate laws fitted to the same runs by PSIS-LOO; weights and checks.

    Parameters
    ----------
    fits : mapping of name to Fit, or sequence of Fit
        At least two fits of the same runs (the same rows and outcomes); a sequence is named
        by the laws.
    method : str
        ``"stacking"`` (default), ``"BB-pseudo-BMA"`` or ``"pseudo-BMA"`` (ArviZ's methods).

    Returns
    -------
    Selection

    Raises
    ------
    SettingsError
        For fewer than two candidates, duplicate names, or fits of different data.
    """
    if isinstance(fits, Mapping):
        named = {str(k): v for k, v in fits.items()}
    else:
        fits = list(fits)
        names = [fit.law.name for fit in fits]
        if len(set(names)) != len(names):
            raise SettingsError(
                "several candidates use the same law; name them: select({'name': fit, ...})"
            )
        named = dict(zip(names, fits, strict=True))
    if len(named) < 2:
        raise SettingsError(f"select needs at least two candidate fits, got {len(named)}")
    if method not in ("stacking", "BB-pseudo-BMA", "pseudo-BMA"):
        raise SettingsError(f"method must be stacking, BB-pseudo-BMA or pseudo-BMA, got {method!r}")
    reference_name, reference = next(iter(named.items()))
    for name, fit in named.items():
        if not isinstance(fit, Fit):
            raise SettingsError(f"candidate {name!r} is not a Fit")
        if not _same_observations(fit, reference):
            raise SettingsError(
                f"candidates {reference_name!r} and {name!r} were fitted to different runs; "
                "PSIS-LOO compares laws on the same data only"
            )
    import arviz_stats  # imported where used, as in loo()

    elpds = {name: loo(fit) for name, fit in named.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = arviz_stats.compare(elpds, method=method, round_to="none")
    checks = {name: check_law(fit, name, elpds[name]) for name, fit in named.items()}
    return Selection(table=table, fits=named, checks=checks, method=method)


def _same_observations(one: Fit, other: Fit) -> bool:
    """Whether two fits saw the same outcomes of the same runs (laws and inputs may differ)."""
    a, b = one.datatree["observed_data"], other.datatree["observed_data"]
    if one.outcome != other.outcome:
        return False
    return np.array_equal(a["obs"].values, b["obs"].values) and np.array_equal(
        a[one.outcome].values, b[other.outcome].values
    )
