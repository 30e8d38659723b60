"""Benchmark (c): 92 benchmark curves fitted in one batch, against fitting them one by one.

Run from the repository root::

    python -m benchmarks.learning_curves                  # all 92 curves; 12 also one by one
    python -m benchmarks.learning_curves --one-by-one 92  # every curve one by one with PyMC too
    python -m benchmarks.learning_curves --quick          # 8 curves, 4 chains x 500 draws
    python -m benchmarks.learning_curves --lockstep 1 --chain-method auto vectorized
                                                          # both layouts of a curve's chains

Data: the 92 learning curves of Alabdulmohsin et al. (2022)
(``case_studies/learning_curves_revisiting/data``:
20 language and 72 vision curves, the fitting split, at most 32 points each). Model: the catalog's
``power_law_floor`` (``L = L_inf + (x0 / x)^alpha``, x = examples seen) per curve, log-normal
observation model, 4 chains x 1000 draws.

Measured:

* :func:`bayescale.batch.fit_batch` on all the curves, for each ``--lockstep`` group size (0: all
  curves vectorised together; 1: one curve at a time inside the same program) and each
  ``--chain-method`` (``auto``: each curve's chains one after the other on a CPU; ``vectorized``:
  side by side), twice: the first call compiles, the second (a refit of same-shaped data) reuses
  the program;
* a random sample of ``--one-by-one`` curves fitted one by one with ``bayescale.fit``, PyMC's
  default NUTS and PyMC with numpyro's NUTS, and the same sample as one batch: the like-for-like
  speed-up;
* ``bayescale.fit`` one by one on every other curve as well, after the sample (``--no-all-bs-fit``
  leaves them out): a refit of data of the same shapes does not compile, and the 92 curves have
  19 run counts, so a time per curve measured on 12 curves would overstate the whole;
* the speed-up for all the curves: exact for ``bayescale.fit``, and for PyMC the sample's mean
  time per curve times the number of curves (exact with ``--one-by-one 92``).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from bayescale.batch import fit_batch
from bayescale.data import load_runs
from bayescale.errors import ConvergenceWarning
from bayescale.inference import SamplerSettings
from bayescale.model import ModelSpec
from benchmarks.common import (
    Measurement,
    machine,
    measure_bayescale,
    measure_pymc,
    parse_args,
    parser,
)

KEYS = ["Domain", "Task", "Model"]
LEARNING_CURVES = (
    Path(__file__).resolve().parents[1]
    / "case_studies"
    / "learning_curves_revisiting"
    / "data"
    / "curves.csv"
)


def curves_frame(curves: int | None = None, seed: int = 0) -> pd.DataFrame:
    frame = pd.read_csv(LEARNING_CURVES)
    frame = frame[frame["Training"] == 1]
    frame["curve"] = frame[KEYS].astype(str).agg(" / ".join, axis=1)
    if curves is not None:
        labels = frame["curve"].drop_duplicates()
        keep = labels.sample(curves, random_state=seed)
        frame = frame[frame["curve"].isin(keep)]
    return frame.rename(columns={"Seen Examples": "x", "Loss": "loss"})[["curve", "x", "loss"]]


def batch_summary(name: str, result) -> dict:
    table = result.diagnostics_table()
    return {
        "method": name,
        "curves": len(result),
        "wall_s": round(result.wall_seconds, 2),
        "compile_s": round(result.compile_seconds, 2),
        "compilations": result.compilations,
        "converged": int(table["converged"].sum()),
        "median_min_ess": float(table["min_ess_bulk"].median()),
        "steps_per_draw": float(
            np.mean([f.datatree["sample_stats"]["n_steps"].mean() for f in result.values()])
        ),
        "bucket_runs": result.bucket["runs"],
    }


def main(argv=None) -> None:
    cli = parser(__doc__.splitlines()[0])
    cli.add_argument("--one-by-one", type=int, default=12, help="curves fitted one by one")
    cli.add_argument(
        "--all-bs-fit",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="fit every curve one by one with bayescale.fit, not only the sample",
    )
    cli.add_argument(
        "--lockstep",
        type=int,
        nargs="*",
        default=[0, 1],
        help="lockstep group sizes to time for the whole batch (0: all curves at once)",
    )
    cli.add_argument(
        "--chain-method",
        nargs="*",
        default=["auto"],
        choices=["auto", "sequential", "vectorized"],
        help="how each curve's chains run in the batch (each is timed)",
    )
    args = parse_args(cli, argv)
    draws = 500 if args.quick else 1000
    frame = curves_frame(8 if args.quick else None, seed=args.seed)
    labels = list(dict.fromkeys(frame["curve"]))
    options = {
        "chains": 4,
        "draws": draws,
        "warmup": draws,
        "seed": args.seed,
        "device": args.device,
    }
    rng = np.random.default_rng(args.seed)
    sample = list(rng.choice(labels, size=min(args.one_by_one, len(labels)), replace=False))

    rows, batches = [], {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for lockstep in args.lockstep:
            group = lockstep or len(labels)  # 0: every curve in one lockstep group
            for chain_method in args.chain_method:
                name = f"lockstep={lockstep or 'all'}, chain_method={chain_method}"
                layout = {"lockstep": group, "chain_method": chain_method}
                first = fit_batch(
                    frame, "power_law_floor", by="curve", y="loss", **layout, **options
                )
                rows.append(batch_summary(f"batch of {len(labels)}, {name} (compiles)", first))
                again = fit_batch(
                    frame, "power_law_floor", by="curve", y="loss", **layout, **options
                )
                rows.append(batch_summary(f"batch of {len(labels)}, {name} (again)", again))
                batches[name] = (first, again)
        subset = frame[frame["curve"].isin(sample)]
        same = fit_batch(subset, "power_law_floor", by="curve", y="loss", **options)
        rows.append(batch_summary(f"batch of the {len(sample)} one-by-one curves", same))

    spec = ModelSpec.create("power_law_floor")
    singles: dict[str, list[Measurement]] = {}
    rest = [label for label in labels if label not in sample] if args.all_bs_fit else []
    for label in sample + rest:
        part = frame[frame["curve"] == label].drop(columns="curve").reset_index(drop=True)
        runs = load_runs(part, law=spec.law, y="loss")
        measured = [
            measure_bayescale(label, runs, spec, SamplerSettings(**options), method="bayescale.fit")
        ]
        if label in sample:
            measured += [
                measure_pymc(label, runs, spec, draws=draws, tune=draws, seed=args.seed),
                measure_pymc(
                    label,
                    runs,
                    spec,
                    nuts_sampler="numpyro",
                    draws=draws,
                    tune=draws,
                    seed=args.seed,
                ),
            ]
        for m in measured:
            singles.setdefault(m.method, []).append(m)
    for method, measured in singles.items():
        per_curve = float(np.mean([m.wall_s for m in measured]))
        rows.append(
            {
                "method": f"one by one: {method}",
                "curves": len(measured),
                "wall_s": round(sum(m.wall_s for m in measured), 2),
                "per_curve_s": round(per_curve, 2),
                "all_curves_s": round(per_curve * len(labels), 1),
                "extrapolated": len(measured) < len(labels),
                "converged": sum(m.converged for m in measured),
                "median_min_ess": float(np.median([m.min_ess for m in measured])),
                "steps_per_draw": float(np.mean([m.steps_per_draw for m in measured])),
            }
        )

    info = machine()
    print(f"\n== benchmark (c): {len(labels)} learning curves, power law with a floor per curve")
    for row in rows:
        print("  " + ", ".join(f"{k}={v}" for k, v in row.items()))
    for method, measured in singles.items():
        alone = sum(m.wall_s for m in measured[: len(sample)])  # the sample comes first
        print(
            f"the same {len(sample)} curves: batch {same.wall_seconds:.1f} s against {method} one "
            f"by one {alone:.1f} s: {alone / same.wall_seconds:.1f}x"
        )
        total = float(np.mean([m.wall_s for m in measured])) * len(labels)
        basis = (
            f"extrapolated from {len(measured)} curves"
            if len(measured) < len(labels)
            else "every curve fitted"
        )
        for name, (first, again) in batches.items():
            print(
                f"all {len(labels)} curves, batch {name}: {total / first.wall_seconds:.1f}x "
                f"(first batch, compilation included), {total / again.wall_seconds:.1f}x "
                f"(a refit of the same shapes) faster than {method} one by one ({basis})"
            )
    print(
        f"machine: {info['cpus']} CPUs, load average {info['load_average_1_5_15_min']}, "
        f"JAX devices {info['jax_devices']}"
    )
    if args.json is not None:
        import json

        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {"machine": info, "rows": rows, "time": time.time()}, indent=2, default=float
            )
        )


if __name__ == "__main__":
    main()
