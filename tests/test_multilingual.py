"""Multilingual laws: the joint law of Fernandes et al. (2023) with (pair, weight) cells nested in
pairs, the effective-parameter fraction and its interpolation to unseen weightings, group-level
covariates, per-language accuracy with a chance floor through the command line, and the coverage
of pooled exponents over repeated simulations."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pandas as pd
import pytest
from simulation import LONGER

import bayescale as bs
from bayescale import multilingual as ml
from bayescale.cli import main
from bayescale.errors import ConvergenceWarning, DataError, SettingsError
from bayescale.forecast import Derived
from bayescale.formula import NUMPY_OPS
from bayescale.model import Design, ModelSpec, numpyro_model
from benchmarks.pooling_coverage import covered, multilingual_case, multilingual_direct_case


# ---------------------------------------------------------------------------- cell labels
def test_fit_joint_refuses_a_centring_it_cannot_use():
    runs = pd.DataFrame({"N": [1e8, 1e9], "loss": [3.0, 2.5], "pair": "a", "weight": 1.0})
    with pytest.raises(SettingsError, match="centered='conditional': give True, False, 'auto'"):
        ml.fit_joint(runs, y="loss", centered="conditional")


def test_pair_weight_labels_round_trip_and_refuse_bad_values():
    labels = ml.pair_weight_labels(["en-de", "de-en", "en-de"], ["1", 0.25, 1 / 3])
    assert labels == ["en-de@1", "de-en@0.25", "en-de@0.333333333333"]
    assert ml.split_pair_weight(labels[1]) == ("de-en", 0.25)
    with pytest.raises(DataError, match="row 2: weight 1.5 of pair 'b' is not in"):
        ml.pair_weight_labels(["a", "b"], [0.5, 1.5])
    with pytest.raises(DataError, match="row 1: pair label 'a@b'"):
        ml.pair_weight_labels(["a@b"], [0.5])
    with pytest.raises(DataError, match="row 1: weight 'x' is not a number"):
        ml.pair_weight_labels(["a"], ["x"])
    with pytest.raises(DataError, match="not of the form"):
        ml.split_pair_weight("no-weight")


# ---------------------------------------------------------------------------- nested reference
def test_cells_nested_in_pairs_are_sampled_at_the_reference_scale():
    """beta pooled over cells, alpha over pairs: each cell's multiplier is recovered from its
    reference coordinate with its own pair's exponent, log beta_j = u_j + alpha_pair(j) log N_ref."""
    frame = pd.DataFrame(
        {
            "N": [1e7, 1e8, 1e9, 1e7, 1e8, 1e9],
            "pair": ["a", "a", "a", "b", "b", "b"],
            "cell": ["a@1", "a@1", "a@0.5", "b@1", "b@0.5", "b@0.5"],
            "loss": [3.0, 2.5, 2.4, 3.2, 2.9, 2.6],
        }
    )
    pool = [
        bs.Pooling("alpha", "pair", centered=True),
        bs.Pooling("beta", "cell", centered=True),
    ]
    spec = ModelSpec.create("multilingual", pool=pool)
    runs = bs.load_runs(frame, law=spec.law, y="loss", groups=["pair", "cell"])
    design = Design.from_runs(runs, spec)
    assert design.nested == {("cell", "pair")}  # cells nest in pairs, not the other way
    np.testing.assert_array_equal(design.parents[("cell", "pair")], [0, 0, 1, 1])
    beta = spec.law.parameter("beta")
    assert spec.uses_reference(beta, design.nested)
    assert not spec.uses_reference(beta)  # without the nesting it is sampled as written

    alpha = np.array([0.3, 0.5])
    u = np.array([1.0, 2.0, 3.0, 4.0])
    values = {"alpha__link": np.log(alpha), "beta__link": u, "beta__ref": 0.5}
    with jax.enable_x64(True):
        model = numpyro_model(spec, design)
        substituted = numpyro.handlers.substitute(
            numpyro.handlers.seed(model, 0), {k: jnp.asarray(v) for k, v in values.items()}
        )
        trace = numpyro.handlers.trace(substituted).get_trace(y=jnp.asarray(design.y))
    expected = np.exp(u + alpha[[0, 0, 1, 1]] * design.log_reference["N"])
    np.testing.assert_allclose(np.asarray(trace["beta"]["value"]), expected, rtol=1e-12)
    assert "beta__ref" in trace


def test_groups_that_do_not_nest_keep_the_direct_parameterisation():
    frame = pd.DataFrame(
        {
            "N": [1e7, 1e8, 1e9, 1e7],
            "pair": ["a", "a", "b", "b"],
            "cell": ["x", "y", "x", "y"],  # cell x appears in both pairs
            "loss": [3.0, 2.5, 2.4, 3.2],
        }
    )
    spec = ModelSpec.create("multilingual", pool=["alpha|pair", "beta|cell"])
    runs = bs.load_runs(frame, law=spec.law, y="loss", groups=["pair", "cell"])
    design = Design.from_runs(runs, spec)
    assert design.nested == frozenset()
    assert not spec.uses_reference(spec.law.parameter("beta"), design.nested)


# ---------------------------------------------------------------------------- the joint law
PAIRS = ["en-xx", "en-yy", "en-zz", "xx-en", "yy-en", "zz-en"]
WEIGHTS = (1.0, 0.7, 0.5, 0.2, 0.1)  # four below 1: f_hat's three coefficients are identified
C_TRUE = (0.6, 0.8, 1.2)
INTO_ENGLISH_EFFECT = 0.25  # log alpha is 0.25 higher for pairs translating into English


def true_fraction(p):
    c1, c2, c3 = C_TRUE
    return p + c1 * p**c2 * (1 - p) ** c3


@pytest.fixture(scope="module")
def joint_truth():
    """Six pairs, five weights (four below the reference weight 1, so that the three coefficients
    of f_hat are identified), six model sizes over three decades, 1% noise.

    The pairs' deviations of log alpha from their direction's mean are standard normal draws
    rescaled to unit standard deviation within each direction, so the pairs differ by the stated
    spread 0.08, several times each pair's own posterior uncertainty. With raw draws (seed 7:
    a realised spread of 0.02, about one pair's uncertainty over two decades of size) the
    posterior of alpha_sd piles up near zero, where both the centred form (a funnel) and the
    non-centred form (its inverse) sample poorly: R-hat 1.03 to 1.05 and 7 to 114 divergences
    with everything centred, with alpha non-centred, with a longer warmup and with a
    zero-avoiding prior on alpha_sd. That regime is a property of the data, documented in
    docs/multilingual.md, not what this test is about."""
    rng = np.random.default_rng(7)
    into = np.array([0, 0, 0, 1, 1, 1])
    deviation = rng.standard_normal(6)
    for direction in (0, 1):
        mask = into == direction
        deviation[mask] = (deviation[mask] - deviation[mask].mean()) / deviation[mask].std()
    alpha = 0.25 * np.exp(INTO_ENGLISH_EFFECT * into + 0.08 * deviation)
    floor = 1.5 * np.exp(0.2 * rng.standard_normal(6))
    beta_alone = 400 * np.exp(0.4 * rng.standard_normal(6))
    rows = []
    for i, pair in enumerate(PAIRS):
        for p in WEIGHTS:
            beta = beta_alone[i] * true_fraction(p) ** -alpha[i]
            for n in np.geomspace(1e7, 1e10, 6):
                mean = beta * n ** -alpha[i] + floor[i]
                loss = mean * np.exp(0.01 * rng.standard_normal())
                rows.append(
                    {"pair": pair, "weight": p, "params": n, "loss": loss, "into_english": into[i]}
                )
    truth = {"alpha": alpha, "L_inf": floor, "beta_alone": beta_alone}
    return pd.DataFrame(rows), truth


@pytest.fixture(scope="module")
def joint_fit(joint_truth):
    """4 x 1,000 draws: with 4 x 500 the largest R-hat over the fit's 60-odd parameters is close
    to the 1.01 gate (seed 4: 1.011, seed 5: 1.004); with 1,000 draws seeds 4 to 6 gave 1.002 to
    1.0045, at about the same wall time (compilation dominates)."""
    frame, _ = joint_truth
    return ml.fit_joint(
        frame,
        y="loss",
        N="params",
        pair_covariates=["into_english"],
        centered=True,
        seed=4,
        target_accept=0.95,
        priors={"alpha_into_english": "Normal(0, 0.5)", "L_inf_into_english": "Normal(0, 0.5)"},
        chains=4,
        draws=1000,
        warmup=1000,
    )


def test_joint_law_recovers_pair_exponents_floors_and_the_covariate(joint_fit, joint_truth):
    """Every pair's alpha and L_inf, and the into-English shift of log alpha, lie inside their
    central 99% intervals (seeded; a calibrated posterior misses one of these 13 intervals with
    probability about 0.12). The covariate's 90% interval excludes zero: the direction effect
    is detected, not only covered."""
    _, truth = joint_truth
    assert joint_fit.converged
    table = joint_fit.summary(0.99)
    for name in ("alpha", "L_inf"):
        for i, pair in enumerate(PAIRS):
            row = table.loc[f"{name}[{pair}]"]
            assert row["q0_5"] <= truth[name][i] <= row["q99_5"], (name, pair)
    effect = table.loc["alpha_into_english"]
    assert effect["q0_5"] <= INTO_ENGLISH_EFFECT <= effect["q99_5"]
    assert joint_fit.summary(0.9).loc["alpha_into_english", "q05"] > 0
    assert joint_fit.datatree["posterior"]["beta"].dims == ("chain", "draw", "pair_weight")


def test_effective_fraction_covers_the_truth(joint_fit):
    """f_i(p) = (beta_1 / beta_p)^(1 / alpha_i) of the 24 cells below the reference weight inside
    their 99% intervals, and f = 1 exactly at the reference weight.

    At most 2 of the 24 may fall outside: even with exact intervals, 1 or more of 24 independent
    99% intervals miss with probability 0.21 (seed 4 with 4 x 1,000 draws: en-xx at p = 0.2,
    truth 0.3267 against an upper bound of 0.3262), while 3 or more miss with probability 0.002.
    """
    fractions = ml.effective_fraction(joint_fit)
    table = fractions.table()
    assert len(table) == len(PAIRS) * len(WEIGHTS)
    reference = table[table["weight"] == 1.0]
    np.testing.assert_allclose(reference["median"], 1.0)
    wide = ml.effective_fraction(joint_fit, prob=0.99).table()
    cells = wide[wide["weight"] < 1]
    truth = true_fraction(cells["weight"].to_numpy())
    outside = cells[(truth < cells["q0_5"]) | (truth > cells["q99_5"])]
    assert len(cells) == 24
    assert len(outside) <= 2, outside.to_dict("records")
    posterior = joint_fit.datatree["posterior"]
    assert fractions.draws.shape == (posterior.sizes["chain"], posterior.sizes["draw"], len(table))


def test_fitted_fraction_predicts_an_unseen_weighting(joint_fit, joint_truth):
    """f_hat fitted to the posterior of f predicts f at p = 0.35 (not trained), and the loss of a
    pair at that weight, within their 90% intervals.

    4 x 1,000 draws: with 4 x 500, seed 5 ended at R-hat 1.014 and seed 7 at 1.0099 (measured
    2026-12-04 on an AMD EPYC machine); with 4 x 1,000, seeds 5 to 8 gave 1.001 to 1.004 and a
    min ESS of 1,395 or more."""
    _, truth = joint_truth
    fraction_fit = ml.fit_effective_fraction(ml.effective_fraction(joint_fit), seed=5, **LONGER)
    assert fraction_fit.converged
    f_hat = fraction_fit.forecast({"p": 0.35}).table().iloc[0]
    assert f_hat["curve_q05"] <= true_fraction(0.35) <= f_hat["curve_q95"]
    forecast = ml.forecast_weighting(
        joint_fit, fraction_fit, pair="xx-en", weight=0.35, N=[1e9, 1e10]
    )
    i = PAIRS.index("xx-en")
    for _, row in forecast.table().iterrows():
        mean = truth["beta_alone"][i] * (true_fraction(0.35) * row["N"]) ** -truth["alpha"][i]
        assert row["q05"] <= mean + truth["L_inf"][i] <= row["q95"]
    with pytest.raises(DataError, match="pair 'nope' has no run at the reference weight"):
        ml.forecast_weighting(joint_fit, fraction_fit, pair="nope", weight=0.3, N=1e9)
    with pytest.raises(DataError, match="weight 1.5 is not in"):
        ml.forecast_weighting(joint_fit, fraction_fit, pair="xx-en", weight=1.5, N=1e9)


def test_effective_fraction_needs_the_joint_pooling_and_a_reference(joint_fit):
    with pytest.raises(DataError, match="has no run at the reference weight 0.3"):
        ml.effective_fraction(joint_fit, reference_weight=0.3)
    with pytest.raises(SettingsError, match="does not pool alpha over 'language'"):
        ml.effective_fraction(joint_fit, pair_column="language")
    fractions = ml.effective_fraction(joint_fit)
    two_weights = fractions.points["weight"].isin([1.0, 0.5, 0.2]).to_numpy()
    sparse = Derived(
        fractions.expression, fractions.points[two_weights], fractions.draws[..., two_weights], 0.9
    )
    with pytest.raises(DataError, match="3 or more distinct weights below 1, got 2 \\(0.2, 0.5\\)"):
        ml.fit_effective_fraction(sparse)


def test_fit_joint_refuses_bad_input(joint_truth):
    frame, _ = joint_truth
    with pytest.raises(DataError, match="column 'size' not found"):
        ml.fit_joint(frame, y="loss", N="size")
    bad = frame.assign(weight=frame["weight"] * 3)
    with pytest.raises(DataError, match="is not in \\(0, 1\\]"):
        ml.fit_joint(bad, y="loss", N="params")


# ---------------------------------------------------------------------------- accuracy, CLI
def test_accuracy_with_a_chance_floor_per_language_through_the_cli(tmp_path):
    """Multiple-choice accuracy against model size for three languages on two benchmarks (two
    and three choices), binomial counts with the number of questions, alpha pooled over
    languages and N0 over (benchmark, language) cells: fitted with bayescale fit --group ...
    --trials. Every language's alpha is inside its 99% interval. 4 x 1,000 draws: with 4 x 500
    the R-hat was 1.010 with this seed (2026-12-07), on the gate."""
    law = bs.get_law("mc_accuracy_cloglog")
    rng = np.random.default_rng(11)
    languages = {"sw": 0.35, "hi": 0.45, "fr": 0.55}
    benchmarks = {"xcopa": (0.5, 500), "xnli": (1 / 3, 5010)}
    rows = []
    for language, alpha in languages.items():
        for benchmark, (chance, questions) in benchmarks.items():
            n0 = 10 ** rng.uniform(9, 9.6)
            for n in np.geomspace(5e8, 8e9, 5):
                p = law.mean({"N": n, "chance": chance}, {"N0": n0, "alpha": alpha}, ops=NUMPY_OPS)
                correct = rng.binomial(questions, p)
                rows.append(
                    {
                        "params": n,
                        "chance": chance,
                        "acc": correct / questions,
                        "questions": questions,
                        "language": language,
                        "cell": f"{benchmark}-{language}",
                    }
                )
    csv = tmp_path / "acc.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    out = tmp_path / "acc.nc"
    status = main(
        [
            "fit", str(csv), "--law", "mc_accuracy_cloglog", "--y", "acc", "--x", "N=params",
            "--trials", "questions", "--group", "alpha=language", "--group", "N0=cell",
            "--centered", "alpha", "--centered", "N0", "--target-accept", "0.95",
            "--chains", "4", "--draws", "1000", "--warmup", "1000", "--seed", "2",
            "--out", str(out),
        ]
    )  # fmt: skip
    assert status == 0
    fit = bs.load_fit(out)
    assert fit.spec.observation.name == "binomial" and fit.converged
    table = fit.summary(0.99)
    for language, alpha in languages.items():
        row = table.loc[f"alpha[{language}]"]
        assert row["q0_5"] <= alpha <= row["q99_5"], language
    forecast = fit.forecast({"N": 3e10, "chance": 0.5, "language": "fr", "cell": "xcopa-fr"})
    assert 0.5 < forecast.table().iloc[0]["curve_median"] < 1


# ---------------------------------------------------------------------------- coverage
_COVERED_BY_SEED: dict[int, list[bool]] = {}


def covered_exponents(seed: int) -> np.ndarray:
    """Fit one simulated data set of benchmarks/pooling_coverage.py (eight languages, four sizes
    each, the anchored power law's level, floor share and slope pooled over languages) with
    that benchmark's priors and sampler settings, once per seed in this module, and say whether
    each language's central 90% interval holds its true exponent."""
    if seed not in _COVERED_BY_SEED:
        frame, fit_args, quantity, column, truth = multilingual_case(seed)
        fit = bs.fit(frame, seed=seed, **fit_args)
        # bs.fit anchors the law at the geometric mean of the simulated sizes, 1e6 to 1e9
        assert fit.spec.priors["x_ref"].fixed_value == pytest.approx(10**7.5, rel=1e-12)
        _COVERED_BY_SEED[seed] = covered(fit, quantity, column, truth)
    return np.array(_COVERED_BY_SEED[seed])


@pytest.mark.xfail(
    raises=ConvergenceWarning,
    strict=False,
    reason="known open problem: the simulated 8-language fits (4 sizes each) with the anchored "
    "law pass every convergence gate on most seeds, not all (benchmarks/pooling_coverage.py, "
    "2026-12-07: 20 of 20 seeds from 1000, 8 of 10 from 101; seeds 1000 to 1002 passed on the "
    "development machine), so on another machine one of them may fail a gate; "
    "docs/multilingual.md, section 6. Any other failure is still a failure",
)
def test_pooled_exponents_cover_at_close_to_the_nominal_rate():
    """Three seeded simulations, eight languages each: 24 central 90% intervals of group-level
    exponents. A calibrated posterior covers each with probability 0.9, so the count is about
    Binomial(24, 0.9) (mean 21.6); requiring at least 19 fails a calibrated method with
    probability 2.8%, and passes one whose intervals cover 60% of the time (about 1.6 times too
    narrow) with probability 4%. A fit that fails a convergence gate raises a
    ConvergenceWarning, which the marker reports as an expected failure; any other failure
    fails the test. benchmarks/pooling_coverage.py repeats this over more seeds and also
    reports over-coverage. The seeds are the benchmark's first three, whose fits all passed the
    gates here (2026-12-07; 23 of 24 intervals covered). Until then the test used seeds 101 to
    103; with bayescale's own NUTS loop seed 101's fit fails a gate, and a fit that fails a
    gate leaves the coverage unchecked."""
    hits = np.concatenate([covered_exponents(seed) for seed in (1000, 1001, 1002)])
    assert hits.size == 24
    assert hits.sum() >= 19, f"coverage {hits.mean():.2f}"


def test_fixed_population_and_spread_give_independent_groups():
    """Fixed on a pooled parameter and on its spread: every group gets the same prior
    independently (no pooling), the comparison partial pooling is measured against. The group
    values are still sampled; the fixed hyperparameters are not in the posterior."""
    frame = pd.DataFrame(
        {"N": [1e7, 1e8, 1e7, 1e8], "pair": ["a", "a", "b", "b"], "loss": [3.0, 2.5, 3.2, 2.9]}
    )
    pool = [bs.Pooling("alpha", "pair", centered=True), bs.Pooling("beta", "pair")]
    priors = {
        "alpha": "Fixed(0.3)",
        "alpha_sd": "Fixed(0.5)",
        "beta": "Fixed(100)",
        "beta_sd": "Fixed(1)",
    }
    spec = ModelSpec.create("multilingual", pool=pool, priors=priors)
    assert "alpha_pop" not in spec.posterior_names() and "alpha_sd" not in spec.posterior_names()
    assert {"alpha", "beta", "L_inf"} <= set(spec.posterior_names())
    runs = bs.load_runs(frame, law=spec.law, y="loss", groups=["pair"])
    design = Design.from_runs(runs, spec)
    with jax.enable_x64(True):
        trace = numpyro.handlers.trace(
            numpyro.handlers.seed(numpyro_model(spec, design), 0)
        ).get_trace()
    points = jnp.array([-1.5, -1.0])
    with jax.enable_x64(True):
        log_prob = float(trace["alpha__link"]["fn"].log_prob(points))
    expected = sum(
        -0.5 * ((x - np.log(0.3)) / 0.5) ** 2 - np.log(0.5 * np.sqrt(2 * np.pi)) for x in points
    )
    assert log_prob == pytest.approx(float(expected), rel=1e-12)
    # beta has a reference: its fixed population value sets the centre of the reference term,
    # u_j = log(100) - 0.3 log N_ref + 1 * z_j, and no population site is sampled
    assert "beta__ref" not in trace and "beta_pop" not in trace
    log_beta = np.log(np.asarray(trace["beta"]["value"]))
    u = log_beta - np.asarray(trace["alpha"]["value"]) * design.log_reference["N"]
    z = np.asarray(trace["beta__link_decentered"]["value"])
    np.testing.assert_allclose(u, np.log(100) - 0.3 * design.log_reference["N"] + z, rtol=1e-12)


def test_a_new_language_is_drawn_from_the_population():
    """A language never fitted: for every posterior draw, log alpha_new = log alpha_pop +
    alpha_sd z and the reference coordinate of beta (log beta - alpha log N_ref) moves by
    beta_sd z' from the population's, with z, z' standard normal. Over 2,000 draws the
    standardised deviations have mean within 0.1 and standard deviation within 0.1 of (0, 1)
    (their sampling errors are about 0.022 and 0.016), and the curve of
    forecast_new_group is the law evaluated at those draws.

    The fit is the benchmark's ``multilingual`` law in its own coordinates (beta has a reference
    coordinate, which is what this checks), 4 x 500 draws. These fits often fail a convergence
    gate (docs/multilingual.md, section 6); what is checked holds draw by draw, whatever the
    draws are, so the convergence warning is not the point here and is silenced."""
    frame, fit_args, _, _, _ = multilingual_direct_case(101)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fit = bs.fit(frame, seed=101, **{**fit_args, "draws": 500, "warmup": 500})
    theta = bs.new_group_draws(fit, "language", seed=3)
    posterior = fit.datatree["posterior"]

    def flat(name):
        return np.asarray(posterior[name].values).reshape(-1)

    z_alpha = (np.log(theta["alpha"]) - np.log(flat("alpha_pop"))) / flat("alpha_sd")
    log_ref = fit.data_info["log_reference"]["N"]
    u_new = np.log(theta["beta"]) - theta["alpha"] * log_ref
    u_pop = np.log(flat("beta_pop")) - flat("alpha_pop") * log_ref
    z_beta = (u_new - u_pop) / flat("beta_sd")
    for z in (z_alpha, z_beta):
        assert abs(z.mean()) < 0.1 and abs(z.std() - 1) < 0.1
    assert not np.allclose(z_alpha, z_beta)  # independent draws per parameter
    new = bs.forecast_new_group(fit, "language", {"N": [1e7, 1e10]}, seed=3).table()
    curve = theta["beta"][:, None] * np.array([1e7, 1e10]) ** -theta["alpha"][:, None]
    curve = curve + theta["L_inf"][:, None]
    np.testing.assert_allclose(new["median"], np.median(curve, axis=0), rtol=1e-10)
    # a new language is less certain than the population curve it is drawn around
    typical = flat("beta_pop") * 1e10 ** -flat("alpha_pop") + flat("L_inf_pop")
    low, high = np.quantile(typical, [0.05, 0.95])
    assert new["q95"].iloc[1] - new["q05"].iloc[1] > high - low


def test_a_new_group_needs_every_pooled_parameter_on_its_column(joint_fit):
    with pytest.raises(SettingsError, match="beta is pooled over 'pair_weight', not 'pair'"):
        bs.new_group_draws(joint_fit, "pair", {"into_english": 1.0})
    with pytest.raises(SettingsError, match="no parameter of this fit is pooled over 'x'"):
        bs.new_group_draws(joint_fit, "x")
