"""Comparison along a scale axis and crossover detection.

The fast tests check the crossing arithmetic on hand-made draws and the calibration of the whole
comparison path on exact (conjugate) posteriors; the slower ones use three NUTS fits shared
with the report tests (tests/decision_fits.py).
"""

import json

import numpy as np
import pandas as pd
import pytest
from decision_fits import CROSSING, fit

from bayescale.cli import main
from bayescale.compare import (
    Axis,
    Comparison,
    compare,
    compare_groups,
    find_crossings,
    parse_target,
    probability_text,
)
from bayescale.errors import DataError, SettingsError


# ---------------------------------------------------------------------------- arithmetic
def test_a_single_crossing_is_located_by_log_interpolation():
    grid = np.geomspace(1.0, 1e4, 5)  # 1, 10, 100, 1000, 1e4
    log_grid = np.log(grid)
    # advantage linear in log x with its root at x = 10^1.5: exact under log interpolation
    advantage = (np.log(10**1.5) - log_grid)[None, :]
    counts, first, before, every = find_crossings(grid, advantage)
    assert counts.tolist() == [1]
    assert first[0] == pytest.approx(10**1.5, rel=1e-12)
    assert before.tolist() == [True]  # A ahead before the crossing: B overtakes
    assert every == pytest.approx([10**1.5])


def test_several_crossings_are_counted_and_the_first_is_reported():
    grid = np.geomspace(1.0, 1e5, 6)
    advantage = np.array(
        [
            [-1.0, 1.0, 1.0, -1.0, -1.0, 1.0],  # three crossings, A overtakes first
            [1.0, 1.0, 1.0, 1.0, 1.0, 1.0],  # none
            [2.0, 1.0, -1.0, -2.0, -3.0, -4.0],  # one, between 10 and 100
        ]
    )
    counts, first, before, every = find_crossings(grid, advantage)
    assert counts.tolist() == [3, 0, 1]
    assert first[0] == pytest.approx(np.sqrt(10.0))
    assert np.isnan(first[1])
    assert first[2] == pytest.approx(10 ** (1 + 0.5))
    assert before.tolist() == [False, False, True]
    assert every.size == 4


def _comparison(grid, curve_a, curve_b, better="lower"):
    return Comparison(
        axis=Axis("x", float(grid[0]), float(grid[-1])),
        grid=grid,
        curve_a=curve_a,
        curve_b=curve_b,
        better=better,
        outcome="loss",
        labels=("A", "B"),
        prob=0.9,
        target=None,
        target_a=None,
        target_b=None,
        pairing="test",
        points_a=pd.DataFrame(),
        points_b=pd.DataFrame(),
    )


def test_crossover_summary_counts_draws_with_multiple_crossings():
    grid = np.geomspace(1.0, 1e5, 6)
    a = np.array([[1.0, 2, 2, 1, 1, 2], [1, 1, 1, 1, 1, 1], [1, 1, 2, 2, 2, 2], [1, 1, 1, 2, 2, 2]])
    b = np.full_like(a, 1.5)
    result = _comparison(grid, a, b)
    crossover = result.crossover
    assert crossover.probability == pytest.approx(0.75)
    assert crossover.count_distribution() == {0: 0.25, 1: 0.5, 3: 0.25}
    assert crossover.prob_b_overtakes == pytest.approx(0.75)
    payload = result.to_dict(points=None)
    assert set(payload) == {"prob_a_better", "crossover"}
    assert set(payload["crossover"]) == {"probability", "median", "q05", "q95"}
    assert [p["p"] for p in payload["prob_a_better"]] == pytest.approx(
        [1.0, 0.75, 0.5, 0.5, 0.5, 0.25]
    )
    assert "25% of draws cross more than once" in crossover.summary()


def test_higher_is_better_flips_the_advantage():
    grid = np.geomspace(1.0, 100.0, 3)
    accuracy_a = np.array([[0.5, 0.6, 0.7]])
    accuracy_b = np.array([[0.4, 0.6, 0.8]])
    result = _comparison(grid, accuracy_a, accuracy_b, better="higher")
    assert result.prob_a_better.tolist() == [1.0, 0.0, 0.0]
    assert result.crossover.prob_b_overtakes == 1.0


def test_no_crossing_gives_null_location():
    grid = np.geomspace(1.0, 100.0, 5)
    result = _comparison(grid, np.ones((10, 5)), np.full((10, 5), 2.0))
    assert result.crossover.to_dict() == {
        "probability": 0.0,
        "median": None,
        "q05": None,
        "q95": None,
    }
    assert "do not cross" in result.crossover.summary()


def test_crossover_intervals_are_calibrated_on_exact_posteriors():
    """The comparison path (curves -> advantage -> crossings -> interval) on exact posteriors.

    Each repetition simulates two straight lines in (log x, log loss) with known noise
    (sd 0.05, 12 points each on x = 1e6 .. 1e10) and draws 1000 samples from their exact
    flat-prior posteriors (Gaussian around the least-squares fit); the true crossing lies inside
    the data. 400 seeded repetitions: under exact calibration the 90% interval covers the truth
    in 90% of them, with a binomial sd of 1.5 points; we require at least 86% (2.7 sd below).
    Pairs whose lines stay 0.25 apart in log loss must get a crossover probability below 5%
    on average.
    """
    rng = np.random.default_rng(2024)
    log_x = np.linspace(np.log(1e6), np.log(1e10), 12)
    design = np.column_stack([np.ones_like(log_x), log_x - log_x.mean()])
    covariance = 0.05**2 * np.linalg.inv(design.T @ design)
    grid = np.geomspace(1e5, 1e11, 200)
    centred_grid = np.log(grid) - log_x.mean()

    def posterior_curves(intercept, slope):
        y = intercept + slope * (log_x - log_x.mean()) + rng.normal(0, 0.05, log_x.size)
        estimate = np.linalg.lstsq(design, y, rcond=None)[0]
        draws = rng.multivariate_normal(estimate, covariance, size=1000)
        return np.exp(draws[:, :1] + draws[:, 1:] * centred_grid[None, :])

    covered = []
    for _ in range(400):
        slope_a, slope_b = rng.uniform(-0.12, -0.08), rng.uniform(-0.25, -0.18)
        truth = np.exp(log_x.mean() + rng.uniform(-1.5, 1.5))  # inside the data
        intercept_a = rng.uniform(0.3, 0.7)
        intercept_b = intercept_a + (slope_a - slope_b) * (np.log(truth) - log_x.mean())
        result = _comparison(
            grid, posterior_curves(intercept_a, slope_a), posterior_curves(intercept_b, slope_b)
        )
        interval = result.crossover.interval()
        covered.append(interval["q05"] is not None and interval["q05"] <= truth <= interval["q95"])
    assert np.mean(covered) >= 0.86

    separated = []
    for _ in range(100):
        slope = rng.uniform(-0.2, -0.1)
        a = posterior_curves(0.5, slope)
        b = posterior_curves(0.25, slope)
        separated.append(_comparison(grid, a, b).crossover.probability)
    assert np.mean(separated) < 0.05


def test_axis_and_target_parsing():
    assert Axis.parse("C=1e20:1e26") == Axis("C", 1e20, 1e26)
    assert Axis.parse(("N", 1e8, 1e11)) == Axis("N", 1e8, 1e11)
    assert parse_target("C=1e24", Axis("C", 1e20, 1e26)) == 1e24
    assert parse_target(3e22, Axis("C", 1e20, 1e26)) == 3e22
    with pytest.raises(SettingsError, match="NAME=LOW:HIGH"):
        Axis.parse("C=1e20")
    with pytest.raises(SettingsError, match="0 < low < high"):
        Axis.parse("C=1e26:1e20")
    with pytest.raises(SettingsError, match="ends must be numbers"):
        Axis.parse("C=a:b")
    with pytest.raises(SettingsError, match="names 'N', but the axis is 'C'"):
        parse_target("N=1e9", Axis("C", 1e20, 1e26))
    assert probability_text(1.0, 2000) == "1.00 (all 2000 draws)"


# ---------------------------------------------------------------------------- with NUTS fits
def test_compare_finds_the_known_crossover():
    """Seeded version of benchmarks/crossover_calibration.py on one crossing pair and one pair
    that never crosses (the benchmark measures the rates over many repetitions)."""
    result = compare(fit("A"), fit("B"), over="x=1e6:1e11", at="x=1e10", labels=("A", "B"))
    interval = result.crossover.interval()
    assert result.crossover.probability > 0.95
    assert interval["q05"] <= CROSSING <= interval["q95"]
    assert result.crossover.prob_b_overtakes > 0.95
    # B is better at 1e10 (its floor is 0.3 lower), A at 1e6
    assert result.at_target()["p"] < 0.01
    assert result.prob_a_better[0] > 0.99 and result.prob_a_better[-1] < 0.01
    assert result.answer().startswith("At x = 1e+10, B has lower loss than A with probability")
    assert result.curve_a.shape == (4000, 200)

    never = compare(fit("A"), fit("C"), over="x=1e6:1e11")
    assert never.crossover.probability < 0.05
    assert np.all(never.prob_a_better < 0.05)


def test_difference_draws_are_the_cores_forecasts_paired_by_index():
    result = compare(fit("A"), fit("B"), over="x=1e7:1e9", grid=5)
    direct = fit("A").forecast({"x": result.grid}).curve.reshape(-1, 5)
    np.testing.assert_allclose(result.curve_a, direct)
    assert result.pairing.startswith("independent posteriors")


def test_unequal_numbers_of_draws_are_thinned_evenly():
    from bayescale.compare import _thin

    index = _thin(4000, 2000)
    assert index.tolist()[:3] == [0, 2, 4] and index[-1] == 3998
    assert np.unique(index).size == 2000


def test_compare_groups_uses_joint_draws():
    """Two groups of a hierarchical fit built from the A and B runs (floor and scale pooled over
    the curve, the exponent shared, as in the truth): the known crossover is found."""
    from decision_fits import runs

    import bayescale as bs

    frame = pd.concat([runs("A").assign(curve="A"), runs("B").assign(curve="B")])
    # two groups of 15 runs each: the centred form mixes (the non-centred one diverges)
    pooled = bs.fit(
        frame,
        "power_law_floor",
        y="loss",
        pool=[
            bs.Pooling("L_inf", "curve", centered=True),
            bs.Pooling("x0", "curve", centered=True),
        ],
        seed=5,
        target_accept=0.99,
        chains=4,
        # 1,000: at 500 the R-hat was 1.011 on an AMD EPYC machine (1.0015 at 1,000)
        draws=1000,
        warmup=1000,
    )
    result = compare_groups(pooled, "curve", "A", "B", over="x=1e6:1e11", at="x=1e10")
    assert result.crossover.probability > 0.9
    interval = result.crossover.interval()
    assert interval["q05"] <= CROSSING <= interval["q95"]
    assert result.labels == ("A", "B")
    assert result.pairing.startswith("two groups of one fit")
    with pytest.raises(DataError, match="no label 'Z'"):
        compare_groups(pooled, "curve", "A", "Z", over="x=1e6:1e11")
    with pytest.raises(SettingsError, match="does not pool over 'dataset'"):
        compare_groups(pooled, "dataset", "A", "B", over="x=1e6:1e11")
    with pytest.raises(SettingsError, match="needs a group label"):
        compare(pooled, fit("A"), over="x=1e6:1e11")


def test_path_errors_name_the_problem():
    with pytest.raises(SettingsError, match="needs a value for 'x'"):
        compare(fit("A"), fit("B"), over="N=1e6:1e11")
    with pytest.raises(SettingsError, match="has no input 'D'"):
        compare(fit("A"), fit("B"), over="x=1e6:1e11", fixed={"D": 1.0})
    with pytest.raises(SettingsError, match="tokens_per_parameter applies"):
        compare(fit("A"), fit("B"), over="x=1e6:1e11", tokens_per_parameter=20)
    with pytest.raises(SettingsError, match="cannot also be given"):
        compare(fit("A"), fit("B"), over="x=1e6:1e11", fixed={"x": 1.0})
    # the axis may map onto an input of another name through a function
    mapped = compare(fit("A"), fit("B"), over="C=1e6:1e11", fixed={"x": lambda c: c}, grid=5)
    assert mapped.points_a["x"].tolist() == pytest.approx(np.geomspace(1e6, 1e11, 5).tolist())


# ---------------------------------------------------------------------------- command line
@pytest.fixture(scope="module")
def fit_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("compare")
    return {name: str(fit(name).save(folder / f"{name}.nc")) for name in "ABC"}


def test_cli_compare_prints_the_issue_json(fit_files, capsys):
    status = main(
        ["compare", fit_files["A"], fit_files["B"], "--over", "x=1e6:1e11", "--at", "x=1e10"]
        + ["--json", "--points", "11"]
    )
    assert status == 0
    payload = json.loads(capsys.readouterr().out)
    assert set(payload) == {"prob_a_better", "crossover", "at"}
    assert len(payload["prob_a_better"]) == 11
    assert all(set(p) == {"x", "p"} for p in payload["prob_a_better"])
    assert payload["prob_a_better"][0]["x"] == pytest.approx(1e6)
    assert payload["prob_a_better"][-1]["x"] == pytest.approx(1e11)
    assert set(payload["crossover"]) == {"probability", "median", "q05", "q95"}
    assert payload["crossover"]["probability"] > 0.95
    assert payload["crossover"]["q05"] < CROSSING < payload["crossover"]["q95"]
    assert payload["at"]["x"] == 1e10 and payload["at"]["p"] < 0.01


def test_cli_compare_gives_null_location_without_crossing(fit_files, capsys):
    status = main(["compare", fit_files["A"], fit_files["B"], "--over", "x=1e9:1e11", "--json"])
    assert status == 0
    payload = json.loads(capsys.readouterr().out)
    assert set(payload) == {"prob_a_better", "crossover"}
    assert payload["crossover"] == {"probability": 0.0, "median": None, "q05": None, "q95": None}


def test_cli_compare_text_and_errors(fit_files, capsys):
    assert main(["compare", fit_files["A"], fit_files["B"], "--over", "x=1e6:1e11"]) == 0
    out = capsys.readouterr().out
    assert "B overtakes A" in out and "pairing: independent posteriors" in out
    assert main(["compare", fit_files["A"], fit_files["B"], "--over", "x=1e6"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bayescale: error:") and "NAME=LOW:HIGH" in err
    assert len(err.strip().splitlines()) == 1
    assert main(["compare", fit_files["A"], "missing.nc", "--over", "x=1e6:1e11"]) == 2
    assert "fit file not found: missing.nc" in capsys.readouterr().err
