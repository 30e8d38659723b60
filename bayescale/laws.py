"""Scaling laws: declarative definitions and the built-in catalog.

A :class:`Law` is data: its inputs, its parameters (each with a support and a default prior), a
mean function, the kind of outcome it predicts and the paper it comes from. The built-in laws live
in the top-level ``models/`` folder of the repository, one TOML file per law, and are shipped inside
the wheel; :func:`catalog` reads them. A user can also define a law from a formula string
(:meth:`Law.from_formula`, parsed safely) or from a Python function (:meth:`Law.from_function`).

Examples
--------
>>> law = get_law("chinchilla")
>>> law.formula_text
'E + A / N^alpha + B / D^beta'
>>> [p.name for p in law.parameters]
['E', 'A', 'B', 'alpha', 'beta']
>>> custom = Law.from_formula(
...     "my_law", "L0 + (x0 / x)^k",
...     inputs=["x"],
...     parameters={"L0": "LogNormal(0, 1)", "x0": "LogNormal(10, 5)", "k": "LogNormal(-1, 1)"},
... )
>>> custom.outcome
'loss'
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import keyword
import math
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from bayescale.errors import FormulaError, LawError, PriorError
from bayescale.formula import NUMPY_OPS, RESERVED_NAMES, Formula, parse_formula
from bayescale.priors import POSITIVE, Prior, Support

OUTCOMES: dict[str, dict[str, Any]] = {
    "loss": {"low": 0.0, "high": math.inf, "closed": (False, False), "better": "lower"},
    "error": {"low": 0.0, "high": 1.0, "closed": (False, True), "better": "lower"},
    "accuracy": {"low": 0.0, "high": 1.0, "closed": (True, True), "better": "higher"},
}
"""Outcome kinds: their support (bounds and which ends are allowed) and which direction is better.

``loss`` is any positive number (cross-entropy, perplexity, bits per byte); ``error`` is an error
rate in (0, 1]; ``accuracy`` is a proportion in [0, 1].
"""

REFERENCE_KINDS = ("coefficient", "scale")

ANCHOR_PLACEHOLDER = Prior.parse("Fixed(1)")
"""The prior an anchor parameter carries until :meth:`bayescale.model.ModelSpec.anchored` fixes it
(:class:`Parameter`); its value is never used (see :meth:`bayescale.model.ModelSpec.held_value`)."""


@dataclass(frozen=True)
class Input:
    """An input variable of a law (model size, tokens, compute, ...)."""

    name: str
    description: str = ""
    support: Support = POSITIVE


@dataclass(frozen=True)
class Reference:
    """How a parameter is re-expressed at a reference scale for sampling.

    Scaling-law coefficients defined at input = 1 (``A`` in ``A / N^alpha``) are extremely
    correlated with their exponent, because the data sit many orders of magnitude away from
    N = 1. The sampler therefore works with the log of the term's value at a reference input
    ``x_ref`` inside the data (the geometric mean), and the parameter is recovered exactly:

    * ``kind = "coefficient"``: the term is ``theta * x^(-e)``;
      ``u = log(theta) - e * log(x_ref)``, a shear with unit Jacobian;
    * ``kind = "scale"``: the term is ``(theta / x)^e``;
      ``u = e * (log(theta) - log(x_ref))``, Jacobian ``1 / |e|``.

    ``e`` is an arithmetic expression over the law's parameters (``alpha``,
    ``alpha_N / alpha_D``). A coefficient may multiply powers of several inputs
    (``a M^eta C^-eta`` in the over-training law): ``also`` lists the other inputs and their
    exponents, and the reference term is ``theta * prod_j x_j^(-e_j)`` at every input's reference.
    The prior stays the one declared for ``theta``; only the coordinates the sampler moves in
    change.
    """

    input: str
    exponent: Formula
    kind: str = "coefficient"
    also: tuple[tuple[str, Formula], ...] = ()

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.input, *(name for name, _ in self.also))

    @property
    def exponent_names(self) -> frozenset[str]:
        """The parameters the term's exponents use."""
        return self.exponent.names.union(*(e.names for _, e in self.also))

    def log_scale(self, values: Mapping[str, Any], log_reference: Mapping[str, float], ops):
        """``sum_j e_j log(x_j,ref)``: ``log(theta) - u`` for a coefficient."""
        total = self.exponent.evaluate(values, ops=ops) * log_reference[self.input]
        for name, exponent in self.also:
            total = total + exponent.evaluate(values, ops=ops) * log_reference[name]
        return total

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "input": self.input,
            "exponent": self.exponent.text,
            "kind": self.kind,
        }
        if self.also:
            out["also"] = {name: exponent.text for name, exponent in self.also}
        return out


@dataclass(frozen=True)
class Parameter:
    """A law parameter: its support, default prior, meaning and sampling reference.

    An *anchor* (``anchor = "x"`` in a catalog entry) is not estimated: it is the scale of input
    ``x`` at which a law's other parameters are defined, fixed when the law is fitted to the
    geometric mean of ``x`` over the fitted runs (:meth:`bayescale.model.ModelSpec.anchored`), or
    to a value the user gives as a ``Fixed`` prior. Its ``prior`` is a placeholder until then.
    """

    name: str
    support: Support
    prior: Prior
    description: str = ""
    reference: Reference | None = None
    anchor: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"support": str(self.support)}
        if self.anchor is None:
            out["prior"] = str(self.prior)
        else:
            out["anchor"] = self.anchor
        if self.description:
            out["description"] = self.description
        if self.reference is not None:
            out["reference"] = self.reference.to_dict()
        return out


@dataclass(frozen=True, eq=False)
class Law:
    """A scaling law: inputs, parameters with priors, a mean function, outcome and citation.

    Construct laws with :func:`get_law` (catalog), :meth:`from_formula`, :meth:`from_function`
    or :meth:`from_dict`; the constructor checks the definition and raises
    :class:`~bayescale.errors.LawError` on any inconsistency.

    Attributes
    ----------
    name : str
        Short identifier, used on the command line (``--law chinchilla``).
    inputs : tuple of Input
        Input variables, in order.
    parameters : tuple of Parameter
        Parameters, in order.
    outcome : str
        One of :data:`OUTCOMES`.
    formula : Formula or None
        The mean function as a checked formula (``None`` for a law defined by a function).
    function : callable or None
        ``function(x, theta)`` returning the mean, for laws defined by a Python function.
    floor : str or None
        The additive irreducible parameter of a law written ``floor + sum of reference terms``
        (``E`` in Chinchilla). The sampler then moves the log of the mean at the reference scale
        and the reducible share there, which removes the curved trade-off between a floor and the
        exponents (see :mod:`bayescale.model`); checked numerically when the law is built.
    likelihood : dict
        The observation model the law's source fits with, used when a fit names none:
        ``{"name": "lognormal_mean", "priors": {"sigma": "Exponential(rate=10)"}}`` (both keys
        optional). Empty for most laws (the outcome's default observation model then applies).
    """

    name: str
    inputs: tuple[Input, ...]
    parameters: tuple[Parameter, ...]
    outcome: str = "loss"
    formula: Formula | None = None
    function: Callable[[Mapping[str, Any], Mapping[str, Any]], Any] | None = None
    function_returns_log: bool = False
    title: str = ""
    citation: str = ""
    source: str = ""
    notes: str = ""
    version: int = 1
    published: dict[str, Any] = field(default_factory=dict)
    floor: str | None = None
    likelihood: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        _validate_law(self)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_formula(
        cls,
        name: str,
        formula: str,
        *,
        inputs: Iterable[str] | Mapping[str, str | Mapping[str, Any]],
        parameters: Mapping[str, str | Prior | Mapping[str, Any]],
        outcome: str = "loss",
        title: str = "",
        citation: str = "",
        source: str = "",
        notes: str = "",
    ) -> Law:
        """Define a law from a formula string.

        Parameters
        ----------
        name : str
            Identifier of the law.
        formula : str
            The mean function, e.g. ``"E + A / N^alpha"``; see
            :func:`bayescale.formula.parse_formula`.
        inputs : list of str, or mapping
            Input names, or ``{name: description}``, or ``{name: {"description", "support"}}``.
        parameters : mapping
            ``{name: prior}`` (the support is taken from the prior: ``LogNormal`` gives a positive
            parameter) or ``{name: {"prior", "support", "description", "reference"}}``.
        outcome : str
            ``"loss"``, ``"error"`` or ``"accuracy"``.

        Returns
        -------
        Law
        """
        input_objects = _inputs_from_spec(inputs)
        parameter_objects = _parameters_from_spec(parameters)
        names = [i.name for i in input_objects] + [p.name for p in parameter_objects]
        parsed = _parse(formula, names, name)
        parameter_objects = tuple(
            _attach_reference(p, parameters[p.name], names, name) for p in parameter_objects
        )
        return cls(
            name=name,
            inputs=input_objects,
            parameters=parameter_objects,
            outcome=outcome,
            formula=parsed,
            title=title,
            citation=citation,
            source=source,
            notes=notes,
        )

    @classmethod
    def from_function(
        cls,
        name: str,
        function: Callable[[Mapping[str, Any], Mapping[str, Any]], Any],
        *,
        inputs: Iterable[str] | Mapping[str, str | Mapping[str, Any]],
        parameters: Mapping[str, str | Prior | Mapping[str, Any]],
        outcome: str = "loss",
        returns_log: bool = False,
        title: str = "",
        citation: str = "",
    ) -> Law:
        """Define a law from a Python function written with ``jax.numpy``.

        Parameters
        ----------
        function : callable
            ``function(x, theta)`` where ``x`` maps input names and ``theta`` parameter names to
            arrays that broadcast together; returns the mean outcome (or its log if
            ``returns_log``).
        inputs, parameters, outcome, title, citation
            As in :meth:`from_formula`.
        returns_log : bool
            Whether ``function`` returns the natural log of the mean (more stable for losses).

        Notes
        -----
        A fit of a function-defined law can be saved, but loading it to forecast again needs the
        same law passed to :func:`bayescale.load_fit` (code is never stored in a file).

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> law = Law.from_function(
        ...     "floor_power", lambda x, t: t["E"] + t["A"] * x["N"] ** -t["alpha"],
        ...     inputs=["N"],
        ...     parameters={"E": "LogNormal(0, 1)", "A": "LogNormal(3, 3)",
        ...                 "alpha": "LogNormal(-1, 1)"},
        ... )
        >>> law.formula is None
        True
        """
        if not callable(function):
            raise LawError(f"law {name!r}: function must be callable")
        return cls(
            name=name,
            inputs=_inputs_from_spec(inputs),
            parameters=_parameters_from_spec(parameters),
            outcome=outcome,
            function=function,
            function_returns_log=returns_log,
            title=title,
            citation=citation,
        )

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any], *, origin: str = "law definition") -> Law:
        """Build a law from its dictionary form (a catalog TOML file, or :meth:`to_dict`)."""
        known = {
            "name",
            "title",
            "version",
            "outcome",
            "formula",
            "inputs",
            "parameters",
            "citation",
            "source",
            "notes",
            "published",
            "floor",
            "likelihood",
        }
        unknown = sorted(set(spec) - known)
        if unknown:
            raise LawError(
                f"{origin}: unknown key {unknown[0]!r}; known keys: {', '.join(sorted(known))}"
            )
        for required in ("name", "formula", "inputs", "parameters"):
            if required not in spec:
                raise LawError(f"{origin}: missing key {required!r}")
        name = spec["name"]
        inputs = _inputs_from_spec(spec["inputs"], origin=origin)
        parameters = _parameters_from_spec(spec["parameters"], origin=origin)
        names = [i.name for i in inputs] + [p.name for p in parameters]
        parsed = _parse(spec["formula"], names, name)
        parameters = tuple(
            _attach_reference(p, spec["parameters"][p.name], names, name) for p in parameters
        )
        return cls(
            name=name,
            inputs=inputs,
            parameters=parameters,
            outcome=spec.get("outcome", "loss"),
            formula=parsed,
            title=spec.get("title", ""),
            citation=spec.get("citation", ""),
            source=spec.get("source", ""),
            notes=spec.get("notes", ""),
            version=int(spec.get("version", 1)),
            published=dict(spec.get("published", {})),
            floor=spec.get("floor"),
            likelihood=dict(spec.get("likelihood", {})),
        )

    def to_dict(self) -> dict[str, Any]:
        """The law as a dictionary of plain values (the catalog file's schema).

        Raises
        ------
        LawError
            For a law defined by a Python function, which has no textual form.
        """
        if self.formula is None:
            raise LawError(
                f"law {self.name!r} is defined by a Python function and has no text form"
            )
        out: dict[str, Any] = {
            "name": self.name,
            "title": self.title,
            "version": self.version,
            "outcome": self.outcome,
            "formula": self.formula.text,
            "inputs": {
                i.name: {"description": i.description, "support": str(i.support)}
                for i in self.inputs
            },
            "parameters": {p.name: p.to_dict() for p in self.parameters},
            "citation": self.citation,
            "source": self.source,
            "notes": self.notes,
        }
        if self.floor is not None:
            out["floor"] = self.floor
        if self.published:
            out["published"] = self.published
        if self.likelihood:
            out["likelihood"] = self.likelihood
        return out

    # ------------------------------------------------------------------ accessors
    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.inputs)

    @property
    def parameter_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    @property
    def formula_text(self) -> str:
        """The formula as text, or a description of the Python function."""
        if self.formula is not None:
            return self.formula.text
        return f"<python function {getattr(self.function, '__qualname__', 'anonymous')}>"

    @property
    def better(self) -> str:
        """``"lower"`` or ``"higher"``: which direction of the outcome is better."""
        return OUTCOMES[self.outcome]["better"]

    def anchor_values(self, inputs: Mapping[str, Any]) -> dict[str, float]:
        """Each anchor's value for runs with these ``inputs``: the geometric mean of its input.

        Examples
        --------
        >>> values = get_law("anchored_power_law").anchor_values({"x": [1e6, 1e8]})
        >>> {name: round(value) for name, value in values.items()}  # sqrt(1e6 * 1e8)
        {'x_ref': 10000000}
        """
        return {
            p.name: float(np.exp(np.mean(np.log(np.asarray(inputs[p.anchor], dtype=float)))))
            for p in self.parameters
            if p.anchor is not None
        }

    def parameter(self, name: str) -> Parameter:
        """The parameter called ``name``; raises :class:`LawError` naming the valid ones."""
        for p in self.parameters:
            if p.name == name:
                return p
        raise LawError(
            f"law {self.name!r} has no parameter {name!r}; parameters: "
            f"{', '.join(self.parameter_names)}" + _did_you_mean(name, self.parameter_names)
        )

    # ------------------------------------------------------------------ evaluation
    def mean(self, x: Mapping[str, Any], theta: Mapping[str, Any], ops=None):
        """The law's mean outcome at inputs ``x`` for parameter values ``theta``.

        Arrays broadcast, so ``theta`` may hold posterior draws and ``x`` many points.
        ``ops`` chooses the array library (JAX by default; see :mod:`bayescale.formula`).
        """
        if self.function is not None:
            value = self.function(x, theta)
            if self.function_returns_log:
                from bayescale.formula import jax_ops

                return (ops or jax_ops()).exp(value)
            return value
        return self.formula.evaluate({**x, **theta}, ops=ops)

    def log_mean(self, x: Mapping[str, Any], theta: Mapping[str, Any], log_theta=None, ops=None):
        """The natural log of :meth:`mean`, computed in log space where the formula allows.

        ``log_theta`` may give logs already known for positive parameters, which avoids an
        ``exp`` followed by a ``log``.
        """
        if self.function is not None:
            value = self.function(x, theta)
            if self.function_returns_log:
                return value
            from bayescale.formula import jax_ops

            return (ops or jax_ops()).log(value)
        positive = {i.name for i in self.inputs if i.support.low >= 0}
        positive |= {p.name for p in self.parameters if p.support.low >= 0}
        return self.formula.evaluate_log({**x, **theta}, logs=log_theta, positive=positive, ops=ops)

    def __repr__(self) -> str:
        return f"Law({self.name!r}: {self.formula_text})"


# ---------------------------------------------------------------------- helpers for construction
def _check_names(where: str, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if not name.isidentifier() or keyword.iskeyword(name):
            raise LawError(f"{where}: {name!r} is not a valid name")
        if name in RESERVED_NAMES:
            raise LawError(f"{where}: {name!r} is reserved for a function or constant")
        if "__" in name or name.startswith("_"):
            raise LawError(f"{where}: {name!r}: names may not start with '_' or contain '__'")
        if name.endswith(("_pop", "_sd")):
            raise LawError(f"{where}: {name!r}: the suffixes _pop and _sd are kept for pooling")
        if name in seen:
            raise LawError(f"{where}: the name {name!r} is used twice")
        seen.add(name)


def _parse(formula: str, names: Iterable[str], law_name: str) -> Formula:
    names = list(names)
    _check_names(f"law {law_name!r}", names)
    try:
        return parse_formula(formula, names)
    except FormulaError as exc:
        raise LawError(f"law {law_name!r}: {exc}") from None


def _inputs_from_spec(spec, origin: str = "law definition") -> tuple[Input, ...]:
    if isinstance(spec, str):
        raise LawError(f"{origin}: inputs must be a list of names or a mapping, got a string")
    if not isinstance(spec, Mapping):
        return tuple(Input(str(name)) for name in spec)
    out = []
    for name, value in spec.items():
        if isinstance(value, str):
            out.append(Input(name, value))
        elif isinstance(value, Mapping):
            extra = sorted(set(value) - {"description", "support"})
            if extra:
                raise LawError(f"{origin}: input {name!r}: unknown key {extra[0]!r}")
            try:
                support = Support.parse(value.get("support", "positive"))
            except PriorError as exc:
                raise LawError(f"{origin}: input {name!r}: {exc}") from None
            out.append(Input(name, value.get("description", ""), support))
        else:
            raise LawError(f"{origin}: input {name!r} must map to a description or a table")
    return tuple(out)


def _parameters_from_spec(spec, origin: str = "law definition") -> tuple[Parameter, ...]:
    if not isinstance(spec, Mapping) or not spec:
        raise LawError(f"{origin}: parameters must be a non-empty mapping of name to prior")
    out = []
    for name, value in spec.items():
        try:
            if isinstance(value, str | Prior):
                prior = Prior.parse(value)
                support = prior.support if prior.support.kind != "point" else Support("real")
                out.append(Parameter(name, _natural_support(support), prior))
                continue
            if not isinstance(value, Mapping):
                raise LawError(f"{origin}: parameter {name!r} must map to a prior or a table")
            keys = {"support", "prior", "description", "reference", "anchor"}
            extra = sorted(set(value) - keys)
            if extra:
                raise LawError(f"{origin}: parameter {name!r}: unknown key {extra[0]!r}")
            anchor = value.get("anchor")
            if anchor is not None:
                if "prior" in value or "reference" in value:
                    raise LawError(
                        f"{origin}: parameter {name!r} is an anchor (fixed when the law is "
                        "fitted): it takes no prior and no reference"
                    )
                prior = ANCHOR_PLACEHOLDER
            elif "prior" not in value:
                raise LawError(f"{origin}: parameter {name!r} has no prior")
            else:
                prior = Prior.parse(value["prior"])
            if "support" in value:
                support = Support.parse(value["support"])
            else:
                support = _natural_support(prior.support)
            description = value.get("description", "")
            out.append(Parameter(name, support, prior, description, anchor=anchor))
        except PriorError as exc:
            raise LawError(f"{origin}: parameter {name!r}: {exc}") from None
    return tuple(out)


def _natural_support(prior_support: Support) -> Support:
    """The parameter support implied by a prior: (0, inf) for positive priors, etc."""
    if prior_support.kind in ("real", "positive", "unit"):
        return prior_support
    if prior_support.low >= 0:
        return POSITIVE
    return Support("real")


def _attach_reference(parameter: Parameter, value, names, law_name: str) -> Parameter:
    if not isinstance(value, Mapping) or "reference" not in value:
        return parameter
    ref = value["reference"]
    allowed = {"input", "exponent", "kind", "also"}
    if not isinstance(ref, Mapping) or set(ref) - allowed or "input" not in ref:
        raise LawError(
            f"law {law_name!r}: parameter {parameter.name!r}: reference must be a table with "
            "'input', 'exponent' and optionally 'kind' and 'also'"
        )
    exponent = _parse(str(ref.get("exponent", "1")), names, law_name)
    also = tuple(
        (str(name), _parse(str(text), names, law_name))
        for name, text in dict(ref.get("also", {})).items()
    )
    reference = Reference(str(ref["input"]), exponent, str(ref.get("kind", "coefficient")), also)
    return dataclasses.replace(parameter, reference=reference)


def _validate_law(law: Law) -> None:
    where = f"law {law.name!r}"
    if not isinstance(law.name, str) or not law.name.replace("-", "_").isidentifier():
        raise LawError(f"law name {law.name!r} must be an identifier (letters, digits, _ and -)")
    if law.outcome not in OUTCOMES:
        raise LawError(f"{where}: unknown outcome {law.outcome!r}; use {', '.join(OUTCOMES)}")
    if (law.formula is None) == (law.function is None):
        raise LawError(f"{where}: give exactly one of a formula and a function")
    if not law.inputs:
        raise LawError(f"{where}: a law needs at least one input")
    _check_names(where, [i.name for i in law.inputs] + [p.name for p in law.parameters])
    for p in law.parameters:
        if not p.support.contains(p.prior.support):
            raise LawError(
                f"{where}: parameter {p.name!r} must lie in {p.support}, but its prior {p.prior} "
                f"puts mass on {p.prior.support}"
            )
    _validate_likelihood(where, law.likelihood)
    if law.formula is not None:
        unused = [n for n in [*law.input_names, *law.parameter_names] if n not in law.formula.names]
        if unused:
            raise LawError(f"{where}: {unused[0]!r} is declared but not used in the formula")
    positive_inputs = [i.name for i in law.inputs if i.support.low >= 0]
    for p in law.parameters:
        if p.anchor is not None and (
            p.anchor not in positive_inputs or p.support.kind != "positive"
        ):
            raise LawError(
                f"{where}: parameter {p.name!r}: an anchor must be positive and name a positive "
                f"input (got {p.anchor!r}; positive inputs: {', '.join(positive_inputs)})"
            )
    by_name = {p.name: p for p in law.parameters}
    for p in law.parameters:
        ref = p.reference
        if ref is None:
            continue
        if ref.kind not in REFERENCE_KINDS:
            raise LawError(
                f"{where}: parameter {p.name!r}: reference kind must be one of {REFERENCE_KINDS}"
            )
        for name in ref.inputs:
            if name not in law.input_names:
                raise LawError(
                    f"{where}: parameter {p.name!r}: reference input {name!r} is not an input"
                )
        if ref.also and ref.kind != "coefficient":
            raise LawError(f"{where}: parameter {p.name!r}: 'also' needs kind = 'coefficient'")
        if p.support.kind != "positive":
            raise LawError(
                f"{where}: parameter {p.name!r}: only positive parameters can have a reference"
            )
        bad = [
            n for n in ref.exponent_names if n not in by_name or by_name[n].reference is not None
        ]
        if bad or p.name in ref.exponent_names:
            raise LawError(
                f"{where}: parameter {p.name!r}: the reference exponent may only use parameters "
                "that have no reference themselves"
            )
    if law.floor is not None:
        _check_floor(law, where)


def _check_floor(law: Law, where: str) -> None:
    """A declared floor must make the law exactly ``floor + sum of its reference terms``.

    Checked numerically at random inputs and parameter values: a reference term is
    ``theta * x^(-e)`` (coefficient) or ``(theta / x)^e`` (scale).
    """
    by_name = {p.name: p for p in law.parameters}
    if law.floor not in by_name:
        raise LawError(f"{where}: floor {law.floor!r} is not a parameter")
    floor = by_name[law.floor]
    if floor.support.kind != "positive" or floor.reference is not None:
        raise LawError(f"{where}: the floor {law.floor!r} must be positive and have no reference")
    terms = [p for p in law.parameters if p.reference is not None]
    if law.formula is None or not terms:
        raise LawError(f"{where}: a floor needs a formula law with reference terms")
    rng = np.random.default_rng(0)
    values = {i.name: 10 ** rng.uniform(-2, 6, 16) for i in law.inputs}
    values.update({p.name: rng.uniform(0.2, 2.0, 16) for p in law.parameters})
    expected = values[law.floor] + sum(_reference_term(p, values) for p in terms)
    with np.errstate(all="ignore"):
        actual = law.formula.evaluate(values, ops=NUMPY_OPS)
    if not np.allclose(actual, expected, rtol=1e-9, atol=0):
        raise LawError(
            f"{where}: with floor {law.floor!r} the formula must equal the floor plus the "
            "reference terms of its coefficients, and it does not"
        )


def _reference_term(parameter: Parameter, values: Mapping[str, Any]):
    ref = parameter.reference
    exponent = ref.exponent.evaluate(values, ops=NUMPY_OPS)
    theta, x = values[parameter.name], values[ref.input]
    if ref.kind == "scale":
        return (theta / x) ** exponent
    term = theta * x ** (-exponent)
    for name, other in ref.also:
        term = term * values[name] ** (-other.evaluate(values, ops=NUMPY_OPS))
    return term


def _validate_likelihood(where: str, likelihood: Mapping[str, Any]) -> None:
    """Check the shape of a law's default observation model (its name is checked when used)."""
    if not isinstance(likelihood, Mapping):
        raise LawError(f"{where}: likelihood must be a table with 'name' and/or 'priors'")
    extra = sorted(set(likelihood) - {"name", "priors"})
    if extra:
        raise LawError(f"{where}: likelihood: unknown key {extra[0]!r}; use 'name' and 'priors'")
    if "name" in likelihood and not isinstance(likelihood["name"], str):
        raise LawError(f"{where}: likelihood name must be a string")
    priors = likelihood.get("priors", {})
    if not isinstance(priors, Mapping):
        raise LawError(f"{where}: likelihood priors must map parameter names to priors")
    for name, text in priors.items():
        try:
            Prior.parse(text)
        except PriorError as exc:
            raise LawError(f"{where}: likelihood prior for {name!r}: {exc}") from None


def _did_you_mean(name: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# ---------------------------------------------------------------------- the catalog
def catalog_directory() -> Path:
    """Where the built-in law files are read from.

    In an installed wheel they are shipped as ``bayescale/models``; in a source checkout (or an
    editable install) they are the repository's top-level ``models/`` folder.
    """
    shipped = resources.files("bayescale").joinpath("models")
    if shipped.is_dir():
        return Path(str(shipped))
    source = Path(__file__).resolve().parent.parent / "models"
    if source.is_dir():
        return source
    raise LawError("the law catalog was not found: the bayescale installation is incomplete")


@functools.cache
def catalog() -> dict[str, Law]:
    """All built-in laws, by name, read from the catalog files (one TOML file per law)."""
    laws: dict[str, Law] = {}
    for path in sorted(catalog_directory().glob("*.toml")):
        with path.open("rb") as handle:
            try:
                spec = tomllib.load(handle)
            except tomllib.TOMLDecodeError as exc:
                raise LawError(f"catalog file {path.name}: {exc}") from None
        law = Law.from_dict(spec, origin=f"catalog file {path.name}")
        if law.name != path.stem:
            raise LawError(f"catalog file {path.name} defines law {law.name!r}; names must match")
        laws[law.name] = law
    return laws


def get_law(law: str | Law) -> Law:
    """Return a catalog law by name (or the given :class:`Law` unchanged).

    Raises
    ------
    LawError
        For an unknown name; the message lists the catalog.
    """
    if isinstance(law, Law):
        return law
    laws = catalog()
    if law not in laws:
        raise LawError(
            f"unknown law {law!r}; the catalog has: {', '.join(laws)}" + _did_you_mean(law, laws)
        )
    return laws[law]
