"""Compile a law, its priors, pooling and an observation model into a numpyro model.

:class:`ModelSpec` is the complete statistical specification (it is stored in every fit and
re-created when a fit is loaded); :class:`Design` holds the arrays of one data set;
:func:`numpyro_model` turns the two into a plain numpyro model function.

Parameterisation
----------------
* A parameter without pooling and without a reference is sampled from its prior (numpyro maps
  it to the real line with the support's bijection).
* A parameter with a :class:`~bayescale.laws.Reference` (a coefficient such as ``A`` in
  ``A / N^alpha``) is sampled as the log of its term at the reference scale, ``u``; its prior
  density is added for the implied value, with the Jacobian of the change of variables
  (unit for coefficients). This removes the near-perfect correlation between a coefficient
  defined at N = 1 and its exponent.
* A pooled parameter is non-centred on its link scale by default:
  ``link(theta[j]) = link(theta_pop) + theta_sd * z[j]`` with ``z[j] ~ Normal(0, 1)`` (numpyro's
  ``LocScaleReparam``); a centred pooling samples ``link(theta[j])`` directly. For a parameter
  with a reference, the same holds for ``u`` (groups differ in the size of the term at the
  reference scale), with the group's own exponent when the exponent is pooled over the same
  column, or over a column the parameter's column is *nested* in (every label of the parameter's
  column belongs to one label of the exponent's, as a (language pair, sampling weight) cell
  belongs to one language pair). A parameter whose exponent is pooled over another column (or
  pooled while the parameter is not) has no single reference term and is sampled as written.

Names that contain ``__`` are sampler coordinates; they never appear in results.
"""

from __future__ import annotations

import sys
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import numpyro.distributions.distribution
from numpyro.infer.reparam import LocScaleReparam

from bayescale.data import Runs
from bayescale.errors import DataError, PriorError, SettingsError
from bayescale.formula import jax_ops
from bayescale.laws import Law, Parameter, Reference, get_law

if not hasattr(dist, "distribution"):
    # ArviZ loads numpyro through lazy_loader; when ArviZ is imported before numpyro, the
    # package numpyro.distributions lacks its ``distribution`` attribute, which numpyro.factor
    # reads. Put it back (the module itself is loaded).
    dist.distribution = sys.modules["numpyro.distributions.distribution"]
from bayescale.likelihoods import (
    Censored,
    LogNormalWalk,
    ObservationModel,
    curve_labels,
    get_observation_model,
    walk_positions,
)
from bayescale.priors import Pooling, Prior

OBSERVED_SITE = "y"
INTERNAL_MARK = "__"
LINK_SITE = INTERNAL_MARK + "link"


COEFFICIENT_PRIOR = "Normal(0, 1)"
"""Default prior of a covariate coefficient (on the parameter's link scale)."""


@dataclass(frozen=True)
class Regression:
    """Run-level covariates shifting one parameter on its link scale.

    ``link(theta_i) = link(theta) + sum_c theta_c z_ic`` for run ``i`` with covariate values
    ``z_ic``; for a positive parameter each coefficient ``theta_c`` is a log multiplier. This is
    the multi-parameter regression of Burke, Jones & Noufaily (2020) when applied to the scale and
    shape parameters of a survival-style curve.
    """

    parameter: str
    covariates: tuple[str, ...]

    @property
    def coefficient_names(self) -> tuple[str, ...]:
        return tuple(f"{self.parameter}_{c}" for c in self.covariates)

    def to_dict(self) -> dict[str, Any]:
        return {"parameter": self.parameter, "covariates": list(self.covariates)}

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> Regression:
        return cls(str(spec["parameter"]), tuple(spec["covariates"]))


@dataclass(frozen=True, eq=False)
class ModelSpec:
    """The full statistical model: law, resolved priors, pooling and observation model.

    Build it with :meth:`create`, which checks every name.

    Attributes
    ----------
    law : Law
    observation : ObservationModel
    priors : dict of str to Prior
        The prior of every parameter of the law and of the observation model, and of the spread
        ``<name>_sd`` of every pooled parameter, defaults filled in.
    pooling : tuple of Pooling
    regression : tuple of Regression
    """

    law: Law
    observation: ObservationModel
    priors: dict[str, Prior]
    pooling: tuple[Pooling, ...] = ()
    regression: tuple[Regression, ...] = ()
    overridden: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def create(
        cls,
        law: str | Law,
        *,
        observation: str | ObservationModel = "lognormal",
        observation_options: Mapping[str, float] | None = None,
        priors: Mapping[str, str | Prior] | None = None,
        pool: Iterable[str | Pooling] | Mapping[str, str] = (),
        regress: Mapping[str, Iterable[str]] | Iterable[Regression] = (),
    ) -> ModelSpec:
        """Check and assemble a model specification.

        Parameters
        ----------
        law : str or Law
            A catalog name or a law object.
        observation : str or ObservationModel
            See :mod:`bayescale.likelihoods`.
        observation_options : mapping, optional
            Options of the observation model (``{"delta": 0.01}`` for ``huber``).
        priors : mapping of str to prior, optional
            Overrides by parameter name; ``<name>_sd`` sets the spread prior of a pooled
            parameter.
        pool : list of ``"param|group"`` strings or ``{param: group}``
            Parameters to pool over group columns (:class:`~bayescale.priors.Pooling` objects
            for the centred form or group-level covariates).
        regress : mapping of str to list of str
            ``{param: [covariate columns]}``: run-level covariates that shift a parameter on its
            link scale, ``link(theta_i) = link(theta) + sum_c theta_c z_ic`` (coefficients named
            ``<param>_<column>``, default prior ``Normal(0, 1)``).

        Raises
        ------
        PriorError
            For an unknown parameter, a prior outside the parameter's support, a spread prior for
            a parameter that is not pooled, a parameter pooled twice, a fixed parameter with
            run-level covariates, a spread fixed at zero, an
            observation model that does not fit the law's outcome, or a clash of names.
        """
        law = get_law(law)
        observation = get_observation_model(observation, **dict(observation_options or {}))
        if law.outcome not in observation.outcomes:
            raise PriorError(
                f"the {observation.name} observation model is for "
                f"{' or '.join(observation.outcomes)} outcomes; law {law.name!r} predicts "
                f"{law.outcome}"
            )
        parameters = {p.name: p for p in (*law.parameters, *observation.parameters)}
        clash = set(law.parameter_names) & {p.name for p in observation.parameters}
        if clash:
            raise PriorError(
                f"law {law.name!r} has a parameter named {sorted(clash)[0]!r}, which the "
                f"{observation.name} observation model also uses"
            )
        if isinstance(pool, Mapping):
            poolings = tuple(Pooling(str(k), str(v)) for k, v in pool.items())
        elif isinstance(pool, str):
            poolings = (Pooling.parse(pool),)
        else:
            poolings = tuple(Pooling.parse(p) for p in pool)
        if isinstance(regress, Mapping):
            regressions = tuple(Regression(str(k), tuple(v)) for k, v in regress.items())
        else:
            regressions = tuple(regress)
        for regression in regressions:
            if regression.parameter not in parameters:
                raise PriorError(
                    f"cannot regress {regression.parameter!r} on covariates: it is not a "
                    f"parameter; parameters: {', '.join(parameters)}"
                )
        if len({r.parameter for r in regressions}) < len(regressions):
            raise PriorError("a parameter appears twice in regress=")
        seen: set[str] = set()
        for pooling in poolings:
            if pooling.parameter not in parameters:
                raise PriorError(
                    f"cannot pool {pooling}: {pooling.parameter!r} is not a parameter; "
                    f"parameters: {', '.join(parameters)}"
                )
            if pooling.parameter in seen:
                raise PriorError(f"parameter {pooling.parameter!r} is pooled twice")
            seen.add(pooling.parameter)

        resolved = {name: p.prior for name, p in parameters.items()}
        for name, text in law.likelihood.get("priors", {}).items():
            # the law's own default for an observation-model parameter (MIST's sigma prior)
            if name in {p.name for p in observation.parameters}:
                resolved[name] = Prior.parse(text)
        pooled = {p.parameter: p for p in poolings}
        for pooling in poolings:
            resolved[pooling.sd_name] = pooling.resolved_sd_prior
        coefficients = [name for p in poolings for name in p.coefficient_names] + [
            name for r in regressions for name in r.coefficient_names
        ]
        for name in coefficients:
            if name in resolved or coefficients.count(name) > 1:
                raise PriorError(f"the covariate coefficient {name!r} clashes with another name")
            resolved[name] = Prior.parse(COEFFICIENT_PRIOR)
        overridden = set()
        for key, value in dict(priors or {}).items():
            if key in coefficients:
                resolved[key] = Prior.parse(value)
            elif key in parameters:
                prior = Prior.parse(value)
                support = parameters[key].support
                if not support.contains(prior.support):
                    raise PriorError(
                        f"prior {prior} for {key!r} puts mass on {prior.support}, but {key!r} "
                        f"must lie in {support}"
                    )
                resolved[key] = prior
            elif key.endswith("_sd") and key[: -len("_sd")] in parameters:
                if key[: -len("_sd")] not in pooled:
                    raise PriorError(
                        f"prior for {key!r} given, but {key[:-3]!r} is not pooled "
                        f"(pool it with '{key[:-3]}|GROUP')"
                    )
                prior = Prior.parse(value)
                if prior.support.low < 0 or (prior.is_fixed and not prior.fixed_value > 0):
                    raise PriorError(f"prior {prior} for the spread {key!r} must be positive")
                resolved[key] = prior
            else:
                valid = list(parameters) + [p.sd_name for p in poolings] + coefficients
                raise PriorError(
                    f"prior given for unknown parameter {key!r}; valid: {', '.join(valid)}"
                )
            overridden.add(key)
        for name in (r.parameter for r in regressions):
            if resolved[name].is_fixed and name not in pooled:
                raise PriorError(f"parameter {name!r} is Fixed and cannot vary")
        _check_conditional_centring(law, observation, poolings)
        if observation.correlated:
            if len(law.input_names) != 1:
                raise PriorError(
                    f"the {observation.name} observation model walks along one input; law "
                    f"{law.name!r} has {len(law.input_names)} ({', '.join(law.input_names)})"
                )
            varying = [
                p.name
                for p in observation.parameters
                if p.name in pooled or p.name in {r.parameter for r in regressions}
            ]
            if varying:
                raise PriorError(
                    f"{varying[0]!r} of the {observation.name} observation model cannot be "
                    "pooled or given covariates"
                )
        for p in law.parameters:
            if p.anchor is None:
                continue
            if p.name in pooled or p.name in {r.parameter for r in regressions}:
                raise PriorError(
                    f"{p.name!r} anchors law {law.name!r} at a scale of {p.anchor!r}; it is not "
                    "estimated and cannot be pooled or given covariates"
                )
            if p.name in overridden and not resolved[p.name].is_fixed:
                raise PriorError(
                    f"{p.name!r} anchors law {law.name!r} at a scale of {p.anchor!r}: give it as "
                    f"Fixed(value), not {resolved[p.name]}, or leave it out to anchor the law at "
                    f"the geometric mean of {p.anchor!r} over the fitted runs"
                )
        return cls(law, observation, resolved, poolings, regressions, frozenset(overridden))

    def anchored(self, runs: Runs) -> ModelSpec:
        """This specification with every anchor the user did not fix set to the geometric mean
        of its input over ``runs`` (``Fixed(value)``; see :class:`~bayescale.laws.Parameter`).

        Examples
        --------
        >>> import pandas as pd
        >>> from bayescale.data import load_runs
        >>> spec = ModelSpec.create("anchored_power_law")
        >>> runs = load_runs(pd.DataFrame({"x": [1e6, 1e8], "loss": [3.0, 2.0]}),
        ...                  law=spec.law, y="loss")
        >>> round(spec.anchored(runs).priors["x_ref"].fixed_value, 3)  # sqrt(1e6 * 1e8)
        10000000.0
        """
        values = self.law.anchor_values(runs.inputs)
        anchors = {name: Prior.parse(f"Fixed({values[name]!r})") for name in self.unset_anchors()}
        if not anchors:
            return self
        return replace(
            self,
            priors={**self.priors, **anchors},
            overridden=self.overridden | set(anchors),
        )

    def unset_anchors(self) -> list[str]:
        """The law's anchors that neither the user nor :meth:`anchored` has fixed."""
        return [
            p.name
            for p in self.law.parameters
            if p.anchor is not None and p.name not in self.overridden
        ]

    def held_value(self, name: str, log_reference: Mapping[str, Any], exp=np.exp):
        """The value of ``name``, a parameter held fixed and not pooled, in a model of the runs
        whose inputs' mean logs are ``log_reference`` (:attr:`Design.log_reference`).

        It is its ``Fixed`` prior's value; for an anchor nobody has set, it is the geometric
        mean of the anchor's input over those runs, ``exp(log_reference[input])``, the value
        :meth:`anchored` records. So :func:`bayescale.fit_batch` builds one program for all its
        curves and anchors each curve at its own runs. ``exp`` is the array library's (NumPy's,
        JAX's or PyTensor's).

        Examples
        --------
        >>> spec = ModelSpec.create("anchored_power_law")
        >>> round(float(spec.held_value("x_ref", {"x": np.log(1e7)})))
        10000000
        """
        if name in self.unset_anchors():
            return exp(log_reference[self.law.parameter(name).anchor])
        return self.priors[name].fixed_value

    # ------------------------------------------------------------------ views
    @property
    def parameters(self) -> tuple[Parameter, ...]:
        """Law parameters then observation parameters, each with its resolved prior."""
        return tuple(
            replace(p, prior=self.priors[p.name])
            for p in (*self.law.parameters, *self.observation.parameters)
        )

    def pooling_of(self, name: str) -> Pooling | None:
        for pooling in self.pooling:
            if pooling.parameter == name:
                return pooling
        return None

    def refuse_data_centring(self, where: str) -> None:
        """Raise :class:`~bayescale.errors.SettingsError` naming each pooling with
        ``centered="auto"`` or ``"conditional"``, for the engines that cannot centre on the
        data (``where`` says which)."""
        refused = [str(p) for p in self.pooling if p.auto_centred or p.conditionally_centred]
        if refused:
            raise SettingsError(
                f"centered='auto' and 'conditional' ({', '.join(refused)}) are not available "
                f"{where}; use centered=True or False"
            )

    def regression_of(self, name: str) -> Regression | None:
        for regression in self.regression:
            if regression.parameter == name:
                return regression
        return None

    @property
    def group_columns(self) -> tuple[str, ...]:
        """Group columns used by the pooling, in order, without repeats."""
        return tuple(dict.fromkeys(p.group for p in self.pooling))

    @property
    def covariate_columns(self) -> tuple[str, ...]:
        """Run-level covariate columns (each run, and each forecast point, needs a value)."""
        return tuple(dict.fromkeys(c for r in self.regression for c in r.covariates))

    @property
    def group_covariate_columns(self) -> tuple[str, ...]:
        """Group-level covariate columns (constant within each group)."""
        return tuple(dict.fromkeys(c for p in self.pooling for c in p.covariates))

    def posterior_names(self) -> list[str]:
        """Names of the posterior variables, in display order."""
        names = []
        for p in self.parameters:
            pooling = self.pooling_of(p.name)
            if self.priors[p.name].is_fixed and pooling is None:
                continue
            if pooling is None:
                names.append(p.name)
            else:
                if not self.priors[p.name].is_fixed:  # a Fixed population value is not sampled
                    names.append(pooling.population_name)
                if not self.priors[pooling.sd_name].is_fixed:
                    names.append(pooling.sd_name)
                names += [*pooling.coefficient_names, p.name]
            regression = self.regression_of(p.name)
            if regression is not None:
                names += list(regression.coefficient_names)
        return names

    def uses_reference(
        self, parameter: Parameter, nested: Collection[tuple[str, str]] = ()
    ) -> bool:
        """Whether ``parameter`` is sampled at its reference scale in this model.

        Only when its exponent is the same for every run that shares the parameter's value: the
        exponent's parameters are unpooled, or pooled over the parameter's own group column, or
        over a column the parameter's column is nested in (``(inner, outer)`` in ``nested``, see
        :attr:`Design.nested`). A coefficient shared by groups with different exponents (``A``
        with ``alpha|family``) has no single reference term; it is then sampled as written.
        """
        if parameter.reference is None:
            return False
        own = self.pooling_of(parameter.name)
        for name in parameter.reference.exponent_names:
            pooling = self.pooling_of(name)
            if pooling is None:
                continue
            if own is None or (
                pooling.group != own.group and (own.group, pooling.group) not in nested
            ):
                return False
        return True

    def floor_terms(self) -> tuple[Parameter, ...]:
        """The reference terms that the floor reparameterisation covers, or ``()`` if unused.

        Used when the law declares a floor and the floor and every reference term are plain
        scalars here (not pooled, not regressed on covariates, not fixed), with exponents that
        are scalars too.
        """
        law = self.law
        if law.floor is None:
            return ()
        terms = tuple(p for p in self.parameters if p.reference is not None)
        for name in (law.floor, *(p.name for p in terms)):
            if (
                self.pooling_of(name) is not None
                or self.regression_of(name) is not None
                or self.priors[name].is_fixed
            ):
                return ()
        if not all(self.uses_reference(p) for p in terms):
            return ()
        return terms

    def sampling_order(self, nested: Collection[tuple[str, str]] = ()) -> tuple[Parameter, ...]:
        """Parameters sampled at a reference scale last, after the exponents they need."""
        params = self.parameters
        return tuple(p for p in params if not self.uses_reference(p, nested)) + tuple(
            p for p in params if self.uses_reference(p, nested)
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description (the law is stored separately)."""
        return {
            "observation": self.observation.to_dict(),
            "priors": {name: str(prior) for name, prior in self.priors.items()},
            "pooling": [p.to_dict() for p in self.pooling],
            "regression": [r.to_dict() for r in self.regression],
            "overridden": sorted(self.overridden),
        }

    def structure_key(self) -> tuple:
        """A hashable key that is equal for two specifications exactly when they build the same
        model: the law's definition (a law written as a Python function by its identity) and
        :meth:`to_dict`. Compiled programs are cached under it."""
        law = self.law
        law_key = repr(law.to_dict()) if law.formula is not None else (law.name, id(law.function))
        return (law_key, repr(self.to_dict()))

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any], law: Law) -> ModelSpec:
        """Re-create a specification stored with :meth:`to_dict` (every prior as stored)."""
        created = cls.create(
            law,
            observation=spec["observation"]["name"],
            observation_options=spec["observation"]["options"],
            priors=spec["priors"],
            pool=[Pooling.from_dict(p) for p in spec["pooling"]],
            regress=[Regression.from_dict(r) for r in spec.get("regression", [])],
        )
        return replace(created, overridden=frozenset(spec.get("overridden", ())))


MIN_BUCKET = 8
"""Smallest padded number of runs (and of groups in a batch)."""

SMALL_BUCKETS = 64
"""Up to this size, padded sizes are powers of two; above it, four sizes per doubling."""


def bucket_size(n: int) -> int:
    """The padded size for ``n`` runs (or groups in a batch): the next power of two from 8 to
    64; above 64 the next multiple of a quarter of the power of two below ``n`` (80, 96, 112,
    128, 160, ...), so that padding adds at most a quarter to the rows where their number, not
    the per-call overhead, sets the cost of the likelihood.

    Examples
    --------
    >>> [bucket_size(n) for n in (1, 8, 9, 40, 64, 65, 100, 129, 240, 741)]
    [8, 8, 16, 64, 64, 80, 112, 160, 256, 768]
    """
    n = int(n)
    if n <= SMALL_BUCKETS:
        return max(MIN_BUCKET, 1 << max(0, n - 1).bit_length())
    step = (1 << (n - 1).bit_length() - 1) // 4
    return -(-n // step) * step


@dataclass(frozen=True, eq=False)
class Design:
    """The arrays of one data set, in the form the model consumes.

    Attributes
    ----------
    x : dict of str to ndarray
        Law inputs.
    y : ndarray
        Outcome.
    group_index : dict of str to ndarray
        Integer code of every run's label, per group column.
    group_labels : dict of str to list of str
        The labels, in code order.
    log_reference : dict of str to float
        ``log`` of each positive input's reference scale (the geometric mean over runs).
    covariates : dict of str to ndarray
        Run-level covariates.
    group_covariates : dict of str to dict of str to ndarray
        Per group column, each group-level covariate's value for every label.
    trials : ndarray or None
        Trials per run (binomial models).
    censoring : ndarray or None
        Censoring code per run (0 exact, 1 right, -1 left).
    parents : dict of (str, str) to ndarray
        For every ordered pair ``(inner, outer)`` of pooled group columns whose labels nest
        (all runs with the same ``inner`` label share one ``outer`` label), the code of the
        ``outer`` label of each ``inner`` label.
    walk_position, walk_block : ndarray or None
        For a correlated observation model (``lognormal_walk``): each run's log input above the
        smallest of its curve, and the code of its curve (its combination of group labels).
    observed : ndarray of bool or None
        Which rows are runs; the others are padding (:meth:`padded`), which the model leaves
        out of the likelihood. ``None``: every row is a run.
    """

    x: dict[str, np.ndarray]
    y: np.ndarray
    group_index: dict[str, np.ndarray]
    group_labels: dict[str, list[str]]
    log_reference: dict[str, float]
    covariates: dict[str, np.ndarray] = field(default_factory=dict)
    group_covariates: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    trials: np.ndarray | None = None
    censoring: np.ndarray | None = None
    parents: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    walk_position: np.ndarray | None = None
    walk_block: np.ndarray | None = None
    observed: np.ndarray | None = None

    @property
    def nested(self) -> frozenset[tuple[str, str]]:
        """The ``(inner, outer)`` pairs of group columns whose labels nest."""
        return frozenset(self.parents)

    @classmethod
    def from_runs(cls, runs: Runs, spec: ModelSpec) -> Design:
        missing = [c for c in spec.group_columns if c not in runs.groups]
        if missing:
            known = ", ".join(runs.groups) or "none"
            raise DataError(
                f"group column {missing[0]!r} was not loaded with the runs (groups: {known})"
            )
        for column in (*spec.covariate_columns, *spec.group_covariate_columns):
            if column not in runs.covariates:
                known = ", ".join(runs.covariates) or "none"
                raise DataError(
                    f"covariate column {column!r} was not loaded with the runs "
                    f"(covariates: {known})"
                )
        if spec.observation.needs_trials and runs.trials is None:
            raise DataError(
                f"the {spec.observation.name} observation model needs the number of trials per "
                "run: name its column (trials=... or --trials COLUMN)"
            )
        if runs.censoring is not None and runs.censoring.any() and not spec.observation.continuous:
            raise DataError(
                f"censored runs need a continuous observation model, not {spec.observation.name}"
            )
        if spec.observation.correlated and runs.censoring is not None and runs.censoring.any():
            raise DataError(
                f"censored runs cannot be observed with the {spec.observation.name} observation "
                "model; choose lognormal or student_t"
            )
        if spec.observation.name == "beta":
            inside = (runs.y > 0) & (runs.y < 1)
            if not inside.all():
                row = int(runs.rows[np.flatnonzero(~inside)[0]])
                raise DataError(
                    f"{runs.source}, row {row}: the beta observation model needs outcomes strictly "
                    "inside (0, 1); give the number of trials for a binomial model instead"
                )
        log_reference = {
            i.name: float(np.mean(np.log(runs.inputs[i.name])))
            for i in spec.law.inputs
            if i.support.low >= 0
        }
        group_index = {c: runs.group_codes(c) for c in spec.group_columns}
        group_labels = {c: runs.group_labels(c) for c in spec.group_columns}
        group_covariates: dict[str, dict[str, np.ndarray]] = {}
        for p in spec.pooling:  # several parameters may be pooled over the same column
            for c in p.covariates:
                group_covariates.setdefault(p.group, {})[c] = _per_group(
                    runs, p.group, c, group_index[p.group], group_labels[p.group]
                )
        walk_position = walk_block = None
        if spec.observation.correlated:
            labels = curve_labels(group_index, runs.n_runs)
            walk_block = np.unique(labels, return_inverse=True)[1].astype(np.int64)
            (axis,) = spec.law.input_names
            walk_position = walk_positions(np.log(runs.inputs[axis]), walk_block)
        return cls(
            x={k: np.asarray(v, dtype=np.float64) for k, v in runs.inputs.items()},
            y=np.asarray(runs.y, dtype=np.float64),
            group_index=group_index,
            group_labels=group_labels,
            log_reference=log_reference,
            covariates={c: runs.covariates[c] for c in spec.covariate_columns},
            group_covariates=group_covariates,
            trials=runs.trials,
            censoring=runs.censoring,
            parents=_nesting(group_index, group_labels),
            walk_position=walk_position,
            walk_block=walk_block,
        )

    @property
    def n_runs(self) -> int:
        """The number of rows, padding included."""
        return int(self.y.shape[0])

    def padded(self, rows: int) -> Design:
        """This design with ``rows`` rows: the runs, then copies of the first run marked as
        padding (``observed`` False), which the model leaves out of the likelihood.

        A fit pads its runs to :func:`bucket_size` so that data sets of nearby sizes share one
        compiled program (see :mod:`bayescale.density`). The log density is the same function
        of the parameters; only the order of the floating-point sums may differ.

        Examples
        --------
        >>> import pandas as pd
        >>> from bayescale.data import load_runs
        >>> spec = ModelSpec.create("power_law_floor")
        >>> runs = load_runs(pd.DataFrame({"x": [1e6, 1e7, 1e8], "loss": [3.0, 2.5, 2.2]}),
        ...                  law=spec.law, y="loss")
        >>> design = Design.from_runs(runs, spec).padded(8)
        >>> design.n_runs, design.observed.sum(), design.y[3:].tolist() == [3.0] * 5
        (8, np.int64(3), True)
        """
        if self.observed is not None:
            raise ValueError("the design is padded already")
        if rows < self.n_runs:
            raise ValueError(f"cannot pad {self.n_runs} runs to {rows} rows")
        index = np.r_[np.arange(self.n_runs), np.zeros(rows - self.n_runs, dtype=int)]

        def take(values):
            return None if values is None else np.asarray(values)[index]

        return replace(
            self,
            x={k: take(v) for k, v in self.x.items()},
            y=take(self.y),
            group_index={k: take(v) for k, v in self.group_index.items()},
            covariates={k: take(v) for k, v in self.covariates.items()},
            trials=take(self.trials),
            censoring=take(self.censoring),
            walk_position=take(self.walk_position),
            walk_block=take(self.walk_block),
            observed=np.arange(rows) < self.n_runs,
        )

    def arrays(self) -> dict[str, Any]:
        """The design's values as one dict of arrays: what a compiled program takes as its
        argument, so that a program compiled for one data set serves every data set of the
        same shapes (see :meth:`from_arrays`). Group labels are left out (only their number
        matters to the model); trials, censoring codes, the walk positions and the padding mask
        are in it when the model uses them."""
        out: dict[str, Any] = {
            "x": dict(self.x),
            "y": self.y,
            "group_index": dict(self.group_index),
            "log_reference": {k: np.float64(v) for k, v in self.log_reference.items()},
            "covariates": dict(self.covariates),
            "group_covariates": {g: dict(c) for g, c in self.group_covariates.items()},
            "parents": dict(self.parents),
        }
        if self.trials is not None:
            out["trials"] = self.trials
        if self.censoring is not None and np.any(self.censoring):
            out["censoring"] = self.censoring
        if self.walk_position is not None:
            out["walk_position"] = self.walk_position
            out["walk_block"] = self.walk_block
        if self.observed is not None:
            out["observed"] = self.observed
        return out

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, Any], group_sizes: Mapping[str, int]) -> Design:
        """A design from :meth:`arrays` (NumPy values, or the traced values inside a compiled
        program), with ``group_sizes[column]`` labels per group column (named by their codes)."""
        return cls(
            x=arrays["x"],
            y=arrays["y"],
            group_index=arrays["group_index"],
            group_labels={c: [str(i) for i in range(n)] for c, n in group_sizes.items()},
            log_reference=arrays["log_reference"],
            covariates=arrays["covariates"],
            group_covariates=arrays["group_covariates"],
            trials=arrays.get("trials"),
            censoring=arrays.get("censoring"),
            parents=arrays.get("parents", {}),
            walk_position=arrays.get("walk_position"),
            walk_block=arrays.get("walk_block"),
            observed=arrays.get("observed"),
        )

    @property
    def group_sizes(self) -> dict[str, int]:
        """The number of labels of each group column."""
        return {c: len(labels) for c, labels in self.group_labels.items()}


def _nesting(group_index, group_labels) -> dict[tuple[str, str], np.ndarray]:
    """The parent code of every label, for each pair of group columns whose labels nest."""
    parents = {}
    for inner, inner_codes in group_index.items():
        for outer, outer_codes in group_index.items():
            if inner == outer:
                continue
            parent = np.full(len(group_labels[inner]), -1, dtype=np.int64)
            parent[inner_codes] = outer_codes
            pairs = np.unique(np.stack([inner_codes, outer_codes]), axis=1)
            if pairs.shape[1] == len(group_labels[inner]):  # one outer label per inner label
                parents[(inner, outer)] = parent
    return parents


def _on_groups(values: Mapping[str, Any], spec: ModelSpec, design: Design, group: str) -> dict:
    """Parameter values on the labels of ``group``: vectors pooled over a column that ``group`` is
    nested in are indexed by each label's parent; other values pass through unchanged."""
    out = dict(values)
    for pooling in spec.pooling:
        parent = design.parents.get((group, pooling.group))
        if parent is not None and pooling.parameter in out:
            out[pooling.parameter] = out[pooling.parameter][..., parent]
    return out


def _per_group(runs: Runs, group: str, covariate: str, codes: np.ndarray, labels) -> np.ndarray:
    """A group-level covariate's value for each label; it must be constant within a group."""
    values = runs.covariates[covariate]
    out = np.empty(len(labels))
    for code, label in enumerate(labels):
        members = np.flatnonzero(codes == code)
        distinct = np.unique(values[members])
        if distinct.size > 1:
            rows = runs.rows[members]
            raise DataError(
                f"{runs.source}: covariate {covariate!r} must be constant within each {group}, "
                f"but {group} {label!r} has {distinct[0]:g} and {distinct[1]:g} (rows "
                f"{', '.join(map(str, rows[:4]))})"
            )
        out[code] = distinct[0]
    return out


def _log_density_of_log(prior: Prior, log_value):
    """Log density of ``log(theta)`` when ``theta`` has the (positive) ``prior``."""
    if prior.family == "LogNormal":
        return dist.Normal(prior.arguments["loc"], prior.arguments["scale"]).log_prob(log_value)
    return prior.to_numpyro().log_prob(jnp.exp(log_value)) + log_value


def _reference_log_value(ref: Reference, u, values, log_reference, ops):
    """Invert the reference coordinate: ``log(theta)`` from ``u``, and the log Jacobian.

    Coefficient: ``log(theta) = u + sum_j e_j log(x_j,ref)`` (unit Jacobian). Scale:
    ``log(theta) = u / e + log(x_ref)`` (Jacobian ``1 / |e|``). ``values`` holds the exponents'
    parameters (scalars, or vectors over groups).
    """
    if ref.kind == "coefficient":
        return u + ref.log_scale(values, log_reference, ops), 0.0
    exponent = ref.exponent.evaluate(values, ops=ops)
    return u / exponent + log_reference[ref.input], -jnp.log(jnp.abs(exponent))


def _reference_coordinate(ref: Reference, log_value, values, log_reference, ops):
    """The reference coordinate ``u`` of ``log(theta)``: the inverse of _reference_log_value."""
    if ref.kind == "coefficient":
        return log_value - ref.log_scale(values, log_reference, ops)
    return ref.exponent.evaluate(values, ops=ops) * (log_value - log_reference[ref.input])


def _hyperparameter(name: str, prior: Prior):
    """A population value or spread: its constant when the prior is Fixed, else a sample."""
    return prior.fixed_value if prior.is_fixed else numpyro.sample(name, prior.to_numpyro())


def _group_values(name: str, center, sd, n_groups: int):
    """Group values on the link scale, ``Normal(center, sd)`` per group.

    Written centred; :func:`numpyro_model` non-centres the site (``center + sd * z``) with
    numpyro's ``LocScaleReparam`` unless the pooling asks for the centred form.
    """
    return numpyro.sample(name + LINK_SITE, dist.Normal(center, sd).expand([n_groups]).to_event(1))


def _coefficients(names, spec: ModelSpec) -> list:
    return [numpyro.sample(name, spec.priors[name].to_numpyro()) for name in names]


def _group_center(pooling: Pooling, center, design: Design, spec: ModelSpec, values: dict):
    """The pooled mean of each group on the link scale: population plus group covariates."""
    coefficients = _coefficients(pooling.coefficient_names, spec)
    for name, coefficient, column in zip(
        pooling.coefficient_names, coefficients, pooling.covariates, strict=True
    ):
        values[name] = coefficient
        center = center + coefficient * jnp.asarray(design.group_covariates[pooling.group][column])
    return center


def _check_conditional_centring(law: Law, observation, poolings) -> None:
    """Refuse ``centered="conditional"`` where the group values' conditional posterior is not
    normal: see :class:`~bayescale.priors.Pooling`."""
    conditional = [p for p in poolings if p.conditionally_centred]
    if not conditional:
        return
    if len(conditional) > 1:
        raise PriorError(
            f"centered='conditional' is given for {len(conditional)} poolings "
            f"({', '.join(str(p) for p in conditional)}); it is available for one"
        )
    pooling = conditional[0]
    name = pooling.parameter
    needs = (
        f"centered='conditional' ({pooling}) needs a positive coefficient of a law proportional "
        "to it under the lognormal or lognormal_mean observation model"
    )
    parameter = next((p for p in law.parameters if p.name == name), None)
    if observation.name not in ("lognormal", "lognormal_mean"):
        raise PriorError(f"{needs}; the observation model is {observation.name}")
    if parameter is None or parameter.support.kind != "positive":
        raise PriorError(f"{needs}; {name!r} is not a positive parameter of law {law.name!r}")
    if parameter.reference is not None and parameter.reference.kind != "coefficient":
        raise PriorError(f"{needs}; {name!r} is a scale, not a coefficient")
    if not _proportional_to(law, name):
        raise PriorError(f"{needs}; law {law.name!r} is not proportional to {name!r}")


def _proportional_to(law: Law, name: str) -> bool:
    """Whether ``law``'s mean doubles wherever parameter ``name`` doubles, checked at four
    values of each input spread over its support and at three seeded draws of the law's prior."""
    from bayescale.formula import NUMPY_OPS

    inputs = {}
    for item in law.inputs:
        low, high = item.support.low, item.support.high
        if np.isfinite(low) and np.isfinite(high):
            inputs[item.name] = low + (high - low) * np.array([0.1, 0.35, 0.6, 0.9])
        else:
            start = max(low, 0.0) if np.isfinite(low) else -50.0
            inputs[item.name] = start + np.array([0.3, 4.0, 70.0, 3e3])
    for key in jax.random.split(jax.random.PRNGKey(0), 3):
        keys = jax.random.split(key, len(law.parameters))
        theta = {
            p.name: p.prior.fixed_value
            if p.prior.is_fixed
            else float(p.prior.to_numpyro().sample(k))
            for p, k in zip(law.parameters, keys, strict=True)
        }
        with np.errstate(all="ignore"):
            log_mean = np.asarray(law.log_mean(inputs, theta, ops=NUMPY_OPS))
            doubled = np.asarray(
                law.log_mean(inputs, {**theta, name: 2 * theta[name]}, ops=NUMPY_OPS)
            )
        tolerance = 1e-9 * (1 + np.abs(log_mean).max())
        if not np.allclose(doubled - log_mean, np.log(2.0), rtol=0, atol=tolerance):
            return False
    return True


def sample_parameters(
    spec: ModelSpec, design: Design, held: dict | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Sample every parameter inside a numpyro model.

    With ``held`` (a dict to fill), the group values of a ``centered="conditional"`` pooling
    are not sampled: their log (at the reference point) is held at 0, and ``held[name]`` gets
    the groups' pooled means and spread on that scale, for :func:`numpyro_model` to centre them
    on their conditional posterior.

    Returns
    -------
    values : dict
        Parameter values: scalars, or arrays over the labels of the group column for pooled ones;
        covariate coefficients as scalars.
    logs : dict
        Logs of positive parameters where they are known without an extra ``log``.
    """
    ops = jax_ops()
    values: dict[str, Any] = {}
    logs: dict[str, Any] = {}
    population: dict[str, Any] = {}
    floor_terms = spec.floor_terms()
    term_logs = _floor_block(spec, floor_terms, values, logs) if floor_terms else {}
    nested = design.nested
    for param in spec.sampling_order(nested):
        name = param.name
        if name == spec.law.floor and floor_terms:
            continue  # sampled in the floor block
        prior = spec.priors[name]
        pooling = spec.pooling_of(name)
        regression = spec.regression_of(name)
        if regression is not None:
            for coefficient, value in zip(
                regression.coefficient_names,
                _coefficients(regression.coefficient_names, spec),
                strict=True,
            ):
                values[coefficient] = value
        if prior.is_fixed and pooling is None:
            values[name] = population[name] = spec.held_value(name, design.log_reference, jnp.exp)
            continue
        if pooling is not None:
            sd = _hyperparameter(pooling.sd_name, spec.priors[pooling.sd_name])
            n_groups = len(design.group_labels[pooling.group])
        if not spec.uses_reference(param, nested):
            if pooling is None:
                values[name] = population[name] = numpyro.sample(name, prior.to_numpyro())
                continue
            pop = _hyperparameter(pooling.population_name, prior)
            population[name] = pop
            center = _group_center(pooling, param.support.link(pop, ops), design, spec, values)
            if held is not None and pooling.conditionally_centred:
                held[name] = ConditionalGroups(center, sd, jnp.zeros(n_groups))
                values[name], logs[name] = jnp.ones(n_groups), jnp.zeros(n_groups)
                continue
            link_value = _group_values(name, center, sd, n_groups)
            values[name] = numpyro.deterministic(name, param.support.inverse_link(link_value, ops))
            if param.support.kind == "positive":
                logs[name] = link_value
            continue

        ref = param.reference
        if name in term_logs:
            u = term_logs[name]
        elif prior.is_fixed:  # a pooled parameter whose population value is held fixed
            log_pop = jnp.log(prior.fixed_value)
            u = _reference_coordinate(ref, log_pop, population, design.log_reference, ops)
        else:
            u = numpyro.sample(
                name + INTERNAL_MARK + "ref", dist.ImproperUniform(dist.constraints.real, (), ())
            )
        if not prior.is_fixed:
            log_pop, log_jacobian = _reference_log_value(
                ref, u, population, design.log_reference, ops
            )
            numpyro.factor(
                name + INTERNAL_MARK + "prior", _log_density_of_log(prior, log_pop) + log_jacobian
            )
        population[name] = jnp.exp(log_pop)
        if pooling is None:
            values[name] = numpyro.deterministic(name, jnp.exp(log_pop))
            logs[name] = log_pop
            continue
        if not prior.is_fixed:
            numpyro.deterministic(pooling.population_name, jnp.exp(log_pop))
        center = _group_center(pooling, u, design, spec, values)
        conditional = held is not None and pooling.conditionally_centred
        u_group = jnp.zeros(n_groups) if conditional else _group_values(name, center, sd, n_groups)
        # the group's own exponents where pooled (through each label's parent when nested)
        on_groups = _on_groups(values, spec, design, pooling.group)
        log_group, _ = _reference_log_value(ref, u_group, on_groups, design.log_reference, ops)
        if conditional:  # log_group is the reference scale's log, u = 0 (a coefficient)
            held[name] = ConditionalGroups(center, sd, log_group)
            values[name] = jnp.exp(log_group)
        else:
            values[name] = numpyro.deterministic(name, jnp.exp(log_group))
        logs[name] = log_group
    return values, logs


def conditional_site(parameter: str) -> str:
    """The sample site of a ``centered="conditional"`` pooling's standard deviates (one per
    group; see :class:`ConditionalGroups`)."""
    return parameter + INTERNAL_MARK + "conditional"


@dataclass(frozen=True)
class ConditionalGroups:
    """A ``centered="conditional"`` pooling inside :func:`numpyro_model`: the groups' log
    values are ``offset + u`` with ``u ~ Normal(center, sd)`` (``u`` the log value at the
    reference point when the parameter has one)."""

    center: Any
    sd: Any
    offset: Any

    def sample(self, log_mean_without, residual, index, sigma, name: str, observed=None):
        """Sample the group values centred on their conditional posterior (see
        :class:`~bayescale.priors.Pooling`) and return the runs' log means.

        ``log_mean_without`` is each run's log mean with ``u = 0``, ``residual`` its log
        outcome minus the observation model's centre of ``log y`` there, ``index`` each run's
        group, ``sigma`` the runs' log-scale noise and ``observed`` which rows are runs (the
        others are padding and do not pull; ``None``: all). Adds the prior of ``u`` and the
        log Jacobian of ``z -> u`` to the density.
        """
        groups = self.offset.shape[-1]
        center = jnp.broadcast_to(self.center, (groups,))
        precision_runs = 1.0 / sigma**2
        if observed is not None:
            precision_runs = jnp.where(observed, precision_runs, 0.0)
        weight = jax.ops.segment_sum(precision_runs, index, groups)
        pull = jax.ops.segment_sum(precision_runs * residual, index, groups)
        # mean = (center / sd^2 + pull) / (1 / sd^2 + weight), written to stay finite as sd -> 0
        shrink = 1.0 + weight * self.sd**2
        mean = center + (pull - weight * center) * self.sd**2 / shrink
        scale = self.sd / jnp.sqrt(shrink)
        z = numpyro.sample(
            conditional_site(name),
            dist.ImproperUniform(dist.constraints.real, (), (groups,)),
        )
        u = mean + scale * z
        numpyro.factor(
            name + INTERNAL_MARK + "groups",
            jnp.sum(dist.Normal(center, self.sd).log_prob(u)) + jnp.sum(jnp.log(scale)),
        )
        numpyro.deterministic(name, jnp.exp(self.offset + u))
        return log_mean_without + u[index]


def _floor_block(spec: ModelSpec, terms, values: dict, logs: dict) -> dict[str, Any]:
    """Sample a floor law at its reference point: the level and the reducible share.

    For a law ``floor + T_1 + ... + T_k`` with every term at the reference scale ``T_j(ref)``, the
    sampler moves ``level = log(floor + sum_j T_j(ref))`` (pinned down by the data),
    ``reducible = logit(sum_j T_j(ref) / level)`` and, for several terms, the softmax split of the
    reducible part between them. Each of these maps has unit Jacobian on the log scale, so the
    prior is the law's prior on the floor (added here as a density of its log) and on each
    coefficient (added where the coefficient is recovered from ``u_j = log T_j(ref)``).

    Returns ``{term name: u_j}``; sets the floor's value and log.
    """
    improper = dist.ImproperUniform(dist.constraints.real, (), ())
    level = numpyro.sample(INTERNAL_MARK + "level", improper)
    reducible = numpyro.sample(INTERNAL_MARK + "reducible", improper)
    log_floor = level - jax.nn.softplus(reducible)
    log_reducible = level - jax.nn.softplus(-reducible)
    if len(terms) > 1:
        split = numpyro.sample(
            INTERNAL_MARK + "split",
            dist.ImproperUniform(dist.constraints.real, (), (len(terms) - 1,)),
        )
        shares = jax.nn.log_softmax(jnp.concatenate([jnp.zeros(1), split]))
    else:
        shares = jnp.zeros(1)
    floor = spec.law.floor
    numpyro.factor(
        floor + INTERNAL_MARK + "prior", _log_density_of_log(spec.priors[floor], log_floor)
    )
    values[floor] = numpyro.deterministic(floor, jnp.exp(log_floor))
    logs[floor] = log_floor
    return {term.name: log_reducible + shares[j] for j, term in enumerate(terms)}


def at_runs(
    spec: ModelSpec,
    values: Mapping[str, Any],
    logs: Mapping[str, Any],
    group_index: Mapping[str, Any],
    covariates: Mapping[str, Any],
    ops=None,
) -> tuple[dict, dict]:
    """Parameter values for each run (or forecast point).

    Pooled parameters are indexed by each run's group code (their last axis holds the groups);
    run-level covariates then shift parameters on their link scale. Works on model values (scalars
    and group vectors) and on posterior draws shaped ``(sample, 1)`` and ``(sample, group)``.

    Returns
    -------
    values, logs : dict
        Per-run values of every parameter, and per-run logs where known.
    """
    ops = ops or jax_ops()
    out, out_logs = {}, {}
    for param in spec.parameters:
        name = param.name
        pooling = spec.pooling_of(name)
        value = values[name]
        log = logs.get(name)
        if pooling is not None:
            value = value[..., group_index[pooling.group]]
            log = None if log is None else log[..., group_index[pooling.group]]
        regression = spec.regression_of(name)
        if regression is not None:
            shift = 0.0
            for coefficient, column in zip(
                regression.coefficient_names, regression.covariates, strict=True
            ):
                shift = shift + values[coefficient] * covariates[column]
            if param.support.kind == "positive":
                log = (ops.log(value) if log is None else log) + shift
                value = ops.exp(log)
            else:
                value = param.support.inverse_link(param.support.link(value, ops) + shift, ops)
        out[name] = value
        if log is not None:
            out_logs[name] = log
    return out, out_logs


def split_parameters(spec: ModelSpec, values: Mapping[str, Any]) -> tuple[dict, dict]:
    """Split parameter values into the law's and the observation model's."""
    law_names = set(spec.law.parameter_names)
    observation_names = {p.name for p in spec.observation.parameters}
    law = {k: v for k, v in values.items() if k in law_names}
    observation = {k: v for k, v in values.items() if k in observation_names}
    return law, observation


def observation_distribution(spec: ModelSpec, log_mean, observation_theta, trials, censoring):
    """The distribution of the observed values, with censored runs handled."""
    distribution = spec.observation.distribution(log_mean, observation_theta, trials)
    if censoring is not None:
        distribution = Censored(distribution, censoring)
    return distribution


def pointwise_log_likelihood(site_distribution, value):
    """Each run's log-likelihood, for PSIS-LOO: its own density, or for a correlated
    observation model its leave-one-out conditional density given the other runs."""
    if isinstance(site_distribution, LogNormalWalk):
        return site_distribution.pointwise_log_prob(value)
    return site_distribution.log_prob(value)


def _centring_array(centring):
    """Centrings as an array: JAX values (traced inside a compiled program) as they are, others
    as NumPy, so that they take the precision of the computation they enter."""
    return centring if isinstance(centring, jax.Array) else np.asarray(centring)


def numpyro_model(
    spec: ModelSpec,
    design: Design,
    *,
    all_noncentred: bool = False,
    centrings: Mapping[str, np.ndarray] | None = None,
):
    """Return a numpyro model function ``model(y=None)`` for the data in ``design``.

    Pooled parameters are non-centred (numpyro's ``LocScaleReparam``) unless their pooling is
    centred; ``all_noncentred=True`` non-centres every pooled parameter, which gives the
    well-posed objective the initial optimisation needs (a centred hierarchy has no mode: its
    density grows without bound as the spread shrinks to zero). A pooling with
    ``centered="auto"`` is partially centred with the centrings ``centrings[parameter]`` (one
    per group, 0 non-centred to 1 centred; see :class:`~bayescale.priors.Pooling`), and
    non-centred while ``centrings`` does not give them.

    The observed site ``y`` holds what the observation model observes (success counts for the
    binomial models, the outcome otherwise).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from bayescale.data import load_runs
    >>> spec = ModelSpec.create("power_law_floor")
    >>> runs = load_runs(pd.DataFrame({"x": [1e6, 1e7, 1e8], "loss": [3.0, 2.5, 2.2]}),
    ...                  law=spec.law, y="loss")
    >>> model = numpyro_model(spec, Design.from_runs(runs, spec))
    >>> callable(model)
    True
    """
    law_names = set(spec.law.parameter_names)
    # Censoring codes given as a JAX array (a batched fit traces the design) are always applied;
    # NumPy codes only when some run is censored.
    censored = design.censoring is not None and (
        not isinstance(design.censoring, np.ndarray) or bool(np.any(design.censoring))
    )

    conditional = [p for p in spec.pooling if p.conditionally_centred]
    if conditional and censored:
        raise SettingsError(
            f"centered='conditional' ({conditional[0]}) needs every run observed; some runs "
            "are censored (use centered=True or False)"
        )

    def model(y=None):
        # Arrays are made at trace time, so they take the precision of the caller's context
        # (float64 inside ``jax.enable_x64``), never the precision at model construction.
        x = {k: jnp.asarray(v) for k, v in design.x.items()}
        group_index = {k: jnp.asarray(v) for k, v in design.group_index.items()}
        covariates = {k: jnp.asarray(v) for k, v in design.covariates.items()}
        observed = None if design.observed is None else jnp.asarray(design.observed)
        held: dict[str, ConditionalGroups] = {}
        values, logs = sample_parameters(spec, design, held)
        values, logs = at_runs(spec, values, logs, group_index, covariates)
        law_theta, observation_theta = split_parameters(spec, values)
        law_logs = {k: v for k, v in logs.items() if k in law_names}
        log_mean = spec.law.log_mean(x, law_theta, log_theta=law_logs)
        for pooling in conditional:  # the observed outcomes centre the group values
            location = spec.observation.log_location(log_mean, observation_theta)
            log_mean = held[pooling.parameter].sample(
                log_mean,
                jnp.log(jnp.asarray(design.y)) - location,
                group_index[pooling.group],
                jnp.broadcast_to(observation_theta["sigma"], jnp.shape(log_mean)),
                pooling.parameter,
                observed,
            )
        trials = None if design.trials is None else jnp.asarray(design.trials)
        censoring = jnp.asarray(design.censoring) if censored else None
        if spec.observation.correlated:  # the runs of a curve are observed jointly
            numpyro.sample(
                OBSERVED_SITE,
                LogNormalWalk(
                    log_mean,
                    observation_theta["sigma"],
                    observation_theta["tau"],
                    jnp.asarray(design.walk_position),
                    jnp.asarray(design.walk_block),
                    observed,
                ),
                obs=y,
            )
            return
        with (
            numpyro.plate("obs", design.n_runs),
            numpyro.handlers.mask(mask=True if observed is None else observed),
        ):
            numpyro.sample(
                OBSERVED_SITE,
                observation_distribution(spec, log_mean, observation_theta, trials, censoring),
                obs=y,
            )

    centrings = {} if all_noncentred or centrings is None else centrings
    reparameterised = {
        p.parameter + LINK_SITE: LocScaleReparam(
            centered=_centring_array(centrings[p.parameter]) if p.parameter in centrings else 0
        )
        for p in spec.pooling
        if (all_noncentred or not p.fully_centred) and not p.conditionally_centred
    }
    return numpyro.handlers.reparam(model, config=reparameterised) if reparameterised else model
