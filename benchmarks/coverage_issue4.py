"""Coverage of posterior intervals for the penalised and survival-style laws, by repetition.

For each repetition a true parameter set is drawn from a fixed design distribution (around values
typical of the law, not from the prior), runs are simulated with fresh noise, the law is fitted,
and every parameter's central 90% interval is checked against the truth. A calibrated posterior
covers at close to 90%; the rate is printed with its binomial standard error, per parameter and
overall, with the number of fits that failed a convergence gate (their intervals are counted too,
and listed).

Because the truth is not drawn from the prior, 90% is the expected rate only approximately
(weakly informative priors, enough data); a wrong likelihood, Jacobian or penalty shows up as a
rate far below it. The test suite's seeded recovery tests (tests/test_penalties.py,
tests/test_survival.py) are the cheap, deterministic version of this study.

    python benchmarks/coverage_issue4.py --study survival --reps 40
    python benchmarks/coverage_issue4.py --study penalties --reps 20
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bayescale as bs  # noqa: E402
from bayescale.errors import ConvergenceWarning  # noqa: E402
from bayescale.formula import NUMPY_OPS  # noqa: E402
from bayescale.penalties import penalise  # noqa: E402
from bayescale.results import interval_names  # noqa: E402

PROB = 0.9
SIGMA = 0.01
SAMPLER = {"chains": 4, "draws": 500, "warmup": 500}


def survival_case(rng: np.random.Generator):
    """A Burr XII loss curve over six decades of scale, 20 points, 1% noise."""
    truth = {
        "E": float(rng.uniform(1.0, 2.5)),
        "A": float(rng.uniform(1.5, 4.0)),
        "aft": float(10 ** rng.uniform(-8.5, -7.5)),
        "ph": float(np.exp(rng.uniform(np.log(0.6), np.log(2.0)))),
        "gamma": float(rng.uniform(0.4, 1.0)),
    }
    law = bs.get_law("burr_curve")
    x = np.geomspace(1e5, 1e11, 20)
    frame = pd.DataFrame({"x": x})
    frame["loss"] = law.mean({"x": x}, truth, NUMPY_OPS) * np.exp(rng.normal(0, SIGMA, x.size))
    # The aft-ph-gamma ridge is long and curved: shorter runs or a lower target_accept left up to
    # half the fits short of the gates (the settings tried are in docs/survival.md, Calibration)
    return law, frame, truth, {}, {"draws": 2000, "warmup": 1000, "target_accept": 0.99}


def penalties_case(rng: np.random.Generator):
    """A power law with floor in model size, learning-rate sweeps around the optimum at two batch
    sizes (48 runs), MIST's multiplicative penalty and mean-corrected log-normal noise."""
    truth = {
        "L_inf": float(rng.uniform(1.4, 2.0)),
        "x0": float(10 ** rng.uniform(4.5, 5.5)),
        "alpha": float(rng.uniform(0.25, 0.4)),
        "c_lr": float(rng.uniform(0.04, 0.12)),
        "lr_a": float(10 ** rng.uniform(-4, -3)),
        "lr_b": float(rng.uniform(0.4, 0.6)),
        "lr_c": float(rng.uniform(-0.3, -0.1)),
    }
    law = penalise("power_law_floor", size_input="x")
    rows = []
    for size in np.geomspace(1e6, 1e10, 6):
        for batch in (128.0, 1024.0):
            optimum = truth["lr_a"] * batch ** truth["lr_b"] * size ** truth["lr_c"]
            for factor in (0.25, 0.7, 1.5, 4.0):
                rows.append(
                    {
                        "x": size,
                        "batch": batch,
                        "lr": optimum * factor * math.exp(rng.normal(0, 0.1)),
                    }
                )
    frame = pd.DataFrame(rows)
    inputs = {k: frame[k].to_numpy() for k in law.input_names}
    frame["loss"] = law.mean(inputs, truth, NUMPY_OPS) * np.exp(
        rng.normal(-(SIGMA**2) / 2, SIGMA, len(frame))
    )
    priors = {"lr_a": "LogNormal(log(3e-4), 2)", "lr_c": "Normal(0, 0.3)"}
    return law, frame, truth, priors, {"target_accept": 0.95}


STUDIES = {"survival": survival_case, "penalties": penalties_case}


def run(study: str, reps: int, seed: int) -> dict:
    case = STUDIES[study]
    hits: dict[str, list[bool]] = {}
    failed = []
    started = time.perf_counter()
    for rep in range(reps):
        rng = np.random.default_rng([seed, rep])
        law, frame, truth, priors, options = case(rng)
        truth = {**truth, "sigma": SIGMA}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            fit = bs.fit(frame, law, y="loss", priors=priors, seed=rep, **{**SAMPLER, **options})
        if not fit.converged:
            failed.append(rep)
        table = fit.summary(PROB)
        for name, value in truth.items():
            low_name, high_name = interval_names(PROB)
            low, high = table.loc[name, low_name], table.loc[name, high_name]
            hits.setdefault(name, []).append(bool(low <= value <= high))
        done = sum(all(h[i] for h in hits.values()) for i in range(rep + 1))
        print(
            f"  rep {rep + 1}/{reps}: {'converged' if fit.converged else 'NOT converged'}; "
            f"all parameters covered in {done}/{rep + 1} so far "
            f"({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
    per_parameter = {name: float(np.mean(h)) for name, h in hits.items()}
    flat = np.concatenate([np.asarray(h) for h in hits.values()])
    rate = float(flat.mean())
    return {
        "study": study,
        "reps": reps,
        "nominal": PROB,
        "coverage": rate,
        "standard_error": math.sqrt(PROB * (1 - PROB) / flat.size),
        "per_parameter": per_parameter,
        "not_converged": failed,
        "seconds": round(time.perf_counter() - started, 1),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", choices=sorted(STUDIES), required=True)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    result = run(args.study, args.reps, args.seed)
    print(
        f"\n{args.study}: coverage of {PROB:.0%} intervals = {result['coverage']:.3f} "
        f"(binomial se at the nominal rate {result['standard_error']:.3f}) over "
        f"{args.reps} repetitions x {len(result['per_parameter'])} parameters"
    )
    for name, value in result["per_parameter"].items():
        print(f"  {name:<8} {value:.2f}")
    print(
        f"  fits failing a convergence gate: {len(result['not_converged'])} "
        f"{result['not_converged']}"
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"coverage_{args.study}.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
