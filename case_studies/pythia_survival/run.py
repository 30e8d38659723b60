"""Tokens to reach a target accuracy, with right-censored runs (Pythia, LAMBADA).

The outcome is a *time to event*: the training tokens a Pythia model needs before its zero-shot
LAMBADA accuracy first reaches 0.55. The 12B model gets there after about 40B tokens; the 70M,
160M and 410M models never do within their 300B-token run. Their time to target is not 300B:
it is *more than* 300B, possibly infinite. That is a right-censored observation, and the
likelihood must use ``P(T > 300B) = 1 - F(300B)`` for it (the data layer's ``censored`` flag,
``right``), not the density at 300B.

The law: ``T(N) = T_min + (N_c / N)^alpha`` (the catalog's ``power_law_floor`` with x = N): a
minimum number of tokens even an unbounded model needs, plus a power law in model size. Three
fits of the same runs show what the censoring buys:

* **censored**: never-reached runs right-censored at their budget (correct);
* **dropped**: never-reached runs left out (the law then never sees that small models fail);
* **as reached**: never-reached runs treated as if they reached the target at 300B (biased).

    python case_studies/pythia_survival/run.py           # full run (a few minutes)
    python case_studies/pythia_survival/run.py --smoke   # quick end-to-end check
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))  # run from a source checkout without installing

import bayescale as bs  # noqa: E402
from bayescale.errors import ConvergenceWarning  # noqa: E402

TARGET = 0.55
BILLION = 1e9
PRIORS = {
    "L_inf": "LogNormal(log(30), 1.5)",  # minimum tokens (billions) even an unbounded model needs
    "x0": "LogNormal(log(1e8), 5)",
    "alpha": "LogNormal(log(1), 1)",
}


def time_to_target(curve: pd.DataFrame) -> tuple[float, bool]:
    """Tokens at which accuracy first reaches TARGET (log-linear interpolation between
    checkpoints), and whether it did; if not, the run's last token count (censored)."""
    curve = curve.sort_values("tokens")
    above = np.flatnonzero(curve["value"].to_numpy() >= TARGET)
    if above.size == 0:
        return float(curve["tokens"].iloc[-1]), False
    i = int(above[0])
    t1, a1 = curve["tokens"].iloc[i], curve["value"].iloc[i]
    t0, a0 = curve["tokens"].iloc[i - 1], curve["value"].iloc[i - 1]
    weight = (TARGET - a0) / (a1 - a0)
    return float(np.exp(np.log(t0) + weight * (np.log(t1) - np.log(t0)))), True


def runs() -> pd.DataFrame:
    data = pd.read_csv(HERE / "data" / "pythia_lambada.csv")
    accuracy = data[data["metric"] == "acc"]
    rows = []
    for model, curve in accuracy.groupby("model"):
        tokens, reached = time_to_target(curve[curve["step"] >= 1000])
        rows.append(
            {
                "model": model,
                "N": float(curve["N_total"].iloc[0]),
                "deduped": bool(curve["deduped"].iloc[0]),
                "tokens_B": tokens / BILLION,
                "reached": reached,
            }
        )
    frame = pd.DataFrame(rows).sort_values(["N", "deduped"]).reset_index(drop=True)
    # upstream, pythia-2.8b-deduped's evaluations are identical to pythia-2.8b's: keep one
    duplicate = frame["model"] == "pythia-2.8b-deduped"
    return frame[~duplicate].reset_index(drop=True)


def settings(smoke: bool) -> dict:
    if smoke:
        return {"chains": 2, "draws": 150, "warmup": 150, "starts": 8}
    return {"chains": 4, "draws": 1000, "warmup": 1000, "target_accept": 0.95}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sampler settings")
    parser.add_argument("--out", default=str(HERE / "output"), help="output folder")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.smoke:
        warnings.simplefilter("ignore", ConvergenceWarning)

    frame = runs()
    frame["censored"] = np.where(frame["reached"], "exact", "right")
    print(
        f"time (billions of tokens) to LAMBADA accuracy >= {TARGET}; 'right' = never reached "
        "within the run, censored at its budget:"
    )
    print(frame[["model", "N", "tokens_B", "censored"]].to_string(index=False))

    variants = {
        "censored": (frame, "censored"),
        "dropped": (frame[frame["reached"]], None),
        "as reached": (frame, None),
    }
    sizes = np.array([4.1e8, 1e9, 3e9, 1e11])
    report: dict[str, dict] = {}
    curves = {}
    for name, (data, censored) in variants.items():
        fit = bs.fit(
            data[["N", "tokens_B", *(["censored"] if censored else [])]],
            "power_law_floor",
            y="tokens_B",
            x={"x": "N"},
            censored=censored,
            priors=PRIORS,
            seed=55,
            **settings(args.smoke),
        )
        table = fit.forecast({"x": sizes}).table()
        curve = fit.derived("L_inf + (x0 / x)^alpha", {"x": np.geomspace(5e7, 3e11, 80)})
        curves[name] = curve.table()
        # the model size that reaches the target in exactly 300B tokens (T(N) = 300)
        threshold = fit.derived("x0 / (300 - L_inf)^(1 / alpha)").table().iloc[0]
        report[name] = {
            "runs": len(data),
            "T_at_N": {
                f"{n:.3g}": {k: float(table.loc[i, k]) for k in ("median", "q05", "q95")}
                for i, n in enumerate(sizes)
            },
            "N_reaching_target_at_300B": {k: float(threshold[k]) for k in ("median", "q05", "q95")},
            "alpha": {k: float(fit.summary().loc["alpha", k]) for k in ("median", "q05", "q95")},
            "converged": fit.converged,
        }
        print(
            f"\n{name}: {len(data)} runs; diagnostics: "
            f"{'converged' if fit.converged else 'NOT CONVERGED'}"
        )
        print(fit.summary()[["median", "q05", "q95", "r_hat"]].round(3).to_string())

    print("\nPredicted tokens (B) to reach the target, median [90% interval]:")
    header = "  N          " + "".join(f"{name:>28}" for name in variants)
    print(header)
    for n in sizes:
        key = f"{n:.3g}"
        cells = "".join(
            f"{report[v]['T_at_N'][key]['median']:>10.0f} [{report[v]['T_at_N'][key]['q05']:>6.0f},"
            f" {report[v]['T_at_N'][key]['q95']:>7.0f}]"
            for v in variants
        )
        print(f"  {key:<10} {cells}")
    print("\nModel size that reaches the target in exactly 300B tokens:")
    for name in variants:
        t = report[name]["N_reaching_target_at_300B"]
        print(f"  {name:<11} {t['median']:.3g} [{t['q05']:.3g}, {t['q95']:.3g}]")
    (out / "report.json").write_text(json.dumps(report, indent=2))
    plot(frame, curves, out / "pythia_time_to_target.png")
    print(f"\nwrote {out / 'report.json'} and {out / 'pythia_time_to_target.png'}")
    return 0


def plot(frame, curves, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    for color, (name, table) in zip(("C0", "C3", "C7"), curves.items(), strict=False):
        ax.plot(table["x"], table["median"], color=color, label=name)
        ax.fill_between(table["x"], table["q05"], table["q95"], color=color, alpha=0.15)
    reached = frame[frame["reached"]]
    ax.plot(reached["N"], reached["tokens_B"], "ko", ms=4, label="reached the target")
    never = frame[~frame["reached"]]
    ax.plot(never["N"], never["tokens_B"], "k^", ms=6, label="never reached (censored)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(10, 3000)
    ax.set_xlabel("parameters N")
    ax.set_ylabel(f"tokens (B) to LAMBADA acc {TARGET}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
