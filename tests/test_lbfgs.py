"""The compiled L-BFGS of the multi-start optimisation (bayescale.lbfgs)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
from jax.experimental import io_callback

from bayescale import lbfgs


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


def rosenbrock(x):
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def ill_conditioned_quadratic(x):
    """Curvatures from 1 to 1e6 along rotated axes: the case a quasi-Newton method is for."""
    n = x.shape[0]
    rotation, _ = jnp.linalg.qr(jax.random.normal(jax.random.PRNGKey(0), (n, n)))
    curvature = jnp.logspace(0, 6, n)
    u = rotation.T @ (x - 1.0)
    return 0.5 * jnp.sum(curvature * u**2)


@pytest.mark.parametrize(
    ("objective", "start"),
    [
        (rosenbrock, [-1.2, 1.0, -0.5, 0.3, 2.0]),
        (ill_conditioned_quadratic, [3.0, -2.0, 0.0, 5.0, 1.0, -4.0, 2.0, 0.5]),
    ],
)
def test_reaches_the_minimum_scipy_reaches(objective, start):
    start = jnp.asarray(start)
    result = jax.jit(lambda x: lbfgs.minimize(jax.value_and_grad(objective), x))(start)
    reference = scipy.optimize.minimize(
        lambda x: tuple(np.asarray(v) for v in jax.value_and_grad(objective)(jnp.asarray(x))),
        np.asarray(start),
        jac=True,
        method="L-BFGS-B",
    )
    assert int(result.status) == lbfgs.CONVERGED
    # Both minima are 1 in every coordinate, with value 0. The two methods stop on the same
    # rules, at other points of the last, flat stretch: SciPy at distances 1.7e-6 and 2.2e-5
    # with values 4e-12 and 1.5e-9 (67 and 120 evaluations), this L-BFGS compiled at 1.7e-6
    # and 2.0e-4 with values 1e-10 and 2.6e-7 (72 and 183 evaluations): near a minimum of 0,
    # SciPy's relative-reduction rule stops once an iteration gains less than 2.2e-9.
    for x, value in ((result.x, result.value), (reference.x, reference.fun)):
        assert np.max(np.abs(np.asarray(x) - 1.0)) < 1e-3
        assert float(value) < 1e-6


def test_a_step_out_of_the_domain_is_shortened():
    # x - log(x) has its minimum at x = 1; from x = 50 the first quasi-Newton steps overshoot
    # into x <= 0, where the objective is not finite
    def objective(x):
        return jnp.sum(jnp.where(x > 0, x - jnp.log(x), jnp.inf))

    result = lbfgs.minimize(jax.value_and_grad(objective), jnp.array([50.0, 0.01]))
    assert int(result.status) == lbfgs.CONVERGED
    np.testing.assert_allclose(result.x, [1.0, 1.0], atol=1e-4)


def test_evaluations_count_every_call_of_the_objective():
    calls = []

    def counted(x):
        io_callback(lambda: calls.append(1), None, ordered=True)
        return jax.value_and_grad(rosenbrock)(x)

    result = lbfgs.minimize(counted, jnp.array([-1.2, 1.0]))
    jax.effects_barrier()
    assert int(result.evaluations) == len(calls) > int(result.iterations) > 10


def test_statuses_of_a_start_at_the_minimum_a_non_finite_start_and_too_few_iterations():
    value_and_grad = jax.value_and_grad(rosenbrock)
    at_minimum = lbfgs.minimize(value_and_grad, jnp.ones(3))
    assert (int(at_minimum.status), int(at_minimum.iterations)) == (lbfgs.CONVERGED, 0)

    def nowhere_finite(x):
        return jnp.inf * jnp.sum(x), jnp.zeros_like(x)

    outside = lbfgs.minimize(nowhere_finite, jnp.ones(2))
    assert (int(outside.status), int(outside.iterations)) == (lbfgs.NOT_FINITE, 0)

    short = lbfgs.minimize(value_and_grad, jnp.array([-1.2, 1.0]), max_iterations=3)
    assert (int(short.status), int(short.iterations)) == (lbfgs.MAX_ITERATIONS_REACHED, 3)
    assert float(short.value) < float(rosenbrock(jnp.array([-1.2, 1.0])))


def test_each_start_gets_the_result_it_gets_alone():
    starts = jnp.array([[-1.2, 1.0], [2.0, 2.0], [0.0, 0.0]])
    value_and_grad = jax.value_and_grad(rosenbrock)
    together = jax.jit(lambda s: lbfgs.minimize_each(value_and_grad, s))(starts)
    for i, start in enumerate(starts):
        alone = lbfgs.minimize(value_and_grad, start)
        np.testing.assert_allclose(together.x[i], alone.x, rtol=1e-12)
        assert int(together.evaluations[i]) == int(alone.evaluations)
