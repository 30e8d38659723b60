"""What every benchmark shares: the machine report, timing with compilation counted, the three
ways of sampling one model (bayescale, PyMC's default NUTS, PyMC with numpyro's NUTS) and tables.

A measurement of a sampler is a :class:`Measurement`:

* ``wall_s``: the whole call, from data to a result, compilation included (the *time to first
  result* when it is the first call of its kind in the process);
* ``compile_s``: the part of it spent tracing, lowering and compiling JAX programs (from JAX's
  monitoring events; PyMC's own PyTensor/numba compilation is not in it);
* ``min_ess``: the smallest bulk ESS over every posterior variable of the model (the law's and
  the observation model's parameters, population values, spreads and group values);
* ``sampling_s``: the time without compilation: PyMC's own ``sampling_time`` for its NUTS (its
  PyTensor/numba compilation and initialisation come before it), ``wall_s - compile_s`` for
  bayescale and for PyMC with numpyro (for bayescale this still includes the multi-start
  optimisation, the log-likelihood and predictive draws after sampling and the diagnostics);
* ``nuts_s``: the time the NUTS chains ran (warm-up and sampling), nothing around them: for
  bayescale the compiled chains' run (``fit.sampler["nuts_seconds"]``), for PyMC's default
  sampler its ``sampling_time`` (the same thing), for PyMC with numpyro ``sampling_s`` (an
  upper bound: it also holds PyMC's model set-up and numpyro's driver);
* ``ess_per_sampling_s``: ``min_ess / sampling_s``, the sampler's throughput with everything
  around NUTS; ``ess_per_nuts_s``: ``min_ess / nuts_s``, NUTS alone against NUTS alone;
  ``ess_per_s``: ``min_ess / wall_s``, what a user waiting for one fit gets;
* ``steps_per_draw``: leapfrog steps per kept draw (mean of ``n_steps``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import arviz_stats
import jax
import numpy as np

import bayescale as bs
from bayescale.errors import ConvergenceWarning
from bayescale.inference import xla_compilations

RESULTS = Path(__file__).resolve().parent / "results"
DATA = Path(__file__).resolve().parent / "data"
COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)


@dataclass
class Measurement:
    """One sampler on one problem; see the module docstring for the fields."""

    problem: str
    method: str
    wall_s: float
    min_ess: float
    steps_per_draw: float
    divergences: int
    max_r_hat: float
    compile_s: float = float("nan")
    sampling_s: float = float("nan")
    nuts_s: float = float("nan")
    converged: bool = True
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ess_per_s(self) -> float:
        return self.min_ess / self.wall_s

    @property
    def ess_per_sampling_s(self) -> float:
        return self.min_ess / self.sampling_s

    @property
    def ess_per_nuts_s(self) -> float:
        return self.min_ess / self.nuts_s

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ess_per_s"] = self.ess_per_s
        out["ess_per_sampling_s"] = self.ess_per_sampling_s
        out["ess_per_nuts_s"] = self.ess_per_nuts_s
        return out


def parser(description: str, device: bool = True) -> argparse.ArgumentParser:
    """The benchmarks' common options; ``device=False`` for those that run their own compiled
    programs on JAX's default device (they have no ``--device`` or ``--cpu-devices`` to
    ignore). Parse the options of a benchmark with devices by :func:`parse_args`."""
    out = argparse.ArgumentParser(description=description)
    out.add_argument("--quick", action="store_true", help="a smaller, faster version")
    out.add_argument(
        "--json", type=Path, default=None, help="also write the measurements to this JSON file"
    )
    out.add_argument("--seed", type=int, default=0)
    if device:
        out.add_argument(
            "--cpu-devices",
            type=int,
            default=None,
            help="JAX CPU devices (bayescale.use_cpu_devices; default: one per core, at least 4, "
            "so chains run in parallel; 1: the chains vectorised on one device)",
        )
        out.add_argument(
            "--device",
            default="cpu",
            choices=["cpu", "gpu"],
            help="where bayescale samples (PyMC's own NUTS always runs on the CPU)",
        )
    return out


def parse_args(cli: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """Parse the options of a benchmark made by :func:`parser`, then split the CPU into JAX
    devices as ``--cpu-devices`` says (this must come before JAX's first computation)."""
    args = cli.parse_args(argv)
    bs.use_cpu_devices(args.cpu_devices)
    return args


def machine() -> dict[str, Any]:
    """The machine and its load when the benchmark ran (other jobs distort timings)."""
    load = os.getloadavg()
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_1_5_15_min": [round(v, 2) for v in load],
        "jax_devices": [str(d) for d in jax.devices()],
        "versions": {
            name: _version(name) for name in ("bayescale", "jax", "numpyro", "pymc", "pytensor")
        },
    }


def _version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def jax_compile_time():
    """Collect the seconds JAX spends tracing, lowering and compiling inside the block."""
    return xla_compilations(COMPILE_EVENTS)


def min_ess(posterior, names) -> float:
    ess = arviz_stats.ess(posterior[list(names)], method="bulk")
    return float(min(np.nanmin(ess[name].values) for name in names))


def max_r_hat(posterior, names) -> float:
    r_hat = arviz_stats.rhat(posterior[list(names)])
    return float(max(np.nanmax(r_hat[name].values) for name in names))


def measure_bayescale(problem: str, runs, spec, settings, method="bayescale") -> Measurement:
    """``bayescale.fit`` (numpyro backend) from validated runs, timed end to end."""
    from bayescale.inference import fit_runs

    started = time.perf_counter()
    with jax_compile_time() as compiling, warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fit = fit_runs(runs, spec, settings)
    wall = time.perf_counter() - started
    return _from_fit(problem, method, fit, wall, sum(compiling))


def _from_fit(problem, method, fit: bs.Fit, wall: float, compile_s: float, notes="") -> Measurement:
    posterior = fit.datatree["posterior"].to_dataset()
    names = list(posterior.data_vars)
    stats = fit.datatree["sample_stats"]
    d = fit.diagnostics
    return Measurement(
        problem=problem,
        method=method,
        wall_s=wall,
        min_ess=min_ess(posterior, names),
        steps_per_draw=float(stats["n_steps"].mean()),
        divergences=int(stats["diverging"].sum()),
        max_r_hat=max_r_hat(posterior, names),
        compile_s=compile_s,
        sampling_s=wall - compile_s,
        nuts_s=float(fit.sampler["nuts_seconds"]),
        converged=d.converged,
        notes=notes,
        extra={"dense_mass": fit.sampler.get("dense_mass_used")},
    )


def measure_pymc(
    problem: str,
    runs,
    spec,
    *,
    nuts_sampler: str = "pymc",
    chains: int = 4,
    draws: int = 1000,
    tune: int = 1000,
    seed: int = 0,
    method: str | None = None,
) -> Measurement:
    """PyMC on the same model (:func:`bayescale.backends.pymc.pymc_model`), with PyMC's defaults
    for everything but the number of chains, draws and tuning steps (so that every method does
    the same work): ``init="jitter+adapt_diag"``, ``target_accept=0.8``, chains in parallel
    processes (PyMC's sampler) or numpyro's default ``chain_method`` (numpyro)."""
    import pymc as pm

    from bayescale.backends.pymc import _quiet_pymc, pymc_model
    from bayescale.model import Design

    design = Design.from_runs(runs, spec)
    names = [n for n in spec.posterior_names() if "__" not in n]
    started = time.perf_counter()
    with jax_compile_time() as compiling, _quiet_pymc(False), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = pymc_model(spec, design)
        with model:
            options = {} if nuts_sampler == "pymc" else {"nuts_sampler": nuts_sampler}
            trace = pm.sample(
                draws=draws,
                tune=tune,
                chains=chains,
                random_seed=seed,
                progressbar=False,
                compute_convergence_checks=False,
                **options,
            )
    wall = time.perf_counter() - started
    posterior = trace["posterior"].to_dataset()
    stats = trace["sample_stats"].to_dataset()
    if nuts_sampler == "pymc":  # PyMC times its sampler; its PyTensor compilation comes before
        sampling = posterior.attrs.get("sampling_time", stats.attrs.get("sampling_time"))
    else:  # numpyro compiles inside the sampling call: take JAX's compilation out
        sampling = wall - sum(compiling)
    r_hat = max_r_hat(posterior, names)
    ess = min_ess(posterior, names)
    divergences = int(stats["diverging"].sum())
    return Measurement(
        problem=problem,
        method=method or ("pymc default" if nuts_sampler == "pymc" else f"pymc + {nuts_sampler}"),
        wall_s=wall,
        min_ess=ess,
        steps_per_draw=float(stats["n_steps"].mean()),
        divergences=divergences,
        max_r_hat=r_hat,
        compile_s=sum(compiling),
        sampling_s=float(sampling),
        nuts_s=float(sampling),
        converged=bool(r_hat <= 1.01 and ess >= 100 * chains and divergences == 0),
    )


def table(measurements: list[Measurement], reference: str = "pymc default") -> str:
    """A text table, with ratios of ESS per second and of time to first result against
    ``reference`` (ratios > 1 favour the row)."""
    header = (
        f"{'problem':<22}{'method':<20}{'wall s':>8}{'compile':>8}{'sampling':>9}{'NUTS s':>7}"
        f"{'min ESS':>8}{'ESS/s samp':>11}{'ratio':>7}{'ESS/s NUTS':>11}{'ratio':>7}"
        f"{'ESS/s wall':>11}{'ratio':>7}{'TTFR ratio':>11}{'steps/draw':>11}{'div':>5}"
        f"{'R-hat':>7}  ok"
    )
    lines = [header, "-" * len(header)]
    by_problem: dict[str, list[Measurement]] = {}
    for m in measurements:
        by_problem.setdefault(m.problem, []).append(m)
    for problem, rows in by_problem.items():
        ref = next((m for m in rows if m.method == reference), None)
        for m in rows:
            nan = float("nan")
            ratio_sampling = m.ess_per_sampling_s / ref.ess_per_sampling_s if ref else nan
            ratio_nuts = m.ess_per_nuts_s / ref.ess_per_nuts_s if ref else nan
            ratio_wall = m.ess_per_s / ref.ess_per_s if ref else nan
            ttfr = ref.wall_s / m.wall_s if ref else nan
            lines.append(
                f"{problem:<22}{m.method:<20}{m.wall_s:>8.1f}{m.compile_s:>8.1f}"
                f"{m.sampling_s:>9.1f}{m.nuts_s:>7.1f}{m.min_ess:>8.0f}"
                f"{m.ess_per_sampling_s:>11.2f}{ratio_sampling:>7.2f}"
                f"{m.ess_per_nuts_s:>11.2f}{ratio_nuts:>7.2f}{m.ess_per_s:>11.2f}"
                f"{ratio_wall:>7.2f}{ttfr:>11.2f}{m.steps_per_draw:>11.1f}{m.divergences:>5}"
                f"{m.max_r_hat:>7.3f}  {'yes' if m.converged else 'NO'}"
            )
    return "\n".join(lines)


def report(title: str, measurements: list[Measurement], args, extra: dict | None = None) -> None:
    """Print the table and the machine, and write JSON when asked."""
    info = machine()
    print(f"\n== {title}")
    print(table(measurements))
    print(
        f"machine: {info['cpus']} CPUs, load average {info['load_average_1_5_15_min']} "
        f"(1/5/15 min), JAX devices {info['jax_devices']}"
    )
    for key, value in (extra or {}).items():
        print(f"{key}: {value}")
    payload = {
        "title": title,
        "machine": info,
        "measurements": [m.to_dict() for m in measurements],
        **(extra or {}),
    }
    target = args.json
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(payload, indent=2, default=float))
        print(f"written to {target}")


def timed(function: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    value = function()
    return value, time.perf_counter() - started


# ---------------------------------------------------------------------- a bare compiled NUTS
def chinchilla_potential(precision64: bool = True, seed: int = 0, chains: int = 4):
    """The potential energy of benchmark (a)'s model as a function of a flat vector, with the
    chains' starting points from bayescale's multi-start initialisation (call it inside
    ``jax.enable_x64(precision64)``)."""
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree
    from numpyro.infer.util import initialize_model

    from bayescale.inference import multistart_init
    from bayescale.model import Design, ModelSpec, numpyro_model
    from benchmarks.chinchilla import epoch_runs

    spec = ModelSpec.create("chinchilla")
    design = Design.from_runs(epoch_runs(), spec)
    model = numpyro_model(spec, design)
    kwargs = {"y": jnp.asarray(design.y)}
    key = jax.random.PRNGKey(seed)
    with jax.enable_x64(True):  # the starting points are found in float64, as bs.fit does
        starts = multistart_init(spec, design, key, 32, chains).init_params
        starts = jax.tree.map(np.asarray, starts)
    with jax.enable_x64(precision64):
        info, potential_fn, _, _ = initialize_model(key, model, model_kwargs=kwargs)
        _, unravel = ravel_pytree(info[0])
        flat = np.asarray(jax.vmap(lambda tree: ravel_pytree(tree)[0])(starts))
        dtype = jnp.float64 if precision64 else jnp.float32
        return (lambda z: potential_fn(unravel(z))), jnp.asarray(flat, dtype=dtype)


def nuts_program(potential, warmup: int, draws: int, dense: bool = True, target_accept=0.9):
    """A jitted function ``run(keys, starts)`` running NUTS chains (vectorised, as bs.fit does)
    through warm-up and sampling; returns flat draws, leapfrog steps and divergences of every
    iteration (warm-up included)."""
    from numpyro.infer.hmc import hmc

    init_kernel, sample_kernel = hmc(potential_fn=potential, algo="NUTS")

    def chain(key, start):
        state = init_kernel(
            start,
            warmup,
            dense_mass=dense,
            target_accept_prob=target_accept,
            trajectory_length=None,
            rng_key=key,
        )

        def step(s, _):
            s = sample_kernel(s)
            return s, (s.z, s.num_steps, s.diverging)

        _, out = jax.lax.scan(step, state, None, length=warmup + draws)
        return out

    return jax.jit(jax.vmap(chain))


def gradient_seconds(potential, points, iterations: int = 2000) -> float:
    """Seconds per evaluation of the potential's value and gradient at ``points`` (a batch of
    chains evaluated together, as vectorised chains do), measured inside one compiled loop."""
    value_and_grad = jax.vmap(jax.value_and_grad(potential))

    @jax.jit
    def loop(x):
        def body(_, carry):
            x, total = carry
            value, grad = value_and_grad(x)
            # A tiny move keeps every evaluation distinct (nothing can be hoisted out).
            return x - 1e-9 * grad, total + value.sum()

        return jax.lax.fori_loop(0, iterations, body, (x, 0.0))

    jax.block_until_ready(loop(points))  # compile
    started = time.perf_counter()
    jax.block_until_ready(loop(points))
    return (time.perf_counter() - started) / iterations
