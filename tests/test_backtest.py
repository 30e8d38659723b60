"""The back-testing harness: splits, scores, baselines and one end-to-end run."""

import math

import numpy as np
import pandas as pd
import pytest
from simulation import FAST, simulate

import bayescale as bs
from bayescale.backtest import MethodForecast, backtest, score, split_runs


def test_splits():
    frame = pd.DataFrame({"x": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], "flag": [1] * 7 + [0] * 3})
    assert split_runs(frame, "x", cut=4).train.tolist() == [0, 1, 2, 3]
    assert split_runs(frame, "x", fraction=0.2).train.tolist() == [0, 1]
    assert split_runs(frame, "x", fraction=0.55).test.tolist() == [6, 7, 8, 9]
    assert split_runs(frame, "x", train_flag="flag").test.tolist() == [7, 8, 9]
    with pytest.raises(bs.SettingsError, match="exactly one"):
        split_runs(frame, "x", cut=4, fraction=0.5)
    with pytest.raises(bs.SettingsError, match="no held-out runs"):
        split_runs(frame, "x", cut=100)


def test_scores_by_hand():
    observed = np.array([1.0, 2.0, 4.0])
    rng = np.random.default_rng(0)
    # predictive draws centred on the truth with a known spread: every interval is calibrated
    draws = observed * np.exp(rng.normal(0, 0.1, size=(200000, 3)))
    forecast = MethodForecast("m", observed * np.exp(0.1), draws, np.array([-1.0, -2.0, -3.0]))
    scores = score(forecast, observed)
    assert scores["rmsle"] == pytest.approx(0.1)
    assert scores["relative_error"] == pytest.approx(math.exp(0.1) - 1)
    assert scores["mlpd"] == pytest.approx(-2.0)
    # three points: coverage is 0, 1/3, 2/3 or 1; the truth sits at the median of its draws
    assert scores["coverage_50"] == 1.0 and scores["coverage_95"] == 1.0
    assert scores["msce"] == pytest.approx(
        np.mean([(1 - q) ** 2 for q in np.arange(0.1, 0.91, 0.1)])
    )
    failed = score(MethodForecast("f", np.full(3, np.nan), note="diverged"), observed)
    assert math.isnan(failed["rmsle"]) and failed["note"] == "diverged"


def test_backtest_end_to_end():
    frame = simulate(
        "power_law_floor",
        {"x": np.geomspace(1e5, 1e10, 16)},
        {"L_inf": 1.7, "x0": 1e5, "alpha": 0.3},
        0.01,
        seed=4,
    )
    result = backtest(
        frame,
        "power_law_floor",
        y="loss",
        axis="x",
        fraction=0.6,
        bootstrap=50,
        fit_options={**FAST, "draws": 1000},
    )
    metrics = result.metrics
    assert list(metrics.index) == ["bayescale", "curve_fit", "huber", "last_value"]
    assert result.split.test.size == 6
    # data simulated from the law with 1% noise: a correct fit forecasts within a few percent
    assert metrics.loc["bayescale", "rmsle"] < 0.05
    assert metrics.loc["bayescale", "rmsle"] < metrics.loc["last_value", "rmsle"]
    assert np.isfinite(metrics.loc["bayescale", "mlpd"])
    assert set(result.forecasts["method"]) == set(metrics.index)


def test_backtest_of_many_curves_with_law_selection():
    """Three simulated power-law-with-floor curves (1% noise), two domains, the last 30% of each
    held out; the two candidates are fitted in batches and stacked per curve. With the right law
    among the candidates and 1% noise, the stacked median is within a few percent of the truth."""
    from bayescale.backtest import backtest_curves

    frames = []
    for i, (domain, floor) in enumerate([("a", 1.5), ("a", 1.8), ("b", 2.0)]):
        x = np.geomspace(1e6, 1e10, 14)
        truth = {"L_inf": floor, "x0": 1e5, "alpha": 0.3}
        frame = simulate("power_law_floor", {"x": x}, truth, 0.01, seed=80 + i)
        frame["curve"], frame["domain"] = f"c{i}", domain
        frames.append(frame)
    frame = pd.concat(frames, ignore_index=True)
    result = backtest_curves(
        frame,
        ["power_law_floor", "loglogistic_curve"],
        by="curve",
        y="loss",
        axis="x",
        group="domain",
        fraction=0.7,
        bootstrap=10,
        fit_options={**FAST, "draws": 300, "warmup": 300},
    )
    scores = result.scores
    assert len(scores) == 3 * 4  # curves x (bayescale and three baselines)
    bayes = scores[scores["method"] == "bayescale"].set_index("curve")
    assert set(bayes["law"]) <= {"power_law_floor", "loglogistic_curve"}
    assert bayes["held_out"].tolist() == [4, 4, 4]  # ceil(0.7 * 14) = 10 points train
    assert (bayes["relative_error"] < 0.05).all(), bayes["relative_error"]
    assert np.isfinite(bayes["mlpd"]).all()
    table = result.table()
    assert set(table.index.get_level_values("group")) == {"a", "b"}
    assert table.loc[("a", "bayescale"), "curves"] == 2
    assert table.loc[("a", "bayescale"), "points"] == 8
    inside = result.points.query("method == 'bayescale' and group == 'a'")["in_90"].mean()
    assert table.loc[("a", "bayescale"), "coverage_90"] == pytest.approx(inside)
    with pytest.raises(bs.SettingsError, match="one input"):
        backtest_curves(frame, ["chinchilla"], by="curve", y="loss", axis="x", fraction=0.5)


def test_point_fits_anchor_a_law_where_bayescale_fit_does():
    """The baselines' point fits of an anchored law fix its anchor at the geometric mean of the
    fitted runs, as bayescale.fit does (the bootstrap refits reuse the same fixed values)."""
    from bayescale.backtest import point_fit_forecast
    from bayescale.pointfit import free_and_fixed

    law = bs.get_law("anchored_power_law")
    x = np.geomspace(1e6, 1e10, 14)
    truth = {"L_ref": 2.5, "F": 0.6, "slope": 0.08, "x_ref": 1e8}
    y = simulate("anchored_power_law", {"x": x}, truth, 0.01, seed=5)["loss"].to_numpy()
    free, fixed = free_and_fixed(law, inputs={"x": x[:10]})
    assert [p.name for p in free] == ["L_ref", "F", "slope"]
    assert fixed == {"x_ref": pytest.approx(10 ** (6 + 4 * 9 / 13 / 2), rel=1e-12)}
    with pytest.raises(ValueError, match="has an anchor"):
        free_and_fixed(law)
    rng = np.random.default_rng(0)
    forecast = point_fit_forecast(
        "huber", law, {"x": x[:10]}, y[:10], {"x": x[10:]}, y[10:], 20, rng
    )
    # 1% noise, the right law: the forecast four steps beyond the fitted runs is within 3%
    np.testing.assert_allclose(forecast.median, y[10:], rtol=0.03)
