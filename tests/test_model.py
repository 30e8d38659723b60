"""Model compilation: the reference-scale reparameterisation keeps the posterior unchanged,
and every name in a specification is checked."""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from numpyro.infer.util import log_density

import bayescale as bs
from bayescale.errors import DataError, PriorError, SettingsError
from bayescale.model import Design, ModelSpec, numpyro_model


def without_references(law: bs.Law) -> bs.Law:
    spec = copy.deepcopy(law.to_dict())
    spec.pop("floor", None)
    for parameter in spec["parameters"].values():
        parameter.pop("reference", None)
    return bs.Law.from_dict(spec)


def joint_log_density(law, values, frame):
    spec = ModelSpec.create(law)
    runs = bs.load_runs(frame, law=spec.law, y="loss")
    design = Design.from_runs(runs, spec)
    model = numpyro_model(spec, design)
    with jax.enable_x64(True):
        params = {k: jnp.asarray(v) for k, v in values(design).items()}
        value, _ = log_density(model, (), {"y": jnp.asarray(design.y)}, params)
    return float(value)


@pytest.mark.parametrize("seed", range(3))
def test_floor_and_reference_coordinates_change_coordinates_not_the_posterior(seed):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "N": 10 ** rng.uniform(7, 10, 20),
            "D": 10 ** rng.uniform(9, 12, 20),
            "loss": rng.uniform(2, 3, 20),
        }
    )
    theta = {
        "E": rng.uniform(1, 2),
        "A": rng.uniform(100, 900),
        "B": rng.uniform(100, 3000),
        "alpha": rng.uniform(0.2, 0.5),
        "beta": rng.uniform(0.2, 0.5),
        "sigma": 0.05,
    }
    law = bs.get_law("chinchilla")
    direct = joint_log_density(without_references(law), lambda d: theta, frame)

    def reference_coordinates(design):
        # the floor block: log mean at the reference point, logit of the reducible share there,
        # and the split of the reducible part between the two terms
        term_a = theta["A"] * np.exp(-theta["alpha"] * design.log_reference["N"])
        term_b = theta["B"] * np.exp(-theta["beta"] * design.log_reference["D"])
        total = theta["E"] + term_a + term_b
        values = {k: v for k, v in theta.items() if k not in ("A", "B", "E")}
        values["__level"] = np.log(total)
        values["__reducible"] = np.log((term_a + term_b) / theta["E"])
        values["__split"] = np.array([np.log(term_b / term_a)])
        return values

    with_reference = joint_log_density(law, reference_coordinates, frame)
    # The reference model carries the densities of log E, log A and log B (p(log A) = p(A) A),
    # and every change of coordinates here has unit Jacobian on the log scale (the shear
    # (u, alpha) -> (log A, alpha), the level/share map and the softmax split): the two
    # posteriors are the same.
    expected = direct + np.log(theta["A"]) + np.log(theta["B"]) + np.log(theta["E"])
    assert with_reference == pytest.approx(expected, rel=1e-10)


def test_two_input_reference_terms_keep_the_posterior():
    """The over-training law: a M^eta C^-eta and b M^-eta C^-eta, both under the floor E."""
    rng = np.random.default_rng(7)
    frame = pd.DataFrame(
        {
            "C": 10 ** rng.uniform(17, 21, 20),
            "M": 10 ** rng.uniform(0.7, 2.8, 20),
            "loss": rng.uniform(2, 4, 20),
        }
    )
    theta = {"E": 1.8, "a": 210.0, "b": 370.0, "eta": 0.14, "sigma": 0.05}
    law = bs.get_law("overtraining")
    direct = joint_log_density(without_references(law), lambda d: theta, frame)

    def reference_coordinates(design):
        log_c, log_m = design.log_reference["C"], design.log_reference["M"]
        term_a = theta["a"] * np.exp(theta["eta"] * (log_m - log_c))
        term_b = theta["b"] * np.exp(-theta["eta"] * (log_m + log_c))
        values = {"eta": theta["eta"], "sigma": theta["sigma"]}
        values["__level"] = np.log(theta["E"] + term_a + term_b)
        values["__reducible"] = np.log((term_a + term_b) / theta["E"])
        values["__split"] = np.array([np.log(term_b / term_a)])
        return values

    with_reference = joint_log_density(law, reference_coordinates, frame)
    expected = direct + np.log(theta["a"]) + np.log(theta["b"]) + np.log(theta["E"])
    assert with_reference == pytest.approx(expected, rel=1e-10)


def test_scale_reference_includes_its_jacobian():
    rng = np.random.default_rng(5)
    frame = pd.DataFrame(
        {
            "N": 10 ** rng.uniform(6, 9, 15),
            "D": 10 ** rng.uniform(8, 11, 15),
            "loss": rng.uniform(2, 4, 15),
        }
    )
    theta = {"N_c": 6.4e13, "D_c": 1.8e13, "alpha_N": 0.076, "alpha_D": 0.103, "sigma": 0.05}
    law = bs.get_law("kaplan")
    direct = joint_log_density(without_references(law), lambda d: theta, frame)
    exponent = theta["alpha_N"] / theta["alpha_D"]

    def reference_coordinates(design):
        values = {k: v for k, v in theta.items() if k not in ("N_c", "D_c")}
        values["N_c__ref"] = exponent * (np.log(theta["N_c"]) - design.log_reference["N"])
        values["D_c__ref"] = np.log(theta["D_c"]) - design.log_reference["D"]
        return values

    with_reference = joint_log_density(law, reference_coordinates, frame)
    # log N_c = u / e + log N_ref: the density of u is p(log N_c) / |e|
    expected = direct + np.log(theta["N_c"]) + np.log(theta["D_c"]) - np.log(exponent)
    assert with_reference == pytest.approx(expected, rel=1e-10)

    # and the Jacobian that formula assumes, checked by automatic differentiation
    def to_law_coordinates(z):
        u, alpha_n, alpha_d = z
        return jnp.stack([u / (alpha_n / alpha_d) + 20.0, alpha_n, alpha_d])

    with jax.enable_x64(True):
        z = jnp.array([1.3, theta["alpha_N"], theta["alpha_D"]])
        jacobian = jax.jacobian(to_law_coordinates)(z)
    assert np.log(abs(np.linalg.det(np.asarray(jacobian)))) == pytest.approx(-np.log(exponent))


def test_spec_checks_every_name():
    with pytest.raises(
        PriorError, match="unknown parameter 'gamma'; valid: E, A, B, alpha, beta, sigma"
    ):
        ModelSpec.create("chinchilla", priors={"gamma": "Normal(0, 1)"})
    with pytest.raises(PriorError, match="cannot pool gamma\\|family"):
        ModelSpec.create("chinchilla", pool=["gamma|family"])
    with pytest.raises(PriorError, match="'alpha' is not pooled"):
        ModelSpec.create("chinchilla", priors={"alpha_sd": "HalfNormal(1)"})
    with pytest.raises(PriorError, match="pooled twice"):
        ModelSpec.create("chinchilla", pool=["alpha|family", "alpha|language"])
    with pytest.raises(PriorError, match="puts mass on real"):
        ModelSpec.create("chinchilla", priors={"alpha": "Normal(0.3, 0.1)"})
    with pytest.raises(PriorError, match="Fixed and cannot vary"):
        ModelSpec.create("chinchilla", priors={"alpha": "Fixed(0.3)"}, regress={"alpha": ["z"]})
    # pooled, a Fixed value is the population's: the groups and the covariate still vary
    ModelSpec.create(
        "chinchilla", priors={"alpha": "Fixed(0.3)"}, pool=["alpha|g"], regress={"alpha": ["z"]}
    )
    with pytest.raises(PriorError, match="must be positive"):
        ModelSpec.create("chinchilla", priors={"alpha_sd": "Fixed(0)"}, pool=["alpha|family"])


def test_spec_round_trips_through_its_dictionary():
    spec = ModelSpec.create(
        "chinchilla",
        observation="huber",
        observation_options={"delta": 0.01},
        priors={"alpha": "LogNormal(-1, 0.3)", "alpha_sd": "HalfNormal(0.2)"},
        pool={"alpha": "family"},
    )
    again = ModelSpec.from_dict(spec.to_dict(), spec.law)
    assert again.to_dict() == spec.to_dict()
    assert again.posterior_names() == [
        "E",
        "A",
        "B",
        "alpha_pop",
        "alpha_sd",
        "alpha",
        "beta",
        "sigma",
    ]


def test_unknown_group_column_is_a_data_error():
    frame = pd.DataFrame({"N": [1e8, 1e9], "D": [1e9, 1e10], "loss": [3.0, 2.5]})
    with pytest.raises(DataError, match="column 'family' not found"):
        bs.fit(frame, "chinchilla", y="loss", pool=["alpha|family"])


def test_regression_and_group_covariates_are_checked():
    spec = ModelSpec.create(
        "power_law_floor",
        regress={"alpha": ["lr"]},
        pool=[bs.Pooling("L_inf", "lang", covariates=("script",))],
    )
    assert spec.covariate_columns == ("lr",)
    assert spec.group_covariate_columns == ("script",)
    assert str(spec.priors["alpha_lr"]) == "Normal(0, 1)"
    assert "L_inf_script" in spec.posterior_names() and "alpha_lr" in spec.posterior_names()
    again = ModelSpec.from_dict(spec.to_dict(), spec.law)
    assert again.to_dict() == spec.to_dict()
    with pytest.raises(PriorError, match="cannot regress 'gamma'"):
        ModelSpec.create("power_law_floor", regress={"gamma": ["lr"]})
    with pytest.raises(PriorError, match="clashes"):
        ModelSpec.create(
            "power_law_floor",
            regress={"alpha": ["lr"]},
            pool=[bs.Pooling("alpha", "g", covariates=("lr",))],
        )


def test_observation_model_must_fit_the_outcome():
    with pytest.raises(PriorError, match="binomial observation model is for accuracy or error"):
        ModelSpec.create("chinchilla", observation="binomial")


def test_group_covariates_must_be_constant_within_groups():
    frame = pd.DataFrame(
        {
            "x": [1e6, 1e7, 1e6, 1e7],
            "loss": [3.0, 2.5, 3.1, 2.6],
            "lang": ["a", "a", "b", "b"],
            "script": [0.0, 1.0, 1.0, 1.0],
        }
    )
    with pytest.raises(DataError, match="covariate 'script' must be constant within each lang"):
        bs.fit(
            frame,
            "power_law_floor",
            y="loss",
            pool=[bs.Pooling("alpha", "lang", covariates=("script",))],
        )


def test_binomial_needs_trials():
    law = bs.Law.from_formula(
        "acc",
        "1 - exp(-(N / c)^k)",
        inputs=["N"],
        outcome="accuracy",
        parameters={"c": "LogNormal(20, 5)", "k": "LogNormal(-1, 1)"},
    )
    frame = pd.DataFrame({"N": [1e8, 1e9], "acc": [0.3, 0.5]})
    with pytest.raises(DataError, match="needs the number of trials"):
        bs.fit(frame, law, y="acc", likelihood="binomial")


def test_floor_declaration_is_checked():
    spec = {
        "name": "bad_floor",
        "formula": "E + 2 * A / N^alpha",
        "floor": "E",
        "inputs": {"N": "size"},
        "parameters": {
            "E": {"prior": "LogNormal(0, 1)"},
            "A": {"prior": "LogNormal(5, 2)", "reference": {"input": "N", "exponent": "alpha"}},
            "alpha": {"prior": "LogNormal(-1, 1)"},
        },
    }
    # the factor 2 is outside the reference term A N^-alpha
    with pytest.raises(bs.LawError, match="must equal the floor plus the reference terms"):
        bs.Law.from_dict(spec)
    assert bs.get_law("overtraining").floor == "E"  # a M^eta C^-eta: two-input references
    assert ModelSpec.create("chinchilla").floor_terms()
    assert not ModelSpec.create("chinchilla", pool=["E|family"]).floor_terms()


def test_models_work_when_arviz_is_imported_before_bayescale():
    """ArviZ loads numpyro lazily; imported first, it left numpyro.distributions without the
    attribute numpyro.factor reads, and every floor model failed (a fresh interpreter)."""
    import subprocess
    import sys

    code = (
        "import arviz_stats, jax\n"
        "import bayescale as bs\n"
        "from bayescale.model import Design, ModelSpec, numpyro_model\n"
        "import numpyro\n"
        "spec = ModelSpec.create('chinchilla')\n"
        "runs = bs.load_runs(bs.datasets.chinchilla(), law=spec.law, y='loss')\n"
        "model = numpyro_model(spec, Design.from_runs(runs, spec))\n"
        "from numpyro.infer.util import initialize_model\n"
        "with jax.enable_x64(True):\n"
        "    info = initialize_model(jax.random.PRNGKey(0), model)[0]\n"
        "print(sorted(info.z)[0])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "__level"  # the floor block's first coordinate


def test_anchors_are_fixed_at_the_geometric_mean_of_the_fitted_runs_or_by_the_user():
    frame = pd.DataFrame({"x": [1e6, 1e7, 1e8, 1e10], "loss": [3.0, 2.6, 2.3, 2.1]})
    spec = ModelSpec.create("anchored_power_law")
    runs = bs.load_runs(frame, law=spec.law, y="loss")
    assert spec.unset_anchors() == ["x_ref"]
    design = Design.from_runs(runs, spec)  # fit_batch's path: the model takes the runs' anchor
    assert float(spec.held_value("x_ref", design.log_reference)) == pytest.approx(10**7.75)
    anchored = spec.anchored(runs)
    assert anchored.priors["x_ref"].fixed_value == pytest.approx(10**7.75, rel=1e-12)
    assert anchored.unset_anchors() == []
    restored = ModelSpec.from_dict(anchored.to_dict(), anchored.law)
    assert restored.priors["x_ref"].fixed_value == anchored.priors["x_ref"].fixed_value
    assert restored.anchored(runs).priors["x_ref"] is restored.priors["x_ref"]
    chosen = ModelSpec.create("anchored_power_law", priors={"x_ref": "Fixed(20)"})
    assert chosen.anchored(runs).priors["x_ref"].fixed_value == 20
    assert chosen.held_value("x_ref", design.log_reference) == 20  # the user's, not the runs'
    with pytest.raises(PriorError, match="give it as Fixed"):
        ModelSpec.create("anchored_power_law", priors={"x_ref": "LogNormal(0, 1)"})
    with pytest.raises(PriorError, match="cannot be pooled"):
        ModelSpec.create("anchored_power_law", pool=["x_ref|g"])


def test_a_law_with_no_finite_value_under_its_priors_is_a_settings_error():
    """numpyro finds no prior draw with a finite log density (here the law's mean is infinite
    everywhere): a one-line SettingsError that says what to check, not numpyro's traceback."""
    law = bs.Law.from_formula(
        "never_finite",
        "a * (1 - x / x)^(-1)",
        inputs=["x"],
        parameters={"a": "LogNormal(0, 1)"},
    )
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "loss": [3.0, 2.0, 1.5]})
    with pytest.raises(SettingsError, match="no starting point has a finite log density"):
        bs.fit(frame, law, y="loss", chains=1, draws=10, warmup=10)
