"""Data-quality pools with repetition (Goyal et al. 2024) and data-constrained scaling
(Muennighoff et al. 2023): the repetition function, the catalog laws against direct
implementations and the authors' published numbers, recovery of known pool parameters through
the command line, mixtures and pool comparisons."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from simulation import LONGER

import bayescale as bs
from bayescale import pools
from bayescale.cli import main
from bayescale.errors import DataError
from bayescale.formula import EXACT_PASSES, NUMPY_OPS, effective_epochs, jax_ops, parse_formula


# ---------------------------------------------------------------------------- direct definitions
def log_gain_by_passes(r: float, tau: float) -> float:
    """log of the repetition factor per unit utility, pass by pass (the definition): pass k + 1
    covers samples k S .. min((k + 1) S, n) and has utility weight 0.5^(k / tau)."""
    total = 0.0
    for k in range(1, math.floor(r) + 1):
        total += 0.5 ** (k / tau) * math.log(min(k + 1, r) / k)
    return total


def goyal_error(n, S, a, b, tau, d):
    """Goyal et al.'s error with the floor added last, written as a product over passes."""
    first = (a * min(n, S) / 1e5) ** b
    factor = 1.0
    for k in range(1, math.floor(n / S) + 1):
        factor *= (min(S * (k + 1), n) / (S * k)) ** (b * 0.5 ** (k / tau))
    return d + first * factor


# ---------------------------------------------------------------------------- effective_epochs
@pytest.mark.parametrize("tau", [0.5, 1.0, 3.0, 10.0, 40.0, 300.0, 1e5])
def test_effective_epochs_matches_the_pass_by_pass_product(tau):
    """Exact (1e-12) while all passes are summed term by term (r <= EXACT_PASSES + 1); beyond,
    the closed-form tail keeps the log within 2e-5 of the definition (the bound stated in the
    docstring; the worst case measured over this grid is about 1e-5)."""
    exact = np.array([0.2, 1.0, 1.5, 2.0, 7.25, 33.0, 64.0, 65.0])
    far = np.array([65.5, 100.0, 428.0, 3000.0, 2e4])
    for values, tolerance in ((exact, 1e-12), (far, 2e-5)):
        ours = np.log(effective_epochs(values, tau))
        direct = np.array([math.log(min(r, 1.0)) + log_gain_by_passes(r, tau) for r in values])
        np.testing.assert_allclose(ours, direct, rtol=0, atol=tolerance)
    assert EXACT_PASSES == 64


def test_effective_epochs_limits():
    r = np.array([0.3, 1.0, 4.0, 50.0, 5000.0])
    # without decay every pass counts in full
    np.testing.assert_allclose(effective_epochs(r, 1e12), r, rtol=1e-6)
    # within the first pass nothing is repeated
    assert effective_epochs(0.3, 0.5) == pytest.approx(0.3, rel=1e-15)
    # with decay, more passes always help, but less and less: a finite limit
    values = effective_epochs(np.array([2.0, 10.0, 100.0, 1e4, 1e6]), 3.0)
    assert np.all(np.diff(values) >= 0) and values[-1] == pytest.approx(values[-2], rel=1e-9)


def test_effective_epochs_in_jax_agrees_and_has_finite_gradients():
    r = np.array([0.5, 1.0, 3.0, 65.0, 80.5, 3000.0])
    with jax.enable_x64(True):
        ops = jax_ops()
        ours = np.asarray(ops.effective_epochs(jnp.asarray(r), 4.0))
        grads = jax.grad(lambda t: jnp.sum(jnp.log(ops.effective_epochs(jnp.asarray(r), t))))(4.0)
        grad_r = jax.vmap(jax.grad(lambda x: ops.effective_epochs(x, 4.0)))(jnp.asarray(r))
    np.testing.assert_allclose(ours, effective_epochs(r, 4.0), rtol=1e-12)
    assert np.isfinite(float(grads)) and float(grads) > 0  # a longer half-life helps
    assert np.all(np.isfinite(np.asarray(grad_r))) and np.all(np.asarray(grad_r) >= 0)


def test_effective_epochs_is_a_whitelisted_positive_formula_function():
    formula = parse_formula(
        "(a * S * effective_epochs(n / S, tau) / 1e5)^b", ["a", "S", "n", "tau", "b"]
    )
    values = {"a": 0.02, "S": 1e8, "n": 5e8, "tau": 3.0, "b": -0.1}
    assert formula.is_positive(["a", "S", "n", "tau"])
    direct = formula.evaluate(values, ops=NUMPY_OPS)
    stable = formula.evaluate_log(values, positive=["a", "S", "n", "tau"], ops=NUMPY_OPS)
    assert stable == pytest.approx(math.log(direct), rel=1e-12)
    with pytest.raises(bs.FormulaError, match="takes 2 argument"):
        parse_formula("effective_epochs(n)", ["n"])


# ---------------------------------------------------------------------------- the catalog laws
def test_pool_repetition_law_is_the_pass_by_pass_error():
    law = bs.get_law("pool_repetition")
    theta = {"a": 0.025, "b": -0.16, "tau": 6.7, "d": 0.1}
    for n, S in [(3e8, 1e9), (1e9, 1e9), (1.3e10, 4e8), (3.4e10, 8e7), (1e12, 1e7)]:
        ours = law.mean({"n": n, "S": S}, theta, ops=NUMPY_OPS)
        assert ours == pytest.approx(goyal_error(n, S, **theta), rel=5e-6)


def test_data_constrained_law_reproduces_the_authors_numbers():
    """The two predictions printed in the datablations README with the published C4 fit."""
    law = bs.get_law("data_constrained")
    published = law.published["muennighoff2023"]
    theta = {
        "E": math.exp(0.6254804),
        "A": math.exp(6.255414),
        "B": math.exp(7.3049974),
        "alpha": published["alpha"],
        "beta": published["beta"],
        "R_D_star": published["R_D_star"],
        "R_N_star": published["R_N_star"],
    }
    better = law.mean({"N": 6.34e9, "D": 242e9, "U": 25e9}, theta, ops=NUMPY_OPS)
    worse = law.mean({"N": 8.67e9, "D": 178e9, "U": 25e9}, theta, ops=NUMPY_OPS)
    assert better == pytest.approx(2.2256440889984477, rel=1e-12)
    assert worse == pytest.approx(2.2269634075087867, rel=1e-12)
    # without repetition it is Chinchilla's law
    chinchilla = bs.get_law("chinchilla").mean(
        {"N": 1e9, "D": 2e10},
        {k: theta[k] for k in ("E", "A", "B", "alpha", "beta")},
        ops=NUMPY_OPS,
    )
    n_opt_of_u = law.mean({"N": 1e9, "D": 2e10, "U": 2e10}, theta, ops=NUMPY_OPS)
    assert n_opt_of_u == pytest.approx(chinchilla, rel=1e-12)


# ---------------------------------------------------------------------------- recovery
POOLS = ["p1", "p2", "p3", "p4"]
SIZES = {"p1": 5e7, "p2": 2e8, "p3": 1e9, "p4": 4e9}
TRUTH = {
    "a": 0.02,
    "d": 0.15,
    "b": {"p1": -0.20, "p2": -0.16, "p3": -0.12, "p4": -0.09},
    "tau": {"p1": 3.0, "p2": 6.0, "p4": 10.0, "p3": 4.0},
}
BUDGETS = np.geomspace(1e8, 3e10, 6)


@pytest.fixture(scope="module")
def simulated_pools(tmp_path_factory):
    rng = np.random.default_rng(2024)
    rows = []
    for pool in POOLS:
        for n in BUDGETS:
            error = goyal_error(
                n, SIZES[pool], TRUTH["a"], TRUTH["b"][pool], TRUTH["tau"][pool], TRUTH["d"]
            )
            rows.append(
                {
                    "pool": pool,
                    "samples": n,
                    "size": SIZES[pool],
                    "err": error * math.exp(0.01 * rng.standard_normal()),
                }
            )
    path = tmp_path_factory.mktemp("pools") / "runs.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def pools_fit(simulated_pools, tmp_path_factory):
    """Fitted through the command line: b and tau pooled over pools with --group, each pool
    centred as far as its runs pin it (--centered b=auto: the centrings came out 0.999 to 1 for
    b and 0.73 to 0.98 for tau), with fit_pools' boundary-avoiding spread prior and 4 x 1000
    draws. Measured through fit_pools with the same data, seed and settings: R-hat 1.007, bulk
    ESS 657, no divergence; with the default HalfNormal(0.5) spreads R-hat 1.0055, ESS 674 and
    3 divergences (at tau_sd near 0.02, the funnel's neck), and at 4 x 500 draws with the
    Gamma prior R-hat 1.0098, too close to the 1.01 gate."""
    out = tmp_path_factory.mktemp("fits") / "pools.nc"
    status = main(
        [
            "fit", str(simulated_pools), "--law", "pool_repetition", "--y", "err",
            "--x", "n=samples", "--x", "S=size", "--group", "b=pool", "--group", "tau=pool",
            "--centered", "b=auto", "--centered", "tau=auto",
            "--prior", f"b_sd={pools.SPREAD_PRIOR}", "--prior", f"tau_sd={pools.SPREAD_PRIOR}",
            "--chains", str(LONGER["chains"]), "--draws", str(LONGER["draws"]),
            "--warmup", str(LONGER["warmup"]), "--seed", "3", "--target-accept", "0.99",
            "--out", str(out),
        ]
    )  # fmt: skip
    assert status == 0
    return bs.load_fit(out)


def test_fit_pools_gives_spreads_the_boundary_avoiding_prior_unless_overridden(monkeypatch):
    """fit_pools' pooling and priors, as passed on to bayescale.fit: every spread gets
    SPREAD_PRIOR (with a model column a_sd and d_sd too), and a user's prior wins."""
    passed = {}
    monkeypatch.setattr(pools, "fit_law", lambda data, law, **kwargs: passed.update(kwargs))
    pools.fit_pools("runs.csv", y="err", model="arch", priors={"tau_sd": "HalfNormal(0.3)"})
    assert [(p.parameter, p.group) for p in passed["pool"]] == [
        ("b", "pool"), ("tau", "pool"), ("a", "arch"), ("d", "arch")
    ]  # fmt: skip
    assert passed["priors"] == {
        "b_sd": pools.SPREAD_PRIOR,
        "tau_sd": "HalfNormal(0.3)",
        "a_sd": pools.SPREAD_PRIOR,
        "d_sd": pools.SPREAD_PRIOR,
    }


def test_pool_parameters_are_recovered(pools_fit):
    """Each pool's utility and half-life, and the shared a and d, lie inside their central 99%
    intervals (seeded data and sampler; a calibrated posterior misses one of these 11 intervals
    with probability about 0.1); the 90% intervals of the utilities cover 3 or 4 of 4."""
    assert pools_fit.converged
    table = pools_fit.summary(0.99)
    for name in ("a", "d"):
        assert table.loc[name, "q0_5"] <= TRUTH[name] <= table.loc[name, "q99_5"], name
    for name in ("b", "tau"):
        for pool in POOLS:
            row = table.loc[f"{name}[{pool}]"]
            assert row["q0_5"] <= TRUTH[name][pool] <= row["q99_5"], (name, pool)
    ninety = pools_fit.summary(0.9)
    covered = sum(
        ninety.loc[f"b[{p}]", "q05"] <= TRUTH["b"][p] <= ninety.loc[f"b[{p}]", "q95"] for p in POOLS
    )
    assert covered >= 3
    assert {"b_pop", "b_sd", "tau_pop", "tau_sd"} <= set(pools_fit.datatree["posterior"].data_vars)


def test_pool_predictions_cover_the_true_curve(pools_fit):
    """Posterior predictive check: 90% intervals of the expected error at new budgets, beyond the
    fitted range, contain the true error for most pools (the truth is one draw of the data
    process, so an interval may miss; at least 3 of 4 must cover at each budget)."""
    budgets = [5e10, 1e11]
    for n in budgets:
        covered = 0
        for pool in POOLS:
            row = pools.pool_error(pools_fit, pool, n).iloc[0]
            truth = goyal_error(
                n, SIZES[pool], TRUTH["a"], TRUTH["b"][pool], TRUTH["tau"][pool], TRUTH["d"]
            )
            covered += row["q05"] <= truth <= row["q95"]
            assert row["passes"] == pytest.approx(n / SIZES[pool])
        assert covered >= 3
    # observed runs inside their 90% posterior predictive intervals
    predictive = pools_fit.datatree["posterior_predictive"]["err"].values.reshape(-1, 24)
    observed = pools_fit.datatree["observed_data"]["err"].values
    low, high = np.quantile(predictive, [0.05, 0.95], axis=0)
    share = np.mean((observed >= low) & (observed <= high))
    assert 0.75 <= share <= 1.0


def test_mixtures_follow_the_effective_utility(pools_fit):
    """A mixture's error, computed draw by draw, equals the pass-by-pass product with the
    share-weighted mean of the decayed utilities; a one-pool mixture is the pool itself."""
    single = pools.pool_error(pools_fit, "p2", [1e9, 1e10])
    as_mixture = pools.mixture_error(pools_fit, {"p2": 3.0}, [1e9, 1e10])
    pd.testing.assert_frame_equal(single, as_mixture)

    theta = pools_fit.parameter_draws()
    labels = pools_fit.group_labels("pool")
    i, j = labels.index("p1"), labels.index("p3")
    n, shares = 2e10, {"p1": 0.25, "p3": 0.75}
    unique = SIZES["p1"] + SIZES["p3"]
    expected = []
    for draw in range(0, theta["a"].shape[0], 400):
        a, d = theta["a"][draw], theta["d"][draw]
        b = {"p1": theta["b"][draw, i], "p3": theta["b"][draw, j]}
        tau = {"p1": theta["tau"][draw, i], "p3": theta["tau"][draw, j]}
        first = sum(shares[p] * b[p] for p in shares)
        error = (a * min(n, unique) / 1e5) ** first
        for k in range(1, math.floor(n / unique) + 1):
            b_k = sum(shares[p] * b[p] * 0.5 ** (k / tau[p]) for p in shares)
            error *= (min(unique * (k + 1), n) / (unique * k)) ** b_k
        expected.append(d + error)
    draws = pools._Draws(pools_fit, None)
    ours = pools._error_draws(draws, pools.pool_sizes(pools_fit), shares, np.array([n]), None)
    np.testing.assert_allclose(ours[::400, 0], expected, rtol=1e-4)


def test_prob_better_and_best_choice(pools_fit):
    """p1 (best utility, 5e7 samples) wins at small budgets and loses once it has been repeated
    hundreds of times; the probabilities say so and each row of best_choice sums to 1."""
    table = pools.prob_better(pools_fit, "p1", "p4", [1e8, 3e10])
    assert table["prob_first_better"].iloc[0] > 0.95
    assert table["prob_first_better"].iloc[1] < 0.05
    best = pools.best_choice(pools_fit, POOLS + [{"p1": 1, "p4": 1}], [1e8, 3e10])
    np.testing.assert_allclose(best.sum(axis=1), 1.0)
    assert best.loc[1e8, "p1"] > 0.9
    assert list(best.columns)[-1] == "1 p1 + 1 p4"


def test_pool_functions_refuse_bad_requests(pools_fit):
    with pytest.raises(DataError, match="unknown pool 'nope'"):
        pools.pool_error(pools_fit, "nope", 1e9)
    with pytest.raises(DataError, match="positive"):
        pools.pool_error(pools_fit, "p1", [-1.0])
    with pytest.raises(DataError, match="share of pool 'p1'"):
        pools.mixture_error(pools_fit, {"p1": 0.0, "p2": 1.0}, 1e9)
    with pytest.raises(DataError, match="single model"):
        pools.pool_error(pools_fit, "p1", 1e9, model="ViT")
    with pytest.raises(DataError, match="at least two"):
        pools.best_choice(pools_fit, ["p1"], 1e9)
