"""Law definitions: the catalog files, laws from formulas and from functions, and their checks."""

import tomllib

import jax.numpy as jnp
import numpy as np
import pytest

import bayescale as bs
from bayescale.errors import LawError
from bayescale.formula import NUMPY_OPS
from bayescale.laws import Law, catalog_directory

REQUIRED_LAWS = {"power_law_floor", "chinchilla", "kaplan", "overtraining"}


def test_catalog_has_the_required_laws_with_citations():
    laws = bs.catalog()
    assert set(laws) >= REQUIRED_LAWS
    for law in laws.values():
        assert law.citation and "arXiv" in law.citation
        assert law.source, f"{law.name} does not say where in the paper its formula is"
        assert law.title


def test_catalog_files_are_one_per_law_and_data_only():
    files = sorted(catalog_directory().glob("*.toml"))
    assert {f.stem for f in files} == set(bs.catalog())
    for path in files:
        with path.open("rb") as handle:
            spec = tomllib.load(handle)
        assert spec["name"] == path.stem
        assert {"formula", "inputs", "parameters", "citation", "outcome"} <= set(spec)


def test_chinchilla_parameters_are_named_as_in_the_paper():
    law = bs.get_law("chinchilla")
    assert law.parameter_names == ("E", "A", "B", "alpha", "beta")
    assert law.input_names == ("N", "D")
    value = law.mean(
        {"N": 7e10, "D": 1.4e12},
        {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28},
        ops=NUMPY_OPS,
    )
    assert value == pytest.approx(1.69 + 406.4 / 7e10**0.34 + 410.7 / 1.4e12**0.28)


def test_kaplan_reproduces_its_limits():
    law = bs.get_law("kaplan")
    theta = {"N_c": 6.4e13, "D_c": 1.8e13, "alpha_N": 0.076, "alpha_D": 0.103}
    # with unlimited data the joint law reduces to L(N) = (N_c / N)^alpha_N
    big_data = law.mean({"N": 1e9, "D": 1e40}, theta, ops=NUMPY_OPS)
    assert big_data == pytest.approx((6.4e13 / 1e9) ** 0.076, rel=1e-9)
    # with an unlimited model it reduces to L(D) = (D_c / D)^alpha_D
    big_model = law.mean({"N": 1e60, "D": 1e10}, theta, ops=NUMPY_OPS)
    assert big_model == pytest.approx((1.8e13 / 1e10) ** 0.103, rel=1e-9)


def test_overtraining_law_is_chinchilla_with_equal_exponents():
    alpha, big_a, big_b, e = 0.3, 400.0, 900.0, 1.8
    n, d = 1e9, 4e10
    chinchilla = bs.get_law("chinchilla").mean(
        {"N": n, "D": d},
        {"E": e, "A": big_a, "B": big_b, "alpha": alpha, "beta": alpha},
        ops=NUMPY_OPS,
    )
    eta = alpha / 2
    overtraining = bs.get_law("overtraining").mean(
        {"C": 6 * n * d, "M": d / n},
        {"E": e, "a": big_a * 6**eta, "b": big_b * 6**eta, "eta": eta},
        ops=NUMPY_OPS,
    )
    assert overtraining == pytest.approx(chinchilla, rel=1e-12)


def test_law_from_formula_infers_supports_from_priors():
    law = Law.from_formula(
        "mine",
        "c + k * log(x)",
        inputs={"x": "steps"},
        parameters={"c": "Normal(0, 1)", "k": "LogNormal(0, 1)"},
        outcome="loss",
    )
    assert law.parameter("c").support.kind == "real"
    assert law.parameter("k").support.kind == "positive"
    assert law.to_dict()["formula"] == "c + k * log(x)"
    assert Law.from_dict(law.to_dict()).to_dict() == law.to_dict()


def test_law_from_function_evaluates_with_jax():
    law = Law.from_function(
        "fn",
        lambda x, t: t["E"] + t["A"] * x["N"] ** -t["alpha"],
        inputs=["N"],
        parameters={"E": "LogNormal(0, 1)", "A": "LogNormal(3, 3)", "alpha": "LogNormal(-1, 1)"},
    )
    value = law.mean({"N": jnp.array([1e6])}, {"E": 1.0, "A": 10.0, "alpha": 0.5})
    assert float(value[0]) == pytest.approx(1.01)
    assert float(
        law.log_mean({"N": jnp.array([1e6])}, {"E": 1.0, "A": 10.0, "alpha": 0.5})[0]
    ) == pytest.approx(np.log(1.01))
    with pytest.raises(LawError, match="Python function"):
        law.to_dict()


@pytest.mark.parametrize(
    ("formula", "inputs", "parameters", "message"),
    [
        (
            "a + b",
            ["x"],
            {"a": "Normal(0, 1)", "b": "Normal(0, 1)"},
            "'x' is declared but not used",
        ),
        (
            "a * x",
            ["x"],
            {"a": "Normal(0, 1)", "b": "Normal(0, 1)"},
            "'b' is declared but not used",
        ),
        ("a * x + q", ["x"], {"a": "Normal(0, 1)"}, "unknown name 'q'"),
        (
            "a * x",
            ["x"],
            {"a": {"prior": "Normal(0, 1)", "support": "positive"}},
            "puts mass on real",
        ),
        ("exp * x", ["x"], {"exp": "Normal(0, 1)"}, "reserved"),
        ("a_sd * x", ["x"], {"a_sd": "Normal(0, 1)"}, "kept for pooling"),
        ("a__b * x", ["x"], {"a__b": "Normal(0, 1)"}, "'__'"),
        ("a * x", ["x"], {"a": "Normal(0, 1)", "x": "Normal(0, 1)"}, "used twice"),
        ("a * x", ["x"], {"a": {"prior": "Normal(0, 1)", "colour": "red"}}, "unknown key 'colour'"),
        ("a * x.real", ["x"], {"a": "Normal(0, 1)"}, "attribute access"),
    ],
)
def test_invalid_law_definitions_raise(formula, inputs, parameters, message):
    with pytest.raises(LawError) as caught:
        Law.from_formula("bad", formula, inputs=inputs, parameters=parameters)
    assert message in str(caught.value)


def test_reference_declarations_are_checked():
    base = {"prior": "LogNormal(0, 1)", "support": "positive"}
    with pytest.raises(LawError, match="not an input"):
        Law.from_formula(
            "bad",
            "A * x^-k",
            inputs=["x"],
            parameters={
                "A": {**base, "reference": {"input": "z", "exponent": "k"}},
                "k": "LogNormal(0, 1)",
            },
        )
    with pytest.raises(LawError, match="reference kind"):
        Law.from_formula(
            "bad",
            "A * x^-k",
            inputs=["x"],
            parameters={
                "A": {**base, "reference": {"input": "x", "exponent": "k", "kind": "odd"}},
                "k": "LogNormal(0, 1)",
            },
        )


def test_unknown_law_name_lists_the_catalog():
    with pytest.raises(LawError, match="unknown law 'chinchila'.*did you mean 'chinchilla'"):
        bs.get_law("chinchila")
    with pytest.raises(LawError, match="no parameter 'gamma'"):
        bs.get_law("chinchilla").parameter("gamma")


def test_m4_curve_is_alabdulmohsins_implicit_law_and_nests_the_log_logistic():
    """On a grid of scales the M4 loss satisfies the paper's defining equation
    ``(L - L_inf) / (L_0 - L)^alpha = beta x^c`` (``L_inf = E``, ``L_0 = E + A``,
    ``beta = aft^-gamma``, ``c = -gamma``); with ``alpha = 1`` it is the log-logistic curve; for
    large ``x`` it tends to the power law ``E + A^alpha (aft x)^-gamma``."""
    m4, loglogistic = bs.get_law("m4_curve"), bs.get_law("loglogistic_curve")
    x = np.geomspace(1e2, 1e12, 21)
    theta = {"E": 0.3, "A": 0.6, "aft": 1e-5, "gamma": 0.7}
    for alpha in (0.3, 1.0, 2.5):
        loss = m4.mean({"x": x}, {**theta, "alpha": alpha}, ops=NUMPY_OPS)
        left = (loss - 0.3) / (0.9 - loss) ** alpha
        np.testing.assert_allclose(left, (1e-5 * x) ** -0.7, rtol=1e-9)
    np.testing.assert_allclose(
        m4.mean({"x": x}, {**theta, "alpha": 1.0}, ops=NUMPY_OPS),
        loglogistic.mean({"x": x}, theta, ops=NUMPY_OPS),
        rtol=1e-13,
    )
    far = 1e15
    tail = m4.mean({"x": far}, {**theta, "alpha": 2.5}, ops=NUMPY_OPS) - 0.3
    assert tail == pytest.approx(0.6**2.5 * (1e-5 * far) ** -0.7, rel=1e-4)


def test_anchor_declarations_are_checked():
    """An anchor takes no prior and must name a positive input; it survives a round trip."""
    with pytest.raises(LawError, match="takes no prior"):
        Law.from_formula(
            "bad",
            "A * (x / x_ref)^-0.3",
            inputs=["x"],
            parameters={"A": "LogNormal(0, 1)", "x_ref": {"anchor": "x", "prior": "Fixed(2)"}},
        )
    with pytest.raises(LawError, match="an anchor must be positive and name a positive input"):
        Law.from_formula(
            "bad",
            "A * (x / x_ref)^-0.3",
            inputs=["x"],
            parameters={"A": "LogNormal(0, 1)", "x_ref": {"anchor": "z", "support": "positive"}},
        )
    with pytest.raises(LawError, match=r"got 't'; positive inputs: x\)"):  # log t is undefined
        Law.from_formula(
            "bad",
            "A * (x / x_ref)^-0.3 + t",
            inputs={"x": "size", "t": {"description": "shift", "support": "real"}},
            parameters={"A": "LogNormal(0, 1)", "x_ref": {"anchor": "t", "support": "positive"}},
        )
    law = bs.get_law("anchored_power_law")
    assert law.parameter("x_ref").anchor == "x"
    assert Law.from_dict(law.to_dict()).parameter("x_ref").anchor == "x"


def test_anchored_power_law_is_the_power_law_with_a_floor_at_its_reference():
    """L_ref (F + (1 - F) (x / x_ref)^(-slope / (1 - F))) is L_inf + (x0 / x)^alpha with
    L_inf = F L_ref, alpha = slope / (1 - F) and (x0 / x_ref)^alpha = (1 - F) L_ref; its local
    log-log slope at x_ref is -slope."""
    x = np.geomspace(1e5, 1e11, 7)
    theta = {"L_ref": 2.4, "F": 0.7, "slope": 0.09, "x_ref": 3e7}
    anchored = bs.get_law("anchored_power_law").mean({"x": x}, theta, ops=NUMPY_OPS)
    alpha = theta["slope"] / (1 - theta["F"])
    x0 = theta["x_ref"] * ((1 - theta["F"]) * theta["L_ref"]) ** (1 / alpha)
    direct = bs.get_law("power_law_floor").mean(
        {"x": x}, {"L_inf": theta["F"] * theta["L_ref"], "x0": x0, "alpha": alpha}, ops=NUMPY_OPS
    )
    np.testing.assert_allclose(anchored, direct, rtol=1e-12)
    h = 1e-6
    near = bs.get_law("anchored_power_law").mean(
        {"x": theta["x_ref"] * np.exp([-h, h])}, theta, ops=NUMPY_OPS
    )
    assert np.log(near[1] / near[0]) / (2 * h) == pytest.approx(-theta["slope"], rel=1e-6)
