"""Priors, parameter supports and hierarchical pooling specifications.

Priors are written as short strings that read like the distribution's name and its arguments,
``"LogNormal(log(500), 2)"``, ``"HalfNormal(0.2)"``, ``"Exponential(rate=1)"``; arguments may be
constant arithmetic (parsed safely by :mod:`bayescale.formula`). Arguments follow numpyro's
conventions: ``Exponential`` and ``Gamma`` take a **rate** (Julia's Distributions.jl takes a scale,
so ``Exponential(θ)`` in Julia is ``Exponential(rate=1/θ)`` here).

A pooling specification ``"alpha|language"`` lets a parameter vary by the labels of a group column
with partial pooling (see :class:`Pooling`).

Examples
--------
>>> p = Prior.parse("LogNormal(log(500), 2)")
>>> str(p)
'LogNormal(6.214608098422191, 2)'
>>> p.support
Support('positive')
>>> Pooling.parse("alpha|language")
Pooling(parameter='alpha', group='language', sd_prior=None, centered=False, covariates=())
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from bayescale.errors import FormulaError, PriorError
from bayescale.formula import constant_value


@dataclass(frozen=True)
class Support:
    """Where a parameter (or a prior) lives: the real line, (0, inf), (0, 1) or (low, high).

    The support fixes the *link* used for partial pooling and for sampling: identity on the
    real line, ``log`` on (0, inf), ``logit`` on (0, 1) and a scaled logit on (low, high).

    Examples
    --------
    >>> Support.parse("interval(0, 2)")
    Support('interval', 0.0, 2.0)
    >>> Support.parse("positive").contains(Support.parse("interval(0, 2)"))
    True
    """

    kind: str
    low: float = -math.inf
    high: float = math.inf

    def __post_init__(self):
        bounds = {
            "real": (-math.inf, math.inf),
            "positive": (0.0, math.inf),
            "unit": (0.0, 1.0),
        }
        if self.kind in bounds:
            object.__setattr__(self, "low", bounds[self.kind][0])
            object.__setattr__(self, "high", bounds[self.kind][1])
        elif self.kind == "interval":
            if not self.low < self.high:
                raise PriorError(f"interval({self.low}, {self.high}) is empty")
        elif self.kind != "point":
            raise PriorError(
                f"unknown support {self.kind!r}; use real, positive, unit or interval(low, high)"
            )

    @classmethod
    def parse(cls, text: str | Support) -> Support:
        """Read ``real``, ``positive``, ``unit`` or ``interval(low, high)``."""
        if isinstance(text, Support):
            return text
        clean = str(text).strip()
        if clean in ("real", "positive", "unit"):
            return cls(clean)
        if clean.startswith("interval(") and clean.endswith(")"):
            parts = clean[len("interval(") : -1].split(",")
            if len(parts) == 2:
                try:
                    low, high = (constant_value(part) for part in parts)
                except FormulaError as exc:
                    raise PriorError(f"support {clean!r}: {exc}") from None
                return cls("interval", low, high)
        raise PriorError(
            f"unknown support {clean!r}; use real, positive, unit or interval(low, high)"
        )

    def __repr__(self) -> str:
        if self.kind in ("interval", "point"):
            return f"Support({self.kind!r}, {self.low}, {self.high})"
        return f"Support({self.kind!r})"

    def __str__(self) -> str:
        if self.kind == "interval":
            return f"interval({_fmt(self.low)}, {_fmt(self.high)})"
        if self.kind == "point":
            return f"point({_fmt(self.low)})"
        return self.kind

    def contains(self, other: Support) -> bool:
        """Whether every value in ``other`` is inside this support."""
        if other.kind == "point":
            return self.contains_value(other.low)
        return self.low <= other.low and other.high <= self.high

    def contains_value(self, value: float) -> bool:
        """Whether ``value`` is strictly inside this support (bounds excluded)."""
        return self.low < value < self.high

    @property
    def link_name(self) -> str:
        """Name of the link to the real line: ``identity``, ``log`` or ``logit``."""
        return {"real": "identity", "positive": "log"}.get(self.kind, "logit")

    def link(self, value, ops):
        """Map a value in the support to the real line."""
        if self.kind == "real":
            return value
        if self.kind == "positive":
            return ops.log(value)
        unit = (value - self.low) / (self.high - self.low)
        return ops.log(unit) - ops.log1p(-unit)

    def inverse_link(self, real, ops):
        """Map a real number into the support (inverse of :meth:`link`)."""
        if self.kind == "real":
            return real
        if self.kind == "positive":
            return ops.exp(real)
        return self.low + (self.high - self.low) * ops.sigmoid(real)

    def log_abs_det_inverse_link(self, real, ops):
        """``log |d inverse_link(u) / du|``, the Jacobian term of a change to the link scale."""
        if self.kind == "real":
            return 0.0 * real
        if self.kind == "positive":
            return real
        return math.log(self.high - self.low) - ops.softplus(-real) - ops.softplus(real)


REAL = Support("real")
POSITIVE = Support("positive")
UNIT = Support("unit")


@dataclass(frozen=True)
class _Family:
    arguments: tuple[str, ...]
    defaults: dict[str, float]
    support: Callable[[dict[str, float]], Support]
    check: Callable[[dict[str, float]], str | None]
    build: Callable[..., object]


def _positive_args(*names: str) -> Callable[[dict[str, float]], str | None]:
    def check(args: dict[str, float]) -> str | None:
        for name in names:
            if not args[name] > 0:
                return f"{name} must be positive, got {_fmt(args[name])}"
        return None

    return check


def _ordered(args: dict[str, float]) -> str | None:
    return None if args["low"] < args["high"] else "low must be smaller than high"


def _truncated_check(args: dict[str, float]) -> str | None:
    return _positive_args("scale")(args) or _ordered(args)


def _dist(name: str) -> Callable[..., object]:
    def build(**kwargs):
        import numpyro.distributions as dist

        return getattr(dist, name)(**kwargs)

    return build


_FAMILIES: dict[str, _Family] = {
    "Normal": _Family(
        ("loc", "scale"), {}, lambda a: REAL, _positive_args("scale"), _dist("Normal")
    ),
    "StudentT": _Family(
        ("df", "loc", "scale"),
        {},
        lambda a: REAL,
        _positive_args("df", "scale"),
        _dist("StudentT"),
    ),
    "Cauchy": _Family(
        ("loc", "scale"), {}, lambda a: REAL, _positive_args("scale"), _dist("Cauchy")
    ),
    "LogNormal": _Family(
        ("loc", "scale"), {}, lambda a: POSITIVE, _positive_args("scale"), _dist("LogNormal")
    ),
    "HalfNormal": _Family(
        ("scale",), {}, lambda a: POSITIVE, _positive_args("scale"), _dist("HalfNormal")
    ),
    "HalfCauchy": _Family(
        ("scale",), {}, lambda a: POSITIVE, _positive_args("scale"), _dist("HalfCauchy")
    ),
    "Exponential": _Family(
        ("rate",), {}, lambda a: POSITIVE, _positive_args("rate"), _dist("Exponential")
    ),
    "Gamma": _Family(
        ("concentration", "rate"),
        {},
        lambda a: POSITIVE,
        _positive_args("concentration", "rate"),
        _dist("Gamma"),
    ),
    "InverseGamma": _Family(
        ("concentration", "rate"),
        {},
        lambda a: POSITIVE,
        _positive_args("concentration", "rate"),
        _dist("InverseGamma"),
    ),
    "Beta": _Family(
        ("concentration1", "concentration0"),
        {},
        lambda a: UNIT,
        _positive_args("concentration1", "concentration0"),
        _dist("Beta"),
    ),
    "Uniform": _Family(
        ("low", "high"),
        {},
        lambda a: Support("interval", a["low"], a["high"]),
        _ordered,
        _dist("Uniform"),
    ),
    "LogUniform": _Family(
        ("low", "high"),
        {},
        lambda a: Support("interval", a["low"], a["high"]),
        lambda a: _positive_args("low")(a) or _ordered(a),
        _dist("LogUniform"),
    ),
    "TruncatedNormal": _Family(
        ("loc", "scale", "low", "high"),
        {"low": -math.inf, "high": math.inf},
        lambda a: (
            Support("interval", a["low"], a["high"])
            if math.isfinite(a["low"]) or math.isfinite(a["high"])
            else REAL
        ),
        _truncated_check,
        lambda loc, scale, low, high: _dist("TruncatedNormal")(
            loc=loc,
            scale=scale,
            # An infinite bound must be left out: numpyro would otherwise map the support
            # interval(0, inf) to the real line through a logit of x / inf, which is -inf.
            low=low if math.isfinite(low) else None,
            high=high if math.isfinite(high) else None,
        ),
    ),
    "Fixed": _Family(
        ("value",), {}, lambda a: Support("point", a["value"], a["value"]), lambda a: None, None
    ),
}

PRIOR_FAMILIES: tuple[str, ...] = tuple(_FAMILIES)
"""Names of the prior families that can be written in a prior string."""


def _checked_arguments(family: str, arguments: dict[str, float]):
    """Complete a family's arguments with defaults; return them and a problem message, if any."""
    if family not in _FAMILIES:
        return {}, f"unknown family {family!r}; known: {', '.join(PRIOR_FAMILIES)}"
    spec = _FAMILIES[family]
    full = {**spec.defaults, **arguments}
    unknown = [name for name in full if name not in spec.arguments]
    if unknown:
        return {}, f"unknown argument {unknown[0]!r}; {family} takes {', '.join(spec.arguments)}"
    missing = [name for name in spec.arguments if name not in full]
    if missing:
        return {}, f"missing argument {missing[0]!r}; {family} takes {', '.join(spec.arguments)}"
    ordered = {name: float(full[name]) for name in spec.arguments}
    return ordered, spec.check(ordered)


@dataclass(frozen=True)
class Prior:
    """A prior distribution for one parameter.

    Parameters
    ----------
    family : str
        One of :data:`PRIOR_FAMILIES`. ``Fixed(value)`` pins the parameter to a constant.
    arguments : dict of str to float
        The family's arguments by name (numpyro's parameterisation).

    Examples
    --------
    >>> Prior.parse("Exponential(rate=2)").arguments
    {'rate': 2.0}
    >>> Prior.parse("Normal(0, -1)")
    Traceback (most recent call last):
    ...
    bayescale.errors.PriorError: prior 'Normal(0, -1)': scale must be positive, got -1
    """

    family: str
    arguments: dict[str, float] = field(default_factory=dict)

    def __post_init__(self):
        ordered, problem = _checked_arguments(self.family, self.arguments)
        if problem:
            raise PriorError(f"prior {self.family}: {problem}")
        object.__setattr__(self, "arguments", ordered)

    def __hash__(self) -> int:
        return hash(str(self))

    @classmethod
    def parse(cls, text: str | Prior) -> Prior:
        """Read a prior from a string such as ``"TruncatedNormal(0.3, 0.2, low=0)"``."""
        if isinstance(text, Prior):
            return text
        if not isinstance(text, str):
            raise PriorError(f"a prior must be a string like 'Normal(0, 1)', got {text!r}")
        clean = text.strip()
        try:
            call = ast.parse(clean, mode="eval").body
        except SyntaxError:
            raise PriorError(f"prior {clean!r} is not of the form Family(arguments)") from None
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)):
            raise PriorError(f"prior {clean!r} is not of the form Family(arguments)")
        family = call.func.id
        if family not in _FAMILIES:
            raise PriorError(
                f"prior {clean!r}: unknown family {family!r}; known: {', '.join(PRIOR_FAMILIES)}"
            )
        names = _FAMILIES[family].arguments
        if len(call.args) > len(names):
            raise PriorError(f"prior {clean!r}: {family} takes at most {len(names)} arguments")
        arguments: dict[str, float] = {}
        try:
            for name, node in zip(names, call.args, strict=False):
                arguments[name] = constant_value(ast.unparse(node))
            for keyword in call.keywords:
                if keyword.arg is None:
                    raise PriorError(f"prior {clean!r}: argument unpacking is not allowed")
                if keyword.arg in arguments:
                    raise PriorError(f"prior {clean!r}: argument {keyword.arg!r} given twice")
                arguments[keyword.arg] = constant_value(ast.unparse(keyword.value))
        except FormulaError as exc:
            raise PriorError(f"prior {clean!r}: {exc}") from None
        _, problem = _checked_arguments(family, arguments)
        if problem:
            raise PriorError(f"prior {clean!r}: {problem}")
        return cls(family, arguments)

    def __str__(self) -> str:
        spec = _FAMILIES[self.family]
        parts = []
        for name in spec.arguments:
            value = self.arguments[name]
            if name in spec.defaults:
                if value != spec.defaults[name]:
                    parts.append(f"{name}={_fmt(value)}")
            elif name in ("rate",) and self.family == "Exponential":
                parts.append(f"rate={_fmt(value)}")
            else:
                parts.append(_fmt(value))
        return f"{self.family}({', '.join(parts)})"

    @property
    def support(self) -> Support:
        """The set of values the prior puts mass on."""
        return _FAMILIES[self.family].support(self.arguments)

    @property
    def is_fixed(self) -> bool:
        """Whether this is ``Fixed(value)``: the parameter is a constant, not sampled."""
        return self.family == "Fixed"

    @property
    def fixed_value(self) -> float:
        """The constant of a ``Fixed`` prior."""
        if not self.is_fixed:
            raise PriorError(f"prior {self} is not Fixed")
        return self.arguments["value"]

    def to_numpyro(self):
        """The numpyro distribution of this prior (not defined for ``Fixed``)."""
        if self.is_fixed:
            raise PriorError("a Fixed prior has no distribution")
        return _FAMILIES[self.family].build(**self.arguments)


@dataclass(frozen=True)
class Pooling:
    """Partial pooling of one parameter over the labels of a group column.

    With the parameter's support link ``g`` (log for positive parameters, logit for (0, 1),
    identity for real ones) and labels ``j = 1..K`` of the group column, the model is
    non-centred::

        g(theta[j]) = g(theta_pop) + theta_sd * z[j],   z[j] ~ Normal(0, 1)

    ``theta_pop`` (the population's typical value, on the parameter's own scale) keeps the
    parameter's prior; ``theta_sd`` (the spread between groups on the link scale) gets
    ``sd_prior`` (default ``HalfNormal(0.5)``: groups typically within a factor of e of each other
    for a positive parameter). With ``centered=True`` the group values are sampled directly
    from ``Normal(g(theta_pop), theta_sd)`` instead: the same model, a geometry that mixes better
    when every group has enough runs to pin its own value. With ``centered="auto"`` each group
    gets its own degree of centring, chosen from how much its runs say about its value (see
    Notes): for data where some groups have many runs and others one or two. With
    ``centered="conditional"`` (a coefficient of a law proportional to it, log-normal
    observations) each group value is sampled as a standard-normal deviation from its exact
    conditional posterior given everything else (see Notes).

    Parameters
    ----------
    parameter : str
        A parameter of the law (or of the observation model, such as ``sigma``).
    group : str
        The group column whose labels index the parameter.
    sd_prior : Prior, optional
        Prior of the between-group spread ``<parameter>_sd``.
    centered : bool, "auto" or "conditional"
        ``False`` (default): non-centred. ``True``: sample group values directly (centred).
        ``"auto"``: partially centred, group by group, from the curvature at the posterior mode.
        ``"conditional"``: centred on each group's conditional posterior. The last two are for
        the numpyro backend (the PyMC backend and :func:`bayescale.fit_batch` refuse them).
    covariates : tuple of str
        Group-level covariate columns (numeric, constant within each group) that shift the
        group's mean on the link scale: ``g(theta[j]) = g(theta_pop) + sum_c theta_c x[j, c]
        + theta_sd z[j]``. Coefficients are named ``<parameter>_<column>``.

    Notes
    -----
    A ``Fixed`` prior on a pooled parameter fixes its population value, and ``Fixed`` on
    ``<parameter>_sd`` its spread. With both fixed the groups are a priori independent, each with
    the prior ``g(theta[j]) ~ Normal(g(value), spread)``: every group fitted alone with the same
    prior, in one model (no pooling), which is the baseline partial pooling is compared with, and
    the safer choice when there are too few groups (a handful) to learn a spread from. Run-level
    covariates (``regress=``) still act on such a parameter.

    ``centered="auto"`` is the partially non-centred parameterisation of Papaspiliopoulos,
    Roberts & Skold (2007, Statistical Science 22(1)): group ``j`` is sampled as
    ``u[j] = w[j] m[j] + s^w[j] z[j]`` with ``g(theta[j]) = m[j] + s^(1 - w[j]) (u[j] - w[j]
    m[j])`` (``m`` the group's pooled mean, ``s`` the spread; numpyro's ``LocScaleReparam`` with
    an array of centrings), so ``w = 0`` is the non-centred and ``w = 1`` the centred form. For a
    normal group value observed with noise the choice ``w[j] = s^2 d[j] / (1 + s^2 d[j])``, with
    ``d[j]`` the precision the group's runs give its value, makes ``u[j]`` and the population
    mean a posteriori independent. There the negative log density's second derivative in the
    non-centred ``z[j]`` is ``H[j, j] = 1 + s^2 d[j]``, so ``w[j] = 1 - 1 / H[j, j]``, the
    posterior variance of ``z[j]`` taken from 1. bayescale uses that form at the mode of the
    non-centred model, with the posterior variance ``V[j, j]`` of ``z[j]`` from the inverse
    Hessian over all groups' values (population and spreads held at the mode), so that a group
    value its runs pin only jointly with its other parameters (the exponent of a one-run
    group) counts as unpinned: ``w[j] = 1 - V[j, j]``. Groups with many runs come out nearly
    centred, groups whose runs say little nearly non-centred. (Gorinova, Moore & Hoffman 2020,
    ICML, learn the same centrings by variational inference instead.) The posterior is the same
    for every choice of ``centered``.

    ``centered="conditional"`` is for a positive parameter ``theta`` of a law proportional to it
    (its mean doubles when ``theta`` doubles, as a pure power law's coefficient) under the
    ``lognormal`` or ``lognormal_mean`` observation model: there each run's log outcome is
    ``u[g] + o`` plus normal noise, with ``u[g]`` the log of its group's value (at the
    reference point when the parameter has one) and ``o`` what the rest of the model gives, so
    given everything else each group's ``u[j]`` is normal, with precision ``P[j] = 1 / s^2 +
    sum_i 1 / sigma_i^2`` and mean ``(m[j] / s^2 + sum_i r_i / sigma_i^2) / P[j]`` over the
    group's runs (``r_i`` the run's log outcome minus ``o_i``). The sampler moves ``z[j]`` with
    ``u[j] = mean + z[j] / sqrt(P[j])``; the density in ``z`` is the joint density times the
    Jacobian ``prod_j 1 / sqrt(P[j])``, so the posterior is the model's own, and ``z`` is a
    posteriori standard normal and independent of every other parameter: the group values add no
    curvature, whatever their runs say about them and whatever the spread. It goes one step
    beyond the partially centred form above: that one makes a normal group value's sampled
    coordinate independent of the population mean, this one, centred on the runs as well as on
    the population, makes it independent of every other parameter. So ``bayescale.fit`` does not
    let NUTS move ``z`` at all: the density with ``z = 0`` is the marginal posterior of the rest
    (up to a constant), NUTS samples that, and each draw then gets ``z`` drawn from the standard
    normal, an exact draw of the joint posterior with the group values integrated out of the
    sampler's geometry (``StandardisedCoordinates.held`` in ``bayescale.inference``).
    """

    parameter: str
    group: str
    sd_prior: Prior | None = None
    centered: bool | str = False
    covariates: tuple[str, ...] = ()

    DEFAULT_SD_PRIOR = "HalfNormal(0.5)"
    AUTO = "auto"
    CONDITIONAL = "conditional"

    def __post_init__(self):
        if self.centered not in (True, False, self.AUTO, self.CONDITIONAL):
            raise PriorError(
                f"pooling of {self.parameter!r}: centered must be True, False, 'auto' or "
                f"'conditional', not {self.centered!r}"
            )
        if not isinstance(self.centered, str):
            object.__setattr__(self, "centered", bool(self.centered))

    @property
    def auto_centred(self) -> bool:
        """Whether each group's centring is chosen from the data (``centered="auto"``)."""
        return self.centered == self.AUTO

    @property
    def conditionally_centred(self) -> bool:
        """Whether group values are centred on their conditional posterior
        (``centered="conditional"``)."""
        return self.centered == self.CONDITIONAL

    @property
    def fully_centred(self) -> bool:
        """Whether every group value is sampled directly (``centered=True``)."""
        return self.centered is True

    @classmethod
    def parse(cls, text: str | Pooling) -> Pooling:
        """Read ``"parameter|group"`` (non-centred)."""
        if isinstance(text, Pooling):
            return text
        usage = f"pooling {text!r} must be written 'parameter|group', e.g. 'alpha|language'"
        if not isinstance(text, str) or text.count("|") != 1:
            raise PriorError(usage)
        parameter, group = (part.strip() for part in text.split("|"))
        if not parameter or not group:
            raise PriorError(usage)
        return cls(parameter, group)

    def __str__(self) -> str:
        covariates = f" ~ {' + '.join(self.covariates)}" if self.covariates else ""
        form = {
            True: " (centred)",
            False: "",
            self.AUTO: " (centring from the data)",
            self.CONDITIONAL: " (centred on the conditional posterior)",
        }
        return f"{self.parameter}|{self.group}{covariates}{form[self.centered]}"

    def to_dict(self) -> dict[str, object]:
        return {
            "parameter": self.parameter,
            "group": self.group,
            "centered": self.centered,
            "covariates": list(self.covariates),
        }

    @classmethod
    def from_dict(cls, spec) -> Pooling:
        return cls(
            str(spec["parameter"]),
            str(spec["group"]),
            centered=spec["centered"],
            covariates=tuple(spec.get("covariates", ())),
        )

    @property
    def coefficient_names(self) -> tuple[str, ...]:
        """Names of the group-level covariate coefficients, ``<parameter>_<column>``."""
        return tuple(f"{self.parameter}_{c}" for c in self.covariates)

    @property
    def population_name(self) -> str:
        """Name of the population-level typical value, ``<parameter>_pop``."""
        return f"{self.parameter}_pop"

    @property
    def sd_name(self) -> str:
        """Name of the between-group spread, ``<parameter>_sd``."""
        return f"{self.parameter}_sd"

    @property
    def resolved_sd_prior(self) -> Prior:
        """The spread's prior, with the default filled in."""
        return self.sd_prior if self.sd_prior is not None else Prior.parse(self.DEFAULT_SD_PRIOR)


def _fmt(value: float) -> str:
    """Format a number exactly (shortest round-trip form), so printed priors can be re-read."""
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))
