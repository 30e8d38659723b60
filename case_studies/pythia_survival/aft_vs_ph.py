"""Does training on the deduplicated Pile change the exponent, or only the multiplier?

Pythia models were trained twice on the same token budget: on the Pile (about one epoch) and on
the deduplicated Pile (about 1.5 epochs, so part of the data is seen twice). Over training, each
model's LAMBADA log-perplexity follows a Burr XII survival curve in tokens,
``E + A (1 + (aft x)^gamma)^(-ph)``. A factor that acts on the AFT scale ``aft`` only is an
effective-data multiplier: the deduplicated run is worth ``exp(aft_deduped)`` times as many tokens,
and the power-law tail keeps its exponent ``gamma * ph``. A factor that also acts on the PH scale
``ph`` changes that exponent by ``exp(ph_deduped)``. The two models are compared by PSIS-LOO
(:func:`bayescale.survival.compare_aft_ph`).

Four sizes (1B, 1.4B, 6.9B, 12B; 2.8B is left out because its two evaluation sets are identical
upstream, the smaller ones because LAMBADA is not monotone in training for them), checkpoints from
step 3,000 (6.3B tokens) to 143,000 (300B). The floor, amplitude and AFT scale are each size's
own, with the same prior for every size (no pooling: four sizes cannot inform a between-size
spread, and partial pooling over them put the sampler in a funnel); the power shape, the PH scale
and the deduplication effect are shared.

    python case_studies/pythia_survival/aft_vs_ph.py           # full run
    python case_studies/pythia_survival/aft_vs_ph.py --smoke   # quick end-to-end check
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
from bayescale.survival import compare_aft_ph  # noqa: E402

SIZES = ["1b", "1.4b", "6.9b", "12b"]
# Each size's floor, amplitude and AFT scale: LogNormal(log(value), sd), the same for every size.
# Written as pooling with a Fixed population value and a Fixed spread, which makes the sizes a
# priori independent (see bayescale.Pooling).
PER_SIZE = {
    "E": (1.3, 0.5),  # log-perplexity of the target word, nats
    "A": (3.0, 1.0),
    "aft": (0.1, 2.0),  # tokens in billions
}
PRIORS = {
    **{name: f"Fixed({value})" for name, (value, _) in PER_SIZE.items()},
    **{f"{name}_sd": f"Fixed({sd})" for name, (_, sd) in PER_SIZE.items()},
    "ph": "LogNormal(0, 1)",
    "gamma": "LogNormal(0, 1)",
}


def load() -> pd.DataFrame:
    data = pd.read_csv(HERE / "data" / "pythia_lambada.csv")
    ppl = data[(data["metric"] == "ppl") & (data["step"] >= 3000) & data["size"].isin(SIZES)]
    return pd.DataFrame(
        {
            "tokens": ppl["tokens"].to_numpy(float) / 1e9,
            "log_ppl": np.log(ppl["value"].to_numpy(float)),
            "size": ppl["size"].to_numpy(),
            "deduped": ppl["deduped"].astype(float).to_numpy(),
        }
    ).reset_index(drop=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sampler settings")
    parser.add_argument("--out", default=str(HERE / "output"), help="output folder")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    options = (
        {"chains": 2, "draws": 150, "warmup": 150, "starts": 8}
        if args.smoke
        else {"chains": 4, "draws": 1000, "warmup": 2000, "target_accept": 0.99}
    )
    if args.smoke:
        warnings.simplefilter("ignore", ConvergenceWarning)
    frame = load()
    print(f"{len(frame)} checkpoints: sizes {', '.join(SIZES)}, standard and deduplicated Pile")
    comparison = compare_aft_ph(
        frame,
        "burr_curve",
        "deduped",
        y="log_ppl",
        x={"x": "tokens"},
        # every size has 30 checkpoints (15 per Pile variant), which pin its own floor and
        # amplitude; centred or non-centred pooling over the four sizes had 32 to 56 divergences
        pool=[bs.Pooling(name, "size", centered=True) for name in PER_SIZE],
        priors=PRIORS,
        seed=1,
        **options,
    )
    for name, fit in (("AFT only", comparison.aft), ("AFT + PH", comparison.aft_ph)):
        print(f"\n{name}:")
        rows = [r for r in fit.summary().index if "[" not in r]
        print(fit.summary().loc[rows, ["median", "q05", "q95", "r_hat", "ess_bulk"]].round(4))
        print(fit.diagnostics.table())
    print("\nPSIS-LOO comparison:")
    print(comparison.table)
    change = comparison.exponent_change()
    multiplier = np.exp(comparison.aft.draws("aft_deduped").ravel())
    low, median, high = np.quantile(multiplier, [0.05, 0.5, 0.95])
    print(
        f"\nAFT only: deduplicated tokens are worth {median:.3f} [{low:.3f}, {high:.3f}] "
        "standard tokens"
    )
    print(
        "AFT + PH: tail-exponent multiplier exp(ph_deduped) = "
        f"{change.loc['deduped', 'median']:.3f} [{change.loc['deduped', 'low']:.3f}, "
        f"{change.loc['deduped', 'high']:.3f}]"
    )
    print(comparison.verdict())
    report = {
        "loo": comparison.table.reset_index().to_dict(orient="records"),
        "effective_data_multiplier": {"median": median, "q05": low, "q95": high},
        "exponent_multiplier": change.loc["deduped"].to_dict(),
        "verdict": comparison.verdict(),
        "converged": [comparison.aft.converged, comparison.aft_ph.converged],
    }
    (out / "aft_vs_ph.json").write_text(json.dumps(report, indent=2, default=str))
    print(f"\nwrote {out / 'aft_vs_ph.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
