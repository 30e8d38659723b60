"""Decision reports: one self-contained HTML (or Markdown) file per question.

A report is what you hand to the people who fund the next run. It states the question, answers
it in one sentence with its probability, and shows the evidence: a forecast fan chart with the
data, the comparison and crossover figures when two fits are compared, the law-selection table
when candidate laws share their data, the parameters with intervals, the convergence diagnostics
(with a visible warning when a gate failed), the runs used, and the provenance (library
versions, seed, law, priors).

The HTML file has no external assets and no scripts: figures are PNG images embedded as base64
``data:`` URIs and the style sheet is inline, so it opens anywhere, offline, and can be mailed.
The Markdown variant embeds the same images as ``data:`` URIs.

Examples
--------
>>> import bayescale as bs
>>> fit = bs.load_fit("chinchilla.nc")  # doctest: +SKIP
>>> build_report([fit], at={"N": 7e10, "D": 1.4e12}).save("report.html")  # doctest: +SKIP
>>> a, b = bs.load_fit("clip.nc"), bs.load_fit("mammut.nc")  # doctest: +SKIP
>>> result = bs.compare(b, a, over="x=1e8:1e13", at="x=1e12")  # doctest: +SKIP
>>> build_report({"MaMMUT": b, "CLIP": a}, comparison=result).save("report.md")  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bayescale.compare import Comparison, path_points
from bayescale.errors import SettingsError
from bayescale.plotting import new_figure
from bayescale.results import Fit, interval_names
from bayescale.selection import Selection, select

MAX_DATA_ROWS = 200
"""Rows of each fit's data shown in a report (the rest are counted)."""
FAN_PROBS = (0.5, 0.9)
"""Central intervals drawn as bands in fan charts."""


# ---------------------------------------------------------------------------- blocks
@dataclass(frozen=True)
class Block:
    """One piece of a report: ``kind`` is heading, text, answer, warning, ok, figure, table or
    pre; ``content`` is text, a DataFrame, or (caption, PNG bytes) for figures."""

    kind: str
    content: Any
    level: int = 2


@dataclass
class Report:
    """A decision report: title, question, one-sentence answer and the evidence blocks.

    Build it with :func:`build_report`; write it with :meth:`save`, or get the text with
    :meth:`html` and :meth:`markdown`.
    """

    title: str
    question: str
    answer: str
    blocks: list[Block] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ HTML
    def html(self) -> str:
        """The report as one self-contained HTML document."""
        parts = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{_esc(self.title)}</title>",
            f"<style>{_CSS}</style></head><body>",
            f"<h1>{_esc(self.title)}</h1>",
            f'<p class="question"><strong>Question.</strong> {_esc(self.question)}</p>',
            f'<p class="answer" id="answer"><strong>Answer.</strong> {_esc(self.answer)}</p>',
        ]
        for message in self.warnings:
            parts.append(f'<div class="warning" role="alert">{_esc(message)}</div>')
        for block in self.blocks:
            parts.append(_html_block(block))
        parts.append("</body></html>")
        return "\n".join(parts) + "\n"

    # ------------------------------------------------------------------ Markdown
    def markdown(self) -> str:
        """The report as Markdown, figures embedded as ``data:`` URIs."""
        lines = [
            f"# {self.title}",
            "",
            f"**Question.** {self.question}",
            "",
            f"**Answer.** {self.answer}",
            "",
        ]
        for message in self.warnings:
            lines += ["> **WARNING**", ">"] + [f"> {line}" for line in message.splitlines()] + [""]
        for block in self.blocks:
            lines += _markdown_block(block) + [""]
        return "\n".join(lines)

    def save(self, path: str | Path) -> Path:
        """Write the report atomically: HTML, or Markdown when the name ends in ``.md``.

        No partial file is left behind if writing fails.
        """
        target = Path(path)
        if target.is_dir():
            raise SettingsError(f"cannot write the report to {target}: it is a directory")
        if not target.parent.exists():
            raise SettingsError(
                f"cannot write the report to {target}: folder {target.parent} does not exist"
            )
        text = self.markdown() if target.suffix.lower() in (".md", ".markdown") else self.html()
        temporary = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
        try:
            temporary.write_text(text, encoding="utf-8")
            os.replace(temporary, target)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return target


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#1b1b1b;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.3em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;
margin-top:1.8em}h3{margin-top:1.2em}
.question{font-size:1.1em}.answer{font-size:1.2em;background:#eef6ee;border-left:6px solid #2e7d32;
padding:.6em .9em}
.warning{background:#fdecea;border:2px solid #c62828;color:#8e0000;padding:.7em 1em;
margin:1em 0;font-weight:600;white-space:pre-wrap}
.ok{background:#eef6ee;border-left:6px solid #2e7d32;padding:.4em .9em}
table{border-collapse:collapse;font-size:.9em;margin:.6em 0}th,td{border:1px solid #ccc;
padding:.2em .5em;text-align:right}th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #ddd}
figcaption{font-size:.9em;color:#444}pre{background:#f7f7f7;padding:.6em;overflow-x:auto;
font-size:.85em}
"""


def _esc(text: Any) -> str:
    return html.escape(str(text))


def _png_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _html_block(block: Block) -> str:
    if block.kind == "heading":
        return f"<h{block.level}>{_esc(block.content)}</h{block.level}>"
    if block.kind == "text":
        return f"<p>{_esc(block.content)}</p>"
    if block.kind == "warning":
        return f'<div class="warning" role="alert">{_esc(block.content)}</div>'
    if block.kind == "ok":
        return f'<p class="ok">{_esc(block.content)}</p>'
    if block.kind == "pre":
        return f"<pre>{_esc(block.content)}</pre>"
    if block.kind == "figure":
        caption, png = block.content
        return (
            f'<figure><img src="{_png_uri(png)}" alt="{_esc(caption)}">'
            f"<figcaption>{_esc(caption)}</figcaption></figure>"
        )
    if block.kind == "table":
        frame: pd.DataFrame = block.content
        head = "".join(f"<th>{_esc(c)}</th>" for c in [frame.index.name or "", *frame.columns])
        rows = []
        for index, row in frame.iterrows():
            cells = "".join(f"<td>{_esc(_format(v))}</td>" for v in row.tolist())
            rows.append(f"<tr><td>{_esc(index)}</td>{cells}</tr>")
        return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    raise ValueError(f"unknown block kind {block.kind!r}")


def _markdown_block(block: Block) -> list[str]:
    if block.kind == "heading":
        return ["#" * block.level + " " + str(block.content)]
    if block.kind in ("text", "ok"):
        return [str(block.content)]
    if block.kind == "warning":
        return ["> **WARNING**", ">"] + [f"> {line}" for line in str(block.content).splitlines()]
    if block.kind == "pre":
        return ["```text", str(block.content), "```"]
    if block.kind == "figure":
        caption, png = block.content
        return [f"![{caption}]({_png_uri(png)})", "", f"*{caption}*"]
    if block.kind == "table":
        return markdown_table(block.content).splitlines()
    raise ValueError(f"unknown block kind {block.kind!r}")


def markdown_table(frame: pd.DataFrame) -> str:
    """A DataFrame as a Markdown table (index first; numbers to 4 significant digits).

    Examples
    --------
    >>> print(markdown_table(pd.DataFrame({"p": [0.25]}, index=pd.Index(["a"], name="law"))))
    | law | p |
    |---|---|
    | a | 0.25 |
    """
    header = [
        ", ".join(map(str, frame.index.names))
        if frame.index.name or frame.index.nlevels > 1
        else "",
        *map(str, frame.columns),
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for index, row in frame.iterrows():
        label = " / ".join(map(str, index)) if isinstance(index, tuple) else str(index)
        cells = [label, *(_format(v) for v in row.tolist())]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def _format(value: Any) -> str:
    if isinstance(value, float | np.floating):
        if not np.isfinite(value):
            return "nan"
        return f"{value:.4g}"
    return str(value)


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


# ---------------------------------------------------------------------------- figures
def fan_chart_comparison(comparison: Comparison, fits: Mapping[str, Fit]) -> bytes:
    """Both curves along the axis with 50% and 90% bands, and each fit's runs."""
    figure = new_figure(8, 4.8)
    axis = figure.subplots()
    colors = ("#1f77b4", "#d62728")
    for label, curve, fit, color in zip(
        comparison.labels,
        (comparison.curve_a, comparison.curve_b),
        fits.values(),
        colors,
        strict=True,
    ):
        _fan(axis, comparison.grid, curve, color, label)
        x, y = _runs_on_axis(fit, comparison.axis.name)
        if x is not None:
            axis.scatter(x, y, s=14, color=color, edgecolor="white", lw=0.4, zorder=3)
    if comparison.target is not None:
        axis.axvline(comparison.target, color="black", ls=":", lw=1, label="target")
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel(comparison.axis.name)
    axis.set_ylabel(comparison.outcome)
    axis.set_title("forecast fan: median, 50% and 90% bands of the law; dots are runs")
    axis.legend(fontsize=8)
    return _png(figure)


def fan_chart_fit(fit: Fit, axis_name: str, grid: np.ndarray, path: Mapping, target) -> bytes:
    """One fit's law along ``axis_name`` (50% and 90% bands) with its runs."""
    points = path_points(fit, axis_name, grid, path, tokens_per_parameter=None, k=6.0)
    curve = fit.forecast(points).curve
    figure = new_figure(8, 4.8)
    axis = figure.subplots()
    _fan(axis, grid, curve.reshape(-1, grid.size), "#1f77b4", fit.law.name)
    x, y = _runs_on_axis(fit, axis_name)
    if x is not None:
        axis.scatter(x, y, s=14, color="#1f77b4", edgecolor="white", lw=0.4, zorder=3)
    if target is not None:
        axis.axvline(target, color="black", ls=":", lw=1, label="target")
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel(axis_name)
    axis.set_ylabel(fit.outcome)
    held = ", ".join(
        f"{k} = {v:.3g}" if isinstance(v, float) else f"{k} = {v}"
        for k, v in path.items()
        if not callable(v)
    )
    axis.set_title("forecast fan: median, 50% and 90% bands" + (f" ({held})" if held else ""))
    axis.legend(fontsize=8)
    return _png(figure)


def _fan(axis, grid, curve, color, label) -> None:
    for prob, alpha in zip(FAN_PROBS, (0.35, 0.18), strict=True):
        low, high = np.quantile(curve, [(1 - prob) / 2, (1 + prob) / 2], axis=0)
        axis.fill_between(grid, low, high, color=color, alpha=alpha, lw=0)
    axis.plot(grid, np.median(curve, axis=0), color=color, lw=1.5, label=label)


def _runs_on_axis(fit: Fit, axis_name: str):
    runs = fit.runs_frame()
    y = runs[fit.outcome].to_numpy()
    if axis_name in runs:
        return runs[axis_name].to_numpy(dtype=float), y
    if axis_name == "C" and {"N", "D"} <= set(runs.columns):
        return 6.0 * runs["N"].to_numpy(dtype=float) * runs["D"].to_numpy(dtype=float), y
    return None, None


def comparison_figure(comparison: Comparison) -> bytes:
    """P(A better than B) along the axis, and the difference A - B with its bands."""
    figure = new_figure(8, 6)
    top, bottom = figure.subplots(2, 1, sharex=True)
    a, b = comparison.labels
    top.plot(comparison.grid, comparison.prob_a_better, color="black", lw=1.5)
    top.axhline(0.5, color="grey", lw=0.8, ls="--")
    top.set_ylim(-0.02, 1.02)
    top.set_ylabel(f"P({a} better than {b})")
    _fan(bottom, comparison.grid, comparison.difference, "#6a3d9a", f"{a} - {b}")
    bottom.axhline(0.0, color="grey", lw=0.8, ls="--")
    bottom.set_ylabel(f"{comparison.outcome}: {a} - {b}")
    bottom.set_xlabel(comparison.axis.name)
    bottom.set_xscale("log")
    for axis in (top, bottom):
        if comparison.target is not None:
            axis.axvline(comparison.target, color="black", ls=":", lw=1)
    bottom.legend(fontsize=8)
    top.set_title(f"{comparison.better} {comparison.outcome} is better")
    return _png(figure)


def crossover_figure(comparison: Comparison) -> bytes:
    """Posterior of the first crossing's location, and the number of crossings per draw."""
    crossover = comparison.crossover
    figure = new_figure(8, 3.6)
    left, right = figure.subplots(1, 2, width_ratios=(3, 1))
    if crossover.crosses.any():
        located = crossover.first[crossover.crosses]
        bins = np.geomspace(comparison.axis.low, comparison.axis.high, 60)
        left.hist(located, bins=bins, color="#6a3d9a", alpha=0.8)
        interval = crossover.interval()
        low_name, high_name = interval_names(comparison.prob)
        for key, style in (("median", "-"), (low_name, "--"), (high_name, "--")):
            left.axvline(interval[key], color="black", ls=style, lw=1)
        left.set_title(
            f"first crossing given one (P = {crossover.probability:.2f}); "
            f"lines: median, {comparison.prob:.0%} interval",
            fontsize=9,
        )
    else:
        left.text(0.5, 0.5, "no draw crosses in this range", ha="center", transform=left.transAxes)
        left.set_title(f"P(crossing) = {crossover.probability:.2f}", fontsize=9)
    left.set_xscale("log")
    left.set_xlim(comparison.axis.low, comparison.axis.high)
    left.set_xlabel(comparison.axis.name)
    left.set_ylabel("draws")
    counts = crossover.count_distribution()
    right.bar([str(k) for k in counts], list(counts.values()), color="#555555")
    right.set_xlabel("crossings per draw")
    right.set_ylabel("share of draws")
    return _png(figure)


# ---------------------------------------------------------------------------- building
def build_report(
    fits: Fit | Sequence[Fit] | Mapping[str, Fit],
    *,
    comparison: Comparison | None = None,
    selection: Selection | None = None,
    question: str | None = None,
    at: Mapping[str, Any] | None = None,
    title: str | None = None,
    prob: float = 0.9,
) -> Report:
    """Assemble the report of one or more fits, optionally with a comparison of two.

    Parameters
    ----------
    fits : Fit, sequence of Fit, or mapping of label to Fit
        The fits the report is about. With a comparison, the first two are A and B.
    comparison : Comparison, optional
        From :func:`bayescale.compare.compare` or :func:`~bayescale.compare.compare_groups`;
        its answer becomes the report's answer and its figures are shown.
    selection : Selection, optional
        From :func:`bayescale.selection.select`; computed automatically when several fits share
        the same runs and no comparison is given.
    question : str, optional
        The decision the report answers; a default is phrased from the comparison or target.
    at : mapping, optional
        For a report without a comparison: the point (all inputs of the first fit's law) whose
        forecast answers the question. Defaults to ten times the largest run along the law's
        first input.
    title : str, optional
    prob : float
        Mass of the central intervals.

    Returns
    -------
    Report
    """
    named = _named(fits)
    if comparison is not None and len(named) < 1:
        raise SettingsError("a comparison report needs the fits it compares")
    first = next(iter(named.values()))
    warnings: list[str] = []
    blocks: list[Block] = []

    if comparison is not None:
        question = question or _comparison_question(comparison)
        answer = comparison.answer()
        blocks += [
            Block("heading", "Comparison"),
            Block("text", comparison.crossover.summary()),
            Block("text", f"Draws: {comparison.pairing}."),
            Block(
                "figure",
                (
                    "Forecast fan chart of both laws with their runs.",
                    _comparison_fan(comparison, named),
                ),
            ),
            Block(
                "figure",
                (
                    f"P({comparison.labels[0]} better than {comparison.labels[1]}) and the "
                    "posterior of the difference along the axis.",
                    comparison_figure(comparison),
                ),
            ),
            Block(
                "figure",
                (
                    "Crossover: location of the first crossing, and crossings per draw.",
                    crossover_figure(comparison),
                ),
            ),
            Block("table", _comparison_table(comparison)),
        ]
    else:
        target_point, axis_name = _target(first, at)
        question = question or (
            f"What {first.outcome} does the fitted law predict at {_point_text(target_point)}?"
        )
        prediction = first.forecast(target_point, prob=prob).table().iloc[0]
        low, high = interval_names(prob)
        answer = (
            f"At {_point_text(target_point)}, the fitted {first.law.name} law gives "
            f"{first.outcome} {prediction['curve_median']:.4g}, with probability {prob:.0%} "
            f"between {prediction[f'curve_{low}']:.4g} and {prediction[f'curve_{high}']:.4g} "
            f"(a new run, with its noise: {prediction[low]:.4g} to {prediction[high]:.4g})."
        )
        path = {k: v for k, v in target_point.items() if k != axis_name}
        runs_axis = first.runs_frame()[axis_name].to_numpy(dtype=float)
        grid = np.geomspace(
            runs_axis.min() / 1.5, max(runs_axis.max(), target_point[axis_name]) * 1.5, 120
        )
        blocks += [
            Block("heading", "Forecast"),
            Block(
                "figure",
                (
                    f"Forecast fan chart along {axis_name} with the runs.",
                    fan_chart_fit(first, axis_name, grid, path, target_point[axis_name]),
                ),
            ),
        ]
    shared = len(named) >= 2 and _share_runs(list(named.values()))
    if selection is None and comparison is None and shared:
        selection = select(named)
    if selection is not None:
        blocks += [Block("heading", "Which law? (PSIS-LOO, stacking)"), _selection_table(selection)]
        message = selection.warning()
        if message:
            warnings.append(message)
            blocks.append(Block("warning", message))
        else:
            blocks.append(
                Block(
                    "ok",
                    f"Best by PSIS-LOO: {selection.best}; every check passed "
                    "for at least one candidate.",
                )
            )

    for label, fit in named.items():
        blocks += _fit_blocks(label, fit, prob, warnings)
    return Report(
        title=title or _title(named, comparison),
        question=question,
        answer=answer,
        blocks=blocks,
        warnings=warnings,
    )


def _named(fits) -> dict[str, Fit]:
    if isinstance(fits, Fit):
        return {fits.law.name: fits}
    if isinstance(fits, Mapping):
        named = {str(k): v for k, v in fits.items()}
    else:
        named = {}
        for i, fit in enumerate(fits):
            label = fit.law.name if fit.law.name not in named else f"{fit.law.name} ({i + 1})"
            named[label] = fit
    if not named:
        raise SettingsError("a report needs at least one fit")
    for label, fit in named.items():
        if not isinstance(fit, Fit):
            raise SettingsError(f"{label!r} is not a Fit")
    return named


def _title(named, comparison) -> str:
    if comparison is not None:
        a, b = comparison.labels
        return f"{a} vs {b}: {comparison.outcome} along {comparison.axis.name}"
    return "Scaling-law report: " + ", ".join(named)


def _comparison_question(comparison: Comparison) -> str:
    a, b = comparison.labels
    where = (
        f"at {comparison.axis.name} = {comparison.target:.3g}"
        if comparison.target is not None
        else f"between {comparison.axis.name} = {comparison.axis.low:.3g} and "
        f"{comparison.axis.high:.3g}"
    )
    return (
        f"Which is better {where}, {a} or {b}, and do their curves cross between "
        f"{comparison.axis.name} = {comparison.axis.low:.3g} and {comparison.axis.high:.3g}?"
    )


def _comparison_fan(comparison: Comparison, named: Mapping[str, Fit]) -> bytes:
    fits = dict(list(named.items())[:2])
    if len(fits) == 1:  # two groups of one fit
        fit = next(iter(fits.values()))
        fits = {comparison.labels[0]: fit, comparison.labels[1]: fit}
    return fan_chart_comparison(comparison, fits)


def _comparison_table(comparison: Comparison) -> pd.DataFrame:
    table = comparison.table()
    index = np.unique(np.round(np.linspace(0, len(table) - 1, 13)).astype(int))
    shown = table.iloc[index].set_index(comparison.axis.name)
    shown.index = [f"{v:.3g}" for v in shown.index]
    shown.index.name = comparison.axis.name
    a, b = comparison.labels

    def rename(column: str) -> str:
        if column == "prob_a_better":
            return f"P({a} better)"
        side, _, stat = column.partition("_")
        return f"{ {'a': a, 'b': b, 'diff': f'{a} - {b}'}[side] } {stat}"

    return shown.rename(columns=rename)


def _target(fit: Fit, at: Mapping[str, Any] | None) -> tuple[dict[str, Any], str]:
    """The forecast point of a single-fit report, and the axis of its fan chart."""
    runs = fit.runs_frame()
    inputs = list(fit.law.input_names)
    axis_name = inputs[0]
    if at is None:
        largest = runs.loc[runs[axis_name].idxmax()]
        point: dict[str, Any] = {name: float(largest[name]) for name in inputs}
        point[axis_name] = 10.0 * point[axis_name]
        for column in (*fit.spec.group_columns, *fit.spec.covariate_columns):
            point[column] = largest[column]
        return point, axis_name
    point = dict(at)
    missing = [
        c for c in (*inputs, *fit.spec.group_columns, *fit.spec.covariate_columns) if c not in point
    ]
    if missing:
        raise SettingsError(f"the report's target point needs a value for {missing[0]!r}")
    return point, axis_name


def _point_text(point: Mapping[str, Any]) -> str:
    return ", ".join(
        f"{k} = {v:.3g}" if isinstance(v, float | int | np.floating) else f"{k} = {v}"
        for k, v in point.items()
    )


def _share_runs(fits: list[Fit]) -> bool:
    from bayescale.selection import _same_observations

    return all(_same_observations(fit, fits[0]) for fit in fits[1:])


def _selection_table(selection: Selection) -> Block:
    rows = []
    for name, row in selection.table.iterrows():
        check = selection.checks[name]
        rows.append(
            {
                "candidate": name,
                "elpd_loo": float(row["elpd"]),
                "se": float(row["se"]),
                "elpd_diff": float(row["elpd_diff"]),
                "weight": float(row["weight"]),
                "Pareto k > threshold": check.pareto_k_high,
                "residual p": check.residual_p,
                "LOO coverage": check.loo_coverage,
                "describes the data": "yes" if check.adequate else "NO",
            }
        )
    return Block("table", pd.DataFrame(rows).set_index("candidate"))


def _fit_blocks(label: str, fit: Fit, prob: float, warnings: list[str]) -> list[Block]:
    blocks = [Block("heading", f"Fit: {label}")]
    law = fit.law
    blocks.append(
        Block(
            "text",
            f"Law {law.name}: {law.formula_text} ({law.outcome}, {law.better} is better); "
            f"{fit.spec.observation.name} likelihood; {fit.data_info['n_runs']} runs.",
        )
    )
    blocks.append(Block("heading", "Parameters", level=3))
    summary = fit.summary(prob)
    blocks.append(Block("table", summary))
    blocks.append(Block("heading", "Diagnostics", level=3))
    diagnostics = fit.diagnostics
    if diagnostics.converged:
        blocks.append(Block("ok", "All convergence gates passed (R-hat, ESS, divergences)."))
    else:
        message = f"{label}: " + diagnostics.message()
        warnings.append(message)
        blocks.append(Block("warning", message))
    blocks.append(Block("pre", diagnostics.table()))
    blocks.append(Block("heading", "Data used", level=3))
    runs = fit.runs_frame()
    source = fit.data_info.get("source", "")
    text = f"Source: {source}; sha256 {fit.data_info.get('sha256', '')[:16]}...; {len(runs)} runs"
    if len(runs) > MAX_DATA_ROWS:
        text += f" (the first {MAX_DATA_ROWS} are shown)"
    blocks.append(Block("text", text + "."))
    blocks.append(Block("table", runs.head(MAX_DATA_ROWS)))
    blocks.append(Block("heading", "Provenance", level=3))
    blocks.append(Block("pre", _provenance(fit)))
    return blocks


def _provenance(fit: Fit) -> str:
    attrs = fit.datatree.attrs
    versions = json.loads(attrs.get("bayescale_versions", "{}"))
    sampler = fit.sampler
    record = {
        "law": fit.law.name,
        "formula": fit.law.formula_text,
        "citation": fit.law.citation,
        "priors": {name: str(prior) for name, prior in fit.spec.priors.items()},
        "pooling": [str(p) for p in fit.spec.pooling],
        "likelihood": fit.spec.observation.name,
        "sampler": {
            key: sampler.get(key)
            for key in ("chains", "draws", "warmup", "seed", "target_accept", "dense_mass_used")
        },
        "data_sha256": fit.data_info.get("sha256"),
        "created_at": attrs.get("created_at"),
        "versions": versions,
    }
    return json.dumps(record, indent=2, default=str)
