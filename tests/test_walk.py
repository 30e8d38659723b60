"""The random-walk discrepancy observation model (``lognormal_walk``).

Its joint density, its leave-one-out pointwise densities and the forecast's conditional error are
each checked against a direct computation with dense linear algebra (SciPy), then a fit, its
forecast, PSIS-LOO and a batched fit are run end to end.
"""

from __future__ import annotations

import warnings

import arviz_stats
import jax
import numpy as np
import pandas as pd
import pytest
from scipy import stats

import bayescale as bs
from bayescale.batch import fit_batch
from bayescale.errors import ConvergenceWarning, DataError, PriorError, SettingsError
from bayescale.forecast import (
    _walk_draws,
    _walk_setup,
    leave_future_out_errors,
    log_predictive_density,
    walk_conditional,
    walk_draws,
)
from bayescale.formula import NUMPY_OPS
from bayescale.likelihoods import LogNormalWalk, walk_positions
from bayescale.model import ModelSpec

RNG = np.random.default_rng(3)


def _dense_covariance(position, block, sigma, tau):
    same = block[:, None] == block[None, :]
    return np.where(same, tau**2 * np.minimum.outer(position, position), 0.0) + sigma**2 * np.eye(
        position.size
    )


def _example(n=7):
    log_x = np.sort(RNG.uniform(0, 5, n))
    block = np.array([0, 1] * (n // 2) + [0] * (n % 2))
    position = walk_positions(log_x, block)
    log_mean = RNG.normal(0, 0.3, n)
    y = np.exp(log_mean + RNG.normal(0, 0.1, n))
    return log_x, block, position, log_mean, y


def test_positions_start_at_zero_on_every_curve():
    position = walk_positions(np.log([10.0, 100.0, 1000.0, 5.0, 50.0]), np.array([0, 0, 0, 1, 1]))
    np.testing.assert_allclose(position, np.log([1, 10, 100, 1, 10]), atol=1e-12)


def test_joint_density_is_the_multivariate_normal_of_log_y_with_its_jacobian():
    _, block, position, log_mean, y = _example()
    with jax.enable_x64(True):
        walk = LogNormalWalk(log_mean, 0.05, 0.2, position, block)
        value = float(walk.log_prob(y))
    covariance = _dense_covariance(position, block, 0.05, 0.2)
    expected = stats.multivariate_normal(log_mean, covariance).logpdf(np.log(y)) - np.log(y).sum()
    assert value == pytest.approx(expected, abs=1e-9)


def test_masked_runs_contribute_nothing():
    _, block, position, log_mean, y = _example()
    keep = np.array([True, True, False, True, True, False, True])
    with jax.enable_x64(True):
        padded = LogNormalWalk(log_mean, 0.05, 0.2, position, block).mask(keep)
        alone = LogNormalWalk(log_mean[keep], 0.05, 0.2, position[keep], block[keep])
        assert float(padded.log_prob(y)) == pytest.approx(float(alone.log_prob(y[keep])), abs=1e-9)
        pointwise = np.asarray(padded.pointwise_log_prob(y))
        np.testing.assert_allclose(pointwise[keep], alone.pointwise_log_prob(y[keep]), atol=1e-9)
        assert np.all(pointwise[~keep] == 0.0)


def test_pointwise_density_is_each_runs_leave_one_out_conditional():
    _, block, position, log_mean, y = _example()
    covariance = _dense_covariance(position, block, 0.05, 0.2)
    with jax.enable_x64(True):
        pointwise = np.asarray(
            LogNormalWalk(log_mean, 0.05, 0.2, position, block).pointwise_log_prob(y)
        )
    log_y = np.log(y)
    for i in range(y.size):
        rest = np.arange(y.size) != i
        gain = covariance[i, rest] @ np.linalg.inv(covariance[np.ix_(rest, rest)])
        mean = log_mean[i] + gain @ (log_y[rest] - log_mean[rest])
        variance = covariance[i, i] - gain @ covariance[rest, i]
        expected = stats.norm(mean, np.sqrt(variance)).logpdf(log_y[i]) - log_y[i]
        assert pointwise[i] == pytest.approx(expected, abs=1e-9)


def test_samples_have_the_models_covariance():
    _, block, position, log_mean, _ = _example()
    with jax.enable_x64(True):
        walk = LogNormalWalk(log_mean, 0.05, 0.2, position, block)
        draws = np.log(np.asarray(walk.sample(jax.random.PRNGKey(0), (40_000,))))
    covariance = _dense_covariance(position, block, 0.05, 0.2)
    # 40,000 draws: the sampling error of a covariance entry is below 0.01 * its scale (~0.2)
    np.testing.assert_allclose(np.cov(draws.T), covariance, atol=0.01)


def _curve(n=14, seed=0):
    rng = np.random.default_rng(seed)
    x = np.geomspace(1e3, 1e6, n)
    # a power law whose coefficient drifts with log x: the catalog law is slightly wrong
    loss = (0.5 + 3 * x**-0.3 * (1 + 0.05 * np.log(x / 1e3))) * np.exp(rng.normal(0, 0.003, n))
    return pd.DataFrame({"x": x, "loss": loss})


@pytest.fixture(scope="module")
def walk_fit():
    train = _curve().iloc[:10]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return bs.fit(
            train,
            "power_law_floor",
            y="loss",
            likelihood="lognormal_walk",
            chains=2,
            draws=300,
            warmup=300,
            seed=1,
        )


def test_conditional_error_matches_gaussian_process_conditioning(walk_fit):
    theta = walk_fit.parameter_draws()
    theta = {k: v[:5] for k, v in theta.items()}
    points = np.array([2e5, 5e5, 1e6])
    shift, variance = walk_conditional(walk_fit, theta, {"x": points}, {})
    constant = walk_fit.datatree["constant_data"]
    train_x = constant["x"].values
    observed = walk_fit.datatree["observed_data"]["loss"].values
    start = np.log(train_x.min())
    p_train, p_new = np.log(train_x) - start, np.log(points) - start
    for s in range(5):
        law = {k: v[s] for k, v in theta.items()}
        log_law = np.log(law["L_inf"] + (law["x0"] / train_x) ** law["alpha"])
        tau, sigma = law["tau"], law["sigma"]
        covariance = tau**2 * np.minimum.outer(p_train, p_train) + sigma**2 * np.eye(p_train.size)
        k = tau**2 * np.minimum.outer(p_new, p_train)
        solved = np.linalg.solve(covariance, k.T)
        np.testing.assert_allclose(shift[s], solved.T @ (np.log(observed) - log_law), rtol=1e-6)
        expected_variance = tau**2 * p_new - np.einsum("ij,ji->i", k, solved)
        np.testing.assert_allclose(variance[s], expected_variance, rtol=1e-6, atol=1e-14)


def test_forecast_widens_with_distance_and_scores(walk_fit):
    far = pd.DataFrame({"x": [2e5, 1e6, 1e8]})
    forecast = bs.forecast(walk_fit, far)
    draws = np.log(forecast.predictive.reshape(-1, 3))
    widths = np.quantile(draws, 0.95, axis=0) - np.quantile(draws, 0.05, axis=0)
    assert widths[0] < widths[1] < widths[2]
    held_out = _curve().iloc[10:]
    truth = log_predictive_density(walk_fit, held_out[["x"]], held_out["loss"])
    off = log_predictive_density(walk_fit, held_out[["x"]], held_out["loss"] * 1.2)
    assert np.all(np.isfinite(truth)) and np.all(truth > off)


def test_loo_uses_leave_one_out_conditionals(walk_fit):
    pointwise = walk_fit.datatree["log_likelihood"]["loss"]
    assert pointwise.shape == (2, 300, 10)
    loo = arviz_stats.loo(walk_fit.datatree)
    assert np.isfinite(loo.elpd)
    assert np.all(np.isfinite(pointwise.values))


def test_batched_walk_fits_give_each_curve_its_own_runs():
    curves = pd.concat([_curve(9, seed=0).assign(curve="a"), _curve(12, seed=1).assign(curve="b")])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        batch = fit_batch(
            curves,
            "power_law_floor",
            by="curve",
            y="loss",
            likelihood="lognormal_walk",
            chains=2,
            draws=150,
            warmup=150,
            seed=0,
        )
    assert batch["a"].datatree["log_likelihood"]["loss"].shape == (2, 150, 9)
    assert batch["b"].datatree["log_likelihood"]["loss"].shape == (2, 150, 12)
    assert np.all(np.isfinite(batch["a"].datatree["log_likelihood"]["loss"].values))


def test_refusals_name_the_problem():
    with pytest.raises(PriorError, match="walks along one input"):
        ModelSpec.create("chinchilla", observation="lognormal_walk")
    with pytest.raises(PriorError, match="cannot be pooled"):
        ModelSpec.create("power_law_floor", observation="lognormal_walk", pool=["tau|curve"])
    censored = _curve(6).assign(censored=[0, 0, 0, 0, 0, 1])
    with pytest.raises(DataError, match="censored runs cannot"):
        bs.fit(
            censored, "power_law_floor", y="loss", likelihood="lognormal_walk", censored="censored"
        )
    with pytest.raises(SettingsError, match="numpyro backend only"):
        bs.fit(_curve(6), "power_law_floor", y="loss", likelihood="lognormal_walk", backend="pymc")


@pytest.fixture(scope="module")
def independent_fit():
    # a smooth wobble of 3% in log x that no power law can follow: the law's error is real
    wobbly = _curve(16).assign(loss=lambda f: f["loss"] * np.exp(0.03 * np.sin(2 * np.log(f["x"]))))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return bs.fit(
            wobbly.iloc[:12], "power_law_floor", y="loss", chains=2, draws=300, warmup=300, seed=1
        )


def test_two_stage_walk_grows_like_brownian_motion_beyond_the_data(independent_fit):
    far = pd.DataFrame({"x": [2e5, 1e6, 1e8]})
    walked = np.log(independent_fit.forecast(far, discrepancy="walk").predictive.reshape(-1, 3))
    width = np.quantile(walked, 0.95, axis=0) - np.quantile(walked, 0.05, axis=0)
    assert width[0] < width[1] < width[2]
    # beyond the last fitted run the walk's conditional variance grows by exactly tau^2 per
    # unit of log x (the Markov property of Brownian motion) plus the drift's kappa^2 b^2 (b the
    # log distance past the last fitted run), and its mean stops moving
    theta = independent_fit.parameter_draws()
    walk = walk_draws(independent_fit, theta)
    shift, variance = walk_conditional(independent_fit, theta, {"x": far["x"].to_numpy()}, {}, walk)
    last = independent_fit.datatree["constant_data"]["x"].values.max()
    beyond = np.log(far["x"].to_numpy() / last)
    assert beyond[1] > 0
    np.testing.assert_allclose(
        variance[:, 2] - variance[:, 1],
        walk["tau"] ** 2 * np.log(1e8 / 1e6)
        + walk["kappa"] ** 2 * (beyond[2] ** 2 - beyond[1] ** 2),
        rtol=1e-9,
    )
    np.testing.assert_allclose(shift[:, 2], shift[:, 1], atol=1e-12)
    without_drift = walk_conditional(
        independent_fit, theta, {"x": far["x"].to_numpy()}, {}, {**walk, "kappa": 0 * walk["kappa"]}
    )[1]
    np.testing.assert_allclose(
        variance - without_drift, walk["kappa"][:, None] ** 2 * beyond.clip(0) ** 2
    )


def test_walk_draws_follow_the_grid_posterior_and_the_seed(independent_fit):
    theta = independent_fit.parameter_draws()
    first = walk_draws(independent_fit, theta)
    again = walk_draws(independent_fit, theta)
    np.testing.assert_array_equal(first["tau"], again["tau"])
    np.testing.assert_array_equal(first["kappa"], again["kappa"])
    assert first["tau"].shape == first["sigma"].shape == first["kappa"].shape == (600,)
    # the wobble (amplitude 0.03, 2 radians per unit log x) moves the residual by about 0.06
    # per unit log x, which only the walk can carry: tau's posterior is of that order
    assert 0.01 < np.median(first["tau"]) < 0.3


def test_unknown_discrepancy_is_refused(independent_fit):
    with pytest.raises(SettingsError, match="unknown discrepancy"):
        independent_fit.forecast(pd.DataFrame({"x": [1e6]}), discrepancy="gp")


def test_leave_future_out_errors_vanish_when_the_law_is_right():
    law = bs.get_law("power_law_floor")
    x = np.geomspace(1e3, 1e6, 12)
    truth = {"L_inf": 0.5, "x0": 30.0, "alpha": 0.3}
    noise = np.exp(np.random.default_rng(0).normal(0, 1e-4, x.size))
    loss = np.asarray(law.mean({"x": x}, truth, ops=NUMPY_OPS)) * noise
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fit = bs.fit(
            pd.DataFrame({"x": x, "loss": loss}),
            law,
            y="loss",
            chains=2,
            draws=200,
            warmup=200,
            seed=1,
        )
    errors = leave_future_out_errors(fit, fit.parameter_draws())
    # cuts after round(0.5, 0.6, 0.7, 0.8 x 12) = 6, 7, 8, 10 runs
    assert [e.size for e, _ in errors] == [6, 5, 4, 2]
    for (error, distance), cut in zip(errors, (6, 7, 8, 10), strict=True):
        np.testing.assert_allclose(distance, np.log(x[cut:] / x[cut - 1]), rtol=1e-12)
        # a refit of the right law extrapolates to within a few noise sds (1e-4)
        assert np.max(np.abs(error)) < 1e-3


def test_leave_future_out_errors_widen_the_walk_where_the_law_extrapolates_badly(independent_fit):
    theta = independent_fit.parameter_draws()
    errors = leave_future_out_errors(independent_fit, theta)
    # the wobble makes a refit on the first half miss by several times the 0.003 noise
    assert max(np.max(np.abs(e)) for e, _ in errors) > 0.03
    setup = _walk_setup(independent_fit, theta, None, {})
    residuals_only = _walk_draws(setup, independent_fit.seed)
    calibrated = _walk_draws(setup, independent_fit.seed, errors)
    # the forecast's spread two units of log x past the data, from the walk and the drift
    far = {
        "x": np.array([np.exp(2.0) * independent_fit.datatree["constant_data"]["x"].values.max()])
    }
    spread = {
        name: np.median(walk_conditional(independent_fit, theta, far, {}, draws)[1])
        for name, draws in (("residuals", residuals_only), ("calibrated", calibrated))
    }
    assert spread["calibrated"] > 1.5**2 * spread["residuals"]
    # the public draws are the calibrated ones
    public = walk_draws(independent_fit, theta)
    for name in ("sigma", "tau", "kappa"):
        np.testing.assert_array_equal(public[name], calibrated[name])


def test_drift_is_learned_from_errors_that_grow_linearly_and_absent_without_them(independent_fit):
    theta = independent_fit.parameter_draws()
    setup = _walk_setup(independent_fit, theta, None, {})
    # forecast errors of a law whose exponent is off by 0.05: 0.05 per unit of log distance, the
    # same at every cut (plus noise of 0.002), which a random walk explains badly
    rng = np.random.default_rng(3)
    errors = []
    for n in (8, 6, 4):
        distance = np.linspace(0.5, 4.0, n)
        errors.append((0.05 * distance + rng.normal(0, 0.002, n), distance))
    drift = _walk_draws(setup, independent_fit.seed, errors)
    # the errors pin kappa near 0.05 (three cuts of 4 to 8 points, noise 0.002: a factor 1.5 is
    # far wider than its posterior)
    assert 0.05 / 1.5 < np.median(drift["kappa"]) < 0.05 * 1.5
    # the same slope as a walk would need tau ~ 0.05 per sqrt unit: the drift takes it instead
    assert np.median(drift["tau"]) < 0.02
    # without leave-future-out errors nothing informs kappa, and there is no drift
    assert np.all(_walk_draws(setup, independent_fit.seed)["kappa"] == 0)
