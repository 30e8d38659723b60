"""``bs.fit``'s compiled programs take the data as an argument (:mod:`bayescale.density`).

A refit of data of the same shapes (other outcomes, other group labels, another seed) runs the
programs already compiled, and gives exactly the draws that freshly compiled programs give; a
specification that differs in anything but the data (here one prior) compiles its own.
Compilations are counted with JAX's monitoring events, independently of the count each fit
records about itself (``fit.sampler["compilations"]``).

The runs are padded to a bucket size (:meth:`bayescale.model.Design.padded`), so another number
of runs in the same bucket is a refit of the same shapes too; the padded density equals the
unpadded one at random points, for every kind of run-level data the model reads.
"""

from __future__ import annotations

import jax
import numpy as np
import pandas as pd
import pytest
from simulation import FAST, simulate
from test_conditional_centring import POWER_LAW

import bayescale as bs
from bayescale.data import load_runs
from bayescale.density import Density
from bayescale.inference import COMPILE_EVENT
from bayescale.model import Design, ModelSpec, bucket_size

RUNS_PER_GROUP = 7  # a shape no other test fits, so that the first fit here compiles


def curves(seed: int, labels=("a", "b", "c"), runs_per_group: int = RUNS_PER_GROUP):
    """Three curves of ``power_law_floor`` with their own exponents (alpha pooled)."""
    rng = np.random.default_rng(seed)
    alphas = 0.3 * np.exp(0.2 * rng.standard_normal(len(labels)))
    code = np.repeat(np.arange(len(labels)), runs_per_group)
    x = np.tile(np.geomspace(1e6, 1e9, runs_per_group), len(labels))
    return simulate(
        "power_law_floor",
        {"x": x},
        {"L_inf": 1.5, "x0": 1e5, "alpha": alphas[code]},
        0.01,
        seed=seed,
        groups={"family": np.array(labels)[code]},
    )


def fit(frame, seed: int, priors=None):
    """alpha pooled in the centred form (so the optimisation runs on the non-centred twin, a
    second program), its spread fixed: with three groups and a free spread the centred form
    has divergences (1 to 5 with seeds 0 and 1, measured), which this test is not about."""
    return bs.fit(
        frame,
        "power_law_floor",
        y="loss",
        seed=seed,
        pool=[bs.Pooling("alpha", "family", centered=True)],
        priors={"alpha_sd": "Fixed(0.2)", **(priors or {})},
        **FAST,
    )


class CompileCounter:
    def __init__(self):
        self.durations: list[float] = []

    def __call__(self, event, duration, **_):
        if event == COMPILE_EVENT:
            self.durations.append(duration)

    def __enter__(self):
        jax.monitoring.register_event_duration_secs_listener(self)
        return self.durations

    def __exit__(self, *_):
        jax.monitoring.unregister_event_duration_listener(self)


@pytest.fixture(scope="module")
def first_fit():
    with CompileCounter() as compiled:
        result = fit(curves(1), seed=0)
    return result, compiled


def test_the_first_fit_of_a_structure_compiles_and_records_it(first_fit):
    result, compiled = first_fit
    # the two value-and-gradient programs (the centred pooling is optimised non-centred), the
    # chains and the draws after sampling, among the small programs of the set-up
    assert len(compiled) >= 4
    assert result.sampler["compilations"] == len(compiled)
    assert result.sampler["compile_seconds"] == pytest.approx(sum(compiled), abs=2e-3)


def test_a_refit_of_the_same_shapes_compiles_nothing_and_matches_fresh_programs(first_fit):
    """Other outcomes, other labels and another seed: no compilation. After JAX's caches are
    cleared, the same fit compiles again and its draws are identical: the cached programs
    computed exactly what programs compiled for these data compute."""
    first, _ = first_fit
    frame = curves(2, labels=("x", "y", "z"))
    with CompileCounter() as compiled:
        again = fit(frame, seed=3)
    assert compiled == []
    assert again.sampler["compilations"] == 0 and again.sampler["compile_seconds"] == 0
    assert again.group_labels("family") == ["x", "y", "z"]
    cached_draws = again.datatree["posterior"]["alpha"].values
    assert not np.array_equal(cached_draws, first.datatree["posterior"]["alpha"].values)

    jax.clear_caches()
    with CompileCounter() as compiled:
        fresh = fit(frame, seed=3)
    assert len(compiled) >= 4
    np.testing.assert_array_equal(fresh.datatree["posterior"]["alpha"].values, cached_draws)
    np.testing.assert_array_equal(
        fresh.datatree["log_likelihood"]["loss"].values,
        again.datatree["log_likelihood"]["loss"].values,
    )


def test_a_different_prior_compiles_its_own_programs(first_fit):
    """The same data with a much tighter prior on the population exponent: not the cached
    programs (they would sample the first prior), so it compiles, and its posterior of the
    population exponent is far narrower."""
    first, _ = first_fit
    with CompileCounter() as compiled:
        tight = fit(curves(1), seed=0, priors={"alpha": "LogNormal(log(0.3), 0.01)"})
    assert len(compiled) >= 4
    population = "alpha_pop"
    sd_first = float(first.datatree["posterior"][population].std())
    sd_tight = float(tight.datatree["posterior"][population].std())
    assert sd_tight < 0.2 * sd_first


def test_another_number_of_groups_compiles():
    with CompileCounter() as compiled:
        fit(curves(4, labels=("a", "b", "c", "d")), seed=0)
    assert len(compiled) >= 4


def test_another_number_of_runs_in_the_same_bucket_compiles_nothing(first_fit):
    """21 runs, then 24: both padded to 32 rows, so the second fit runs the first one's
    programs; its results hold its own 24 runs and nothing of the padding."""
    first, _ = first_fit
    assert first.sampler["padded_runs"] == bucket_size(3 * RUNS_PER_GROUP) == 32
    with CompileCounter() as compiled:
        more = fit(curves(5, runs_per_group=RUNS_PER_GROUP + 1), seed=1)
    assert compiled == []
    assert more.sampler["compilations"] == 0 and more.sampler["padded_runs"] == 32
    for group in ("log_likelihood", "posterior_predictive", "observed_data"):
        assert more.datatree[group]["loss"].sizes["obs"] == 3 * (RUNS_PER_GROUP + 1), group
    assert np.all(np.isfinite(more.datatree["log_likelihood"]["loss"].values))


def _frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = np.geomspace(1e6, 1e10, n)
    return pd.DataFrame(
        {
            "x": x,
            "loss": (1.5 + (1e5 / x) ** 0.3) * np.exp(rng.normal(0, 0.05, n)),
            "g": np.array(["a", "b", "c"])[np.arange(n) % 3],
            "z": rng.normal(size=n),
            "stopped": np.r_[1, np.zeros(n - 2, int), -1],
            "N": x,
            "chance": np.full(n, 0.25),
            "trials": np.full(n, 200),
            "accuracy": rng.integers(60, 180, n) / 200,
        }
    )


PADDED_MODELS = {
    # the group values' conditional centring sums each group's runs: padding must not pull
    "conditional centring": (
        POWER_LAW,
        {"pool": [bs.Pooling("A", "g", centered="conditional")]},
        {"y": "loss", "groups": ["g"]},
    ),
    "censored runs and a covariate": (
        "power_law_floor",
        {"regress": {"x0": ["z"]}},
        {"y": "loss", "censored": "stopped", "covariates": ["z"]},
    ),
    "random-walk discrepancy (one joint density per curve)": (
        "power_law_floor",
        {"observation": "lognormal_walk", "pool": [bs.Pooling("alpha", "g")]},
        {"y": "loss", "groups": ["g"]},
    ),
    "beta-binomial counts": (
        "mc_accuracy_cloglog",
        {"observation": "beta_binomial"},
        {"y": "accuracy", "trials": "trials"},
    ),
}


@pytest.mark.parametrize("name", list(PADDED_MODELS))
def test_padded_runs_leave_the_density_unchanged(name):
    law, create, columns = PADDED_MODELS[name]
    spec = ModelSpec.create(law, **create)
    runs = load_runs(_frame(11), law=spec.law, **columns)
    design = Design.from_runs(runs, spec)
    with jax.enable_x64(True):
        plain = Density.of(spec, design).laid_out()
        padded = Density.of(spec, design.padded(bucket_size(11))).laid_out()
        assert padded.layout == plain.layout
        dimension = sum(int(np.prod(shape)) for _, shape in plain.layout)
        points = np.random.default_rng(1).normal(0, 0.5, (5, dimension))
        for point in points:
            expected, got = plain.potential(point), padded.potential(point)
            assert np.isfinite(expected)
            assert float(got) == pytest.approx(float(expected), rel=1e-12, abs=1e-9)
            np.testing.assert_allclose(
                jax.grad(padded.potential)(point),
                jax.grad(plain.potential)(point),
                rtol=1e-10,
                atol=1e-9,
            )
