"""Over-training (Gadre et al. 2024): fit on models up to 0.411B, predict the 1.4B and 6.9B runs.

Run from the repository root:

    python case_studies/overtraining_gadre/run.py          # full run
    python case_studies/overtraining_gadre/run.py --smoke  # quick check used by CI

Writes results.json and results.md into --out (default: output/ next to this file).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

import bayescale as bs

HERE = Path(__file__).resolve().parent
DATA = HERE / "data" / "overtraining_runs.csv"
# The authors' notebook (mlfoundations/scaling, scaling_explorer.ipynb) prints these relative
# errors of its RedPajama fit on 5 runs, predicting the C4 validation loss:
PAPER_RELATIVE_ERROR = {(640.0, "open_lm_1b"): 0.007103, (20.0, "open_lm_7b"): 0.007320}


def load() -> pd.DataFrame:
    runs = pd.read_csv(DATA)
    runs = runs.rename(columns={"flops_6ND": "C", "tokens_per_param": "M", "loss_c4_val": "loss"})
    return runs[runs["dataset"] == "rpj"].reset_index(drop=True)


def fitting_sets(runs: pd.DataFrame) -> dict[str, pd.Series]:
    small = runs["N"] < 5e8
    return {
        # the paper's default: the four small models at M = 20, plus the 11M model at M = 320
        "paper_5_runs": small & ((runs["M"] == 20) | ((runs["N"] < 2e7) & (runs["M"] == 320))),
        "small_M_at_least_10": small & (runs["M"] >= 10),
        "small_all_M": small,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE / "output")
    args = parser.parse_args()
    sampler = {"chains": 2, "draws": 150, "warmup": 150} if args.smoke else {}
    started = time.perf_counter()
    runs = load()
    targets = runs["N"] > 1e9
    results: dict = {
        "targets": runs.loc[targets, ["model", "N", "M", "C", "loss"]].to_dict("records")
    }
    sets = fitting_sets(runs)
    if args.smoke:  # one fitting set is enough to check that the script runs
        sets = {"small_M_at_least_10": sets["small_M_at_least_10"]}
    for name, train in sets.items():
        frame = runs[train | targets].copy()
        frame["train"] = train[train | targets].astype(int).to_numpy()
        backtest = bs.backtest(
            frame,
            "overtraining",
            y="loss",
            axis="C",
            train_flag="train",
            bootstrap=10 if args.smoke else 200,
            seed=0,
            fit_options=sampler,
        )
        forecasts = backtest.forecasts.merge(
            frame.loc[frame["train"] == 0, ["C", "M", "model"]], on="C"
        )
        forecasts["relative_error"] = (
            forecasts["median"] - forecasts["observed"]
        ).abs() / forecasts["observed"]
        forecasts["inside_90"] = (forecasts["observed"] >= forecasts["q05"]) & (
            forecasts["observed"] <= forecasts["q95"]
        )
        results[name] = {
            "training_runs": int(train.sum()),
            "diagnostics": backtest.fit.diagnostics.to_dict(),
            "parameters": backtest.fit.summary()[["median", "q05", "q95"]].to_dict("index"),
            "forecasts": forecasts.to_dict("records"),
            "metrics": backtest.metrics.drop(columns="note").reset_index().to_dict("records"),
        }
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["smoke"] = args.smoke
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=_plain))
    text = _markdown(results)
    (args.out / "results.md").write_text(text)
    print(text)


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(type(value).__name__)


def _markdown(results: dict) -> str:
    lines = [
        "# Over-training: forecasts of the RedPajama 1.4B and 6.9B runs (C4 validation loss)",
        "",
    ]
    for name in ("paper_5_runs", "small_M_at_least_10", "small_all_M"):
        if name not in results:
            continue
        r = results[name]
        d = r["diagnostics"]
        status = "converged" if d["converged"] else "NOT CONVERGED: " + "; ".join(d["problems"])
        lines += [
            f"## Fitted on `{name}` ({r['training_runs']} runs): {status}",
            "",
            "| method | model | M | observed | median | 90% interval | relative error | "
            "paper's relative error |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for f in r["forecasts"]:
            paper = PAPER_RELATIVE_ERROR.get((f["M"], f["model"]))
            paper_text = f"{paper:.2%}" if paper is not None and name == "paper_5_runs" else ""
            interval = "" if np.isnan(f["q05"]) else f"[{f['q05']:.4f}, {f['q95']:.4f}]"
            lines.append(
                f"| {f['method']} | {f['model']} | {f['M']:.0f} | {f['observed']:.4f} | "
                f"{f['median']:.4f} | {interval} | {f['relative_error']:.2%} | {paper_text} |"
            )
        lines.append("")
    lines.append(f"({results['seconds']} s{', smoke run' if results['smoke'] else ''})")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
