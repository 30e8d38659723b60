"""float32 against float64: speed and accuracy of the same NUTS run on benchmark (a).

Run from the repository root::

    python -m benchmarks.precision            # 4 chains x (1000 warm-up + 1000 draws)
    python -m benchmarks.precision --quick    # 4 chains x (300 + 300)

The compiled NUTS program of :mod:`benchmarks.overhead` runs on Chinchilla's model with the 240
Epoch runs twice, once in float64 (bayescale's default: every fit runs inside
``jax.enable_x64(True)``) and once in float32, from the same starting points. Reported: the wall
time of the compiled run, the seconds per gradient evaluation, leapfrog steps per draw,
divergences, the largest difference of the posterior means in units of the float64 posterior sd
(on the sampler's unconstrained coordinates), and the error of the float32 log density and
gradient at the float64 chains' starting points.
"""

from __future__ import annotations

import time

import jax
import numpy as np

from benchmarks.common import (
    chinchilla_potential,
    gradient_seconds,
    machine,
    nuts_program,
    parser,
)


def run(precision64: bool, warmup: int, draws: int, seed: int) -> dict:
    with jax.enable_x64(precision64):
        potential, starts = chinchilla_potential(precision64, seed=seed)
        program = nuts_program(potential, warmup, draws)
        keys = jax.random.split(jax.random.PRNGKey(seed + 1), starts.shape[0])
        jax.block_until_ready(program(keys, starts))  # compile
        keys = jax.random.split(jax.random.PRNGKey(seed + 2), starts.shape[0])
        started = time.perf_counter()
        z, steps, divergent = jax.block_until_ready(program(keys, starts))
        wall = time.perf_counter() - started
        gradient = gradient_seconds(potential, starts)
        value, grad = jax.vmap(jax.value_and_grad(potential))(starts)
    return {
        "dtype": "float64" if precision64 else "float32",
        "wall_s": wall,
        "gradient_us": gradient * 1e6,
        "steps_per_draw": float(np.asarray(steps)[:, warmup:].mean()),
        "divergences": int(np.asarray(divergent)[:, warmup:].sum()),
        "draws": np.asarray(z)[:, warmup:].astype(np.float64),
        "value": np.asarray(value, dtype=np.float64),
        "grad": np.asarray(grad, dtype=np.float64),
    }


def main(argv=None) -> None:
    args = parser(__doc__.splitlines()[0], device=False).parse_args(argv)
    warmup = draws = 300 if args.quick else 1000
    double = run(True, warmup, draws, args.seed)
    single = run(False, warmup, draws, args.seed)
    sd = double["draws"].reshape(-1, double["draws"].shape[-1]).std(axis=0)
    shift = np.abs(
        single["draws"].reshape(-1, sd.size).mean(axis=0)
        - double["draws"].reshape(-1, sd.size).mean(axis=0)
    )
    print("\n== float32 against float64 on (a) Chinchilla, 240 runs (compiled NUTS, 4 chains)")
    for row in (double, single):
        print(
            f"  {row['dtype']}: wall {row['wall_s']:.2f} s, gradient {row['gradient_us']:.2f} us, "
            f"{row['steps_per_draw']:.1f} leapfrog steps per draw, {row['divergences']} divergences"
        )
    value_error = np.max(np.abs(single["value"] - double["value"]))
    grad_error = np.max(
        np.linalg.norm(single["grad"] - double["grad"], axis=1)
        / np.linalg.norm(double["grad"], axis=1)
    )
    print(
        f"  speed-up of float32: {double['wall_s'] / single['wall_s']:.2f}x (sampling), "
        f"{double['gradient_us'] / single['gradient_us']:.2f}x (one gradient)"
    )
    print(
        f"  largest shift of a posterior mean: {np.max(shift / sd):.3f} posterior sd; "
        f"log density error {value_error:.2e} nats, relative gradient error {grad_error:.2e}"
    )
    info = machine()
    print(f"machine: {info['cpus']} CPUs, load average {info['load_average_1_5_15_min']}")
    if args.json is not None:
        import json

        args.json.parent.mkdir(parents=True, exist_ok=True)
        keep = ("dtype", "wall_s", "gradient_us", "steps_per_draw", "divergences")
        rows = [{k: row[k] for k in keep} for row in (double, single)]
        summary = {
            "max_mean_shift_sd": float(np.max(shift / sd)),
            "log_density_error": float(value_error),
            "relative_gradient_error": float(grad_error),
        }
        args.json.write_text(json.dumps({"machine": info, "rows": rows, **summary}, indent=2))


if __name__ == "__main__":
    main()
