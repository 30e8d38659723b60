"""Make ``curves.csv`` from the published benchmark of Alabdulmohsin et al. (2022).

Run once, from the repository root, with the source files at hand (see README.md for where they
come from)::

    python benchmarks/data/learning_curves/prepare.py SOURCE_FOLDER

It keeps the fitting split (``Training == 1``) of the 92 curves (the 20 language curves of
``benchmark.lang.dedup.csv`` and the 72 vision curves of ``benchmark.vision.csv``) and thins any
curve with more than 32 training points to 32 points evenly spaced in log examples seen (first and
last kept). The benchmarks read only the result.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

MAX_POINTS = 32


def thin(curve: pd.DataFrame) -> pd.DataFrame:
    curve = curve.sort_values("Seen Examples")
    if len(curve) <= MAX_POINTS:
        return curve
    logs = np.log(curve["Seen Examples"].to_numpy())
    targets = np.linspace(logs[0], logs[-1], MAX_POINTS)
    keep = sorted({int(np.argmin(np.abs(logs - t))) for t in targets})
    return curve.iloc[keep]


def main(source: Path) -> None:
    frames = [
        pd.read_csv(source / "benchmark.lang.dedup.csv"),
        pd.read_csv(source / "benchmark.vision.csv"),
    ]
    table = pd.concat(frames, ignore_index=True)
    table = table[table["Training"] == 1]
    keys = ["Domain", "Task", "Model"]
    curves = [thin(curve) for _, curve in table.groupby(keys, sort=True)]
    out = pd.concat(curves, ignore_index=True)[[*keys, "Seen Examples", "Loss"]]
    out.to_csv(Path(__file__).with_name("curves.csv"), index=False, float_format="%.10g")
    print(f"{out.groupby(keys).ngroups} curves, {len(out)} points")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
