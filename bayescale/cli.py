"""The ``bayescale`` command line; it mirrors the Python API.

Every user mistake (bad file, bad option, bad value) ends with one line on stderr,
``bayescale: error: ...``, and exit status 2; no traceback, and no partial output file.

Commands
--------
``bayescale laws``        list the law catalog
``bayescale fit``         fit a law to a CSV of runs and save the fit
``bayescale summary``     show the parameters and diagnostics of a saved fit
``bayescale forecast``    posterior predictive of a saved fit at new inputs
``bayescale optimal``     compute-optimal allocation from a saved fit
``bayescale compare``     P(A better than B) along a scale axis, and crossovers
``bayescale report``      a self-contained HTML or Markdown decision report
``bayescale demo``        the main job on the embedded Chinchilla data
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import warnings
from pathlib import Path

import click

from bayescale.errors import BayescaleError

USER_ERROR_STATUS = 2


def _pairs(values: tuple[str, ...], option: str, what: str) -> dict[str, str]:
    """Parse repeated ``NAME=VALUE`` options (split at the first ``=``)."""
    out: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise click.UsageError(f"{option} expects {what}, got {item!r}")
        if name.strip() in out:
            raise click.UsageError(f"{option} gives {name.strip()!r} twice")
        out[name.strip()] = value.strip()
    return out


def _multi_pairs(values: tuple[str, ...], option: str) -> dict[str, tuple[str, ...]]:
    """Parse repeated ``PARAM=COLUMN`` options where a parameter may appear several times."""
    out: dict[str, tuple[str, ...]] = {}
    for item in values:
        name, sep, column = item.partition("=")
        if not sep or not name.strip() or not column.strip():
            raise click.UsageError(f"{option} expects PARAM=COLUMN, got {item!r}")
        out[name.strip()] = (*out.get(name.strip(), ()), column.strip())
    return out


def _centrings(values: tuple[str, ...]) -> dict[str, bool | str]:
    """Parse repeated ``--centered PARAM`` (centred) or ``--centered PARAM=auto`` (or
    ``=conditional``)."""
    out: dict[str, bool | str] = {}
    for item in values:
        name, sep, form = (part.strip() for part in item.partition("="))
        if not name or (sep and form not in ("auto", "conditional")):
            raise click.UsageError(
                f"--centered expects PARAM, PARAM=auto or PARAM=conditional, got {item!r}"
            )
        if name in out:
            raise click.UsageError(f"--centered gives {name!r} twice")
        out[name] = form if sep else True
    return out


def _point(text: str) -> dict[str, float | str]:
    """Parse ``--at "N=7e10,D=1.4e12[,group=label]"``."""
    out: dict[str, float | str] = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip() or "=" in value:
            raise click.UsageError(
                f"--at expects NAME=VALUE pairs separated by commas, got {text!r}"
            )
        try:
            out[name.strip()] = float(value)
        except ValueError:
            out[name.strip()] = value.strip()
    return out


def _check_output_path(path: str) -> Path:
    target = Path(path)
    if target.is_dir():
        raise click.UsageError(f"--out {path!r} is a directory; give a file name such as fit.nc")
    if not target.parent.exists():
        raise click.UsageError(f"--out {path!r}: folder {str(target.parent)!r} does not exist")
    return target


def _echo_json(payload) -> None:
    click.echo(json.dumps(payload, indent=2, default=_json_default, allow_nan=False))


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _clean(payload):
    """Replace NaN and infinities by None so that the JSON is standard."""
    if isinstance(payload, dict):
        return {k: _clean(v) for k, v in payload.items()}
    if isinstance(payload, list):
        return [_clean(v) for v in payload]
    if isinstance(payload, float) and not math.isfinite(payload):
        return None
    return payload


def _format_summary(table, prob: float) -> str:
    from bayescale.results import interval_names

    low, high = interval_names(prob)
    lines = [f"{'parameter':<18}{'median':>12}{low:>12}{high:>12}{'r_hat':>8}{'ess_bulk':>10}"]
    for name, row in table.iterrows():
        lines.append(
            f"{name:<18}{row['median']:>12.5g}{row[low]:>12.5g}{row[high]:>12.5g}"
            f"{row['r_hat']:>8.3f}{row['ess_bulk']:>10.0f}"
        )
    return "\n".join(lines)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="bayescale")
@click.option(
    "--compilation-cache",
    "cache",
    default=None,
    metavar="DIR",
    help="Keep the programs JAX compiles in DIR (created if needed), so that later commands "
    "start faster; before the command, e.g. bayescale --compilation-cache ~/.cache/bs fit ...",
)
def cli(cache: str | None) -> None:
    """bayescale: Bayesian scaling laws with honest uncertainty."""
    if cache is not None:
        from bayescale.batch import enable_compilation_cache

        enable_compilation_cache(cache)


@cli.command("laws")
@click.option("--json", "as_json", is_flag=True, help="Print the catalog as JSON.")
@click.option("--markdown", is_flag=True, help="Print the catalog as the Markdown of docs/laws.md.")
def laws_command(as_json: bool, markdown: bool) -> None:
    """List the law catalog."""
    from bayescale.docs import catalog_markdown
    from bayescale.laws import catalog

    laws = catalog()
    if as_json:
        _echo_json({name: law.to_dict() for name, law in laws.items()})
    elif markdown:
        click.echo(catalog_markdown(), nl=False)
    else:
        width = max(len(name) for name in laws)
        for name, law in laws.items():
            inputs = ", ".join(law.input_names)
            click.echo(f"{name:<{width}}  {law.outcome:<8} ({inputs})  {law.formula_text}")


@cli.command("fit")
@click.argument("data", type=str)
@click.option("--law", "law_name", required=True, help="Catalog law (see `bayescale laws`).")
@click.option("--y", "outcome", required=True, help="Outcome column (loss, error, accuracy).")
@click.option(
    "--x",
    "x_pairs",
    multiple=True,
    metavar="INPUT=COLUMN",
    help="Column for a law input; inputs not given use the column of the same name.",
)
@click.option(
    "--group",
    "group_pairs",
    multiple=True,
    metavar="PARAM=COLUMN",
    help="Pool a parameter hierarchically over a group column.",
)
@click.option(
    "--group-covariate",
    "group_covariate_pairs",
    multiple=True,
    metavar="PARAM=COLUMN",
    help="A group-level covariate shifting a pooled parameter's group means.",
)
@click.option(
    "--regress",
    "regress_pairs",
    multiple=True,
    metavar="PARAM=COLUMN",
    help="A run-level covariate shifting a parameter on its link scale (repeatable).",
)
@click.option("--trials", default=None, help="Column with trials per run (accuracy outcomes).")
@click.option("--censored", default=None, help="Column flagging censored runs (0/1/right/left).")
@click.option(
    "--centered",
    "centred",
    multiple=True,
    metavar="PARAM[=auto|=conditional]",
    help="Use the centred form for a pooled parameter (groups with many runs each); "
    "PARAM=auto centres each group as far as its runs pin its value; PARAM=conditional "
    "centres each group on its conditional posterior (a coefficient of a law proportional to "
    "it, log-normal observations).",
)
@click.option(
    "--prior",
    "prior_pairs",
    multiple=True,
    metavar="PARAM=PRIOR",
    help='Override a prior, e.g. --prior "alpha=LogNormal(log(0.3), 0.5)".',
)
@click.option(
    "--likelihood",
    default=None,
    help="Observation model: lognormal (default for losses), lognormal_mean, student_t, huber, "
    "lognormal_walk (the law's error as a random walk along its one input); "
    "binomial, beta_binomial, beta (accuracies; binomial is the default with --trials).",
)
@click.option("--huber-delta", type=float, default=None, help="Knee of the huber likelihood.")
@click.option("--chains", type=int, default=4, show_default=True)
@click.option("--draws", type=int, default=1000, show_default=True)
@click.option("--warmup", type=int, default=1000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--target-accept", type=float, default=0.9, show_default=True)
@click.option(
    "--backend",
    default="numpyro",
    show_default=True,
    help="numpyro (NUTS on JAX) or pymc (the same model in PyMC).",
)
@click.option(
    "--nuts-sampler",
    default=None,
    help="With --backend pymc: pymc (default), numpyro, blackjax or nutpie.",
)
@click.option(
    "--device",
    default="cpu",
    show_default=True,
    help="cpu or gpu (a single fit is faster on the CPU; see docs/performance.md).",
)
@click.option("--out", "out_path", required=True, help="File to save the fit to (netCDF).")
@click.option("--plot", "plot_path", default=None, help="Also write a figure of the fit (PNG/PDF).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def fit_command(
    data,
    law_name,
    outcome,
    x_pairs,
    group_pairs,
    group_covariate_pairs,
    regress_pairs,
    trials,
    censored,
    centred,
    prior_pairs,
    likelihood,
    huber_delta,
    chains,
    draws,
    warmup,
    seed,
    target_accept,
    backend,
    nuts_sampler,
    device,
    out_path,
    plot_path,
    as_json,
) -> None:
    """Fit a law to the runs in DATA (a CSV file) and save the fit to --out."""
    from bayescale.inference import fit
    from bayescale.priors import Pooling

    target = _check_output_path(out_path)
    if plot_path is not None:
        _check_output_path(plot_path)
    options = {}
    if huber_delta is not None:
        if likelihood != "huber":
            raise click.UsageError("--huber-delta only applies to --likelihood huber")
        options["delta"] = huber_delta
    groups = _pairs(group_pairs, "--group", "PARAM=COLUMN")
    centring = _centrings(centred)
    for option, names in (
        ("--centered", list(centring)),
        ("--group-covariate", [item.partition("=")[0].strip() for item in group_covariate_pairs]),
    ):
        unknown = [name for name in names if name not in groups]
        if unknown:
            raise click.UsageError(f"{option} {unknown[0]} needs --group {unknown[0]}=COLUMN")
    group_covariates = _multi_pairs(group_covariate_pairs, "--group-covariate")
    pool = [
        Pooling(
            name,
            column,
            centered=centring.get(name, False),
            covariates=group_covariates.get(name, ()),
        )
        for name, column in groups.items()
    ]
    result = fit(
        data,
        law_name,
        y=outcome,
        x=_pairs(x_pairs, "--x", "INPUT=COLUMN"),
        pool=pool,
        regress=_multi_pairs(regress_pairs, "--regress"),
        trials=trials,
        censored=censored,
        priors=_pairs(prior_pairs, "--prior", "PARAM=PRIOR"),
        likelihood=likelihood,
        likelihood_options=options,
        chains=chains,
        draws=draws,
        warmup=warmup,
        seed=seed,
        target_accept=target_accept,
        backend=backend,
        nuts_sampler=nuts_sampler,
        device=device,
    )
    result.save(target)
    if plot_path is not None:
        from bayescale.plotting import plot_fit

        plot_fit(result).savefig(plot_path, dpi=120)
    _report_fit(result, as_json, saved=target)


def _report_fit(result, as_json: bool, saved: Path | None = None) -> None:
    if as_json:
        _echo_json(_clean(result.to_dict()))
    else:
        click.echo(
            f"{result.law.name}: {result.law.formula_text}  ({result.spec.observation.name} "
            f"likelihood, {result.data_info['n_runs']} runs)"
        )
        click.echo(_format_summary(result.summary(), 0.9))
        click.echo(result.diagnostics.table())
        if saved is not None:
            click.echo(f"fit saved to {saved}")
    if not result.converged:
        click.echo(result.diagnostics.message(), err=True)


@cli.command("summary")
@click.argument("fit_path", metavar="FIT")
@click.option("--prob", type=float, default=0.9, show_default=True, help="Central interval mass.")
@click.option("--json", "as_json", is_flag=True)
def summary_command(fit_path, prob, as_json) -> None:
    """Show the parameters and diagnostics of a saved fit."""
    from bayescale.results import load_fit

    result = load_fit(fit_path)
    if as_json:
        _echo_json(_clean(result.to_dict(prob)))
    else:
        click.echo(repr(result))
        click.echo(_format_summary(result.summary(prob), prob))
        click.echo(result.diagnostics.table())


@cli.command("forecast")
@click.argument("fit_path", metavar="FIT")
@click.option(
    "--at",
    "points",
    multiple=True,
    required=True,
    metavar='"N=7e10,D=1.4e12"',
    help="A point to forecast; repeat for several. Group labels as COLUMN=LABEL.",
)
@click.option("--prob", type=float, default=0.9, show_default=True, help="Central interval mass.")
@click.option(
    "--seed", type=int, default=None, help="Seed of the noise draws (default: the fit's)."
)
@click.option(
    "--discrepancy",
    type=click.Choice(["walk"]),
    default=None,
    help="Add the law's own error as a random walk in log input plus a drift beyond the "
    "fitted runs, their scales estimated from the residuals and from refits on the first part "
    "of the runs (laws with one input).",
)
@click.option("--json", "as_json", is_flag=True)
def forecast_command(fit_path, points, prob, seed, discrepancy, as_json) -> None:
    """Posterior predictive of a saved fit at new inputs."""
    from bayescale.results import load_fit

    if not 0 < prob < 1:
        raise click.UsageError(f"--prob must lie in (0, 1), got {prob}")
    result = load_fit(fit_path)
    prediction = result.forecast(
        [_point(p) for p in points], prob=prob, seed=seed, discrepancy=discrepancy
    )
    if as_json:
        _echo_json(_clean(prediction.to_dict()))
        return
    table = prediction.table()
    click.echo(
        f"forecast of {result.outcome} ({prob:.0%} central intervals; 'outcome' includes "
        "run-to-run noise, 'law' is the fitted curve):"
    )
    for _, row in table.iterrows():
        where = ", ".join(
            f"{c}={row[c]:g}" if isinstance(row[c], float) else f"{c}={row[c]}"
            for c in prediction.points.columns
        )
        cols = [c for c in table.columns if c.startswith("q")]
        curve_cols = [c for c in table.columns if c.startswith("curve_q")]
        click.echo(
            f"  {where}: outcome {row['median']:.4g} [{row[cols[0]]:.4g}, {row[cols[1]]:.4g}]"
            f"; law {row['curve_median']:.4g} [{row[curve_cols[0]]:.4g}, "
            f"{row[curve_cols[1]]:.4g}]"
        )


@cli.command("optimal")
@click.argument("fit_path", metavar="FIT")
@click.option(
    "--compute",
    "budgets",
    multiple=True,
    required=True,
    type=float,
    help="Compute budget in FLOP; repeat for several.",
)
@click.option("--prob", type=float, default=0.9, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def optimal_command(fit_path, budgets, prob, as_json) -> None:
    """Compute-optimal model size and tokens (laws of N and D, or C and M)."""
    from bayescale.results import load_fit

    table = load_fit(fit_path).compute_optimal(list(budgets), prob=prob)
    if as_json:
        _echo_json(_clean({"compute_optimal": table.reset_index().to_dict(orient="records")}))
    else:
        click.echo(table.T.to_string(float_format=lambda v: f"{v:.4g}"))


def _fixed(values: tuple[str, ...]) -> dict[str, float | str]:
    """Parse repeated ``--fixed NAME=VALUE`` (numbers, or group labels)."""
    out: dict[str, float | str] = {}
    for name, value in _pairs(values, "--fixed", "NAME=VALUE").items():
        try:
            out[name] = float(value)
        except ValueError:
            out[name] = value
    return out


def _comparison_options(function):
    """Options shared by ``compare`` and ``report`` for comparing two fits."""
    options = [
        click.option(
            "--fixed",
            "fixed_pairs",
            multiple=True,
            metavar="NAME=VALUE",
            help="Hold another input (or a group label) fixed along the axis; repeatable.",
        ),
        click.option(
            "--tokens-per-parameter",
            type=float,
            default=None,
            help="For --over C=... with laws of N and D: follow D = r N on C = 6 N D.",
        ),
        click.option("--label-a", default=None, help="Name of the first fit in sentences."),
        click.option("--label-b", default=None, help="Name of the second fit in sentences."),
        click.option(
            "--grid",
            "grid_size",
            type=int,
            default=200,
            show_default=True,
            help="Grid points along the axis (crossing detection).",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _labels(fit_a, fit_b, path_a: str, path_b: str, label_a, label_b) -> tuple[str, str]:
    if label_a is None:
        label_a = Path(path_a).stem
    if label_b is None:
        label_b = Path(path_b).stem
    if label_a == label_b:
        label_a, label_b = f"{label_a} (A)", f"{label_b} (B)"
    return label_a, label_b


@cli.command("compare")
@click.argument("fit_a", metavar="FIT_A")
@click.argument("fit_b", metavar="FIT_B")
@click.option(
    "--over",
    required=True,
    metavar='"C=1e20:1e26"',
    help="The scale axis and its range (an input of both laws, or C for laws of N and D).",
)
@click.option("--at", "target", default=None, metavar='"C=1e24"', help="Target scale.")
@_comparison_options
@click.option("--prob", type=float, default=0.9, show_default=True, help="Central interval mass.")
@click.option(
    "--points", type=int, default=25, show_default=True, help="Grid points listed in the JSON."
)
@click.option("--json", "as_json", is_flag=True)
def compare_command(
    fit_a,
    fit_b,
    over,
    target,
    fixed_pairs,
    tokens_per_parameter,
    label_a,
    label_b,
    grid_size,
    prob,
    points,
    as_json,
) -> None:
    """Compare two saved fits along a scale axis: P(A better than B) and crossovers."""
    from bayescale.compare import compare
    from bayescale.results import load_fit

    if points < 2:
        raise click.UsageError(f"--points must be at least 2, got {points}")
    first, second = load_fit(fit_a), load_fit(fit_b)
    result = compare(
        first,
        second,
        over,
        at=target,
        fixed=_fixed(fixed_pairs),
        tokens_per_parameter=tokens_per_parameter,
        labels=_labels(first, second, fit_a, fit_b, label_a, label_b),
        prob=prob,
        grid=grid_size,
    )
    if as_json:
        _echo_json(_clean(result.to_dict(points=points)))
    else:
        click.echo(result.summary())
    for fit, path in ((first, fit_a), (second, fit_b)):
        if not fit.converged:
            click.echo(f"bayescale: warning: {path}: " + fit.diagnostics.message(), err=True)


@cli.command("report")
@click.argument("fit_paths", metavar="FIT [FIT ...]", nargs=-1, required=True)
@click.option(
    "--out",
    "out_path",
    required=True,
    help="Report file: HTML, or Markdown when the name ends in .md.",
)
@click.option(
    "--over",
    default=None,
    metavar='"C=1e20:1e26"',
    help="With two fits: compare them along this axis.",
)
@click.option(
    "--at",
    "target",
    default=None,
    metavar='"N=7e10,D=1.4e12"',
    help="Target: a scale on the axis (two fits) or a full point (one fit).",
)
@_comparison_options
@click.option("--question", default=None, help="The question the report answers.")
@click.option("--title", default=None, help="Title of the report.")
def report_command(
    fit_paths,
    out_path,
    over,
    target,
    fixed_pairs,
    tokens_per_parameter,
    label_a,
    label_b,
    grid_size,
    question,
    title,
) -> None:
    """Write a self-contained decision report (HTML or Markdown) for one or more saved fits."""
    from bayescale.compare import compare
    from bayescale.report import build_report
    from bayescale.results import load_fit

    destination = _check_output_path(out_path)
    fits = [load_fit(path) for path in fit_paths]
    labels = [Path(path).stem for path in fit_paths]
    if len(set(labels)) != len(labels):
        labels = [f"{label} ({i + 1})" for i, label in enumerate(labels)]
    comparison = None
    point = None
    if over is not None:
        if len(fits) != 2:
            raise click.UsageError(f"--over compares two fits; {len(fits)} were given")
        labels = list(_labels(fits[0], fits[1], fit_paths[0], fit_paths[1], label_a, label_b))
        comparison = compare(
            fits[0],
            fits[1],
            over,
            at=target,
            fixed=_fixed(fixed_pairs),
            tokens_per_parameter=tokens_per_parameter,
            labels=tuple(labels),
            grid=grid_size,
        )
    else:
        for name, given in (
            ("--fixed", fixed_pairs),
            ("--tokens-per-parameter", tokens_per_parameter),
            ("--label-a", label_a),
            ("--label-b", label_b),
        ):
            if given:
                raise click.UsageError(f"{name} only applies with --over (comparing two fits)")
        if target is not None:
            point = _point(target)
    report = build_report(
        dict(zip(labels, fits, strict=True)),
        comparison=comparison,
        at=point,
        question=question,
        title=title,
    )
    report.save(destination)
    click.echo(f"report written to {destination}: {report.answer}")
    for message in report.warnings:
        click.echo("bayescale: warning: " + message, err=True)


@cli.command("demo")
@click.option(
    "--out",
    "out_dir",
    default="bayescale-demo",
    show_default=True,
    help="Folder for the fit file and the figure.",
)
@click.option("--draws", type=int, default=1000, show_default=True)
@click.option("--warmup", type=int, default=1000, show_default=True)
@click.option("--chains", type=int, default=4, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def demo_command(out_dir, draws, warmup, chains, seed, as_json) -> None:
    """Fit Chinchilla to Epoch AI's 245 runs, forecast 70B/1.4T and the optimal split."""
    from bayescale.demo import run_demo

    folder = Path(out_dir)
    if folder.exists() and not folder.is_dir():
        raise click.UsageError(f"--out {out_dir!r} exists and is not a folder")
    report = run_demo(folder, draws=draws, warmup=warmup, chains=chains, seed=seed)
    if as_json:
        _echo_json(_clean(report.to_dict()))
    else:
        click.echo(report.text())
    if not report.fit.converged:
        click.echo(report.fit.diagnostics.message(), err=True)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    text = str(message).replace("\n", "\n  ")
    click.echo(f"bayescale: warning: {text}", err=True)


def _split_cpu_for_chains() -> None:
    """One JAX CPU device per chain, so that fits run their chains in parallel (see
    :func:`bayescale.use_cpu_devices`). Left alone when the user's XLA_FLAGS already set a
    device count, or when JAX has computed something in this process (called in-process, as
    the tests do): the fits then run their chains vectorised, with the same results' layout."""
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return
    from bayescale.inference import use_cpu_devices

    with contextlib.suppress(BayescaleError):
        use_cpu_devices()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``bayescale`` command; returns the exit status."""
    _split_cpu_for_chains()
    previous = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        cli.main(args=argv, prog_name="bayescale", standalone_mode=False)
    except BayescaleError as exc:
        click.echo(f"bayescale: error: {exc}", err=True)
        return USER_ERROR_STATUS
    except click.exceptions.Abort:
        click.echo("bayescale: aborted", err=True)
        return 130
    except click.ClickException as exc:
        click.echo(f"bayescale: error: {exc.format_message()}", err=True)
        return USER_ERROR_STATUS
    finally:
        warnings.showwarning = previous
    return 0


if __name__ == "__main__":
    sys.exit(main())
