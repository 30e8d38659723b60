"""Pooling with ``centered="auto"``: each group's centring read off the posterior mode.

The exact case: one pooled level per group, observed with log-normal noise, with the population
value, the spread and the noise held fixed. Group ``j`` with ``n[j]`` runs then has the normal
likelihood of its mean log outcome, and in the non-centred coordinate ``z[j]`` the negative log
density has the second derivative ``1 + tau^2 n[j] / sigma^2`` everywhere, so the centring
bayescale must find is ``tau^2 n[j] / (sigma^2 + tau^2 n[j])`` (Papaspiliopoulos, Roberts &
Skold 2007), and the posterior mode of each group is the precision-weighted mean of its runs
and the population value.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from posterior_agreement import assert_same_posterior
from simulation import LONGER, simulate

import bayescale as bs
from bayescale.data import load_runs
from bayescale.errors import PriorError, SettingsError
from bayescale.inference import multistart_init
from bayescale.model import Design, ModelSpec

LEVEL = bs.Law.from_formula(
    "level",
    "m * (x / x)",
    inputs=["x"],
    parameters={"m": "LogNormal(0, 1)"},
    title="A constant level (test law)",
)
RUNS_PER_GROUP = {"one": 1, "few": 4, "many": 100}
POPULATION, SPREAD, NOISE = 2.0, 0.2, 0.5


def level_frame() -> pd.DataFrame:
    """Runs of three groups (1, 4 and 100 runs) around their levels (seeded)."""
    rng = np.random.default_rng(0)
    rows = []
    for group, count in RUNS_PER_GROUP.items():
        level = POPULATION * np.exp(SPREAD * rng.standard_normal())
        for run in range(count):
            rows.append(
                {"x": run + 1.0, "g": group, "y": level * np.exp(NOISE * rng.standard_normal())}
            )
    return pd.DataFrame(rows)


def level_problem():
    """The runs of :func:`level_frame`, and the model with everything but the group levels
    fixed."""
    frame = level_frame()
    spec = ModelSpec.create(
        LEVEL,
        priors={
            "m": f"Fixed({POPULATION})",
            "m_sd": f"Fixed({SPREAD})",
            "sigma": f"Fixed({NOISE})",
        },
        pool=[bs.Pooling("m", "g", centered="auto")],
    )
    runs = load_runs(frame, law=LEVEL, y="y", groups=["g"])
    return frame, spec, Design.from_runs(runs, spec)


def test_centrings_and_mode_match_the_normal_model():
    frame, spec, design = level_problem()
    with jax.enable_x64(True):
        starts = multistart_init(spec, design, jax.random.PRNGKey(0), 4, 2)
        labels = list(design.group_labels["g"])
        counts = np.array([RUNS_PER_GROUP[label] for label in labels])
        information = SPREAD**2 * counts / NOISE**2
        np.testing.assert_allclose(
            starts.centrings["m"], information / (1 + information), rtol=1e-5
        )
        assert starts.centrings["m"][labels.index("one")] < 0.2
        assert starts.centrings["m"][labels.index("many")] > 0.9

        # The non-centred optimum carried into the partially centred coordinates is that
        # model's mode too (the hyperparameters are fixed, so the change of coordinates is
        # linear): the gradient vanishes, and the group levels are the normal model's.
        centre = starts.coordinates.centre
        gradient = jax.grad(starts.coordinates.density.potential)(jnp.asarray(centre))
        assert np.max(np.abs(np.asarray(gradient))) < 1e-4
        log_levels = np.asarray(starts.coordinates.postprocess(np.zeros(centre.size))["m__link"])
    for label, log_level in zip(labels, log_levels, strict=True):
        logs = np.log(frame.loc[frame["g"] == label, "y"].to_numpy())
        precision = 1 / SPREAD**2 + logs.size / NOISE**2
        expected = (np.log(POPULATION) / SPREAD**2 + logs.sum() / NOISE**2) / precision
        assert log_level == pytest.approx(expected, abs=1e-5), label


def test_auto_centring_samples_the_same_posterior_as_the_centred_form():
    """Six families of six runs and one family of a single run, alpha pooled; the centred fit
    (the form for groups that pin their values) and the auto-centred fit agree within Monte
    Carlo error, and the auto fit records its centrings: high for the six-run families, lowest
    for the one-run family."""
    rng = np.random.default_rng(12)
    families = ["a", "b", "c", "d", "e", "f", "solo"]
    alphas = 0.3 * np.exp(0.25 * rng.standard_normal(len(families)))
    counts = [6, 6, 6, 6, 6, 6, 1]
    x = np.concatenate([np.geomspace(1e6, 1e9, 6)[:count] for count in counts])
    code = np.repeat(np.arange(len(families)), counts)
    frame = simulate(
        "power_law_floor",
        {"x": x},
        {"L_inf": 1.5, "x0": 1e5, "alpha": alphas[code]},
        0.01,
        seed=13,
        groups={"family": np.array(families)[code]},
    )
    fits = {
        form: bs.fit(
            frame,
            "power_law_floor",
            y="loss",
            seed=5,
            target_accept=0.95,
            pool=[bs.Pooling("alpha", "family", centered=form)],
            **LONGER,
        )
        for form in (True, "auto")
    }
    assert_same_posterior(fits[True], fits["auto"])
    centrings = dict(zip(families, fits["auto"].sampler["centrings"]["alpha"], strict=True))
    assert min(centrings[f] for f in families[:6]) > centrings["solo"]
    assert "centrings" not in fits[True].sampler
    assert fits["auto"].spec.pooling[0].centered == "auto"  # saved and read back as given


def test_pooling_forms_are_validated_and_round_trip():
    auto = bs.Pooling("alpha", "language", centered="auto")
    assert auto.auto_centred and not auto.fully_centred
    assert str(auto) == "alpha|language (centring from the data)"
    assert bs.Pooling.from_dict(auto.to_dict()) == auto
    assert bs.Pooling("alpha", "language", centered=np.True_).centered is True
    with pytest.raises(
        PriorError, match="centered must be True, False, 'auto' or 'conditional', not 'yes'"
    ):
        bs.Pooling("alpha", "language", centered="yes")


def test_backends_without_auto_centring_refuse_it():
    frame, _, _ = level_problem()
    pool = [bs.Pooling("m", "g", centered="auto")]
    with pytest.raises(SettingsError, match="numpyro backend only"):
        bs.fit(frame, LEVEL, y="y", pool=pool, backend="pymc")
    with pytest.raises(SettingsError, match="not available in batched fits"):
        bs.fit_batch(frame.assign(curve="c1"), LEVEL, by="curve", y="y", pool=pool)
