"""The PyMC backend: the same statistical model written in PyMC.

:func:`pymc_model` compiles a :class:`~bayescale.model.ModelSpec` and a
:class:`~bayescale.model.Design` into a :class:`pymc.Model` that is the numpyro model of
:func:`bayescale.model.numpyro_model` term for term:

* the same priors (:data:`PRIOR_FAMILIES` maps every prior family to its PyMC distribution;
  numpyro's rates are PyMC's ``lam`` and ``beta``);
* the same coordinates: coefficients with a reference are sampled as the log of their term at the
  reference scale (a flat coordinate ``<name>__ref``) with the prior added as a potential, pooled
  parameters are non-centred (``<name>__link_decentered``) or centred (``<name>__link``) on their
  link scale, and group-level and run-level covariates shift parameters on the link scale;
* the law's formula evaluated in log space with PyTensor operations
  (:func:`bayescale.formula.pytensor_ops`);
* the same observation models (densities of the outcome itself, Jacobian of the log included) and
  censoring (:class:`pymc.Censored`).

:func:`fit_runs` samples it with PyMC's own NUTS, or with numpyro's, blackjax's or nutpie's through
``pm.sample(nuts_sampler=...)``, and returns the same :class:`~bayescale.results.Fit` as the
numpyro backend (same variable names, dims, coordinates and groups), with ``backend = "pymc"`` in
its provenance. Because the two backends share nothing below the model specification (PyTensor
graphs and PyMC distributions here, JAX and numpyro there), agreement between their posteriors is
an independent check of both (``tests/test_pymc_backend.py`` compares the joint densities,
``tests/test_pymc_posteriors.py`` the posteriors of every catalog law).

Examples
--------
>>> import pandas as pd
>>> from bayescale.data import load_runs
>>> from bayescale.model import Design, ModelSpec
>>> spec = ModelSpec.create("power_law_floor")
>>> runs = load_runs(pd.DataFrame({"x": [1e6, 1e7, 1e8], "loss": [3.0, 2.5, 2.2]}),
...                  law=spec.law, y="loss")
>>> model = pymc_model(spec, Design.from_runs(runs, spec))
>>> sorted(v.name for v in model.free_RVs)
['__level', '__reducible', 'alpha', 'sigma']
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
import warnings
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import numpy as np

from bayescale.backends import PYMC_NUTS_SAMPLERS
from bayescale.errors import ConvergenceWarning, SettingsError
from bayescale.formula import pytensor_ops
from bayescale.likelihoods import huber_log_normaliser
from bayescale.model import (
    INTERNAL_MARK,
    LINK_SITE,
    OBSERVED_SITE,
    Design,
    ModelSpec,
    _on_groups,
    _reference_coordinate,
    at_runs,
    split_parameters,
)
from bayescale.priors import Pooling, Prior

_PROBABILITY_EPSILON = 1e-12
"""Means of accuracy models are clipped to [eps, 1 - eps], as in :mod:`bayescale.likelihoods`."""

PRIOR_FAMILIES: dict[str, tuple[str, dict[str, str]]] = {
    "Normal": ("Normal", {"loc": "mu", "scale": "sigma"}),
    "StudentT": ("StudentT", {"df": "nu", "loc": "mu", "scale": "sigma"}),
    "Cauchy": ("Cauchy", {"loc": "alpha", "scale": "beta"}),
    "LogNormal": ("LogNormal", {"loc": "mu", "scale": "sigma"}),
    "HalfNormal": ("HalfNormal", {"scale": "sigma"}),
    "HalfCauchy": ("HalfCauchy", {"scale": "beta"}),
    "Exponential": ("Exponential", {"rate": "lam"}),
    "Gamma": ("Gamma", {"concentration": "alpha", "rate": "beta"}),
    "InverseGamma": ("InverseGamma", {"concentration": "alpha", "rate": "beta"}),
    "Beta": ("Beta", {"concentration1": "alpha", "concentration0": "beta"}),
    "Uniform": ("Uniform", {"low": "lower", "high": "upper"}),
    "TruncatedNormal": (
        "TruncatedNormal",
        {"loc": "mu", "scale": "sigma", "low": "lower", "high": "upper"},
    ),
}
"""Each prior family (numpyro's arguments) as a PyMC distribution and its argument names.

``LogUniform`` has no PyMC distribution; it is written out (:func:`_log_uniform`). ``Fixed``
parameters are constants.
"""


def _import_pymc():
    """Import PyMC, or explain how to get it."""
    try:
        import pymc
    except ImportError:  # pragma: no cover - pymc is a dependency, but may be removed
        raise SettingsError(
            "backend='pymc' needs PyMC, which is not installed: pip install pymc "
            "(or use the default backend='numpyro')"
        ) from None
    return pymc


# ---------------------------------------------------------------------- priors
def _pymc_arguments(prior: Prior) -> tuple[str, dict[str, Any]]:
    family, names = PRIOR_FAMILIES[prior.family]
    arguments = {}
    for ours, theirs in names.items():
        value = prior.arguments[ours]
        # PyMC writes a missing truncation bound as None, numpyro as an infinity.
        # Plain floats would become float32 constants where exact (PyTensor's autocast), and
        # PyMC would then take their logs in float32; numpy float64 values keep float64.
        arguments[theirs] = (
            None if math.isinf(value) and ours in ("low", "high") else np.float64(value)
        )
    return family, arguments


def prior_variable(name: str, prior: Prior, **kwargs):
    """A model variable named ``name`` with the PyMC version of ``prior`` (inside a model).

    ``kwargs`` (``dims``, ``shape``) are passed to the distribution.
    """
    pm = _import_pymc()
    if prior.is_fixed:
        raise SettingsError(f"prior {prior} of {name!r} is Fixed and has no distribution")
    if prior.family == "LogUniform":
        return _log_uniform(name, prior, **kwargs)
    family, arguments = _pymc_arguments(prior)
    return getattr(pm, family)(name, **arguments, **kwargs)


def prior_logp(prior: Prior, value):
    """The log density of ``prior`` at ``value`` (a PyTensor expression)."""
    pm = _import_pymc()
    if prior.family == "LogUniform":
        return _log_uniform_logp(value, prior.arguments["low"], prior.arguments["high"])
    family, arguments = _pymc_arguments(prior)
    return pm.logp(getattr(pm, family).dist(**arguments), value)


def _log_uniform_logp(value, low, high):
    import pytensor.tensor as pt

    inside = (value >= low) & (value <= high)
    log_density = -pt.log(value) - math.log(math.log(high) - math.log(low))
    return pt.switch(inside, log_density, -np.inf)


def _log_uniform(name: str, prior: Prior, **kwargs):
    """``LogUniform(low, high)``: density ``1 / (x log(high / low))`` on [low, high]."""
    pm = _import_pymc()
    import pytensor.tensor as pt

    low, high = np.float64(prior.arguments["low"]), np.float64(prior.arguments["high"])

    def random(low, high, rng=None, size=None):
        return np.exp(rng.uniform(np.log(low), np.log(high), size=size))

    return pm.CustomDist(
        name,
        low,
        high,
        logp=lambda value, *_: _log_uniform_logp(value, low, high),
        random=random,
        support_point=lambda rv, size, low, high: pt.full_like(rv, pt.sqrt(low * high)),
        transform=pm.distributions.transforms.Interval(low, high),
        **kwargs,
    )


def _log_density_of_log(prior: Prior, log_value):
    """Log density of ``log(theta)`` when ``theta`` has the (positive) ``prior``."""
    pm = _import_pymc()
    import pytensor.tensor as pt

    if prior.family == "LogNormal":
        loc, scale = (np.float64(prior.arguments[k]) for k in ("loc", "scale"))
        return pm.logp(pm.Normal.dist(mu=loc, sigma=scale), log_value)
    return prior_logp(prior, pt.exp(log_value)) + log_value


# ---------------------------------------------------------------------- the model
def _reference_log_value(ref, u, values, log_reference, ops):
    """Invert the reference coordinate: ``log(theta)`` from ``u``, and the log Jacobian (mirrors
    :func:`bayescale.model._reference_log_value`)."""
    import pytensor.tensor as pt

    if ref.kind == "coefficient":
        return u + ref.log_scale(values, log_reference, ops), 0.0
    exponent = ref.exponent.evaluate(values, ops=ops)
    return u / exponent + log_reference[ref.input], -pt.log(pt.abs(exponent))


def _floor_block(spec: ModelSpec, terms, values: dict, logs: dict) -> dict[str, Any]:
    """The floor law at its reference point: level, reducible share and split (mirrors
    :func:`bayescale.model._floor_block`, same coordinate names)."""
    pm = _import_pymc()
    import pytensor.tensor as pt

    level = pm.Flat(INTERNAL_MARK + "level")
    reducible = pm.Flat(INTERNAL_MARK + "reducible")
    log_floor = level - pt.softplus(reducible)
    log_reducible = level - pt.softplus(-reducible)
    if len(terms) > 1:
        split = pm.Flat(INTERNAL_MARK + "split", shape=(len(terms) - 1,))
        shares = pt.special.log_softmax(pt.concatenate([pt.zeros(1), split]), axis=0)
    else:
        shares = pt.zeros(1)
    floor = spec.law.floor
    pm.Potential(
        floor + INTERNAL_MARK + "prior", _log_density_of_log(spec.priors[floor], log_floor)
    )
    values[floor] = pm.Deterministic(floor, pt.exp(log_floor))
    logs[floor] = log_floor
    return {term.name: log_reducible + shares[j] for j, term in enumerate(terms)}


def _hyperparameter(name: str, prior: Prior):
    """A population value or spread: its constant when the prior is Fixed, else a variable."""
    return prior.fixed_value if prior.is_fixed else prior_variable(name, prior)


def _group_values(pooling: Pooling, center, sd):
    """Group values on the link scale, ``Normal(center, sd)`` per group, centred or not.

    The variables have the names of the numpyro model's sites (``<name>__link``, and
    ``<name>__link_decentered`` for numpyro's ``LocScaleReparam``), so a point of one model is a
    point of the other.
    """
    pm = _import_pymc()
    name = pooling.parameter + LINK_SITE
    if pooling.fully_centred:
        return pm.Normal(name, mu=center, sigma=sd, dims=pooling.group)
    z = pm.Normal(
        name + "_decentered", mu=np.float64(0.0), sigma=np.float64(1.0), dims=pooling.group
    )
    return center + sd * z


def _group_center(pooling: Pooling, center, design: Design, spec: ModelSpec, values: dict):
    """The pooled mean of each group on the link scale: population plus group covariates."""
    for name, column in zip(pooling.coefficient_names, pooling.covariates, strict=True):
        coefficient = prior_variable(name, spec.priors[name])
        values[name] = coefficient
        center = center + coefficient * design.group_covariates[pooling.group][column]
    return center


def _sample_parameters(spec: ModelSpec, design: Design) -> tuple[dict, dict]:
    """Create every parameter in the current PyMC model (mirrors
    :func:`bayescale.model.sample_parameters`)."""
    pm = _import_pymc()
    import pytensor.tensor as pt

    ops = pytensor_ops()
    values: dict[str, Any] = {}
    logs: dict[str, Any] = {}
    population: dict[str, Any] = {}
    floor_terms = spec.floor_terms()
    term_logs = _floor_block(spec, floor_terms, values, logs) if floor_terms else {}
    nested = design.nested
    for param in spec.sampling_order(nested):
        name = param.name
        if name == spec.law.floor and floor_terms:
            continue  # sampled in the floor block
        prior = spec.priors[name]
        pooling = spec.pooling_of(name)
        regression = spec.regression_of(name)
        if regression is not None:
            for coefficient in regression.coefficient_names:
                values[coefficient] = prior_variable(coefficient, spec.priors[coefficient])
        if prior.is_fixed and pooling is None:
            values[name] = population[name] = spec.held_value(name, design.log_reference)
            continue
        if pooling is not None:
            sd = _hyperparameter(pooling.sd_name, spec.priors[pooling.sd_name])
        if not spec.uses_reference(param, nested):
            if pooling is None:
                values[name] = population[name] = prior_variable(name, prior)
                continue
            pop = _hyperparameter(pooling.population_name, prior)
            population[name] = pop
            center = _group_center(pooling, param.support.link(pop, ops), design, spec, values)
            link_value = _group_values(pooling, center, sd)
            values[name] = pm.Deterministic(
                name, param.support.inverse_link(link_value, ops), dims=pooling.group
            )
            if param.support.kind == "positive":
                logs[name] = link_value
            continue

        ref = param.reference
        if name in term_logs:
            u = term_logs[name]
        elif prior.is_fixed:  # a pooled parameter whose population value is held fixed
            log_pop = np.log(prior.fixed_value)
            u = _reference_coordinate(ref, log_pop, population, design.log_reference, ops)
        else:
            u = pm.Flat(name + INTERNAL_MARK + "ref")
        if not prior.is_fixed:
            log_pop, log_jacobian = _reference_log_value(
                ref, u, population, design.log_reference, ops
            )
            pm.Potential(
                name + INTERNAL_MARK + "prior", _log_density_of_log(prior, log_pop) + log_jacobian
            )
        population[name] = pt.exp(log_pop)
        if pooling is None:
            values[name] = pm.Deterministic(name, pt.exp(log_pop))
            logs[name] = log_pop
            continue
        if not prior.is_fixed:
            pm.Deterministic(pooling.population_name, pt.exp(log_pop))
        u_group = _group_values(pooling, _group_center(pooling, u, design, spec, values), sd)
        # the group's own exponents where pooled (through each label's parent when nested)
        on_groups = _on_groups(values, spec, design, pooling.group)
        log_group, _ = _reference_log_value(ref, u_group, on_groups, design.log_reference, ops)
        values[name] = pm.Deterministic(name, pt.exp(log_group), dims=pooling.group)
        logs[name] = log_group
    return values, logs


def pymc_model(
    spec: ModelSpec,
    design: Design,
    *,
    censor: bool = True,
    obs_labels: np.ndarray | None = None,
):
    """Return the PyMC model of ``spec`` for the data in ``design``.

    Parameters
    ----------
    spec : ModelSpec
    design : Design
    censor : bool
        Treat censored runs as censored (the model to sample). ``False`` gives the twin whose
        outcome is never censored, used to draw replicated outcomes (as the numpyro backend does,
        posterior predictive draws are not clipped at the censoring bounds).
    obs_labels : array, optional
        Coordinates of the ``obs`` dim (default ``0..n-1``).

    Returns
    -------
    pymc.Model
        Its observed variable is ``y``: success counts for the binomial models, the outcome
        otherwise. Internal coordinates have ``__`` in their names.

    Raises
    ------
    SettingsError
        For a law defined by a Python function (its code is JAX; it cannot be traced by PyTensor),
        the ``lognormal_walk`` observation model, or a pooling with ``centered="auto"`` or
        ``"conditional"`` (numpyro backend only, for now).
    """
    pm = _import_pymc()
    spec.refuse_data_centring("with backend='pymc' (numpyro backend only)")
    if spec.observation.correlated:
        raise SettingsError(
            f"the {spec.observation.name} observation model is available with the numpyro "
            "backend only; use backend='numpyro'"
        )
    if spec.law.formula is None:
        raise SettingsError(
            f"law {spec.law.name!r} is defined by a Python function, which the PyMC backend "
            "cannot evaluate; define it with a formula (Law.from_formula) or use "
            "backend='numpyro'"
        )
    coords: dict[str, Any] = {
        "obs": np.arange(design.n_runs) if obs_labels is None else np.asarray(obs_labels)
    }
    for column, labels in design.group_labels.items():
        coords[column] = list(labels)
    law_names = set(spec.law.parameter_names)
    ops = pytensor_ops()
    with pm.Model(coords=coords) as model:
        values, logs = _sample_parameters(spec, design)
        values, logs = at_runs(spec, values, logs, design.group_index, design.covariates, ops=ops)
        law_theta, observation_theta = split_parameters(spec, values)
        law_logs = {k: v for k, v in logs.items() if k in law_names}
        log_mean = spec.law.log_mean(design.x, law_theta, log_theta=law_logs, ops=ops)
        _observe(spec, design, log_mean, observation_theta, censor=censor)
    return model


def _observe(spec: ModelSpec, design: Design, log_mean, theta: Mapping[str, Any], *, censor):
    """Add the observed variable ``y`` to the current model."""
    pm = _import_pymc()
    import pytensor.tensor as pt

    observation = spec.observation
    name = observation.name
    if name in ("binomial", "beta_binomial", "beta"):
        mean = pt.clip(pt.exp(log_mean), _PROBABILITY_EPSILON, 1 - _PROBABILITY_EPSILON)
        if name == "beta":
            phi = theta["phi"]
            alpha, beta = mean * phi, (1 - mean) * phi
            pm.Beta(OBSERVED_SITE, alpha=alpha, beta=beta, observed=design.y, dims="obs")
            return
        trials = np.asarray(design.trials)
        counts = np.round(design.y * trials).astype(np.int64)
        if name == "binomial":
            pm.Binomial(OBSERVED_SITE, n=trials, p=mean, observed=counts, dims="obs")
        else:
            phi = theta["phi"]
            pm.BetaBinomial(
                OBSERVED_SITE,
                alpha=mean * phi,
                beta=(1 - mean) * phi,
                n=trials,
                observed=counts,
                dims="obs",
            )
        return
    distribution = _continuous_distribution(observation, log_mean, theta)
    codes = design.censoring
    if censor and codes is not None and np.any(codes):
        # Code 1: the true outcome is at least the recorded one (PyMC's upper censoring);
        # code -1: at most (lower censoring).
        lower = np.where(codes == -1, design.y, -np.inf)
        upper = np.where(codes == 1, design.y, np.inf)
        pm.Censored(
            OBSERVED_SITE, distribution, lower=lower, upper=upper, observed=design.y, dims="obs"
        )
        return
    pm.modelcontext(None).register_rv(distribution, OBSERVED_SITE, observed=design.y, dims=("obs",))


def _continuous_distribution(observation, log_mean, theta):
    """The unnamed PyMC distribution of a positive outcome (lognormal family, Student-t, Huber)."""
    pm = _import_pymc()
    sigma = theta["sigma"]
    if observation.name == "lognormal":
        return pm.LogNormal.dist(mu=log_mean, sigma=sigma)
    if observation.name == "lognormal_mean":
        return pm.LogNormal.dist(mu=log_mean - 0.5 * sigma**2, sigma=sigma)
    if observation.name == "student_t":
        return pm.CustomDist.dist(theta["nu"], log_mean, sigma, dist=_exp_student_t)
    delta = float(observation.options["delta"])
    return pm.CustomDist.dist(
        log_mean,
        sigma,
        logp=lambda value, mu, sigma: _huber_logp(value, mu, sigma, delta),
        logcdf=lambda value, mu, sigma: _huber_logcdf(value, mu, sigma, delta),
        random=lambda mu, sigma, rng=None, size=None: _huber_random(mu, sigma, delta, rng, size),
    )


def _exp_student_t(nu, mu, sigma, size):
    """``exp`` of a Student-t: PyMC derives its density (with the Jacobian) and its CDF."""
    pm = _import_pymc()
    import pytensor.tensor as pt

    return pt.exp(pm.StudentT.dist(nu=nu, mu=mu, sigma=sigma, size=size))


def _huber_logp(value, mu, sigma, delta: float):
    """Density of ``y`` when ``log y`` has the normalised Huber density
    (:class:`bayescale.likelihoods.Huber`)."""
    import pytensor.tensor as pt

    log_value = pt.log(value)
    u = (log_value - mu) / sigma
    absolute = pt.abs(u)
    rho = pt.switch(absolute <= delta, 0.5 * u**2, delta * (absolute - 0.5 * delta))
    return -rho - huber_log_normaliser(delta) - pt.log(sigma) - log_value


def _huber_logcdf(value, mu, sigma, delta: float):
    """Log CDF of ``y`` (that of the Huber density at ``log y``)."""
    import pytensor.tensor as pt

    def ndtr(x):
        return 0.5 * pt.erfc(-x / math.sqrt(2.0))

    u = (pt.log(value) - mu) / sigma
    z = math.exp(huber_log_normaliser(delta))
    tail = math.exp(-0.5 * delta**2) / delta
    left = pt.exp(delta * pt.minimum(u, -delta) + 0.5 * delta**2) / delta
    core = tail + math.sqrt(2 * math.pi) * (ndtr(pt.clip(u, -delta, delta)) - ndtr(-delta))
    right = z - pt.exp(-delta * pt.maximum(u, delta) + 0.5 * delta**2) / delta
    cdf = pt.switch(u <= -delta, left, pt.switch(u <= delta, core, right)) / z
    return pt.log(pt.clip(cdf, 1e-300, 1.0))


def _huber_random(mu, sigma, delta: float, rng, size):
    """Draws of ``y``: ``exp`` of Huber draws (a Gaussian core and two exponential tails)."""
    from scipy import stats

    shape = size if size is not None else np.broadcast(mu, sigma).shape
    core_mass = math.sqrt(2 * math.pi) * math.erf(delta / math.sqrt(2))
    p_core = core_mass / math.exp(huber_log_normaliser(delta))
    core = stats.truncnorm.rvs(-delta, delta, size=shape, random_state=rng)
    tail = delta + rng.exponential(size=shape) / delta
    sign = np.where(rng.uniform(size=shape) < 0.5, 1.0, -1.0)
    u = np.where(rng.uniform(size=shape) < p_core, core, sign * tail)
    return np.exp(mu + sigma * u)


# ---------------------------------------------------------------------- fitting
def unconstrained_dimension(model) -> int:
    """Number of coordinates the sampler moves (PyMC's transformed free variables)."""
    return int(sum(np.size(v) for v in model.initial_point().values()))


def fit_runs(runs, spec: ModelSpec, settings, *, nuts_sampler: str = "pymc"):
    """Fit ``spec`` to validated runs with PyMC (the engine behind ``bs.fit(backend="pymc")``).

    Parameters
    ----------
    runs : Runs
    spec : ModelSpec
    settings : SamplerSettings
        ``chains, draws, warmup`` (PyMC's ``tune``), ``seed``, ``target_accept``,
        ``max_tree_depth``, ``dense_mass`` (``auto``: a dense mass matrix up to 100 dimensions;
        PyMC's ``init="adapt_full"`` or the external sampler's dense mass) and ``progress`` are
        used. ``chain_method``: for PyMC's sampler ``sequential`` runs the chains in one
        process, otherwise in parallel processes (PyMC's default); for numpyro and blackjax it is
        passed on (``vectorized`` or ``parallel``; ``auto`` as
        :func:`bayescale.inference.resolve_chain_method` resolves it). ``starts``: the chains
        start where the numpyro backend's would, at Laplace-spread draws around the best of
        ``starts`` optimisations (:func:`bayescale.inference.multistart_init`; the two models
        share their coordinates), so that PyMC needs no hand-picked initial values either.
    nuts_sampler : str
        ``pymc`` (PyMC's own NUTS), ``numpyro``, ``blackjax`` or ``nutpie``.

    Returns
    -------
    Fit
        The same layout as the numpyro backend's; the provenance's sampler record has
        ``backend = "pymc"`` and ``nuts_sampler``.
    """
    pm = _import_pymc()
    from bayescale.inference import DENSE_MASS_MAX_DIMENSION
    from bayescale.results import Fit, build_datatree

    if nuts_sampler not in PYMC_NUTS_SAMPLERS:
        raise SettingsError(
            f"nuts_sampler must be one of {', '.join(PYMC_NUTS_SAMPLERS)}, got {nuts_sampler!r}"
        )
    _check_sampler_installed(nuts_sampler)
    design = Design.from_runs(runs, spec)
    model = pymc_model(spec, design, obs_labels=runs.rows)
    dimension = unconstrained_dimension(model)
    dense = (
        dimension <= DENSE_MASS_MAX_DIMENSION
        if settings.dense_mass == "auto"
        else bool(settings.dense_mass)
    )
    options = _sample_options(settings, nuts_sampler, dense)
    started = time.perf_counter()
    initvals, init_report = _multistart_initvals(spec, design, model, settings)
    if nuts_sampler == "nutpie":  # nutpie takes one initial point for every chain
        initvals = initvals[0]
    with model, _quiet_pymc(settings.progress):
        trace = pm.sample(
            initvals=initvals,
            draws=settings.draws,
            tune=settings.warmup,
            chains=settings.chains,
            random_seed=settings.seed,
            progressbar=settings.progress,
            quiet=not settings.progress,
            compute_convergence_checks=False,
            **options,
        )
        pointwise = pm.compute_log_likelihood(
            trace, var_names=[OBSERVED_SITE], extend_inferencedata=False, progressbar=False
        )
    censored = runs.censoring is not None and bool(np.any(runs.censoring))
    twin = pymc_model(spec, design, censor=False, obs_labels=runs.rows) if censored else model
    with twin, _quiet_pymc(settings.progress):
        replicated = pm.sample_posterior_predictive(
            trace, var_names=[OBSERVED_SITE], random_seed=settings.seed, progressbar=False
        )
    elapsed = time.perf_counter() - started

    posterior = trace["posterior"]
    samples = {
        name: np.asarray(posterior[name].transpose("chain", "draw", ...).values)
        for name in spec.posterior_names()
    }
    stats = trace["sample_stats"]
    n_steps = np.asarray(stats["n_steps"].values)
    extra = {
        "num_steps": n_steps,
        "diverging": np.asarray(stats["diverging"].values),
        "energy": np.asarray(stats["energy"].values),
        "accept_prob": np.asarray(stats["acceptance_rate"].values),
        "potential_energy": -np.asarray(stats["lp"].values),
    }
    trials = None if design.trials is None else np.asarray(design.trials)
    predictive = np.asarray(
        _group(replicated, "posterior_predictive")[OBSERVED_SITE]
        .transpose("chain", "draw", ...)
        .values,
        dtype=float,
    )
    predictive = np.asarray(spec.observation.to_outcome(predictive, trials))
    log_likelihood = np.asarray(
        _group(pointwise, "log_likelihood")[OBSERVED_SITE].transpose("chain", "draw", ...).values
    )
    step_size = (
        np.asarray(stats["step_size"].values)[:, -1].tolist()
        if "step_size" in stats
        else [math.nan] * settings.chains
    )
    sampler = {
        **asdict(settings),
        "backend": "pymc",
        "nuts_sampler": nuts_sampler,
        "pymc_options": options,
        "dense_mass_used": dense,
        "sampled_dimension": dimension,
        "step_size": step_size,
        "wall_seconds": round(elapsed, 3),
        "init": asdict(init_report),
        "versions": {"pymc": pm.__version__, "pytensor": _version("pytensor")},
    }
    datatree = build_datatree(
        runs=runs,
        spec=spec,
        design=design,
        samples=samples,
        extra=extra,
        pointwise_log_likelihood=log_likelihood,
        posterior_predictive=predictive,
        sampler=sampler,
        inference_library="pymc",
    )
    result = Fit(datatree, law=spec.law)
    if not result.diagnostics.converged:
        warnings.warn(result.diagnostics.message(), ConvergenceWarning, stacklevel=3)
    return result


@contextlib.contextmanager
def _quiet_pymc(progress: bool):
    """Silence PyMC's informational log lines and warnings unless progress is asked for.

    The warning that potentials are ignored by posterior predictive sampling does not apply:
    the potentials hold priors of parameters, whose posterior draws are given, not re-drawn.
    """
    logger = logging.getLogger("pymc")
    level = logger.level
    if not progress:
        logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The effect of Potentials")
            warnings.filterwarnings("ignore", message="QuadPotentialFullAdapt is an experimental")
            warnings.filterwarnings("ignore", category=FutureWarning, module="pymc")
            yield
    finally:
        logger.setLevel(level)


def _multistart_initvals(spec: ModelSpec, design: Design, model, settings):
    """Starting values of the chains from the numpyro backend's multi-start optimisation.

    The two models share the names and meaning of their sampled coordinates, so the numpyro
    model's constrained values at its chain starts are PyMC initial values.
    """
    import jax
    import jax.numpy as jnp

    from bayescale.inference import multistart_init

    names = [rv.name for rv in model.free_RVs]
    with jax.enable_x64(True):
        key_init = jax.random.split(jax.random.PRNGKey(settings.seed), 3)[0]
        found = multistart_init(spec, design, key_init, settings.starts, settings.chains)
        density = found.coordinates.density
        values = jax.vmap(density.constrained)(jnp.asarray(found.chain_points))
        missing = [n for n in names if n not in values]
        if missing:  # pragma: no cover - the two model builders must agree
            raise RuntimeError(f"the PyMC and numpyro models differ: {missing} not in numpyro")
        initvals = [
            {name: np.asarray(values[name][chain]) for name in names}
            for chain in range(settings.chains)
        ]
    return initvals, found.report


def _group(tree, name: str):
    """A group of a PyMC result, whether PyMC returned a DataTree or a Dataset."""
    if hasattr(tree, "children") and name in tree.children:
        return tree[name].to_dataset()
    return tree


def _version(package: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _check_sampler_installed(nuts_sampler: str) -> None:
    import importlib.util

    needs = {"numpyro": "numpyro", "blackjax": "blackjax", "nutpie": "nutpie"}.get(nuts_sampler)
    if needs is not None and importlib.util.find_spec(needs) is None:
        raise SettingsError(
            f"nuts_sampler={nuts_sampler!r} needs the {needs} package, which is not installed: "
            f"pip install {needs}"
        )


def _sample_options(settings, nuts_sampler: str, dense: bool) -> dict[str, Any]:
    """The keyword arguments of ``pm.sample`` that carry the sampler settings."""
    if nuts_sampler == "pymc":
        return {
            "target_accept": settings.target_accept,
            "max_treedepth": settings.max_tree_depth,
            # The chains start at spread-out optimised points: no jitter on top.
            "init": "adapt_full" if dense else "adapt_diag",
            "cores": 1 if settings.chain_method == "sequential" else None,
        }
    if nuts_sampler == "nutpie":
        return {
            "nuts_sampler": "nutpie",
            "nuts": {"target_accept": settings.target_accept, "maxdepth": settings.max_tree_depth},
        }
    from bayescale.inference import resolve_chain_method

    chain_method = resolve_chain_method(settings)
    if chain_method not in ("vectorized", "parallel"):
        raise SettingsError(
            f"nuts_sampler={nuts_sampler!r} runs chains 'vectorized' or 'parallel', not "
            f"{settings.chain_method!r}"
        )
    nuts: dict[str, Any] = {
        "target_accept": settings.target_accept,
        "chain_method": chain_method,
        "jitter": False,
    }
    if nuts_sampler == "numpyro":
        nuts |= {"dense_mass": dense, "max_tree_depth": settings.max_tree_depth}
    else:  # blackjax: options of its window adaptation and of its NUTS kernel
        nuts |= {"is_mass_matrix_diagonal": not dense, "max_num_doublings": settings.max_tree_depth}
    return {"nuts_sampler": nuts_sampler, "nuts": nuts}
