"""bayescale.convergence computes ArviZ's rank-normalised R-hat and bulk/tail ESS.

ArviZ (arviz_stats) is the reference: every case compares each quantity's value with ArviZ's on
the same draws. The tolerance, 1e-9 relative, is far above the rounding differences of the
vectorised sums (below 2e-15 measured) and far below any difference that matters: a wrong
truncation of the autocorrelation sum or a wrong tie rank moves ESS by more than 1e-4.
"""

from __future__ import annotations

import arviz_stats
import numpy as np
import pytest
import xarray as xr
from arviz_base import rc_context

from bayescale.convergence import BLOCK, rank_diagnostics

RTOL = 1e-9


def _autoregressive(rng, shape, phi):
    """Chains of a stationary AR(1) process with unit variance and lag-1 correlation ``phi``."""
    x = rng.normal(size=shape)
    for t in range(1, shape[1]):
        x[:, t] = phi * x[:, t - 1] + np.sqrt(1 - phi**2) * x[:, t]
    return x


def _posterior(chains: int, draws: int, seed: int = 0) -> xr.Dataset:
    """Quantities that take every path: slow and fast mixing, negative autocorrelation, ties,
    a constant, chains at different levels, a NaN draw, and a 2-d variable with coords."""
    rng = np.random.default_rng(seed)
    parts = {
        "slow": _autoregressive(rng, (chains, draws, 5), 0.95),
        "antithetic": _autoregressive(rng, (chains, draws), -0.7),
        "rounded": np.round(_autoregressive(rng, (chains, draws, 2), 0.5), 1),
        "constant": np.full((chains, draws), 2.5),
        "shifted": rng.exponential(size=(chains, draws, 3))
        + 0.5 * np.arange(chains)[:, None, None],
        "sticky": _autoregressive(rng, (chains, draws), 0.999),
        "grid": rng.normal(size=(chains, draws, 2, 3)),
    }
    parts["with_nan"] = parts["antithetic"].copy()
    parts["with_nan"][0, 0] = np.nan
    data = {}
    for name, value in parts.items():
        dims = ("chain", "draw") + tuple(f"{name}_{i}" for i in range(value.ndim - 2))
        data[name] = (dims, value)
    return xr.Dataset(data, coords={"grid_0": ["a", "b"], "grid_1": [10, 20, 30]})


def _arviz(posterior: xr.Dataset, tail_prob=None) -> dict:
    with np.errstate(all="ignore"):
        return {
            "r_hat": arviz_stats.rhat(posterior) if posterior.sizes["chain"] > 1 else None,
            "ess_bulk": arviz_stats.ess(posterior, method="bulk"),
            "ess_tail": arviz_stats.ess(posterior, method="tail", prob=tail_prob),
        }


def _assert_equal_to_arviz(ours: dict, reference: dict) -> None:
    assert ours.keys() == reference.keys()
    for key, expected in reference.items():
        if expected is None:
            assert ours[key] is None
            continue
        for name, values in expected.data_vars.items():
            got = ours[key][name]
            assert got.dims == values.dims, (key, name)
            for dim in values.coords:
                np.testing.assert_array_equal(got[dim].values, values[dim].values)
            np.testing.assert_allclose(
                got.values, values.values, rtol=RTOL, err_msg=f"{key} {name}"
            )


@pytest.mark.parametrize(
    ("chains", "draws"),
    [(4, 1000), (4, 101), (1, 200), (3, 5), (2, 7), (4, 4), (2, 3)],
)
def test_every_quantity_matches_arviz(chains, draws):
    posterior = _posterior(chains, draws)
    _assert_equal_to_arviz(rank_diagnostics(posterior), _arviz(posterior))


def test_the_paths_tested_are_taken():
    """The cases above really hit ties, a constant, NaN and the length limit of Geyer's
    sequence; otherwise agreement with ArviZ there would prove nothing."""
    posterior = _posterior(4, 1000)
    reference = _arviz(posterior)
    assert np.isnan(reference["ess_bulk"]["with_nan"])
    assert float(reference["ess_bulk"]["constant"]) == 4000  # ArviZ's value for a constant
    rounded = posterior["rounded"].values
    assert np.unique(rounded[..., 0]).size < rounded[..., 0].size / 10  # mostly ties
    # the slow quantity's autocorrelation sum runs far; the antithetic one stops at once
    assert float(reference["ess_bulk"]["antithetic"]) > 4000
    assert (reference["ess_bulk"]["slow"] < 400).all()


def test_many_quantities_in_several_blocks_match_arviz():
    rng = np.random.default_rng(3)
    values = _autoregressive(rng, (4, 300, 2 * BLOCK + 7), 0.8)
    posterior = xr.Dataset({"theta": (("chain", "draw", "group"), values)})
    _assert_equal_to_arviz(rank_diagnostics(posterior), _arviz(posterior))


def test_the_tail_follows_the_probability_given_or_arviz_setting():
    posterior = _posterior(4, 500, seed=1)
    _assert_equal_to_arviz(rank_diagnostics(posterior, tail_prob=0.9), _arviz(posterior, 0.9))
    with rc_context({"stats.ci_prob": 0.8}):
        ours, reference = rank_diagnostics(posterior), _arviz(posterior)
    _assert_equal_to_arviz(ours, reference)
    default = rank_diagnostics(posterior)["ess_tail"]["slow"].values
    assert not np.allclose(ours["ess_tail"]["slow"].values, default)


def test_a_fit_reports_arviz_diagnostics(chinchilla_sim_fit):
    posterior = chinchilla_sim_fit.datatree["posterior"].to_dataset()
    reference = _arviz(posterior)
    summary = chinchilla_sim_fit.summary()
    for name in posterior.data_vars:
        if posterior[name].ndim == 2:
            assert summary.loc[name, "r_hat"] == pytest.approx(float(reference["r_hat"][name]))
            assert summary.loc[name, "ess_tail"] == pytest.approx(
                float(reference["ess_tail"][name])
            )
    diagnostics = chinchilla_sim_fit.diagnostics
    assert diagnostics.min_ess_bulk == pytest.approx(
        min(float(v.min()) for v in reference["ess_bulk"].data_vars.values())
    )
    assert diagnostics.max_r_hat == pytest.approx(
        max(float(v.max()) for v in reference["r_hat"].data_vars.values())
    )
