"""L-BFGS in JAX: a minimiser that runs inside one compiled program.

:func:`bayescale.fit` optimises the log posterior from many random starts before sampling
(:func:`~bayescale.inference.multistart_init`). With SciPy's L-BFGS-B every objective call is a
separate call of a compiled JAX program from Python, and SciPy's own bookkeeping comes with
it: about 300 us per evaluation on benchmark (b), where the same value and gradient inside a
compiled loop costs 20 to 40 us. Here the whole minimisation, line search included, is one
``jax.lax.while_loop``, and :func:`minimize_each` runs it for every start in one program.

The method is limited-memory BFGS (Nocedal & Wright, *Numerical Optimization*, 2nd ed., 2006,
Algorithm 7.4, the two-loop recursion, with the initial scaling of eq. 7.20), with a
backtracking line search for the Armijo condition (ibid., Algorithm 3.1; step halved, at most
:data:`MAX_BACKTRACKS` times). A pair ``(s, y)`` enters the memory only when its curvature
``s.y`` is positive (beyond rounding), as in L-BFGS-B, so the update stays positive definite
without a Wolfe line search. The stopping rules are SciPy's L-BFGS-B defaults, so that both stop
at the same kind of point: the relative reduction of the objective in an iteration at most
``ftol`` (``factr * eps`` = 2.2e-9), or the largest gradient component at most ``gtol`` (1e-5).
A non-finite objective or gradient counts as no decrease, so a step that leaves the support is
shortened.

Examples
--------
>>> import jax, jax.numpy as jnp
>>> def rosenbrock(x):
...     return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
>>> with jax.enable_x64(True):
...     result = minimize(jax.value_and_grad(rosenbrock), jnp.array([-1.2, 1.0, -0.5]))
...     print(jnp.round(result.x, 4).tolist(), bool(result.converged))
[1.0, 1.0, 1.0] True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

MEMORY = 10
"""Correction pairs kept (SciPy's L-BFGS-B default)."""
MAX_ITERATIONS = 5000
"""Iterations before a start gives up (what :func:`~bayescale.inference.multistart_init` gave
SciPy)."""
MAX_BACKTRACKS = 40
"""Halvings of the step before the line search gives up (a step of ``2**-40`` of the first is
rounding, not progress)."""
FTOL = 2.220446049250313e-09
"""Stop when an iteration reduces the objective by at most this, relative (SciPy's
``factr * eps`` with ``factr = 1e7``)."""
GTOL = 1e-5
"""Stop when no gradient component exceeds this (SciPy's ``pgtol``)."""
ARMIJO = 1e-4
"""Sufficient decrease: a step ``t`` along ``d`` is taken when the objective falls by at least
``ARMIJO * t * |g.d|``."""

CONVERGED, MAX_ITERATIONS_REACHED, LINE_SEARCH_FAILED, NOT_FINITE = 0, 1, 2, 3
"""Values of :attr:`Result.status`: a stopping rule held; the iterations ran out; no step along
the last direction decreased the objective; the objective was not finite at the start."""


class Result(NamedTuple):
    """Where one minimisation ended."""

    x: jax.Array
    value: jax.Array
    grad: jax.Array
    iterations: jax.Array
    evaluations: jax.Array
    """Calls of the objective (value and gradient together), the start's included."""
    status: jax.Array
    """:data:`CONVERGED`, :data:`MAX_ITERATIONS_REACHED`, :data:`LINE_SEARCH_FAILED` or
    :data:`NOT_FINITE`."""

    @property
    def converged(self) -> jax.Array:
        return self.status == CONVERGED


class _State(NamedTuple):
    x: jax.Array  # the last accepted point (the start until the first evaluation accepts it)
    value: jax.Array
    grad: jax.Array
    s: jax.Array  # (memory, n), the newest pair at index (pairs - 1) % memory
    y: jax.Array
    pairs: jax.Array  # pairs stored so far (the memory holds min(pairs, memory))
    direction: jax.Array
    step: jax.Array  # the next evaluation is at x + step * direction
    slope: jax.Array  # grad . direction
    halvings: jax.Array  # of the step, in the current line search
    started: jax.Array  # whether x has been evaluated (and found finite)
    iterations: jax.Array
    evaluations: jax.Array
    status: jax.Array
    done: jax.Array


def minimize(
    value_and_grad: Callable[[jax.Array], tuple[jax.Array, jax.Array]],
    x0: jax.Array,
    *,
    memory: int = MEMORY,
    max_iterations: int = MAX_ITERATIONS,
) -> Result:
    """Minimise a function from ``x0`` with L-BFGS; traceable (runs under ``jit`` and ``vmap``).

    Each pass of the loop evaluates the objective once: at the start, at a new trial step of
    the line search, or at half the last one. So the compiled program holds one copy of
    ``value_and_grad`` (with a separate evaluation of the start and of the line search's first
    trial, it held three and compiled about three times as long).

    Parameters
    ----------
    value_and_grad : callable
        ``x -> (value, gradient)`` of the objective, for instance ``jax.value_and_grad(f)``.
        Non-finite values mark points outside the domain.
    x0 : array
        The start, a flat vector.
    memory, max_iterations : int
        Correction pairs kept, and iterations (accepted steps) before giving up.
    """
    n = x0.shape[0]
    zero = jnp.zeros((), x0.dtype)
    state = _State(
        x=x0,
        value=jnp.asarray(jnp.inf, x0.dtype),
        grad=jnp.zeros_like(x0),
        s=jnp.zeros((memory, n), x0.dtype),
        y=jnp.zeros((memory, n), x0.dtype),
        pairs=jnp.asarray(0),
        direction=jnp.zeros_like(x0),
        step=zero,
        slope=zero,
        halvings=jnp.asarray(0),
        started=jnp.asarray(False),
        iterations=jnp.asarray(0),
        evaluations=jnp.asarray(0),
        status=jnp.asarray(MAX_ITERATIONS_REACHED),
        done=jnp.asarray(False),
    )

    def evaluate(state: _State) -> _State:
        candidate = state.x + state.step * state.direction
        value, grad = value_and_grad(candidate)
        # Armijo; the first evaluation (at the start, value inf) is taken if it is finite
        accepted = _finite(value, grad) & (value <= state.value + ARMIJO * state.step * state.slope)
        # an accepted step: store the pair (s, y) if its curvature is positive
        s, y = candidate - state.x, grad - state.grad
        keep = accepted & (jnp.dot(s, y) > jnp.finfo(x0.dtype).eps * jnp.dot(y, y))
        slot = state.pairs % memory
        pairs = state.pairs + keep
        memory_s = jnp.where(keep, state.s.at[slot].set(s), state.s)
        memory_y = jnp.where(keep, state.y.at[slot].set(y), state.y)
        direction, slope, step = _next_step(grad, memory_s, memory_y, pairs, memory)
        scale = jnp.maximum(jnp.maximum(jnp.abs(state.value), jnp.abs(value)), 1.0)
        stalled = state.started & (state.value - value <= FTOL * scale)
        iterations = state.iterations + (accepted & state.started)
        converged = stalled | _small_gradient(grad)
        halvings = jnp.where(accepted, 0, state.halvings + state.started)
        not_finite = ~accepted & ~state.started
        failed = halvings >= MAX_BACKTRACKS
        out_of_iterations = iterations >= max_iterations
        return _State(
            x=jnp.where(accepted, candidate, state.x),
            value=jnp.where(accepted, value, state.value),
            grad=jnp.where(accepted, grad, state.grad),
            s=memory_s,
            y=memory_y,
            pairs=pairs,
            direction=jnp.where(accepted, direction, state.direction),
            step=jnp.where(accepted, step, 0.5 * state.step),
            slope=jnp.where(accepted, slope, state.slope),
            halvings=halvings,
            started=state.started | accepted,
            iterations=iterations,
            evaluations=state.evaluations + 1,
            status=jnp.select(
                [not_finite, accepted & converged, failed],
                [NOT_FINITE, CONVERGED, LINE_SEARCH_FAILED],
                MAX_ITERATIONS_REACHED,
            ),
            done=not_finite | (accepted & (converged | out_of_iterations)) | failed,
        )

    final = jax.lax.while_loop(lambda state: ~state.done, evaluate, state)
    return Result(
        final.x, final.value, final.grad, final.iterations, final.evaluations, final.status
    )


def minimize_each(
    value_and_grad: Callable[[jax.Array], tuple[jax.Array, jax.Array]],
    starts: jax.Array,
    **options,
) -> Result:
    """:func:`minimize` from each row of ``starts`` ``(starts, n)``, one after the other inside
    one program (``jax.lax.map``: a start that stops early costs no more iterations, as it would
    in lockstep under ``vmap``). Fields of the result have a leading axis over the starts."""
    return jax.lax.map(lambda x0: minimize(value_and_grad, x0, **options), starts)


def _finite(value, grad) -> jax.Array:
    return jnp.isfinite(value) & jnp.all(jnp.isfinite(grad))


def _small_gradient(grad) -> jax.Array:
    return jnp.max(jnp.abs(grad)) <= GTOL


def _next_step(grad, s, y, pairs, memory: int):
    """The direction ``-H g`` of the stored pairs, its slope ``g.d``, and the first trial step:
    1, or ``1 / |d|`` (as L-BFGS-B takes) before any pair is stored. Where rounding makes the
    direction point uphill, steepest descent instead."""
    direction = _direction(grad, s, y, pairs, memory)
    slope = jnp.dot(grad, direction)
    uphill = ~(slope < 0)
    direction = jnp.where(uphill, -grad, direction)
    slope = jnp.where(uphill, -jnp.dot(grad, grad), slope)
    first = (pairs == 0) | uphill
    step = jnp.where(first, 1.0 / jnp.maximum(jnp.linalg.norm(direction), 1e-300), 1.0)
    return direction, slope, step


def _direction(grad, s, y, pairs, memory: int) -> jax.Array:
    """``-H g`` by the two-loop recursion over the stored pairs, newest first (Nocedal &
    Wright, Algorithm 7.4); the initial matrix ``(s.y / y.y) I`` of the newest pair (eq. 7.20),
    the identity before any pair is stored."""
    stored = jnp.minimum(pairs, memory)
    # Pair positions from the newest to the oldest; slots past ``stored`` are masked out.
    order = (pairs - 1 - jnp.arange(memory)) % memory
    used = jnp.arange(memory) < stored
    s, y = s[order], y[order]
    rho = jnp.where(used, 1.0 / jnp.where(used, jnp.sum(s * y, axis=1), 1.0), 0.0)

    def newest_first(q, pair):
        s_i, y_i, rho_i = pair
        alpha = rho_i * jnp.dot(s_i, q)
        return q - alpha * y_i, alpha

    q, alphas = jax.lax.scan(newest_first, grad, (s, y, rho))
    gamma = jnp.where(stored > 0, jnp.dot(s[0], y[0]) / jnp.dot(y[0], y[0]), 1.0)
    r = gamma * q

    def oldest_first(r, pair):
        s_i, y_i, rho_i, alpha_i = pair
        beta = rho_i * jnp.dot(y_i, r)
        return r + s_i * (alpha_i - beta), None

    r, _ = jax.lax.scan(oldest_first, r, (s, y, rho, alphas), reverse=True)
    return -r
