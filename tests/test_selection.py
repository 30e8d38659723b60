"""Law selection: PSIS-LOO with stacking, stacked forecasts, and the adequacy flag.

Three fits of one simulated curve per scenario, shared by module-scoped fixtures:

* a well-specified curve (a power law with a floor, 1% log-normal noise), fitted with the right
  law and with a pure power law (no floor);
* a non-monotone curve (it falls, then rises again past 1e9), fitted with the same two laws,
  neither of which can turn back up.
"""

import warnings

import numpy as np
import pandas as pd
import pytest
from simulation import FAST

import bayescale as bs
from bayescale.errors import ConvergenceWarning, SettingsError
from bayescale.selection import (
    NoAdequateLawError,
    _allocate,
    check_law,
    select,
)

X = np.geomspace(1e6, 3e10, 20)

PURE_POWER = bs.Law.from_formula(
    "pure_power",
    "(x0 / x)^alpha",
    inputs=["x"],
    parameters={
        "x0": {
            "prior": "LogNormal(log(1e6), 10)",
            "reference": {"input": "x", "exponent": "alpha", "kind": "scale"},
        },
        "alpha": "LogNormal(log(0.3), 0.8)",
    },
)


def _runs(mean: np.ndarray, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x": X, "loss": mean * np.exp(rng.normal(0, 0.01, X.size))})


@pytest.fixture(scope="module")
def good_runs():
    return _runs(1.8 + (1e5 / X) ** 0.3, seed=21)


@pytest.fixture(scope="module")
def turning_runs():
    """Falls like a power law to a minimum near 1e8, then rises again by 0.5 (over-fitting, or a
    data pool that runs out)."""
    return _runs(1.8 + (1e5 / X) ** 0.3 + 0.3 * (X / 1e10) ** 0.5, seed=22)


def _fit(runs, law, seed, draws=FAST["draws"]):
    settings = {**FAST, "draws": draws}
    return bs.fit(runs, law, y="loss", seed=seed, target_accept=0.95, **settings)


@pytest.fixture(scope="module")
def good_selection(good_runs):
    fits = {
        "floor": _fit(good_runs, "power_law_floor", 1),
        "no floor": _fit(good_runs, PURE_POWER, 2),
    }
    return select(fits)


@pytest.fixture(scope="module")
def turning_selection(turning_runs):
    # A law that cannot follow the data has a harder posterior and may not pass the convergence
    # gates; the selection must flag it either way, so the warning is expected, not an error.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fits = {
            "floor": _fit(turning_runs, "power_law_floor", 3, draws=1000),
            "no floor": _fit(turning_runs, PURE_POWER, 4, draws=1000),
        }
    return select(fits)


def test_the_right_law_wins_and_describes_the_data(good_selection):
    table = good_selection.table
    assert good_selection.best == "floor"
    assert table.loc["floor", "weight"] > 0.9
    assert good_selection.weights.sum() == pytest.approx(1.0)
    check = good_selection.checks["floor"]
    assert check.adequate, check.problems
    assert check.trend_tau > 0.8  # the fitted law ranks a clean decreasing curve
    assert good_selection.adequate
    assert good_selection.warning() is None
    assert "best by PSIS-LOO: floor" in good_selection.summary()


def test_a_law_without_the_floor_is_flagged(good_selection):
    """A pure power law cannot flatten: its residuals run in long same-signed stretches."""
    check = good_selection.checks["no floor"]
    assert not check.adequate
    assert any("same-signed" in problem for problem in check.problems)


def test_non_monotone_data_are_flagged_instead_of_forecast(turning_selection):
    """Neither monotone law describes a curve that turns back up: the selection says so, and
    the stacked forecast is withheld unless forced."""
    assert not turning_selection.adequate
    for check in turning_selection.checks.values():
        assert any("same-signed" in problem for problem in check.problems), check.problems
    message = turning_selection.warning()
    assert message.startswith("NO CANDIDATE LAW DESCRIBES THESE DATA")
    assert "NO CANDIDATE" in turning_selection.summary()
    with pytest.raises(NoAdequateLawError, match="withheld"):
        turning_selection.forecast({"x": 1e11})
    forced = turning_selection.forecast({"x": 1e11}, force=True)
    assert forced.predictive.shape == (1, 4000, 1)


def test_stacked_forecast_mixes_candidates_by_weight(good_selection):
    at = {"x": [1e11, 1e12]}
    stacked = good_selection.forecast(at, seed=5)
    weights = good_selection.weights
    assert stacked.curve.shape == (1, 2000, 2)
    # every mixture draw is one candidate's draw, in proportion to the weights
    parts = {name: fit.forecast(at, seed=5) for name, fit in good_selection.fits.items()}
    pooled = {name: p.curve.reshape(-1, 2) for name, p in parts.items()}
    draws = stacked.curve[0]
    from_floor = np.isin(draws[:, 0], pooled["floor"][:, 0])
    from_plain = np.isin(draws[:, 0], pooled["no floor"][:, 0])
    assert np.all(from_floor | from_plain)
    assert from_floor.sum() == _allocate(weights[["floor", "no floor"]].to_numpy(), 2000)[0]
    table = stacked.table()
    assert {"median", "q05", "q95", "curve_median"} <= set(table.columns)


def test_allocate_splits_draws_by_largest_remainder():
    assert _allocate(np.array([0.5, 0.25, 0.25]), 10).tolist() == [5, 3, 2]
    assert _allocate(np.array([1.0, 0.0]), 7).tolist() == [7, 0]
    assert _allocate(np.array([0.333, 0.333, 0.334]), 1000).sum() == 1000


def test_check_law_reports_every_number(good_selection):
    check = check_law(good_selection.fits["floor"])
    assert check.name == "power_law_floor"
    assert check.n_runs == X.size
    assert 0 <= check.residual_p <= 1 and 0 <= check.loo_coverage <= 1
    payload = good_selection.to_dict()
    assert payload["best"] == "floor" and payload["adequate"] is True
    assert {c["name"] for c in payload["candidates"]} == {"floor", "no floor"}


def test_select_rejects_bad_candidates(good_selection, turning_selection):
    floor = good_selection.fits["floor"]
    with pytest.raises(SettingsError, match="at least two"):
        select({"only": floor})
    with pytest.raises(SettingsError, match="different runs"):
        select({"good": floor, "turning": turning_selection.fits["floor"]})
    with pytest.raises(SettingsError, match="same law"):
        select([floor, turning_selection.fits["floor"]])
    with pytest.raises(SettingsError, match="method"):
        select({"a": floor, "b": good_selection.fits["no floor"]}, method="best")


def test_reports_of_candidate_laws_include_the_selection(good_selection, turning_selection):
    """Several fits of the same runs: the report adds the PSIS-LOO table and, when no
    candidate describes the data, the warning."""
    from bayescale.report import build_report

    good = build_report(good_selection.fits, at={"x": 1e11})
    html = good.html()
    assert "Which law? (PSIS-LOO, stacking)" in html
    assert "Best by PSIS-LOO: floor" in html
    assert not good.warnings
    bad = build_report(turning_selection.fits, at={"x": 1e11})
    assert any(w.startswith("NO CANDIDATE LAW DESCRIBES THESE DATA") for w in bad.warnings)
    assert 'class="warning"' in bad.html()
