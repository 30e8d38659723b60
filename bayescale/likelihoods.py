"""Observation models: how a measured outcome scatters around the law's mean.

Every scaling-law fit in the literature works on the log of the loss, and so do the models for
positive outcomes (losses and error rates). Each returns a proper density *of the outcome itself*
(the Jacobian of the log is included), so log-likelihoods of different observation models on the
same data can be compared with PSIS-LOO. Accuracies get models for proportions: binomial counts
when the number of trials (questions in the benchmark) is known, a beta density otherwise
(Schaeffer et al. 2023 and Hu et al. 2024 argue against a Gaussian on accuracy).

=================  ===============================================================================
name               model of the outcome y given the law's mean mu
=================  ===============================================================================
lognormal          ``log y ~ Normal(log mu, sigma)``: mu is the median of y
lognormal_mean     ``log y ~ Normal(log mu - sigma^2/2, sigma)``: mu is the mean of y (MIST)
student_t          ``log y ~ StudentT(nu, log mu, sigma)``: robust to outlying runs
huber              ``log y ~ Huber(log mu, sigma, delta)``: the normalised Huber density of
                   Besiroglu et al. (2024); ``delta`` defaults to their 1e-3
lognormal_walk     ``log y = log mu + w(log x) + eps``, ``eps ~ Normal(0, sigma)``: the law's error
                   ``w`` is a random walk (Brownian motion, sd ``tau`` per unit of ``log x``)
                   along the law's one input, so that forecasts far from the data widen
binomial           ``round(y n) ~ Binomial(n, mu)`` with ``n`` trials per run
beta_binomial      ``round(y n) ~ BetaBinomial(mu phi, (1 - mu) phi, n)``: overdispersed counts
beta               ``y ~ Beta(mu phi, (1 - mu) phi)`` for proportions strictly inside (0, 1)
=================  ===============================================================================

The continuous models accept censored runs (see :class:`Censored`), except ``lognormal_walk``.

``lognormal_walk`` is a model of *discrepancy*: a law fitted to a smooth curve leaves residuals
that are not independent noise but the law's own error, which does not vanish beyond the data.
Within each curve (each combination of group labels) the error ``w`` starts at zero at the
curve's smallest input and drifts as a Brownian motion in ``log x``, which is the Gaussian process
with covariance ``tau^2 min(s_i, s_j)`` (``s``: log input above the curve's smallest); it is
integrated out exactly (Kennedy & O'Hagan 2001 model discrepancy as a Gaussian process), so the
runs of a curve are jointly normal on the log scale (:class:`LogNormalWalk`). A forecast beyond
the last run carries the error of the last runs forward and adds ``tau^2`` of variance per unit
of log scale. Its pointwise log-likelihood (for PSIS-LOO) is each run's leave-one-out conditional
density, the exact form for non-factorised normal models (Burkner, Gabry & Vehtari 2021).

Examples
--------
>>> model = get_observation_model("student_t")
>>> [p.name for p in model.parameters]
['sigma', 'nu']
>>> get_observation_model("huber", delta=0.5).options
{'delta': 0.5}
>>> get_observation_model("binomial").needs_trials
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jax.scipy.special import ndtr
from numpyro.distributions.util import promote_shapes, validate_sample

from bayescale.errors import PriorError
from bayescale.laws import Parameter
from bayescale.priors import POSITIVE, Prior

_SIGMA = Parameter(
    "sigma",
    POSITIVE,
    Prior.parse("HalfNormal(0.5)"),
    "scale of the scatter of log outcome around log mean",
)
_NU = Parameter(
    "nu",
    POSITIVE,
    Prior.parse("Gamma(2, 0.1)"),
    "degrees of freedom of the Student-t (Juarez & Steel 2010 prior, mean 20)",
)
_PHI = Parameter(
    "phi",
    POSITIVE,
    Prior.parse("LogNormal(log(100), 1.5)"),
    "precision of the beta scatter (larger is tighter)",
)
_TAU = Parameter(
    "tau",
    POSITIVE,
    Prior.parse("HalfNormal(0.1)"),
    "sd of the law's error growth per unit of log input (random-walk discrepancy)",
)
_PROBABILITY_EPSILON = 1e-12


@dataclass(frozen=True)
class ObservationModel:
    """An observation model: its name, its own parameters (with default priors) and options.

    Use :func:`get_observation_model` to obtain one.

    Attributes
    ----------
    outcomes : tuple of str
        Outcome kinds the model is for.
    needs_trials : bool
        Whether each run needs its number of trials (binomial models).
    continuous : bool
        Whether the model has a CDF, which censored runs need.
    correlated : bool
        Whether the runs of a curve are correlated (``lognormal_walk``): the model then observes
        all runs jointly through :class:`LogNormalWalk` instead of one density per run.
    """

    name: str
    parameters: tuple[Parameter, ...]
    options: dict[str, Any] = field(default_factory=dict)
    outcomes: tuple[str, ...] = ("loss", "error")
    description: str = ""
    needs_trials: bool = False
    continuous: bool = True
    correlated: bool = False

    def __hash__(self) -> int:
        return hash((self.name, tuple(sorted(self.options.items()))))

    def distribution(self, log_mean, theta: Mapping[str, Any], trials=None):
        """The numpyro distribution of the observed value given ``log(mu)`` and parameters.

        For the binomial models the observed value is the count of successes (see
        :meth:`observed`); for the others it is the outcome itself.
        """
        if self.name in ("binomial", "beta_binomial", "beta"):
            mean = jnp.clip(jnp.exp(log_mean), _PROBABILITY_EPSILON, 1 - _PROBABILITY_EPSILON)
            if self.name == "binomial":
                return dist.Binomial(total_count=trials, probs=mean)
            phi = theta["phi"]
            if self.name == "beta":
                return dist.Beta(mean * phi, (1 - mean) * phi)
            return dist.BetaBinomial(mean * phi, (1 - mean) * phi, total_count=trials)
        sigma = theta["sigma"]
        if self.name in ("lognormal", "lognormal_walk", "lognormal_mean"):
            # lognormal_walk: the white-noise part alone (forecasts add the walk's conditional
            # mean and variance; the joint density is LogNormalWalk)
            return dist.LogNormal(self.log_location(log_mean, theta), sigma)
        if self.name == "student_t":
            base = dist.StudentT(theta["nu"], log_mean, sigma)
        else:  # huber
            base = Huber(log_mean, sigma, self.options["delta"])
        return dist.TransformedDistribution(base, dist.transforms.ExpTransform())

    def log_location(self, log_mean, theta: Mapping[str, Any]):
        """The centre of ``log y`` for the log-normal models: ``log(mu)``, or ``log(mu) -
        sigma^2 / 2`` for ``lognormal_mean`` (where ``mu`` is the mean of ``y``)."""
        if self.name == "lognormal_mean":
            return log_mean - 0.5 * theta["sigma"] ** 2
        return log_mean

    def observed(self, y, trials=None):
        """The value the distribution observes: success counts for binomial models, else ``y``."""
        if self.needs_trials:
            return jnp.round(y * trials)
        return y

    def to_outcome(self, value, trials=None):
        """Turn draws of the observed value back into outcome units (proportions)."""
        if self.needs_trials:
            return value / trials
        return value

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "options": dict(self.options)}


_DEFINITIONS: dict[str, dict[str, Any]] = {
    "lognormal": {
        "parameters": (_SIGMA,),
        "description": "log y ~ Normal(log mu, sigma); mu is the median outcome",
    },
    "lognormal_mean": {
        "parameters": (_SIGMA,),
        "description": "log y ~ Normal(log mu - sigma^2/2, sigma); mu is the mean outcome",
    },
    "student_t": {
        "parameters": (_SIGMA, _NU),
        "description": "log y ~ StudentT(nu, log mu, sigma); robust to outlying runs",
    },
    "huber": {
        "parameters": (_SIGMA,),
        "options": {"delta": 1e-3},
        "description": "log y ~ Huber(log mu, sigma, delta) (Besiroglu et al. 2024)",
    },
    "lognormal_walk": {
        "parameters": (_SIGMA, _TAU),
        "correlated": True,
        "description": (
            "log y ~ Normal(log mu + w(log x), sigma), w a random walk with sd tau per unit log x"
        ),
    },
    "binomial": {
        "parameters": (),
        "outcomes": ("accuracy", "error"),
        "needs_trials": True,
        "continuous": False,
        "description": "successes ~ Binomial(trials, mu)",
    },
    "beta_binomial": {
        "parameters": (_PHI,),
        "outcomes": ("accuracy", "error"),
        "needs_trials": True,
        "continuous": False,
        "description": "successes ~ BetaBinomial(mu phi, (1 - mu) phi, trials)",
    },
    "beta": {
        "parameters": (_PHI,),
        "outcomes": ("accuracy", "error"),
        "description": "y ~ Beta(mu phi, (1 - mu) phi)",
    },
}

OBSERVATION_MODELS: tuple[str, ...] = tuple(_DEFINITIONS)
"""Names of the available observation models."""


def default_observation_model(outcome: str, has_trials: bool) -> str:
    """The observation model used when none is named: log-normal for losses and error rates,
    binomial for accuracies with a number of trials, beta for accuracies without."""
    if outcome == "accuracy":
        return "binomial" if has_trials else "beta"
    return "lognormal"


def get_observation_model(
    model: str | ObservationModel = "lognormal", **options
) -> ObservationModel:
    """Return an observation model by name, with its options checked.

    Parameters
    ----------
    model : str or ObservationModel
        One of :data:`OBSERVATION_MODELS`.
    **options
        Options of that model (``delta`` for ``huber``). Unknown options raise.

    Raises
    ------
    PriorError
        For an unknown name or option.
    """
    if isinstance(model, ObservationModel):
        if options:
            raise PriorError("options cannot be given together with an ObservationModel object")
        return model
    if model not in _DEFINITIONS:
        raise PriorError(
            f"unknown observation model {model!r}; choose one of {', '.join(OBSERVATION_MODELS)}"
        )
    definition = _DEFINITIONS[model]
    resolved = dict(definition.get("options", {}))
    for key, value in options.items():
        if key not in resolved:
            allowed = ", ".join(resolved) or "none"
            raise PriorError(
                f"observation model {model!r} has no option {key!r} (options: {allowed})"
            )
        resolved[key] = float(value)
    if "delta" in resolved and not resolved["delta"] > 0:
        raise PriorError(f"huber delta must be positive, got {resolved['delta']}")
    return ObservationModel(
        model,
        definition["parameters"],
        resolved,
        outcomes=definition.get("outcomes", ("loss", "error")),
        description=definition["description"],
        needs_trials=definition.get("needs_trials", False),
        continuous=definition.get("continuous", True),
        correlated=definition.get("correlated", False),
    )


class Censored(dist.Distribution):
    """A continuous distribution with some observations censored.

    ``codes`` per observation: 0 the value is exact (density), 1 right-censored (the true value is
    at least the recorded one: ``log(1 - F(y))``), -1 left-censored (at most: ``log F(y)``).
    Samples are drawn from the uncensored distribution.
    """

    arg_constraints = {}

    def __init__(self, base, codes, *, validate_args=None):
        self.base = base
        self.codes = jnp.asarray(codes)
        batch_shape = jax.lax.broadcast_shapes(base.batch_shape, jnp.shape(self.codes))
        super().__init__(batch_shape=batch_shape, validate_args=validate_args)

    @property
    def support(self):
        return self.base.support

    def log_prob(self, value):
        cdf = jnp.clip(self.base.cdf(value), 1e-300, 1.0)
        survival = jnp.clip(1.0 - self.base.cdf(value), 1e-300, 1.0)
        return jnp.where(
            self.codes == 1,
            jnp.log(survival),
            jnp.where(self.codes == -1, jnp.log(cdf), self.base.log_prob(value)),
        )

    def sample(self, key, sample_shape=()):
        return jnp.broadcast_to(
            self.base.sample(key, sample_shape), sample_shape + self.batch_shape
        )


def curve_labels(group_codes: Mapping[str, Any], n: int) -> np.ndarray:
    """A label per run (or forecast point) naming its curve: its combination of group codes,
    the same for every run when there are no groups. The random walk of ``lognormal_walk`` is
    one per curve."""
    if not group_codes:
        return np.array(["all"] * n, dtype=object)
    columns = [np.asarray(v) for v in group_codes.values()]
    return np.array(["/".join(map(str, row)) for row in zip(*columns, strict=True)], dtype=object)


def walk_positions(log_x: np.ndarray, blocks: np.ndarray) -> np.ndarray:
    """Each run's log input above the smallest of its curve (``blocks`` labels the curves)."""
    log_x = np.asarray(log_x, dtype=np.float64)
    start = {b: log_x[blocks == b].min() for b in np.unique(blocks)}
    return log_x - np.array([start[b] for b in blocks])


class LogNormalWalk(dist.Distribution):
    """Runs of a curve whose log outcomes scatter around the law with a random-walk error.

    ``log y = log_mean + w + eps`` with ``eps ~ Normal(0, sigma^2 I)`` and ``w`` jointly normal,
    ``Cov(w_i, w_j) = tau_i tau_j min(s_i, s_j)`` for runs of the same curve (``block``) and 0
    across curves; ``s`` (``position``) is each run's log input above its curve's smallest. The
    density is of ``y`` itself (the Jacobian ``-sum log y`` is included), so it compares with the
    other observation models under PSIS-LOO.

    Parameters
    ----------
    log_mean : array, shape (n,)
    sigma, tau : scalar or array broadcastable to (n,)
    position : array, shape (n,)
    block : integer array, shape (n,)
    valid : bool array, shape (n,), optional
        Runs to observe; the others (padding of a batched fit) contribute exactly nothing.

    Examples
    --------
    >>> import numpy as np
    >>> walk = LogNormalWalk(np.zeros(3), 0.1, 0.2, np.array([0.0, 1.0, 2.0]), np.zeros(3, int))
    >>> np.asarray(walk.covariance(), dtype=np.float64).round(3).tolist()
    [[0.01, 0.0, 0.0], [0.0, 0.05, 0.04], [0.0, 0.04, 0.09]]
    """

    arg_constraints = {}
    support = dist.constraints.independent(dist.constraints.positive, 1)

    def __init__(self, log_mean, sigma, tau, position, block, valid=None, *, validate_args=None):
        self.log_mean = jnp.asarray(log_mean)
        n = self.log_mean.shape[-1]
        self.sigma = jnp.broadcast_to(jnp.asarray(sigma), (n,))
        self.tau = jnp.broadcast_to(jnp.asarray(tau), (n,))
        self.position = jnp.asarray(position)
        self.block = jnp.asarray(block)
        self.valid = jnp.ones(n, bool) if valid is None else jnp.broadcast_to(valid, (n,))
        super().__init__(batch_shape=(), event_shape=(n,), validate_args=validate_args)

    def mask(self, mask):
        """Padded runs are dropped from the joint density (not masked one by one)."""
        return LogNormalWalk(
            self.log_mean, self.sigma, self.tau, self.position, self.block, self.valid & mask
        )

    def covariance(self):
        """Covariance of ``log y``; rows of runs that are not observed are those of I."""
        same = (self.block[:, None] == self.block[None, :]) & (
            self.valid[:, None] & self.valid[None, :]
        )
        walk = jnp.minimum(self.position[:, None], self.position[None, :])
        walk = jnp.where(same, self.tau[:, None] * self.tau[None, :] * walk, 0.0)
        noise = jnp.where(self.valid, self.sigma**2, 1.0)
        return walk + jnp.diag(noise)

    def _residual(self, value):
        return jnp.where(self.valid, jnp.log(value) - self.log_mean, 0.0)

    def log_prob(self, value):
        factor = jnp.linalg.cholesky(self.covariance())
        z = jax.scipy.linalg.solve_triangular(factor, self._residual(value), lower=True)
        observed = jnp.sum(self.valid)
        return (
            -0.5 * jnp.sum(z**2)
            - jnp.sum(jnp.log(jnp.diagonal(factor)))
            - 0.5 * observed * math.log(2 * math.pi)
            - jnp.sum(jnp.where(self.valid, jnp.log(value), 0.0))
        )

    def pointwise_log_prob(self, value):
        """Each run's leave-one-out density ``p(y_i | y_-i)`` (0 for unobserved runs).

        For a normal vector with precision ``P`` and residual ``r``, ``log y_i`` given the others
        is normal with variance ``1 / P_ii`` and mean ``log y_i - (P r)_i / P_ii`` (Burkner,
        Gabry & Vehtari 2021, Computational Statistics 36: 1243-1261).
        """
        factor = jnp.linalg.cholesky(self.covariance())
        precision = jax.scipy.linalg.cho_solve((factor, True), jnp.eye(factor.shape[0]))
        diagonal = jnp.diagonal(precision)
        g = precision @ self._residual(value)
        log_density = (
            -0.5 * math.log(2 * math.pi)
            + 0.5 * jnp.log(diagonal)
            - 0.5 * g**2 / diagonal
            - jnp.log(value)
        )
        return jnp.where(self.valid, log_density, 0.0)

    def sample(self, key, sample_shape=()):
        factor = jnp.linalg.cholesky(self.covariance())
        z = jax.random.normal(key, sample_shape + self.event_shape)
        return jnp.exp(self.log_mean + z @ factor.T)


def huber_log_normaliser(delta: float) -> float:
    """``log Z(delta)`` of the unit-scale Huber density ``exp(-rho_delta(u)) / Z``.

    ``Z = sqrt(2 pi) (2 Phi(delta) - 1) + 2 exp(-delta^2 / 2) / delta``: the Gaussian core on
    ``[-delta, delta]`` plus two exponential tails.
    """
    core = math.sqrt(2 * math.pi) * math.erf(delta / math.sqrt(2))
    tails = 2 * math.exp(-0.5 * delta**2) / delta
    return math.log(core + tails)


class Huber(dist.Distribution):
    """The normalised Huber density with location ``loc``, scale ``scale`` and knee ``delta``.

    ``p(x) = exp(-rho_delta((x - loc) / scale)) / (scale Z(delta))`` with
    ``rho_delta(u) = u^2 / 2`` for ``|u| <= delta`` and ``delta (|u| - delta / 2)`` beyond.
    Small ``delta`` makes it nearly a Laplace density; large ``delta`` a Gaussian one. This is
    the likelihood whose maximum is the Huber-loss fit of Hoffmann et al. (2022) and Besiroglu et
    al. (2024), with the scale made explicit so that it can be sampled.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> d = Huber(0.0, 1.0, delta=1e3)  # a huge knee: the standard normal density
    >>> round(float(d.log_prob(jnp.array(0.0))), 4)
    -0.9189
    """

    arg_constraints = {"loc": dist.constraints.real, "scale": dist.constraints.positive}
    support = dist.constraints.real
    reparametrized_params = ["loc", "scale"]

    def __init__(self, loc, scale, delta, *, validate_args=None):
        self.loc, self.scale = promote_shapes(loc, scale)
        self.delta = float(delta)
        batch_shape = jax.lax.broadcast_shapes(jnp.shape(loc), jnp.shape(scale))
        super().__init__(batch_shape=batch_shape, validate_args=validate_args)

    @validate_sample
    def log_prob(self, value):
        u = (value - self.loc) / self.scale
        absolute = jnp.abs(u)
        rho = jnp.where(
            absolute <= self.delta, 0.5 * u**2, self.delta * (absolute - 0.5 * self.delta)
        )
        return -rho - huber_log_normaliser(self.delta) - jnp.log(self.scale)

    def sample(self, key, sample_shape=()):
        shape = sample_shape + self.batch_shape
        k_choice, k_core, k_tail, k_sign = jax.random.split(key, 4)
        delta = self.delta
        core_mass = math.sqrt(2 * math.pi) * math.erf(delta / math.sqrt(2))
        p_core = core_mass / math.exp(huber_log_normaliser(delta))
        core = jax.random.truncated_normal(k_core, -delta, delta, shape)
        tail = delta + jax.random.exponential(k_tail, shape) / delta
        sign = jnp.where(jax.random.bernoulli(k_sign, 0.5, shape), 1.0, -1.0)
        u = jnp.where(jax.random.uniform(k_choice, shape) < p_core, core, sign * tail)
        return self.loc + self.scale * u

    def cdf(self, value):
        u = (value - self.loc) / self.scale
        delta = self.delta
        z = math.exp(huber_log_normaliser(delta))
        tail = math.exp(-0.5 * delta**2) / delta
        left = jnp.exp(delta * jnp.minimum(u, -delta) + 0.5 * delta**2) / delta
        core = tail + math.sqrt(2 * math.pi) * (ndtr(jnp.clip(u, -delta, delta)) - ndtr(-delta))
        right = z - jnp.exp(-delta * jnp.maximum(u, delta) + 0.5 * delta**2) / delta
        return jnp.where(u <= -delta, left, jnp.where(u <= delta, core, right)) / z

    @property
    def mean(self):
        return jnp.broadcast_to(self.loc, self.batch_shape)
