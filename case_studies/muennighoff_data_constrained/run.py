"""How much is a repeated token worth? The posterior of R*_D (Muennighoff et al. 2023).

The data-constrained law (catalog law ``data_constrained``) gives repeated data the effective size
``D' = U (1 + R*_D (1 - exp(-R_D / R*_D)))`` after ``R_D = D / U - 1`` repetitions of ``U`` unique
tokens. The authors report R*_D = 15.39 and R*_N = 5.31 on C4. Their notebook fits E, A, B and
alpha = beta on Chinchilla's C4 isoFLOP points first and then the R* on their own runs; this
script reproduces that second stage as a posterior (the five coefficients held at the published
values) and also fits all seven parameters to the runs alone.

Run from the repository root:

    python case_studies/muennighoff_data_constrained/run.py           # both fits (~5 min)
    python case_studies/muennighoff_data_constrained/run.py --smoke   # first fit, short chains

Tables are printed; results.json goes to case_studies/muennighoff_data_constrained/output/.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

import bayescale as bs

HERE = Path(__file__).resolve().parent
PUBLISHED = bs.get_law("data_constrained").published["muennighoff2023"]
COEFFICIENTS = {  # the authors' C4 fit, (a, b, e, alpha = beta) in the README
    "E": math.exp(0.6254804),
    "A": math.exp(6.255414),
    "B": math.exp(7.3049974),
    "alpha": 0.3526596,
    "beta": 0.3526596,
}


def runs() -> pd.DataFrame:
    """The 194 finished runs of the authors' default fit (203 listed, 9 unfinished)."""
    frame = pd.read_csv(HERE / "data" / "c4_runs_final_val_loss.csv")
    frame = frame[frame["in_paper_default_fit"] & frame["val_loss"].notna()]
    return frame.rename(columns={"D_tokens": "D", "U_unique_tokens": "U"}).reset_index(drop=True)


def report(fit: bs.Fit, label: str, frame: pd.DataFrame) -> dict:
    summary = fit.summary()
    print(f"\n{label}")
    print(f"  {fit.diagnostics.table().splitlines()[0]}")
    free = [n for n in summary.index if n not in ("sigma", "nu")]
    for name in free:
        row = summary.loc[name]
        published = PUBLISHED.get(name)
        extra = f"   published {published:.4g}" if published is not None else ""
        print(f"  {name:9} {row['median']:10.4g}  [{row['q05']:.4g}, {row['q95']:.4g}]{extra}")
    # value of repeated data: D' / D after 4 and 40 epochs, and the repetitions at which a
    # repeated token is worth half a new one (R*_D log 2)
    derived = {}
    for text, expression in (
        ("worth of 4 epochs, D'/D", "(1 + R_D_star * (1 - exp(-3 / R_D_star))) / 4"),
        ("worth of 40 epochs, D'/D", "(1 + R_D_star * (1 - exp(-39 / R_D_star))) / 40"),
        ("repetitions at half value", "R_D_star * log(2)"),
    ):
        row = fit.derived(expression).table().iloc[0]
        derived[text] = row[["median", "q05", "q95"]].to_dict()
        value = eval_published(expression)  # the same quantity at the published R*_D
        print(
            f"  {text:28} {row['median']:.3f} [{row['q05']:.3f}, {row['q95']:.3f}]"
            f"   at the published R*_D: {value:.3f}"
        )
    predictive = fit.datatree["posterior_predictive"]["val_loss"].values.reshape(-1, len(frame))
    low, high = np.quantile(predictive, [0.05, 0.95], axis=0)
    inside = float(np.mean((frame["val_loss"] >= low) & (frame["val_loss"] <= high)))
    print(f"  runs inside their 90% posterior predictive interval: {inside:.2f}")
    return {
        "parameters": summary.loc[free, ["median", "q05", "q95", "r_hat", "ess_bulk"]].to_dict(
            orient="index"
        ),
        "derived": derived,
        "predictive_coverage_90": inside,
        "diagnostics": fit.diagnostics.to_dict(),
    }


def eval_published(expression: str) -> float:
    from bayescale.formula import NUMPY_OPS, parse_formula

    return float(
        parse_formula(expression, ["R_D_star"]).evaluate(
            {"R_D_star": PUBLISHED["R_D_star"]}, ops=NUMPY_OPS
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="one fit with short chains")
    parser.add_argument("--out", type=Path, default=HERE / "output")
    parser.add_argument(
        "--draws", type=int, default=None, help="draws and warmup per chain (1000; smoke 200)"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    frame = runs()
    print(
        f"{len(frame)} runs: N {frame['N'].min():.3g}..{frame['N'].max():.3g}, "
        f"epochs up to {frame['epochs'].max():.0f}"
    )
    draws = args.draws or (200 if args.smoke else 1000)
    settings = {"chains": 4, "draws": draws, "warmup": draws, "seed": 2024, "target_accept": 0.95}
    results = {}

    started = time.perf_counter()
    fixed = {name: f"Fixed({value!r})" for name, value in COEFFICIENTS.items()}
    stage_two = bs.fit(
        frame, "data_constrained", y="val_loss", likelihood="student_t", priors=fixed, **settings
    )
    print(f"(fitted in {time.perf_counter() - started:.0f} s)")
    results["published_coefficients"] = report(
        stage_two,
        "R* with E, A, B, alpha = beta held at the authors' C4 values (Student-t):",
        frame,
    )
    if not args.smoke:
        started = time.perf_counter()
        free = bs.fit(frame, "data_constrained", y="val_loss", likelihood="student_t", **settings)
        print(f"(fitted in {time.perf_counter() - started:.0f} s)")
        results["all_free"] = report(
            free, "All seven parameters from these runs (Student-t):", frame
        )
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=float))
    print(f"\nresults written to {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
