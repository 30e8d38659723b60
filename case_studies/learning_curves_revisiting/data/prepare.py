"""Make ``curves.csv`` from the published benchmark of Alabdulmohsin et al. (2022).

Run once, from the repository root, with the source files at hand (see README.md for where they
come from)::

    python case_studies/learning_curves_revisiting/data/prepare.py SOURCE_FOLDER

It keeps the 92 curves (the 20 language curves of ``benchmark.lang.dedup.csv`` and the 72 vision
curves of ``benchmark.vision.csv``) with the paper's split (``Training``: 1 to fit, 0 held out),
and thins the fitting part of any curve to at most 32 points and its held-out part to at most 16,
evenly spaced in log examples seen (first and last kept). The case study and the benchmarks read
only the result.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

MAX_POINTS = {1: 32, 0: 16}
"""Most points kept per curve in the fitting (1) and held-out (0) parts."""


def thin(curve: pd.DataFrame, points: int) -> pd.DataFrame:
    curve = curve.sort_values("Seen Examples")
    if len(curve) <= points:
        return curve
    logs = np.log(curve["Seen Examples"].to_numpy())
    targets = np.linspace(logs[0], logs[-1], points)
    keep = sorted({int(np.argmin(np.abs(logs - t))) for t in targets})
    return curve.iloc[keep]


def main(source: Path) -> None:
    frames = [
        pd.read_csv(source / "benchmark.lang.dedup.csv"),
        pd.read_csv(source / "benchmark.vision.csv"),
    ]
    table = pd.concat(frames, ignore_index=True)
    keys = ["Domain", "Task", "Model"]
    curves = [
        thin(part, MAX_POINTS[int(flag)])
        for (*_, flag), part in table.groupby([*keys, "Training"], sort=True)
    ]
    out = pd.concat(curves, ignore_index=True)[[*keys, "Seen Examples", "Loss", "Training"]]
    out = out.sort_values([*keys, "Seen Examples"], kind="stable")
    out.to_csv(Path(__file__).with_name("curves.csv"), index=False, float_format="%.10g")
    print(f"{out.groupby(keys).ngroups} curves, {len(out)} points")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
