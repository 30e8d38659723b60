"""The data layer: a validated table of training runs.

:func:`load_runs` reads runs from a CSV file or a pandas DataFrame, maps columns to a law's
inputs, keeps group columns as labelled categories and rejects bad input with a message that names
the row, the column and the value. Nothing downstream ever sees an unchecked number.

Examples
--------
>>> import pandas as pd
>>> frame = pd.DataFrame({"params": [1e8, 1e9, 1e10], "loss": [3.1, 2.6, 2.3]})
>>> runs = load_runs(frame, inputs=["N"], x={"N": "params"}, y="loss")
>>> runs.n_runs, runs.inputs["N"].tolist()
(3, [100000000.0, 1000000000.0, 10000000000.0])
>>> bad = pd.DataFrame({"N": [1e8, -5.0], "loss": [3.1, 2.6]})
>>> load_runs(bad, inputs=["N"], y="loss")
Traceback (most recent call last):
...
bayescale.errors.DataError: DataFrame, row 2, column 'N': value -5 is not positive ...
"""

from __future__ import annotations

import difflib
import hashlib
import math
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bayescale.errors import DataError, DuplicateRunsWarning
from bayescale.laws import OUTCOMES, Law
from bayescale.priors import POSITIVE, REAL, Support

MAX_REPORTED_DUPLICATES = 5


@dataclass(frozen=True, eq=False)
class Runs:
    """A validated table of runs.

    Attributes
    ----------
    inputs : dict of str to ndarray
        Each law input (by the law's name for it) as a float64 array, one entry per run.
    y : ndarray
        The outcome, float64.
    groups : dict of str to ndarray
        Each group column as an array of string labels.
    outcome : str
        Name of the outcome column in the source.
    outcome_kind : str
        ``loss``, ``error`` or ``accuracy`` (see :data:`bayescale.laws.OUTCOMES`).
    columns : dict of str to str
        Law input name to the source column it was read from.
    rows : ndarray of int
        1-based row number of each run in the source table (for messages and coordinates).
    source : str
        File path or ``"DataFrame"``.
    duplicates : list of tuple of int
        Sets of rows sharing the same inputs, group labels and covariates (kept as replicates).
    covariates : dict of str to ndarray
        Numeric covariate columns (for regression on parameters or on pooled means).
    trials : ndarray of int or None
        Number of trials behind each accuracy or error rate (binomial observation models).
    censoring : ndarray of int or None
        Per run: 0 exactly observed, 1 right-censored (the true outcome is at least the value
        recorded), -1 left-censored (at most the value recorded).
    """

    inputs: dict[str, np.ndarray]
    y: np.ndarray
    groups: dict[str, np.ndarray]
    outcome: str
    outcome_kind: str
    columns: dict[str, str]
    rows: np.ndarray
    source: str
    duplicates: list[tuple[int, ...]] = field(default_factory=list)
    covariates: dict[str, np.ndarray] = field(default_factory=dict)
    trials: np.ndarray | None = None
    censoring: np.ndarray | None = None

    @property
    def n_runs(self) -> int:
        return int(self.y.shape[0])

    def group_labels(self, column: str) -> list[str]:
        """The sorted distinct labels of a group column (the order of group coordinates)."""
        return sorted(set(self.groups[column].tolist()))

    def group_codes(self, column: str) -> np.ndarray:
        """Integer code of each run's label in :meth:`group_labels` order."""
        labels = self.group_labels(column)
        index = {label: code for code, label in enumerate(labels)}
        return np.array([index[v] for v in self.groups[column]], dtype=np.int64)

    def to_frame(self) -> pd.DataFrame:
        """The runs as a DataFrame with the law's input names, group columns and the outcome."""
        frame = pd.DataFrame(self.inputs)
        for column, labels in self.groups.items():
            frame[column] = labels
        for column, values in self.covariates.items():
            frame[column] = values
        if self.trials is not None:
            frame["trials"] = self.trials
        if self.censoring is not None:
            frame["censoring"] = self.censoring
        frame[self.outcome] = self.y
        frame.index = pd.Index(self.rows, name="row")
        return frame

    def sha256(self) -> str:
        """A hash of the validated values, recorded in a fit's provenance."""
        digest = hashlib.sha256()
        for name in sorted(self.inputs):
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(self.inputs[name]).tobytes())
        digest.update(self.outcome.encode())
        digest.update(np.ascontiguousarray(self.y).tobytes())
        for column in sorted(self.groups):
            digest.update(column.encode())
            digest.update("\x1f".join(self.groups[column].tolist()).encode())
        for column in sorted(self.covariates):
            digest.update(column.encode())
            digest.update(np.ascontiguousarray(self.covariates[column]).tobytes())
        for name, values in (("trials", self.trials), ("censoring", self.censoring)):
            if values is not None:
                digest.update(name.encode())
                digest.update(np.ascontiguousarray(values).tobytes())
        return digest.hexdigest()


def load_runs(
    data: str | Path | pd.DataFrame,
    *,
    y: str,
    law: Law | None = None,
    inputs: Iterable[str] | None = None,
    x: Mapping[str, str] | None = None,
    groups: Iterable[str] = (),
    outcome: str | None = None,
    covariates: Iterable[str] = (),
    trials: str | None = None,
    censored: str | None = None,
) -> Runs:
    """Read and validate a table of runs.

    Parameters
    ----------
    data : path or DataFrame
        A CSV file (with a header row) or a DataFrame.
    y : str
        The outcome column (loss, error rate or accuracy).
    law : Law, optional
        The law to be fitted; gives the input names, their supports and the outcome kind.
    inputs : list of str, optional
        Input names when no law is given (all taken as positive).
    x : mapping of str to str, optional
        ``{input: column}`` for inputs whose column has another name. Inputs not listed are read
        from the column of the same name.
    groups : list of str
        Columns holding group labels (language, data pool, model family, ...).
    outcome : str, optional
        ``loss``, ``error`` or ``accuracy``; defaults to the law's outcome, else ``loss``.
    covariates : list of str
        Numeric columns used as covariates (any finite real number).
    trials : str, optional
        Column with the number of trials behind each accuracy or error rate (positive integers),
        for the binomial observation models.
    censored : str, optional
        Column flagging censored runs: ``0``, ``false``, ``no``, ``exact`` for an exact
        observation; ``1``, ``true``, ``yes``, ``right`` when the true outcome is at least the
        recorded value (a run stopped before it got there); ``-1``, ``left`` when it is at most
        the recorded value.

    Returns
    -------
    Runs

    Raises
    ------
    DataError
        For an unreadable file, a missing column, a non-numeric, missing or infinite value, a
        non-positive input, an outcome outside its support, an empty table or an unknown input in
        ``x``. Runs sharing inputs and group labels only raise a :class:`DuplicateRunsWarning`.
    """
    if law is not None:
        input_specs = {i.name: i.support for i in law.inputs}
        outcome_kind = outcome or law.outcome
    else:
        if inputs is None:
            raise DataError("give either a law or the list of input names")
        input_specs = {name: POSITIVE for name in inputs}
        outcome_kind = outcome or "loss"
    if outcome_kind not in OUTCOMES:
        raise DataError(f"unknown outcome kind {outcome_kind!r}; use {', '.join(OUTCOMES)}")
    mapping = dict(x or {})
    unknown = [name for name in mapping if name not in input_specs]
    if unknown:
        raise DataError(
            f"--x names {unknown[0]!r}, which is not an input of the law; inputs: "
            f"{', '.join(input_specs)}"
        )
    columns = {name: mapping.get(name, name) for name in input_specs}

    frame, source, line_offset = _read(data)
    where = _Locator(source, line_offset)
    groups = list(groups)
    covariates = list(covariates)
    extras = [c for c in (trials, censored) if c is not None]
    for column in [*columns.values(), y, *groups, *covariates, *extras]:
        if column not in frame.columns:
            raise DataError(_missing_column(source, column, frame.columns))
    if len(frame) == 0:
        raise DataError(f"{source}: the table has no rows")

    values = {
        name: _numeric_column(frame, column, where, support, kind="input")
        for name, (column, support) in (
            (name, (columns[name], input_specs[name])) for name in input_specs
        )
    }
    outcome_values = _numeric_column(frame, y, where, None, kind=outcome_kind)
    labels = {column: _label_column(frame, column, where) for column in groups}
    covariate_values = {
        column: _numeric_column(frame, column, where, REAL, kind="input") for column in covariates
    }
    rows = np.arange(1, len(frame) + 1, dtype=np.int64)
    duplicates = _duplicates({**values, **covariate_values}, labels, rows, source)
    return Runs(
        inputs=values,
        y=outcome_values,
        groups=labels,
        outcome=y,
        outcome_kind=outcome_kind,
        columns=columns,
        rows=rows,
        source=source,
        duplicates=duplicates,
        covariates=covariate_values,
        trials=None if trials is None else _trials_column(frame, trials, where),
        censoring=None if censored is None else _censoring_column(frame, censored, where),
    )


@dataclass(frozen=True)
class _Locator:
    source: str
    line_offset: int | None

    def __call__(self, position: int, column: str) -> str:
        row = position + 1
        if self.line_offset is None:
            return f"{self.source}, row {row}, column {column!r}"
        return f"{self.source}, row {row} (line {row + self.line_offset}), column {column!r}"


def _read(data) -> tuple[pd.DataFrame, str, int | None]:
    if isinstance(data, pd.DataFrame):
        return data.reset_index(drop=True), "DataFrame", None
    if not isinstance(data, str | Path):
        raise DataError(f"runs must be a CSV path or a pandas DataFrame, got {type(data).__name__}")
    path = Path(data)
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"cannot read {path} as CSV: {first}") from None
    return frame, str(path), 1


def read_table(data: str | Path | pd.DataFrame) -> pd.DataFrame:
    """Read a CSV file (values kept as text, validated later) or pass a DataFrame through.

    Raises
    ------
    DataError
        If the file is missing or is not readable as CSV.
    """
    return _read(data)[0]


def _missing_column(source: str, column: str, available) -> str:
    names = [str(c) for c in available]
    message = f"{source}: column {column!r} not found; columns are: {', '.join(names)}"
    close = difflib.get_close_matches(column, names, n=1) or [
        n for n in names if n.lower() == column.lower()
    ]
    if close:
        message += f" (did you mean {close[0]!r}?)"
    return message


def _numeric_column(frame, column, where, support: Support | None, kind: str) -> np.ndarray:
    raw = frame[column]
    out = np.empty(len(raw), dtype=np.float64)
    for position, value in enumerate(raw.tolist()):
        number = _to_float(value)
        if number is None:
            if _is_missing(value):
                raise DataError(f"{where(position, column)}: value is missing")
            raise DataError(f"{where(position, column)}: value {value!r} is not a number")
        if math.isnan(number):
            raise DataError(f"{where(position, column)}: value is missing (NaN)")
        if math.isinf(number):
            raise DataError(f"{where(position, column)}: value {number} is not finite")
        out[position] = number
    if kind == "input":
        if support is not None and not _in_support(out, support):
            position = int(np.flatnonzero(~_inside(out, support))[0])
            value = out[position]
            if support.kind == "positive":
                raise DataError(
                    f"{where(position, column)}: value {_g(value)} is not positive "
                    "(model inputs must be > 0)"
                )
            raise DataError(f"{where(position, column)}: value {_g(value)} is outside {support}")
        return out
    spec = OUTCOMES[kind]
    low_ok = (out >= spec["low"]) if spec["closed"][0] else (out > spec["low"])
    high_ok = (out <= spec["high"]) if spec["closed"][1] else (out < spec["high"])
    bad = np.flatnonzero(~(low_ok & high_ok))
    if bad.size:
        position = int(bad[0])
        left = "[" if spec["closed"][0] else "("
        right = "]" if spec["closed"][1] else ")"
        high = "inf" if math.isinf(spec["high"]) else f"{spec['high']:g}"
        raise DataError(
            f"{where(position, column)}: value {_g(out[position])} is not a valid {kind} "
            f"(must lie in {left}{spec['low']:g}, {high}{right})"
        )
    return out


def _trials_column(frame, column, where) -> np.ndarray:
    values = _numeric_column(frame, column, where, POSITIVE, kind="input")
    fractional = np.flatnonzero(values != np.round(values))
    if fractional.size:
        position = int(fractional[0])
        raise DataError(
            f"{where(position, column)}: value {_g(values[position])} is not a whole number "
            "of trials"
        )
    return values.astype(np.int64)


_CENSORING_CODES = {
    **dict.fromkeys(("0", "0.0", "false", "no", "exact", "none"), 0),
    **dict.fromkeys(("1", "1.0", "true", "yes", "right"), 1),
    **dict.fromkeys(("-1", "-1.0", "left"), -1),
}


def _censoring_column(frame, column, where) -> np.ndarray:
    codes = np.zeros(len(frame), dtype=np.int8)
    for position, value in enumerate(frame[column].tolist()):
        key = str(value).strip().lower()
        if key not in _CENSORING_CODES:
            raise DataError(
                f"{where(position, column)}: censoring flag {value!r} is not one of "
                "0/false/exact, 1/true/right, -1/left"
            )
        codes[position] = _CENSORING_CODES[key]
    return codes


def _g(value: float) -> str:
    return f"{value:g}"


def _inside(values: np.ndarray, support: Support) -> np.ndarray:
    return (values > support.low) & (values < support.high)


def _in_support(values: np.ndarray, support: Support) -> bool:
    return bool(np.all(_inside(values, support)))


def _to_float(value) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | np.integer | np.floating):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _is_missing(value) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip() == "" or value.strip().lower() in ("na", "nan", "null", "none")
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _label_column(frame, column, where) -> np.ndarray:
    labels = []
    for position, value in enumerate(frame[column].tolist()):
        if _is_missing(value):
            raise DataError(f"{where(position, column)}: group label is missing")
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        labels.append(str(value).strip())
    return np.array(labels, dtype=object)


def _duplicates(values, labels, rows, source) -> list[tuple[int, ...]]:
    keys: dict[tuple, list[int]] = {}
    for i in range(len(rows)):
        key = tuple(float(v[i]) for v in values.values()) + tuple(str(labels[c][i]) for c in labels)
        keys.setdefault(key, []).append(int(rows[i]))
    duplicates = [tuple(r) for r in keys.values() if len(r) > 1]
    if duplicates:
        shown = "; ".join(
            "rows " + ", ".join(map(str, d)) for d in duplicates[:MAX_REPORTED_DUPLICATES]
        )
        more = len(duplicates) - MAX_REPORTED_DUPLICATES
        suffix = f"; and {more} more sets" if more > 0 else ""
        warnings.warn(
            f"{source}: {len(duplicates)} set(s) of runs share the same inputs and groups "
            f"({shown}{suffix}); they are kept as replicates",
            DuplicateRunsWarning,
            stacklevel=3,
        )
    return duplicates


def load_points(
    at: Mapping | Iterable[Mapping] | pd.DataFrame,
    law: Law,
    group_columns: Iterable[str] = (),
    *,
    covariates: Iterable[str] = (),
    optional: Iterable[str] = (),
    partial: bool = False,
) -> pd.DataFrame:
    """Validate the points at which to forecast: every law input, plus a label per group column.

    Parameters
    ----------
    at : mapping, list of mappings, or DataFrame
        ``{"N": 7e10, "D": 1.4e12}``, ``{"N": [1e9, 1e10], "D": [2e10, 2e11]}``,
        ``[{"N": 1e9, "D": 2e10}, ...]`` or a DataFrame with those columns.
    law : Law
    group_columns : iterable of str
        Group columns the fit pools over; each point needs a label for each.
    covariates : iterable of str
        Run-level covariate columns; each point needs a value for each.
    optional : iterable of str
        Positive numeric columns a point may give (``trials``).
    partial : bool
        Accept points that give only some of the inputs and covariates (for derived quantities
        that do not use all of them); group labels are still required.

    Returns
    -------
    pandas.DataFrame
        One row per point: float inputs and string labels.

    Raises
    ------
    DataError
        For a missing or unknown input, a bad value, or a missing label.
    """
    if isinstance(at, pd.DataFrame):
        frame = at.reset_index(drop=True)
    elif isinstance(at, Mapping):
        scalar = all(np.ndim(v) == 0 for v in at.values())
        frame = pd.DataFrame([dict(at)] if scalar else dict(at))
    else:
        frame = pd.DataFrame(list(at))
    group_columns = list(group_columns)
    covariates = list(covariates)
    optional = [c for c in optional if c in frame.columns]
    expected = [*law.input_names, *group_columns, *covariates]
    unknown = [c for c in frame.columns if c not in expected and c not in optional]
    if unknown:
        raise DataError(
            f"forecast point: unknown input {unknown[0]!r}; expected {', '.join(expected)}"
        )
    for column in expected:
        if partial and column not in group_columns and column not in frame.columns:
            continue
        if column not in frame.columns:
            what = (
                "group label"
                if column in group_columns
                else "covariate"
                if column in covariates
                else "input"
            )
            raise DataError(
                f"forecast point: {what} {column!r} is missing; expected {', '.join(expected)}"
            )
    if len(frame) == 0:
        raise DataError("no forecast points given")
    where = _Locator("forecast point", None)
    out = pd.DataFrame(index=range(len(frame)))
    for i in law.inputs:
        if i.name in frame.columns:
            out[i.name] = _numeric_column(frame, i.name, where, i.support, kind="input")
    for column in group_columns:
        out[column] = _label_column(frame, column, where)
    for column in covariates:
        if column in frame.columns:
            out[column] = _numeric_column(frame, column, where, REAL, kind="input")
    for column in optional:
        out[column] = _numeric_column(frame, column, where, POSITIVE, kind="input")
    return out
