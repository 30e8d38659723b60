"""A model's log density as a value that compiled programs take as an argument.

:func:`bayescale.fit` compiles its work into a few programs: the prior draws that start the
multi-start optimisation, the optimisation itself (:mod:`bayescale.lbfgs`), the carry-over of the
best point to the sampled model's coordinates (when they differ), the Laplace spread of the
chains' starts, the NUTS chains, and the draws after sampling. If these programs closed over the
data, the data would be constants of the programs and every fit would compile them again (4.6 s
of the 7.1 s of a second fit of benchmark (b) did, before this module). Here the data are an
argument: a :class:`Density` is a JAX pytree whose leaves are the design's arrays (and the
centrings of ``centered="auto"`` poolings) and whose static part is the model's
:class:`ModelStructure` and the layout of its flat vector of unconstrained parameters.
Compiled programs are kept per model structure and shapes of the leaves
(:func:`compiled_programs`, for the :data:`PROGRAMS_KEPT` most recently used), so refitting a
data set of the same shapes (other outcomes, another seed) with the same specification and
sampler settings runs the programs already compiled. :func:`bayescale.fit` pads the runs to a
bucket size (:meth:`bayescale.model.Design.padded`), so data sets of nearby sizes have the same
shapes.

Examples
--------
>>> import jax, numpy as np, pandas as pd
>>> from bayescale.data import load_runs
>>> from bayescale.model import Design, ModelSpec
>>> spec = ModelSpec.create("power_law_floor")
>>> def density_of(loss):
...     runs = load_runs(pd.DataFrame({"x": [1e6, 1e7, 1e8], "loss": loss}), law=spec.law,
...                      y="loss")
...     return Density.of(spec, Design.from_runs(runs, spec))
>>> a, b = density_of([3.0, 2.5, 2.2]), density_of([3.1, 2.6, 2.4])
>>> jax.tree.structure(a) == jax.tree.structure(b)  # one compiled program serves both
True
>>> compiled_programs(a) is compiled_programs(b)  # and they share one store of programs
True
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from numpyro.distributions.transforms import biject_to
from numpyro.infer import init_to_sample
from numpyro.infer.util import constrain_fn, potential_energy

from bayescale.model import Design, ModelSpec, numpyro_model

PROGRAMS_KEPT = 8
"""How many model structures (with their array shapes) keep their compiled programs in a process;
the least recently used is dropped first. Measured on a small law (``power_law_floor``,
2026-12-07): keeping every structure's programs, each new shape added about 37 MB to the
process; keeping 8, about 19 MB, which JAX's own caches hold until ``jax.clear_caches()``
(13 MB when every fit compiled its own programs)."""

SAMPLED = "sampled"
"""The model as the specification asks (centred, non-centred or partially centred poolings)."""
NONCENTRED = "noncentred"
"""Every pooling non-centred: the objective of the multi-start optimisation when some pooling is
centred (a centred hierarchy has no mode; see :func:`~bayescale.model.numpyro_model`)."""


@dataclass(frozen=True, eq=False)
class ModelStructure:
    """Everything a model's compiled programs depend on besides array values.

    Two structures are equal when the specifications build the same model
    (:meth:`~bayescale.model.ModelSpec.structure_key`), the group columns have the same numbers
    of labels, and the variant (:data:`SAMPLED` or :data:`NONCENTRED`) is the same. The key is
    computed once: JAX compares structures every time it looks a compiled program up.
    """

    spec: ModelSpec
    group_sizes: tuple[tuple[str, int], ...]
    variant: str = SAMPLED
    key: tuple = field(init=False, repr=False)

    def __post_init__(self):
        key = (self.spec.structure_key(), self.group_sizes, self.variant)
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "_hash", hash(key))

    def __eq__(self, other: object) -> bool:
        return self is other or (isinstance(other, ModelStructure) and self.key == other.key)

    def __hash__(self) -> int:
        return self._hash

    def model(self, data: Mapping[str, Any]):
        """The numpyro model of ``data`` (a :class:`Density`'s leaves)."""
        design = Design.from_arrays(data["design"], dict(self.group_sizes))
        if self.variant == NONCENTRED:
            return numpyro_model(self.spec, design, all_noncentred=True)
        return numpyro_model(self.spec, design, centrings=data.get("centrings"))


@jax.tree_util.register_pytree_node_class
@dataclass(frozen=True, eq=False)
class Density:
    """The log density of one model on one data set, as a function of the model's flat vector of
    unconstrained parameters.

    Build it with :meth:`of`, then give it the parameters' layout with :meth:`laid_out` (or
    :meth:`with_layout`) before calling :meth:`potential`, :meth:`constrained` or
    :meth:`unravel`.
    """

    structure: ModelStructure
    data: Mapping[str, Any]
    """``{"design": Design.arrays(), "centrings": {parameter: per-group centring}}`` (the
    centrings only for a partially centred model)."""
    layout: tuple[tuple[str, tuple[int, ...]], ...] = ()
    """Name and unconstrained shape of every latent site, in the order of the flat vector
    (sorted by name, as :func:`jax.flatten_util.ravel_pytree` orders a dict)."""

    @classmethod
    def of(
        cls,
        spec: ModelSpec,
        design: Design,
        *,
        variant: str = SAMPLED,
        centrings: Mapping[str, Any] | None = None,
    ) -> Density:
        """The density of ``spec`` on ``design``; ``centrings`` partially centre the
        ``centered="auto"`` poolings (non-centred without them)."""
        data: dict[str, Any] = {"design": design.arrays()}
        if centrings:
            data["centrings"] = dict(centrings)
        structure = ModelStructure(spec, tuple(sorted(design.group_sizes.items())), variant)
        density = cls(structure, data)
        density.model()  # a specification the data cannot take fails here, with its message
        return density

    def tree_flatten(self):
        return (self.data,), (self.structure, self.layout)

    @classmethod
    def tree_unflatten(cls, static, leaves):
        return cls(static[0], leaves[0], static[1])

    @property
    def spec(self) -> ModelSpec:
        return self.structure.spec

    def model(self):
        """The numpyro model, ``model(y=None)``."""
        return self.structure.model(self.data)

    @property
    def model_kwargs(self) -> dict[str, Any]:
        """The observed values, as the model's keyword argument ``y``."""
        design = self.data["design"]
        trials = design.get("trials")
        trials = None if trials is None else jnp.asarray(trials)
        return {"y": self.spec.observation.observed(jnp.asarray(design["y"]), trials)}

    def with_layout(self, params: Mapping[str, Any]) -> Density:
        """This density with the layout of ``params`` (unconstrained values of every latent
        site, or anything with their shapes)."""
        layout = tuple((name, tuple(jnp.shape(params[name]))) for name in sorted(params))
        return Density(self.structure, self.data, layout)

    def laid_out(self) -> Density:
        """This density with the layout of its model's latent sites, read off an abstract
        trace of the model (no computation) once per structure and array shapes."""
        store = compiled_programs(self)
        if "layout" not in store:
            store["layout"] = jax.eval_shape(self._unconstrained_sites)
        return self.with_layout(store["layout"])

    def _unconstrained_sites(self) -> dict[str, Any]:
        trace = latent_trace(self.model(), self.model_kwargs, jax.random.PRNGKey(0))
        return {
            name: biject_to(trace[name]["fn"].support).inv(trace[name]["value"])
            for name in latent_sites(trace)
        }

    def positions(self, site: str) -> np.ndarray:
        """Positions of one site's values in the flat vector (none for a site the model does
        not have)."""
        start = 0
        for name, shape in self.layout:
            size = math.prod(shape)
            if name == site:
                return np.arange(start, start + size)
            start += size
        return np.zeros(0, dtype=int)

    def unravel(self, flat) -> dict[str, Any]:
        """The unconstrained sites of a flat vector (the inverse of ``ravel_pytree``)."""
        out, start = {}, 0
        for name, shape in self.layout:
            size = math.prod(shape)
            out[name] = jnp.reshape(flat[start : start + size], shape)
            start += size
        return out

    def potential(self, flat):
        """The negative log density at the flat unconstrained vector ``flat``."""
        return potential_energy(self.model(), (), self.model_kwargs, self.unravel(flat))

    def constrained(self, flat) -> dict[str, Any]:
        """Constrained values and deterministic sites at ``flat``, as numpyro's samples."""
        return constrain_fn(
            self.model(), (), self.model_kwargs, self.unravel(flat), return_deterministic=True
        )


def compiled_programs(density: Density) -> dict[Any, Any]:
    """The store of compiled programs for densities of this structure and these array shapes:
    a dict the caller fills (a name, or any key, to a program). The stores of the
    :data:`PROGRAMS_KEPT` most recently used structures are kept (example in the module's
    docstring). The layout does not enter the key: the structure and the shapes decide it.
    """
    leaves, treedef = jax.tree.flatten(density.data)
    shapes = tuple((np.shape(leaf), str(getattr(leaf, "dtype", type(leaf)))) for leaf in leaves)
    return _programs_of(density.structure, treedef, shapes)


@functools.lru_cache(maxsize=PROGRAMS_KEPT)
def _programs_of(structure, treedef, shapes) -> dict[Any, Any]:
    return {}


def latent_trace(model, model_kwargs: Mapping[str, Any], key) -> dict[str, Any]:
    """A trace of ``model`` at a draw from its priors (traceable): its latent sites, their
    distributions and shapes."""
    seeded = numpyro.handlers.seed(model, key)
    substituted = numpyro.handlers.substitute(seeded, substitute_fn=init_to_sample)
    return numpyro.handlers.trace(substituted).get_trace(**model_kwargs)


def latent_sites(model_trace) -> list[str]:
    """Names of the latent sites of a model trace, in the model's order."""
    return [
        name
        for name, site in model_trace.items()
        if site["type"] == "sample" and not site["is_observed"]
    ]
