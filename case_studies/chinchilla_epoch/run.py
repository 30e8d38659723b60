"""Chinchilla refit (Epoch AI's digitised runs): parameters, compute-optimal allocation, back-test.

Run from the repository root:

    python case_studies/chinchilla_epoch/run.py            # full run (a few minutes on 2 cores)
    python case_studies/chinchilla_epoch/run.py --smoke    # seconds-scale check used by CI

Writes results.json, results.md and two figures into --out (default: output/ next to this file).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import bayescale as bs
from bayescale.plotting import new_figure, plot_fit

HERE = Path(__file__).resolve().parent
BUDGETS = [1e21, 1e22, 5.76e23, 1e24, 1e25]
EPOCH = {
    "E": (1.817, 1.769, 1.871),
    "alpha": (0.348, 0.317, 0.373),
    "beta": (0.366, 0.331, 0.415),
    "A": (482, 285, 744),
    "B": (2085, 1042, 5810),
}
HOFFMANN = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="few draws: checks the script runs")
    parser.add_argument("--out", type=Path, default=HERE / "output")
    args = parser.parse_args()
    sampler = (
        {"chains": 2, "draws": 150, "warmup": 150}
        if args.smoke
        else {"draws": 1000, "warmup": 1000}
    )
    bootstrap = 10 if args.smoke else 200
    started = time.perf_counter()
    runs = bs.datasets.chinchilla()

    # (1) the robust default: Student-t on all 245 runs
    robust = bs.fit(runs, "chinchilla", y="loss", likelihood="student_t", seed=0, **sampler)
    # (2) Epoch's choices, as a Bayesian model: Huber density (delta 1e-3), the 5 highest-loss
    #     runs dropped (Besiroglu et al. 2024)
    kept = runs[runs["loss"] < np.sort(runs["loss"].to_numpy())[-5]]
    epoch_like = bs.fit(kept, "chinchilla", y="loss", likelihood="huber", seed=0, **sampler)

    results: dict = {"fits": {}, "allocation": {}, "backtest": {}}
    for name, fit in (("student_t_245", robust), ("huber_240", epoch_like)):
        table = fit.summary()
        results["fits"][name] = {
            "parameters": {
                p: {
                    k: float(table.loc[p, k]) for k in ("median", "q05", "q95", "r_hat", "ess_bulk")
                }
                for p in fit.law.parameter_names
            },
            "diagnostics": fit.diagnostics.to_dict(),
            "exponent_a": bs.derived(fit, "beta / (alpha + beta)")
            .table()
            .iloc[0][["median", "q05", "q95"]]
            .astype(float)
            .to_dict(),
        }
        optimal = fit.compute_optimal(BUDGETS)
        results["allocation"][name] = optimal.reset_index().to_dict(orient="records")

    # (3) back-test: fit on the runs with C <= 1e21, forecast the 23 larger-compute runs
    backtest = bs.backtest(
        runs,
        "chinchilla",
        y="loss",
        axis="C",
        cut=1e21,
        bootstrap=bootstrap,
        seed=0,
        fit_options={"likelihood": "student_t", **sampler},
    )
    results["backtest"] = {
        "split": backtest.split.description,
        "held_out_runs": int(backtest.split.test.size),
        "metrics": backtest.metrics.drop(columns="note").reset_index().to_dict(orient="records"),
    }
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["smoke"] = args.smoke

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2, allow_nan=True))
    plot_fit(robust).savefig(args.out / "fit.png", dpi=110)
    _allocation_figure(robust).savefig(args.out / "allocation.png", dpi=110)
    (args.out / "results.md").write_text(_markdown(results))
    print(_markdown(results))


def _allocation_figure(fit):
    budgets = np.geomspace(1e20, 1e26, 13)
    table = fit.compute_optimal(budgets)
    figure = new_figure(6, 4)
    axis = figure.subplots()
    axis.fill_between(
        budgets,
        table["tokens_per_parameter_q05"],
        table["tokens_per_parameter_q95"],
        alpha=0.3,
        lw=0,
        label="90% interval",
    )
    axis.plot(budgets, table["tokens_per_parameter_median"], label="posterior median")
    axis.axhline(20, color="grey", ls="--", lw=1, label="20 tokens per parameter")
    axis.set_xscale("log")
    axis.set_xlabel("training compute C (FLOP)")
    axis.set_ylabel("compute-optimal tokens per parameter")
    axis.legend()
    return figure


def _markdown(results: dict) -> str:
    lines = ["# Chinchilla refit: results", ""]
    for name, fit in results["fits"].items():
        lines += [
            f"## {name}",
            "",
            "| parameter | median | 90% interval | Epoch 2024 (95%) | Hoffmann 2022 |",
            "|---|---|---|---|---|",
        ]
        for p, v in fit["parameters"].items():
            epoch = EPOCH[p]
            lines.append(
                f"| {p} | {v['median']:.4g} | [{v['q05']:.4g}, {v['q95']:.4g}] | "
                f"{epoch[0]:.4g} ({epoch[1]:.4g}, {epoch[2]:.4g}) | {HOFFMANN[p]} |"
            )
        a = fit["exponent_a"]
        d = fit["diagnostics"]
        lines += [
            "",
            f"a = beta/(alpha+beta): {a['median']:.3f} [{a['q05']:.3f}, {a['q95']:.3f}] "
            "(Epoch: 0.513, SE 0.020)",
            f"diagnostics: max R-hat {d['max_r_hat']:.4f}, min ESS bulk {d['min_ess_bulk']:.0f}, "
            f"divergences {d['divergences']}",
            "",
        ]
        lines += ["| C (FLOP) | N* | D* | tokens per parameter (90%) |", "|---|---|---|---|"]
        for row in results["allocation"][name]:
            lines.append(
                f"| {row['compute']:.3g} | {row['N_opt_median']:.3g} | {row['D_opt_median']:.3g} | "
                f"{row['tokens_per_parameter_median']:.1f} [{row['tokens_per_parameter_q05']:.1f}, "
                f"{row['tokens_per_parameter_q95']:.1f}] |"
            )
        lines.append("")
    b = results["backtest"]
    lines += [
        f"## Back-test: {b['split']} ({b['held_out_runs']} held-out runs)",
        "",
        "| method | RMSLE | relative error | MLPD | coverage 50/80/90/95 | MSCE |",
        "|---|---|---|---|---|---|",
    ]
    for m in b["metrics"]:
        coverage = "/".join(f"{m[f'coverage_{q}']:.2f}" for q in (50, 80, 90, 95))
        lines.append(
            f"| {m['method']} | {m['rmsle']:.4f} | {m['relative_error']:.4f} | "
            f"{m['mlpd']:.2f} | {coverage} | {m['msce']:.3f} |"
        )
    lines += ["", f"({results['seconds']} s{', smoke run' if results['smoke'] else ''})"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
