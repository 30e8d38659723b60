"""Helpers shared by the tests: simulated runs from catalog laws and small sampler settings."""

from __future__ import annotations

import numpy as np
import pandas as pd

import bayescale as bs
from bayescale.formula import NUMPY_OPS

# Small but honest sampler settings for tests: 4 chains so that R-hat means something, and enough
# draws that the ESS gate (100 per chain) is met for these well-conditioned problems.
FAST = {"chains": 4, "draws": 500, "warmup": 500}
# Twice as long, for fits whose R-hat with FAST sat close to the 1.01 gate (each test that uses
# it says what was measured).
LONGER = {"chains": 4, "draws": 1000, "warmup": 1000}


def simulate(
    law_name: str,
    inputs: dict[str, np.ndarray],
    truth: dict[str, float],
    sigma: float,
    seed: int,
    groups: dict[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """Runs drawn from a catalog law with log-normal noise of scale ``sigma``.

    ``truth`` values may be arrays indexed by a group code (see the pooled test).
    """
    law = bs.get_law(law_name)
    rng = np.random.default_rng(seed)
    mean = law.mean(inputs, truth, ops=NUMPY_OPS)
    frame = pd.DataFrame(dict(inputs))
    frame["loss"] = mean * np.exp(rng.normal(0.0, sigma, size=np.shape(mean)))
    for column, labels in (groups or {}).items():
        frame[column] = labels
    return frame


def simulate_accuracy(
    law_name: str, inputs: dict[str, np.ndarray], truth: dict[str, float], questions: int, seed: int
) -> pd.DataFrame:
    """Runs of an accuracy law: binomial counts of correct answers out of ``questions`` per run,
    as accuracies in column ``acc``, with ``questions`` as the trials column."""
    law = bs.get_law(law_name)
    rng = np.random.default_rng(seed)
    p = law.mean(inputs, truth, ops=NUMPY_OPS)
    frame = pd.DataFrame(dict(inputs))
    frame["questions"] = questions
    frame["acc"] = rng.binomial(questions, p) / questions
    return frame


def power_law_floor_runs() -> pd.DataFrame:
    """16 runs of ``power_law_floor`` (L_inf 1.6, x0 1e5, alpha 0.3) over four decades, 1% noise."""
    x = np.geomspace(1e6, 1e10, 16)
    return simulate("power_law_floor", {"x": x}, {"L_inf": 1.6, "x0": 1e5, "alpha": 0.3}, 0.01, 23)


CHINCHILLA_TRUTH = {"E": 1.8, "A": 480.0, "B": 2000.0, "alpha": 0.35, "beta": 0.37}
