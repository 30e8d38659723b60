"""The safe formula parser: what it evaluates, and everything it refuses."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

import bayescale as bs
from bayescale.errors import FormulaError
from bayescale.formula import NUMPY_OPS, constant_value, jax_ops, parse_formula


def test_evaluates_arithmetic_with_powers_written_both_ways():
    f = parse_formula("E + A / N^alpha - 2 * B ** 0.5", names=["E", "A", "N", "alpha", "B"])
    values = {"E": 1.5, "A": 100.0, "N": 1e4, "alpha": 0.5, "B": 4.0}
    assert f.evaluate(values, ops=NUMPY_OPS) == pytest.approx(1.5 + 100 / 100 - 4)


def test_caret_binds_tighter_than_plus_and_unary_minus():
    f = parse_formula("a + b^2", names=["a", "b"])
    assert f.evaluate({"a": 1.0, "b": 3.0}, ops=NUMPY_OPS) == 10.0
    g = parse_formula("-x^2", names=["x"])
    assert g.evaluate({"x": 3.0}, ops=NUMPY_OPS) == -9.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("exp(log(x))", 2.5),
        ("sqrt(x^2)", 2.5),
        ("logaddexp(log(x), log(x))", math.log(5.0)),
        ("max(x, 3) + min(x, 3)", 5.5),
        ("sigmoid(0) + softplus(0)", 0.5 + math.log(2)),
        ("pi", math.pi),
    ],
)
def test_whitelisted_functions(text, expected):
    assert parse_formula(text, ["x"]).evaluate({"x": 2.5}, ops=NUMPY_OPS) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("N.__class__", "attribute access"),
        ("N.__class__.__bases__[0]", "indexing"),
        ("x[0]", "indexing"),
        ("open('f')", "unknown function 'open'"),
        ("__import__('os').system('ls')", "calling anything but a named function"),
        ("eval('1')", "unknown function 'eval'"),
        ("exp(x=1)", "keyword argument"),
        ("exp(*x)", "argument unpacking"),
        ("lambda: 1", "Lambda"),
        ("[x for x in y]", "ListComp"),
        ("x if y else z", "IfExp"),
        ("x < 1", "Compare"),
        ("x and y", "BoolOp"),
        ("'text'", "constant 'text'"),
        ("True", "constant True"),
        ("1j", "constant 1j"),
        ("x @ y", "MatMult"),
        ("x // 2", "FloorDiv"),
        ("x % 2", "Mod"),
        ("~x", "Invert"),
        ("y", "unknown name 'y'"),
        ("exp", "must be called"),
        ("exp(1, 2)", "takes 1 argument"),
        ("x = 1", "not valid arithmetic"),
        ("x; y", "not valid arithmetic"),
        ("", "empty"),
    ],
)
def test_refuses_anything_outside_the_whitelist(text, message):
    with pytest.raises(FormulaError, match="formula") as caught:
        parse_formula(text, names=["x"])
    assert message in str(caught.value)


def test_refuses_huge_and_deeply_nested_text():
    with pytest.raises(FormulaError, match="longer than"):
        parse_formula("x+" * 3000 + "x", names=["x"])
    with pytest.raises(FormulaError, match="nested"):
        parse_formula("(" * 1000 + "x" + ")" * 1000, names=["x"])


def test_parser_never_calls_eval(monkeypatch):
    import builtins

    def forbidden(*args, **kwargs):
        raise AssertionError("eval/exec must not be used")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    f = parse_formula("E + A / N^alpha", names=["E", "A", "N", "alpha"])
    assert f.evaluate({"E": 1.0, "A": 2.0, "N": 4.0, "alpha": 0.5}, ops=NUMPY_OPS) == 2.0


@pytest.mark.parametrize("law_name", sorted(bs.catalog()))
def test_log_space_evaluation_equals_log_of_value_for_every_catalog_law(law_name):
    law = bs.get_law(law_name)
    rng = np.random.default_rng(0)
    # half spread over eight decades, half near 1 (where penalty terms such as MIST's
    # (ff_ratio - ff_ratio_opt)^2 inside an exp do not overflow)
    values = {
        i.name: np.r_[10 ** rng.uniform(0, 8, size=25), rng.uniform(0.5, 2.0, size=25)]
        for i in law.inputs
    }
    values.update(
        {
            p.name: rng.uniform(0.05, 0.95 if p.support.kind == "unit" else 2.0, size=50)
            for p in law.parameters
        }
    )
    positive = [*law.input_names, *law.parameter_names]
    with np.errstate(over="ignore", under="ignore", divide="ignore"):
        direct = np.log(law.formula.evaluate(values, ops=NUMPY_OPS))
    stable = law.formula.evaluate_log(values, positive=positive, ops=NUMPY_OPS)
    assert np.all(np.isfinite(stable))
    # where the direct value over- or underflows, only the log-space value is usable (see the
    # next test); everywhere else the two agree
    usable = np.isfinite(direct)
    assert usable.sum() >= 5
    np.testing.assert_allclose(stable[usable], direct[usable], rtol=1e-10, atol=1e-12)


def test_log_space_evaluation_survives_where_direct_evaluation_overflows():
    f = parse_formula("A / N^alpha + E", names=["A", "N", "alpha", "E"])
    values = {"A": 1.0, "N": 1e-300, "alpha": 2.0, "E": 1.0}
    with np.errstate(over="ignore", divide="ignore"):
        assert np.isinf(f.evaluate(values, ops=NUMPY_OPS))
    log_value = f.evaluate_log(values, positive=["A", "N", "alpha", "E"], ops=NUMPY_OPS)
    assert log_value == pytest.approx(600 * math.log(10))


def test_log_evaluation_falls_back_for_differences_and_uses_given_logs():
    f = parse_formula("a - b", names=["a", "b"])
    assert f.evaluate_log(
        {"a": 3.0, "b": 1.0}, positive=["a", "b"], ops=NUMPY_OPS
    ) == pytest.approx(math.log(2.0))
    g = parse_formula("a * b", names=["a", "b"])
    # the log given for 'a' is used instead of log(value): here deliberately inconsistent
    assert (
        g.evaluate_log({"a": 1.0, "b": 1.0}, logs={"a": 5.0}, positive=["b"], ops=NUMPY_OPS) == 5.0
    )


def test_jax_and_numpy_evaluation_agree():
    f = parse_formula("L0 + (x0 / x)^k * exp(-x / 1e9)", names=["L0", "x0", "x", "k"])
    values = {"L0": 1.2, "x0": 1e5, "x": np.geomspace(1e6, 1e10, 7), "k": 0.3}
    jax_values = {k: jnp.asarray(v) for k, v in values.items()}
    np.testing.assert_allclose(
        np.asarray(f.evaluate(jax_values, ops=jax_ops())),
        f.evaluate(values, ops=NUMPY_OPS),
        rtol=1e-6,
    )


def test_constant_value():
    assert constant_value("log(500)") == pytest.approx(math.log(500))
    assert constant_value("-1e-3") == -1e-3
    with pytest.raises(FormulaError):
        constant_value("x + 1")
    with pytest.raises(FormulaError, match="finite"):
        constant_value("log(0)")


# ---------------------------------------------------------------------------- m4_logit
M4_POINTS = [(-3.0, 0.4), (2.0, 3.0), (-20.0, 5.0), (0.5, 0.05), (40.0, 0.01), (-60.0, 20.0)]


def m4_residual(t, r, alpha):
    """``log s - alpha log(1 - s) - r`` at ``s = sigmoid(t)``, computed without cancellation."""
    return t + (alpha - 1) * np.logaddexp(0, t) - r


@pytest.mark.parametrize(("r", "alpha"), M4_POINTS)
def test_m4_logit_solves_its_equation(r, alpha):
    """The root satisfies the equation to rounding (relative to the size of ``t``), and with
    ``alpha = 1`` the share is ``sigmoid(r)`` exactly."""
    from bayescale.formula import m4_logit

    t = float(m4_logit(r, alpha))
    assert abs(m4_residual(t, r, alpha)) <= 1e-12 * max(1.0, abs(t))
    assert float(m4_logit(r, 1.0)) == pytest.approx(r, rel=1e-14, abs=1e-14)


def test_m4_logit_in_jax_has_the_implicit_derivatives():
    """JAX's gradient and Hessian of the root equal the implicit function's, checked against
    central finite differences (step 1e-5, so agreement to about 1e-8 is what rounding allows),
    and its values equal NumPy's."""
    import jax

    from bayescale.formula import m4_logit

    ops = jax_ops()
    with jax.enable_x64(True):
        solve = lambda point: ops.m4_logit(point[0], point[1])  # noqa: E731
        for r, alpha in M4_POINTS[:4]:
            point = jnp.array([r, alpha])
            assert float(solve(point)) == pytest.approx(float(m4_logit(r, alpha)), rel=1e-12)
            gradient, hessian = jax.grad(solve)(point), jax.hessian(solve)(point)
            steps = 1e-5 * jnp.eye(2)
            finite = [(solve(point + e) - solve(point - e)) / 2e-5 for e in steps]
            finite_hessian = [
                (jax.grad(solve)(point + e) - jax.grad(solve)(point - e)) / 2e-5 for e in steps
            ]
            np.testing.assert_allclose(gradient, finite, rtol=1e-7, atol=1e-9)
            np.testing.assert_allclose(hessian, finite_hessian, rtol=1e-5, atol=1e-7)
            # implicit function theorem: dt/dr = 1 / g'(t), dt/dalpha = -softplus(t) / g'(t)
            t = float(solve(point))
            slope = 1 + (alpha - 1) / (1 + math.exp(-t))
            expected = [1 / slope, -float(np.logaddexp(0, t)) / slope]
            np.testing.assert_allclose(gradient, expected, rtol=1e-10)


def test_m4_logit_is_a_whitelisted_formula_function():
    f = parse_formula("sigmoid(m4_logit(r, alpha))", ["r", "alpha"])
    s = f.evaluate({"r": -3.0, "alpha": 0.4}, ops=NUMPY_OPS)
    assert math.log(s) - 0.4 * math.log(1 - s) == pytest.approx(-3.0, rel=1e-12)
    with pytest.raises(FormulaError, match="m4_logit"):
        parse_formula("m4_logit(r)", ["r"])
