"""Survival-style curves: the adapted power generalised Weibull family (Burke, Jones & Noufaily
2020) and the smoothly broken power law (Caballero et al. 2022).

A metric that improves with scale ``x`` (parameters, data, compute) is read as a survival curve:
the fraction of the reducible error that has *not yet* been removed at scale ``x`` is
``S(x) = exp(-H(x))``, with the cumulative hazard of the four-parameter APGW family

    ``H(x) = ph (1 + kappa) / kappa * [(1 + (aft x)^gamma / (1 + kappa))^kappa - 1]``

``aft`` (λ) is the **AFT scale**: it multiplies ``x`` itself, so a covariate on it is an
effective-scale multiplier (a horizontal shift on a log axis). ``ph`` (φ) is the **PH scale**: it
multiplies the cumulative hazard, so in the Burr XII tail ``S ~ (aft x)^(-gamma ph)`` a covariate
on it changes the *exponent*. ``gamma`` is the power shape, ``kappa`` the second shape that picks
the baseline distribution:

================  ==============================================  =========================
special case      cumulative hazard                               parameters
================  ==============================================  =========================
Weibull           ``ph (aft x)^gamma``                            ``kappa = 1``
Burr XII          ``ph log(1 + (aft x)^gamma)``                   ``kappa -> 0``
log-logistic      ``log(1 + (aft x)^gamma)``                      ``kappa -> 0, ph = 1``
Gompertz          ``ph (exp(aft x) - 1)``                         ``kappa -> inf, gamma = 1``
defective (cure)  bounded: ``H(inf) = -ph (1 + kappa) / kappa``   ``-1 < kappa < 0``
================  ==============================================  =========================

In the defective case ``S(inf) = exp(ph (1 + kappa) / kappa) > 0``: a *cure fraction*, the share
of the error that scale never removes. For Weibull the AFT and PH scales are the same thing
(``ph (aft x)^gamma``), so the named Weibull curve has one scale.

The family is evaluated in log space without cancellation: with
``u = log(1 + (aft x)^gamma / (1 + kappa)) = softplus(gamma log(aft x) - log1p(kappa))``,
``H = ph (1 + kappa) expm1(kappa u) / kappa``, which tends to ``ph u`` (Burr XII) as kappa -> 0
and to ``ph (exp((aft x)^gamma) - 1)`` as kappa -> inf. As curve shapes:

* loss-like outcomes decay from ``E + A`` to a floor ``E``: ``y(x) = E + A S(x)``; the cure law
  has no separate floor, ``y(x) = A S(x)`` with floor ``A S(inf)``;
* accuracy-like outcomes emerge between a floor and a ceiling:
  ``acc(x) = floor + (ceiling - floor) (1 - S(x))``.

Sources: Burke, Jones & Noufaily (2020), "A flexible parametric modelling framework for survival
analysis", J. R. Stat. Soc. C 69(2):429-457, arXiv:1901.03212; Caballero, Gupta, Rish & Krueger
(2023), "Broken Neural Scaling Laws", ICLR, arXiv:2210.14891.

Examples
--------
>>> import numpy as np
>>> x = np.array([0.5, 2.0])
>>> h = apgw_cumulative_hazard(x, aft=1.5, ph=0.7, gamma=1.3, kappa=1.0)
>>> np.allclose(h, 0.7 * (1.5 * x) ** 1.3)  # kappa = 1 is the Weibull
True
>>> law = survival_curve("burr")
>>> law.formula_text
'E + A * (1 + (aft * x)^gamma)^(-ph)'
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from bayescale.errors import LawError, SettingsError
from bayescale.formula import NUMPY_OPS
from bayescale.laws import Law, get_law

BURKE_CITATION = (
    "Burke, K., Jones, M. C., Noufaily, A. (2020). A flexible parametric modelling framework for "
    "survival analysis. Journal of the Royal Statistical Society C 69(2):429-457. "
    "arXiv:1901.03212."
)
CABALLERO_CITATION = (
    "Caballero, E., Gupta, K., Rish, I., Krueger, D. (2023). Broken Neural Scaling Laws. ICLR. "
    "arXiv:2210.14891."
)

APGW_HAZARD = (
    "ph * (1 + kappa) * expm1(kappa * softplus(gamma * log(aft * x) - log1p(kappa))) / kappa"
)
"""The APGW cumulative hazard as a formula over ``x``, in its stable form."""

HAZARDS: dict[str, str] = {
    "apgw": APGW_HAZARD,
    "cure": APGW_HAZARD,
    "weibull": "(aft * x)^gamma",
    "loglogistic": "log1p((aft * x)^gamma)",
    "burr": "ph * log1p((aft * x)^gamma)",
    "gompertz": "ph * expm1(aft * x)",
}
"""Cumulative hazard of each shape (the named special cases in closed form)."""

_SURVIVAL: dict[str, str] = {
    # closed forms of S(x) = exp(-H(x)) that the log-space evaluator handles best
    "weibull": "exp(-(aft * x)^gamma)",
    "loglogistic": "1 / (1 + (aft * x)^gamma)",
    "burr": "(1 + (aft * x)^gamma)^(-ph)",
}

SHAPES: tuple[str, ...] = tuple(HAZARDS)

_PARAMETER_INFO: dict[str, tuple[str, str, str]] = {
    # name: (support, default prior, description)
    "E": ("positive", "LogNormal(0, 1.5)", "floor: the loss that scale never removes"),
    "A": ("positive", "LogNormal(0, 2)", "reducible loss at scale 0 (the curve starts at E + A)"),
    "aft": (
        "positive",
        "LogNormal(log(1e-6), 10)",
        "AFT scale (lambda): multiplies x; 1 / aft is the scale where the curve turns",
    ),
    "ph": (
        "positive",
        "LogNormal(0, 1)",
        "PH scale (phi): multiplies the cumulative hazard; with gamma sets the tail exponent",
    ),
    "gamma": ("positive", "LogNormal(0, 1)", "power shape"),
    "kappa": (
        "positive",
        "LogNormal(0, 1.5)",
        "second shape: 1 Weibull, -> 0 Burr XII, -> inf Gompertz-type",
    ),
    "floor": ("unit", "Beta(1, 3)", "accuracy at small scale (chance level)"),
    "ceiling": ("unit", "Beta(3, 1)", "accuracy approached at large scale"),
}
_CURE_KAPPA = (
    "interval(-1, 0)",
    "Uniform(-1, 0)",
    "second shape in (-1, 0): a defective distribution; S(inf) = exp(ph (1 + kappa) / kappa)",
)

_SHAPE_PARAMETERS: dict[str, tuple[str, ...]] = {
    "apgw": ("aft", "ph", "gamma", "kappa"),
    "cure": ("aft", "ph", "gamma", "kappa"),
    "weibull": ("aft", "gamma"),
    "loglogistic": ("aft", "gamma"),
    "burr": ("aft", "ph", "gamma"),
    "gompertz": ("aft", "ph"),
}

_SHAPE_TITLES = {
    "apgw": "adapted power generalised Weibull (APGW)",
    "cure": "APGW with a cure fraction (defective, -1 < kappa < 0)",
    "weibull": "Weibull (APGW with kappa = 1)",
    "loglogistic": "log-logistic (APGW with kappa -> 0, ph = 1)",
    "burr": "Burr XII (APGW with kappa -> 0)",
    "gompertz": "Gompertz (APGW with kappa -> inf, gamma = 1)",
}


# ---------------------------------------------------------------------------- the family itself
def apgw_cumulative_hazard(x, aft, ph, gamma, kappa, ops=NUMPY_OPS):
    """APGW cumulative hazard ``H(x)``, stable in every regime of ``kappa > -1``.

    Exactly ``kappa = 0`` gives the Burr XII limit ``ph log(1 + (aft x)^gamma)``; arrays
    broadcast. ``ops`` chooses the array library (:data:`~bayescale.formula.NUMPY_OPS` or
    :func:`~bayescale.formula.jax_ops`).
    """
    u = _log_term(x, aft, gamma, kappa, ops)
    if ops is NUMPY_OPS:
        kappa = np.asarray(kappa, dtype=float)
        zero = kappa == 0
        safe = np.where(zero, 1.0, kappa)
        ratio = np.where(zero, u, np.expm1(safe * u) / safe)
    else:
        ratio = ops.expm1(kappa * u) / kappa
    return ph * (1 + kappa) * ratio


def apgw_hazard(x, aft, ph, gamma, kappa, ops=NUMPY_OPS):
    """APGW hazard ``h(x) = dH/dx = ph gamma aft (aft x)^(gamma-1) (1 + (aft x)^gamma /
    (1 + kappa))^(kappa - 1)``."""
    u = _log_term(x, aft, gamma, kappa, ops)
    return ph * gamma * aft * ops.power(aft * x, gamma - 1) * ops.exp((kappa - 1) * u)


def apgw_survival(x, aft, ph, gamma, kappa, ops=NUMPY_OPS):
    """``S(x) = exp(-H(x))``."""
    return ops.exp(-apgw_cumulative_hazard(x, aft, ph, gamma, kappa, ops))


def cure_fraction(ph, kappa):
    """``S(inf)``: ``exp(ph (1 + kappa) / kappa)`` for ``-1 < kappa < 0``, else 0."""
    ph, kappa = np.asarray(ph, dtype=float), np.asarray(kappa, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.exp(ph * (1 + kappa) / np.where(kappa < 0, kappa, -1.0))
    return np.where(kappa < 0, value, 0.0)


def _log_term(x, aft, gamma, kappa, ops):
    """``u = log(1 + (aft x)^gamma / (1 + kappa))`` as a softplus (no overflow)."""
    return ops.softplus(gamma * ops.log(aft * x) - ops.log1p(kappa))


# ---------------------------------------------------------------------------- laws
def hazard_formula(shape: str, x: str = "x") -> str:
    """The cumulative hazard of a shape as formula text over input ``x``."""
    _check_shape(shape)
    return HAZARDS[shape].replace("aft * x", f"aft * {x}")


def survival_curve(
    shape: str = "apgw",
    outcome: str = "loss",
    *,
    x: str = "x",
    name: str | None = None,
    priors: Mapping[str, str] | None = None,
    x_description: str = "scale: model size, data, compute or training steps",
) -> Law:
    """A scaling law whose curve is a survival function of the scale ``x``.

    Parameters
    ----------
    shape : str
        One of :data:`SHAPES`: ``apgw`` (the four-parameter family, ``kappa > 0``), ``cure``
        (``-1 < kappa < 0``, a floor set by the cure fraction), ``weibull``, ``loglogistic``,
        ``burr``, ``gompertz``.
    outcome : {"loss", "accuracy"}
        ``loss``: ``E + A S(x)`` (``A S(x)`` for ``cure``); ``accuracy``:
        ``floor + (ceiling - floor) (1 - S(x))``.
    x : str
        Name of the scale input.
    name : str, optional
        Name of the law (default ``<shape>_curve``, ``<shape>_emergence`` for accuracies).
    priors : mapping, optional
        Prior overrides by parameter name.
    x_description : str
        Meaning of the input, for the catalog.

    Returns
    -------
    Law

    Examples
    --------
    >>> survival_curve("cure").formula_text == f"A * exp(-({APGW_HAZARD}))"
    True
    >>> survival_curve("weibull", "accuracy").parameter_names
    ('floor', 'ceiling', 'aft', 'gamma')
    """
    _check_shape(shape)
    if outcome not in ("loss", "accuracy"):
        raise LawError(f"survival curves are for 'loss' or 'accuracy' outcomes, not {outcome!r}")
    if shape == "cure" and outcome == "accuracy":
        raise LawError(
            "the cure shape is for losses (its floor is the cure fraction); for an accuracy "
            "that stops below its ceiling, fit the ceiling instead"
        )
    hazard = hazard_formula(shape, x)
    if outcome == "loss":
        heads = ("A",) if shape == "cure" else ("E", "A")
        survival = _SURVIVAL.get(shape, f"exp(-({hazard}))").replace("aft * x", f"aft * {x}")
        formula = f"A * {survival}" if shape == "cure" else f"E + A * {survival}"
    else:
        heads = ("floor", "ceiling")
        formula = f"floor + (ceiling - floor) * -expm1(-({hazard}))"
    parameters: dict[str, dict[str, Any]] = {}
    for parameter in (*heads, *_SHAPE_PARAMETERS[shape]):
        support, prior, description = _PARAMETER_INFO[parameter]
        if shape == "cure" and parameter == "kappa":
            support, prior, description = _CURE_KAPPA
        parameters[parameter] = {"support": support, "prior": prior, "description": description}
    for parameter, prior in dict(priors or {}).items():
        if parameter not in parameters:
            raise LawError(
                f"prior given for {parameter!r}, which is not a parameter of the {shape} curve "
                f"({', '.join(parameters)})"
            )
        parameters[parameter]["prior"] = str(prior)
    suffix = "curve" if outcome == "loss" else "emergence"
    return Law.from_dict(
        {
            "name": name or f"{shape}_{suffix}",
            "title": f"{_SHAPE_TITLES[shape]} survival curve ({outcome})",
            "outcome": outcome,
            "formula": formula,
            "inputs": {x: {"description": x_description, "support": "positive"}},
            "parameters": parameters,
            "citation": BURKE_CITATION,
            "source": _source(shape),
        },
        origin=f"survival_curve({shape!r})",
    )


def _source(shape: str) -> str:
    if shape in ("apgw", "cure"):
        return (
            "Burke, Jones & Noufaily (2020), the adapted power generalised Weibull (APGW) "
            "cumulative hazard with AFT scale lambda (aft), PH scale phi (ph) and shapes gamma, "
            "kappa; written in the stable form ph (1 + kappa) expm1(kappa u) / kappa with "
            "u = log1p((aft x)^gamma / (1 + kappa)). The functional form and its special cases "
            "were checked algebraically and numerically (tests/test_survival.py); the paper's "
            "equation number could not be read (see docs/survival.md)."
        )
    return (
        f"Burke, Jones & Noufaily (2020): the {_SHAPE_TITLES[shape]} special case of the APGW "
        "family, in closed form."
    )


def _check_shape(shape: str) -> None:
    if shape not in HAZARDS:
        raise LawError(f"unknown survival shape {shape!r}; choose one of {', '.join(SHAPES)}")


def broken_power_law(breaks: int = 1, *, x: str = "x", name: str | None = None) -> Law:
    """The smoothly broken power law of Caballero et al. (2022) with ``breaks`` breaks.

    ``y = a + b x^(-c0) prod_i (1 + (x / d_i)^(1 / f_i))^(-c_i f_i)``: ``c0`` the initial slope,
    ``c_i`` the change of slope at break ``i``, ``d_i`` its location and ``f_i`` its sharpness.
    With ``c0 = 0`` and one break it is the Burr XII curve ``E + A (1 + (aft x)^gamma)^(-ph)``
    with ``E = a``, ``A = b``, ``aft = 1 / d1``, ``gamma = 1 / f1`` and ``ph = c1 f1``.

    Examples
    --------
    >>> broken_power_law(1).formula_text
    'a + b * x^(-c0) * (1 + (x / d1)^(1 / f1))^(-c1 * f1)'
    """
    if not isinstance(breaks, int) or breaks < 1:
        raise LawError(f"a broken power law needs at least one break, got {breaks!r}")
    factors = " * ".join(
        f"(1 + ({x} / d{i})^(1 / f{i}))^(-c{i} * f{i})" for i in range(1, breaks + 1)
    )
    parameters: dict[str, dict[str, Any]] = {
        "a": {"support": "positive", "prior": "LogNormal(0, 1.5)", "description": "floor"},
        "b": {
            "support": "positive",
            "prior": "LogNormal(0, 3)",
            "description": "scale of the first power-law segment (defined at x = 1)",
        },
        "c0": {
            "support": "positive",
            "prior": "HalfNormal(0.5)",
            "description": "slope of the first segment on a log-log plot",
        },
    }
    for i in range(1, breaks + 1):
        parameters[f"c{i}"] = {
            "support": "real",
            "prior": "Normal(0, 1)",
            "description": f"change of slope at break {i}",
        }
        parameters[f"d{i}"] = {
            "support": "positive",
            "prior": "LogNormal(log(1e6), 10)",
            "description": f"location of break {i} (in units of {x})",
        }
        parameters[f"f{i}"] = {
            "support": "positive",
            "prior": "LogNormal(0, 1.5)",
            "description": f"sharpness of break {i} (smaller is sharper)",
        }
    return Law.from_dict(
        {
            "name": name or ("bnsl" if breaks == 1 else f"bnsl_{breaks}"),
            "title": f"Smoothly broken power law with {breaks} break{'s' * (breaks > 1)}",
            "outcome": "loss",
            "formula": f"a + b * {x}^(-c0) * {factors}",
            "inputs": {x: {"description": "scale (dataset size, model size, compute, ...)"}},
            "parameters": parameters,
            "citation": CABALLERO_CITATION,
            "source": "Caballero et al. (2023), eq. (1); one-break form as in the authors' code "
            "(ethancaballero/broken_neural_scaling_laws, bnsl_with_1_break).",
        },
        origin=f"broken_power_law({breaks})",
    )


# ---------------------------------------------------------------------------- AFT versus PH
@dataclass(frozen=True, eq=False)
class AftPhComparison:
    """The answer to "does this factor change the exponent, or only the multiplier?".

    Attributes
    ----------
    aft : Fit
        The factor acts on the AFT scale only: an effective-scale multiplier (same exponent).
    aft_ph : Fit
        The factor acts on the AFT and the PH scale: it may also change the tail exponent.
    table : pandas.DataFrame
        :func:`arviz_stats.compare` of the two fits by PSIS-LOO (``elpd``, ``elpd_diff``,
        ``dse``, ``weight``, Pareto-k warnings).
    covariates : tuple of str
    """

    aft: Any
    aft_ph: Any
    table: Any
    covariates: tuple[str, ...]

    def exponent_change(self, prob: float = 0.9):
        """Posterior of the tail-exponent multiplier ``exp(ph_<covariate>)`` per covariate
        (1 means the factor leaves the exponent alone) from the AFT+PH fit."""
        rows = {}
        for covariate in self.covariates:
            draws = np.exp(self.aft_ph.draws(f"ph_{covariate}").ravel())
            low, median, high = np.quantile(draws, [(1 - prob) / 2, 0.5, (1 + prob) / 2])
            rows[covariate] = {"median": median, "low": low, "high": high}
        import pandas as pd

        return pd.DataFrame(rows).T

    def verdict(self) -> str:
        """A one-paragraph reading of the comparison (PSIS-LOO; ``dse`` is its standard error),
        followed by what makes it unreliable: a fit that failed the convergence gates, runs
        whose Pareto k is above ArviZ's threshold."""
        return " ".join([self._reading(), *self.caveats()])

    def caveats(self) -> list[str]:
        """Why the PSIS-LOO comparison may not be trusted, one sentence each (empty if none)."""
        from bayescale.selection import loo

        out = []
        for name, fit in (("AFT-only", self.aft), ("AFT+PH", self.aft_ph)):
            if not fit.converged:
                out.append(
                    f"The {name} fit failed the convergence gates, so this comparison is not "
                    "reliable."
                )
            elpd = loo(fit)
            pareto_k = np.asarray(elpd.pareto_k.values, dtype=float)
            high = int(np.sum(pareto_k > elpd.good_k))
            if high:
                out.append(
                    f"In the {name} fit {high} of {pareto_k.size} runs have Pareto k > "
                    f"{float(elpd.good_k):.2f} (max {pareto_k.max():.2f}): their leave-one-out "
                    "terms are approximate."
                )
        return out

    def _reading(self) -> str:
        table = self.table
        best = table.index[0]
        other = table.index[1]
        diff = abs(float(table.loc[other, "elpd_diff"]))  # arviz_stats reports it signed
        dse = float(table.loc[other, "dse"])
        multiplier = "AFT only (the factor changes the multiplier, not the exponent)"
        exponent = "AFT+PH (the factor also changes the exponent)"
        names = {"aft": multiplier, "aft_ph": exponent}
        if diff < 2 * dse or diff < 4:
            return (
                f"PSIS-LOO cannot separate the two models: elpd difference {diff:.1f} "
                f"(se {dse:.1f}); prefer the simpler {names['aft']} unless the exponent change "
                "is itself of interest (see exponent_change())."
            )
        return (
            f"PSIS-LOO prefers {names[best]}: elpd difference {diff:.1f} (se {dse:.1f}) over "
            f"{names[other]}."
        )


def compare_aft_ph(
    data,
    law: str | Law,
    covariates: str | Iterable[str],
    *,
    y: str | None = None,
    x: Mapping[str, str] | None = None,
    pool: Iterable[str] = (),
    priors: Mapping[str, str] | None = None,
    **fit_options,
) -> AftPhComparison:
    """Fit a survival curve with a factor on the AFT scale only, and on both scales; compare.

    An AFT effect multiplies the scale (``aft_i = aft exp(z_i beta)``): the curve moves sideways
    on a log axis and, in the power-law tail, only its multiplier changes. A PH effect multiplies
    the cumulative hazard (``ph_i = ph exp(z_i beta')``): in the Burr XII tail
    ``S ~ (aft x)^(-gamma ph)`` the exponent changes by ``exp(beta')``. The two fits are compared
    by PSIS-LOO (``arviz_stats.compare``).

    Parameters
    ----------
    data : path, DataFrame or Runs
    law : str or Law
        A survival curve with parameters ``aft`` and ``ph`` (``apgw_curve``, ``burr_curve``,
        ``gompertz_curve``, ``cure_curve``...).
    covariates : str or iterable of str
        Covariate columns (numeric, e.g. 0/1 for a binary factor).
    y, x, pool, priors
        As in :func:`bayescale.fit` (``y`` is needed unless ``data`` is already ``Runs``).
    **fit_options
        Sampler settings passed to :func:`bayescale.fit`.

    Returns
    -------
    AftPhComparison
    """
    import arviz_stats

    from bayescale.inference import fit

    law = get_law(law)
    missing = [p for p in ("aft", "ph") if p not in law.parameter_names]
    if missing:
        raise SettingsError(
            f"law {law.name!r} has no {missing[0]!r} parameter; the AFT/PH comparison needs a "
            "survival curve with both scales (for the Weibull they are the same thing)"
        )
    covariates = (covariates,) if isinstance(covariates, str) else tuple(covariates)
    common = {"y": y, "x": x, "pool": list(pool), "priors": priors, **fit_options}
    aft = fit(data, law, regress={"aft": covariates}, **common)
    aft_ph = fit(data, law, regress={"aft": covariates, "ph": covariates}, **common)
    table = arviz_stats.compare({"aft": aft.datatree, "aft_ph": aft_ph.datatree})
    return AftPhComparison(aft, aft_ph, table, covariates)


def rmsle(predicted, observed) -> float:
    """Root mean squared log error ``sqrt(mean((log yhat - log y)^2))`` (Caballero et al. 2022;
    Alabdulmohsin et al. 2022)."""
    predicted = np.asarray(predicted, dtype=float)
    observed = np.asarray(observed, dtype=float)
    return float(math.sqrt(np.mean((np.log(predicted) - np.log(observed)) ** 2)))
