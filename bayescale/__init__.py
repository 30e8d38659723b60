"""bayescale: Bayesian modelling of neural scaling laws.

Fit a scaling law with full posterior uncertainty, forecast scales not yet trained, and keep the
result in the ArviZ schema.

Examples
--------
>>> import bayescale as bs
>>> {"chinchilla", "kaplan"} <= set(bs.catalog())
True
>>> runs = bs.datasets.chinchilla()
>>> fit = bs.fit(runs, "chinchilla", y="loss", likelihood="student_t")  # doctest: +SKIP
>>> fit.forecast({"N": 7e10, "D": 1.4e12}).table()  # doctest: +SKIP
"""

from importlib import metadata

from bayescale import datasets
from bayescale.backtest import BacktestResult, CurvesBacktest, backtest, backtest_curves
from bayescale.batch import BatchFit, fit_batch
from bayescale.compare import Comparison, Crossover, compare, compare_groups
from bayescale.data import Runs, load_points, load_runs
from bayescale.errors import (
    BayescaleError,
    ConvergenceWarning,
    DataError,
    DuplicateRunsWarning,
    FitFileError,
    FormulaError,
    LawError,
    PriorError,
    SettingsError,
)
from bayescale.forecast import (
    Derived,
    Forecast,
    compute_optimal,
    derived,
    forecast,
    forecast_new_group,
    new_group_draws,
)
from bayescale.inference import SamplerSettings, fit, use_cpu_devices
from bayescale.laws import Law, catalog, get_law
from bayescale.likelihoods import OBSERVATION_MODELS, get_observation_model
from bayescale.model import ModelSpec
from bayescale.priors import Pooling, Prior
from bayescale.report import Report, build_report
from bayescale.results import Diagnostics, Fit, load_fit
from bayescale.selection import LawCheck, NoAdequateLawError, Selection, select

try:
    __version__ = metadata.version("bayescale")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "BacktestResult",
    "OBSERVATION_MODELS",
    "BatchFit",
    "CurvesBacktest",
    "BayescaleError",
    "Comparison",
    "Crossover",
    "ConvergenceWarning",
    "DataError",
    "Derived",
    "Diagnostics",
    "DuplicateRunsWarning",
    "Fit",
    "FitFileError",
    "Forecast",
    "FormulaError",
    "Law",
    "LawCheck",
    "LawError",
    "ModelSpec",
    "NoAdequateLawError",
    "Pooling",
    "Prior",
    "PriorError",
    "Report",
    "Runs",
    "SamplerSettings",
    "Selection",
    "SettingsError",
    "backtest",
    "backtest_curves",
    "build_report",
    "catalog",
    "compare",
    "compare_groups",
    "compute_optimal",
    "datasets",
    "derived",
    "fit",
    "fit_batch",
    "forecast",
    "forecast_new_group",
    "new_group_draws",
    "get_law",
    "get_observation_model",
    "load_fit",
    "load_points",
    "load_runs",
    "select",
    "use_cpu_devices",
]
