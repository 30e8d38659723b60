"""Point fits of a law: the optimisers behind the back-test's baselines and the leave-future-out
refits that calibrate a forecast's random-walk discrepancy.

``huber_fit`` is the multi-start L-BFGS fit of Hoffmann et al. (2022) and Besiroglu et al.
(2024): the Huber loss (delta = 1e-3) of log residuals summed over runs, each parameter on its
link (unconstrained) scale, the best of many starts drawn from the priors. ``curve_fit_point`` is
:func:`scipy.optimize.curve_fit` on the raw outcome, started at the prior medians, within the
parameters' supports.

Examples
--------
>>> import numpy as np
>>> from bayescale.formula import NUMPY_OPS
>>> from bayescale.laws import get_law
>>> from bayescale.pointfit import free_and_fixed, huber_fit, predict
>>> law = get_law("power_law_floor")
>>> free, fixed = free_and_fixed(law)
>>> x = np.geomspace(1e6, 1e9, 12)
>>> truth = {"L_inf": 1.5, "x0": 1e5, "alpha": 0.3}
>>> y = np.asarray(law.mean({"x": x}, truth, ops=NUMPY_OPS))
>>> best = huber_fit(law, free, fixed, {"x": x}, y, None, starts=8)
>>> bool(np.allclose(predict(law, free, fixed, best, {"x": x}), y, rtol=1e-3))
True
"""

from __future__ import annotations

import warnings

import numpy as np
from threadpoolctl import threadpool_limits

from bayescale.formula import NUMPY_OPS
from bayescale.laws import Law

HUBER_DELTA = 1e-3
"""Knee of the Huber loss of Hoffmann et al. (2022) and Besiroglu et al. (2024)."""


def free_and_fixed(law: Law, priors=None, inputs=None) -> tuple[list, dict[str, float]]:
    """The law's free parameters and the values of its fixed ones, under ``priors`` (a mapping
    of parameter name to :class:`~bayescale.priors.Prior`, such as a fit's ``spec.priors``).

    By default the law's own priors, with each anchor at the geometric mean of its input in
    ``inputs`` (the fitted runs' inputs), where :func:`bayescale.fit` anchors it.
    """
    own = priors is None
    priors = {p.name: p.prior for p in law.parameters} if own else priors
    free = [p for p in law.parameters if not priors[p.name].is_fixed]
    fixed = {p.name: priors[p.name].fixed_value for p in law.parameters if priors[p.name].is_fixed}
    if own and any(p.anchor is not None for p in law.parameters):
        if inputs is None:
            raise ValueError(f"law {law.name!r} has an anchor: give the fitted runs' inputs")
        fixed.update(law.anchor_values(inputs))
    return free, fixed


def predict(law, free, fixed, vector, inputs) -> np.ndarray:
    theta = {p.name: value for p, value in zip(free, vector, strict=True)}
    with np.errstate(all="ignore"):
        return np.asarray(law.mean(inputs, {**theta, **fixed}, ops=NUMPY_OPS), dtype=float)


def prior_median(parameter) -> float:
    prior = parameter.prior
    samples = np.asarray(prior.to_numpyro().sample(_jax_key(0), (2001,)), dtype=float)
    return float(np.median(samples))


def _jax_key(seed: int):
    import jax

    return jax.random.PRNGKey(seed)


def curve_fit_point(law, free, fixed, inputs, y, start):
    """scipy's curve_fit on the raw outcome, within the parameters' supports."""
    p0 = start if start is not None else np.array([prior_median(p) for p in free])
    lower = [p.support.low for p in free]
    upper = [p.support.high for p in free]
    p0 = np.clip(p0, np.nextafter(np.array(lower), np.inf), np.nextafter(np.array(upper), -np.inf))
    names = list(inputs)
    stacked = np.vstack([inputs[n] for n in names])

    def model(flat_x, *params):
        values = dict(zip(names, flat_x.reshape(len(names), -1), strict=True))
        return predict(law, free, fixed, np.array(params), values)

    import scipy.optimize  # imported where used: it adds about 0.1 s to ``import bayescale``

    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        warnings.simplefilter("ignore")
        params, _ = scipy.optimize.curve_fit(
            model, stacked.ravel(), y, p0=p0, bounds=(lower, upper), maxfev=20000
        )
    return params if np.all(np.isfinite(params)) else None


def huber_fit(law, free, fixed, inputs, y, start, starts: int = 64):
    """Multi-start L-BFGS on the summed Huber loss of log residuals (Hoffmann et al. 2022).

    Parameters
    ----------
    law : Law
    free : list of Parameter
        The parameters fitted (see :func:`free_and_fixed`).
    fixed : dict of str to float
        Values of the other parameters.
    inputs : mapping of str to array
        The law's inputs at each run.
    y : array
        The outcome at each run (positive).
    start : array, optional
        One starting point (values of ``free``); without it, ``starts`` draws from the priors.
    starts : int

    Returns
    -------
    array or None
        The best values of ``free``, or ``None`` when no start reached a finite loss.

    Notes
    -----
    The optimisation runs with one BLAS thread: L-BFGS-B makes many tiny BLAS calls, and with
    BLAS threads spinning next to JAX's on 2 cores they were 15x slower (measured on the
    learning-curve benchmark's curves; the same cause as in :mod:`bayescale.inference`).
    """
    links = [p.support for p in free]

    def unpack(z):
        return np.array([s.inverse_link(v, NUMPY_OPS) for s, v in zip(links, z, strict=True)])

    def objective(z):
        with np.errstate(all="ignore"):
            prediction = predict(law, free, fixed, unpack(z), inputs)
            residual = np.log(prediction) - np.log(y)
        if not np.all(np.isfinite(residual)):
            return 1e30
        absolute = np.abs(residual)
        return float(
            np.sum(
                np.where(
                    absolute <= HUBER_DELTA,
                    0.5 * residual**2,
                    HUBER_DELTA * (absolute - 0.5 * HUBER_DELTA),
                )
            )
        )

    if start is not None:
        candidates = [np.array([s.link(v, NUMPY_OPS) for s, v in zip(links, start, strict=True)])]
    else:
        draws = np.column_stack(
            [
                np.asarray(p.prior.to_numpyro().sample(_jax_key(i + 1), (starts,)), dtype=float)
                for i, p in enumerate(free)
            ]
        )
        candidates = [
            np.array([s.link(v, NUMPY_OPS) for s, v in zip(links, row, strict=True)])
            for row in draws
        ]
    import scipy.optimize

    best, best_value = None, np.inf
    with threadpool_limits(limits=1, user_api="blas"):
        for z0 in candidates:
            if not np.all(np.isfinite(z0)):
                continue
            result = scipy.optimize.minimize(objective, z0, method="L-BFGS-B")
            if result.fun < best_value:
                best, best_value = result.x, result.fun
    return None if best is None or best_value >= 1e30 else unpack(best)
