"""Hyperparameter-penalised scaling laws (Wadell et al. 2025, MIST).

A penalised law wraps any base law ``L(N, D, ...)`` (a :class:`~bayescale.laws.Law` with a
formula) with penalties for hyperparameters set away from their optimum:

* **learning rate** ``P_lr = c_lr (log lr - log lr*)^2`` around an optimum that moves with the
  effective batch size and the model size, ``lr* = lr_a * batch^lr_b * N^lr_c``;
* **shape** ``P_x = c_x (x - x_opt)^2`` for the feed-forward ratio ``d_ff / d_model``
  (``ff_ratio``), the head size ``d_model / n_heads`` (``kv_size``) and the aspect ratio
  ``d_model / n_layers`` (``aspect_ratio``); ``shape_form="log"`` uses
  ``c_x (log x - log x_opt)^2`` instead.

The penalties combine multiplicatively, ``L_hat = L * exp(P)`` (the default, MIST's
``geometric_penalty = true``), or additively, ``L_hat = L + P``. The result is a new
:class:`~bayescale.laws.Law` whose formula is the base formula composed with the penalty, so it
is fitted, pooled, regressed, forecast and saved like any other law (``pool=["c_lr|dataset"]``
pools the penalty's curvature over datasets).

MIST fits with the mean-corrected log-normal likelihood ``y ~ LogNormal(log L_hat - sigma^2/2,
sigma)`` and the priors of :data:`MIST_PRIORS` (converted from Julia's Distributions.jl, whose
``Exponential(theta)`` takes a *scale*, to numpyro's *rate*: MIST's ``sigma ~ Exponential(0.1)``
is ``Exponential(rate=10)`` here). Penalised laws carry that likelihood as their default.

Source: Wadell et al. (2025), arXiv:2510.18900, code github.com/BattModels/mist,
``opt/BayesianScaling/src/models.jl`` (``ShapedScaling``) and ``ppl.jl`` (``loglike_obs``) at
commit ab114ae9c6bff8407335486af3fb5a792adcf6fd.

Examples
--------
>>> law = penalise("chinchilla", shapes=["ff_ratio"])
>>> law.input_names
('N', 'D', 'lr', 'batch', 'ff_ratio')
>>> law.formula_text.split(" * exp(")[0]
'(E + A / N^alpha + B / D^beta)'
>>> law.formula_text.split(" * exp(")[1].split(" + ")[0]
'c_lr * (log(lr) - log(lr_a) - lr_b * log(batch) - lr_c * log(N))^2'
>>> optimum_expression(law)
'lr_a * batch^lr_b * N^lr_c'
"""

from __future__ import annotations

import ast
import math
import re
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from bayescale.errors import FormulaError, LawError
from bayescale.formula import parse_formula
from bayescale.laws import Law, get_law
from bayescale.priors import Prior

MIST_SOURCE = (
    "Wadell et al. (2025), github.com/BattModels/mist, opt/BayesianScaling/src/models.jl "
    "(ShapedScaling, priors and penalties) and src/ppl.jl (loglike_obs: the mean-corrected "
    "log-normal) at commit ab114ae9c6bff8407335486af3fb5a792adcf6fd"
)
MIST_CITATION = (
    "Wadell, A., Bhutani, A., Azumah, V., et al. (2025). Foundation Models for Discovery and "
    "Exploration in Chemical Space (MIST; hyperparameter-penalised Bayesian neural scaling "
    "laws). arXiv:2510.18900."
)

HORIZON_CITATION = (
    "Bjorck, J., Benhaim, A., Chaudhary, V., Wei, F., Song, X. (2025). Scaling Optimal LR Across "
    "Token Horizons. ICLR 2025, arXiv:2409.19913."
)

MIST_LIKELIHOOD: dict[str, Any] = {
    "name": "lognormal_mean",
    "priors": {"sigma": "Exponential(rate=10)"},
}
"""MIST's observation model: ``LogNormal(log L_hat - sigma^2 / 2, sigma)`` with
``sigma ~ Exponential(0.1)`` in Julia (a scale: mean 0.1), i.e. numpyro's
``Exponential(rate=10)``."""

MIST_PRIORS: dict[str, str] = {
    # Chinchilla part (HoffmanScaling priors)
    "A": "LogNormal(log(500), 2)",
    "B": "LogNormal(log(500), 2)",
    "alpha": "Uniform(0, 2)",
    "beta": "Uniform(0, 2)",
    "E": "LogNormal(log(0.01), 2)",
    # learning-rate optimum lr* = a * B_eff^b * N^c and the penalty weight
    "lr_a": "LogNormal(log(1.6e-4 / 32), 0.5)",
    "lr_b": "Normal(0.5, 0.05)",
    "lr_c": "Normal(0, 0.1)",
    "c_lr": "Exponential(rate=1)",
    # not in MIST: the optimum's exponent in the token horizon (penalise(horizon_input=...))
    "lr_d": "Normal(0, 0.25)",
    # shape optima and weights (Exponential(1.0) is the same under both conventions)
    "ff_ratio_opt": "LogNormal(log(4), 0.5)",
    "c_ff_ratio": "Exponential(rate=1)",
    "kv_size_opt": "LogNormal(log(64), 0.1)",
    "c_kv_size": "Exponential(rate=1)",
    "aspect_ratio_opt": "LogNormal(log(64), 0.1)",
    "c_aspect_ratio": "Exponential(rate=1)",
}
"""MIST's priors in numpyro's parameterisation (models.jl at the pinned commit). In Julia:
``A, B ~ LogNormal(log(500), 2)``, ``α, β ~ Uniform(0, 2)``, ``E ~ LogNormal(log(1e-2), 2)``,
``a ~ LogNormal(log(1.6e-4 / 32), 0.5)`` (reference LR: 1.6e-4 at batch 1024 under square-root
scaling), ``b ~ Normal(0.5, 0.05)``, ``c ~ Normal(0, 0.1)``, penalty weights
``Exponential(1.0)``, ``ff_ratio ~ LogNormal(log(4), 0.5)``, ``kv_size, aspect_ratio ~
LogNormal(log(64), 0.1)``."""

SHAPES: dict[str, str] = {
    "ff_ratio": "feed-forward ratio d_ff / d_model",
    "kv_size": "attention head size d_model / n_heads",
    "aspect_ratio": "aspect ratio d_model / n_layers",
}
"""The shape hyperparameters MIST penalises, with their meaning."""

COMBINATIONS = ("multiplicative", "additive")
SHAPE_FORMS = ("linear", "log")

_LR_PARAMETERS = {
    "c_lr": "curvature of the learning-rate penalty in log learning rate",
    "lr_a": "optimal learning rate at batch 1 and model size 1 (lr* = lr_a batch^lr_b N^lr_c)",
    "lr_b": "exponent of the optimal learning rate in the batch size",
    "lr_c": "exponent of the optimal learning rate in the model size",
    "lr_d": "exponent of the optimal learning rate in the training tokens (not in MIST)",
}

_OPTIMUM_SCALES = (("lr_c", "model size"), ("lr_d", "training tokens"))
"""The optimum's scale terms ``+ exponent * log(input)`` after the batch size, in order."""


def penalise(
    base: str | Law,
    *,
    learning_rate: bool = True,
    shapes: Iterable[str] = (),
    combine: str = "multiplicative",
    size_input: str | None = "auto",
    horizon_input: str | None = None,
    shape_form: str = "linear",
    asymmetric: bool = False,
    priors: Mapping[str, str] | None = None,
    likelihood: Mapping[str, Any] | None = MIST_LIKELIHOOD,
    name: str | None = None,
) -> Law:
    """Wrap a law with learning-rate and shape penalties (Wadell et al. 2025).

    Parameters
    ----------
    base : str or Law
        A catalog name or a law defined by a formula; its outcome must be a loss.
    learning_rate : bool
        Add the learning-rate penalty (inputs ``lr`` and ``batch``).
    shapes : iterable of str
        Shape penalties to add, from :data:`SHAPES` (each its own input of the same name).
    combine : {"multiplicative", "additive"}
        ``L * exp(P)`` (MIST's default) or ``L + P``.
    size_input : str or None
        Input whose value the optimal learning rate scales with (``N^lr_c``). ``"auto"`` uses
        ``N`` when the base law has it, else none; a name the base law lacks becomes a new input
        (MIST's ``lr_model_size`` option, e.g. non-embedding parameters).
    horizon_input : str or None
        Not in MIST: an input (the number of training tokens) that the optimal learning rate
        also scales with, ``lr* = lr_a batch^lr_b N^lr_c D^lr_d``: longer training wants a
        smaller learning rate (Bjorck et al. 2025, arXiv:2409.19913, fit ``lr*`` as a power law
        of the token horizon). A name the base law lacks becomes a new input. Prior of ``lr_d``:
        ``Normal(0, 0.25)`` (no effect at its centre).
    shape_form : {"linear", "log"}
        ``c (x - x_opt)^2`` (MIST's default ``harmonic_penalty``) or ``c (log x - log x_opt)^2``.
    asymmetric : bool
        Not in MIST: give the learning-rate penalty its own curvature on each side of the
        optimum, ``c_lr_low min(d, 0)^2 + c_lr_high max(d, 0)^2`` with
        ``d = log lr - log lr*`` (losses often rise slowly below the optimum and steeply above).
    priors : mapping, optional
        Overrides of the penalty parameters' default priors (:data:`MIST_PRIORS`).
    likelihood : mapping or None
        The new law's default observation model; MIST's mean-corrected log-normal by default,
        ``None`` keeps the base law's.
    name : str, optional
        Name of the new law (default ``<base>_penalised``).

    Returns
    -------
    Law

    Raises
    ------
    LawError
        For a base law without a formula, an outcome other than loss, an unknown shape, a name
        clash between the base law and the penalty's inputs or parameters, or nothing to add.

    Examples
    --------
    >>> law = penalise("power_law_floor", combine="additive")
    >>> law.input_names, law.parameter_names[-3:]
    (('x', 'lr', 'batch'), ('c_lr', 'lr_a', 'lr_b'))
    """
    base = get_law(base)
    where = f"penalise({base.name!r})"
    if base.formula is None:
        raise LawError(
            f"{where}: the base law is defined by a Python function; penalties compose formulas"
        )
    if base.outcome != "loss":
        raise LawError(
            f"{where}: penalties multiply a loss; law {base.name!r} predicts {base.outcome}"
        )
    if combine not in COMBINATIONS:
        raise LawError(
            f"{where}: combine must be one of {', '.join(COMBINATIONS)}, got {combine!r}"
        )
    if shape_form not in SHAPE_FORMS:
        raise LawError(f"{where}: shape_form must be one of {', '.join(SHAPE_FORMS)}")
    shapes = list(dict.fromkeys(shapes))
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown:
        raise LawError(f"{where}: unknown shape {unknown[0]!r}; known: {', '.join(SHAPES)}")
    if not learning_rate and not shapes:
        raise LawError(f"{where}: nothing to add (learning_rate=False and no shapes)")
    if size_input == "auto":
        size_input = "N" if "N" in base.input_names else None

    spec = base.to_dict()
    new_inputs: dict[str, dict[str, str]] = {}
    new_parameters: dict[str, dict[str, str]] = {}
    terms: list[str] = []
    overrides = dict(priors or {})

    def add_parameter(parameter: str, description: str) -> None:
        prior = overrides.pop(parameter, MIST_PRIORS.get(parameter))
        Prior.parse(prior)  # a bad override fails here, naming the problem
        new_parameters[parameter] = {"prior": str(prior), "description": description}

    if learning_rate:
        new_inputs["lr"] = {"description": "peak learning rate", "support": "positive"}
        new_inputs["batch"] = {
            "description": "effective batch size (MIST's lr_a prior assumes sequences)",
            "support": "positive",
        }
        optimum = "log(lr_a) + lr_b * log(batch)"
        scales = list(zip((size_input, horizon_input), _OPTIMUM_SCALES, strict=True))
        for scale, (exponent, meaning) in scales:
            if scale is None:
                continue
            if scale not in base.input_names:
                new_inputs[scale] = {
                    "description": f"{meaning} the optimal learning rate scales with",
                    "support": "positive",
                }
            optimum += f" + {exponent} * log({scale})"
        distance = _minus_all("log(lr)", optimum)
        if asymmetric:
            terms.append(f"c_lr_low * min({distance}, 0)^2 + c_lr_high * max({distance}, 0)^2")
        else:
            terms.append(f"c_lr * ({distance})^2")
        unused = {exponent for scale, (exponent, _) in scales if scale is None}
        for parameter, description in _LR_PARAMETERS.items():
            if parameter in unused:
                continue
            if parameter == "c_lr" and asymmetric:
                for side, where_ in (("low", "below"), ("high", "above")):
                    overrides.setdefault(f"c_lr_{side}", MIST_PRIORS["c_lr"])
                    add_parameter(f"c_lr_{side}", f"{description} {where_} the optimum")
                continue
            add_parameter(parameter, description)
    for shape in shapes:
        new_inputs[shape] = {"description": SHAPES[shape], "support": "positive"}
        if shape_form == "linear":
            terms.append(f"c_{shape} * ({shape} - {shape}_opt)^2")
        else:
            terms.append(f"c_{shape} * (log({shape}) - log({shape}_opt))^2")
        add_parameter(f"c_{shape}", f"curvature of the {SHAPES[shape]} penalty")
        add_parameter(f"{shape}_opt", f"optimal {SHAPES[shape]}")
    if overrides:
        raise LawError(
            f"{where}: prior given for {sorted(overrides)[0]!r}, which is not a penalty "
            f"parameter; penalty parameters: {', '.join(new_parameters)}"
        )
    clash = (set(new_inputs) | set(new_parameters)) & (
        set(base.input_names) | set(base.parameter_names)
    )
    if clash:
        raise LawError(
            f"{where}: the base law already uses the name {sorted(clash)[0]!r}; rename it in the "
            "base law before adding penalties"
        )
    penalty = " + ".join(terms)
    if combine == "multiplicative":
        formula = f"({base.formula.text}) * exp({penalty})"
    else:
        formula = f"({base.formula.text}) + {penalty}"
    spec["name"] = name or f"{base.name}_penalised"
    spec["title"] = f"{base.title or base.name}, with hyperparameter penalties ({combine})"
    spec["formula"] = formula
    spec["inputs"] = {**spec["inputs"], **new_inputs}
    spec["parameters"] = {**spec["parameters"], **new_parameters}
    spec["citation"] = f"{base.citation} Penalties: {MIST_CITATION}".strip()
    if horizon_input is not None:
        spec["citation"] += f" Token horizon of the optimum: {HORIZON_CITATION}"
    spec["source"] = f"Base law: {base.source} Penalties: {MIST_SOURCE}."
    form = "L * exp(P)" if combine == "multiplicative" else "L + P"
    spec["notes"] = f"{base.notes.strip()} Penalties {combine} ({form}).".strip()
    spec.pop("published", None)
    # The penalised law is no longer the floor plus reference terms alone, so the floor
    # reparameterisation of the base law does not apply to it.
    spec.pop("floor", None)
    if likelihood is not None:
        spec["likelihood"] = dict(likelihood)
    return Law.from_dict(spec, origin=where)


def mist_law(shapes: Iterable[str] = tuple(SHAPES), *, name: str = "mist", **options) -> Law:
    """The MIST law built from the Chinchilla law, as the catalog entry ``mist`` is written.

    Chinchilla's form with MIST's priors, the learning-rate penalty and the shape penalties
    (linear form), combined multiplicatively, with MIST's likelihood. With the defaults this is
    ``models/mist.toml`` (a test checks it); ``shapes=()`` gives the learning-rate-only variant
    for sweeps that do not vary the architecture. ``options`` go to :func:`penalise`.
    """
    spec = get_law("chinchilla").to_dict()
    for parameter in ("E", "A", "B", "alpha", "beta"):
        spec["parameters"][parameter]["prior"] = MIST_PRIORS[parameter]
    spec.pop("published", None)
    base = Law.from_dict(spec, origin="mist base")
    return penalise(base, shapes=list(shapes), name=name, **options)


def _minus_all(first: str, rest: str) -> str:
    """``first - a - b - c`` for ``rest = "a + b + c"`` (the terms never contain a top-level +)."""
    return " - ".join([first, *rest.split(" + ")])


# ---------------------------------------------------------------------------- formula surgery
def substitute(formula: str, replacements: Mapping[str, str], names: Iterable[str]) -> str:
    """Replace names in a formula by sub-formulas, safely (on the syntax tree, not the text).

    Parameters
    ----------
    formula : str
        A formula over ``names``.
    replacements : mapping of str to str
        ``{name: formula}``; each replacement is parsed and checked against ``names``.
    names : iterable of str
        The names the formulas may use.

    Returns
    -------
    str
        The new formula (re-checked), written with ``**`` for powers.

    Examples
    --------
    >>> substitute("c * (log(lr) - log(s))^2", {"lr": "2 * s"}, ["c", "lr", "s"])
    'c * (log(2 * s) - log(s)) ** 2'
    """
    names = list(names)
    tree = ast.parse(parse_formula(formula, names).text.replace("^", "**").strip(), mode="eval")
    parsed = {
        key: ast.parse(parse_formula(text, names).text.replace("^", "**").strip(), mode="eval").body
        for key, text in replacements.items()
    }

    class _Replace(ast.NodeTransformer):
        def visit_Name(self, node: ast.Name):
            return parsed.get(node.id, node)

    result = ast.unparse(ast.fix_missing_locations(_Replace().visit(tree)))
    try:
        parse_formula(result, names)
    except FormulaError as exc:  # pragma: no cover - replacements were checked already
        raise LawError(f"substitution produced an invalid formula: {exc}") from None
    return result


def optimum_expression(law: str | Law) -> str:
    """The formula of the optimal learning rate ``lr*`` of a penalised law.

    Raises
    ------
    LawError
        If the law has no learning-rate penalty.
    """
    law = get_law(law)
    names = set(law.parameter_names)
    has_curvature = "c_lr" in names or {"c_lr_low", "c_lr_high"} <= names
    if not (has_curvature and {"lr_a", "lr_b"} <= names) or "lr" not in law.input_names:
        raise LawError(f"law {law.name!r} has no learning-rate penalty (see penalise())")
    return "lr_a * batch^lr_b" + _scale_factors(law)


def _scale_factors(law: Law) -> str:
    """The optimum's factors beyond the batch size: ``" * N^lr_c * D^lr_d"`` (those present)."""
    factors = ""
    for exponent, _ in _OPTIMUM_SCALES:
        if exponent not in law.parameter_names:
            continue
        match = re.search(rf"{exponent} \* log\((\w+)\)", law.formula_text)
        if match is None or match.group(1) not in law.input_names:
            raise LawError(
                f"law {law.name!r}: cannot find the optimum's term '{exponent} * log(INPUT)'"
            )
        factors += f" * {match.group(1)}^{exponent}"
    return factors


# ---------------------------------------------------------------------------- derived quantities
def optimal_learning_rate(fit, at, *, prob: float = 0.9):
    """Posterior of the optimal learning rate ``lr* = lr_a batch^lr_b N^lr_c`` at given scales
    (times ``D^lr_d`` for a law with a token horizon).

    Parameters
    ----------
    fit : Fit
        A fit of a penalised law.
    at : mapping, list or DataFrame
        Points giving ``batch`` (and the model-size and horizon inputs, and a label for each
        pooled group).
    prob : float
        Mass of the central interval.

    Returns
    -------
    Derived
        ``.table()`` has the median and central interval per point.

    Warns
    -----
    UserWarning
        When the batch exponent ``lr_b`` is not identified by the data (its posterior is about as
        wide as its prior, as when every run used one batch size): the batch dependence is then
        the prior's, and an optimum at another batch size is an assumption, not a finding.
    """
    expression = optimum_expression(fit.law)
    ratio = posterior_to_prior_sd(fit, "lr_b")
    if ratio > 0.7:
        warnings.warn(
            f"lr_b is not identified by the data (posterior sd = {ratio:.2f} x prior sd): the "
            "optimum's dependence on the batch size comes from the prior; trust it only at the "
            "batch sizes of the runs",
            stacklevel=2,
        )
    return fit.derived(expression, at, prob=prob)


def optimal_batch_size(fit, at, *, prob: float = 0.9):
    """Posterior of the batch size at which a given learning rate is optimal.

    Inverts ``lr* = lr_a batch^lr_b N^lr_c`` for ``batch``: ``(lr / (lr_a N^lr_c))^(1/lr_b)``
    (with ``D^lr_d`` beside ``N^lr_c`` for a law with a token horizon).
    Identifiable only when the runs vary the batch size (see :func:`posterior_to_prior_sd`).

    Parameters
    ----------
    fit : Fit
    at : mapping, list or DataFrame
        Points giving ``lr`` and the model-size (and horizon) inputs.

    Returns
    -------
    Derived
    """
    optimum_expression(fit.law)  # checks that the law has a learning-rate penalty
    expression = f"(lr / (lr_a{_scale_factors(fit.law)}))^(1 / lr_b)"
    ratio = posterior_to_prior_sd(fit, "lr_b")
    if ratio > 0.7:
        warnings.warn(
            f"lr_b is not identified by the data (posterior sd = {ratio:.2f} x prior sd): the "
            "optimal batch size is the prior's guess, not an estimate",
            stacklevel=2,
        )
    return fit.derived(expression, at, prob=prob)


def learning_rate_cost(
    fit,
    at,
    *,
    factor: float | None = None,
    relative: bool = False,
    prob: float = 0.9,
):
    """Posterior of the loss lost by a mis-set learning rate.

    The difference ``L_hat(lr) - L_hat(lr*)`` between the law at the learning rate used and at the
    optimal one (everything else equal), draw by draw.

    Parameters
    ----------
    fit : Fit
        A fit of a penalised law.
    at : mapping, list or DataFrame
        The points: every input of the law (``lr`` too unless ``factor`` is given).
    factor : float, optional
        Use ``lr = factor * lr*`` (for example 2 for a learning rate twice too large) instead of
        the ``lr`` of each point.
    relative : bool
        Report ``L_hat(lr) / L_hat(lr*) - 1`` (for a multiplicative penalty this is
        ``exp(c_lr log(lr / lr*)^2) - 1``, the same at every scale) instead of the difference.
    prob : float
        Mass of the central interval.

    Returns
    -------
    Derived
    """
    law = fit.law
    names = [*law.input_names, *law.parameter_names]
    optimum = optimum_expression(law)
    at_optimum = substitute(law.formula_text, {"lr": f"({optimum})"}, names)
    if factor is None:
        used = law.formula_text
    else:
        if not (isinstance(factor, int | float) and math.isfinite(factor) and factor > 0):
            raise LawError(f"factor must be a positive number, got {factor!r}")
        used = substitute(law.formula_text, {"lr": f"({float(factor)!r} * ({optimum}))"}, names)
    expression = f"({used}) / ({at_optimum}) - 1" if relative else f"({used}) - ({at_optimum})"
    return fit.derived(expression, at, prob=prob)


def loss_at_optimum(fit, at, *, prob: float = 0.9):
    """Posterior of the law's loss at the optimal learning rate, ``L_hat(lr = lr*)``.

    The loss a run at the given scale would reach with its learning rate tuned, draw by draw
    (each draw at its own optimum). ``at`` gives every input except ``lr``.
    """
    law = fit.law
    names = [*law.input_names, *law.parameter_names]
    expression = substitute(law.formula_text, {"lr": f"({optimum_expression(law)})"}, names)
    return fit.derived(expression, at, prob=prob)


def posterior_to_prior_sd(fit, name: str) -> float:
    """Posterior standard deviation of a scalar parameter divided by its prior's.

    Near 1: the data say little about the parameter (its posterior is its prior); well below 1:
    the data identify it. Priors without a finite variance give ``nan``.
    """
    prior = fit.spec.priors[name]
    if prior.is_fixed:
        return 0.0
    try:
        prior_sd = float(np.sqrt(prior.to_numpyro().variance))
    except (NotImplementedError, AttributeError):
        return math.nan
    draws = fit.draws(name).ravel()
    if not np.isfinite(prior_sd) or prior_sd == 0:
        return math.nan
    return float(np.std(draws, ddof=1) / prior_sd)
