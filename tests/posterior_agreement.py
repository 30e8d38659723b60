"""Test helper: do two fits describe the same posterior, within Monte Carlo error?"""

from __future__ import annotations

import arviz_stats
import numpy as np

import bayescale as bs


def assert_same_posterior(first: bs.Fit, second: bs.Fit, k: float = 4.0) -> None:
    """Posterior means and sds of every variable agree within ``k`` Monte Carlo standard errors.

    For two independent MCMC runs targeting the same posterior, the difference of their estimates
    of a mean (or sd) is approximately normal with standard deviation
    ``sqrt(mcse_1^2 + mcse_2^2)``, where each MCSE is ArviZ's ESS-based estimate. ``k = 4``
    makes a false alarm about 6e-5 per comparison (the few hundred comparisons of the tests stay
    below 2% in total, and the seeds are fixed, so a pass is reproducible), while a real error of
    the size of a tenth of a posterior sd is detected (with ESS near 1000 a mean's MCSE is about
    0.03 sd). Positive parameters are compared on the log scale, where their posteriors are
    nearly normal and the MCSE (a normal approximation) is trustworthy.
    """
    a = _comparable(first)
    b = _comparable(second)
    assert set(a.data_vars) == set(b.data_vars)
    for method in ("mean", "sd"):
        stat_a = getattr(a, "mean" if method == "mean" else "std")(dim=("chain", "draw"))
        stat_b = getattr(b, "mean" if method == "mean" else "std")(dim=("chain", "draw"))
        mcse_a = arviz_stats.mcse(a, method=method)
        mcse_b = arviz_stats.mcse(b, method=method)
        for name in a.data_vars:
            gap = np.abs(stat_a[name].values - stat_b[name].values)
            bound = k * np.sqrt(mcse_a[name].values ** 2 + mcse_b[name].values ** 2)
            assert np.all(gap <= bound), (
                f"{method} of {name}: {stat_a[name].values} vs {stat_b[name].values}, "
                f"gap {gap} > {k} MCSE = {bound}"
            )


def _comparable(fit: bs.Fit):
    posterior = fit.datatree["posterior"].to_dataset()
    for name in list(posterior.data_vars):
        if np.all(posterior[name].values > 0):
            posterior[name] = np.log(posterior[name])
    return posterior
