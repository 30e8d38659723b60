"""Which LAION pool should a CLIP model be trained on, at which budget? (Goyal et al. 2024 law
on the OpenCLIP scaling grid of Cherti et al. 2023.)

Cherti et al. trained the same CLIP architectures on three LAION pools of very different sizes
(80M, 400M and 2.32B unique image-text pairs) for 3B, 13B and 34B samples seen, so the small
pools were repeated up to 428 times. Goyal et al.'s law gives every pool a utility b (how fast
the error falls on fresh data) and a repetition half-life tau (after how many passes the utility
has halved); the model's scale a and floor d are shared by the pools. Fitted per architecture on
ImageNet zero-shot error, the posterior answers: at a budget of n samples, what is the
probability that each pool gives the lowest error, and what would a mixture of pools do?

Run from the repository root:

    python case_studies/data_pools_openclip/run.py                  # ViT-B/32 and ViT-L/14
    python case_studies/data_pools_openclip/run.py --arch ViT-B-32  # one architecture
    python case_studies/data_pools_openclip/run.py --smoke          # ViT-B/32, short chains

Tables are printed; results.json goes to case_studies/data_pools_openclip/output/ and the figure
to case_studies/data_pools_openclip/figures/ (neither is kept in git).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

import bayescale as bs
from bayescale import pools

HERE = Path(__file__).resolve().parent
FIGURES = HERE / "figures"
"""Figures are written here when the script runs (not kept in git)."""
ARCHS = ("ViT-B-32", "ViT-L-14")
POOL_SIZES = {
    "LAION-80M": 80_000_415,  # samples per epoch of every 80M run (trained_models_info.csv)
    "LAION-400M": 407_332_084,  # samples per epoch of the 400M runs (LAION-400M: 413M listed)
    "LAION-2B": 2_320_000_000,  # LAION-2B-en, 2.32B pairs (Schuhmann et al. 2022)
}
BUDGETS = [1e9, 3e9, 1.3e10, 3.4e10, 1e11]
PRIORS = {
    # the authors' grid searches a in [1e-4, 0.02] (README: a_upper) and tau in [1, 100]
    "a": "LogNormal(log(0.02), 1)",
    "tau": "LogNormal(log(10), 1.5)",
    "d": "LogNormal(log(0.2), 0.5)",
    "b_sd": "HalfNormal(0.5)",
    "tau_sd": "HalfNormal(0.5)",
}


def runs(arch: str) -> pd.DataFrame:
    """Final ImageNet zero-shot error of every LAION run of one architecture."""
    frame = pd.read_csv(HERE / "data" / "zeroshot_imagenet.csv")
    frame = frame[
        (frame["downstream_dataset"] == "imagenet1k")
        & frame["upstream_dataset"].isin(POOL_SIZES)
        & (frame["arch"] == arch)
    ].copy()
    frame["pool"] = frame["upstream_dataset"]
    frame["S"] = frame["pool"].map(POOL_SIZES).astype(float)
    frame["n"] = frame["samples_seen"]
    frame["error"] = 1 - frame["acc1"]
    frame["passes"] = frame["n"] / frame["S"]
    return frame[["arch", "pool", "n", "S", "passes", "error"]].reset_index(drop=True)


def analyse(arch: str, settings: dict) -> tuple[dict, bs.Fit]:
    frame = runs(arch)
    print(f"\n{arch}: {len(frame)} runs")
    print(frame.pivot(index="n", columns="pool", values="error").round(3).to_string())
    started = time.perf_counter()
    fit = pools.fit_pools(frame, y="error", priors=PRIORS, **settings)
    d = fit.diagnostics
    print(
        f"fitted in {time.perf_counter() - started:.0f} s: "
        f"{'converged' if d.converged else 'NOT CONVERGED'} (max R-hat {d.max_r_hat:.3f}, "
        f"min ESS {d.min_ess_bulk:.0f}, {d.divergences} divergences)"
    )
    summary = fit.summary()
    rows = [
        n for n in summary.index if n.split("[")[0] in ("a", "d", "b", "tau", "b_pop", "tau_pop")
    ]
    print(summary.loc[rows, ["median", "q05", "q95"]].to_string(float_format=lambda v: f"{v:.4g}"))

    best = pools.best_choice(fit, list(POOL_SIZES), BUDGETS)
    print("P(lowest expected error) at each budget (samples seen):")
    print(best.to_string(float_format=lambda v: f"{v:.3f}"))
    duel = pools.prob_better(fit, "LAION-400M", "LAION-2B", BUDGETS)
    print("LAION-400M against LAION-2B:")
    print(duel.to_string(float_format=lambda v: f"{v:.3f}"))
    mixture = {"LAION-400M": POOL_SIZES["LAION-400M"], "LAION-2B": POOL_SIZES["LAION-2B"]}
    mixed = pools.mixture_error(fit, mixture, BUDGETS)
    print("A mixture of both whole pools (2.73B unique samples), posterior predictive error:")
    print(mixed.to_string(float_format=lambda v: f"{v:.4f}"))
    versus = pools.prob_better(fit, mixture, "LAION-2B", BUDGETS)

    predictive = fit.datatree["posterior_predictive"]["error"].values.reshape(-1, len(frame))
    low, high = np.quantile(predictive, [0.05, 0.95], axis=0)
    inside = float(np.mean((frame["error"] >= low) & (frame["error"] <= high)))
    print(f"runs inside their 90% posterior predictive interval: {inside:.2f}")
    result = {
        "parameters": summary.loc[rows, ["median", "q05", "q95", "r_hat"]].to_dict(orient="index"),
        "best_choice": {f"{n:.3g}": row.to_dict() for n, row in best.iterrows()},
        "prob_400M_beats_2B": {f"{n:.3g}": float(v) for n, v in duel["prob_first_better"].items()},
        "prob_mixture_beats_2B": {
            f"{n:.3g}": float(v) for n, v in versus["prob_first_better"].items()
        },
        "predictive_coverage_90": inside,
        "diagnostics": d.to_dict(),
    }
    return result, fit


def figure(fits: dict[str, bs.Fit], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.geomspace(1e9, 1e11, 40)
    fig, axes = plt.subplots(1, len(fits), figsize=(4.2 * len(fits), 3.3), squeeze=False)
    for ax, (arch, fit) in zip(axes[0], fits.items(), strict=True):
        frame = runs(arch)
        for pool in POOL_SIZES:
            table = pools.pool_error(fit, pool, grid)
            line = ax.plot(grid, table["median"], label=pool)[0]
            ax.fill_between(grid, table["q05"], table["q95"], alpha=0.2, color=line.get_color())
            rows = frame[frame["pool"] == pool]
            ax.scatter(rows["n"], rows["error"], color=line.get_color(), s=14, zorder=3)
        ax.set_xscale("log")
        ax.set_xlabel("samples seen")
        ax.set_ylabel("ImageNet zero-shot error")
        ax.set_title(arch, fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="ViT-B/32 only, short chains")
    parser.add_argument("--out", type=Path, default=HERE / "output")
    parser.add_argument(
        "--draws", type=int, default=None, help="draws and warmup per chain (1000; smoke 200)"
    )
    parser.add_argument(
        "--arch", action="append", choices=ARCHS, help="architectures to fit (default: both)"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    draws = args.draws or (200 if args.smoke else 1000)
    settings = {"chains": 4, "draws": draws, "warmup": draws, "seed": 7, "target_accept": 0.99}
    archs = args.arch or (["ViT-B-32"] if args.smoke else list(ARCHS))
    results, fits = {}, {}
    for arch in archs:
        results[arch], fits[arch] = analyse(arch, settings)
    FIGURES.mkdir(exist_ok=True)
    figure(fits, FIGURES / "pools_openclip.png")
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=float))
    print(f"\nresults written to {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
