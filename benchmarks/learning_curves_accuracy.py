"""Accuracy benchmark: bayescale against point fits on the 92 learning curves of Alabdulmohsin
et al. (2022), at the paper's split and at context fractions 0.2, 0.4, 0.6 and 0.8.

Run from the repository root::

    python -m benchmarks.learning_curves_accuracy                 # all 92 curves, every split
    python -m benchmarks.learning_curves_accuracy --curves 12     # 3 curves per domain
    python -m benchmarks.learning_curves_accuracy --splits paper  # the paper's split only
    python -m benchmarks.learning_curves_accuracy --candidates power_law_floor  # no stacking

For each split, every curve is fitted with bayescale's default law selection for a single curve
(the power law with a floor and Alabdulmohsin et al.'s M4 curve, each fitted to all curves in one
batched program, PSIS-LOO stacking per curve; see ``case_studies/learning_curves_revisiting``) and
with the baselines (``curve_fit`` and Huber point fits with bootstrap intervals, last observed
value). It prints, per split, a table per domain and method of the median RMSLE over curves, mean
relative error, mean log predictive density, coverage of the central 50/80/90/95% intervals over
all held-out points and the mean squared calibration error, then one line per split: bayescale's
90% coverage over every held-out point and the domains where its median RMSLE is above a bootstrap
baseline's. At the paper's split it also prints bayescale's RMSLE per curve next to the paper's
published errors of its estimators M1 to M4 (NMT, LM and BIG-Bench). Tables are written to
``benchmarks/results/learning_curves_accuracy/`` (with other ``--candidates``, to a subfolder named
after them).
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import pandas as pd

from benchmarks.common import machine

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "learning_curves_accuracy"
SPLITS = {"paper": None, "0.2": 0.2, "0.4": 0.4, "0.6": 0.6, "0.8": 0.8}


def _case_study():
    """The case study's module (its data loading and back-test), imported from its file."""
    path = ROOT / "case_studies" / "learning_curves_revisiting" / "run.py"
    spec = importlib.util.spec_from_file_location("learning_curves_case_study", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--curves", type=int, default=None, help="sample, stratified by domain")
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), choices=list(SPLITS))
    parser.add_argument("--bootstrap", type=int, default=100)
    parser.add_argument("--draws", type=int, default=1000, help="draws (and warm-up) per chain")
    parser.add_argument(
        "--candidates", nargs="+", default=None, help="candidate laws (default: the case study's)"
    )
    args = parser.parse_args()
    study = _case_study()
    candidates = args.candidates or list(study.CANDIDATES)
    # other candidates than the case study's write beside, not over, the default's tables
    results = RESULTS if candidates == list(study.CANDIDATES) else RESULTS / "+".join(candidates)
    frame = study.load(args.curves)
    sampler = {"chains": 4, "draws": args.draws, "warmup": args.draws}
    results.mkdir(parents=True, exist_ok=True)
    print(machine())
    print(
        f"{frame['curve'].nunique()} curves; candidates {', '.join(candidates)}; sampler "
        f"{sampler}; bootstrap {args.bootstrap}"
    )
    summary = []
    for name in args.splits:
        started = time.perf_counter()
        result = study.run(
            frame,
            fraction=SPLITS[name],
            sampler=sampler,
            bootstrap=args.bootstrap,
            candidates=candidates,
        )
        seconds = time.perf_counter() - started
        table = result.table()
        table.to_csv(results / f"table_{name}.csv")
        result.scores.to_csv(results / f"scores_{name}.csv", index=False)
        result.points.to_csv(results / f"points_{name}.csv", index=False)
        print(f"\n== split: {name} ({seconds:.0f} s)")
        print(table.round(4).to_string())
        if name == "paper":
            published = study.published_comparison(result.scores)
            published.to_csv(results / "published_paper.csv")
            print("\nRMSLE per curve next to the paper's estimators (its Tables 2 and 3)")
            study.print_published(published)
        points = result.points[result.points["method"] == "bayescale"]
        worse = [
            domain
            for domain, part in table.groupby(level="group")
            if part.loc[(domain, "bayescale"), "median_rmsle"]
            > min(part.loc[(domain, m), "median_rmsle"] for m in ("curve_fit", "huber"))
        ]
        summary.append(
            {
                "split": name,
                "seconds": round(seconds),
                "bayescale_coverage_90": round(float(points["in_90"].mean()), 3),
                "domains_where_median_rmsle_above_a_bootstrap_baseline": ", ".join(worse) or "none",
            }
        )
    print("\n== summary")
    print(pd.DataFrame(summary).to_string(index=False))


if __name__ == "__main__":
    main()
