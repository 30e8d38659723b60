"""Calibration of crossover detection on simulated pairs of curves (issue 5).

Each repetition draws the parameters of two ``power_law_floor`` curves, simulates 15 runs of each
(log-normal noise, sd 0.01, scale from 1e6 to 1e10), fits both by NUTS, and compares them with
:func:`bayescale.compare.compare` over ``x = 1e6 .. 1e11``.

* Crossing pairs: A has the higher floor and the faster decay, so B overtakes A exactly once;
  pairs are drawn until the true crossing lies inside the data (1e6.5 .. 1e9.5). A repetition
  counts as covered when the true crossing lies inside the central 90% interval of the first
  crossing's posterior (a repetition with crossing probability 0 counts as not covered).
* Non-crossing pairs: B has a lower floor and a smaller reducible term at every scale, so the
  curves never cross; the gap is at least 0.03 in loss (about 2 noise sd) everywhere in the range.
  We report the mean and the largest crossover probability.

Run ``PYTHONPATH=. python benchmarks/crossover_calibration.py --repetitions 25`` from the
repository root (4 fits per repetition; each fit takes 10 to 60 seconds on 2 busy CPU cores).
Each finished repetition is printed to stderr as a JSON line; the rates are printed at the end
(``--json``: as JSON with every repetition). Fits that fail a convergence gate are counted and
reported, and kept (the comparison uses them as they are).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import brentq

import bayescale as bs
from bayescale.compare import compare
from bayescale.errors import ConvergenceWarning

DATA_RANGE = (1e6, 1e10)
AXIS = "x=1e6:1e11"
RUNS_PER_CURVE = 15
NOISE_SD = 0.01
SAMPLER = {"chains": 4, "draws": 500, "warmup": 500, "target_accept": 0.95}


def law_mean(theta: dict[str, float], x: np.ndarray) -> np.ndarray:
    """``power_law_floor``: ``L_inf + (x0 / x)^alpha``."""
    return theta["L_inf"] + (theta["x0"] / x) ** theta["alpha"]


def true_crossing(a: dict[str, float], b: dict[str, float]) -> float | None:
    """The single crossing of two curves in 1e5 .. 1e12, or ``None``."""
    grid = np.geomspace(1e5, 1e12, 2000)
    gap = law_mean(a, grid) - law_mean(b, grid)
    changes = np.nonzero(np.diff(np.sign(gap)))[0]
    if changes.size != 1:
        return None
    i = int(changes[0])
    root = brentq(
        lambda lx: float(law_mean(a, np.exp(lx)) - law_mean(b, np.exp(lx))),
        np.log(grid[i]),
        np.log(grid[i + 1]),
    )
    return float(np.exp(root))


def crossing_pair(rng: np.random.Generator) -> tuple[dict, dict, float]:
    """Two curves that cross once inside the data range; both flatten inside the data, so that
    their floors are identified."""
    while True:
        a = {
            "L_inf": rng.uniform(1.6, 1.9),
            "x0": 10 ** rng.uniform(4.0, 5.0),
            "alpha": rng.uniform(0.35, 0.5),
        }
        b = {
            "L_inf": a["L_inf"] - rng.uniform(0.2, 0.4),
            "x0": 10 ** rng.uniform(6.0, 6.5),
            "alpha": rng.uniform(0.35, 0.5),
        }
        where = true_crossing(a, b)
        if where is not None and 10**6.5 <= where <= 10**9.5:
            return a, b, where


def separated_pair(rng: np.random.Generator) -> tuple[dict, dict]:
    """Two curves that never cross: B below A by at least 0.03 everywhere in the range."""
    grid = np.geomspace(1e6, 1e11, 400)
    while True:
        a = {
            "L_inf": rng.uniform(1.6, 1.9),
            "x0": 10 ** rng.uniform(4.0, 5.0),
            "alpha": rng.uniform(0.35, 0.5),
        }
        b = {
            "L_inf": a["L_inf"] - rng.uniform(0.03, 0.1),
            "x0": a["x0"] * 10 ** rng.uniform(-0.5, 0.0),
            "alpha": a["alpha"] * rng.uniform(1.0, 1.1),
        }
        if np.min(law_mean(a, grid) - law_mean(b, grid)) >= 0.03:
            return a, b


def simulate_runs(theta: dict, rng: np.random.Generator) -> pd.DataFrame:
    x = np.geomspace(*DATA_RANGE, RUNS_PER_CURVE)
    loss = law_mean(theta, x) * np.exp(rng.normal(0.0, NOISE_SD, x.size))
    return pd.DataFrame({"x": x, "loss": loss})


@dataclass
class Repetition:
    kind: str
    truth: float | None
    probability: float
    median: float | None
    low: float | None
    high: float | None
    converged: bool

    @property
    def covered(self) -> bool:
        return self.low is not None and self.low <= self.truth <= self.high


def run_repetition(kind: str, seed: int, sampler: dict | None = None) -> Repetition:
    """Simulate, fit and compare one pair; ``kind`` is ``"cross"`` or ``"separate"``."""
    rng = np.random.default_rng(seed)
    if kind == "cross":
        a, b, truth = crossing_pair(rng)
    else:
        (a, b), truth = separated_pair(rng), None
    settings = {**SAMPLER, **(sampler or {})}
    converged = True
    fits = []
    for index, theta in enumerate((a, b)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            fits.append(
                bs.fit(
                    simulate_runs(theta, rng),
                    "power_law_floor",
                    y="loss",
                    seed=seed * 2 + index,
                    **settings,
                )
            )
        converged &= not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    result = compare(fits[0], fits[1], over=AXIS, prob=0.9)
    interval = result.crossover.interval()
    return Repetition(
        kind=kind,
        truth=truth,
        probability=result.crossover.probability,
        median=interval["median"],
        low=interval["q05"],
        high=interval["q95"],
        converged=converged,
    )


def calibration(
    repetitions: int, seed: int = 0, sampler: dict | None = None, progress=None
) -> dict:
    """Run ``repetitions`` crossing and ``repetitions`` non-crossing pairs; return the rates.

    ``progress``, if given, is called with each finished :class:`Repetition`.
    """
    crossing, separate = [], []
    for i in range(repetitions):  # interleaved, so that a stopped run still has both kinds
        for kind, seeds, results in (
            ("cross", seed + i, crossing),
            ("separate", seed + 10_000 + i, separate),
        ):
            results.append(run_repetition(kind, seeds, sampler))
            if progress is not None:
                progress(results[-1])
    return {
        "repetitions": repetitions,
        "coverage_90": float(np.mean([r.covered for r in crossing])),
        "crossing_pairs_mean_probability": float(np.mean([r.probability for r in crossing])),
        "separated_pairs_mean_probability": float(np.mean([r.probability for r in separate])),
        "separated_pairs_max_probability": float(np.max([r.probability for r in separate])),
        "unconverged_repetitions": int(sum(not r.converged for r in crossing + separate)),
        "crossing": [r.__dict__ | {"covered": r.covered} for r in crossing],
        "separated": [r.__dict__ for r in separate],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print every repetition as JSON")
    args = parser.parse_args()
    started = time.perf_counter()
    rates = calibration(
        args.repetitions,
        args.seed,
        progress=lambda r: print(json.dumps(r.__dict__), file=sys.stderr, flush=True),
    )
    elapsed = time.perf_counter() - started
    if args.json:
        print(json.dumps(rates, indent=2))
        return
    n = rates["repetitions"]
    print(f"crossover calibration: {n} crossing and {n} non-crossing pairs ({elapsed:.0f} s)")
    print(f"  90% interval of the crossing contains the truth: {rates['coverage_90']:.1%}")
    print(
        f"  mean P(cross) for crossing pairs:        {rates['crossing_pairs_mean_probability']:.3f}"
    )
    print(
        "  P(cross) for non-crossing pairs:         mean "
        f"{rates['separated_pairs_mean_probability']:.3f}, largest "
        f"{rates['separated_pairs_max_probability']:.3f}"
    )
    print(f"  repetitions with a fit failing a gate:   {rates['unconverged_repetitions']}")


if __name__ == "__main__":
    main()
