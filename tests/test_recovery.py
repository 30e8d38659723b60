"""Parameter recovery: simulate from every catalog law with known parameters, fit, and check that
the posterior covers the truth.

Tolerance: each true value must lie inside its central 99% posterior interval. The seeds are fixed,
so each check is deterministic; a correctly calibrated posterior misses a given 99% interval with
probability 1%, so the ~25 checks here would all pass with probability ~0.78 for an arbitrary seed,
and a biased model (a wrong Jacobian, a wrong likelihood) misses by many posterior widths.
Convergence warnings are errors in the test suite (pyproject.toml), so every fit here also passed
the R-hat, ESS and divergence gates.
"""

import numpy as np
import pandas as pd
import pytest
from simulation import CHINCHILLA_TRUTH, FAST, LONGER, simulate

import bayescale as bs

PROB = 0.99


def assert_covers(fit: bs.Fit, truth: dict[str, float | np.ndarray]):
    table = fit.summary(PROB)
    for name, value in truth.items():
        values = np.atleast_1d(value)
        rows = (
            [name]
            if values.size == 1 and name in table.index
            else [f"{name}[{label}]" for label in fit.group_labels(fit.spec.pooling_of(name).group)]
        )
        for row, true in zip(rows, values, strict=True):
            low, high = table.loc[row, "q0_5"], table.loc[row, "q99_5"]
            assert low <= true <= high, f"{row}: truth {true} outside [{low}, {high}]"


def test_chinchilla(chinchilla_sim_fit):
    assert_covers(chinchilla_sim_fit, {**CHINCHILLA_TRUTH, "sigma": 0.01})


def test_power_law_floor():
    x = np.geomspace(1e6, 1e10, 15)
    truth = {"L_inf": 1.7, "x0": 1e5, "alpha": 0.3}
    frame = simulate("power_law_floor", {"x": x}, truth, 0.01, seed=4)
    fit = bs.fit(frame, "power_law_floor", y="loss", seed=1, **FAST)
    assert_covers(fit, {**truth, "sigma": 0.01})


def test_kaplan():
    n, d = np.meshgrid(np.geomspace(1e6, 1e9, 6), np.geomspace(1e8, 1e11, 6))
    truth = {"N_c": 6.4e13, "D_c": 1.8e13, "alpha_N": 0.076, "alpha_D": 0.103}
    frame = simulate("kaplan", {"N": n.ravel(), "D": d.ravel()}, truth, 0.005, seed=5)
    fit = bs.fit(frame, "kaplan", y="loss", seed=2, **FAST)
    assert_covers(fit, {**truth, "sigma": 0.005})


def test_overtraining():
    c, m = np.meshgrid(np.geomspace(1e17, 1e21, 6), [5.0, 10, 20, 40, 80, 160, 320, 640])
    truth = {"E": 1.85, "a": 210.0, "b": 370.0, "eta": 0.14}
    frame = simulate("overtraining", {"C": c.ravel(), "M": m.ravel()}, truth, 0.01, seed=6)
    fit = bs.fit(frame, "overtraining", y="loss", seed=3, **FAST)
    assert_covers(fit, {**truth, "sigma": 0.01})


def test_custom_formula_law():
    law = bs.Law.from_formula(
        "exp_decay",
        "c + k * exp(-x / s)",
        inputs=["x"],
        parameters={"c": "LogNormal(0, 1)", "k": "LogNormal(0, 1)", "s": "LogNormal(log(100), 1)"},
    )
    rng = np.random.default_rng(9)
    x = np.linspace(10, 500, 20)
    loss = (0.5 + 2.0 * np.exp(-x / 120)) * np.exp(rng.normal(0, 0.01, x.size))
    fit = bs.fit(pd.DataFrame({"x": x, "loss": loss}), law, y="loss", seed=4, **FAST)
    assert_covers(fit, {"c": 0.5, "k": 2.0, "s": 120.0, "sigma": 0.01})


@pytest.mark.parametrize("centered", [True, False])
def test_pooled_exponent_over_simulated_groups(centered):
    """alpha varies by family around a population value; every group's alpha is recovered,
    and the population parameters are readable in the posterior.

    Each form is tested in the regime it is for. With 1% noise, six runs per group pin each
    group's alpha down, where the centred form mixes best; the default non-centred form there
    is a coin flip (target 0.99 or 0.995 with 4 x 1,500 draws: 2 of 5 fits on seeds 5 to 8 had
    1 and 39 divergences). With 3% noise each group's data say less and the population more,
    the non-centred regime: at target 0.99 with 4 x 1,000 draws, seeds 5 to 10 all passed
    (R-hat at most 1.006, no divergence, every interval covering the truth). These seeds were
    measured before NUTS sampled standardised coordinates; the test's own seed passes since.
    The centred fit takes 4 x 1,000 draws: with 4 x 500 its R-hat was 1.0077 (2026-12-04, AMD
    EPYC), close to the gate; with 4 x 1,000 seeds 5, 7 and 9 gave 1.002 to 1.0035."""
    rng = np.random.default_rng(12)
    families = ["a", "b", "c", "d", "e", "f"]
    alpha_pop, alpha_sd = 0.3, 0.25
    alphas = alpha_pop * np.exp(alpha_sd * rng.standard_normal(len(families)))
    x = np.tile(np.geomspace(1e6, 1e9, 6), len(families))
    code = np.repeat(np.arange(len(families)), 6)
    truth = {"L_inf": 1.5, "x0": 1e5, "alpha": alphas[code]}
    noise = 0.01 if centered else 0.03
    frame = simulate(
        "power_law_floor",
        {"x": x},
        truth,
        noise,
        seed=13,
        groups={"family": np.array(families)[code]},
    )
    if centered:
        fit = bs.fit(
            frame,
            "power_law_floor",
            y="loss",
            seed=5,
            target_accept=0.95,
            pool=[bs.Pooling("alpha", "family", centered=True)],
            **LONGER,
        )
    else:
        fit = bs.fit(
            frame,
            "power_law_floor",
            y="loss",
            pool=["alpha|family"],
            seed=5,
            target_accept=0.99,
            chains=4,
            draws=1000,
            warmup=1000,
        )
    assert fit.group_labels("family") == families
    assert {"alpha_pop", "alpha_sd", "alpha"} <= set(fit.datatree["posterior"].data_vars)
    assert fit.datatree["posterior"]["alpha"].dims == ("chain", "draw", "family")
    assert_covers(fit, {"alpha": alphas, "L_inf": 1.5, "x0": 1e5, "sigma": noise})
    # the population is wide: 6 groups barely inform it, but the truth must be inside
    assert_covers(fit, {"alpha_pop": alpha_pop, "alpha_sd": alpha_sd})


def test_pooled_coefficient_with_reference_and_pooled_exponent():
    """Chinchilla with A and alpha pooled over the same column (centred: 20 runs per group):
    the reference-scale pooling of a coefficient whose exponent is pooled too.

    Data seed 24: with seed 22 the least-squares estimate itself lies 3 standard errors from the
    true beta (0.304 +- 0.021 against 0.37), a rare draw that no method should be blamed for.

    Target 0.99 with 4 x 1,000 draws: at 0.95 with 4 x 500, sampler seeds 6 and 7 each ended
    with 1 divergence (measured 2026-12-04 on an AMD EPYC machine); at 0.99 with 4 x 1,000,
    seeds 6 to 9 gave R-hat 1.001 to 1.005, min ESS 1,717 or more and no divergence.

    Sampler seed 7: even at 0.99 about one fit in 12 to 17 ends with one or two divergences
    (the centred spread of 4 groups has a funnel). Seeds 6 to 39, measured 2026-12-07: 3 of 34
    fits diverged (seeds 16, 32, 38) before the prior draws and the Laplace spread compiled
    without XLA's optimisations, 2 of 34 after (seeds 6 and 38; their rounding moves the chains'
    starting points). Seed 6, used until then, is one of them; seed 7 converged with both.
    """
    groups = ["x", "y", "z", "w"]
    a_values = np.array([300.0, 500.0, 800.0, 450.0])
    alpha_values = np.array([0.30, 0.36, 0.40, 0.33])
    n, d = np.meshgrid(np.geomspace(5e7, 5e9, 5), np.geomspace(2e9, 2e11, 4))
    n, d = np.tile(n.ravel(), len(groups)), np.tile(d.ravel(), len(groups))
    code = np.repeat(np.arange(len(groups)), 20)
    truth = {"E": 1.8, "A": a_values[code], "B": 2000.0, "alpha": alpha_values[code], "beta": 0.37}
    frame = simulate(
        "chinchilla",
        {"N": n, "D": d},
        truth,
        0.01,
        seed=24,
        groups={"model": np.array(groups)[code]},
    )
    pool = [bs.Pooling("A", "model", centered=True), bs.Pooling("alpha", "model", centered=True)]
    fit = bs.fit(
        frame,
        "chinchilla",
        y="loss",
        pool=pool,
        seed=7,
        target_accept=0.99,
        **LONGER,
    )
    order = np.argsort(groups)
    assert_covers(
        fit,
        {
            "A": a_values[order],
            "alpha": alpha_values[order],
            "E": 1.8,
            "B": 2000.0,
            "beta": 0.37,
            "sigma": 0.01,
        },
    )


def test_accuracy_with_binomial_counts_and_a_chance_floor():
    """Emergence between a chance floor (0.25, four-way multiple choice, fixed) and 1, with
    binomial counts: the complementary log-log link of Schaeffer et al. (2023)."""
    law = bs.Law.from_formula(
        "mc_accuracy",
        "chance + (1 - chance) * (1 - exp(-(N / c)^k))",
        inputs=["N"],
        outcome="accuracy",
        parameters={
            "chance": "Fixed(0.25)",
            "c": "LogNormal(log(1e9), 3)",
            "k": "LogNormal(log(0.5), 1)",
        },
    )
    rng = np.random.default_rng(31)
    n = np.geomspace(1e7, 1e11, 12)
    truth = {"c": 3e9, "k": 0.6}
    p = 0.25 + 0.75 * (1 - np.exp(-((n / truth["c"]) ** truth["k"])))
    trials = np.full(n.size, 500)
    accuracy = rng.binomial(trials, p) / trials
    frame = pd.DataFrame({"N": n, "acc": accuracy, "questions": trials})
    fit = bs.fit(frame, law, y="acc", trials="questions", seed=7, **FAST)
    assert fit.spec.observation.name == "binomial"
    assert_covers(fit, truth)
    predictive = fit.datatree["posterior_predictive"]["acc"].values
    assert np.all((predictive >= 0) & (predictive <= 1))


def test_run_level_covariate_on_an_exponent():
    """alpha_i = alpha exp(alpha_lr * z_i): a covariate that changes the exponent."""
    rng = np.random.default_rng(41)
    x = np.tile(np.geomspace(1e6, 1e10, 10), 3)
    z = np.repeat([-1.0, 0.0, 1.0], 10)
    alpha = 0.3 * np.exp(0.2 * z)
    loss = (1.6 + (1e5 / x) ** alpha) * np.exp(rng.normal(0, 0.01, x.size))
    frame = pd.DataFrame({"x": x, "loss": loss, "z": z})
    fit = bs.fit(frame, "power_law_floor", y="loss", regress={"alpha": ["z"]}, seed=8, **FAST)
    assert_covers(fit, {"alpha": 0.3, "alpha_z": 0.2, "L_inf": 1.6, "x0": 1e5})
    table = fit.forecast({"x": [1e8, 1e8], "z": [-1.0, 1.0]}).table()
    assert table["curve_median"].iloc[1] < table["curve_median"].iloc[0]


def test_group_covariate_shifts_the_pooled_mean():
    """L_inf differs by language, and a group-level indicator explains part of it."""
    rng = np.random.default_rng(51)
    languages = [f"l{i}" for i in range(8)]
    script = np.array([0, 0, 0, 0, 1, 1, 1, 1], dtype=float)
    floor = 1.5 * np.exp(0.3 * script + 0.05 * rng.standard_normal(8))
    x = np.tile(np.geomspace(1e6, 1e10, 6), 8)
    code = np.repeat(np.arange(8), 6)
    loss = (floor[code] + (1e5 / x) ** 0.3) * np.exp(rng.normal(0, 0.01, x.size))
    frame = pd.DataFrame(
        {"x": x, "loss": loss, "language": np.array(languages)[code], "script": script[code]}
    )
    pooling = bs.Pooling("L_inf", "language", covariates=("script",), centered=True)
    fit = bs.fit(
        frame, "power_law_floor", y="loss", pool=[pooling], seed=9, target_accept=0.95, **FAST
    )
    assert_covers(fit, {"L_inf_script": 0.3, "alpha": 0.3, "x0": 1e5})


def test_right_censored_runs_are_used_not_dropped():
    """Runs stopped early record a loss the finished run would have been below: the true loss
    is at most the recorded one (left-censored in loss)."""
    rng = np.random.default_rng(61)
    x = np.geomspace(1e6, 1e10, 16)
    truth = {"L_inf": 1.7, "x0": 1e5, "alpha": 0.3}
    loss = (1.7 + (1e5 / x) ** 0.3) * np.exp(rng.normal(0, 0.01, x.size))
    stopped = np.zeros(x.size, dtype=int)
    stopped[[3, 9, 14]] = -1
    recorded = np.where(stopped == -1, loss * 1.05, loss)  # the early-stopped loss is higher
    frame = pd.DataFrame({"x": x, "loss": recorded, "stopped": stopped})
    fit = bs.fit(frame, "power_law_floor", y="loss", censored="stopped", seed=10, **FAST)
    assert_covers(fit, {**truth, "sigma": 0.01})
    assert fit.datatree["constant_data"]["censoring"].values.tolist() == stopped.tolist()
