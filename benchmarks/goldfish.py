"""Benchmark (b): a hierarchical fit over about 200 groups (Goldfish languages), against PyMC.

Run from the repository root::

    python -m benchmarks.goldfish            # all 202 languages, 4 chains x 1000 draws
    python -m benchmarks.goldfish --quick    # 40 languages, 4 chains x 500 draws

Data: FLORES log-perplexity (bits per half-sentence) of the Goldfish monolingual models of Chang
et al. (2024) trained on 5 MB to 1 GB of text per language (``benchmarks/data/goldfish``; 741
runs, 202 languages with 1 to 5 runs each). Model, per language ``l``::

    L_l(D) = B_l / D^beta_l        D = training data in English-equivalent MB

with ``B`` and ``beta`` partially pooled over languages and a log-normal observation model;
``B`` is sampled at the reference scale of ``D`` with each language's own exponent. 409
dimensions. bayescale samples ``B`` centred on each language's conditional posterior
(``centered="conditional"``: the law is proportional to ``B``, so given the rest each
language's log ``B`` is normal; see :class:`bayescale.Pooling`; NUTS then moves the other 207
coordinates and each draw gets its 202 standard deviates afterwards) and ``beta`` in the centred
form (each language's value drawn from the population directly), at its default target
acceptance 0.9 and at 0.8; the row "B centred" samples ``B`` in the centred form too, the form
PyMC samples (PyMC's default NUTS and PyMC with numpyro's NUTS, as in benchmark (a)): the same
model and posterior in other coordinates.

Why this model: with a floor ``E`` shared by all languages (the first version of this benchmark)
no sampler converged (R-hat 1.04 to 1.39: one floor cannot sit under 202 curves at different
levels), and the non-centred form of this model mixed badly on the population mean of ``B``
(R-hat 1.18, bulk ESS 18 with 4 x 500 draws), because most languages have 3 or 4 runs and
identify their own ``B`` and ``beta`` well: the regime where the centred form mixes better.
"""

from __future__ import annotations

import dataclasses

import pandas as pd

import bayescale as bs
from bayescale.data import load_runs
from bayescale.inference import SamplerSettings
from bayescale.model import ModelSpec
from benchmarks.common import DATA, measure_bayescale, measure_pymc, parse_args, parser, report

LAW = bs.Law.from_formula(
    "goldfish_data",
    "B / D^beta",
    inputs={"D": "training data, English-equivalent MB"},
    parameters={
        "B": {
            "prior": "LogNormal(log(100), 3)",
            "description": "coefficient of the data term (at D = 1 MB)",
            "reference": {"input": "D", "exponent": "beta", "kind": "coefficient"},
        },
        "beta": {"prior": "LogNormal(log(0.3), 0.8)", "description": "data exponent"},
    },
    title="Per-language data scaling of FLORES log-perplexity (benchmark model)",
    citation="Chang, Arnett, Tu & Bergen (2024), Goldfish, arXiv:2408.10441 (data).",
)


def goldfish_frame(languages: int | None = None) -> pd.DataFrame:
    path = DATA / "goldfish" / "flores_logppl_by_datasize_long.csv"
    frame = pd.read_csv(path).dropna(subset=["flores_logppl_bits"])
    frame = frame.rename(
        columns={"dataset_scaled_mb": "D", "flores_logppl_bits": "bits", "flores_lang": "lang"}
    )
    if languages is not None:
        keep = sorted(frame["lang"].unique())[:languages]
        frame = frame[frame["lang"].isin(keep)]
    return frame[["lang", "D", "bits"]].reset_index(drop=True)


def main(argv=None) -> None:
    args = parse_args(parser(__doc__.splitlines()[0]), argv)
    draws = 500 if args.quick else 1000
    frame = goldfish_frame(40 if args.quick else None)
    centred = ModelSpec.create(
        LAW,
        pool=[bs.Pooling("B", "lang", centered=True), bs.Pooling("beta", "lang", centered=True)],
    )
    conditional = ModelSpec.create(
        LAW,
        pool=[
            bs.Pooling("B", "lang", centered="conditional"),
            bs.Pooling("beta", "lang", centered=True),
        ],
    )
    runs = load_runs(frame, law=LAW, y="bits", groups=["lang"])
    problem = f"(b) goldfish {len(set(runs.groups['lang']))} langs"
    settings = SamplerSettings(
        chains=4, draws=draws, warmup=draws, seed=args.seed, device=args.device
    )
    measurements = [
        measure_bayescale(problem, runs, conditional, settings),
        measure_bayescale(
            problem,
            runs,
            conditional,
            dataclasses.replace(settings, target_accept=0.8),
            method="bayescale, target 0.8",
        ),
        measure_bayescale(problem, runs, centred, settings, method="bayescale, B centred"),
        measure_pymc(problem, runs, centred, draws=draws, tune=draws, seed=args.seed),
        measure_pymc(
            problem, runs, centred, nuts_sampler="numpyro", draws=draws, tune=draws, seed=args.seed
        ),
    ]
    report(
        "benchmark (b): Goldfish, hierarchical over languages",
        measurements,
        args,
        {"runs": runs.n_runs, "languages": len(set(runs.groups["lang"]))},
    )


if __name__ == "__main__":
    main()
