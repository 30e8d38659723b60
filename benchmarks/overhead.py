"""Sampler overhead on benchmark (a): NUTS wall time over the pure cost of its gradients.

Run from the repository root::

    python -m benchmarks.overhead            # 4 chains x (1000 warm-up + 1000 draws)
    python -m benchmarks.overhead --quick    # 4 chains x (300 + 300)

NUTS spends its time evaluating the gradient of the log density, once per leapfrog step, plus the
tree building, the U-turn checks, the step size and mass matrix adaptation and the bookkeeping
around them. The overhead factor is::

    NUTS wall time / (gradient evaluations x seconds per compiled gradient evaluation)

on Chinchilla's model with the 240 Epoch runs, the program ``bs.fit`` runs (numpyro's NUTS kernel,
dense mass matrix, 4 chains vectorised), already compiled. The gradient's cost is measured inside
one compiled loop (``jax.lax.fori_loop`` of ``value_and_grad``), for the 4 chains at once.
Vectorised chains move in lockstep: each iteration costs the largest number of leapfrog steps
among the chains, so the gradient evaluations counted are the sum over iterations of the maximum
over chains (the sum over chains is reported too). The same is measured for one chain alone.
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


def measure(chains: int, warmup: int, draws: int, seed: int) -> dict:
    with jax.enable_x64(True):
        potential, starts = chinchilla_potential(seed=seed, chains=4)
        starts = starts[:chains]
        run = nuts_program(potential, warmup, draws)
        keys = jax.random.split(jax.random.PRNGKey(seed + 1), chains)
        started = time.perf_counter()
        jax.block_until_ready(run(keys, starts))
        first = time.perf_counter() - started
        keys = jax.random.split(jax.random.PRNGKey(seed + 2), chains)
        started = time.perf_counter()
        _, steps, divergent = jax.block_until_ready(run(keys, starts))
        wall = time.perf_counter() - started
        gradient = gradient_seconds(potential, starts)
    steps = np.asarray(steps)
    lockstep = int(steps.max(axis=0).sum())
    return {
        "chains": chains,
        "first_call_s": round(first, 3),
        "wall_s": round(wall, 3),
        "leapfrog_steps_total": int(steps.sum()),
        "gradient_evaluations_lockstep": lockstep,
        "steps_per_draw_sampling": float(steps[:, warmup:].mean()),
        "steps_per_draw_warmup": float(steps[:, :warmup].mean()),
        "divergences_after_warmup": int(np.asarray(divergent)[:, warmup:].sum()),
        "gradient_us": round(gradient * 1e6, 3),
        "pure_gradient_s": round(lockstep * gradient, 3),
        "overhead": round(wall / (lockstep * gradient), 3),
    }


def main(argv=None) -> None:
    args = parser(__doc__.splitlines()[0], device=False).parse_args(argv)
    warmup = draws = 300 if args.quick else 1000
    rows = [measure(4, warmup, draws, args.seed), measure(1, warmup, draws, args.seed)]
    print("\n== sampler overhead on (a) Chinchilla, 240 runs (compiled NUTS, dense mass)")
    for row in rows:
        print("  " + ", ".join(f"{k}={v}" for k, v in row.items()))
    info = machine()
    print(f"machine: {info['cpus']} CPUs, load average {info['load_average_1_5_15_min']}")
    if args.json is not None:
        import json

        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": info, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
