"""Draw the APGW family's special cases as loss curves and as an emergence curve (no fitting).

Writes ``output/survival_shapes.png``: a loss ``E + A S(x)`` for the Weibull, log-logistic, Burr
XII and Gompertz members and a defective (cure) member, with the cure fraction marked, and an
accuracy ``floor + (ceiling - floor) (1 - S(x))``. The curves are evaluated from the catalog laws,
so the figure shows exactly what bayescale fits.

    python case_studies/survival_shapes/run.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

import bayescale as bs  # noqa: E402
from bayescale.formula import NUMPY_OPS  # noqa: E402
from bayescale.survival import cure_fraction  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="same as a full run (no fitting)")
    parser.add_argument("--out", default=str(HERE / "output"))
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.geomspace(1e4, 1e12, 300)
    head = {"E": 1.0, "A": 2.0}
    curves = {
        "Weibull (kappa = 1)": ("weibull_curve", {"aft": 1e-8, "gamma": 0.5}),
        "log-logistic (kappa -> 0, ph = 1)": ("loglogistic_curve", {"aft": 1e-8, "gamma": 0.7}),
        "Burr XII (kappa -> 0)": ("burr_curve", {"aft": 1e-8, "gamma": 1.5, "ph": 0.3}),
        "Gompertz (kappa -> inf, gamma = 1)": ("gompertz_curve", {"aft": 1e-9, "ph": 0.05}),
        "APGW, kappa = 0.3": ("apgw_curve", {"aft": 1e-8, "ph": 1.0, "gamma": 0.6, "kappa": 0.3}),
    }
    fig, (left, right) = plt.subplots(1, 2, figsize=(8.4, 3.3))
    for label, (name, theta) in curves.items():
        law = bs.get_law(name)
        with np.errstate(over="ignore"):
            left.plot(x, law.mean({"x": x}, {**head, **theta}, NUMPY_OPS), label=label)
    cure = {"A": 3.0, "aft": 1e-8, "ph": 1.0, "gamma": 1.0, "kappa": -0.4}
    left.plot(
        x,
        bs.get_law("cure_curve").mean({"x": x}, cure, NUMPY_OPS),
        "k--",
        label="cure (kappa = -0.4)",
    )
    left.axhline(3.0 * float(cure_fraction(1.0, -0.4)), color="k", lw=0.6, ls=":")
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("scale x")
    left.set_ylabel("loss")
    left.set_title("loss-like: E + A S(x)", fontsize=9)
    left.legend(fontsize=6.5)
    emergence = bs.get_law("apgw_emergence")
    for gamma, kappa in ((1.0, 1.0), (3.0, 1.0), (3.0, 8.0)):
        theta = {
            "floor": 0.25,
            "ceiling": 0.9,
            "aft": 1e-8,
            "ph": 1.0,
            "gamma": gamma,
            "kappa": kappa,
        }
        with np.errstate(over="ignore"):
            right.plot(
                x,
                emergence.mean({"x": x}, theta, NUMPY_OPS),
                label=f"gamma = {gamma:g}, kappa = {kappa:g}",
            )
    right.set_xscale("log")
    right.set_xlabel("scale x")
    right.set_ylabel("accuracy")
    right.set_title("accuracy-like: floor + (ceiling - floor)(1 - S(x))", fontsize=9)
    right.legend(fontsize=7)
    fig.tight_layout()
    path = out / "survival_shapes.png"
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
