"""Fit results: the ArviZ schema, provenance, diagnostics, summaries, lossless save and load."""

import json
import warnings

import arviz_stats
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import bayescale as bs
from bayescale.errors import FitFileError
from bayescale.results import compute_diagnostics, interval_names

GROUPS = [
    "posterior",
    "posterior_predictive",
    "log_likelihood",
    "sample_stats",
    "observed_data",
    "constant_data",
]


def test_datatree_follows_the_arviz_schema(chinchilla_sim_fit):
    tree = chinchilla_sim_fit.datatree
    assert set(GROUPS) <= set(tree.children)
    posterior = tree["posterior"]
    assert set(posterior.data_vars) == {"E", "A", "B", "alpha", "beta", "sigma"}
    assert all(v.dims[:2] == ("chain", "draw") for v in posterior.data_vars.values())
    assert tree["posterior_predictive"]["loss"].dims == ("chain", "draw", "obs")
    assert tree["log_likelihood"]["loss"].dims == ("chain", "draw", "obs")
    assert tree["observed_data"]["loss"].dims == ("obs",)
    assert set(tree["constant_data"].data_vars) == {"N", "D"}
    assert {"diverging", "energy", "lp", "n_steps", "tree_depth", "acceptance_rate"} <= set(
        tree["sample_stats"].data_vars
    )
    assert not any("__" in str(name) for name in posterior.data_vars)


def test_provenance_is_recorded(chinchilla_sim_fit):
    attrs = chinchilla_sim_fit.datatree.attrs
    law = json.loads(attrs["bayescale_law"])
    assert law["formula"] == "E + A / N^alpha + B / D^beta"
    model = json.loads(attrs["bayescale_model"])
    assert model["priors"]["alpha"] == "LogNormal(-1.2039728043259361, 0.8)"
    assert model["observation"] == {"name": "lognormal", "options": {}}
    sampler = json.loads(attrs["bayescale_sampler"])
    assert sampler["seed"] == 11 and sampler["chains"] == 4 and sampler["draws"] == 500
    assert sampler["init"]["starts"] == 32
    data = json.loads(attrs["bayescale_data"])
    assert len(data["sha256"]) == 64 and data["n_runs"] == 42
    versions = json.loads(attrs["bayescale_versions"])
    assert {"python", "jax", "numpyro", "arviz"} <= set(versions)


def test_arviz_functions_work_on_the_datatree(chinchilla_sim_fit):
    tree = chinchilla_sim_fit.datatree
    summary = arviz_stats.summary(tree)
    assert "alpha" in summary.index
    loo = arviz_stats.loo(tree)
    assert np.isfinite(loo.elpd)


def test_summary_and_diagnostics(chinchilla_sim_fit):
    table = chinchilla_sim_fit.summary()
    assert list(table.columns) == [
        "median",
        "q05",
        "q95",
        "mean",
        "sd",
        "r_hat",
        "ess_bulk",
        "ess_tail",
    ]
    assert (table["q05"] <= table["median"]).all() and (table["median"] <= table["q95"]).all()
    diagnostics = chinchilla_sim_fit.diagnostics
    assert diagnostics.converged
    assert diagnostics.max_r_hat == pytest.approx(table["r_hat"].max())
    assert diagnostics.min_ess_bulk == pytest.approx(table["ess_bulk"].min())
    assert diagnostics.divergences == 0
    assert interval_names(0.9) == ("q05", "q95")
    assert interval_names(0.5) == ("q25", "q75")
    assert interval_names(0.95) == ("q2_5", "q97_5")


def test_json_summary_has_the_documented_shape(chinchilla_sim_fit):
    payload = chinchilla_sim_fit.to_dict()
    assert payload["law"] == "chinchilla"
    assert set(payload["parameters"]["alpha"]) == {"median", "q05", "q95", "r_hat", "ess_bulk"}
    assert {"max_r_hat", "min_ess_bulk", "divergences"} <= set(payload["diagnostics"])
    json.dumps(payload)


def test_save_and_load_are_lossless(chinchilla_sim_fit, tmp_path):
    path = chinchilla_sim_fit.save(tmp_path / "fit.nc")
    loaded = bs.load_fit(path)
    xr.testing.assert_identical(loaded.datatree, chinchilla_sim_fit.datatree)
    for group in loaded.datatree.children:
        for name, variable in loaded.datatree[group].data_vars.items():
            assert variable.dtype == chinchilla_sim_fit.datatree[group][name].dtype
    assert loaded.spec.to_dict() == chinchilla_sim_fit.spec.to_dict()
    assert loaded.law.to_dict() == chinchilla_sim_fit.law.to_dict()
    assert [f.name for f in tmp_path.iterdir()] == ["fit.nc"]


def test_reloaded_fit_gives_identical_forecasts_for_the_same_seed(chinchilla_sim_fit, tmp_path):
    loaded = bs.load_fit(chinchilla_sim_fit.save(tmp_path / "fit.nc"))
    point = {"N": 7e10, "D": 1.4e12}
    original = chinchilla_sim_fit.forecast(point, seed=3)
    again = loaded.forecast(point, seed=3)
    np.testing.assert_array_equal(original.predictive, again.predictive)
    np.testing.assert_array_equal(original.curve, again.curve)


def test_failed_save_leaves_no_file(chinchilla_sim_fit, tmp_path, monkeypatch):
    def broken(self, *args, **kwargs):
        path = args[0]
        with open(path, "wb") as handle:
            handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(xr.DataTree, "to_netcdf", broken)
    with pytest.raises(OSError, match="disk full"):
        chinchilla_sim_fit.save(tmp_path / "fit.nc")
    assert list(tmp_path.iterdir()) == []


def test_save_and_load_errors(chinchilla_sim_fit, tmp_path):
    with pytest.raises(FitFileError, match="does not exist"):
        chinchilla_sim_fit.save(tmp_path / "missing" / "fit.nc")
    with pytest.raises(FitFileError, match="not found"):
        bs.load_fit(tmp_path / "nothing.nc")
    bogus = tmp_path / "bogus.nc"
    bogus.write_text("not a netcdf file")
    with pytest.raises(FitFileError, match="cannot read"):
        bs.load_fit(bogus)


def test_diagnostics_fail_loudly_on_a_broken_run(chinchilla_sim_fit):
    tree = chinchilla_sim_fit.datatree.copy(deep=True)
    posterior = tree["posterior"].to_dataset()
    # shift one chain of alpha far away: the chains now disagree
    shifted = posterior["alpha"].values.copy()
    shifted[0] += 1.0
    posterior["alpha"] = (posterior["alpha"].dims, shifted)
    tree["posterior"] = xr.DataTree(posterior)
    stats = tree["sample_stats"].to_dataset()
    diverging = stats["diverging"].values.copy()
    diverging[1, :3] = True
    stats["diverging"] = (stats["diverging"].dims, diverging)
    tree["sample_stats"] = xr.DataTree(stats)
    diagnostics = compute_diagnostics(tree, max_tree_depth=10)
    assert not diagnostics.converged
    assert any("R-hat" in p for p in diagnostics.problems)
    assert any("3 divergent" in p for p in diagnostics.problems)
    assert "THE FIT DID NOT CONVERGE" in diagnostics.message()
    assert diagnostics.advice
    assert not any("centered=" in a for a in diagnostics.advice)  # nothing is pooled

    # with a pooled parameter (its spread in the posterior) the pooling forms are suggested
    posterior["alpha_sd"] = (posterior["alpha"].dims, np.abs(posterior["alpha"].values))
    tree["posterior"] = xr.DataTree(posterior)
    pooled_advice = " ".join(compute_diagnostics(tree, max_tree_depth=10).advice)
    for form in ("centered=True", "centered='auto'", "centered='conditional'", "Gamma(2, 5)"):
        assert form in pooled_advice


def test_non_converged_fit_warns_with_advice():
    import pandas as pd

    frame = pd.DataFrame({"x": [1e6, 1e7, 1e8, 1e9], "loss": [3.0, 2.7, 2.5, 2.4]})
    with pytest.warns(bs.ConvergenceWarning, match="(?s)DID NOT CONVERGE.*What to try"):
        bs.fit(frame, "power_law_floor", y="loss", chains=2, draws=20, warmup=20, seed=0)


def twelve_runs():
    """Twelve simulated runs of a power law with a floor (1% noise), quick to fit."""
    from simulation import simulate

    return simulate(
        "power_law_floor",
        {"x": np.geomspace(1e6, 1e10, 12)},
        {"L_inf": 1.7, "x0": 1e5, "alpha": 0.3},
        0.01,
        seed=4,
    )


def test_the_same_seed_gives_the_same_draws():
    from simulation import FAST

    frame = twelve_runs()
    first = bs.fit(frame, "power_law_floor", y="loss", seed=21, **FAST)
    second = bs.fit(frame, "power_law_floor", y="loss", seed=21, **FAST)
    # identical draws; only the creation time in the attributes differs
    xr.testing.assert_equal(first.datatree["posterior"], second.datatree["posterior"])
    sequential = bs.fit(
        frame, "power_law_floor", y="loss", seed=21, chain_method="sequential", **FAST
    )
    assert sequential.converged
    assert sequential.sampler["chain_method"] == "sequential"


@pytest.mark.parametrize("chain_method", ["vectorized", "sequential"])
def test_the_progress_bar_counts_every_chain_iteration(chain_method, capsys):
    """``progress=True`` shows one bar over all chains' iterations; it ends at chains x
    (warm-up + draws) whether the chains run vectorised (one update advances every chain) or
    one after the other. The draws are those of the same fit without the bar."""
    frame = twelve_runs()
    options = {"seed": 21, "chain_method": chain_method, "chains": 3, "draws": 150, "warmup": 50}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bs.ConvergenceWarning)  # short chains; not checked here
        shown = bs.fit(frame, "power_law_floor", y="loss", progress=True, **options)
        quiet = bs.fit(frame, "power_law_floor", y="loss", **options)
    final = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    assert "NUTS, all chains" in final and "600/600" in final
    xr.testing.assert_allclose(shown.datatree["posterior"], quiet.datatree["posterior"])


def test_sampler_settings_are_validated():
    from bayescale.inference import SamplerSettings

    with pytest.raises(bs.SettingsError, match="chain_method must be one of"):
        SamplerSettings(chain_method="threads")
    with pytest.raises(bs.SettingsError, match="target_accept must lie in"):
        SamplerSettings(target_accept=1.5)
    with pytest.raises(bs.SettingsError, match="draws must be a positive integer"):
        SamplerSettings(draws=0)
    with pytest.raises(bs.SettingsError, match="needs 4 JAX devices"):
        bs.fit(
            pd.DataFrame({"x": [1e6, 1e7], "loss": [3.0, 2.5]}),
            "power_law_floor",
            y="loss",
            chain_method="parallel",
        )
