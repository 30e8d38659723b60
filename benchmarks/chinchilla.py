"""Benchmark (a): Chinchilla on Epoch AI's 240 runs, bayescale against PyMC.

Run from the repository root::

    python -m benchmarks.chinchilla            # full: 4 chains x 1000 draws, and the geometry table
    python -m benchmarks.chinchilla --quick    # 4 chains x 500 draws, no geometry table

The data are the 245 digitised Chinchilla runs embedded in bayescale with the 5 highest-loss runs
dropped, as Besiroglu et al. (2024) did. The model is the catalog's ``chinchilla`` law with the
default log-normal observation model. Three samplers run the same model one after the other in
this process: bayescale's (numpyro NUTS, multi-start initialisation, dense mass matrix), PyMC's
default NUTS and PyMC with numpyro's NUTS (both on :func:`bayescale.backends.pymc.pymc_model`).
bayescale runs twice: with its default target acceptance 0.9, and with PyMC's and numpyro's
default 0.8 (a like-for-like step-size target; fewer leapfrog steps per draw). A last row,
"pymc hand-rolled", samples the same law with PyMC's default sampler but with every coefficient
defined at input 1, as the papers write it (the model a user would write by hand); the ratios
in the table are against PyMC on bayescale's own coordinates, and two lines after the table give
bayescale's ratio against the hand-rolled model.

The geometry table then fits the same data with bayescale with and without the reference-scale
coordinates of the coefficients and with and without the dense mass matrix, and reports leapfrog
steps per draw.
"""

from __future__ import annotations

import dataclasses

import bayescale as bs
from bayescale.data import load_runs
from bayescale.inference import SamplerSettings
from bayescale.laws import Law
from bayescale.model import ModelSpec
from benchmarks.common import measure_bayescale, measure_pymc, parse_args, parser, report

PROBLEM = "(a) chinchilla 240"
HAND_ROLLED = "pymc hand-rolled"
"""PyMC's default sampler on the law as papers write it, every coefficient defined at input 1
(what a user writing the model from the paper would sample), instead of bayescale's coordinates."""


def epoch_runs(law=None):
    """The 240 runs: the embedded 245 without the 5 highest losses."""
    frame = bs.datasets.chinchilla()
    frame = frame.drop(frame["loss"].nlargest(5).index).reset_index(drop=True)
    return load_runs(frame, law=law or bs.get_law("chinchilla"), y="loss")


def without_references(law: Law) -> Law:
    """The same law with every coefficient sampled as written (defined at input = 1), its floor
    added as written too (no log-sum-exp form, which needs the reference terms)."""
    spec = law.to_dict()
    spec.pop("floor", None)
    for parameter in spec["parameters"].values():
        parameter.pop("reference", None)
    return Law.from_dict({**spec, "name": law.name + "_plain"})


def main(argv=None) -> None:
    args = parse_args(parser(__doc__.splitlines()[0]), argv)
    draws = 500 if args.quick else 1000
    spec = ModelSpec.create("chinchilla")
    runs = epoch_runs()
    settings = SamplerSettings(
        chains=4, draws=draws, warmup=draws, seed=args.seed, device=args.device
    )
    measurements = [
        measure_bayescale(PROBLEM, runs, spec, settings),
        measure_bayescale(
            PROBLEM,
            runs,
            spec,
            dataclasses.replace(settings, target_accept=0.8),
            method="bayescale, target 0.8",
        ),
        measure_pymc(PROBLEM, runs, spec, draws=draws, tune=draws, seed=args.seed),
        measure_pymc(
            PROBLEM, runs, spec, nuts_sampler="numpyro", draws=draws, tune=draws, seed=args.seed
        ),
    ]
    plain = without_references(spec.law)
    plain_spec = ModelSpec.create(plain)
    plain_runs = epoch_runs(plain)
    hand_rolled = measure_pymc(
        PROBLEM,
        plain_runs,
        plain_spec,
        draws=draws,
        tune=draws,
        seed=args.seed,
        method=HAND_ROLLED,
    )
    measurements.append(hand_rolled)
    if not args.quick:
        for reference in (True, False):
            for dense in (True, False):
                label = (
                    f"{'reference' if reference else 'at x = 1'}, {'dense' if dense else 'diag'}"
                )
                measurements.append(
                    measure_bayescale(
                        "(a) geometry",
                        runs if reference else plain_runs,
                        spec if reference else plain_spec,
                        SamplerSettings(
                            chains=4,
                            draws=draws,
                            warmup=draws,
                            seed=args.seed,
                            dense_mass=dense,
                            device=args.device,
                        ),
                        method=label,
                    )
                )
    bayescale = measurements[0]
    report(
        "benchmark (a): Chinchilla, 240 Epoch runs",
        measurements,
        args,
        extra={
            "bayescale / pymc hand-rolled, ESS/s of sampling": round(
                bayescale.ess_per_sampling_s / hand_rolled.ess_per_sampling_s, 2
            ),
            "bayescale / pymc hand-rolled, ESS/s of wall time": round(
                bayescale.ess_per_s / hand_rolled.ess_per_s, 2
            ),
        },
    )


if __name__ == "__main__":
    main()
