"""Fit results: an ArviZ DataTree with provenance, diagnostics, summaries, save and load.

A :class:`Fit` wraps an :class:`xarray.DataTree` that follows the ArviZ schema, so every ArviZ
function works on ``fit.datatree``:

==================== =============================================================================
group                content
==================== =============================================================================
posterior            law and observation parameters; a pooled parameter ``alpha`` has a dim named
                     after its group column (coordinates: the labels) beside ``alpha_pop`` and
                     ``alpha_sd``
posterior_predictive replicated outcomes at the observed runs (dims ``chain, draw, obs``)
log_likelihood       pointwise log density of each run (for PSIS-LOO)
sample_stats         ``diverging, energy, lp, n_steps, tree_depth, acceptance_rate``
observed_data        the outcome
constant_data        the law's inputs and the group labels of every run
==================== =============================================================================

The root node's attributes hold the provenance as JSON strings: the law (its full definition),
the model specification (priors, pooling, observation model), the sampler settings with the seed,
a hash of the data, and the versions of Python and the libraries.

Examples
--------
>>> import bayescale as bs
>>> fit = bs.load_fit("chinchilla.nc")  # doctest: +SKIP
>>> fit.summary()  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
import platform
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import cache, cached_property
from importlib import metadata
from pathlib import Path
from typing import Any

import arviz_base
import numpy as np
import pandas as pd
import xarray as xr

from bayescale.convergence import rank_diagnostics
from bayescale.errors import FitFileError
from bayescale.laws import Law
from bayescale.model import INTERNAL_MARK, Design, ModelSpec

R_HAT_MAX = 1.01
"""Gate: the largest rank-normalised split R-hat allowed (Vehtari et al. 2021)."""
ESS_PER_CHAIN_MIN = 100
"""Gate: bulk and tail ESS must reach this many per chain (Vehtari et al. 2021 suggest 100)."""
BFMI_MIN = 0.3
"""Warning threshold for the energy Bayesian fraction of missing information."""

FORMAT_VERSION = 1
"""Version of the saved-fit layout; bumped when the stored attributes change meaning."""

_PACKAGES = (
    "bayescale",
    "jax",
    "jaxlib",
    "numpyro",
    "arviz",
    "arviz-base",
    "arviz-stats",
    "xarray",
    "numpy",
    "pandas",
)


@dataclass(frozen=True)
class Diagnostics:
    """Convergence diagnostics of a fit, with the gates they were checked against.

    Attributes
    ----------
    max_r_hat, min_ess_bulk, min_ess_tail : float
        Worst values over every posterior variable and element.
    divergences : int
        Divergent transitions after warmup.
    tree_depth_hits : int
        Transitions that stopped at the maximum tree depth.
    min_bfmi : float
        Smallest per-chain energy BFMI.
    chains, draws : int
    problems : tuple of str
        Failed gates (the fit should not be trusted).
    notes : tuple of str
        Efficiency warnings (the fit is usable but sampling was hard).
    advice : tuple of str
        What to try.
    """

    max_r_hat: float
    min_ess_bulk: float
    min_ess_tail: float
    divergences: int
    tree_depth_hits: int
    min_bfmi: float
    chains: int
    draws: int
    problems: tuple[str, ...]
    notes: tuple[str, ...]
    advice: tuple[str, ...]

    @property
    def converged(self) -> bool:
        """Whether every gate passed (R-hat, bulk and tail ESS, divergences)."""
        return not self.problems

    def message(self) -> str:
        """A loud, multi-line explanation of what failed and what to try."""
        if self.converged:
            return "all convergence gates passed"
        lines = ["THE FIT DID NOT CONVERGE; do not trust its numbers:"]
        lines += [f"  - {p}" for p in self.problems]
        lines += ["What to try:"] + [f"  - {a}" for a in self.advice]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["converged"] = self.converged
        for key in ("problems", "notes", "advice"):
            out[key] = list(out[key])
        return out

    def table(self) -> str:
        """A short human-readable report."""
        status = "converged" if self.converged else "NOT CONVERGED"
        ess_gate = ESS_PER_CHAIN_MIN * self.chains
        lines = [
            f"diagnostics ({self.chains} chains x {self.draws} draws): {status}",
            f"  max R-hat      {self.max_r_hat:.4f}   (gate <= {R_HAT_MAX})",
            f"  min ESS bulk   {self.min_ess_bulk:.0f}   (gate >= {ess_gate})",
            f"  min ESS tail   {self.min_ess_tail:.0f}   (gate >= {ess_gate})",
            f"  divergences    {self.divergences}   (gate = 0)",
            f"  max-depth hits {self.tree_depth_hits}",
            f"  min E-BFMI     {self.min_bfmi:.2f}",
        ]
        for problem in self.problems:
            lines.append(f"  FAILED: {problem}")
        for note in self.notes:
            lines.append(f"  note: {note}")
        if self.problems:
            lines += [f"  try: {a}" for a in self.advice]
        return "\n".join(lines)


def compute_diagnostics(datatree: xr.DataTree, max_tree_depth: int) -> Diagnostics:
    """Compute R-hat, ESS, divergences, tree-depth hits and E-BFMI from a fit's DataTree."""
    posterior = datatree["posterior"].to_dataset()
    chains = int(posterior.sizes["chain"])
    draws = int(posterior.sizes["draw"])
    stats = datatree["sample_stats"].to_dataset()
    ranked = rank_diagnostics(posterior)
    max_r_hat = _worst(ranked["r_hat"], np.max) if chains >= 2 else math.nan
    min_ess_bulk = _worst(ranked["ess_bulk"], np.min)
    min_ess_tail = _worst(ranked["ess_tail"], np.min)
    divergences = int(stats["diverging"].sum())
    hits = int((stats["tree_depth"] >= max_tree_depth).sum())
    energy = stats["energy"].values
    bfmi = np.square(np.diff(energy, axis=1)).mean(axis=1) / np.var(energy, axis=1)
    min_bfmi = float(np.min(bfmi))

    ess_min = ESS_PER_CHAIN_MIN * chains
    problems, notes, advice = [], [], []
    if chains < 2:
        problems.append("R-hat needs at least 2 chains")
        advice.append("run 4 chains (--chains 4)")
    elif not max_r_hat <= R_HAT_MAX:
        problems.append(f"max R-hat {max_r_hat:.3f} > {R_HAT_MAX}: the chains disagree")
        advice.append(
            "run longer (more --warmup and --draws); if chains sit in different modes, use "
            "more informative priors or a simpler law"
        )
    if not min_ess_bulk >= ess_min or not min_ess_tail >= ess_min:
        problems.append(
            f"min ESS bulk {min_ess_bulk:.0f} / tail {min_ess_tail:.0f} < {ess_min}: "
            "too few effective draws for stable intervals"
        )
        advice.append("increase --draws (and --warmup)")
    if divergences:
        problems.append(
            f"{divergences} divergent transitions: the sampler missed part of the posterior"
        )
        advice.append(
            "raise target_accept (0.95 or 0.99); use more informative priors; with outlying runs "
            "try --likelihood student_t"
        )
    pooled = [name for name in posterior.data_vars if str(name).endswith("_sd")]
    if problems and pooled:
        advice.append(
            "for pooled parameters whose groups each have several runs, the centred form often "
            "mixes better: Pooling(param, group, centered=True), or --centered PARAM; where "
            "groups differ, centered='auto' (--centered PARAM=auto) centres each group as far "
            "as its runs pin it; a coefficient of a law proportional to it (no floor) can be "
            "centred on each group's conditional posterior, centered='conditional'; with a "
            "handful of groups, a spread prior with no mass at zero (--prior "
            "PARAM_sd='Gamma(2, 5)') keeps the sampler out of the funnel's neck"
        )
    if hits:
        notes.append(
            f"{hits} transitions hit the maximum tree depth {max_tree_depth}: slow sampling"
        )
    if min_bfmi < BFMI_MIN:
        notes.append(f"E-BFMI {min_bfmi:.2f} < {BFMI_MIN}: heavy-tailed or funnel-shaped posterior")
    return Diagnostics(
        max_r_hat=float(max_r_hat),
        min_ess_bulk=float(min_ess_bulk),
        min_ess_tail=float(min_ess_tail),
        divergences=divergences,
        tree_depth_hits=hits,
        min_bfmi=min_bfmi,
        chains=chains,
        draws=draws,
        problems=tuple(problems),
        notes=tuple(notes),
        advice=tuple(dict.fromkeys(advice)),
    )


def _worst(dataset: xr.Dataset, pick) -> float:
    """The largest or smallest (``pick``) value over every variable, NaN ignored."""
    values = np.concatenate(
        [np.empty(0)] + [np.ravel(v.values) for v in dataset.data_vars.values()]
    )
    values = values[~np.isnan(values)]
    return float(pick(values)) if values.size else math.nan


def build_datatree(
    *,
    runs,
    spec: ModelSpec,
    design: Design,
    samples: Mapping[str, np.ndarray],
    extra: Mapping[str, np.ndarray],
    pointwise_log_likelihood: np.ndarray,
    posterior_predictive: np.ndarray,
    sampler: Mapping[str, Any],
    inference_library: str = "numpyro",
) -> xr.DataTree:
    """Assemble the ArviZ DataTree of a fit, with dims, coords and provenance.

    ``inference_library`` names the library that drew the samples (``numpyro`` or ``pymc``).
    """
    outcome = runs.outcome
    coords: dict[str, Any] = {"obs": runs.rows}
    dims: dict[str, list[str]] = {}
    for column, labels in design.group_labels.items():
        coords[column] = np.array(labels, dtype=str)
    for pooling in spec.pooling:
        dims[pooling.parameter] = [pooling.group]
    posterior = {
        name: samples[name] for name in spec.posterior_names() if INTERNAL_MARK not in name
    }
    n_steps = extra["num_steps"].astype(np.int64)
    sample_stats = {
        "diverging": extra["diverging"].astype(bool),
        "energy": extra["energy"],
        "lp": -extra["potential_energy"],
        "n_steps": n_steps,
        "tree_depth": np.floor(np.log2(n_steps)).astype(np.int64) + 1,
        "acceptance_rate": extra["accept_prob"],
    }
    constant = {name: values for name, values in design.x.items()}
    for column in spec.group_columns:
        constant[column] = np.asarray(runs.groups[column], dtype=str)
    for column in (*spec.covariate_columns, *spec.group_covariate_columns):
        constant[column] = runs.covariates[column]
    if runs.trials is not None:
        constant["trials"] = runs.trials
    if runs.censoring is not None:
        constant["censoring"] = runs.censoring.astype(np.int64)
    observed_dims = {outcome: ["obs"], **{name: ["obs"] for name in constant}}
    provenance = {
        "bayescale_format": FORMAT_VERSION,
        "bayescale_law": json.dumps(_law_record(spec.law)),
        "bayescale_model": json.dumps(spec.to_dict()),
        "bayescale_sampler": json.dumps(sampler),
        "bayescale_data": json.dumps(
            {
                "source": runs.source,
                "sha256": runs.sha256(),
                "n_runs": runs.n_runs,
                "outcome": outcome,
                "outcome_kind": runs.outcome_kind,
                "columns": runs.columns,
                "duplicates": [list(d) for d in runs.duplicates],
                "log_reference": design.log_reference,
            }
        ),
        "bayescale_versions": json.dumps(_versions()),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    library = {
        "inference_library": inference_library,
        "inference_library_version": _version(inference_library),
    }
    return arviz_base.from_dict(
        {
            "posterior": posterior,
            "posterior_predictive": {outcome: posterior_predictive},
            "log_likelihood": {outcome: pointwise_log_likelihood},
            "sample_stats": sample_stats,
            "observed_data": {outcome: runs.y},
            "constant_data": constant,
        },
        coords=coords,
        dims={**dims, **observed_dims},
        attrs={
            "/": provenance,
            "posterior": library,
            "sample_stats": library,
        },
    )


def _law_record(law: Law) -> dict[str, Any]:
    if law.formula is None:
        return {"name": law.name, "python_function": law.formula_text, "outcome": law.outcome}
    return law.to_dict()


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


@cache
def _versions() -> dict[str, str]:
    """The versions of Python and of the packages a fit records (read once per process: the
    package metadata take about 1 ms each to read, 11 ms a fit)."""
    versions = {"python": platform.python_version()}
    versions.update({name: _version(name) for name in _PACKAGES})
    return versions


class Fit:
    """The result of fitting a law: posterior draws, diagnostics and provenance.

    Parameters
    ----------
    datatree : xarray.DataTree
        A DataTree written by bayescale (see the module docstring for its layout).
    law : Law, optional
        Needed only for a law defined by a Python function, which cannot be stored.

    Attributes
    ----------
    datatree : xarray.DataTree
        The ArviZ DataTree; use it with any ArviZ function.
    spec : ModelSpec
        Law, priors, pooling and observation model.
    """

    def __init__(self, datatree: xr.DataTree, law: Law | None = None):
        attrs = datatree.attrs
        if "bayescale_law" not in attrs:
            raise FitFileError("this DataTree was not written by bayescale (no provenance found)")
        record = json.loads(attrs["bayescale_law"])
        if "python_function" in record:
            if law is None or law.name != record["name"]:
                raise FitFileError(
                    f"this fit used the law {record['name']!r} defined by a Python function; "
                    "pass the same law to load it (load_fit(path, law=...))"
                )
        elif law is None:
            law = Law.from_dict(record, origin="saved fit")
        self.datatree = datatree
        self.law = law
        self.spec = ModelSpec.from_dict(json.loads(attrs["bayescale_model"]), law)
        self.sampler = json.loads(attrs["bayescale_sampler"])
        self.data_info = json.loads(attrs["bayescale_data"])

    # ------------------------------------------------------------------ basic views
    @property
    def outcome(self) -> str:
        """Name of the outcome variable (the data's outcome column)."""
        return self.data_info["outcome"]

    @property
    def seed(self) -> int:
        return int(self.sampler["seed"])

    @cached_property
    def diagnostics(self) -> Diagnostics:
        """R-hat, ESS, divergences and the gates; computed from the stored draws."""
        return compute_diagnostics(self.datatree, int(self.sampler["max_tree_depth"]))

    @property
    def converged(self) -> bool:
        return self.diagnostics.converged

    def draws(self, name: str) -> np.ndarray:
        """Posterior draws of one variable as an array ``(chain, draw, ...)``."""
        posterior = self.datatree["posterior"]
        if name not in posterior.data_vars:
            raise KeyError(
                f"no posterior variable {name!r}; variables: {', '.join(posterior.data_vars)}"
            )
        return np.asarray(posterior[name].values)

    def parameter_draws(self) -> dict[str, np.ndarray]:
        """Flattened draws ``(sample, ...)`` of every parameter the law and likelihood use,
        and of every covariate coefficient. Fixed parameters are broadcast to constants.
        """
        posterior = self.datatree["posterior"]
        n = posterior.sizes["chain"] * posterior.sizes["draw"]
        out = {}
        for name in [p.name for p in self.spec.parameters] + self.coefficient_names():
            prior = self.spec.priors[name]
            if prior.is_fixed and self.spec.pooling_of(name) is None:
                out[name] = np.full(n, prior.fixed_value)
            else:
                values = np.asarray(posterior[name].values)
                out[name] = values.reshape((n, *values.shape[2:]))
        return out

    def coefficient_names(self) -> list[str]:
        """Names of the covariate coefficients (group-level and run-level)."""
        spec = self.spec
        return [n for p in spec.pooling for n in p.coefficient_names] + [
            n for r in spec.regression for n in r.coefficient_names
        ]

    def group_labels(self, column: str) -> list[str]:
        """The labels of a pooled group column, in the order of the posterior's coordinate."""
        return [str(v) for v in self.datatree["posterior"][column].values]

    def runs_frame(self) -> pd.DataFrame:
        """The runs the law was fitted to (inputs, group labels, outcome), indexed by row."""
        constant = self.datatree["constant_data"].to_dataset()
        frame = pd.DataFrame({name: constant[name].values for name in constant.data_vars})
        frame[self.outcome] = self.datatree["observed_data"][self.outcome].values
        frame.index = pd.Index(constant["obs"].values, name="row")
        return frame

    # ------------------------------------------------------------------ summaries
    def summary(self, prob: float = 0.9) -> pd.DataFrame:
        """Posterior summary: median, central interval, mean, sd, R-hat, bulk and tail ESS.

        Parameters
        ----------
        prob : float
            Mass of the central interval; ``0.9`` gives columns ``q05`` and ``q95``.

        Returns
        -------
        pandas.DataFrame
            One row per scalar, ``alpha[label]`` for each group of a pooled parameter.
        """
        low_name, high_name = interval_names(prob)
        posterior = self.datatree["posterior"].to_dataset()
        ranked = rank_diagnostics(posterior)
        rhat, ess_bulk, ess_tail = ranked["r_hat"], ranked["ess_bulk"], ranked["ess_tail"]
        rows = []
        for name in posterior.data_vars:
            values = posterior[name]
            extra_dims = [d for d in values.dims if d not in ("chain", "draw")]
            stacked = values.stack(sample=("chain", "draw")).transpose(*extra_dims, "sample")
            flat = np.asarray(stacked.values).reshape(-1, stacked.sizes["sample"])
            labels = (
                [name]
                if not extra_dims
                else [f"{name}[{label}]" for label in values[extra_dims[0]].values]
            )
            for i, label in enumerate(labels):
                draws = flat[i]
                low, median, high = np.quantile(draws, [(1 - prob) / 2, 0.5, (1 + prob) / 2])
                rows.append(
                    {
                        "parameter": label,
                        "median": median,
                        low_name: low,
                        high_name: high,
                        "mean": float(np.mean(draws)),
                        "sd": float(np.std(draws, ddof=1)),
                        "r_hat": float(np.ravel(rhat[name].values)[i])
                        if rhat is not None
                        else math.nan,
                        "ess_bulk": float(np.ravel(ess_bulk[name].values)[i]),
                        "ess_tail": float(np.ravel(ess_tail[name].values)[i]),
                    }
                )
        return pd.DataFrame(rows).set_index("parameter")

    def to_dict(self, prob: float = 0.9) -> dict[str, Any]:
        """The JSON summary printed by ``bayescale fit --json``."""
        low_name, high_name = interval_names(prob)
        table = self.summary(prob)
        parameters = {
            name: {
                "median": row["median"],
                low_name: row[low_name],
                high_name: row[high_name],
                "r_hat": None if math.isnan(row["r_hat"]) else row["r_hat"],
                "ess_bulk": row["ess_bulk"],
            }
            for name, row in table.iterrows()
        }
        d = self.diagnostics
        return {
            "law": self.law.name,
            "likelihood": self.spec.observation.name,
            "n_runs": self.data_info["n_runs"],
            "parameters": parameters,
            "diagnostics": {
                "max_r_hat": None if math.isnan(d.max_r_hat) else d.max_r_hat,
                "min_ess_bulk": d.min_ess_bulk,
                "min_ess_tail": d.min_ess_tail,
                "divergences": d.divergences,
                "converged": d.converged,
                "problems": list(d.problems),
            },
        }

    def __repr__(self) -> str:
        status = "converged" if self.converged else "NOT CONVERGED"
        pools = ", ".join(str(p) for p in self.spec.pooling)
        pooled = f", pooled {pools}" if pools else ""
        return (
            f"<Fit law={self.law.name} likelihood={self.spec.observation.name}{pooled} "
            f"runs={self.data_info['n_runs']} {self.sampler['chains']}x{self.sampler['draws']} "
            f"draws, {status}>"
        )

    # ------------------------------------------------------------------ forecasting
    def forecast(self, at, **options):
        """Posterior predictive at new inputs; see :func:`bayescale.forecast.forecast`."""
        from bayescale.forecast import forecast

        return forecast(self, at, **options)

    def derived(self, expression: str, at=None, **options):
        """Posterior of an expression of the parameters; see :func:`bayescale.forecast.derived`."""
        from bayescale.forecast import derived

        return derived(self, expression, at, **options)

    def compute_optimal(self, compute, **options):
        """Compute-optimal allocation; see :func:`bayescale.forecast.compute_optimal`."""
        from bayescale.forecast import compute_optimal

        return compute_optimal(self, compute, **options)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the fit to a netCDF file (HDF5), atomically: no partial file is ever left.

        Returns
        -------
        pathlib.Path
            The path written.
        """
        target = Path(path)
        if target.is_dir():
            raise FitFileError(f"cannot write the fit to {target}: it is a directory")
        if not target.parent.exists():
            raise FitFileError(
                f"cannot write the fit to {target}: folder {target.parent} does not exist"
            )
        temporary = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
        try:
            self.datatree.to_netcdf(temporary, engine="h5netcdf")
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return target


def interval_names(prob: float) -> tuple[str, str]:
    """Column names of a central interval: ``0.9`` gives ``("q05", "q95")``."""
    if not 0 < prob < 1:
        raise ValueError(f"prob must lie in (0, 1), got {prob}")
    low = (1 - prob) / 2 * 100
    high = (1 + prob) / 2 * 100

    def label(value: float) -> str:
        text = f"{value:.1f}".rstrip("0").rstrip(".")
        return "q" + (text.zfill(2) if "." not in text else text.replace(".", "_"))

    return label(low), label(high)


def load_fit(path: str | Path, law: Law | None = None) -> Fit:
    """Load a fit written by :meth:`Fit.save`.

    Parameters
    ----------
    path : path
        The netCDF file.
    law : Law, optional
        Only for fits of laws defined by a Python function.

    Raises
    ------
    FitFileError
        If the file is missing or is not a bayescale fit.
    """
    path = Path(path)
    if not path.is_file():
        raise FitFileError(f"fit file not found: {path}")
    try:
        with xr.open_datatree(path, engine="h5netcdf") as stored:
            datatree = stored.load()
    except (OSError, ValueError) as exc:
        raise FitFileError(f"cannot read {path} as a bayescale fit: {exc}") from None
    return Fit(datatree, law=law)


def quantile_columns(prob: float, values: np.ndarray, axis: int = 0) -> dict[str, np.ndarray]:
    """Median and central-interval bounds of ``values`` along ``axis``, named as in summaries."""
    low_name, high_name = interval_names(prob)
    low, median, high = np.quantile(values, [(1 - prob) / 2, 0.5, (1 + prob) / 2], axis=axis)
    return {"median": median, low_name: low, high_name: high}


def stack_samples(values: np.ndarray) -> np.ndarray:
    """Merge the leading ``(chain, draw)`` axes into one sample axis."""
    return values.reshape((-1, *values.shape[2:]))
