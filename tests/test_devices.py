"""Chains and batches over several JAX CPU devices (:func:`bayescale.use_cpu_devices`).

JAX fixes its devices at its first computation, so the multi-device fits run in a fresh Python
process that splits the CPU into 4 devices, and are compared here with the same fits on this
process's devices:

* a single fit with ``chain_method="auto"`` runs its chains in parallel (one device each) and
  gives the posterior that vectorised chains give, within Monte Carlo error (4 x 1,000 draws:
  with 4 x 500 the parallel fit's R-hat was 1.011 with seed 3, over the 1.01 gate);
* a batch split over the devices gives every curve the posterior it gets on one device.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from posterior_agreement import assert_same_posterior
from simulation import LONGER, simulate
from test_batch import SAMPLER, curves_frame

import bayescale as bs
from bayescale.inference import SamplerSettings, resolve_chain_method

TESTS = Path(__file__).resolve().parent

FOUR_DEVICES = """
import json
import bayescale as bs
devices = bs.use_cpu_devices(4)
from test_batch import SAMPLER, curves_frame
from test_devices import LONGER, single_curve
single = bs.fit(single_curve(), "power_law_floor", y="loss", seed=3, **LONGER)
batch = bs.fit_batch(curves_frame(seed=70), "power_law_floor", by="task", y="loss", seed=5,
                     **SAMPLER)
single.save("{folder}/single.nc")
for label, fit in batch.fits.items():
    fit.save(f"{folder}/batch_{{label}}.nc")
print(json.dumps({{"devices": devices, "single": single.sampler["chain_method_used"],
                   "batch_devices": batch["small"].sampler["batch"]["devices"]}}))
"""
"""Run in a fresh Python inside tests/ (so that the test helpers import)."""


def single_curve():
    return simulate(
        "power_law_floor",
        {"x": np.geomspace(1e6, 1e10, 12)},
        {"L_inf": 1.7, "x0": 1e5, "alpha": 0.3},
        0.01,
        seed=4,
    )


@pytest.fixture(scope="module")
def four_devices(tmp_path_factory):
    folder = tmp_path_factory.mktemp("devices")
    completed = subprocess.run(
        [sys.executable, "-c", FOUR_DEVICES.format(folder=folder)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=TESTS,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1]), folder


def test_auto_runs_chains_in_parallel_with_a_device_each(four_devices):
    report, folder = four_devices
    assert report == {"devices": 4, "single": "parallel", "batch_devices": 3}
    parallel = bs.load_fit(folder / "single.nc")
    assert parallel.converged
    vectorised = bs.fit(single_curve(), "power_law_floor", y="loss", seed=3, **LONGER)
    assert vectorised.sampler["chain_method_used"] == "vectorized"
    assert_same_posterior(parallel, vectorised)


def test_a_batch_split_over_devices_gives_each_curve_its_posterior(four_devices):
    _, folder = four_devices
    one_device = bs.fit_batch(
        curves_frame(seed=70), "power_law_floor", by="task", y="loss", seed=5, **SAMPLER
    )
    assert one_device["small"].sampler["batch"]["devices"] == 1
    for label, fit in one_device.fits.items():
        split = bs.load_fit(folder / f"batch_{label}.nc")
        assert split.converged and fit.converged
        assert_same_posterior(split, fit)


def test_auto_falls_back_to_vectorised_chains_without_a_device_each():
    available = len(jax.devices("cpu"))
    assert resolve_chain_method(SamplerSettings(chains=available)) == "parallel"
    assert resolve_chain_method(SamplerSettings(chains=available + 1)) == "vectorized"
    assert resolve_chain_method(SamplerSettings(chain_method="sequential")) == "sequential"
    with pytest.raises(bs.SettingsError, match=f"needs {available + 1} JAX devices"):
        resolve_chain_method(SamplerSettings(chains=available + 1, chain_method="parallel"))


def test_use_cpu_devices_refuses_bad_counts_and_late_calls():
    for bad in (0, -2, 2.5, True, "4"):
        with pytest.raises(bs.SettingsError, match="count must be a positive integer"):
            bs.use_cpu_devices(bad)
    jax.numpy.ones(1).block_until_ready()  # JAX has computed: its devices are fixed
    with pytest.raises(bs.SettingsError, match="came too late"):
        bs.use_cpu_devices(4)
