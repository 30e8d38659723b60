"""Posterior sampling: multi-start initialisation, NUTS (numpyro's kernel), and the fit entry point.

:func:`fit` is the one function most users call. It validates the runs, compiles the model,
finds starting points by optimising the log posterior from many random starts (so that
Chinchilla-type laws need no hand-made grid of initial values), runs NUTS, and returns a
:class:`~bayescale.results.Fit` whose diagnostics are always computed; a fit that failed a gate
emits a :class:`~bayescale.errors.ConvergenceWarning` that says what to try.

All computations run in float64 (inside ``jax.enable_x64``, without changing JAX's global
configuration): scaling-law likelihoods compare log losses that differ in the third decimal, and
float32 loses those differences (see docs/performance.md).
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
from jax.flatten_util import ravel_pytree
from numpyro.distributions.transforms import biject_to
from numpyro.infer.hmc import hmc
from numpyro.infer.util import unconstrain_fn
from tqdm.auto import tqdm

from bayescale import lbfgs
from bayescale.data import Runs, load_runs
from bayescale.density import NONCENTRED, Density, compiled_programs, latent_trace
from bayescale.errors import ConvergenceWarning, SettingsError
from bayescale.laws import Law, get_law
from bayescale.likelihoods import ObservationModel, default_observation_model
from bayescale.model import (
    LINK_SITE,
    OBSERVED_SITE,
    Design,
    ModelSpec,
    bucket_size,
    conditional_site,
    pointwise_log_likelihood,
)
from bayescale.priors import Pooling, Prior
from bayescale.results import Fit, build_datatree

CHAIN_METHODS = ("auto", "vectorized", "sequential", "parallel")
DEVICES = ("cpu", "gpu")
DENSE_MASS_MAX_DIMENSION = 100
"""With ``dense_mass="auto"``, a dense mass matrix is adapted up to this many sampled dimensions."""


@dataclass(frozen=True)
class SamplerSettings:
    """Settings of the NUTS run, recorded in every fit.

    Parameters
    ----------
    chains : int
        Number of Markov chains (at least 2 for R-hat).
    draws : int
        Draws kept per chain.
    warmup : int
        Adaptation iterations per chain (discarded).
    seed : int
        Seed of every random choice (starts, chains, predictive draws).
    chain_method : str
        ``auto`` (default): ``parallel`` when the fit's device kind has a JAX device per chain
        (on a CPU after :func:`use_cpu_devices`), else ``vectorized``. ``vectorized``: all
        chains in one program on one device (every iteration waits for the slowest chain);
        ``sequential``: one chain after the other; ``parallel``: one device per chain, the
        chains side by side (on 2 CPU cores 2.7x the ESS per second of ``vectorized`` on the
        Chinchilla benchmark, measured in docs/performance.md).
    target_accept : float
        NUTS target acceptance probability; raise it (0.95, 0.99) against divergences.
    max_tree_depth : int
        NUTS maximum tree depth.
    dense_mass : bool or "auto"
        Adapt a dense mass matrix; ``auto`` uses one up to 100 sampled dimensions.
    starts : int
        Random starts of the initial optimisation.
    progress : bool
        Show a progress bar of the chains' iterations (all chains together).
    device : str or None
        Where JAX runs the sampler: ``"cpu"`` (default), ``"gpu"``, or ``None`` for JAX's default
        (the GPU when JAX was installed with GPU support). A single fit runs faster on the CPU
        even where there is a GPU (kernel-launch latency dominates NUTS on a few hundred runs;
        measured in docs/performance.md), hence the default.
    """

    chains: int = 4
    draws: int = 1000
    warmup: int = 1000
    seed: int = 0
    chain_method: str = "auto"
    target_accept: float = 0.9
    max_tree_depth: int = 10
    dense_mass: bool | str = "auto"
    starts: int = 32
    progress: bool = False
    device: str | None = "cpu"

    def __post_init__(self):
        for name in ("chains", "draws", "warmup", "starts", "max_tree_depth"):
            _check_positive_integer(name, getattr(self, name))
        if (
            isinstance(self.seed, bool)
            or not isinstance(self.seed, int | np.integer)
            or self.seed < 0
        ):
            raise SettingsError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.chain_method not in CHAIN_METHODS:
            raise SettingsError(
                f"chain_method must be one of {', '.join(CHAIN_METHODS)}, got {self.chain_method!r}"
            )
        if not 0.5 <= float(self.target_accept) < 1:
            raise SettingsError(f"target_accept must lie in [0.5, 1), got {self.target_accept!r}")
        if self.device is not None and self.device not in DEVICES:
            raise SettingsError(
                f"device must be one of {', '.join(DEVICES)} (or None for JAX's default), "
                f"got {self.device!r}"
            )
        if self.dense_mass not in (True, False, "auto"):
            raise SettingsError(
                f"dense_mass must be true, false or 'auto', got {self.dense_mass!r}"
            )


def _check_positive_integer(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise SettingsError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class InitReport:
    """What the multi-start optimisation found.

    Attributes
    ----------
    starts : int
        Random starts drawn from the prior.
    finite : int
        Starts whose optimisation ended at a finite log density.
    best_log_density : float
        Highest log posterior density found (unnormalised).
    near_best : int
        Starts that ended within 1 unit of log density of the best.
    other_mode_gap : float or None
        Log-density gap to the best optimum lying far (> 1 unit on the unconstrained scale) from
        the best point, if any: a small gap hints at several modes. A start where L-BFGS
        stalled counts too, so check the gap before reading it as a second mode. SciPy's
        L-BFGS-B, which bayescale used before its own (:mod:`bayescale.lbfgs`), stopped 28 of
        the 32 starts of benchmark (b) far from any optimum, on the hierarchy's non-centred
        coordinates; bayescale's L-BFGS brought all 32 to the best point on seeds 0 to 3
        (docs/performance.md).
    """

    starts: int
    finite: int
    best_log_density: float
    near_best: int
    other_mode_gap: float | None

    @staticmethod
    def best_start(values: np.ndarray, points: np.ndarray) -> int | None:
        """The index of the best finite optimum (``None`` when none is finite)."""
        finite = _finite_optima(values, points)
        return int(np.argmin(np.where(finite, values, np.inf))) if finite.any() else None

    @classmethod
    def of(cls, values: np.ndarray, points: np.ndarray) -> InitReport:
        """The report of optimisations that ended at ``points`` ``(starts, dimension)`` with
        potentials (negative log densities) ``values``, non-finite where they failed."""
        best = cls.best_start(values, points)
        if best is None:
            return cls(len(values), 0, -np.inf, 0, None)
        finite = _finite_optima(values, points)
        best_value = float(values[best])
        distance = np.max(
            np.abs(np.where(finite[:, None], points, points[best]) - points[best]), axis=1
        )
        far = finite & (distance > 1.0)
        return cls(
            starts=len(values),
            finite=int(finite.sum()),
            best_log_density=-best_value,
            near_best=int(np.sum(finite & (values - best_value < 1.0))),
            other_mode_gap=float(np.min(values[far]) - best_value) if far.any() else None,
        )


def _finite_optima(values: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Which optimisations ended at a finite point with a finite potential."""
    return np.isfinite(values) & np.all(np.isfinite(points), axis=1)


def fit(
    data: Runs | str | Path | pd.DataFrame,
    law: str | Law,
    *,
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
    chain_method: str = "auto",
    target_accept: float = 0.9,
    max_tree_depth: int = 10,
    dense_mass: bool | str = "auto",
    starts: int = 32,
    progress: bool = False,
    backend: str = "numpyro",
    nuts_sampler: str | None = None,
    device: str | None = "cpu",
) -> Fit:
    """Fit a scaling law to runs by NUTS and return the :class:`~bayescale.results.Fit`.

    Parameters
    ----------
    data : Runs, path or DataFrame
        Validated runs, or a CSV file / DataFrame to validate with ``y`` and ``x``.
    law : str or Law
        A catalog name (see ``bayescale laws``) or a :class:`~bayescale.laws.Law`.
    y : str, optional
        Outcome column (required unless ``data`` is already :class:`~bayescale.data.Runs`).
    x : mapping, optional
        ``{input: column}`` for inputs whose column has another name.
    pool : list of ``"param|group"`` or mapping
        Parameters to pool hierarchically over group columns; use
        :class:`~bayescale.priors.Pooling` objects for the centred form or group covariates.
    regress : mapping, optional
        ``{param: [covariate columns]}``: run-level covariates on a parameter's link scale.
    priors : mapping, optional
        Prior overrides by parameter name, e.g. ``{"alpha": "LogNormal(log(0.3), 0.3)"}``. A
        law's anchor (``x_ref`` of ``anchored_power_law``) is fixed at the geometric mean of its
        input over the runs unless given here as ``"Fixed(value)"``.
    likelihood : str, optional
        Observation model (:data:`~bayescale.likelihoods.OBSERVATION_MODELS`); by default the
        one the law's catalog entry names (MIST's ``lognormal_mean``), else ``lognormal`` for
        losses and error rates, ``binomial`` for accuracies with ``trials``,
        ``beta`` for accuracies without.
    likelihood_options : mapping, optional
        Options of the observation model (``{"delta": 1e-3}`` for ``huber``).
    trials : str, optional
        Column with the number of trials behind each accuracy (binomial models).
    censored : str, optional
        Column flagging censored runs (see :func:`~bayescale.data.load_runs`).
    chains, draws, warmup, seed, chain_method, target_accept, max_tree_depth
        Sampler settings; see :class:`SamplerSettings`.
    dense_mass, starts, progress, device
        Sampler settings; see :class:`SamplerSettings`.
    backend : str
        ``"numpyro"`` (default: numpyro's NUTS on JAX) or ``"pymc"`` (the same model built in
        PyMC; see :mod:`bayescale.backends.pymc`). Both return the same :class:`Fit`.
    nuts_sampler : str, optional
        With ``backend="pymc"``: the NUTS implementation PyMC runs, ``"pymc"`` (default),
        ``"numpyro"``, ``"blackjax"`` or ``"nutpie"``.

    Returns
    -------
    Fit

    Warns
    -----
    ConvergenceWarning
        When R-hat, ESS or divergences fail their gate; the message says what to try.

    Examples
    --------
    >>> import numpy as np, pandas as pd, bayescale as bs
    >>> rng = np.random.default_rng(0)
    >>> x = np.geomspace(1e6, 1e9, 12)
    >>> loss = (1.5 + (1e5 / x) ** 0.3) * np.exp(rng.normal(0, 0.01, x.size))
    >>> result = bs.fit(pd.DataFrame({"x": x, "loss": loss}), "power_law_floor", y="loss",
    ...                 chains=2, draws=300, warmup=300, seed=1)  # doctest: +SKIP
    >>> result.summary().loc["alpha", "median"]  # doctest: +SKIP
    """
    settings = SamplerSettings(
        chains=chains,
        draws=draws,
        warmup=warmup,
        seed=seed,
        chain_method=chain_method,
        target_accept=target_accept,
        max_tree_depth=max_tree_depth,
        dense_mass=dense_mass,
        starts=starts,
        progress=progress,
        device=device,
    )
    _check_backend(backend, nuts_sampler, device)
    law = get_law(law)
    if likelihood is None:
        has_trials = trials is not None or (isinstance(data, Runs) and data.trials is not None)
        likelihood = law.likelihood.get("name") or default_observation_model(
            law.outcome, has_trials
        )
    spec = ModelSpec.create(
        law,
        observation=likelihood,
        observation_options=likelihood_options,
        priors=priors,
        pool=pool,
        regress=regress or {},
    )
    if isinstance(data, Runs):
        if any(v is not None for v in (y, x, trials, censored)):
            raise SettingsError(
                "y, x, trials and censored are only used when data is a file or DataFrame"
            )
        runs = data
    else:
        if y is None:
            raise SettingsError("name the outcome column with y=")
        runs = load_runs(
            data,
            law=law,
            y=y,
            x=x,
            groups=spec.group_columns,
            covariates=(*spec.covariate_columns, *spec.group_covariate_columns),
            trials=trials,
            censored=censored,
        )
    spec = spec.anchored(runs)
    if backend == "pymc":
        from bayescale.backends.pymc import fit_runs as fit_runs_pymc

        with jax_device(device):
            return fit_runs_pymc(runs, spec, settings, nuts_sampler=nuts_sampler or "pymc")
    return fit_runs(runs, spec, settings)


def _check_backend(backend: str, nuts_sampler: str | None, device: str | None) -> None:
    from bayescale.backends import BACKENDS, PYMC_NUTS_SAMPLERS

    if backend not in BACKENDS:
        raise SettingsError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "numpyro" and nuts_sampler not in (None, "numpyro"):
        raise SettingsError(
            f"nuts_sampler={nuts_sampler!r} needs backend='pymc' (the numpyro backend always "
            "runs numpyro's NUTS)"
        )
    if backend == "pymc":
        if nuts_sampler is not None and nuts_sampler not in PYMC_NUTS_SAMPLERS:
            raise SettingsError(
                f"nuts_sampler must be one of {', '.join(PYMC_NUTS_SAMPLERS)}, got {nuts_sampler!r}"
            )
        if device == "gpu" and nuts_sampler in (None, "pymc", "nutpie"):
            raise SettingsError(
                "PyMC's own NUTS runs on the CPU; for a GPU use nuts_sampler='numpyro' or "
                "'blackjax', or the default backend"
            )


def jax_device(device: str | None):
    """A context that makes JAX compute on ``device`` (``"cpu"``, ``"gpu"``, or ``None``).

    ``None`` leaves JAX's default (the GPU when JAX has one). A device that JAX cannot see raises
    :class:`~bayescale.errors.SettingsError` saying how to get it.
    """
    import contextlib

    if device is None:
        return contextlib.nullcontext()
    try:
        devices = jax.devices(device)
    except RuntimeError:
        raise SettingsError(
            f"device={device!r} was asked for, but JAX sees only "
            f"{', '.join(sorted({d.platform for d in jax.devices()}))}: install JAX with GPU "
            "support (pip install 'jax[cuda12]') on a machine with a GPU, or use device='cpu'"
        ) from None
    return jax.default_device(devices[0])


def fit_runs(runs: Runs, spec: ModelSpec, settings: SamplerSettings) -> Fit:
    """Fit an already validated specification to validated runs (the engine behind :func:`fit`)."""
    with jax_device(settings.device):
        return _fit_runs(runs, spec, settings)


COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
"""The :mod:`jax.monitoring` event recorded once per XLA compilation."""


@contextlib.contextmanager
def xla_compilations(events: Iterable[str] = (COMPILE_EVENT,)):
    """Collect the seconds of every XLA compilation inside the block, one entry each (or of
    every other :mod:`jax.monitoring` duration event named in ``events``).

    JAX's monitoring events are process-wide: compilations in other threads count too.

    Examples
    --------
    >>> import jax, numpy as np
    >>> with xla_compilations() as compiled:
    ...     _ = jax.jit(lambda x: x * 3.0 + 1.0)(np.arange(17.0))
    >>> len(compiled)
    1
    """
    durations: list[float] = []
    events = frozenset(events)

    def listener(event: str, duration: float, **_: Any) -> None:
        if event in events:
            durations.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield durations
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def _fit_runs(runs: Runs, spec: ModelSpec, settings: SamplerSettings) -> Fit:
    design = Design.from_runs(runs, spec)
    # The compiled programs see the runs padded to a bucket size, so that data sets of nearby
    # sizes share them (padding rows are left out of the likelihood and of the results).
    padded = design.padded(bucket_size(design.n_runs))
    chain_method = resolve_chain_method(settings)
    started = time.perf_counter()
    with jax.enable_x64(True), xla_compilations() as compiled:
        key = jax.random.PRNGKey(settings.seed)
        key_init, key_mcmc, key_predictive = jax.random.split(key, 3)
        starts = multistart_init(
            spec,
            padded,
            key_init,
            settings.starts,
            settings.chains,
            devices=jax.devices(settings.device),
        )
        init_report, dimension = starts.report, starts.dimension
        dense = (
            dimension <= DENSE_MASS_MAX_DIMENSION
            if settings.dense_mass == "auto"
            else bool(settings.dense_mass)
        )
        chains = run_chains(
            starts.coordinates,
            starts.standardised_init,
            key_mcmc,
            settings,
            dense=dense,
            method=chain_method,
        )
        samples, pointwise, predictive = jax.tree.map(
            np.asarray,
            after_sampling_program(starts.coordinates.density, chain_method, settings)(
                starts.coordinates, chains.draws, key_predictive
            ),
        )
        pointwise, predictive = pointwise[..., : design.n_runs], predictive[..., : design.n_runs]
    elapsed = time.perf_counter() - started
    sampler = {
        **asdict(settings),
        "backend": "numpyro",
        "device_used": str(jax.devices(settings.device)[0]),
        "chain_method_used": chain_method,
        "dense_mass_used": dense,
        "sampled_dimension": dimension,
        "padded_runs": padded.n_runs,
        "step_size": chains.step_size.tolist(),
        "nuts_seconds": round(chains.seconds, 3),
        "wall_seconds": round(elapsed, 3),
        # XLA compilations during the fit: 0 when a fit of the same structure and settings ran
        # earlier in the process (its programs take the data as an argument)
        "compilations": len(compiled),
        "compile_seconds": round(sum(compiled), 3),
        "init": asdict(init_report),
    }
    if starts.centrings:
        sampler["centrings"] = {name: w.round(4).tolist() for name, w in starts.centrings.items()}
    datatree = build_datatree(
        runs=runs,
        spec=spec,
        design=design,
        samples=samples,
        extra=chains.statistics,
        pointwise_log_likelihood=pointwise,
        posterior_predictive=predictive,
        sampler=sampler,
    )
    result = Fit(datatree, law=spec.law)
    diagnostics = result.diagnostics
    if not diagnostics.converged:
        warnings.warn(diagnostics.message(), ConvergenceWarning, stacklevel=4)
    return result


DRAWS_AT_ONCE = 256
"""The draws of a chain the program after sampling evaluates together when the runs are
observed jointly (it maps over the rest): the random walk's pointwise log-likelihood takes
memory growing with the square of the runs. Otherwise all the chain's draws go at once."""
CHAIN_AXIS = "chain"


def after_sampling_program(density: Density, method: str, settings: SamplerSettings):
    """The program ``(coordinates, z, key) -> (samples, pointwise, replicated)`` that turns the
    chains' positions ``z`` ``(chain, draw, dimension)`` into every draw's parameters
    (deterministic sites included), pointwise log-likelihood and replicated outcomes, each
    shaped ``(chain, draw, ...)``.

    It runs the chains as they were sampled: one device per chain when ``method`` is
    ``parallel`` (their draws are then processed side by side), else vectorised on one device.
    Each draw gets the random streams it would get from numpyro's ``Predictive`` over all draws
    (and the held coordinates theirs, see :meth:`StandardisedCoordinates.postprocess`),
    whichever way the chains run. Compiled once per model structure (:func:`_program`).
    """
    over_chains = dict(axis_name=CHAIN_AXIS, in_axes=(None, 0, None))
    if method == "parallel":
        devices = tuple(jax.devices(settings.device)[: settings.chains])
        transform = functools.partial(jax.pmap, devices=devices, **over_chains)
    else:
        devices = None
        transform = lambda function: jax.jit(jax.vmap(function, **over_chains))  # noqa: E731
    return _program(density, ("after_sampling", devices), _chain_outputs, transform)


def _chain_outputs(coordinates: StandardisedCoordinates, z, key):
    """:func:`after_sampling_program` for one chain (the chain axis is named ``CHAIN_AXIS``)."""
    chains, chain = jax.lax.axis_size(CHAIN_AXIS), jax.lax.axis_index(CHAIN_AXIS)
    shape = (chains, z.shape[0])
    key, key_held = jax.random.split(key)
    held_keys = jax.random.split(key_held, shape)[chain]
    draw_keys = jax.random.split(key, shape[0] * shape[1]).reshape((*shape, -1))[chain]
    density = coordinates.density
    model, y = density.model(), density.model_kwargs["y"]
    trials = density.data["design"].get("trials")
    trials = None if trials is None else jnp.asarray(trials)

    def one(draw):
        position, held_key, draw_key = draw
        params = coordinates.postprocess(position, held_key)
        pointwise, outcome = draw_outputs(density.spec, model, params, y, trials, draw_key)
        return params, pointwise, outcome

    draws = (z, held_keys, draw_keys)
    if density.spec.observation.correlated:  # each draw solves with the runs' covariance
        return jax.lax.map(one, draws, batch_size=DRAWS_AT_ONCE)
    return jax.vmap(one)(draws)


def draw_outputs(spec: ModelSpec, model, params, y, trials, key):
    """One posterior draw's pointwise log-likelihood of ``y`` and replicated outcomes: the draw's
    values ``params`` (latent and deterministic sites) substituted into ``model``, which is
    traced once, its observed site drawn with ``key``."""
    seeded = numpyro.handlers.seed(numpyro.handlers.substitute(model, params), key)
    site = numpyro.handlers.trace(seeded).get_trace(y=None)[OBSERVED_SITE]
    pointwise = pointwise_log_likelihood(site["fn"], y)
    return pointwise, spec.observation.to_outcome(site["value"], trials)


def resolve_chain_method(settings: SamplerSettings) -> str:
    """The way a fit runs its chains: ``vectorized``, ``sequential`` or ``parallel``.

    ``auto`` becomes ``parallel`` when the kind of device the fit runs on (``settings.device``,
    or JAX's default) has at least one JAX device per chain, else ``vectorized``. A CPU is one
    JAX device unless :func:`use_cpu_devices` split it before JAX's first computation.

    Examples
    --------
    >>> resolve_chain_method(SamplerSettings(chain_method="sequential"))
    'sequential'
    """
    method = settings.chain_method
    if method in ("vectorized", "sequential"):
        return method
    available = len(jax.devices(settings.device))
    if available >= settings.chains:
        return "parallel"
    if method == "parallel":
        raise SettingsError(
            f"chain_method='parallel' needs {settings.chains} JAX devices, found {available}; "
            "use 'vectorized', or call bayescale.use_cpu_devices() before JAX's first "
            "computation (or set XLA_FLAGS=--xla_force_host_platform_device_count=N before "
            "starting Python)"
        )
    return "vectorized"


NUTS_STATISTICS = ("num_steps", "diverging", "energy", "accept_prob", "potential_energy")
"""What every NUTS iteration records besides the position (the fit's ``sample_stats``)."""


def nuts_chain(
    potential,
    *,
    warmup: int,
    draws: int,
    dense: bool,
    target_accept: float,
    max_tree_depth: int,
    progress=None,
):
    """One NUTS chain (numpyro's kernel) as a pure function ``run(key, start)``.

    ``run`` adapts the step size and the mass matrix over ``warmup`` iterations (Stan's
    windows, as numpyro's ``NUTS`` does), then samples ``draws`` iterations, all in one
    ``lax.scan`` (the kernel is compiled once). It returns the kept iterations, a dict with the
    position ``z`` and :data:`NUTS_STATISTICS`, and the adapted step size. ``progress``, when
    given, is called with the iteration number inside the loop (see :class:`_ProgressBar`).

    Why not numpyro's ``MCMC``: around the same kernel, its driver took 2.3x to 2.9x the time
    of this loop for the same chains on a CPU (benchmark (b); docs/performance.md, "The NUTS
    loop").
    """
    init_kernel, sample_kernel = hmc(potential_fn=potential, algo="NUTS")

    def run(key, start):
        state = init_kernel(
            start,
            warmup,
            dense_mass=dense,
            target_accept_prob=target_accept,
            max_tree_depth=max_tree_depth,
            trajectory_length=None,
            # numpyro's HMC.init splits a chain's key first; the same split starts each chain's
            # random stream where numpyro's MCMC started it
            rng_key=jax.random.split(key)[0],
        )

        def step(state, iteration):
            state = sample_kernel(state)
            if progress is not None:
                progress(iteration)
            return state, (state.z, *(getattr(state, name) for name in NUTS_STATISTICS))

        state, kept = jax.lax.scan(step, state, jnp.arange(warmup + draws))
        kept = dict(zip(("z", *NUTS_STATISTICS), (v[warmup:] for v in kept), strict=True))
        return kept, state.adapt_state.step_size

    return run


@dataclass(frozen=True)
class Chains:
    """What :func:`run_chains` returns, every array with leading axes ``(chain, draw)``."""

    draws: np.ndarray
    """Positions, ``(chain, draw, dimension)``."""
    statistics: dict[str, np.ndarray]
    """:data:`NUTS_STATISTICS` of every kept iteration."""
    step_size: np.ndarray
    """Each chain's adapted step size."""
    seconds: float
    """Time the compiled chains ran, compilation excluded."""


def run_chains(
    coordinates: StandardisedCoordinates,
    starts,
    key,
    settings: SamplerSettings,
    *,
    dense: bool,
    method: str,
) -> Chains:
    """Run ``settings.chains`` NUTS chains of ``coordinates.potential`` from ``starts`` (one row
    per chain) in one compiled program: ``vectorized`` (``jax.vmap`` over chains on one
    device), ``sequential`` (``lax.map``: one chain after the other) or ``parallel``
    (``jax.pmap``: one device of the fit's kind per chain). Chain ``i`` uses the ``i``-th key
    of ``jax.random.split(key, chains)``.

    The program takes the coordinates (and with them the data) as an argument, so a fit of the
    same structure with the same settings runs it without compiling again (:func:`_program`);
    with ``settings.progress`` the program carries its own progress bar and is compiled anew.
    """
    chains = settings.chains
    iterations = settings.warmup + settings.draws
    per_call = chains if method == "vectorized" else 1
    progress = _ProgressBar(chains, iterations, per_call) if settings.progress else None
    options = dict(
        warmup=settings.warmup,
        draws=settings.draws,
        dense=dense,
        target_accept=settings.target_accept,
        max_tree_depth=settings.max_tree_depth,
        method=method,
        devices=tuple(jax.devices(settings.device)[:chains]) if method == "parallel" else None,
    )
    keys = jax.random.split(key, chains)
    starts = jnp.asarray(starts)

    def compile_program():
        program = _chains_program(**options, progress=progress)
        return program.lower(keys, starts, coordinates).compile()

    if progress is not None:
        compiled = compile_program()
    else:
        store = compiled_programs(coordinates.density)
        name = ("chains", tuple(options.items()), coordinates.held, starts.shape)
        if name not in store:
            store[name] = compile_program()
        compiled = store[name]
    started = time.perf_counter()
    kept, step_size = jax.block_until_ready(compiled(keys, starts, coordinates))
    seconds = time.perf_counter() - started
    if progress is not None:
        progress.close()
    kept = {name: np.asarray(values) for name, values in kept.items()}
    return Chains(kept.pop("z"), kept, np.asarray(step_size), seconds)


def _chains_program(*, method: str, devices, progress=None, **options):
    """The program ``(keys, starts, coordinates) -> (kept, step sizes)`` of :func:`run_chains`
    (``options``: :func:`nuts_chain`'s)."""

    def run(key, start, coordinates):
        return nuts_chain(coordinates.potential, progress=progress, **options)(key, start)

    if method == "parallel":
        return jax.pmap(run, in_axes=(0, 0, None), devices=devices)
    if method == "sequential":
        return jax.jit(
            lambda keys, starts, coordinates: jax.lax.map(
                lambda pair: run(*pair, coordinates), (keys, starts)
            )
        )
    return jax.jit(jax.vmap(run, in_axes=(0, 0, None)))


class _ProgressBar:
    """A progress bar over every chain's iterations, advanced from inside the compiled loop
    (about 100 updates per chain). Each update advances ``chains_per_call`` chains: all of them
    when the chains are vectorised (the iteration number is the same for every chain, so
    ``jax.vmap`` makes one call), one otherwise."""

    def __init__(self, chains: int, iterations: int, chains_per_call: int):
        self.bar = tqdm(total=chains * iterations, desc="NUTS, all chains")
        self.iterations = iterations
        self.every = max(1, iterations // 100)
        self.chains_per_call = chains_per_call

    def __call__(self, iteration):
        done = iteration + 1
        jax.lax.cond(
            (done % self.every == 0) | (done == self.iterations),
            lambda: jax.debug.callback(
                self._advance, jnp.where(done % self.every, done % self.every, self.every)
            ),
            lambda: None,
        )

    def _advance(self, count):
        self.bar.update(int(count) * self.chains_per_call)

    def close(self):
        self.bar.close()


def use_cpu_devices(count: int | None = None) -> int:
    """Split the CPU into ``count`` JAX devices, so that fits run their chains in parallel.

    JAX treats all CPU cores as one device, and NUTS on a few hundred runs uses one core of it;
    with one JAX device per chain, ``chain_method="auto"`` runs the chains side by side (on 2
    cores: 2.7x the ESS per second on the Chinchilla benchmark; see docs/performance.md). Call
    it once, right after the imports, before JAX's first computation: JAX fixes its devices
    then. The ``bayescale`` command does this itself.

    Parameters
    ----------
    count : int, optional
        Number of CPU devices; by default the number of CPU cores, at least 4 (the default
        number of chains; devices beyond the cores share them).

    Returns
    -------
    int
        The number of CPU devices JAX will have.

    Raises
    ------
    SettingsError
        If ``count`` is not a positive integer, or JAX has already computed something (its
        devices are fixed; the message says how many CPU devices it has).

    Examples
    --------
    >>> import bayescale as bs
    >>> bs.use_cpu_devices()  # doctest: +SKIP
    4
    """
    if count is None:
        count = max(4, os.cpu_count() or 1)
    _check_positive_integer("count", count)
    try:
        jax.config.update("jax_num_cpu_devices", int(count))
    except RuntimeError:
        raise SettingsError(
            f"use_cpu_devices({count}) came too late: JAX has run a computation and fixed its "
            f"devices ({len(jax.devices('cpu'))} CPU device(s)); call it right after the imports"
        ) from None
    return int(count)


NO_FINITE_START = (
    "no starting point has a finite log density: check that the law can produce the observed "
    "outcomes (positive, finite means for losses) over the priors' range, and that the priors "
    "are sensible"
)


def multistart_init(
    spec: ModelSpec, design: Design, key, starts: int, chains: int, devices: Sequence = ()
) -> Starts:
    """Optimise the log posterior from many prior draws and start the chains near the best.

    Each start is a draw from the prior (uniform on [-2, 2] for improper coordinates), optimised
    with L-BFGS on the unconstrained scale of the model, or of its all-non-centred twin when
    some pooling is centred (a centred hierarchy has no mode to find); the best point is then
    carried over to the sampled model's coordinates. Every start is optimised in one compiled
    program (:mod:`bayescale.lbfgs`), which serves every fit of the same structure
    (:mod:`bayescale.density`). For poolings
    with ``centered="auto"`` (non-centred while optimising), the centrings are read off the
    curvature at the best point (:class:`AutoCentring`) and the chains sample the partially
    centred model. Chains start at draws from the Laplace approximation around the best point
    (the Hessian from differences of the exact gradient), truncated at two standard
    deviations, so that R-hat can still see disagreement between chains. The standard deviates
    of ``centered="conditional"`` poolings (see :class:`StandardisedCoordinates`) are held at
    0 and left out of the Laplace approximation and of the sampled coordinates.

    The starts are split over ``devices`` (JAX devices of one kind; default: JAX's default
    device), which optimise their shares side by side.

    Returns
    -------
    Starts
        The chains' unconstrained starting values, the report, the centrings chosen, and the
        standardised coordinates NUTS samples in (with the sampled model's density).
    """
    key_starts, key_jitter = jax.random.split(key)
    sampled = Density.of(spec, design)
    centred = any(p.fully_centred for p in spec.pooling)
    optimised = (Density.of(spec, design, variant=NONCENTRED) if centred else sampled).laid_out()
    flat_starts = np.asarray(
        _program(
            optimised,
            ("prior_draws", starts),
            functools.partial(_prior_draws, starts=starts),
            transform=jit_run_once,
        )(key_starts, optimised)
    )
    result = _optimise_starts(optimised, flat_starts, devices or jax.devices()[:1])
    points, values = result.x, np.where(result.status == lbfgs.NOT_FINITE, np.inf, result.value)
    report, best = InitReport.of(values, points), InitReport.best_start(values, points)
    if best is None:
        raise SettingsError(NO_FINITE_START)
    best_point = points[best]
    density, centrings = optimised, {}
    auto_centring = AutoCentring.of(spec)
    if auto_centring is not None:
        centrings = auto_centring.centrings(best_point, optimised)
        sampled = Density.of(spec, design, centrings=centrings)
    if centred or auto_centring is not None:
        density = sampled.laid_out()
        best_point = _program(density, "carried_over", _carried_over)(
            jnp.asarray(best_point), optimised, density
        )
    held = _held_positions(density)
    best_point = np.array(best_point)  # a writable NumPy copy
    best_point[held] = 0.0
    chain_points, scale = jax.tree.map(
        np.asarray,
        _program(
            density,
            ("laplace_starts", chains),
            functools.partial(_laplace_starts, chains=chains),
            transform=jit_run_once,
        )(jnp.asarray(best_point), key_jitter, density),
    )
    coordinates = StandardisedCoordinates(best_point, scale, density, tuple(held.tolist()))
    return Starts(chain_points, report, coordinates, centrings)


def _prior_draws(key, density: Density, *, starts: int):
    """``starts`` draws from the priors of ``density``'s model as flat unconstrained vectors,
    ``(starts, dimension)`` (traceable; see :func:`_prior_starts`)."""
    key_trace, key_draws = jax.random.split(key)
    model_trace = latent_trace(density.model(), density.model_kwargs, key_trace)
    draws = _prior_starts(model_trace, key_draws, starts)
    return jax.vmap(lambda tree: ravel_pytree(tree)[0])(draws)


def _carried_over(point, optimised: Density, sampled: Density):
    """The point ``point`` of the optimised (all-non-centred) model in the flat unconstrained
    coordinates of the sampled one (traceable): the same constrained values, with the
    non-centred values of auto-centred groups moved to their partially centred sites
    (:meth:`AutoCentring.carry_over`)."""
    constrained = optimised.constrained(point)
    auto_centring = AutoCentring.of(sampled.spec)
    if auto_centring is not None:
        constrained = auto_centring.carry_over(sampled.model(), constrained, sampled.model_kwargs)
    names = [name for name, _ in sampled.layout]
    params = unconstrain_fn(
        sampled.model(), (), sampled.model_kwargs, {name: constrained[name] for name in names}
    )
    return ravel_pytree(params)[0]


def _held_positions(density: Density) -> np.ndarray:
    """Positions of the flat vector that NUTS does not move: the standard deviates of the
    ``centered="conditional"`` poolings (see :class:`StandardisedCoordinates`)."""
    return np.concatenate(
        [np.zeros(0, dtype=int)]
        + [
            density.positions(conditional_site(p.parameter))
            for p in density.spec.pooling
            if p.conditionally_centred
        ]
    )


@dataclass(frozen=True)
class AutoCentring:
    """The poolings with ``centered="auto"`` of a model, and how to centre them.

    See :class:`~bayescale.priors.Pooling` for the parameterisation, and :meth:`centrings`
    for how each group's centring is read off the non-centred model at its posterior mode.
    """

    sites: Mapping[str, str]
    """The non-centred site of each auto-centred parameter (``<name>__link_decentered``)."""

    @classmethod
    def of(cls, spec: ModelSpec) -> AutoCentring | None:
        """The auto-centred poolings of ``spec`` (``None`` when there are none)."""
        sites = {
            p.parameter: p.parameter + LINK_SITE + "_decentered"
            for p in spec.pooling
            if p.auto_centred
        }
        return cls(sites) if sites else None

    def centrings(self, point: np.ndarray, density: Density) -> dict[str, np.ndarray]:
        """Each group's centring, from the curvature of the non-centred model at ``point``.

        ``H`` is the Hessian of the negative log density over the non-centred group values of
        every auto-centred parameter, by central differences of the exact gradient (two
        gradient calls per group value). Holding the population and spreads at the mode, the
        posterior variance of ``z[j]`` is ``V[j, j]`` with ``V = H^-1``: a group whose runs
        pin its value has ``V[j, j]`` near 0 (centring near 1), one whose runs say nothing
        about it (alone, or given its other parameters, as the exponent of a one-run group)
        keeps the prior's 1 (centring 0). The centring is ``1 - V[j, j]``, which for one
        normal group value is ``1 - 1 / H[j, j]`` (see :class:`~bayescale.priors.Pooling`).
        Runs that are normal in the group values add curvature, so ``H >= I`` there; where a
        nonlinear law makes an eigenvalue of ``H`` smaller than 1 (a saddle or a ridge at the
        mode), it is taken as 1 (no information from the runs in that direction) before
        inverting. Where ``H`` is not finite every group stays non-centred.
        """
        indices = {parameter: density.positions(site) for parameter, site in self.sites.items()}
        group_values = np.concatenate(list(indices.values()))
        hessian = np.asarray(
            _program(density, ("hessian_rows", group_values.size), _hessian_rows)(
                jnp.asarray(point), group_values, density
            )
        )[:, group_values]
        hessian = 0.5 * (hessian + hessian.T)
        if np.all(np.isfinite(hessian)):
            curvature, vectors = np.linalg.eigh(hessian)
            variance = np.sum(vectors**2 / np.maximum(curvature, 1.0), axis=1)
        else:
            variance = np.ones(group_values.size)
        centring = np.clip(1.0 - variance, 0.0, 1.0)
        parts = np.split(centring, np.cumsum([v.size for v in indices.values()])[:-1])
        return dict(zip(indices, parts, strict=True))

    def carry_over(self, model, constrained: Mapping[str, Any], model_kwargs) -> dict[str, Any]:
        """The point ``constrained`` of the non-centred model in ``model``'s coordinates.

        A non-centred value ``z`` of a group becomes ``w m + s^w z``, which is the location
        plus the scale times ``z`` of ``model``'s partially centred site (numpyro's
        ``LocScaleReparam``); every other site keeps its value.
        """

        def value(site):
            if site["type"] != "sample" or site["is_observed"]:
                return None
            if site["name"] not in self.sites.values():
                return constrained[site["name"]]
            fn = site["fn"]
            while hasattr(fn, "base_dist"):
                fn = fn.base_dist
            return fn.loc + fn.scale * constrained[site["name"]]

        traced = numpyro.handlers.trace(
            numpyro.handlers.substitute(model, substitute_fn=value)
        ).get_trace(**model_kwargs)
        return {
            name: site["value"]
            for name, site in traced.items()
            if site["type"] == "sample" and not site["is_observed"]
        }


@jax.tree_util.register_pytree_node_class
@dataclass(frozen=True, eq=False)
class StandardisedCoordinates:
    """The coordinates NUTS samples in: ``z = (x - centre) / scale`` of the model's flat
    unconstrained vector ``x``, with the Laplace mode as centre and its standard deviations as
    scale, so that every coordinate's posterior spread is about 1.

    Why: numpyro's (Stan's) mass-matrix adaptation adds ``1e-3 * 5 / (n + 5)`` to the
    estimated covariance of ``n`` warm-up draws, a shrinkage sized for unit-scale posteriors.
    On the Chinchilla fit to Epoch's 240 runs the log level of the curve at the reference point
    has a standard deviation of 0.00066 (variance 4.4e-7, 55 times below the shrinkage after a
    200-draw window), so in the model's own coordinates the mass matrix was far off: 35 to 37
    leapfrog steps per draw (step size 0.08); standardised, 6.5 (step size 0.6), with about
    twice the ESS. docs/performance.md ("Sampler geometry") has the measurements.
    """

    centre: np.ndarray
    scale: np.ndarray
    density: Density
    """The log density of the model NUTS samples (its compiled programs take it as an argument,
    so one program serves every fit of the same structure; see :mod:`bayescale.density`)."""
    held: tuple[int, ...] = ()
    """Positions of the flat vector that NUTS does not move: the standard deviates of a
    ``centered="conditional"`` pooling. A posteriori they are exactly standard normal and
    independent of everything else (see :class:`~bayescale.priors.Pooling`), so the density
    with them held at 0 is the marginal posterior of the rest up to a constant: NUTS samples
    the rest with them at 0, and every draw gets fresh standard normal values afterwards
    (:meth:`postprocess`), which makes it an exact draw of the whole posterior."""

    def tree_flatten(self):
        return (self.centre, self.scale, self.density), self.held

    @classmethod
    def tree_unflatten(cls, held, leaves):
        return cls(*leaves, held)

    @property
    def free(self) -> np.ndarray:
        """Positions of the flat vector NUTS moves (every one but :attr:`held`)."""
        return np.setdiff1d(np.arange(self.centre.shape[0]), np.asarray(self.held, dtype=int))

    def to_model(self, z, held=0.0):
        """The model's flat unconstrained vector at standardised coordinates ``z`` of the
        :attr:`free` positions, with ``held`` (model scale) at the held ones."""
        free, positions = self.free, np.asarray(self.held, dtype=int)
        flat = (
            jnp.zeros(self.centre.shape[0]).at[free].set(self.centre[free] + self.scale[free] * z)
        )
        return flat.at[positions].set(held)

    def from_model(self, flat: np.ndarray) -> np.ndarray:
        """Standardised coordinates of the model's flat unconstrained vector(s) ``flat``."""
        return ((np.asarray(flat) - self.centre) / self.scale)[..., self.free]

    def potential(self, z):
        return self.density.potential(self.to_model(z))

    def postprocess(self, z, key=None):
        """Constrained values and deterministic sites, as numpyro's samples of the model; the
        held positions get standard normal values drawn with ``key`` (0 without one)."""
        held = 0.0 if key is None else jax.random.normal(key, (len(self.held),))
        return self.density.constrained(self.to_model(z, held))


@dataclass(frozen=True)
class Starts:
    """What :func:`multistart_init` returns: the chains' starting points and the coordinates
    NUTS samples in."""

    chain_points: np.ndarray
    """Starting points in the model's flat unconstrained coordinates, ``(chains, dimension)``."""
    report: InitReport
    coordinates: StandardisedCoordinates
    centrings: Mapping[str, np.ndarray]
    """Per auto-centred parameter, each group's centring (0 non-centred, 1 centred)."""

    @property
    def dimension(self) -> int:
        """The number of coordinates NUTS moves."""
        return self.coordinates.free.size

    @property
    def init_params(self) -> dict[str, Any]:
        """The starting points as the model's unconstrained sites, leading axis ``chains``."""
        return jax.vmap(self.coordinates.density.unravel)(jnp.asarray(self.chain_points))

    @property
    def standardised_init(self) -> np.ndarray:
        """The starting points in :attr:`coordinates`, ``(chains, dimension)``."""
        return self.coordinates.from_model(self.chain_points)


jit_run_once = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})
"""``jax.jit`` for the programs a fit runs once (the prior draws, the Laplace spread), with XLA's
backend optimisations off: there they cost more compile time than they save in run time. The
two compiled in 0.67 to 0.74 s instead of 1.03 to 1.10 s on ``power_law_floor`` and in 1.5 to
1.6 s instead of 2.3 to 2.6 s on benchmark (b), whose start-up then ran about 0.02 s longer
(docs/performance.md, "Batched fits and recompilation")."""


def _program(density: Density, name, function, transform=jax.jit):
    """``transform(function)`` (``jax.jit`` unless said), one per model structure and array
    shapes (kept with the structure's other programs:
    :func:`~bayescale.density.compiled_programs`), so that a refit of the same structure finds
    the program compiled."""
    store = compiled_programs(density)
    if name not in store:
        store[name] = transform(function)
    return store[name]


def _optimise_starts(density: Density, starts: np.ndarray, devices: Sequence) -> lbfgs.Result:
    """L-BFGS from each start (rows of ``starts``) on the potential of ``density``, the starts
    split evenly over ``devices`` (:func:`bayescale.lbfgs.minimize_each` on each, all in one
    compiled program), as NumPy arrays with one row per start.

    On the 2-core development machine, 32 starts of benchmark (b) took 0.22 to 0.25 s on one
    CPU device and 0.11 to 0.18 s split over 2 or 4 (:func:`use_cpu_devices`)."""

    def optimise(starts, density):
        return lbfgs.minimize_each(jax.value_and_grad(density.potential), starts)

    count = min(len(devices), starts.shape[0])
    if count == 1:
        result = _program(density, "optimise_starts", optimise)(starts, density)
        return jax.tree.map(np.asarray, result)
    devices = tuple(devices[:count])
    per_device = -(-starts.shape[0] // count)
    padding = np.repeat(starts[-1:], per_device * count - starts.shape[0], axis=0)
    shares = np.concatenate([starts, padding]).reshape(count, per_device, -1)
    program = _program(
        density,
        ("optimise_starts", devices),
        optimise,
        transform=functools.partial(jax.pmap, in_axes=(0, None), devices=devices),
    )
    return jax.tree.map(
        lambda values: np.asarray(values).reshape(-1, *values.shape[2:])[: starts.shape[0]],
        program(shares, density),
    )


def _prior_starts(model_trace, key, starts: int) -> dict[str, Any]:
    """Draw ``starts`` points from the prior, on the unconstrained scale.

    Every sample site of a bayescale model has a fixed prior (hierarchies are non-centred and
    coefficients enter through factors), so sampling each site independently is a draw from
    the joint prior. Improper coordinates start uniform on [-2, 2], as numpyro does.
    """
    out = {}
    sites = [
        (name, site)
        for name, site in model_trace.items()
        if site["type"] == "sample" and not site["is_observed"]
    ]
    for (name, site), site_key in zip(sites, jax.random.split(key, len(sites)), strict=True):
        fn = site["fn"]
        shape = jnp.shape(site["value"])
        if isinstance(fn, dist.ImproperUniform):
            out[name] = jax.random.uniform(site_key, (starts, *shape), minval=-2.0, maxval=2.0)
        else:
            out[name] = biject_to(fn.support).inv(fn.sample(site_key, (starts,)))
    return out


LAPLACE_MAX_DIMENSION = 2000
"""Above this many dimensions the chains' starting spread is a fixed 0.1, not the Laplace one,
and NUTS samples the model's coordinates unscaled."""

GRADIENTS_AT_ONCE = 64
"""Gradients a Hessian by differences evaluates together (:func:`_hessian_rows`): its memory
is that of 64 gradients, whatever the dimension."""


def _laplace_starts(point, key, density: Density, *, chains: int):
    """Chain starts drawn from the Laplace approximation around ``point``, and its standard
    deviations (traceable; :func:`multistart_init` compiles it once per model structure).

    The covariance is the inverse Hessian of the potential over the positions NUTS moves (the
    others held where ``point`` has them), the Hessian by central differences of the exact
    gradient (:func:`_hessian_rows`: against ``jax.hessian`` the covariance agreed to 2e-7,
    relative, on the 409-dimensional Goldfish hierarchy, and compiled faster). The draws are
    truncated at two standard deviations, so that the chains start apart (R-hat can still see
    disagreement) but not in the tails; a draw where the potential is not finite starts at
    ``point``. Without a usable approximation (a Hessian that is not finite or not positive
    definite: a boundary optimum or a flat direction; or more than
    :data:`LAPLACE_MAX_DIMENSION` positions) the spread is 0.1 in every coordinate and the
    standard deviations are 1.

    Returns
    -------
    chain_points : array, ``(chains, dimension)``
    scale : array, ``(dimension,)``
    """
    free = np.setdiff1d(np.arange(point.shape[0]), _held_positions(density))
    fallback = 0.1 * jnp.eye(free.size)
    if free.size > LAPLACE_MAX_DIMENSION:
        factor, usable = fallback, jnp.asarray(False)
    else:
        hessian = _hessian_rows(point, free, density)[:, free]
        factor = jnp.linalg.cholesky(jnp.linalg.inv(0.5 * (hessian + hessian.T)))
        usable = jnp.all(jnp.isfinite(factor))
        factor = jnp.where(usable, factor, fallback)
    scale = (
        jnp.ones(point.shape[0])
        .at[free]
        .set(jnp.where(usable, jnp.sqrt(jnp.sum(factor**2, axis=1)), 1.0))
    )
    noise = jnp.clip(jax.random.normal(key, (chains, free.size)), -2.0, 2.0)
    chain_points = jnp.tile(point, (chains, 1)).at[:, free].add(noise @ factor.T)
    finite = jnp.isfinite(jax.vmap(density.potential)(chain_points))
    return jnp.where(finite[:, None], chain_points, point), scale


def _hessian_rows(point, rows, density: Density):
    """Rows ``rows`` of the Hessian of the potential at ``point``, ``(len(rows), dimension)``
    (traceable).

    Central differences of the exact gradient, steps ``h = 1e-5`` relative: the gradients at
    the ``2 len(rows)`` points are evaluated :data:`GRADIENTS_AT_ONCE` at a time, by one loop
    over batches (one copy of the gradient in the program: it compiled in 0.9 s on benchmark
    (b), against 3.0 s for ``lax.map``'s ``batch_size``, which compiles a second copy for the
    remainder). A row is NaN where the potential is not finite on either side of its step.
    """
    rows = jnp.asarray(rows)
    steps = 1e-5 * jnp.maximum(1.0, jnp.abs(point[rows]))
    offsets = jnp.zeros((rows.size, point.shape[0])).at[jnp.arange(rows.size), rows].set(steps)
    points = jnp.concatenate([point + offsets, point - offsets])
    batches = -(-points.shape[0] // GRADIENTS_AT_ONCE)
    padding = jnp.tile(point, (batches * GRADIENTS_AT_ONCE - points.shape[0], 1))
    values, grads = jax.lax.map(
        jax.vmap(jax.value_and_grad(density.potential)),
        jnp.concatenate([points, padding]).reshape(batches, GRADIENTS_AT_ONCE, -1),
    )
    values = values.reshape(-1)[: points.shape[0]]
    grads = grads.reshape(-1, point.shape[0])[: points.shape[0]]
    finite = jnp.isfinite(values[: rows.size]) & jnp.isfinite(values[rows.size :])
    difference = (grads[: rows.size] - grads[rows.size :]) / (2 * steps[:, None])
    return jnp.where(finite[:, None], difference, jnp.nan)


def sampler_settings_from(attrs: Mapping[str, Any]) -> SamplerSettings:
    """The :class:`SamplerSettings` recorded in a fit's provenance."""
    fields = SamplerSettings.__dataclass_fields__
    return SamplerSettings(**{k: v for k, v in attrs.items() if k in fields})
