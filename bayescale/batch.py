"""Fit many independent curves of the same law in one compiled program.

:func:`fit_batch` fits one law, separately, to each of many curves (benchmark tasks, model
families, languages fitted one by one, bootstrap replicates of a data set). The work that
:func:`bayescale.fit` does for one curve (multi-start optimisation, Laplace-spread chain starts,
NUTS warm-up and sampling, log-likelihood and replicated outcomes) is written as a pure JAX function
of the curve's data and mapped over curves (``jax.vmap`` within a ``lockstep`` group) and over
each curve's chains (one after the other on a CPU, ``jax.vmap`` elsewhere): one XLA program
samples every curve, each with its own step size, mass matrix and trees. On a GPU the curves run
side by side. On a CPU the gain is smaller, since :func:`bayescale.fit` pads runs the same way
and keeps its compiled programs, so a loop of it compiles once per size bucket too (benchmark
(c), 92 curves on 2 cores: the batch took 15.8 s on its first call and 7.6 s on a refit, a loop
of :func:`bayescale.fit` 26.4 s; docs/performance.md).

Shape bucketing
---------------
The compiled program depends on array shapes, not on values. Each curve's runs are padded to a
bucket size (:func:`~bayescale.model.bucket_size`, as :func:`bayescale.fit` pads them) by
repeating its first run, and the padded runs are masked out of the likelihood (their log density
is exactly zero, and they never reach the results). Group counts of pooled models are bucketed
the same way (padded groups have no runs and are dropped). Refitting curves whose sizes fall in
the same buckets, with the same number of curves and the same settings, reuses the compiled
program: no recompilation (see ``compilations`` in the returned :class:`BatchFit`). A batch with
another number of curves compiles a new program.

Results
-------
One :class:`~bayescale.results.Fit` per curve, exactly as :func:`bayescale.fit` returns it (same
DataTree layout, diagnostics, forecasts, save and load), so every ArviZ function works on each
curve; a stacked DataTree with a ``curve`` dim would force every curve onto the union of the
others' runs and groups. :class:`BatchFit` maps curve labels to fits and adds one table of
summaries and one of diagnostics for the whole batch.

Compilation cache
-----------------
Within a Python process, JAX keeps compiled programs in memory. Across processes, JAX can keep
them on disk; :func:`enable_compilation_cache` opts in (nothing is changed at import).

Examples
--------
>>> import numpy as np, pandas as pd
>>> x = np.geomspace(1e6, 1e9, 8)
>>> frame = pd.DataFrame({"task": np.repeat(["a", "b"], 8), "x": np.tile(x, 2),
...                       "loss": np.r_[2 + (1e5 / x) ** 0.3, 1.5 + (1e4 / x) ** 0.2]})
>>> fits = fit_batch(frame, "power_law_floor", by="task", y="loss")  # doctest: +SKIP
>>> fits["a"].summary()  # doctest: +SKIP
>>> fits.diagnostics_table()  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax.flatten_util import ravel_pytree
from numpyro.infer.util import constrain_fn, potential_energy, unconstrain_fn

from bayescale import lbfgs
from bayescale.data import Runs, load_runs
from bayescale.density import latent_sites, latent_trace
from bayescale.errors import ConvergenceWarning, DataError, SettingsError
from bayescale.inference import (
    DENSE_MASS_MAX_DIMENSION,
    LAPLACE_MAX_DIMENSION,
    NUTS_STATISTICS,
    InitReport,
    SamplerSettings,
    _prior_starts,
    draw_outputs,
    jax_device,
    nuts_chain,
    xla_compilations,
)
from bayescale.laws import Law, get_law
from bayescale.likelihoods import ObservationModel, default_observation_model
from bayescale.model import (
    Design,
    ModelSpec,
    bucket_size,
    numpyro_model,
)
from bayescale.priors import Pooling, Prior
from bayescale.results import Fit, build_datatree


# ---------------------------------------------------------------------- results
@dataclass(frozen=True)
class BatchFit(Mapping[str, Fit]):
    """The fits of a batch: a mapping from curve label to :class:`~bayescale.results.Fit`.

    Attributes
    ----------
    fits : dict of str to Fit
        One fit per curve, in input order.
    wall_seconds : float
        Time of the whole batch (compilation included).
    compile_seconds : float
        Time spent compiling XLA programs during the batch (0 when the programs were reused).
    compilations : int
        Number of XLA compilations during the batch.
    bucket : dict
        Padded sizes: ``runs`` per curve and, per pooled group column, ``groups``.
    """

    fits: dict[str, Fit]
    wall_seconds: float
    compile_seconds: float
    compilations: int
    bucket: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, label: str) -> Fit:
        try:
            return self.fits[label]
        except KeyError:
            shown = ", ".join(list(self.fits)[:10])
            raise KeyError(f"no curve {label!r} in this batch; curves: {shown}, ...") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.fits)

    def __len__(self) -> int:
        return len(self.fits)

    def __repr__(self) -> str:
        failed = self.failed
        status = f"{len(failed)} NOT CONVERGED" if failed else "all converged"
        return (
            f"<BatchFit {len(self)} curves, {status}, {self.wall_seconds:.1f} s "
            f"({self.compile_seconds:.1f} s compiling)>"
        )

    @property
    def failed(self) -> list[str]:
        """Labels of the curves whose fit failed a convergence gate."""
        return [label for label, fit in self.fits.items() if not fit.converged]

    def summary(self, prob: float = 0.9) -> pd.DataFrame:
        """Every curve's :meth:`~bayescale.results.Fit.summary`, indexed by curve and parameter."""
        return pd.concat(
            {label: fit.summary(prob) for label, fit in self.fits.items()}, names=["curve"]
        )

    def diagnostics_table(self) -> pd.DataFrame:
        """One row of convergence diagnostics per curve."""
        rows = {}
        for label, fit in self.fits.items():
            d = fit.diagnostics
            rows[label] = {
                "converged": d.converged,
                "max_r_hat": d.max_r_hat,
                "min_ess_bulk": d.min_ess_bulk,
                "min_ess_tail": d.min_ess_tail,
                "divergences": d.divergences,
                "tree_depth_hits": d.tree_depth_hits,
            }
        return pd.DataFrame.from_dict(rows, orient="index").rename_axis("curve")


# ---------------------------------------------------------------------- entry point
def fit_batch(
    data: pd.DataFrame | str | Path | Mapping[str, Any] | Sequence[Any],
    law: str | Law,
    *,
    by: str | Sequence[str] | None = None,
    y: str | None = None,
    x: Mapping[str, str] | None = None,
    pool: Iterable[str | Pooling] | Mapping[str, str] = (),
    regress: Mapping[str, Iterable[str]] | None = None,
    priors: Mapping[str, str | Prior] | None = None,
    likelihood: str | ObservationModel | None = None,
    likelihood_options: Mapping[str, float] | None = None,
    trials: str | None = None,
    censored: str | None = None,
    chains: int = 4,
    draws: int = 1000,
    warmup: int = 1000,
    seed: int = 0,
    target_accept: float = 0.9,
    max_tree_depth: int = 10,
    dense_mass: bool | str = "auto",
    starts: int = 32,
    device: str | None = None,
    lockstep: int | None = None,
    chain_method: str = "auto",
) -> BatchFit:
    """Fit one law separately to each of many curves, in one compiled program.

    Parameters
    ----------
    data : DataFrame, path, mapping or sequence
        One table with a column (or columns) ``by`` naming each row's curve; or a mapping from
        curve label to a DataFrame or :class:`~bayescale.data.Runs`; or a sequence of them
        (labelled ``"0"``, ``"1"``, ...).
    law : str or Law
    by : str or list of str, optional
        Column(s) whose values label the curves (a table only). Several columns give labels
        joined with ``" / "``.
    y, x, pool, regress, priors, likelihood, likelihood_options, trials, censored
        As in :func:`bayescale.fit`; the same model for every curve.
    chains, draws, warmup, seed, target_accept, max_tree_depth, dense_mass, starts
        Sampler settings, as in :func:`bayescale.fit`. A curve's random numbers depend on
        ``seed`` and its position in the batch.
    device : str, optional
        ``"cpu"``, ``"gpu"``, or ``None`` (default) for JAX's default device: unlike a single
        fit, a batch may use a GPU where JAX has one (it measured as fast as 2 CPU cores on 92
        curves; docs/performance.md).
    lockstep : int, optional
        How many curves are sampled together, in lockstep (vectorised): every NUTS iteration of
        such a group lasts as long as its slowest curve's. Groups run one after the other inside
        the same compiled program. ``None`` (default): one curve at a time on a CPU, all the
        curves at once on a GPU. On 2 CPU cores, 92 learning curves took 70 s one at a time
        against 162 s all at once (see docs/performance.md).
    chain_method : str
        How each curve's chains run: ``"sequential"`` (one after the other), ``"vectorized"``
        (side by side, every iteration as long as the slowest chain's), or ``"auto"``
        (default): sequential on a CPU, vectorised elsewhere. On 2 CPU cores sequential chains
        refitted the 92 curves of benchmark (c) in 9.3 to 9.9 s against 16.8 to 16.9 s
        (docs/performance.md). ``"parallel"`` is for single fits: a batch spreads its curves,
        not its chains, over the devices. Each fit records the method in
        ``sampler["chain_method_used"]``.

    Returns
    -------
    BatchFit
        A mapping from curve label to :class:`~bayescale.results.Fit`.

    Warns
    -----
    ConvergenceWarning
        Once, listing the curves whose fits failed a convergence gate.
    """
    settings = SamplerSettings(
        chains=chains,
        draws=draws,
        warmup=warmup,
        seed=seed,
        target_accept=target_accept,
        max_tree_depth=max_tree_depth,
        dense_mass=dense_mass,
        starts=starts,
        device=device,
        chain_method=chain_method,
    )
    law = get_law(law)
    curves = _curves(data, by)
    if likelihood is None:
        has_trials = trials is not None or any(
            isinstance(c, Runs) and c.trials is not None for c in curves.values()
        )
        likelihood = default_observation_model(law.outcome, has_trials)
    spec = ModelSpec.create(
        law,
        observation=likelihood,
        observation_options=likelihood_options,
        priors=priors,
        pool=pool,
        regress=regress or {},
    )
    if law.function is not None and not callable(law.function):  # pragma: no cover
        raise SettingsError("the law's function is not callable")
    options = {"y": y, "x": x, "trials": trials, "censored": censored}
    runs = {label: _validated(curve, law, spec, options) for label, curve in curves.items()}
    return fit_runs_batch(runs, spec, settings, lockstep)


def fit_runs_batch(
    runs: Mapping[str, Runs],
    spec: ModelSpec,
    settings: SamplerSettings,
    lockstep: int | None = None,
):
    """Fit ``spec`` to each curve's validated runs (the engine behind :func:`fit_batch`)."""
    if not runs:
        raise DataError("the batch has no curves")
    spec.refuse_data_centring("in batched fits (fit the curves with bayescale.fit)")
    if lockstep is not None and (isinstance(lockstep, bool) or int(lockstep) < 1):
        raise SettingsError(f"lockstep must be a positive number of curves, got {lockstep!r}")
    if settings.chain_method == "parallel":
        raise SettingsError(
            "chain_method='parallel' is for single fits: a batch spreads its curves over the "
            "devices instead; use 'auto', 'sequential' or 'vectorized'"
        )
    started = time.perf_counter()
    with jax_device(settings.device), jax.enable_x64(True), xla_compilations() as compile_times:
        if lockstep is None and _platform(settings.device) == "cpu":
            lockstep = 1
        fits, bucket = _fit(dict(runs), spec, settings, started, lockstep)
    result = BatchFit(
        fits=fits,
        wall_seconds=time.perf_counter() - started,
        compile_seconds=float(sum(compile_times)),
        compilations=len(compile_times),
        bucket=bucket,
    )
    if result.failed:
        shown = ", ".join(result.failed[:10]) + (" ..." if len(result.failed) > 10 else "")
        warnings.warn(
            f"{len(result.failed)} of {len(result)} curves did not converge ({shown}); see "
            "BatchFit.diagnostics_table() and each fit's diagnostics.message()",
            ConvergenceWarning,
            stacklevel=3,
        )
    return result


def enable_compilation_cache(path: str | Path | None = None, min_compile_seconds: float = 0.0):
    """Opt in to JAX's persistent compilation cache, so that a new Python process reuses
    programs compiled by an earlier one (same model, same shapes, same JAX version).

    This sets JAX's process-wide ``jax_compilation_cache_dir`` option: call it once at the start
    of a script (the ``bayescale`` command: ``--compilation-cache DIR``). Batched fits profit
    most, because their data are arguments of the program; a single :func:`bayescale.fit`
    compiles its data into the program and profits fully only when the same data are fitted
    again, and partly otherwise: the many one-operation programs JAX compiles while a fit is set
    up do not depend on the data (docs/performance.md, "Time to first result", has the
    measurements).

    Parameters
    ----------
    path : path, optional
        The cache folder (created if needed); default ``~/.cache/bayescale/jax``.
    min_compile_seconds : float
        Only programs that took at least this long to compile are stored (default 0: all, so
        that the one-operation programs are kept too).

    Returns
    -------
    pathlib.Path
        The cache folder.

    Raises
    ------
    SettingsError
        When the folder cannot be created (a file in the way, no permission).
    """
    folder = Path(path) if path is not None else Path.home() / ".cache" / "bayescale" / "jax"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SettingsError(f"cannot use {str(folder)!r} as the compilation cache: {exc}") from exc
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_seconds))
    return folder


# ---------------------------------------------------------------------- inputs
def _curves(data, by) -> dict[str, Any]:
    """Split the input into ``{label: DataFrame or Runs}``."""
    if isinstance(data, Mapping):
        if by is not None:
            raise SettingsError("by= is for one table; the curves are already given separately")
        return {str(label): curve for label, curve in data.items()}
    if isinstance(data, str | Path | pd.DataFrame):
        if by is None:
            raise SettingsError("name the column that labels each row's curve with by=")
        frame = _read(data)
        columns = [by] if isinstance(by, str) else list(by)
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            known = ", ".join(map(str, frame.columns))
            raise DataError(f"by= column {missing[0]!r} not found; columns: {known}")
        if frame[columns].isna().any().any():
            row = int(np.flatnonzero(frame[columns].isna().any(axis=1).to_numpy())[0]) + 1
            raise DataError(f"row {row}: the curve label in {columns} is missing")
        labels = frame[columns].astype(str).agg(" / ".join, axis=1)
        return {
            label: frame.loc[labels == label].reset_index(drop=True)
            for label in dict.fromkeys(labels)
        }
    if isinstance(data, Sequence):
        return {str(i): curve for i, curve in enumerate(data)}
    raise SettingsError(
        "data must be a table with a by= column, a mapping of labels to tables, or a list of "
        f"tables; got {type(data).__name__}"
    )


def _read(data) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        return data
    path = Path(data)
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    try:
        return pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path} as CSV: {exc}") from None


def _validated(curve, law: Law, spec: ModelSpec, options: Mapping[str, Any]) -> Runs:
    if isinstance(curve, Runs):
        if any(v is not None for v in options.values()):
            raise SettingsError(
                "y, x, trials and censored are only used when the curves are tables"
            )
        return curve
    if options["y"] is None:
        raise SettingsError("name the outcome column with y=")
    return load_runs(
        curve,
        law=law,
        y=options["y"],
        x=options["x"],
        groups=spec.group_columns,
        covariates=(*spec.covariate_columns, *spec.group_covariate_columns),
        trials=options["trials"],
        censored=options["censored"],
    )


# ---------------------------------------------------------------------- padding
@dataclass(frozen=True, eq=False)
class _Program:
    """Everything the compiled program depends on besides array values (a static jit argument).

    Two programs are equal when the model (law definition and specification) and the settings
    are; a law defined by a Python function is compared by identity.
    """

    spec: ModelSpec
    chains: int
    warmup: int
    draws: int
    starts: int
    target_accept: float
    max_tree_depth: int
    dense_mass: bool | str
    group_sizes: tuple[tuple[str, int], ...]
    lockstep: int | None = None
    chain_method: str = "vectorized"

    def key(self) -> tuple:
        settings = tuple(v for k, v in self.__dict__.items() if k != "spec")
        return (self.spec.structure_key(), settings)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Program) and other.key() == self.key()

    def __hash__(self) -> int:
        return hash(self.key())

    @property
    def centred(self) -> bool:
        return any(p.fully_centred for p in self.spec.pooling)


def _platform(device: str | None) -> str:
    """The platform the fit will run on: ``cpu``, ``gpu``, ..."""
    return jax.devices(device)[0].platform if device else jax.default_backend()


def _chain_method(settings: SamplerSettings) -> str:
    """How a batch runs each curve's chains: ``settings.chain_method``, with ``auto`` resolved
    to ``sequential`` on a CPU (no chain waits for another, and on a CPU vectorised chains
    cost more per useful leapfrog step; docs/performance.md) and ``vectorized`` elsewhere.

    Examples
    --------
    >>> _chain_method(SamplerSettings(chain_method="vectorized", device="cpu"))
    'vectorized'
    >>> _chain_method(SamplerSettings(device="cpu"))
    'sequential'
    """
    if settings.chain_method != "auto":
        return settings.chain_method
    return "sequential" if _platform(settings.device) == "cpu" else "vectorized"


def _pad(designs: list[Design], spec: ModelSpec, runs_bucket: int, group_sizes: dict[str, int]):
    """Stack the curves' arrays, each padded to the bucket sizes (:meth:`Design.padded`)."""

    def groups(values, size):
        values = np.asarray(values, dtype=np.float64)
        return np.r_[values, np.zeros(size - values.shape[0])]

    padded = [d.padded(runs_bucket) for d in designs]
    data: dict[str, Any] = {
        "x": {k: np.stack([p.x[k] for p in padded]) for k in designs[0].x},
        "y": np.stack([p.y for p in padded]),
        "observed": np.stack([p.observed for p in padded]),
        "group_index": {
            c: np.stack([p.group_index[c] for p in padded]) for c in spec.group_columns
        },
        "covariates": {
            c: np.stack([p.covariates[c] for p in padded]) for c in spec.covariate_columns
        },
        "group_covariates": {
            g: {
                c: np.stack([groups(d.group_covariates[g][c], group_sizes[g]) for d in designs])
                for c in designs[0].group_covariates.get(g, {})
            }
            for g in spec.group_columns
        },
        "log_reference": {
            k: np.array([d.log_reference[k] for d in designs]) for k in designs[0].log_reference
        },
    }
    if designs[0].walk_position is not None:
        data["walk_position"] = np.stack([p.walk_position for p in padded])
        data["walk_block"] = np.stack([p.walk_block for p in padded])
    if designs[0].trials is not None:
        data["trials"] = np.stack([p.trials.astype(np.float64) for p in padded])
    if any(d.censoring is not None and np.any(d.censoring) for d in designs):
        data["censoring"] = np.stack(
            [
                p.censoring if p.censoring is not None else np.zeros(runs_bucket, np.int64)
                for p in padded
            ]
        ).astype(np.int64)
    return data


def _design(program: _Program, data: Mapping[str, Any]) -> Design:
    """A (traced) design of one padded curve."""
    return Design.from_arrays(data, dict(program.group_sizes))


def _models(program: _Program, data: Mapping[str, Any]):
    """The curve's model, and the all-non-centred twin its optimisation runs on."""
    design = _design(program, data)
    model = numpyro_model(program.spec, design)
    if not program.centred:
        return model, model
    twin = numpyro_model(program.spec, design, all_noncentred=True)
    return model, twin


def _observed(program: _Program, data: Mapping[str, Any]):
    return program.spec.observation.observed(data["y"], data.get("trials"))


# ---------------------------------------------------------------------- the compiled programs
def _sample_curve(program: _Program, key, data):
    """Multi-start optimisation, Laplace-spread starts and NUTS for one curve (pure JAX)."""
    model, twin = _models(program, data)
    kwargs = {"y": _observed(program, data)}
    key_trace, key_starts, key_jitter, key_chains = jax.random.split(key, 4)

    # Starts from the prior, each optimised by L-BFGS (as bs.fit does), on the non-centred twin.
    twin_trace = latent_trace(twin, kwargs, key_trace)
    starts = _prior_starts(twin_trace, key_starts, program.starts)
    flat_starts = jax.vmap(lambda tree: ravel_pytree(tree)[0])(starts)
    _, unravel_twin = ravel_pytree(jax.tree.map(lambda v: v[0], starts))

    def twin_objective(flat):
        return potential_energy(twin, (), kwargs, unravel_twin(flat))

    optimised = lbfgs.minimize_each(jax.value_and_grad(twin_objective), flat_starts)
    points = optimised.x
    values = jnp.where(optimised.status == lbfgs.NOT_FINITE, jnp.inf, optimised.value)
    best_point = points[jnp.argmin(values)]

    # Carry the optimum over to the model's own coordinates (centred groups, if any).
    if program.centred:
        constrained = constrain_fn(
            twin, (), kwargs, unravel_twin(best_point), return_deterministic=True
        )
        names = latent_sites(latent_trace(model, kwargs, key_trace))
        params = unconstrain_fn(model, (), kwargs, {n: constrained[n] for n in names})
        best_point, unravel = ravel_pytree(params)
    else:
        unravel = unravel_twin

    def potential(flat):
        return potential_energy(model, (), kwargs, unravel(flat))

    dimension = best_point.shape[0]
    chol, laplace_usable = _laplace_cholesky(potential, best_point)
    noise = jnp.clip(jax.random.normal(key_jitter, (program.chains, dimension)), -2.0, 2.0)
    chain_points = best_point[None, :] + noise @ chol.T
    usable = jnp.isfinite(jax.vmap(potential)(chain_points))
    chain_points = jnp.where(usable[:, None], chain_points, best_point[None, :])

    # NUTS moves in standardised coordinates u = (z - mode) / sd, the Laplace mode and standard
    # deviations (see bayescale.inference.StandardisedCoordinates for why: numpyro's mass-matrix
    # shrinkage towards 1e-3 swamps tight posteriors); scale 1 when the Laplace fit failed.
    scale = jnp.where(laplace_usable, jnp.sqrt(jnp.sum(chol**2, axis=1)), 1.0)

    def standardised_potential(u):
        return potential(best_point + scale * u)

    dense = (
        dimension <= DENSE_MASS_MAX_DIMENSION
        if program.dense_mass == "auto"
        else bool(program.dense_mass)
    )
    run_chain = nuts_chain(
        standardised_potential,
        warmup=program.warmup,
        draws=program.draws,
        dense=dense,
        target_accept=program.target_accept,
        max_tree_depth=program.max_tree_depth,
    )
    chain_keys = jax.random.split(key_chains, program.chains)
    chain_starts = (chain_points - best_point[None, :]) / scale[None, :]
    if program.chain_method == "sequential":
        kept, step_size = jax.lax.map(lambda pair: run_chain(*pair), (chain_keys, chain_starts))
    else:
        kept, step_size = jax.vmap(run_chain)(chain_keys, chain_starts)
    return {
        **kept,
        "z": best_point + scale * kept["z"],
        "step_size": step_size,
        "optimum_values": values,
        "optimum_points": points,
        "dense": jnp.asarray(dense),
    }


def _laplace_cholesky(potential, point):
    """Cholesky factor of the inverse Hessian at ``point`` and whether it is usable.

    When it is not (a Hessian that is not positive definite, or a dimension above
    ``LAPLACE_MAX_DIMENSION``), the factor returned is 0.1 I.
    """
    dimension = point.shape[0]
    fallback = 0.1 * jnp.eye(dimension)
    if dimension > LAPLACE_MAX_DIMENSION:
        return fallback, jnp.asarray(False)
    hessian = jax.hessian(potential)(point)
    hessian = 0.5 * (hessian + hessian.T)
    factor = jnp.linalg.cholesky(jnp.linalg.inv(hessian))
    usable = jnp.all(jnp.isfinite(factor))
    return jnp.where(usable, factor, fallback), usable


def _curve_outputs(program: _Program, key, data, z):
    """Posterior values (deterministic sites included), pointwise log-likelihood and replicated
    outcomes of one curve, from its unconstrained draws ``z`` shaped (chain, draw, dim)."""
    model, _ = _models(program, data)
    kwargs = {"y": _observed(program, data)}
    structure = latent_trace(model, kwargs, jax.random.PRNGKey(0))
    # ravel_pytree orders the sites by name, as it did for the sampler's flat vectors.
    _, unravel = ravel_pytree({n: structure[n]["value"] for n in latent_sites(structure)})

    def one(flat, draw_key):
        params = constrain_fn(model, (), kwargs, unravel(flat), return_deterministic=True)
        pointwise, outcome = draw_outputs(
            program.spec, model, params, kwargs["y"], data.get("trials"), draw_key
        )
        return params, pointwise, outcome

    chains, draws = z.shape[:2]
    keys = jax.random.split(key, chains * draws)
    flat_z = z.reshape((chains * draws, -1))
    params, pointwise, outcome = jax.vmap(one)(flat_z, keys)
    reshape = lambda v: v.reshape((chains, draws, *v.shape[1:]))  # noqa: E731
    return jax.tree.map(reshape, params), reshape(pointwise), reshape(outcome)


@functools.partial(jax.jit, static_argnames=("program",))
def _sample_batch(program: _Program, seed, indices, data):
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(seed), i))(indices)
    # Groups of `lockstep` curves are vmapped (they move in lockstep); the groups run one after
    # the other inside the same program.
    return jax.lax.map(
        lambda args: _sample_curve(program, *args),
        (keys, data),
        batch_size=program.lockstep or indices.shape[0],
    )


def _sample_on_devices(program: _Program, devices: Sequence, seed, indices, data):
    """:func:`_sample_batch` with the curves split over ``devices`` (each device runs its share
    as :func:`_sample_batch` does; one device: :func:`_sample_batch` itself).

    The curves are padded to a multiple of the device count by repeating the last one, and the
    repeats are dropped from the results, so every curve is sampled exactly as on one device.
    """
    if len(devices) == 1:
        return _sample_batch(program, seed, indices, data)
    curves = indices.shape[0]
    per_device = -(-curves // len(devices))
    take = np.minimum(np.arange(per_device * len(devices)), curves - 1)

    def shard(values):
        values = np.asarray(values)[take]
        return values.reshape(len(devices), per_device, *values.shape[1:])

    sampled = _parallel_sampler(program, tuple(devices))(
        seed, shard(indices), jax.tree.map(shard, data)
    )
    return jax.tree.map(lambda v: np.asarray(v).reshape(-1, *v.shape[2:])[:curves], sampled)


@functools.lru_cache(maxsize=16)
def _parallel_sampler(program: _Program, devices: tuple):
    """One compiled program per (program, devices), kept so that a refit does not recompile."""
    return jax.pmap(
        lambda seed, indices, data: _sample_batch(program, seed, indices, data),
        in_axes=(None, 0, 0),
        devices=devices,
    )


@functools.partial(jax.jit, static_argnames=("program",))
def _batch_outputs(program: _Program, seed, indices, data, z):
    keys = jax.vmap(
        lambda i: jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), i), 1)
    )(indices)
    return jax.vmap(lambda k, d, zz: _curve_outputs(program, k, d, zz))(keys, data, z)


# ---------------------------------------------------------------------- assembling the fits
def _fit(
    runs: dict[str, Runs],
    spec: ModelSpec,
    settings: SamplerSettings,
    started: float,
    lockstep: int | None,
):
    designs = [Design.from_runs(r, spec) for r in runs.values()]
    runs_bucket = bucket_size(max(d.n_runs for d in designs))
    group_sizes = {
        c: bucket_size(max(len(d.group_labels[c]) for d in designs)) for c in spec.group_columns
    }
    program = _Program(
        spec=spec,
        chains=settings.chains,
        warmup=settings.warmup,
        draws=settings.draws,
        starts=settings.starts,
        target_accept=float(settings.target_accept),
        max_tree_depth=settings.max_tree_depth,
        dense_mass=settings.dense_mass,
        group_sizes=tuple(group_sizes.items()),
        lockstep=None if lockstep is None else int(lockstep),
        chain_method=_chain_method(settings),
    )
    data = _pad(designs, spec, runs_bucket, group_sizes)
    indices = np.arange(len(designs))
    devices = jax.devices(settings.device)[: len(designs)]
    sampled = _sample_on_devices(program, devices, settings.seed, indices, data)
    sampled = jax.tree.map(np.asarray, sampled)
    params, pointwise, outcome = _batch_outputs(program, settings.seed, indices, data, sampled["z"])
    params = {k: np.asarray(v) for k, v in params.items()}
    pointwise, outcome = np.asarray(pointwise), np.asarray(outcome)
    elapsed = time.perf_counter() - started

    fits = {}
    for i, (label, curve_runs) in enumerate(runs.items()):
        design = designs[i]
        samples = {}
        for name in spec.posterior_names():
            values = params[name][i]
            pooling = spec.pooling_of(name)
            if pooling is not None and values.ndim == 3:  # (chain, draw, padded groups)
                values = values[..., : len(design.group_labels[pooling.group])]
            samples[name] = values
        extra = {k: sampled[k][i] for k in NUTS_STATISTICS}
        sampler = {
            **asdict(settings),
            "backend": "numpyro",
            "device_used": str(jax.devices(settings.device)[0]),
            "chain_method_used": program.chain_method,
            "dense_mass_used": bool(sampled["dense"][i]),
            "sampled_dimension": int(sampled["z"].shape[-1]),
            "padded_runs": runs_bucket,
            "step_size": np.asarray(sampled["step_size"][i]).tolist(),
            "wall_seconds": round(elapsed, 3),
            "init": asdict(
                InitReport.of(sampled["optimum_values"][i], sampled["optimum_points"][i])
            ),
            "batch": {
                "curve": label,
                "index": i,
                "curves": len(runs),
                "bucket_runs": runs_bucket,
                "bucket_groups": group_sizes,
                "lockstep": program.lockstep,
                "devices": len(devices),
                "wall_seconds_is_for_the_whole_batch": True,
            },
        }
        datatree = build_datatree(
            runs=curve_runs,
            spec=spec.anchored(curve_runs),  # the anchors the program took from the curve's runs
            design=design,
            samples=samples,
            extra=extra,
            pointwise_log_likelihood=pointwise[i][..., : design.n_runs],
            posterior_predictive=outcome[i][..., : design.n_runs],
            sampler=sampler,
        )
        fits[label] = Fit(datatree, law=spec.law)
    return fits, {"runs": runs_bucket, "groups": group_sizes}
