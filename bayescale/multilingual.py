"""Multilingual scaling: the joint law of Fernandes et al. (2023) and its effective parameters.

A multilingual (multi-task) model trained on a mixture gives each language pair ``i`` a sampling
weight ``p``. Fernandes et al. (2023) found that the weight changes only the multiplier of the
pair's scaling law, not its exponent:

``L_i(N; p) = beta_{p,i} N^(-alpha_i) + L_inf_i``

so a pair trained at weight ``p`` behaves like a model trained on that pair alone with
``N_eff = f_i(p) N`` parameters, ``f_i(p) = (beta_{1,i} / beta_{p,i})^(1 / alpha_i)``. This module
turns that into a hierarchical fit with the core engine:

* :func:`pair_weight_labels` builds the (pair, weight) cell column, ``"en-de@0.5"``;
* :func:`fit_joint` fits the ``multilingual`` catalog law with ``alpha`` and ``L_inf`` pooled over
  pairs and ``beta`` pooled over cells (each cell is nested in its pair, so ``beta`` is sampled at
  its reference scale with its own pair's exponent);
* :func:`effective_fraction` returns the posterior of ``f_i(p)`` for every cell, draw by draw;
* :func:`fit_effective_fraction` fits the interpolating law ``f_hat(p) = p + c1 p^c2 (1-p)^c3``
  (catalog law ``effective_fraction``) to those posteriors, and :func:`forecast_weighting`
  predicts the loss of a pair at a weight that was never trained.

Per-language data scaling (``anchored_power_law``, or ``power_law_floor``, pooled over languages)
and per-language accuracy against model size (``mc_accuracy_cloglog`` with binomial counts) need
no code of their own: they are ordinary pooled fits; docs/multilingual.md shows both.

Examples
--------
>>> pair_weight_labels(["en-de", "en-de", "de-en"], [1.0, 0.5, 0.25])
['en-de@1', 'en-de@0.5', 'de-en@0.25']
>>> split_pair_weight("en-de@0.5")
('en-de', 0.5)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bayescale.data import _read
from bayescale.errors import DataError, DuplicateRunsWarning, SettingsError
from bayescale.forecast import Derived
from bayescale.inference import fit as fit_law
from bayescale.priors import Pooling
from bayescale.results import Fit

SEPARATOR = "@"
"""Separates the pair from the weight in a cell label (``"en-de@0.5"``)."""

CELL_COLUMN = "pair_weight"
"""Name of the cell column that :func:`fit_joint` adds to the runs."""


def pair_weight_labels(pairs: Iterable[Any], weights: Iterable[Any]) -> list[str]:
    """Labels of (language pair, sampling weight) cells, ``"<pair>@<weight>"``.

    Parameters
    ----------
    pairs : iterable
        The language pair (or task) of each run; labels may not contain ``"@"``.
    weights : iterable of float
        The pair's sampling weight in the training mixture, in (0, 1].

    Returns
    -------
    list of str
        One label per run; the weight is written in its shortest exact form (``repr``-like
        ``%g`` with 12 significant digits), so equal weights give equal labels.

    Raises
    ------
    DataError
        For a weight outside (0, 1], a non-number, or a pair label containing ``"@"``.
    """
    pairs, weights = list(pairs), list(weights)
    if len(pairs) != len(weights):
        raise DataError(f"{len(pairs)} pair labels but {len(weights)} weights")
    labels = []
    for row, (pair, weight) in enumerate(zip(pairs, weights, strict=True), start=1):
        text = str(pair).strip()
        if not text or SEPARATOR in text:
            raise DataError(f"row {row}: pair label {pair!r} is empty or contains {SEPARATOR!r}")
        try:
            value = float(weight)
        except (TypeError, ValueError):
            raise DataError(f"row {row}: weight {weight!r} is not a number") from None
        if not (0 < value <= 1) or math.isnan(value):
            raise DataError(f"row {row}: weight {value:g} of pair {text!r} is not in (0, 1]")
        labels.append(f"{text}{SEPARATOR}{value:.12g}")
    return labels


def split_pair_weight(label: str) -> tuple[str, float]:
    """The pair and the weight of a cell label built by :func:`pair_weight_labels`."""
    pair, separator, weight = str(label).rpartition(SEPARATOR)
    try:
        value = float(weight)
    except ValueError:
        value = math.nan
    if not separator or not pair or not 0 < value <= 1:
        raise DataError(f"cell label {label!r} is not of the form '<pair>{SEPARATOR}<weight>'")
    return pair, value


def fit_joint(
    data: str | Path | pd.DataFrame,
    *,
    y: str,
    N: str = "N",
    pair: str = "pair",
    weight: str = "weight",
    pair_covariates: Sequence[str] = (),
    cell_covariates: Sequence[str] = (),
    centered: bool | str | Iterable[str] = True,
    priors: Mapping[str, str] | None = None,
    **sampler: Any,
) -> Fit:
    """Fit the joint multilingual law with the sharing structure of Fernandes et al. (2023).

    ``alpha`` and ``L_inf`` are pooled over the pair column, ``beta`` over (pair, weight) cells
    (column :data:`CELL_COLUMN`, added here). Population values ``alpha_pop`` (the typical
    exponent) and ``alpha_sd`` (its spread between pairs, on the log scale) are in the posterior.

    Parameters
    ----------
    data : path or DataFrame
        One row per run: model size, loss, pair label and sampling weight.
    y, N, pair, weight : str
        Column names of the loss, the model size, the pair and the weight.
    pair_covariates : sequence of str
        Numeric pair-level columns (constant within a pair: direction into English, script,
        resource level) that shift the pooled means of ``alpha`` and ``L_inf``; coefficients
        ``alpha_<column>`` and ``L_inf_<column>`` on the log scale.
    cell_covariates : sequence of str
        Numeric cell-level columns that shift the pooled mean of ``log beta`` (for example
        ``log`` of the weight).
    centered : bool, "auto" or iterable of str
        Which of ``alpha``, ``L_inf`` and ``beta`` use centred pooling (``True``: all three, the
        default; ``False``: none; ``"auto"``: all three centred pair by pair as far as the
        pair's runs pin them, see :class:`~bayescale.priors.Pooling`; or a collection of
        names). Each pair has many runs (all its
        weightings), so its parameters are pinned down by its own data and the centred form
        mixes better: on six simulated pairs with three weights and six sizes over three
        decades, everything centred converged (R-hat <= 1.01, no divergence) while ``alpha``
        non-centred did not (R-hat 1.024, 10 divergences). When pairs' exponents differ by
        less than one pair's own uncertainty neither form samples well (docs/multilingual.md).
    priors : mapping, optional
        Prior overrides, as in :func:`bayescale.fit`.
    **sampler
        Sampler settings passed to :func:`bayescale.fit` (``chains``, ``draws``, ``seed``, ...).

    Returns
    -------
    Fit

    Raises
    ------
    DataError
        For a missing column, a weight outside (0, 1] or a pair label containing ``"@"``.
    """
    frame, _, _ = _read(data)
    for column in (N, y, pair, weight, *pair_covariates, *cell_covariates):
        if column not in frame.columns:
            raise DataError(f"column {column!r} not found; columns are: {', '.join(frame.columns)}")
    if CELL_COLUMN in frame.columns:
        raise DataError(f"the runs already have a column {CELL_COLUMN!r}; rename it")
    names = ("alpha", "L_inf", "beta")
    if isinstance(centered, bool) or centered == Pooling.AUTO:
        form = dict.fromkeys(names, centered)
    elif isinstance(centered, str):
        raise SettingsError(
            f"centered={centered!r}: give True, False, 'auto' or a list of names among "
            f"{', '.join(names)} (the multilingual law has a floor, so it is not proportional to "
            "any of them, which centered='conditional' needs)"
        )
    else:
        centred = {str(name) for name in centered}
        unknown = sorted(centred - set(names))
        if unknown:
            raise SettingsError(
                f"centered names {unknown[0]!r}, which is not one of {', '.join(names)}"
            )
        form = {name: name in centred for name in names}
    frame = frame.copy()
    frame[CELL_COLUMN] = pair_weight_labels(frame[pair], frame[weight])
    pool = [
        Pooling("alpha", pair, centered=form["alpha"], covariates=tuple(pair_covariates)),
        Pooling("L_inf", pair, centered=form["L_inf"], covariates=tuple(pair_covariates)),
        Pooling("beta", CELL_COLUMN, centered=form["beta"], covariates=tuple(cell_covariates)),
    ]
    return fit_law(frame, "multilingual", y=y, x={"N": N}, pool=pool, priors=priors, **sampler)


def _cell_table(fit: Fit, pair_column: str, cell_column: str) -> pd.DataFrame:
    """One row per cell label of the fit: its pair, weight and the codes of both."""
    spec = fit.spec
    pooled = {p.parameter: p.group for p in spec.pooling}
    if pooled.get("beta") != cell_column or pooled.get("alpha") != pair_column:
        raise SettingsError(
            f"this fit does not pool alpha over {pair_column!r} and beta over {cell_column!r} "
            "(fit it with bayescale.multilingual.fit_joint)"
        )
    cells = fit.group_labels(cell_column)
    pairs = fit.group_labels(pair_column)
    table = pd.DataFrame([split_pair_weight(c) for c in cells], columns=["pair", "weight"])
    table["cell"] = cells
    unknown = sorted(set(table["pair"]) - set(pairs))
    if unknown:
        raise DataError(f"cell {unknown[0]!r} names a pair that is not in the fit")
    table["cell_code"] = np.arange(len(cells))
    table["pair_code"] = [pairs.index(p) for p in table["pair"]]
    return table


def effective_fraction(
    fit: Fit,
    *,
    reference_weight: float = 1.0,
    pair_column: str = "pair",
    cell_column: str = CELL_COLUMN,
    prob: float = 0.9,
) -> Derived:
    """Posterior of the effective-parameter fraction ``f_i(p) = (beta_1,i / beta_p,i)^(1/alpha_i)``.

    ``N_eff = f N`` is the size of a model trained on pair ``i`` alone (weight
    ``reference_weight``, 1 by default) that reaches the same reducible loss as an ``N``-parameter
    model trained at weight ``p``. ``f = p`` means the pair gets exactly its share of the
    parameters; ``f > p`` means the other pairs help (positive transfer). Computed draw by draw
    from the joint posterior, so the interval carries the correlation of ``beta`` and ``alpha``.

    Parameters
    ----------
    fit : Fit
        A fit from :func:`fit_joint` (or any fit of the ``multilingual`` law with the same
        pooling).
    reference_weight : float
        The weight whose multiplier is ``beta_ref`` (the pair trained alone: 1).
    pair_column, cell_column : str
        The group columns of ``alpha`` and ``beta``.
    prob : float
        Mass of the central intervals of :meth:`Derived.table`.

    Returns
    -------
    Derived
        ``points`` has columns ``pair`` and ``weight`` (one row per cell, reference cells
        included, where ``f = 1``); ``draws`` has shape ``(chains, draws, cells)``.

    Raises
    ------
    DataError
        When a pair has no run at the reference weight.
    """
    table = _cell_table(fit, pair_column, cell_column)
    theta = fit.parameter_draws()
    beta, alpha = theta["beta"], theta["alpha"]
    reference = {}
    for pair, rows in table.groupby("pair"):
        match = rows[np.isclose(rows["weight"], reference_weight)]
        if match.empty:
            raise DataError(
                f"pair {pair!r} has no run at the reference weight {reference_weight:g} "
                f"(its weights: {', '.join(f'{w:g}' for w in sorted(rows['weight']))}); f is "
                "defined relative to it"
            )
        reference[pair] = int(match["cell_code"].iloc[0])
    ref_code = np.array([reference[p] for p in table["pair"]])
    log_f = (np.log(beta[:, ref_code]) - np.log(beta[:, table["cell_code"]])) / alpha[
        :, table["pair_code"]
    ]
    chains, draws = fit.sampler["chains"], fit.sampler["draws"]
    points = table[["pair", "weight"]].reset_index(drop=True)
    return Derived(
        expression=f"(beta[pair@{reference_weight:g}] / beta[pair@weight])^(1 / alpha[pair])",
        points=points,
        draws=np.exp(log_f).reshape(chains, draws, len(points)),
        prob=prob,
    )


def fit_effective_fraction(
    fractions: Derived,
    *,
    pool_pairs: bool = False,
    priors: Mapping[str, str] | None = None,
    **sampler: Any,
) -> Fit:
    """Fit ``f_hat(p) = p + c1 p^c2 (1 - p)^c3`` to the posterior of ``f`` (a second stage).

    Each (pair, weight) cell other than the reference contributes the posterior median of its
    ``f``; the ``effective_fraction`` law is fitted to those with a log-normal scatter ``sigma``,
    which absorbs both the departure of cells from the curve and the first stage's uncertainty.

    Why two stages rather than ``f_hat`` inside the joint law: the joint law with one free
    multiplier per cell makes no assumption about how the weight acts, so the posterior of each
    cell's ``f`` is a check of the ``f_hat`` form rather than a consequence of it; ``f_hat`` is an
    empirical interpolation with three parameters, fitted to a handful of cells; and the two
    pieces stay separately inspectable. The price is that the first stage's per-cell uncertainty
    is summarised by ``sigma`` instead of being propagated exactly (the simulation test checks
    that the resulting intervals still cover).

    Parameters
    ----------
    fractions : Derived
        The output of :func:`effective_fraction`.
    pool_pairs : bool
        Pool ``c1`` (the size of the departure from ``f = p``) over pairs instead of sharing it;
        useful when pairs transfer differently (into versus out of English).
    priors : mapping, optional
        Prior overrides for ``c1``, ``c2``, ``c3``, ``sigma``.
    **sampler
        Sampler settings passed to :func:`bayescale.fit`.

    Returns
    -------
    Fit
        A fit of the ``effective_fraction`` law with input ``p`` and outcome ``f``.

    Raises
    ------
    DataError
        When the cells below the reference weight have fewer than 3 distinct weights: the three
        coefficients are then not identified (with cells at 0.5 and 0.2 only, a simulated fit
        ended at R-hat 1.048 with 5 divergences; at 0.7, 0.5, 0.2 and 0.1 it converged).
    """
    table = fractions.table()
    cells = table[table["weight"] < 1.0]
    distinct = sorted(set(cells["weight"]))
    if len(distinct) < 3:
        raise DataError(
            "fitting f_hat (three coefficients c1, c2, c3) needs cells at 3 or more distinct "
            f"weights below 1, got {len(distinct)} ({', '.join(f'{w:g}' for w in distinct)}): "
            "with fewer, c2 and c3 are not identified"
        )
    frame = pd.DataFrame(
        {"p": cells["weight"].to_numpy(), "f": cells["median"].to_numpy(), "pair": cells["pair"]}
    )
    pool = ["c1|pair"] if pool_pairs else []
    with warnings.catch_warnings():
        # cells of different pairs at one weight are replicates of f(p) by design
        warnings.simplefilter("ignore", DuplicateRunsWarning)
        return fit_law(frame, "effective_fraction", y="f", pool=pool, priors=priors, **sampler)


def forecast_weighting(
    joint: Fit,
    fraction: Fit,
    *,
    pair: str,
    weight: float,
    N: float | Sequence[float],
    reference_weight: float = 1.0,
    pair_column: str = "pair",
    cell_column: str = CELL_COLUMN,
    prob: float = 0.9,
) -> Derived:
    """Loss of ``pair`` at a sampling weight never trained: ``beta_1 (f_hat N)^-alpha + L_inf``.

    ``beta_ref``, ``alpha`` and ``L_inf`` are the pair's posterior draws from the joint law;
    ``f_hat(weight)`` comes from the second-stage fit (its predictive draws, with the scatter of
    cells around the curve). The two posteriors are independent, so their draws are paired by
    index.

    Returns
    -------
    Derived
        ``points`` has one row per model size (columns ``pair``, ``weight``, ``N``).
    """
    if not 0 < weight <= 1:
        raise DataError(f"weight {weight:g} is not in (0, 1]")
    sizes = np.atleast_1d(np.asarray(N, dtype=float))
    if not np.all(np.isfinite(sizes) & (sizes > 0)):
        raise DataError(f"model sizes must be positive numbers, got {sizes.tolist()}")
    table = _cell_table(joint, pair_column, cell_column)
    rows = table[(table["pair"] == pair) & np.isclose(table["weight"], reference_weight)]
    if rows.empty:
        known = ", ".join(sorted(set(table["pair"])))
        raise DataError(
            f"pair {pair!r} has no run at the reference weight {reference_weight:g} in the "
            f"joint fit (pairs: {known})"
        )
    theta = joint.parameter_draws()
    cell, code = int(rows["cell_code"].iloc[0]), int(rows["pair_code"].iloc[0])
    beta, alpha, floor = theta["beta"][:, cell], theta["alpha"][:, code], theta["L_inf"][:, code]
    at = {"p": weight}
    if fraction.spec.pooling_of("c1") is not None:
        at["pair"] = pair
    f_hat = fraction.forecast(at).predictive.reshape(-1)
    n = min(beta.size, f_hat.size)
    loss = beta[:n, None] * (f_hat[:n, None] * sizes[None, :]) ** -alpha[:n, None] + floor[:n, None]
    chains = joint.sampler["chains"]
    per_chain = n // chains
    loss = loss[: chains * per_chain].reshape(chains, per_chain, sizes.size)
    points = pd.DataFrame({"pair": pair, "weight": weight, "N": sizes})
    return Derived(
        expression=f"beta[{pair}@{reference_weight:g}] * (f_hat({weight:g}) * N)^(-alpha) + L_inf",
        points=points,
        draws=loss,
        prob=prob,
    )
