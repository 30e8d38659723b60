"""Comparing two fitted laws along a scale axis: P(A better than B) and crossovers.

A decision between two models, datasets or methods is a question about two curves at scales
that may not have been trained: which one is better at the compute I can afford, and does the
one that wins small lose large? :func:`compare` answers it from the posterior draws of the two
fits (which may use different laws and different data) and :func:`compare_groups` from two
groups of one hierarchical fit.

How the draws are paired
------------------------
Every quantity is computed draw by draw on the law's mean (``Fit.forecast(...).curve``, the
noise-free curve: "better" is about the expected outcome, not one noisy run).

* Two groups of one fit share their posterior draws, so draw ``s`` of group A is paired with
  draw ``s`` of group B: the difference keeps the correlation between the groups (a shared
  exponent cancels).
* Two separate fits have independent posteriors, so their joint posterior is the product of the
  two. Pairing draw ``s`` of A with draw ``s`` of B is then a valid draw from that product. When
  the fits hold different numbers of draws, the larger set is thinned to the smaller one by
  evenly spaced indices (over the chains in order), which keeps every chain represented; no
  draw is used twice.

Crossovers
----------
For every paired draw, the advantage of A (``B - A`` when lower is better, ``A - B`` when
higher is better) is evaluated on a log-spaced grid; each sign change between neighbouring grid
points is a crossing, located by linear interpolation of the advantage in ``log x``. A draw may
cross zero, one or several times; :class:`Crossover` reports the probability of at least one
crossing, the distribution of the number of crossings, the first crossing's location given
that there is one (median and central interval), and which curve is ahead after it. Two
crossings closer together than the grid spacing are missed: raise ``grid`` when that matters.

Examples
--------
>>> import bayescale as bs
>>> clip, mammut = bs.load_fit("clip.nc"), bs.load_fit("mammut.nc")  # doctest: +SKIP
>>> result = compare(mammut, clip, over="x=1e8:1e13", at="x=1e12",
...                  labels=("MaMMUT", "CLIP"))  # doctest: +SKIP
>>> print(result.answer())  # doctest: +SKIP
>>> result.crossover.summary()  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from bayescale.errors import DataError, SettingsError
from bayescale.results import Fit, interval_names

Path = Mapping[str, float | str | Callable[[np.ndarray], Any]]
"""Inputs along the axis: ``{name: constant}`` or ``{name: function of the axis values}``."""

DEFAULT_GRID = 200
"""Grid points along the axis for the difference and crossing detection."""


# ---------------------------------------------------------------------------- the axis
@dataclass(frozen=True)
class Axis:
    """A scale axis: the name of the quantity and its log-spaced range.

    Attributes
    ----------
    name : str
        An input of the laws (``"N"``, ``"x"``) or ``"C"`` (compute; see :func:`compare`).
    low, high : float
        The range, both positive.
    """

    name: str
    low: float
    high: float

    @classmethod
    def parse(cls, over: str | tuple | Mapping | Axis) -> Axis:
        """Read ``"C=1e20:1e26"``, ``("C", 1e20, 1e26)`` or ``{"C": (1e20, 1e26)}``.

        Examples
        --------
        >>> Axis.parse("C=1e20:1e26")
        Axis(name='C', low=1e+20, high=1e+26)
        >>> Axis.parse({"N": (1e8, 1e11)}).name
        'N'
        """
        if isinstance(over, Axis):
            return over
        if isinstance(over, str):
            name, sep, span = over.partition("=")
            low, sep2, high = span.partition(":")
            if not sep or not sep2 or not name.strip():
                raise SettingsError(
                    f"the axis must look like NAME=LOW:HIGH (e.g. C=1e20:1e26), got {over!r}"
                )
            values = (low, high)
        elif isinstance(over, Mapping):
            if len(over) != 1:
                raise SettingsError(f"the axis must name one quantity, got {list(over)}")
            ((name, values),) = over.items()
        else:
            try:
                name, *values = over
            except TypeError:
                raise SettingsError(f"cannot read the axis {over!r}") from None
        if len(values) != 2:
            raise SettingsError(f"the axis {name!r} needs a low and a high end, got {values!r}")
        try:
            low, high = (float(v) for v in values)
        except (TypeError, ValueError):
            raise SettingsError(
                f"the axis {name!r}: ends must be numbers, got {values[0]!r} and {values[1]!r}"
            ) from None
        if not (math.isfinite(low) and math.isfinite(high) and 0 < low < high):
            raise SettingsError(
                f"the axis {name!r}: need 0 < low < high (finite), got {low:g} and {high:g}"
            )
        return cls(str(name).strip(), low, high)

    def grid(self, size: int) -> np.ndarray:
        if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 3:
            raise SettingsError(f"grid must be an integer of at least 3, got {size!r}")
        return np.geomspace(self.low, self.high, int(size))


def parse_target(at: float | str | Mapping | None, axis: Axis) -> float | None:
    """Read the target scale: a number, ``"C=1e24"`` or ``{"C": 1e24}``, on ``axis``."""
    if at is None:
        return None
    if isinstance(at, str):
        name, sep, value = at.partition("=")
        if sep:
            if name.strip() != axis.name:
                raise SettingsError(
                    f"the target {at!r} names {name.strip()!r}, but the axis is {axis.name!r}"
                )
            at = value
    elif isinstance(at, Mapping):
        if set(at) != {axis.name}:
            raise SettingsError(f"the target must give only {axis.name!r}, got {list(at)}")
        at = at[axis.name]
    try:
        value = float(at)
    except (TypeError, ValueError):
        raise SettingsError(f"the target scale must be a number, got {at!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise SettingsError(f"the target scale must be positive, got {value:g}")
    return value


def probability_text(p: float, draws: int) -> str:
    """A probability estimated from ``draws`` posterior draws, as printed in sentences.

    Examples
    --------
    >>> probability_text(0.934, 4000), probability_text(1.0, 4000), probability_text(0.0, 4000)
    ('0.93', '1.00 (all 4000 draws)', '0.00 (none of 4000 draws)')
    """
    if p >= 1.0:
        return f"1.00 (all {draws} draws)"
    if p <= 0.0:
        return f"0.00 (none of {draws} draws)"
    return f"{p:.2f}"


# ---------------------------------------------------------------------------- crossovers
@dataclass(frozen=True, eq=False)
class Crossover:
    """Where, and how probably, two curves cross inside the compared range.

    Attributes
    ----------
    axis : str
    low, high : float
        The range searched.
    counts : ndarray of int, shape (samples,)
        Number of sign changes of the difference in each paired draw.
    first : ndarray, shape (samples,)
        Location of each draw's first crossing (``nan`` where it does not cross).
    a_ahead_before : ndarray of bool, shape (samples,)
        Whether A was the better curve just before the first crossing (then B overtakes A).
    locations : ndarray
        Every crossing of every draw, pooled (for histograms).
    prob : float
        Mass of the central interval.
    labels : tuple of str
        Names of A and B.
    """

    axis: str
    low: float
    high: float
    counts: np.ndarray
    first: np.ndarray
    a_ahead_before: np.ndarray
    locations: np.ndarray
    prob: float
    labels: tuple[str, str]

    @property
    def probability(self) -> float:
        """P(the curves cross at least once inside the range)."""
        return float(np.mean(self.counts > 0))

    @property
    def crosses(self) -> np.ndarray:
        return self.counts > 0

    def interval(self) -> dict[str, float | None]:
        """Median and central interval of the first crossing, given one; ``None`` without."""
        low_name, high_name = interval_names(self.prob)
        if not self.crosses.any():
            return {"median": None, low_name: None, high_name: None}
        located = self.first[self.crosses]
        low, median, high = np.exp(
            np.quantile(np.log(located), [(1 - self.prob) / 2, 0.5, (1 + self.prob) / 2])
        )
        return {"median": float(median), low_name: float(low), high_name: float(high)}

    def count_distribution(self) -> dict[int, float]:
        """Share of draws with 0, 1, 2, ... crossings."""
        values, numbers = np.unique(self.counts, return_counts=True)
        return {int(v): float(n / self.counts.size) for v, n in zip(values, numbers, strict=True)}

    @property
    def prob_b_overtakes(self) -> float:
        """P(a first crossing at which B overtakes A): A better before it, B after."""
        return float(np.mean(self.crosses & self.a_ahead_before))

    @property
    def prob_a_overtakes(self) -> float:
        """P(a first crossing at which A overtakes B)."""
        return float(np.mean(self.crosses & ~self.a_ahead_before))

    def to_dict(self) -> dict[str, Any]:
        """``{"probability", "median", "q05", "q95"}``, as ``bayescale compare --json`` prints."""
        return {"probability": self.probability, **self.interval()}

    def summary(self) -> str:
        """The crossover in one or two sentences."""
        a, b = self.labels
        span = f"{self.axis} = {self.low:.3g} and {self.high:.3g}"
        if not self.crosses.any():
            return f"The curves of {a} and {b} do not cross between {span} in any posterior draw."
        interval = self.interval()
        low_name, high_name = interval_names(self.prob)
        text = (
            f"The curves of {a} and {b} cross between {span} with probability "
            f"{probability_text(self.probability, self.counts.size)}; given a crossing, the "
            f"first one lies at {self.axis} = "
            f"{interval['median']:.3g} ({self.prob:.0%} interval {interval[low_name]:.3g} to "
            f"{interval[high_name]:.3g})."
        )
        direction = (
            f" {b} overtakes {a} at it with probability {self.prob_b_overtakes:.2f}, "
            f"{a} overtakes {b} with probability {self.prob_a_overtakes:.2f}."
        )
        several = float(np.mean(self.counts > 1))
        extra = f" {several:.0%} of draws cross more than once." if several >= 0.005 else ""
        return text + direction + extra


def find_crossings(
    grid: np.ndarray, advantage: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sign changes of ``advantage`` (shape ``(samples, points)``) along a positive ``grid``.

    Returns
    -------
    counts : ndarray of int, shape (samples,)
        Number of sign changes per draw.
    first : ndarray, shape (samples,)
        Location of the first change (``nan`` without one), interpolated linearly in
        ``log(grid)``.
    a_ahead_before : ndarray of bool, shape (samples,)
        Whether ``advantage`` was positive just before the first change.
    locations : ndarray
        All crossing locations of all draws.

    Examples
    --------
    >>> grid = np.array([1.0, 10.0, 100.0, 1000.0])
    >>> counts, first, before, every = find_crossings(grid, np.array([[1.0, -1.0, -2.0, 1.0]]))
    >>> int(counts[0]), float(first[0]), bool(before[0]), np.round(every, 3).tolist()
    (2, 3.1622776601683795, True, [3.162, 464.159])
    """
    advantage = np.asarray(advantage, dtype=float)
    log_grid = np.log(np.asarray(grid, dtype=float))
    ahead = advantage > 0
    flips = ahead[:, 1:] != ahead[:, :-1]
    counts = flips.sum(axis=1)
    rows, cols = np.nonzero(flips)
    left, right = advantage[rows, cols], advantage[rows, cols + 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(left != right, left / (left - right), 0.5)
    share = np.clip(share, 0.0, 1.0)
    log_location = log_grid[cols] + share * (log_grid[cols + 1] - log_grid[cols])
    locations = np.exp(log_location)
    first = np.full(advantage.shape[0], np.nan)
    a_ahead_before = np.zeros(advantage.shape[0], dtype=bool)
    # np.nonzero walks row by row, left to right: the first entry of each row is its first flip
    is_first = np.ones(rows.size, dtype=bool)
    is_first[1:] = rows[1:] != rows[:-1]
    first[rows[is_first]] = locations[is_first]
    a_ahead_before[rows[is_first]] = ahead[rows[is_first], cols[is_first]]
    return counts, first, a_ahead_before, locations


# ---------------------------------------------------------------------------- comparison
@dataclass(frozen=True, eq=False)
class Comparison:
    """Two fitted curves along one scale axis, draw by draw.

    Attributes
    ----------
    axis : Axis
    grid : ndarray, shape (points,)
        Log-spaced values of the axis.
    curve_a, curve_b : ndarray, shape (samples, points)
        Paired posterior draws of the law's mean of A and of B along the grid.
    better : str
        ``"lower"`` or ``"higher"``: which direction of the outcome is better.
    outcome : str
        Name of the outcome (``loss``, ``error``, ...).
    labels : tuple of str
        Names of A and B in sentences and tables.
    prob : float
        Mass of the central intervals.
    target : float or None
        The scale the one-line answer is about.
    target_a, target_b : ndarray or None, shape (samples,)
        Paired draws at the target.
    pairing : str
        How the draws of A and B were paired (recorded in reports).
    points_a, points_b : pandas.DataFrame
        The inputs each law was evaluated at along the grid.
    """

    axis: Axis
    grid: np.ndarray
    curve_a: np.ndarray
    curve_b: np.ndarray
    better: str
    outcome: str
    labels: tuple[str, str]
    prob: float
    target: float | None
    target_a: np.ndarray | None
    target_b: np.ndarray | None
    pairing: str
    points_a: pd.DataFrame
    points_b: pd.DataFrame

    @property
    def n_samples(self) -> int:
        return int(self.curve_a.shape[0])

    def advantage(self, a: np.ndarray | None = None, b: np.ndarray | None = None) -> np.ndarray:
        """How much better A is than B, draw by draw: ``B - A`` when lower is better, else
        ``A - B``; positive where A is better."""
        a = self.curve_a if a is None else a
        b = self.curve_b if b is None else b
        return b - a if self.better == "lower" else a - b

    @property
    def difference(self) -> np.ndarray:
        """Draws of ``A - B`` along the grid, shape ``(samples, points)``."""
        return self.curve_a - self.curve_b

    @cached_property
    def prob_a_better(self) -> np.ndarray:
        """P(A better than B) at each grid point."""
        return np.mean(self.advantage() > 0, axis=0)

    @cached_property
    def crossover(self) -> Crossover:
        """Crossings of the two curves inside the range (see :class:`Crossover`)."""
        counts, first, before, locations = find_crossings(self.grid, self.advantage())
        return Crossover(
            axis=self.axis.name,
            low=self.axis.low,
            high=self.axis.high,
            counts=counts,
            first=first,
            a_ahead_before=before,
            locations=locations,
            prob=self.prob,
            labels=self.labels,
        )

    def table(self) -> pd.DataFrame:
        """Per grid point: both curves and their difference (median and central interval), and
        P(A better)."""
        low, high = (1 - self.prob) / 2, (1 + self.prob) / 2
        low_name, high_name = interval_names(self.prob)
        out = pd.DataFrame({self.axis.name: self.grid})
        for label, values in (("a", self.curve_a), ("b", self.curve_b), ("diff", self.difference)):
            q = np.quantile(values, [low, 0.5, high], axis=0)
            out[f"{label}_median"] = q[1]
            out[f"{label}_{low_name}"] = q[0]
            out[f"{label}_{high_name}"] = q[2]
        out["prob_a_better"] = self.prob_a_better
        return out

    def at_target(self) -> dict[str, float] | None:
        """At the target scale: P(A better), and the difference ``A - B`` (median, interval)."""
        if self.target is None:
            return None
        low_name, high_name = interval_names(self.prob)
        difference = self.target_a - self.target_b
        low, median, high = np.quantile(difference, [(1 - self.prob) / 2, 0.5, (1 + self.prob) / 2])
        advantage = self.advantage(self.target_a, self.target_b)
        return {
            "x": self.target,
            "p": float(np.mean(advantage > 0)),
            "a_median": float(np.median(self.target_a)),
            "b_median": float(np.median(self.target_b)),
            "difference_median": float(median),
            f"difference_{low_name}": float(low),
            f"difference_{high_name}": float(high),
        }

    def answer(self) -> str:
        """The one-line answer at the target scale (or over the range without a target)."""
        a, b = self.labels
        comparative = "lower" if self.better == "lower" else "higher"
        if self.target is None:
            share = float(np.mean(self.prob_a_better > 0.5))
            return (
                f"Without a target scale: {a} is more likely than not to have {comparative} "
                f"{self.outcome} than {b} on {share:.0%} of {self.axis.name} = "
                f"{self.axis.low:.3g} to {self.axis.high:.3g} (give at= for a decision)."
            )
        result = self.at_target()
        low_name, high_name = interval_names(self.prob)
        p = result["p"]
        winner, loser, p_win = (a, b, p) if p >= 0.5 else (b, a, 1.0 - p)
        return (
            f"At {self.axis.name} = {self.target:.3g}, {winner} has {comparative} "
            f"{self.outcome} than {loser} with probability "
            f"{probability_text(p_win, self.n_samples)} ({self.outcome} "
            f"{a} {result['a_median']:.4g} vs {b} {result['b_median']:.4g}; difference "
            f"{a} - {b} {result['difference_median']:+.3g}, {self.prob:.0%} interval "
            f"[{result[f'difference_{low_name}']:+.3g}, {result[f'difference_{high_name}']:+.3g}])."
        )

    def to_dict(self, points: int | None = 25) -> dict[str, Any]:
        """The JSON printed by ``bayescale compare --json``.

        ``{"prob_a_better": [{"x", "p"}, ...], "crossover": {"probability", "median", "q05",
        "q95"}}``, plus ``"at"`` (``{"x", "p", ...}`` and the sentence) when a target was given.
        ``points`` grid points are listed (evenly spaced in log scale, taken from the grid; all of
        them with ``None``).
        """
        size = self.grid.size
        index = (
            np.arange(size)
            if points is None or points >= size
            else np.unique(np.round(np.linspace(0, size - 1, max(points, 2))).astype(int))
        )
        out: dict[str, Any] = {
            "prob_a_better": [
                {"x": float(self.grid[i]), "p": float(self.prob_a_better[i])} for i in index
            ],
            "crossover": self.crossover.to_dict(),
        }
        if self.target is not None:
            out["at"] = {**self.at_target(), "answer": self.answer()}
        return out

    def summary(self) -> str:
        """A few lines for people: the answer, the crossover, how draws were paired."""
        a, b = self.labels
        lines = [
            f"{a} vs {b}: {self.outcome} along {self.axis.name} = {self.axis.low:.3g} to "
            f"{self.axis.high:.3g} ({self.better} is better; {self.n_samples} paired draws)",
            self.answer(),
            self.crossover.summary(),
            "crossings per draw: "
            + ", ".join(f"{k}: {v:.0%}" for k, v in self.crossover.count_distribution().items()),
            f"pairing: {self.pairing}",
        ]
        return "\n".join(lines)


# ---------------------------------------------------------------------------- entry points
def compare(
    fit_a: Fit,
    fit_b: Fit,
    over: str | tuple | Mapping | Axis,
    *,
    at: float | str | Mapping | None = None,
    fixed: Path | None = None,
    fixed_a: Path | None = None,
    fixed_b: Path | None = None,
    tokens_per_parameter: float | None = None,
    flops_per_parameter_token: float = 6.0,
    labels: tuple[str, str] = ("A", "B"),
    prob: float = 0.9,
    grid: int = DEFAULT_GRID,
) -> Comparison:
    """Compare two fits along a scale axis: P(A better than B), the difference, crossovers.

    Parameters
    ----------
    fit_a, fit_b : Fit
        Two fits with the same kind of outcome (both losses, both error rates, ...). Their laws
        and data may differ.
    over : str, tuple, mapping or Axis
        The axis and its range: ``"N=1e8:1e11"``, ``("C", 1e20, 1e26)``. The axis is an input
        of both laws, or ``"C"`` (training compute ``C = k N D``) for laws of ``N`` and ``D``
        (with ``tokens_per_parameter``) or of ``C`` and ``M``.
    at : float, str or mapping, optional
        Target scale of the one-line answer, ``"C=1e24"`` or a number.
    fixed : mapping, optional
        Values for the other inputs of both laws (and group labels, covariates): a constant, or
        a function of the axis values (a NumPy array) for inputs that move with it, e.g.
        ``{"D": lambda n: 20 * n}``. ``fixed_a`` and ``fixed_b`` add to or override it for one
        fit (for instance to map the axis onto an input of another name:
        ``fixed_b={"x": lambda c: c}``).
    tokens_per_parameter : float, optional
        For ``over="C=..."`` with laws of ``N`` and ``D``: follow ``D = r N`` along ``C = k N D``,
        so ``N = sqrt(C / (k r))``. For laws of ``C`` and ``M`` it sets ``M = r``.
    flops_per_parameter_token : float
        ``k`` in ``C = k N D``.
    labels : tuple of str
        Names of A and B in sentences, tables and reports.
    prob : float
        Mass of the central intervals.
    grid : int
        Points of the log-spaced grid (crossing detection resolution).

    Returns
    -------
    Comparison

    Raises
    ------
    SettingsError
        For a malformed axis, target or an outcome mismatch.
    DataError
        For an input that the path does not give, or a bad value along it.

    Notes
    -----
    The two posteriors are independent; draws are paired by index after thinning the larger
    set evenly to the size of the smaller (see the module documentation).

    Examples
    --------
    >>> result = compare(fit_a, fit_b, over="N=1e8:1e12", at="N=7e10",
    ...                  fixed={"D": lambda n: 20 * n})  # doctest: +SKIP
    >>> print(result.summary())  # doctest: +SKIP
    """
    axis = Axis.parse(over)
    target = parse_target(at, axis)
    _check_prob(prob)
    _check_outcomes(fit_a, fit_b)
    values = axis.grid(grid)
    options = {"tokens_per_parameter": tokens_per_parameter, "k": flops_per_parameter_token}
    path_a = {**dict(fixed or {}), **dict(fixed_a or {})}
    path_b = {**dict(fixed or {}), **dict(fixed_b or {})}
    points_a = path_points(fit_a, axis.name, values, path_a, **options)
    points_b = path_points(fit_b, axis.name, values, path_b, **options)
    index_a, index_b, pairing = _pair(fit_a, fit_b)
    curve_a = _curve(fit_a, points_a, prob)[index_a]
    curve_b = _curve(fit_b, points_b, prob)[index_b]
    target_a = target_b = None
    if target is not None:
        at_value = np.array([target])
        target_a = _curve(fit_a, path_points(fit_a, axis.name, at_value, path_a, **options), prob)
        target_b = _curve(fit_b, path_points(fit_b, axis.name, at_value, path_b, **options), prob)
        target_a, target_b = target_a[index_a, 0], target_b[index_b, 0]
    return Comparison(
        axis=axis,
        grid=values,
        curve_a=curve_a,
        curve_b=curve_b,
        better=fit_a.law.better,
        outcome=fit_a.outcome,
        labels=_labels(labels),
        prob=prob,
        target=target,
        target_a=target_a,
        target_b=target_b,
        pairing=pairing,
        points_a=points_a,
        points_b=points_b,
    )


def compare_groups(
    fit: Fit,
    column: str,
    label_a: str,
    label_b: str,
    over: str | tuple | Mapping | Axis,
    *,
    at: float | str | Mapping | None = None,
    fixed: Path | None = None,
    tokens_per_parameter: float | None = None,
    flops_per_parameter_token: float = 6.0,
    prob: float = 0.9,
    grid: int = DEFAULT_GRID,
) -> Comparison:
    """Compare two groups of one hierarchical fit along a scale axis.

    The two curves are evaluated on the same posterior draws, so the comparison keeps the
    correlation between groups (parameters they share cancel in the difference).

    Parameters
    ----------
    fit : Fit
        A fit that pools at least one parameter over ``column``.
    column : str
        The group column.
    label_a, label_b : str
        The two groups, as labelled in the data.
    over, at, fixed, tokens_per_parameter, flops_per_parameter_token, prob, grid
        As in :func:`compare`; ``fixed`` must give labels for any other group column.

    Returns
    -------
    Comparison

    Examples
    --------
    >>> result = compare_groups(fit, "dataset", "LAION-2B", "WIT",
    ...                         over="x=1e9:1e13", at="x=1e12")  # doctest: +SKIP
    """
    if column not in fit.spec.group_columns:
        pooled = ", ".join(fit.spec.group_columns) or "none"
        raise SettingsError(f"the fit does not pool over {column!r}; its group columns: {pooled}")
    labels = fit.group_labels(column)
    for label in (label_a, label_b):
        if label not in labels:
            raise DataError(f"group {column} has no label {label!r}; labels: {', '.join(labels)}")
    if label_a == label_b:
        raise SettingsError(f"compare two different groups, got {label_a!r} twice")
    axis = Axis.parse(over)
    target = parse_target(at, axis)
    _check_prob(prob)
    values = axis.grid(grid)
    options = {"tokens_per_parameter": tokens_per_parameter, "k": flops_per_parameter_token}
    common = dict(fixed or {})
    if column in common:
        raise SettingsError(f"{column!r} is the compared group column; do not fix it")
    path_a, path_b = {**common, column: label_a}, {**common, column: label_b}
    points_a = path_points(fit, axis.name, values, path_a, **options)
    points_b = path_points(fit, axis.name, values, path_b, **options)
    curve_a = _curve(fit, points_a, prob)
    curve_b = _curve(fit, points_b, prob)
    target_a = target_b = None
    if target is not None:
        at_value = np.array([target])
        target_a = _curve(fit, path_points(fit, axis.name, at_value, path_a, **options), prob)
        target_b = _curve(fit, path_points(fit, axis.name, at_value, path_b, **options), prob)
        target_a, target_b = target_a[:, 0], target_b[:, 0]
    return Comparison(
        axis=axis,
        grid=values,
        curve_a=curve_a,
        curve_b=curve_b,
        better=fit.law.better,
        outcome=fit.outcome,
        labels=(str(label_a), str(label_b)),
        prob=prob,
        target=target,
        target_a=target_a,
        target_b=target_b,
        pairing=(
            f"two groups of one fit: the same {curve_a.shape[0]} posterior draws for both "
            "(joint draws; shared parameters cancel)"
        ),
        points_a=points_a,
        points_b=points_b,
    )


# ---------------------------------------------------------------------------- helpers
def _check_prob(prob: float) -> None:
    if not 0 < prob < 1:
        raise SettingsError(f"prob must lie in (0, 1), got {prob}")


def _labels(labels) -> tuple[str, str]:
    if isinstance(labels, str) or len(labels) != 2:
        raise SettingsError(f"labels must be two names, got {labels!r}")
    a, b = (str(v) for v in labels)
    if a == b:
        raise SettingsError(f"the two labels must differ, got {a!r} twice")
    return a, b


def _check_outcomes(fit_a: Fit, fit_b: Fit) -> None:
    kind_a, kind_b = fit_a.law.outcome, fit_b.law.outcome
    if kind_a != kind_b:
        raise SettingsError(
            f"cannot compare a fit of {kind_a} ({fit_a.law.name}) with one of {kind_b} "
            f"({fit_b.law.name}): the outcomes must be of the same kind"
        )


def _pair(fit_a: Fit, fit_b: Fit) -> tuple[np.ndarray, np.ndarray, str]:
    """Indices into the flattened draws of A and B that pair them one to one."""
    size_a, size_b = _n_samples(fit_a), _n_samples(fit_b)
    if fit_a is fit_b:
        index = np.arange(size_a)
        return index, index, f"the same fit on both sides: {size_a} joint draws"
    size = min(size_a, size_b)
    index_a, index_b = _thin(size_a, size), _thin(size_b, size)
    text = f"independent posteriors, draws paired by index ({size} pairs" + (
        f"; the larger set thinned evenly from {max(size_a, size_b)})" if size_a != size_b else ")"
    )
    return index_a, index_b, text


def _thin(size: int, target: int) -> np.ndarray:
    if size == target:
        return np.arange(size)
    return np.floor(np.arange(target) * (size / target)).astype(np.int64)


def _n_samples(fit: Fit) -> int:
    return int(fit.sampler["chains"]) * int(fit.sampler["draws"])


def _curve(fit: Fit, points: pd.DataFrame, prob: float) -> np.ndarray:
    """Draws of the law's mean at ``points``, shape ``(samples, points)`` (the core's forecast)."""
    curve = fit.forecast(points, prob=prob).curve
    return curve.reshape(-1, curve.shape[-1])


def path_points(
    fit: Fit,
    axis: str,
    values: np.ndarray,
    path: Mapping,
    *,
    tokens_per_parameter: float | None,
    k: float,
) -> pd.DataFrame:
    """The inputs (and labels, covariates) of ``fit``'s law at each value of the axis."""
    inputs = fit.law.input_names
    compute_split = axis == "C" and axis not in inputs and {"N", "D"} <= set(inputs)
    if axis in path:
        raise SettingsError(f"{axis!r} is the axis; it cannot also be given in fixed=")
    columns: dict[str, Any] = {}
    if axis in inputs:
        columns[axis] = values
    if tokens_per_parameter is not None:
        ratio = _positive(tokens_per_parameter, "tokens_per_parameter")
        if compute_split:
            n = np.sqrt(values / (_positive(k, "flops_per_parameter_token") * ratio))
            columns["N"], columns["D"] = n, ratio * n
        elif "M" in inputs:
            columns["M"] = np.full(values.shape, ratio)
        else:
            raise SettingsError(
                f"tokens_per_parameter applies to a compute axis C over a law of N and D, or to "
                f"a law of C and M; law {fit.law.name!r} has inputs {', '.join(inputs)}"
            )
    for name, value in path.items():
        if name in columns:
            raise SettingsError(
                f"{name!r} is already set by the axis and tokens_per_parameter; do not fix it"
            )
        columns[name] = value(values) if callable(value) else value
        if callable(value) and np.shape(columns[name]) != values.shape:
            raise SettingsError(
                f"the function given for {name!r} must return one value per value of {axis}"
            )
    group_columns = fit.spec.group_columns
    known = [*inputs, *group_columns, *fit.spec.covariate_columns]
    unknown = [name for name in columns if name not in known]
    if unknown:
        raise SettingsError(
            f"law {fit.law.name!r} has no input {unknown[0]!r}; it takes {', '.join(known)}"
        )
    missing = [name for name in known if name not in columns]
    if missing:
        hint = (
            "; or give tokens_per_parameter (D = r N on C = k N D)"
            if compute_split and missing[0] in ("N", "D")
            else ""
        )
        what = "group label" if missing[0] in group_columns else "value"
        raise SettingsError(
            f"along the axis {axis!r}, law {fit.law.name!r} needs a {what} for "
            f"{missing[0]!r}: give it in fixed= (a constant or a function of {axis}){hint}"
        )
    return pd.DataFrame({name: _broadcast(value, values.shape) for name, value in columns.items()})


def _broadcast(value, shape) -> np.ndarray | list:
    if isinstance(value, str):
        return [value] * shape[0]
    return np.broadcast_to(np.asarray(value), shape)


def _positive(value, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SettingsError(f"{name} must be a positive number, got {value!r}") from None
    if not (math.isfinite(number) and number > 0):
        raise SettingsError(f"{name} must be a positive number, got {value!r}")
    return number
