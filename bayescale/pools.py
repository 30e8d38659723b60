"""Data-quality pools with repetition: which pool (or mixture) to train on at a given budget.

Goyal et al. (2024) model the error of a model trained on ``n`` samples drawn from a pool of ``S``
unique samples by a per-pool *utility* ``b < 0`` that decays each time the pool is repeated,
halving every ``tau`` passes (the pool's *repetition half-life*); the scale ``a`` and the floor
``d`` belong to the model being trained and are shared by the pools. The catalog law
``pool_repetition`` is that law,

``error = d + (a S e(n / S, tau) / 1e5)^b``,

with ``e`` the whitelisted formula function :func:`bayescale.formula.effective_epochs` (the number
of fresh-data epochs that ``n / S`` passes are worth). This module adds what a decision needs:

* :func:`fit_pools` fits it with ``b`` and ``tau`` pooled over the pools (and, when several
  models are fitted together, ``a`` and ``d`` pooled over the models);
* :func:`pool_error` and :func:`mixture_error` give posterior draws of the expected error of a
  pool or of a mixture of pools at any budget (a mixture's utility on each pass is the
  share-weighted mean of its pools' decayed utilities, the authors' effective utility);
* :func:`prob_better` gives ``P(A has lower error than B)`` at each budget, and
  :func:`best_choice` the probability that each candidate is the best one.

Every probability is computed draw by draw from the joint posterior, so what the pools share
(``a`` and ``d``) cancels correctly in the comparison.

Examples
--------
>>> fit = fit_pools("runs.csv", y="error", n="samples", S="size", pool="pool")  # doctest: +SKIP
>>> prob_better(fit, "laion400m", "laion2b", n=[3e9, 1.3e10, 3.4e10]).round(2)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bayescale.errors import DataError, SettingsError
from bayescale.formula import effective_epochs
from bayescale.inference import fit as fit_law
from bayescale.priors import Pooling
from bayescale.results import Fit, quantile_columns

LAW = "pool_repetition"
NORMALISER = 1e5
"""The fixed sample normaliser of the law, ``(a n / 1e5)^b`` (the authors' ``normalizer``)."""

SPREAD_PRIOR = "Gamma(2, 5)"
"""Default prior of the between-group spreads in :func:`fit_pools` (``b_sd``, ``tau_sd`` and,
with a model column, ``a_sd`` and ``d_sd``). A study compares a handful of pools, and four or
five values cannot rule out a spread near zero: under the half-normal default of
:class:`~bayescale.priors.Pooling` the sampler then falls into the funnel's neck there (divergences,
R-hat above the gate on the simulated four-pool fit of ``tests/test_pools.py``). ``Gamma(2, 5)``
has the half-normal's mean (0.4) and zero density at zero, the boundary-avoiding prior of Chung
et al. (2013, Psychometrika 78:685) for variance parameters learned from few groups. It says a
priori that pools differ; override it through ``priors`` (for example ``{"b_sd":
"HalfNormal(0.5)"}``) when that is not wanted."""

Candidate = str | Mapping[str, float]
"""A pool label, or a mixture ``{pool: share}`` (shares of the mixture's samples)."""


def fit_pools(
    data: str | Path | pd.DataFrame,
    *,
    y: str,
    n: str = "n",
    S: str = "S",
    pool: str = "pool",
    model: str | None = None,
    centered: bool | str = False,
    priors: Mapping[str, str] | None = None,
    **sampler: Any,
) -> Fit:
    """Fit the ``pool_repetition`` law with the sharing structure of Goyal et al. (2024).

    Parameters
    ----------
    data : path or DataFrame
        One row per run: error, samples seen, unique samples of its pool, the pool's label (and
        the model's label when several models are fitted together).
    y, n, S, pool : str
        Column names of the error, samples seen, pool size and pool label.
    model : str, optional
        Column of the model (architecture) label. Without it every run is one model and ``a``
        and ``d`` are single values; with it they are pooled over models while each pool's
        ``b`` and ``tau`` stay shared by the models.
    centered : bool or "auto"
        Centred pooling (groups with many runs each), or ``"auto"``: each pool (and model)
        centred as far as its runs pin it (see :class:`~bayescale.priors.Pooling`).
    priors : mapping, optional
        Prior overrides (``b``, ``tau``, ``a``, ``d``, ``sigma``, ``b_sd``, ...). The spreads
        default to :data:`SPREAD_PRIOR`.
    **sampler
        Sampler settings passed to :func:`bayescale.fit`.

    Returns
    -------
    Fit
    """
    pooling = [Pooling("b", pool, centered=centered), Pooling("tau", pool, centered=centered)]
    if model is not None:
        pooling += [Pooling("a", model, centered=centered), Pooling("d", model, centered=centered)]
    spreads = {p.sd_name: SPREAD_PRIOR for p in pooling}
    return fit_law(
        data,
        LAW,
        y=y,
        x={"n": n, "S": S},
        pool=pooling,
        priors={**spreads, **(priors or {})},
        **sampler,
    )


def _check_fit(fit: Fit) -> tuple[str, str | None]:
    """The pool column and the model column (or None) of a ``pool_repetition`` fit."""
    if fit.law.name != LAW:
        raise SettingsError(f"this is a fit of {fit.law.name!r}, not of {LAW!r}")
    pooled = {p.parameter: p.group for p in fit.spec.pooling}
    pool_column = pooled.get("b")
    if pool_column is None or pooled.get("tau") != pool_column:
        raise SettingsError("pool comparisons need b and tau pooled over the same pool column")
    model_column = pooled.get("a")
    if pooled.get("d") != model_column:
        raise SettingsError("a and d must be pooled over the same column (or not at all)")
    return pool_column, model_column


def pool_sizes(fit: Fit) -> dict[str, float]:
    """The unique samples ``S`` of every pool, as recorded in the fitted runs."""
    pool_column, _ = _check_fit(fit)
    runs = fit.runs_frame()
    sizes = {}
    for label, rows in runs.groupby(pool_column):
        values = np.unique(rows["S"].to_numpy())
        if values.size != 1:
            raise DataError(f"pool {label!r} has several sizes S in the fitted runs: {values}")
        sizes[str(label)] = float(values[0])
    return sizes


class _Draws:
    """Posterior draws of the law's parameters for one model, by pool."""

    def __init__(self, fit: Fit, model_label: str | None):
        pool_column, model_column = _check_fit(fit)
        theta = fit.parameter_draws()
        self.pools = fit.group_labels(pool_column)
        if model_column is None:
            if model_label is not None:
                raise DataError("this fit has a single model; do not give model=")
            self.a, self.d = theta["a"], theta["d"]
        else:
            models = fit.group_labels(model_column)
            if model_label is None or model_label not in models:
                raise DataError(
                    f"give the model to predict for (model=...), one of: {', '.join(models)}"
                )
            code = models.index(model_label)
            self.a, self.d = theta["a"][:, code], theta["d"][:, code]
        self.b, self.tau = theta["b"], theta["tau"]
        self.shape = (fit.sampler["chains"], fit.sampler["draws"])

    def index(self, pool: str) -> int:
        if pool not in self.pools:
            raise DataError(f"unknown pool {pool!r}; pools in the fit: {', '.join(self.pools)}")
        return self.pools.index(pool)


def _budgets(n) -> np.ndarray:
    budgets = np.atleast_1d(np.asarray(n, dtype=float))
    if budgets.ndim != 1 or not np.all(np.isfinite(budgets) & (budgets > 0)):
        raise DataError(f"budgets (samples seen) must be positive numbers, got {budgets.tolist()}")
    return budgets


def _shares(candidate: Mapping[str, float], sizes: Mapping[str, float]) -> dict[str, float]:
    if not candidate:
        raise DataError("a mixture needs at least one pool")
    shares = {}
    for pool, share in candidate.items():
        value = float(share)
        if not value > 0 or math.isinf(value):
            raise DataError(f"mixture share of pool {pool!r} must be positive, got {share!r}")
        shares[str(pool)] = value
    total = sum(shares.values())
    return {pool: share / total for pool, share in shares.items()}


def _error_draws(
    draws: _Draws, sizes: Mapping[str, float], candidate: Candidate, budgets: np.ndarray, S
) -> np.ndarray:
    """Expected error of a pool or mixture, shape ``(sample, budget)``.

    A mixture of pools ``i`` with shares ``w_i`` and ``S_mix`` unique samples in all, passed
    ``r = n / S_mix`` times, has on pass ``k + 1`` the utility ``sum_i w_i b_i 0.5^(k / tau_i)``
    (Goyal et al.'s effective utility; the authors' code takes the unweighted mean of equal-sized
    buckets). Its reducible error is therefore ``prod_i (a S_mix e(r, tau_i) / 1e5)^(w_i b_i)``.
    A single pool is the mixture with one share.
    """
    if isinstance(candidate, str):
        shares = {candidate: 1.0}
        unique = sizes[candidate] if S is None else float(S)
    else:
        shares = _shares(candidate, sizes)
        unique = sum(sizes[p] for p in shares) if S is None else float(S)
        if S is None and any(p not in sizes for p in shares):
            missing = next(p for p in shares if p not in sizes)
            raise DataError(f"unknown pool {missing!r}; pools: {', '.join(sizes)}")
    if not unique > 0:
        raise DataError(f"the unique samples S must be positive, got {unique!r}")
    passes = budgets[None, :] / unique
    log_reducible = 0.0
    for pool, share in shares.items():
        code = draws.index(pool)
        b, tau = draws.b[:, code, None], draws.tau[:, code, None]
        epochs = effective_epochs(passes, tau)
        log_reducible = log_reducible + share * b * np.log(
            draws.a[:, None] * unique * epochs / NORMALISER
        )
    return draws.d[:, None] + np.exp(log_reducible)


def _label(candidate: Candidate) -> str:
    if isinstance(candidate, str):
        return candidate
    return " + ".join(f"{share:g} {pool}" for pool, share in candidate.items())


def pool_error(
    fit: Fit,
    pool: str,
    n: float | Sequence[float],
    *,
    S: float | None = None,
    model: str | None = None,
    prob: float = 0.9,
) -> pd.DataFrame:
    """Expected error of one pool at each budget ``n`` (samples seen), with intervals.

    Parameters
    ----------
    fit : Fit
        A fit of ``pool_repetition`` (see :func:`fit_pools`).
    pool : str
        The pool's label.
    n : float or sequence of float
        Budgets in samples seen.
    S : float, optional
        Unique samples; defaults to the pool's size in the fitted runs (give another to ask
        "what if this pool were larger or smaller").
    model : str, optional
        The model label, when the fit pools ``a`` and ``d`` over models.
    prob : float
        Mass of the central intervals.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``n``: ``median``, the interval bounds (``q05``, ``q95`` for 0.9) and
        ``passes`` (``n / S``).
    """
    return mixture_error(fit, {pool: 1.0}, n, S=S, model=model, prob=prob)


def mixture_error(
    fit: Fit,
    shares: Mapping[str, float],
    n: float | Sequence[float],
    *,
    S: float | None = None,
    model: str | None = None,
    prob: float = 0.9,
) -> pd.DataFrame:
    """Expected error of a mixture of pools at each budget, a posterior prediction.

    Parameters
    ----------
    shares : mapping of str to float
        ``{pool: share}``: the share of the mixture's samples drawn from each pool (normalised to
        sum to 1). Mixing whole pools gives shares proportional to their sizes.
    S : float, optional
        Unique samples of the mixture; defaults to the sum of the pools' sizes (every sample of
        every pool used, each passed ``n / S`` times).
    fit, n, model, prob
        As in :func:`pool_error`.

    Returns
    -------
    pandas.DataFrame
        As :func:`pool_error`.
    """
    budgets = _budgets(n)
    draws = _Draws(fit, model)
    sizes = pool_sizes(fit)
    candidate = next(iter(shares)) if len(shares) == 1 else shares
    if isinstance(candidate, str) and candidate not in sizes:
        draws.index(candidate)  # raises with the list of pools
    values = _error_draws(draws, sizes, candidate, budgets, S)
    unique = S if S is not None else sum(sizes[p] for p in shares)
    table = pd.DataFrame(quantile_columns(prob, values), index=pd.Index(budgets, name="n"))
    table["passes"] = budgets / unique
    return table


def prob_better(
    fit: Fit,
    first: Candidate,
    second: Candidate,
    n: float | Sequence[float],
    *,
    model: str | None = None,
) -> pd.DataFrame:
    """Probability that ``first`` has a lower expected error than ``second`` at each budget.

    Parameters
    ----------
    fit : Fit
        A fit of ``pool_repetition``.
    first, second : str or mapping
        Pool labels, or mixtures ``{pool: share}``.
    n : float or sequence of float
        Budgets in samples seen.
    model : str, optional
        The model label, when the fit pools ``a`` and ``d`` over models.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``n``: the median expected error of each candidate and ``prob_first_better``.
    """
    budgets = _budgets(n)
    draws = _Draws(fit, model)
    sizes = pool_sizes(fit)
    errors = [_error_draws(draws, sizes, c, budgets, None) for c in (first, second)]
    return pd.DataFrame(
        {
            f"error[{_label(first)}]": np.median(errors[0], axis=0),
            f"error[{_label(second)}]": np.median(errors[1], axis=0),
            "prob_first_better": np.mean(errors[0] < errors[1], axis=0),
        },
        index=pd.Index(budgets, name="n"),
    )


def best_choice(
    fit: Fit,
    candidates: Sequence[Candidate],
    n: float | Sequence[float],
    *,
    model: str | None = None,
) -> pd.DataFrame:
    """The probability that each candidate has the lowest expected error, at each budget.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``n``, one column per candidate (its label); rows sum to 1.
    """
    if len(candidates) < 2:
        raise DataError("compare at least two candidates")
    budgets = _budgets(n)
    draws = _Draws(fit, model)
    sizes = pool_sizes(fit)
    errors = np.stack([_error_draws(draws, sizes, c, budgets, None) for c in candidates])
    winner = np.argmin(errors, axis=0)
    return pd.DataFrame(
        {_label(c): np.mean(winner == i, axis=0) for i, c in enumerate(candidates)},
        index=pd.Index(budgets, name="n"),
    )
