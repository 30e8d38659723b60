"""Forecasts from a fit: posterior predictive at new inputs and compute-optimal allocation.

Every quantity is computed draw by draw from the joint posterior, so intervals carry the
correlation between parameters (an interval on ``N*(C)`` is not a combination of marginal
intervals on ``alpha`` and ``beta``).

Examples
--------
>>> import bayescale as bs
>>> fit = bs.load_fit("chinchilla.nc")  # doctest: +SKIP
>>> fit.forecast({"N": 7e10, "D": 1.4e12}).table()  # doctest: +SKIP
>>> fit.compute_optimal(5.76e23)  # doctest: +SKIP
>>> fit.derived("beta / (alpha + beta)").table()  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import warnings
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from bayescale.data import load_points
from bayescale.errors import DataError, LawError, SettingsError
from bayescale.formula import parse_formula
from bayescale.likelihoods import curve_labels, get_observation_model, walk_positions
from bayescale.model import _log_density_of_log, at_runs, split_parameters
from bayescale.pointfit import free_and_fixed, huber_fit, predict
from bayescale.priors import Prior
from bayescale.results import Fit, interval_names, quantile_columns

_CHUNK_ELEMENTS = 4_000_000
"""Largest draws-by-points block evaluated at once (bounds memory for long grids)."""


@dataclass(frozen=True, eq=False)
class Forecast:
    """Posterior forecasts at a set of points.

    Attributes
    ----------
    points : pandas.DataFrame
        The inputs (and group labels) of each point.
    curve : ndarray, shape (chains, draws, points)
        The law's mean at each point, without observation noise.
    predictive : ndarray, shape (chains, draws, points)
        Draws of a new observed outcome at each point (with observation noise).
    prob : float
        Mass of the central intervals reported by :meth:`table`.
    outcome : str
        Name of the outcome.
    """

    points: pd.DataFrame
    curve: np.ndarray
    predictive: np.ndarray
    prob: float
    outcome: str

    def table(self) -> pd.DataFrame:
        """Per point: the inputs, the predictive median and interval, and the curve's.

        Columns ``median, q05, q95`` (for ``prob=0.9``) describe a new observed outcome;
        ``curve_median, curve_q05, curve_q95`` the noise-free law.
        """
        out = self.points.copy()
        predictive = quantile_columns(self.prob, self.predictive.reshape(-1, self.n_points))
        curve = quantile_columns(self.prob, self.curve.reshape(-1, self.n_points))
        for name, values in predictive.items():
            out[name] = values
        for name, values in curve.items():
            out[f"curve_{name}"] = values
        return out

    @property
    def n_points(self) -> int:
        return len(self.points)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form printed by ``bayescale forecast --json``."""
        table = self.table()
        low, high = interval_names(self.prob)
        points = []
        for _, row in table.iterrows():
            inputs = {c: _plain(row[c]) for c in self.points.columns}
            points.append(
                {
                    "inputs": inputs,
                    "median": float(row["median"]),
                    low: float(row[low]),
                    high: float(row[high]),
                    "curve": {
                        "median": float(row["curve_median"]),
                        low: float(row[f"curve_{low}"]),
                        high: float(row[f"curve_{high}"]),
                    },
                }
            )
        return {"outcome": self.outcome, "prob": self.prob, "points": points}


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def forecast(
    fit: Fit,
    at: Mapping | list | pd.DataFrame,
    *,
    prob: float = 0.9,
    seed: int | None = None,
    discrepancy: str | None = None,
) -> Forecast:
    """Posterior predictive of the outcome, and of the law's mean, at new inputs.

    Parameters
    ----------
    fit : Fit
    at : mapping, list of mappings, or DataFrame
        The points: every law input, plus a label for each group column the fit pools over.
    prob : float
        Mass of the central intervals in :meth:`Forecast.table`.
    seed : int, optional
        Seed of the observation-noise draws; defaults to the fit's seed, so a saved and reloaded
        fit gives identical forecasts. Each point's draws depend only on the seed and the point,
        not on the other points forecast with it.
    discrepancy : {None, "walk"}
        ``"walk"`` adds the law's own error to a fit made with independent noise: a random walk
        in log input and a drift beyond the fitted runs, estimated from the fit's residuals and
        from leave-future-out refits (see :func:`walk_draws`). Fits made with the
        ``lognormal_walk`` observation model always include their walk (no drift).

    Returns
    -------
    Forecast

    Raises
    ------
    DataError
        For missing or invalid inputs, or a label the fit has not seen.
    """
    spec = fit.spec
    group_columns = spec.group_columns
    needs_trials = spec.observation.needs_trials
    points = load_points(
        at,
        fit.law,
        group_columns,
        covariates=spec.covariate_columns,
        optional=("trials",) if needs_trials else (),
    )
    codes = _group_codes(fit, points, group_columns)
    covariates = {c: points[c].to_numpy(dtype=np.float64) for c in spec.covariate_columns}
    x = {name: points[name].to_numpy(dtype=np.float64) for name in fit.law.input_names}
    theta = fit.parameter_draws()
    chains, draws = fit.sampler["chains"], fit.sampler["draws"]
    key = jax.random.PRNGKey(fit.seed if seed is None else seed)
    trials = None
    if needs_trials:
        if "trials" not in points:
            typical = int(np.median(fit.datatree["constant_data"]["trials"].values))
            points["trials"] = np.full(len(points), typical, dtype=np.int64)
        trials = points["trials"].to_numpy(dtype=np.float64)
    with jax.enable_x64(True):
        log_curve = law_log_mean(fit, theta, x, codes, covariates)
        values, _ = _point_parameters(fit, theta, codes, covariates)
        _, observation_theta = split_parameters(spec, values)
        log_center, observation_theta = _with_walk(
            fit, theta, x, codes, log_curve, observation_theta, discrepancy
        )
        observation_theta = {
            k: jnp.broadcast_to(jnp.asarray(v), log_curve.shape)
            for k, v in observation_theta.items()
        }
        point_keys = jax.vmap(lambda k: jax.random.fold_in(key, k))(_point_seeds(points))
        # integer trials: numpyro's binomial sampler indexes a table by the count (n >= 10)
        point_trials = (
            jnp.ones(len(points))
            if trials is None
            else jnp.asarray(np.rint(trials).astype(np.int64))
        )

        def draw(point_key, log_mean, point_theta, n):
            distribution = spec.observation.distribution(log_mean, point_theta, n)
            return spec.observation.to_outcome(distribution.sample(point_key), n)

        noisy = jax.vmap(draw, in_axes=(0, 1, 1, 0), out_axes=1)(
            point_keys, jnp.asarray(log_center), observation_theta, point_trials
        )
        predictive = np.asarray(noisy)
    shape = (chains, draws, len(points))
    return Forecast(
        points=points,
        curve=np.exp(log_curve).reshape(shape),
        predictive=predictive.reshape(shape),
        prob=prob,
        outcome=fit.outcome,
    )


def log_predictive_density(fit: Fit, at, observed, *, discrepancy: str | None = None) -> np.ndarray:
    """Log posterior predictive density of observed outcomes at new points.

    ``log p(y_i | data) = log mean_s p(y_i | theta_s)`` over the posterior draws ``theta_s``,
    with the fit's observation model (success counts for binomial models, given ``trials`` in
    the points), and the discrepancy of :func:`forecast` when asked. Used to score forecasts of
    held-out runs.

    Returns
    -------
    ndarray
        One value per point.
    """
    spec = fit.spec
    points = load_points(
        at,
        fit.law,
        spec.group_columns,
        covariates=spec.covariate_columns,
        optional=("trials",) if spec.observation.needs_trials else (),
    )
    observed = np.asarray(observed, dtype=np.float64)
    if observed.shape != (len(points),):
        raise DataError(f"give one observed value per point ({len(points)}), got {observed.shape}")
    if spec.observation.needs_trials and "trials" not in points:
        raise DataError("the binomial observation models need the trials of each point")
    codes = _group_codes(fit, points, spec.group_columns)
    covariates = {c: points[c].to_numpy(dtype=np.float64) for c in spec.covariate_columns}
    x = {name: points[name].to_numpy(dtype=np.float64) for name in fit.law.input_names}
    theta = fit.parameter_draws()
    with jax.enable_x64(True):
        log_curve = jnp.asarray(law_log_mean(fit, theta, x, codes, covariates))
        values, _ = _point_parameters(fit, theta, codes, covariates)
        _, observation_theta = split_parameters(spec, values)
        log_center, observation_theta = _with_walk(
            fit, theta, x, codes, log_curve, observation_theta, discrepancy
        )
        trials = jnp.asarray(points["trials"].to_numpy(float)) if "trials" in points else None
        distribution = spec.observation.distribution(log_center, observation_theta, trials)
        log_density = distribution.log_prob(
            spec.observation.observed(jnp.asarray(observed), trials)
        )
        result = jax.scipy.special.logsumexp(log_density, axis=0) - np.log(log_curve.shape[0])
    return np.asarray(result)


def _with_walk(fit: Fit, theta, x, codes, log_curve, observation_theta, discrepancy=None):
    """The centre and scatter of each point's log outcome: the law's curve and its white noise,
    or, with a random-walk discrepancy, the curve shifted by the conditional mean of the law's
    error given the fitted runs, with its conditional variance added to the noise. Each point is
    conditioned on the fitted runs alone (not on the other points)."""
    if discrepancy not in (None, "walk"):
        raise SettingsError(f"unknown discrepancy {discrepancy!r}; choose None or 'walk'")
    if not fit.spec.observation.correlated and discrepancy is None:
        return log_curve, observation_theta
    setup = _walk_setup(fit, theta, x, codes)  # residuals and geometry, computed once
    if fit.spec.observation.correlated:
        walk = {"sigma": theta["sigma"], "tau": theta["tau"]}
    else:
        walk = _calibrated_walk_once(fit, theta, setup)
    shift, variance = _conditional(setup, walk)
    sigma = np.asarray(walk["sigma"], dtype=np.float64)[:, None]
    return jnp.asarray(log_curve) + shift, {
        **observation_theta,
        "sigma": jnp.asarray(np.sqrt(sigma**2 + variance)),
    }


LEAVE_FUTURE_OUT_FRACTIONS = (0.5, 0.6, 0.7, 0.8)
"""Where the fitted runs are cut to calibrate a two-stage random walk: the law is refitted to the
first 50%, 60%, 70% and 80% of them (in order of the input) and scored on the rest."""


def walk_draws(fit: Fit, theta, grid: int = 60) -> dict[str, np.ndarray]:
    """Posterior draws of the law's error ``(sigma, tau, kappa)`` for a fit made with
    independent noise: the second stage of a two-stage ("modular", Liu, Bayarri & Berger 2009)
    analysis.

    The law's error in log outcome is modelled as white noise (sd ``sigma``), a random walk in
    log input (Brownian motion, sd ``tau`` per unit of log input) and, beyond the fitted runs, a
    drift: ``kappa`` times the log-input distance ``b`` past the last fitted run (an error in the
    exponent, which the law absorbs inside the data but which grows linearly outside it; variance
    ``kappa^2 b^2``). The law's posterior is kept as it is. ``(log sigma, log tau, log kappa)``
    then gets its posterior on a ``grid`` x ``grid`` x 40 grid under the priors
    ``HalfNormal(0.5)`` and ``HalfNormal(0.1)`` of the ``lognormal_walk`` observation model for
    ``sigma`` and ``tau`` and :data:`DRIFT_PRIOR` for ``kappa``, from two kinds of evidence:

    1. the residuals of the fitted runs from the posterior-median curve, modelled as that
       observation model models them (walk plus white noise); in-sample residuals say little
       about ``tau`` and nothing about ``kappa``, because the law's parameters absorb what they
       can of its error;
    2. leave-future-out errors (:func:`leave_future_out_errors`): the law refitted to the first
       part of the runs and scored on the rest, each cut's errors modelled as the error of a
       forecast from the cut (covariance ``sigma^2 I + tau^2 min(d_i, d_j) + kappa^2 d_i d_j``,
       ``d`` the log-input distance from the cut's last run); the cuts overlap, so their
       log-likelihoods are averaged rather than summed. This is how wrong the law was when it
       extrapolated inside the data, the evidence a forecast beyond the data needs.

    Without leave-future-out errors (a fit with groups or covariates, or too few runs to cut)
    nothing informs ``kappa`` and it is 0: the walk alone, calibrated on the residuals. One
    triple is drawn per law draw (seeded by the fit's seed). Used where the joint model samples
    badly: a nearly flat curve leaves the law's parameters weakly identified once a walk may
    explain the residuals.

    Returns
    -------
    dict
        ``sigma``, ``tau`` and ``kappa``, one value per posterior draw.
    """
    return _walk_draws(
        _walk_setup(fit, theta, None, {}), fit.seed, leave_future_out_errors(fit, theta), grid
    )


DRIFT_PRIOR = "HalfNormal(0.1)"
"""Prior of the drift ``kappa`` of a two-stage discrepancy (change in log outcome per unit of log
input beyond the fitted runs): an exponent wrong by 0.1 is plausible, by 0.3 rare."""

DRIFT_GRID = np.linspace(np.log(1e-5), np.log(1.0), 40)
"""Grid of ``log kappa`` for :func:`walk_draws`."""


def leave_future_out_errors(
    fit: Fit, theta, fractions=LEAVE_FUTURE_OUT_FRACTIONS
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The law's errors when it extrapolates inside the fitted runs.

    For each fraction ``f`` the runs (sorted by input) are cut after the first
    ``max(free parameters + 1, round(f n))``; the law is refitted to that prefix by the Huber
    point fit of :mod:`bayescale.pointfit` (started at the posterior median and at 8 prior
    draws, the best kept) and its log error at every later run is recorded with that run's
    log-input distance from the prefix's last run.

    Only for a single curve: a fit with group columns or covariates returns no errors (the refit
    would need every group's parameters), and the walk is then calibrated on the residuals alone.

    Returns
    -------
    list of (errors, distances)
        One pair of arrays per usable cut.
    """
    spec = fit.spec
    if spec.group_columns or spec.covariate_columns or len(fit.law.input_names) != 1:
        return []
    (axis,) = fit.law.input_names
    x = fit.datatree["constant_data"][axis].values.astype(np.float64)
    y = fit.datatree["observed_data"][fit.outcome].values.astype(np.float64)
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    free, fixed = free_and_fixed(fit.law, spec.priors)
    start = np.array([np.median(np.asarray(theta[p.name])) for p in free])
    cuts = sorted({max(len(free) + 1, int(round(f * x.size))) for f in fractions})
    out = []
    for cut in (c for c in cuts if c < x.size):
        prefix = {axis: x[:cut]}
        best, best_loss = None, np.inf
        for candidate_start, starts in ((start, 1), (None, 8)):
            try:
                candidate = huber_fit(
                    fit.law, free, fixed, prefix, y[:cut], candidate_start, starts=starts
                )
            except (RuntimeError, ValueError, FloatingPointError):
                continue
            if candidate is None:
                continue
            residual = np.log(predict(fit.law, free, fixed, candidate, prefix)) - np.log(y[:cut])
            loss = float(np.sum(residual**2)) if np.all(np.isfinite(residual)) else np.inf
            if loss < best_loss:
                best, best_loss = candidate, loss
        if best is None:
            continue
        errors = np.log(y[cut:]) - np.log(predict(fit.law, free, fixed, best, {axis: x[cut:]}))
        if np.all(np.isfinite(errors)):
            out.append((errors, np.log(x[cut:]) - np.log(x[cut - 1])))
    return out


def _calibrated_walk_once(fit: Fit, theta, setup: _WalkSetup) -> dict[str, np.ndarray]:
    """:func:`walk_draws` of ``fit`` at its own posterior draws ``theta``, computed once per
    :class:`Fit` object and kept on it: a forecast and its scoring
    (:func:`log_predictive_density`) share the refits and the grid posterior (both depend on the
    fitted runs alone, not on the points)."""
    if "_calibrated_walk" not in fit.__dict__:
        fit.__dict__["_calibrated_walk"] = _walk_draws(
            setup, fit.seed, leave_future_out_errors(fit, theta)
        )
    return fit.__dict__["_calibrated_walk"]


def _walk_log_likelihood(values, walk_eigenvalues, sigma2, tau2) -> np.ndarray:
    """Log-likelihood (up to a constant) of ``values`` projected on the eigenvectors of a walk
    covariance per unit ``tau^2`` (eigenvalues ``walk_eigenvalues``), for every ``(sigma^2,
    tau^2)`` of the grid."""
    variance = tau2 * np.clip(walk_eigenvalues, 0.0, None) + sigma2
    return -0.5 * np.sum(values**2 / variance + np.log(variance), axis=-1)


def _walk_draws(setup: _WalkSetup, seed: int, errors=(), grid: int = 60) -> dict[str, np.ndarray]:
    residual = np.median(setup.residual, axis=0)
    log_sigma = np.linspace(np.log(1e-5), np.log(2.0), grid)
    log_tau = np.linspace(np.log(1e-5), np.log(1.0), grid)
    log_kappa = DRIFT_GRID if errors else np.array([-np.inf])  # no evidence: no drift
    sigma2 = np.exp(2 * log_sigma)[:, None, None]
    tau2 = np.exp(2 * log_tau)[None, :, None]
    kappa2 = np.exp(2 * log_kappa)[None, None, :]
    log_likelihood = _walk_log_likelihood(
        setup.basis.T @ residual, setup.eigenvalues, sigma2, tau2
    )[..., None]
    for error, distance in errors:
        log_likelihood = log_likelihood + _forecast_error_log_likelihood(
            error, distance, sigma2, tau2, kappa2
        ) / len(errors)
    log_likelihood = np.broadcast_to(log_likelihood, (grid, grid, log_kappa.size))
    priors = {p.name: p.prior for p in get_observation_model("lognormal_walk").parameters}
    with jax.enable_x64(True):
        log_prior = np.asarray(
            _log_density_of_log(priors["sigma"], jnp.asarray(log_sigma))[:, None, None]
            + _log_density_of_log(priors["tau"], jnp.asarray(log_tau))[None, :, None]
        )
        if errors:
            log_prior = log_prior + np.asarray(
                _log_density_of_log(Prior.parse(DRIFT_PRIOR), jnp.asarray(log_kappa))
            )
    log_posterior = (log_likelihood + log_prior).ravel()
    weights = np.exp(log_posterior - log_posterior.max())
    rng = np.random.default_rng(seed)
    n_draws = setup.residual.shape[0]
    cells = rng.choice(weights.size, size=n_draws, p=weights / weights.sum())
    i, j, k = np.unravel_index(cells, (grid, grid, log_kappa.size))
    step_sigma, step_tau = log_sigma[1] - log_sigma[0], log_tau[1] - log_tau[0]
    step_kappa = log_kappa[1] - log_kappa[0] if errors else 0.0
    return {
        "sigma": np.exp(log_sigma[i] + rng.uniform(-0.5, 0.5, n_draws) * step_sigma),
        "tau": np.exp(log_tau[j] + rng.uniform(-0.5, 0.5, n_draws) * step_tau),
        "kappa": np.exp(log_kappa[k] + rng.uniform(-0.5, 0.5, n_draws) * step_kappa),
    }


def _forecast_error_log_likelihood(error, distance, sigma2, tau2, kappa2) -> np.ndarray:
    """Log-likelihood (up to a constant) of one cut's forecast errors under the covariance
    ``sigma^2 I + tau^2 min(d_i, d_j) + kappa^2 d d'``, on the grid of ``(sigma^2, tau^2,
    kappa^2)`` (arrays broadcasting to ``(sigma, tau, kappa)``). The drift is a rank-one
    update of the walk's covariance, diagonal in the eigenvectors of ``min(d_i, d_j)``: the
    determinant lemma and the Sherman-Morrison formula give it in ``O(n)`` per grid cell."""
    eigenvalues, basis = np.linalg.eigh(np.minimum.outer(distance, distance))
    z, u = basis.T @ error, basis.T @ distance
    diagonal = tau2[..., None] * np.clip(eigenvalues, 0.0, None) + sigma2[..., None]
    zz = np.sum(z**2 / diagonal, axis=-1)
    uu = np.sum(u**2 / diagonal, axis=-1)
    zu = np.sum(z * u / diagonal, axis=-1)
    log_det = np.sum(np.log(diagonal), axis=-1) + np.log1p(kappa2 * uu)
    quadratic = zz - kappa2 * zu**2 / (1.0 + kappa2 * uu)
    return -0.5 * (quadratic + log_det)


@dataclass(frozen=True)
class _WalkSetup:
    """The fitted runs' residuals per draw and the walk's geometry (see :func:`_walk_setup`)."""

    residual: np.ndarray  # (sample, run)
    eigenvalues: np.ndarray  # of K, the runs' walk covariance per unit tau^2
    basis: np.ndarray  # its eigenvectors, (run, run)
    across: np.ndarray  # walk covariance per unit tau^2 between points and runs, (point, run)
    point_position: np.ndarray  # log input above the curve's smallest fitted input, (point,)
    point_beyond: np.ndarray  # log input above the curve's largest fitted input, or 0, (point,)


def _walk_setup(fit: Fit, theta, x, codes) -> _WalkSetup:
    spec = fit.spec
    if len(fit.law.input_names) != 1:
        raise SettingsError(
            f"a random-walk discrepancy walks along one input; law {fit.law.name!r} has "
            f"{len(fit.law.input_names)}"
        )
    (axis,) = fit.law.input_names
    constant = fit.datatree["constant_data"]
    train_codes = {
        c: np.array([fit.group_labels(c).index(v) for v in constant[c].values.astype(str)])
        for c in spec.group_columns
    }
    train_log_x = np.log(constant[axis].values.astype(np.float64))
    covariates = {c: constant[c].values.astype(np.float64) for c in spec.covariate_columns}
    observed = fit.datatree["observed_data"][fit.outcome].values.astype(np.float64)
    residual = np.log(observed) - law_log_mean(
        fit, theta, {axis: np.exp(train_log_x)}, train_codes, covariates
    )
    train_curve = curve_labels(train_codes, train_log_x.size)
    start = {c: train_log_x[train_curve == c].min() for c in set(train_curve)}
    end = {c: train_log_x[train_curve == c].max() for c in set(train_curve)}
    train_position = walk_positions(train_log_x, train_curve)
    walk = np.where(
        train_curve[:, None] == train_curve[None, :],
        np.minimum.outer(train_position, train_position),
        0.0,
    )
    eigenvalues, basis = np.linalg.eigh(walk)
    point_position = point_beyond = np.zeros(0)
    across = np.zeros((0, train_position.size))
    if x is not None:
        point_log_x = np.log(np.asarray(x[axis], dtype=np.float64))
        point_curve = curve_labels(codes, point_log_x.size)
        point_position = np.array(
            [
                max(lx - start.get(c, lx), 0.0)
                for lx, c in zip(point_log_x, point_curve, strict=True)
            ]
        )
        point_beyond = np.array(
            [max(lx - end.get(c, lx), 0.0) for lx, c in zip(point_log_x, point_curve, strict=True)]
        )
        across = np.where(
            point_curve[:, None] == train_curve[None, :],
            np.minimum.outer(point_position, train_position),
            0.0,
        )
    return _WalkSetup(residual, eigenvalues, basis, across, point_position, point_beyond)


def walk_conditional(fit: Fit, theta, x, codes, walk=None) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and variance of the law's random-walk error at new points, per draw.

    Given draw ``s``'s residuals ``r`` of the fitted runs (log outcome minus log law), the error
    at a point is normal with mean ``k' C^-1 r`` and variance ``tau^2 p - k' C^-1 k``, with
    ``C = tau^2 K + sigma^2 I`` the runs' covariance, ``K_ij = min(p_i, p_j)`` within a curve,
    ``k = tau^2 min(p, p_i)`` and ``p`` the log input above the curve's smallest fitted input
    (0 for points below it, or of a curve that was not fitted). ``K`` is diagonalised once, so
    each draw costs ``O(n^2)``. A two-stage discrepancy's drift (``kappa`` in ``walk``, see
    :func:`walk_draws`) adds ``kappa^2 b^2`` to the variance, ``b`` the log input above the
    curve's largest fitted input (0 inside the fitted range).

    Parameters
    ----------
    fit : Fit
    theta : dict
        Posterior draws of the law's parameters (:meth:`Fit.parameter_draws`).
    x, codes : dict
        The points' input and group codes.
    walk : dict, optional
        ``sigma`` and ``tau`` (and ``kappa``) per draw; by default the fit's own
        (``lognormal_walk`` fits, which have no drift).

    Returns
    -------
    shift, variance : ndarray, shape (sample, point)
    """
    return _conditional(_walk_setup(fit, theta, x, codes), theta if walk is None else walk)


def _conditional(setup: _WalkSetup, walk) -> tuple[np.ndarray, np.ndarray]:
    projected = setup.across @ setup.basis
    tau2 = np.asarray(walk["tau"], dtype=np.float64)[:, None] ** 2
    sigma2 = np.asarray(walk["sigma"], dtype=np.float64)[:, None] ** 2
    inverse = 1.0 / (tau2 * np.clip(setup.eigenvalues, 0.0, None) + sigma2)
    shift = tau2 * ((setup.residual @ setup.basis) * inverse) @ projected.T
    variance = tau2 * setup.point_position - tau2**2 * (inverse @ (projected.T**2))
    variance = np.clip(variance, 0.0, None)
    if "kappa" in walk:  # the drift beyond the fitted runs (two-stage discrepancy)
        kappa2 = np.asarray(walk["kappa"], dtype=np.float64)[:, None] ** 2
        variance = variance + kappa2 * setup.point_beyond**2
    return shift, variance


def _point_seeds(points: pd.DataFrame) -> jnp.ndarray:
    """One seed per point, derived from its values: a point's noise draws do not depend on
    which other points are forecast with it, nor on their order."""
    seeds = [
        zlib.crc32(repr(tuple(row)).encode()) & 0x7FFFFFFF
        for row in points.itertuples(index=False, name=None)
    ]
    return jnp.asarray(seeds, dtype=jnp.uint32)


def _group_codes(fit: Fit, points: pd.DataFrame, group_columns) -> dict[str, np.ndarray]:
    codes = {}
    for column in group_columns:
        labels = fit.group_labels(column)
        index = {label: i for i, label in enumerate(labels)}
        unknown = [v for v in points[column] if v not in index]
        if unknown:
            raise DataError(
                f"forecast point: {column} {unknown[0]!r} was not in the fitted data; "
                f"known: {', '.join(labels)}"
            )
        codes[column] = np.array([index[v] for v in points[column]], dtype=np.int64)
    return codes


def _point_parameters(fit: Fit, theta, codes, covariates) -> tuple[dict, dict]:
    """Parameter draws at each point, shape ``(sample, point)`` or ``(sample, 1)``.

    The same :func:`~bayescale.model.at_runs` the model uses: group indexing, then run-level
    covariates.
    """
    shaped = {
        name: values if fit.spec.pooling_of(name) else values[:, None]
        for name, values in theta.items()
    }
    shaped = {k: jnp.asarray(v) for k, v in shaped.items()}
    codes = {k: jnp.asarray(v) for k, v in codes.items()}
    covariates = {k: jnp.asarray(v) for k, v in covariates.items()}
    return at_runs(fit.spec, shaped, {}, codes, covariates)


def law_log_mean(
    fit: Fit,
    theta: Mapping[str, np.ndarray],
    x: Mapping[str, np.ndarray],
    codes: Mapping[str, np.ndarray],
    covariates: Mapping[str, np.ndarray] | None = None,
) -> np.ndarray:
    """``log`` of the law's mean for every posterior draw and point, shape ``(sample, point)``.

    ``x`` holds 1-d arrays of the points' inputs, or 2-d ``(sample, point)`` arrays when the
    inputs differ by draw (as in the compute-optimal search). Evaluated in blocks of points.
    """
    n_points = max(np.shape(v)[-1] for v in x.values())
    n_samples = next(iter(theta.values())).shape[0]
    block = max(1, _CHUNK_ELEMENTS // max(n_samples, 1))
    pieces = []
    with jax.enable_x64(True):
        for start in range(0, n_points, block):
            window = slice(start, start + block)
            x_block = {k: jnp.asarray(np.asarray(v)[..., window]) for k, v in x.items()}
            codes_block = {k: v[window] for k, v in codes.items()}
            covariates_block = {k: v[window] for k, v in (covariates or {}).items()}
            values, _ = _point_parameters(fit, theta, codes_block, covariates_block)
            law_theta, _ = split_parameters(fit.spec, values)
            pieces.append(np.asarray(fit.law.log_mean(x_block, law_theta)))
    return np.broadcast_to(np.concatenate(pieces, axis=-1), (n_samples, n_points)).copy()


@dataclass(frozen=True, eq=False)
class Derived:
    """Posterior draws of a quantity derived from the parameters (see :func:`derived`).

    Attributes
    ----------
    expression : str
    points : pandas.DataFrame
        The points it was evaluated at (one row with no columns when it needs no inputs).
    draws : ndarray, shape (chains, draws, points)
    prob : float
    """

    expression: str
    points: pd.DataFrame
    draws: np.ndarray
    prob: float

    def table(self) -> pd.DataFrame:
        """Per point: the inputs, then the median, the central interval, mean and sd."""
        flat = self.draws.reshape(-1, self.draws.shape[-1])
        out = self.points.copy()
        for name, values in quantile_columns(self.prob, flat).items():
            out[name] = values
        out["mean"] = flat.mean(axis=0)
        out["sd"] = flat.std(axis=0, ddof=1)
        return out


def derived(
    fit: Fit,
    expression: str,
    at: Mapping | list | pd.DataFrame | None = None,
    *,
    prob: float = 0.9,
) -> Derived:
    """Posterior of any arithmetic expression of the parameters (and inputs), draw by draw.

    Parameters
    ----------
    fit : Fit
    expression : str
        A formula over the fit's parameters, covariate coefficients and, when ``at`` is given,
        the law's inputs and run-level covariates; parsed safely (see
        :func:`bayescale.formula.parse_formula`). Pooled parameters take the value of the group
        each point names.
    at : mapping, list or DataFrame, optional
        Points, as for :func:`forecast`; needed when the expression uses inputs or pooled
        parameters.
    prob : float
        Mass of the central interval in :meth:`Derived.table`.

    Returns
    -------
    Derived

    Examples
    --------
    >>> fit = bs.load_fit("chinchilla.nc")  # doctest: +SKIP
    >>> derived(fit, "beta / (alpha + beta)").table()  # doctest: +SKIP
    """
    spec = fit.spec
    theta = fit.parameter_draws()
    inputs = fit.law.input_names
    parsed = parse_formula(expression, names=[*theta, *inputs, *spec.covariate_columns])
    needs_points = any(n in parsed.names for n in (*inputs, *spec.covariate_columns)) or any(
        spec.pooling_of(n) is not None for n in parsed.names
    )
    if at is None:
        if needs_points:
            raise DataError(
                f"expression {expression!r} uses inputs or pooled parameters: give the points (at=)"
            )
        points = pd.DataFrame(index=[0])
        codes, covariates, x = {}, {}, {}
    else:
        points = load_points(
            at, fit.law, spec.group_columns, covariates=spec.covariate_columns, partial=True
        )
        codes = _group_codes(fit, points, spec.group_columns)
        covariates = {c: points[c].to_numpy(dtype=np.float64) for c in spec.covariate_columns}
        x = {n: jnp.asarray(points[n].to_numpy(dtype=np.float64)) for n in inputs if n in points}
    with jax.enable_x64(True):
        values, _ = _point_parameters(fit, theta, codes, covariates)
        coefficients = {name: jnp.asarray(theta[name])[:, None] for name in fit.coefficient_names()}
        result = parsed.evaluate({**values, **coefficients, **x})
        draws = np.broadcast_to(np.asarray(result), (theta_size(theta), len(points)))
    chains, n_draws = fit.sampler["chains"], fit.sampler["draws"]
    return Derived(expression, points, draws.reshape(chains, n_draws, len(points)), prob)


def theta_size(theta: Mapping[str, np.ndarray]) -> int:
    """Number of posterior samples in a dictionary of flattened draws."""
    return next(iter(theta.values())).shape[0]


# ---------------------------------------------------------------------------- allocation
_ALLOCATIONS = {
    frozenset({"N", "D"}): "ND",
    frozenset({"C", "M"}): "CM",
}


def compute_optimal(
    fit: Fit,
    compute: float | list[float] | np.ndarray,
    *,
    flops_per_parameter_token: float = 6.0,
    prob: float = 0.9,
    groups: Mapping[str, str] | None = None,
    grid_size: int = 241,
    refine_steps: int = 60,
) -> pd.DataFrame:
    """Compute-optimal model size, tokens and tokens per parameter, with intervals.

    For each posterior draw, minimises the law's loss over the split of a compute budget
    ``C = k N D`` (``k = 6`` by default) between parameters ``N`` and tokens ``D``: a log-spaced
    grid over tokens per parameter from 1e-3 to 1e6, then golden-section refinement. Works for
    any law whose inputs are ``N`` and ``D`` (Chinchilla, Kaplan) or ``C`` and ``M = D / N``
    (over-training).

    Parameters
    ----------
    fit : Fit
    compute : float or sequence of float
        Budgets in FLOP.
    flops_per_parameter_token : float
        ``k`` in ``C = k N D``.
    prob : float
        Mass of the central intervals.
    groups : mapping, optional
        A label for each pooled group column (which group's law to optimise).
    grid_size, refine_steps : int
        Resolution of the search (the defaults resolve the optimum to about 1e-9 in log N).

    Returns
    -------
    pandas.DataFrame
        Indexed by compute; for ``N_opt``, ``D_opt``, ``tokens_per_parameter`` and ``loss``:
        median and central interval, plus ``at_search_edge`` (share of draws whose optimum lies
        at the edge of the search range: the law has no optimum there).

    Raises
    ------
    LawError
        If the law's inputs are not (N, D) or (C, M).
    """
    kind = _ALLOCATIONS.get(frozenset(fit.law.input_names))
    if kind is None:
        raise LawError(
            f"compute-optimal allocation needs a law of (N, D) or (C, M); law {fit.law.name!r} "
            f"has inputs {', '.join(fit.law.input_names)}"
        )
    budgets = np.atleast_1d(np.asarray(compute, dtype=np.float64))
    if not np.all(np.isfinite(budgets) & (budgets > 0)):
        raise DataError(f"compute budgets must be positive numbers, got {budgets.tolist()}")
    theta = fit.parameter_draws()
    group_columns = fit.spec.group_columns
    labels = dict(groups or {})
    missing = [c for c in group_columns if c not in labels]
    if missing:
        raise DataError(
            f"compute_optimal: give a label for group column {missing[0]!r} (groups=...)"
        )
    codes = _group_codes(fit, pd.DataFrame({c: [labels[c]] for c in group_columns}), group_columns)
    n_samples = next(iter(theta.values())).shape[0]
    k = float(flops_per_parameter_token)
    rows = []
    for budget in budgets:
        log_loss = functools.partial(_allocation_log_loss, fit, theta, codes, kind, budget, k)
        log_ratio, edge = _minimise(log_loss, n_samples, grid_size, refine_steps)
        ratio = np.exp(log_ratio)
        n_opt = np.sqrt(budget / (k * ratio))
        loss = np.exp(log_loss(log_ratio[:, None])[:, 0])
        row: dict[str, float] = {"compute": budget}
        for name, values in (
            ("N_opt", n_opt),
            ("D_opt", ratio * n_opt),
            ("tokens_per_parameter", ratio),
            ("loss", loss),
        ):
            for stat, value in quantile_columns(prob, values).items():
                row[f"{name}_{stat}"] = float(value)
        row["at_search_edge"] = float(np.mean(edge))
        rows.append(row)
        if edge.any():
            warnings.warn(
                f"at C = {budget:.3g}, {edge.mean():.1%} of draws have no optimum inside tokens "
                "per parameter 1e-3..1e6; their allocation is the edge of that range",
                stacklevel=2,
            )
    return pd.DataFrame(rows).set_index("compute")


def _allocation_log_loss(fit, theta, codes, kind, budget, k, log_ratio):
    """``log`` loss per draw when budget ``C = k N D`` is split at ``log(D / N) = log_ratio``.

    ``log_ratio`` has shape ``(sample, point)``.
    """
    n = np.sqrt(budget / (k * np.exp(log_ratio)))
    if kind == "ND":
        inputs = {"N": n, "D": budget / (k * n)}
    else:
        inputs = {"C": np.full_like(n, budget), "M": np.exp(log_ratio)}
    point_codes = {c: np.repeat(v, log_ratio.shape[-1]) for c, v in codes.items()}
    return law_log_mean(fit, theta, inputs, point_codes)


_LOG_RATIO_RANGE = (np.log(1e-3), np.log(1e6))


def _minimise(function, n_samples: int, grid_size: int, refine_steps: int):
    """Minimise ``function`` over a scalar per draw: grid search, then golden section."""
    grid = np.linspace(*_LOG_RATIO_RANGE, grid_size)
    values = function(np.broadcast_to(grid, (n_samples, grid_size)))
    best = np.argmin(np.where(np.isfinite(values), values, np.inf), axis=1)
    edge = (best == 0) | (best == grid_size - 1)
    step = grid[1] - grid[0]
    low = grid[best] - step
    high = grid[best] + step
    ratio = (np.sqrt(5) - 1) / 2
    for _ in range(refine_steps):
        a = high - ratio * (high - low)
        b = low + ratio * (high - low)
        pair = function(np.stack([a, b], axis=1))
        left_better = pair[:, 0] < pair[:, 1]
        high = np.where(left_better, b, high)
        low = np.where(left_better, low, a)
    return 0.5 * (low + high), edge


def new_group_draws(
    fit: Fit,
    group: str,
    covariates: Mapping[str, float] | None = None,
    *,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Parameter draws for a label of ``group`` that was not in the fitted data.

    Every parameter pooled over ``group`` gets, for each posterior draw, a fresh group value from
    the population that draw describes: on the link scale, ``centre + sd * z`` with ``z`` a
    standard normal, ``centre`` the population value plus the group-level covariate effects
    (``coefficient * covariates[column]``). So the spread of the forecast carries both the
    uncertainty of the population and the variation between groups: it is what the fit knows
    about a language or pool it has never seen. A parameter sampled at a reference scale is
    drawn on its reference coordinate, as the model does. Parameters that are not pooled keep
    their draws.

    Parameters
    ----------
    fit : Fit
        A fit that pools at least one parameter over ``group``.
    group : str
        The group column (``"language"``, ``"pool"``).
    covariates : mapping, optional
        Values of the group-level covariates of the new group (every covariate of every
        parameter pooled over ``group`` must be given, on the scale used in the fit).
    seed : int
        Seed of the standard normal draws.

    Returns
    -------
    dict of str to ndarray
        Draws ``(sample,)`` of every parameter of the law and the observation model.

    Raises
    ------
    SettingsError
        When no parameter is pooled over ``group``, or one is pooled over another column (a new
        group has no value of it).
    DataError
        When a covariate value is missing or not a finite number.

    Examples
    --------
    >>> import bayescale as bs  # doctest: +SKIP
    >>> draws = bs.new_group_draws(fit, "language", {"latin_script": 1.0})  # doctest: +SKIP
    """
    from bayescale.errors import SettingsError
    from bayescale.formula import NUMPY_OPS

    spec = fit.spec
    covariates = dict(covariates or {})
    pooled = [p for p in spec.parameters if spec.pooling_of(p.name) is not None]
    if not any(spec.pooling_of(p.name).group == group for p in pooled):
        raise SettingsError(f"no parameter of this fit is pooled over {group!r}")
    other = [p.name for p in pooled if spec.pooling_of(p.name).group != group]
    if other:
        raise SettingsError(
            f"{other[0]} is pooled over {spec.pooling_of(other[0]).group!r}, not {group!r}: a "
            f"new {group} has no value of it"
        )
    posterior = fit.datatree["posterior"]
    n = posterior.sizes["chain"] * posterior.sizes["draw"]

    def draws_of(name: str) -> np.ndarray:
        prior = spec.priors.get(name)
        if prior is not None and prior.is_fixed:
            return np.full(n, prior.fixed_value)
        return np.asarray(posterior[name].values).reshape(n)

    theta = fit.parameter_draws()
    out = {name: value for name, value in theta.items() if np.ndim(value) == 1}
    # the values the model centres reference coordinates on: population values of pooled
    # parameters, the draws of the others
    population = dict(out)
    for param in spec.parameters:
        pooling = spec.pooling_of(param.name)
        if pooling is not None:
            prior = spec.priors[param.name]
            population[param.name] = (
                np.full(n, prior.fixed_value)
                if prior.is_fixed
                else draws_of(pooling.population_name)
            )
    log_reference = fit.data_info.get("log_reference", {})
    rng = np.random.default_rng(seed)
    for param in spec.sampling_order():
        pooling = spec.pooling_of(param.name)
        if pooling is None:
            continue
        pop = population[param.name]
        shift = np.zeros(n)
        for name, column in zip(pooling.coefficient_names, pooling.covariates, strict=True):
            value = covariates.get(column)
            try:
                value = float(value)
            except (TypeError, ValueError):
                value = float("nan")
            if not np.isfinite(value):
                raise DataError(
                    f"the new {group} needs a finite value of the group covariate {column!r} "
                    f"(got {covariates.get(column)!r})"
                )
            shift = shift + draws_of(name) * value
        z = rng.standard_normal(n)
        spread = draws_of(pooling.sd_name) * z
        if spec.uses_reference(param):
            ref = param.reference
            log_pop = np.log(pop)
            if ref.kind == "coefficient":
                u = log_pop - ref.log_scale(population, log_reference, NUMPY_OPS)
                u_new = u + shift + spread
                out[param.name] = np.exp(u_new + ref.log_scale(out, log_reference, NUMPY_OPS))
            else:
                exponent = ref.exponent.evaluate(population, ops=NUMPY_OPS)
                u = exponent * (log_pop - log_reference[ref.input])
                u_new = u + shift + spread
                new_exponent = ref.exponent.evaluate(out, ops=NUMPY_OPS)
                out[param.name] = np.exp(u_new / new_exponent + log_reference[ref.input])
        else:
            link = param.support.link(pop, NUMPY_OPS) + shift + spread
            out[param.name] = param.support.inverse_link(link, NUMPY_OPS)
    return out


def forecast_new_group(
    fit: Fit,
    group: str,
    at: Mapping | list | pd.DataFrame,
    covariates: Mapping[str, float] | None = None,
    *,
    prob: float = 0.9,
    seed: int = 0,
) -> Derived:
    """The law's curve for a new label of ``group`` (a language or pool never fitted).

    Parameters come from :func:`new_group_draws`; the curve is the law's mean at the points
    ``at`` (inputs only, no group column), draw by draw.

    Returns
    -------
    Derived
        ``draws`` has shape ``(chains, draws, points)``.
    """
    spec = fit.spec
    if isinstance(at, pd.DataFrame):
        points = at
    elif isinstance(at, Mapping):
        points = pd.DataFrame({k: np.atleast_1d(np.asarray(v, dtype=float)) for k, v in at.items()})
    else:
        points = pd.DataFrame(list(at))
    missing = [name for name in spec.law.input_names if name not in points.columns]
    if missing:
        raise DataError(f"forecast point: input {missing[0]!r} not given")
    theta = new_group_draws(fit, group, covariates, seed=seed)
    from bayescale.formula import NUMPY_OPS

    x = {name: points[name].to_numpy(float)[None, :] for name in spec.law.input_names}
    law_theta = {name: theta[name][:, None] for name in spec.law.parameter_names}
    curve = np.asarray(spec.law.mean(x, law_theta, ops=NUMPY_OPS), dtype=float)
    curve = np.broadcast_to(curve, (theta[spec.law.parameter_names[0]].shape[0], len(points)))
    posterior = fit.datatree["posterior"]
    shape = (posterior.sizes["chain"], posterior.sizes["draw"], len(points))
    return Derived(
        expression=f"law mean for a new {group}",
        points=points.reset_index(drop=True),
        draws=curve.reshape(shape),
        prob=prob,
    )
