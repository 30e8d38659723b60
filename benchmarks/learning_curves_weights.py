"""Which candidate weights extrapolate best? Weighting rules for the stacked forecast, compared on
the 92 learning curves of Alabdulmohsin et al. (2022).

Run from the repository root::

    python -m benchmarks.learning_curves_weights --splits 0.2 0.4  # 26-28 min a split, busy cores
    python -m benchmarks.learning_curves_weights --curves 8 --splits 0.4 --draws 200  # quick look

The accuracy benchmark (``benchmarks/learning_curves_accuracy.py``) weighs the candidate laws of
each curve by PSIS-LOO stacking, which scores how well a law *interpolates* its fitted runs. This
benchmark asks whether weights that score *extrapolation* do better. For each split, each
candidate is fitted (in one batched program per law) to every curve's fitted runs, as in the
accuracy benchmark, and once more to the first ``--inner`` share of them (leave-future-out, LFO:
the rest of the fitted runs, further along the curve, are scored by the log predictive density
of that refit, with the forecasts' random-walk discrepancy). From these fits it mixes each
curve's forecast of its held-out runs under each rule:

- ``loo``: PSIS-LOO stacking (the accuracy benchmark's rule);
- ``lfo_stacking``: stacking (Yao et al. 2018) of the LFO densities of the curve;
- ``lfo_bma``: weights proportional to ``exp`` of the summed LFO density of the curve
  (pseudo-BMA);
- ``lfo_domain``: stacking of the LFO densities of every curve of the domain together;
- ``equal``: every candidate the same weight;
- each candidate law alone.

A curve whose fitted runs have fewer than four distinct scales has no LFO refit and keeps its
``loo`` weights under the LFO rules. It prints the per-domain LFO stacking weights and, per
split and rule, the median RMSLE of the forecast's median per domain, the coverage of the central
90% interval over all held-out points, the mean log predictive density, and the domains where the
median RMSLE is above the Huber or ``curve_fit`` point fit of the power law with a floor (their
point forecasts only: no bootstrap).
Tables go to ``benchmarks/results/learning_curves_weights/``.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd
import scipy.optimize

from bayescale.backtest import point_fit_forecast, split_runs
from bayescale.batch import fit_batch
from bayescale.forecast import log_predictive_density
from bayescale.laws import get_law
from bayescale.selection import mixture_indices, select
from benchmarks.common import machine
from benchmarks.learning_curves_accuracy import ROOT, SPLITS, _case_study

RESULTS = ROOT / "benchmarks" / "results" / "learning_curves_weights"
MIN_DISTINCT_FOR_LFO = 4
"""Fitted runs need this many distinct scales for a leave-future-out refit."""


def stacking_weights(log_density: np.ndarray) -> np.ndarray:
    """Stacking weights of ``K`` candidates from their pointwise log predictive densities
    ``(K, n)``: the simplex point maximising ``sum_i log sum_k w_k p_k(y_i)`` (Yao, Vehtari,
    Simpson & Gelman 2018), found from several starts on the softmax scale."""
    k = log_density.shape[0]

    def negative(z):
        log_w = z - np.logaddexp.reduce(z)
        return -np.sum(np.logaddexp.reduce(log_w[:, None] + log_density, axis=0))

    starts = [np.zeros(k)] + [3.0 * np.eye(k)[i] for i in range(k)]
    best = min(
        (scipy.optimize.minimize(negative, z, method="Nelder-Mead") for z in starts),
        key=lambda result: result.fun,
    )
    return np.exp(best.x - np.logaddexp.reduce(best.x))


def pseudo_bma_weights(log_density: np.ndarray) -> np.ndarray:
    """Weights proportional to ``exp`` of each candidate's summed log predictive density."""
    total = log_density.sum(axis=1)
    return np.exp(total - np.logaddexp.reduce(total))


def curve_parts(frame: pd.DataFrame, fraction: float | None, inner: float) -> dict:
    """Per curve: fitted runs, held-out runs, and the LFO prefix and tail of the fitted runs."""
    split_rule = {"fraction": fraction} if fraction is not None else {"train_flag": "Training"}
    parts = {}
    for label, curve in frame.groupby("curve", sort=True):
        curve = curve.reset_index(drop=True)
        split = split_runs(curve, "x", **split_rule)
        train = curve.iloc[split.train].reset_index(drop=True)
        part = {"domain": str(curve["Domain"].iloc[0]), "train": train}
        part["test"] = curve.iloc[split.test].reset_index(drop=True)
        if np.unique(train["x"]).size >= MIN_DISTINCT_FOR_LFO:
            inner_split = split_runs(train, "x", fraction=inner)
            part["prefix"] = train.iloc[inner_split.train].reset_index(drop=True)
            part["tail"] = train.iloc[inner_split.test].reset_index(drop=True)
        parts[str(label)] = part
    return parts


def candidate_forecasts(parts: dict, candidates, sampler: dict, seed: int) -> dict:
    """Each candidate's held-out draws and densities, PSIS-LOO weights, and LFO densities."""
    fits, prefix_fits = {}, {}
    prefixes = {label: part["prefix"] for label, part in parts.items() if "prefix" in part}
    options = {"y": "loss", "x": {"x": "x"}, "seed": seed, **sampler}
    with warnings.catch_warnings():  # convergence is counted below, not raised
        warnings.simplefilter("ignore")
        for law in candidates:
            fits[law] = fit_batch({k: p["train"] for k, p in parts.items()}, law, **options)
            prefix_fits[law] = fit_batch(prefixes, law, **options)
    out = {}
    for label, part in parts.items():
        points = pd.DataFrame({"x": part["test"]["x"].to_numpy(float)})
        observed = part["test"]["loss"].to_numpy(float)
        curve_fits = {law: fits[law].fits[label] for law in candidates}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loo = select(curve_fits).weights.reindex(list(candidates)).to_numpy()
        record = {"domain": part["domain"], "observed": observed, "loo": loo, "draws": []}
        record["density"] = []
        record["converged"] = all(fit.diagnostics.converged for fit in curve_fits.values())
        for fit in curve_fits.values():
            forecast = fit.forecast(points, seed=seed, discrepancy="walk")
            record["draws"].append(forecast.predictive.reshape(-1, observed.size))
            record["density"].append(
                log_predictive_density(fit, points, observed, discrepancy="walk")
            )
        if label in prefixes:
            tail = pd.DataFrame({"x": part["tail"]["x"].to_numpy(float)})
            tail_observed = part["tail"]["loss"].to_numpy(float)
            record["lfo"] = np.array(
                [
                    log_predictive_density(
                        prefix_fits[law].fits[label], tail, tail_observed, discrepancy="walk"
                    )
                    for law in candidates
                ]
            )
        out[label] = record
    return out


def domain_weights(records: dict) -> dict[str, np.ndarray]:
    """Per domain, stacking weights of the LFO densities of all its curves together."""
    pooled = {}
    for record in records.values():
        if "lfo" in record:
            pooled.setdefault(record["domain"], []).append(record["lfo"])
    return {name: stacking_weights(np.concatenate(v, axis=1)) for name, v in pooled.items()}


def rule_weights(records: dict, candidates, domain: dict) -> dict[str, dict[str, np.ndarray]]:
    """Every rule's weights for every curve (``domain``: :func:`domain_weights` of the records)."""
    k = len(candidates)
    rules = {
        "loo": lambda r: r["loo"],
        "lfo_stacking": lambda r: stacking_weights(r["lfo"]) if "lfo" in r else r["loo"],
        "lfo_bma": lambda r: pseudo_bma_weights(r["lfo"]) if "lfo" in r else r["loo"],
        "lfo_domain": lambda r: domain.get(r["domain"], r["loo"]),
        "equal": lambda r: np.full(k, 1.0 / k),
    }
    for i, law in enumerate(candidates):
        rules[law] = lambda r, i=i: np.eye(k)[i]
    return {name: {label: rule(r) for label, r in records.items()} for name, rule in rules.items()}


def mixture_scores(record: dict, weights: np.ndarray) -> dict[str, float]:
    """RMSLE of the mixture's median, 90% coverage hits, and mean log density of one curve."""
    sizes = [d.shape[0] for d in record["draws"]]
    draws = np.concatenate(
        [d[i] for d, i in zip(record["draws"], mixture_indices(sizes, weights), strict=True)]
    )
    observed = record["observed"]
    low, high = np.quantile(draws, [0.05, 0.95], axis=0)
    log_w = np.log(np.maximum(weights, 1e-300))[:, None]
    density = np.logaddexp.reduce(log_w + np.array(record["density"]), axis=0)
    error = np.log(np.median(draws, axis=0)) - np.log(observed)
    return {
        "rmsle": float(np.sqrt(np.mean(error**2))),
        "inside_90": int(np.sum((observed >= low) & (observed <= high))),
        "points": observed.size,
        "mlpd": float(density.mean()),
    }


def point_fit_rmsle(parts: dict, law: str, rng: np.random.Generator) -> pd.DataFrame:
    """The Huber and curve_fit point forecasts' RMSLE per curve (medians only: no bootstrap)."""
    law = get_law(law)
    rows = []
    for label, part in parts.items():
        observed = part["test"]["loss"].to_numpy(float)
        for method in ("huber", "curve_fit"):
            forecast = point_fit_forecast(
                method,
                law,
                {"x": part["train"]["x"].to_numpy(float)},
                part["train"]["loss"].to_numpy(float),
                {"x": part["test"]["x"].to_numpy(float)},
                observed,
                1,
                rng,
            )
            error = np.log(forecast.median) - np.log(observed)
            rows.append(
                {
                    "curve": label,
                    "domain": part["domain"],
                    "method": method,
                    "rmsle": float(np.sqrt(np.mean(error**2))),
                }
            )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--curves", type=int, default=None, help="sample, stratified by domain")
    parser.add_argument("--splits", nargs="+", default=["0.2", "0.4"], choices=list(SPLITS))
    parser.add_argument("--draws", type=int, default=1000, help="draws (and warm-up) per chain")
    parser.add_argument(
        "--inner", type=float, default=0.67, help="share of the fitted runs' scales in a prefix"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    study = _case_study()
    candidates = list(study.CANDIDATES)
    frame = study.load(args.curves)
    sampler = {"chains": 4, "draws": args.draws, "warmup": args.draws}
    RESULTS.mkdir(parents=True, exist_ok=True)
    print(machine())
    print(f"{frame['curve'].nunique()} curves; candidates {', '.join(candidates)}; {sampler}")
    for split in args.splits:
        started = time.perf_counter()
        parts = curve_parts(frame, SPLITS[split], args.inner)
        records = candidate_forecasts(parts, candidates, sampler, args.seed)
        baseline = point_fit_rmsle(parts, candidates[0], np.random.default_rng(args.seed))
        baseline_median = baseline.groupby(["domain", "method"])["rmsle"].median().unstack()
        domain = domain_weights(records)
        rows = []
        for rule, weights in rule_weights(records, candidates, domain).items():
            for label, record in records.items():
                row = {"rule": rule, "curve": label, "domain": record["domain"]}
                rows.append(row | mixture_scores(record, weights[label]))
        scores = pd.DataFrame(rows)
        scores.to_csv(RESULTS / f"scores_{split}.csv", index=False)
        lfo = sum("lfo" in r for r in records.values())
        converged = sum(r["converged"] for r in records.values())
        print(
            f"\n== split {split} ({time.perf_counter() - started:.0f} s; {lfo} curves with an "
            f"LFO refit; both candidates converged on {converged})"
        )
        print("point fits' median RMSLE:", baseline_median.round(4).to_dict(orient="index"))
        print(
            "LFO stacking weights per domain:",
            {d: dict(zip(candidates, w.round(3), strict=True)) for d, w in domain.items()},
        )
        summary = []
        for rule, part in scores.groupby("rule", sort=False):
            median = part.groupby("domain")["rmsle"].median()
            above = [d for d in median.index if median[d] > baseline_median.loc[d].min()]
            summary.append(
                {"rule": rule}
                | {f"{d}_median_rmsle": round(v, 4) for d, v in median.items()}
                | {
                    "coverage_90": round(part["inside_90"].sum() / part["points"].sum(), 3),
                    "mlpd": round(float(np.average(part["mlpd"], weights=part["points"])), 3),
                    "above_a_point_fit": ", ".join(above) or "none",
                }
            )
        summary = pd.DataFrame(summary)
        summary.to_csv(RESULTS / f"summary_{split}.csv", index=False)
        with pd.option_context("display.width", 200, "display.max_columns", 20):
            print(summary.to_string(index=False))


if __name__ == "__main__":
    main()
