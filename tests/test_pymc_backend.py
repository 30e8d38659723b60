"""The PyMC backend: the same model as the numpyro one, checked two ways.

1. **Exact densities.** The numpyro model and the PyMC model name their sampled coordinates the
   same way (``A__ref``, ``alpha__link_decentered``, ...), so a point drawn in one is a point of
   the other. At such points the joint log densities (constrained coordinates, no Jacobian of the
   sampler's transforms) must agree to rounding error, for every catalog law, every observation
   model, centred and non-centred pooling, covariates and censoring, and every prior family. These
   checks are deterministic and catch a wrong parameterisation (a rate read as a scale), a missing
   Jacobian or a wrong censoring direction exactly.
2. **Same posterior.** Fits by both backends agree within Monte Carlo error for each catalog law,
   one pooled model and one model with a covariate and censored runs: ``test_pymc_posteriors.py``.
"""

from __future__ import annotations

import math
from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pandas as pd
import pytest
from numpyro.infer import init_to_sample
from numpyro.infer.util import constrain_fn, initialize_model, log_density
from pymc.model.transform.conditioning import remove_value_transforms
from simulation import power_law_floor_runs

import bayescale as bs
from bayescale.backends.pymc import PRIOR_FAMILIES, prior_logp, pymc_model
from bayescale.data import load_runs
from bayescale.errors import SettingsError
from bayescale.formula import FUNCTIONS, NUMPY_OPS, jax_ops, pytensor_ops
from bayescale.model import Design, ModelSpec, numpyro_model
from bayescale.priors import PRIOR_FAMILIES as ALL_PRIOR_FAMILIES
from bayescale.priors import Prior


# ---------------------------------------------------------------------- formulas and priors
def test_pytensor_ops_cover_every_formula_function():
    """Each whitelisted function exists in all three array libraries and gives the same value."""
    import pytensor

    ops = {"numpy": NUMPY_OPS, "jax": jax_ops(), "pytensor": pytensor_ops()}
    for name in [*FUNCTIONS, "power"]:
        arity = FUNCTIONS.get(name, 2)
        arguments = [np.array([0.3, 1.7]), np.array([1.2, 0.4])][:arity]
        expected = getattr(ops["numpy"], name)(*arguments)
        with jax.enable_x64(True):
            got_jax = np.asarray(getattr(ops["jax"], name)(*map(jnp.asarray, arguments)))
        tensors = [pytensor.tensor.as_tensor_variable(a) for a in arguments]
        got_pytensor = pytensor.function([], getattr(ops["pytensor"], name)(*tensors))()
        np.testing.assert_allclose(got_jax, expected, rtol=1e-13, err_msg=name)
        np.testing.assert_allclose(got_pytensor, expected, rtol=1e-13, err_msg=name)


def test_formula_log_evaluation_in_pytensor_matches_numpy():
    import pytensor

    law = bs.get_law("chinchilla")
    x = {"N": np.geomspace(1e7, 1e11, 5), "D": np.geomspace(1e9, 1e13, 5)}
    theta = {"E": 1.8, "A": 480.0, "B": 2000.0, "alpha": 0.35, "beta": 0.37}
    expected = np.log(law.mean(x, theta, ops=NUMPY_OPS))
    got = pytensor.function([], law.log_mean(x, theta, ops=pytensor_ops()))()
    np.testing.assert_allclose(got, expected, rtol=1e-12)


PRIOR_CASES = [
    "Normal(0.5, 2)",
    "StudentT(3, 0.5, 2)",
    "Cauchy(0.5, 2)",
    "LogNormal(log(500), 3)",
    "HalfNormal(0.5)",
    "HalfCauchy(0.5)",
    "Exponential(rate=2)",
    "Gamma(2, 0.1)",
    "InverseGamma(3, 2)",
    "Beta(2, 5)",
    "Uniform(0.1, 2)",
    "LogUniform(0.01, 10)",
    "TruncatedNormal(0.3, 0.2, low=0)",
    "TruncatedNormal(0.3, 0.2, low=0, high=1)",
]


def test_every_prior_family_has_a_case_and_a_pymc_distribution():
    families = {Prior.parse(text).family for text in PRIOR_CASES}
    assert families == set(ALL_PRIOR_FAMILIES) - {"Fixed"}
    assert set(PRIOR_FAMILIES) == families - {"LogUniform"}  # LogUniform is written out


@pytest.mark.parametrize("text", PRIOR_CASES)
def test_prior_densities_match_numpyro(text):
    """Parameterisations (numpyro's rate is PyMC's lam/beta) checked on the density itself."""
    import pytensor

    prior = Prior.parse(text)
    support = prior.support
    low = support.low if math.isfinite(support.low) else -3.0
    high = support.high if math.isfinite(support.high) else low + 6.0
    values = np.linspace(low, high, 9)[1:-1]
    with jax.enable_x64(True):
        expected = np.asarray(prior.to_numpyro().log_prob(jnp.asarray(values)))
    got = pytensor.function([], prior_logp(prior, values))()
    np.testing.assert_allclose(got, expected, rtol=1e-8, atol=1e-8)


# ---------------------------------------------------------------------- exact joint densities
def joint_log_densities(spec: ModelSpec, runs, seed: int = 0, points: int = 3, simulate=False):
    """Joint log density of both models at ``points`` random points drawn in the numpyro model.

    With ``simulate``, the outcomes are replaced at each point by a draw of the model at that
    point, so that censored runs sit where the model puts them: at a prior draw, arbitrary
    outcomes can lie so far in a tail that the numpyro backend's censored term saturates at
    ``log(1e-300)`` (``bayescale.likelihoods.Censored`` clips the CDF) while PyMC's is exact.
    """
    out = []
    design = Design.from_runs(runs, spec)
    pymc_joint = None
    for key in jax.random.split(jax.random.PRNGKey(seed), points):
        key_point, key_outcome = jax.random.split(key)
        point = _point(spec, design, key_point)
        if simulate:
            design = Design.from_runs(
                replace(runs, y=_outcome(spec, design, point, key_outcome)), spec
            )
            pymc_joint = None
        if pymc_joint is None:
            pymc_joint = remove_value_transforms(pymc_model(spec, design)).compile_logp(
                jacobian=False
            )
        with jax.enable_x64(True):
            model = numpyro_model(spec, design)
            numpyro_value = float(log_density(model, (), {"y": _observed(spec, design)}, point)[0])
        pymc_value = float(pymc_joint({k: np.asarray(v) for k, v in point.items()}))
        out.append((numpyro_value, pymc_value))
    return np.array(out)


def _observed(spec, design):
    trials = None if design.trials is None else jnp.asarray(design.trials)
    return spec.observation.observed(jnp.asarray(design.y), trials)


def _point(spec, design, key):
    """A point of the numpyro model (every sampled site, constrained) drawn from the prior."""
    with jax.enable_x64(True):
        model = numpyro_model(spec, design)
        kwargs = {"y": _observed(spec, design)}
        info, *_ = initialize_model(key, model, init_strategy=init_to_sample, model_kwargs=kwargs)
        return constrain_fn(model, (), kwargs, info.z)


def _outcome(spec, design, point, key):
    """Outcomes drawn from the model at ``point``."""
    with jax.enable_x64(True):
        model = numpyro.handlers.substitute(numpyro_model(spec, design), point)
        value = numpyro.handlers.trace(numpyro.handlers.seed(model, key)).get_trace()["y"]["value"]
        return np.asarray(spec.observation.to_outcome(value, design.trials), dtype=float)


def generic_runs(law: bs.Law, rng, n: int = 24, **extra) -> pd.DataFrame:
    """Runs with inputs spread over several orders of magnitude and an outcome in range.

    The outcome need not follow the law: the densities are compared, not fitted.
    """

    def draw(support):
        if np.isfinite(support.high):  # an interval input (a chance rate): inside it
            width = support.high - support.low
            return support.low + width * rng.uniform(0.1, 0.9, n)
        return 10 ** rng.uniform(6, 10, n) if support.low >= 0 else rng.normal(size=n)

    frame = pd.DataFrame({i.name: draw(i.support) for i in law.inputs})
    if law.outcome == "loss":
        frame["y"] = rng.uniform(1.5, 4.0, n)
    else:
        frame["y"] = rng.uniform(0.05, 0.95, n)
    for column, values in extra.items():
        frame[column] = values
    return frame


@pytest.mark.parametrize("law_name", sorted(bs.catalog()))
@pytest.mark.parametrize("pooled", [False, True], ids=["unpooled", "pooled"])
def test_joint_density_matches_for_every_catalog_law(law_name, pooled):
    """Every law, with a reference-scale coordinate where it has one; pooled: the first
    parameter with a reference and every parameter in its exponent, over the same column
    (references then use the group's own exponent), one of them centred."""
    law = bs.get_law(law_name)
    rng = np.random.default_rng(1)
    frame = generic_runs(law, rng, g=np.tile(["a", "b", "c"], 8))
    pool = []
    if pooled:
        referenced = [p for p in law.parameters if p.reference is not None]
        names = [p.name for p in law.parameters[:1]]
        if referenced:
            names = [referenced[0].name, *sorted(referenced[0].reference.exponent.names)]
        pool = [bs.Pooling(name, "g", centered=i == 0) for i, name in enumerate(names)]
    # generic_runs draws accuracies inside (0.05, 0.95): a beta likelihood for them
    observation = "lognormal" if law.outcome in ("loss", "error") else "beta"
    runs = load_runs(frame, law=law, y="y", groups=["g"] if pooled else ())
    spec = ModelSpec.create(law, pool=pool, observation=observation).anchored(runs)
    if pooled:
        assert any(spec.uses_reference(p) and spec.pooling_of(p.name) for p in spec.parameters) or (
            not any(p.reference for p in law.parameters)
        )
    values = joint_log_densities(spec, runs)
    assert np.all(np.isfinite(values))
    np.testing.assert_allclose(values[:, 1], values[:, 0], rtol=1e-7)


@pytest.mark.parametrize("likelihood", ["lognormal", "lognormal_mean", "student_t", "huber"])
def test_joint_density_matches_for_continuous_models(likelihood):
    """Pooling both ways, a run-level covariate, a group-level covariate and (except for the
    Student-t, see below) censoring in both directions."""
    rng = np.random.default_rng(2)
    law = bs.get_law("power_law_floor")
    censoring = np.zeros(24, dtype=int)
    if likelihood != "student_t":
        # numpyro's Student-t CDF has no gradient in its degrees of freedom (jax's betainc), so
        # the numpyro backend cannot sample a censored Student-t model; not compared here.
        censoring[[2, 7]], censoring[[5, 11]] = 1, -1
    frame = generic_runs(
        law,
        rng,
        g=np.tile(["a", "b", "c", "d"], 6),
        z=rng.normal(size=24),
        w=np.tile([0.0, 1.0, 0.0, 1.0], 6),
        stopped=censoring,
    )
    spec = ModelSpec.create(
        law,
        observation=likelihood,
        observation_options={"delta": 0.5} if likelihood == "huber" else None,
        pool=[bs.Pooling("alpha", "g", covariates=("w",)), bs.Pooling("L_inf", "g", centered=True)],
        regress={"x0": ["z"]},
    )
    runs = load_runs(frame, law=law, y="y", groups=["g"], covariates=["z", "w"], censored="stopped")
    values = joint_log_densities(spec, runs, simulate=True)
    np.testing.assert_allclose(values[:, 1], values[:, 0], rtol=1e-7)


@pytest.mark.parametrize("likelihood", ["binomial", "beta_binomial", "beta"])
def test_joint_density_matches_for_accuracy_models(likelihood):
    law = bs.Law.from_formula(
        "logistic_accuracy",
        "sigmoid(a + b * log(x))",
        inputs=["x"],
        parameters={"a": "Normal(-4, 2)", "b": "Normal(0.3, 0.3)"},
        outcome="accuracy",
    )
    rng = np.random.default_rng(3)
    frame = generic_runs(law, rng, questions=rng.integers(50, 500, 24))
    spec = ModelSpec.create(law, observation=likelihood, pool=["a|g"])
    frame["g"] = np.tile(["u", "v"], 12)
    needs_trials = likelihood != "beta"
    runs = load_runs(
        frame, law=law, y="y", groups=["g"], trials="questions" if needs_trials else None
    )
    values = joint_log_densities(spec, runs)
    np.testing.assert_allclose(values[:, 1], values[:, 0], rtol=1e-7)


PRIOR_ROLES = [
    # (reference coefficient x0, exponent alpha (pooled), its spread alpha_sd, coefficient x0_z)
    ("LogNormal(log(1e5), 5)", "Beta(2, 5)", "HalfNormal(0.5)", "Normal(0.5, 2)"),
    ("HalfNormal(1e9)", "Gamma(2, 5)", "HalfCauchy(0.5)", "StudentT(3, 0.5, 2)"),
    ("Exponential(rate=1e-8)", "InverseGamma(3, 1)", "Exponential(rate=2)", "Cauchy(0.5, 2)"),
    ("Gamma(0.5, 1e-8)", "Uniform(0.1, 1)", "LogNormal(-1, 0.5)", "Normal(0, 1)"),
    (
        "InverseGamma(1, 1e5)",
        "LogUniform(0.05, 1)",
        "TruncatedNormal(0.3, 0.2, low=0)",
        "Normal(0, 1)",
    ),
    (
        "LogUniform(0.01, 1e15)",
        "TruncatedNormal(0.3, 0.2, low=0, high=1)",
        "Gamma(2, 4)",
        "Normal(0, 1)",
    ),
    (
        "TruncatedNormal(1e5, 1e9, low=0)",
        "LogNormal(log(0.3), 0.8)",
        "InverseGamma(3, 1)",
        "Normal(0, 1)",
    ),
    ("Uniform(0.1, 1e15)", "HalfNormal(1)", "Uniform(0.01, 2)", "Normal(0, 1)"),
]


def test_prior_roles_cover_every_family():
    used = {Prior.parse(text).family for row in PRIOR_ROLES for text in row}
    assert used == set(ALL_PRIOR_FAMILIES) - {"Fixed"}


@pytest.mark.parametrize("roles", PRIOR_ROLES, ids=lambda roles: roles[0])
def test_joint_density_matches_with_every_prior_family(roles):
    """Each family is the prior of a reference coefficient (a potential in both models, with
    the density of the implied value), of a pooled parameter's population value, of a spread or
    of a covariate coefficient somewhere."""
    rng = np.random.default_rng(4)
    law = bs.get_law("power_law_floor")
    frame = generic_runs(law, rng, g=np.tile(["a", "b"], 12), z=rng.normal(size=24))
    priors = dict(zip(["x0", "alpha", "alpha_sd", "x0_z"], roles, strict=True))
    spec = ModelSpec.create(law, priors=priors, pool=["alpha|g"], regress={"x0": ["z"]})
    runs = load_runs(frame, law=law, y="y", groups=["g"], covariates=["z"])
    values = joint_log_densities(spec, runs, points=2)
    assert np.all(np.isfinite(values))
    np.testing.assert_allclose(values[:, 1], values[:, 0], rtol=1e-7)


# ---------------------------------------------------------------------- options and errors
def test_backend_options_are_checked():
    frame = power_law_floor_runs()
    with pytest.raises(SettingsError, match="backend must be one of numpyro, pymc"):
        bs.fit(frame, "power_law_floor", y="loss", backend="stan")
    with pytest.raises(SettingsError, match="needs backend='pymc'"):
        bs.fit(frame, "power_law_floor", y="loss", nuts_sampler="blackjax")
    with pytest.raises(SettingsError, match="nuts_sampler must be one of"):
        bs.fit(frame, "power_law_floor", y="loss", backend="pymc", nuts_sampler="hmc")
    with pytest.raises(SettingsError, match="PyMC's own NUTS runs on the CPU"):
        bs.fit(frame, "power_law_floor", y="loss", backend="pymc", device="gpu")


def test_a_missing_pymc_is_a_clear_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pymc", None)
    with pytest.raises(SettingsError, match="needs PyMC, which is not installed: pip install pymc"):
        bs.fit(power_law_floor_runs(), "power_law_floor", y="loss", backend="pymc")


def test_a_law_given_as_a_python_function_is_refused_by_pymc():
    law = bs.Law.from_function(
        "floor_power",
        lambda x, t: t["E"] + t["A"] * x["x"] ** -t["alpha"],
        inputs=["x"],
        parameters={"E": "LogNormal(0, 1)", "A": "LogNormal(3, 3)", "alpha": "LogNormal(-1, 1)"},
    )
    with pytest.raises(SettingsError, match="defined by a Python function"):
        bs.fit(power_law_floor_runs(), law, y="loss", backend="pymc")


def test_cli_backend_options(tmp_path, capsys):
    from bayescale.cli import main

    path = tmp_path / "runs.csv"
    power_law_floor_runs().to_csv(path, index=False)
    out = str(tmp_path / "fit.nc")
    common = [str(path), "--law", "power_law_floor", "--y", "loss", "--out", out]
    assert main(["fit", *common, "--backend", "stan"]) == 2
    assert "backend must be one of numpyro, pymc" in capsys.readouterr().err
    assert main(["fit", *common, "--nuts-sampler", "blackjax"]) == 2
    assert "needs backend='pymc'" in capsys.readouterr().err
    assert main(["fit", *common, "--device", "tpu"]) == 2
    assert "device must be one of cpu, gpu" in capsys.readouterr().err
    assert not (tmp_path / "fit.nc").exists()


@pytest.mark.parametrize("fixed", [False, True], ids=["nested", "fixed-population"])
def test_joint_density_matches_for_nested_pooling(fixed):
    """Multiplier pooled over (pair, weight) cells nested in the pairs its exponent is pooled
    over (each cell's reference term uses its own pair's exponent); with ``fixed``, the
    population values and spreads are held fixed (independent groups)."""
    frame = pd.DataFrame(
        {
            "N": [1e7, 1e8, 1e9, 1e7, 1e8, 1e9, 3e7, 3e8],
            "pair": ["a", "a", "a", "b", "b", "b", "c", "c"],
            "cell": ["a@1", "a@1", "a@0.5", "b@1", "b@0.5", "b@0.5", "c@1", "c@1"],
            "loss": [3.0, 2.5, 2.4, 3.2, 2.9, 2.6, 3.1, 2.7],
        }
    )
    pool = [bs.Pooling("alpha", "pair", centered=True), bs.Pooling("beta", "cell")]
    priors = (
        {
            "alpha": "Fixed(0.3)",
            "alpha_sd": "Fixed(0.5)",
            "beta": "Fixed(100)",
            "beta_sd": "Fixed(1)",
        }
        if fixed
        else {}
    )
    spec = ModelSpec.create("multilingual", pool=pool, priors=priors)
    runs = load_runs(frame, law=spec.law, y="loss", groups=["pair", "cell"])
    assert spec.uses_reference(spec.law.parameter("beta"), Design.from_runs(runs, spec).nested)
    values = joint_log_densities(spec, runs)
    assert np.all(np.isfinite(values))
    np.testing.assert_allclose(values[:, 1], values[:, 0], rtol=1e-7)


def test_joint_density_matches_for_independent_groups_with_a_covariate():
    """A parameter given each group's own value (pooled with a Fixed population value and a
    Fixed spread: no hyperparameters) and a run-level covariate on top, as in the Pythia
    AFT-against-PH study."""
    rng = np.random.default_rng(3)
    frame = generic_runs(
        bs.get_law("burr_curve"), rng, g=np.tile(["a", "b", "c"], 8), z=np.tile([0.0, 1.0], 12)
    )
    spec = ModelSpec.create(
        "burr_curve",
        pool=[bs.Pooling("aft", "g", centered=True), bs.Pooling("A", "g")],
        priors={"aft": "Fixed(1e-8)", "aft_sd": "Fixed(2)", "A": "Fixed(3)", "A_sd": "Fixed(1)"},
        regress={"aft": ["z"], "ph": ["z"]},
    )
    assert {"aft_pop", "aft_sd", "A_pop", "A_sd"}.isdisjoint(spec.posterior_names())
    assert {"aft", "aft_z", "A", "ph_z"} <= set(spec.posterior_names())
    runs = load_runs(frame, law=spec.law, y="y", groups=["g"], covariates=["z"])
    values = joint_log_densities(spec, runs)
    assert np.all(np.isfinite(values))
    np.testing.assert_allclose(values[:, 1], values[:, 0], rtol=1e-7)


def test_effective_epochs_in_pytensor_matches_numpy_with_gradients():
    """PyTensor has no E1: bayescale's operation gives SciPy's values, the analytic gradient
    (checked against finite differences) and JAX's E1 when PyMC compiles the graph to JAX."""
    import pytensor
    import pytensor.tensor as pt

    from bayescale.formula import _pytensor_exp1, effective_epochs, pytensor_ops

    r, tau = pt.dvector("r"), pt.dvector("tau")
    ops = pytensor_ops()
    out = ops.effective_epochs(r, tau)
    points = (np.array([0.5, 3.0, 40.0, 300.0]), np.array([2.0, 5.0, 0.7, 50.0]))
    for mode in ("FAST_RUN", "JAX"):
        evaluate = pytensor.function([r, tau], out, mode=mode)
        np.testing.assert_allclose(evaluate(*points), effective_epochs(*points), rtol=1e-10)
    pytensor.gradient.verify_grad(
        _pytensor_exp1(), [np.array([0.01, 0.5, 3.0, 30.0])], rng=np.random.default_rng(0)
    )


def test_m4_logit_in_pytensor_matches_numpy_with_gradients():
    """The M4 root in PyTensor: NumPy's values, and the implicit function's gradient
    (``dt/dr = 1 / g'(t)``, ``dt/dalpha = -softplus(t) / g'(t)``) through the stopped-gradient
    Newton steps, also when PyMC compiles the graph to JAX."""
    import pytensor
    import pytensor.tensor as pt

    from bayescale.formula import m4_logit, pytensor_ops

    r, alpha = pt.dvector("r"), pt.dvector("alpha")
    t = pytensor_ops().m4_logit(r, alpha)
    points = (np.array([-3.0, 2.0, -20.0, 0.5]), np.array([0.4, 3.0, 5.0, 0.05]))
    expected = m4_logit(*points)
    slope = 1 + (points[1] - 1) / (1 + np.exp(-expected))
    gradients = [1 / slope, -np.logaddexp(0, expected) / slope]
    for mode in ("FAST_RUN", "JAX"):
        evaluate = pytensor.function(
            [r, alpha], [t, *pytensor.grad(t.sum(), [r, alpha])], mode=mode
        )
        value, *gradient = evaluate(*points)
        np.testing.assert_allclose(value, expected, rtol=1e-12)
        np.testing.assert_allclose(gradient, gradients, rtol=1e-10)
