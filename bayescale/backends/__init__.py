"""Inference backends other than the default numpyro one.

=========  =======================================================================================
backend    what runs the model
=========  =======================================================================================
numpyro    the default: :func:`bayescale.model.numpyro_model` sampled by numpyro's NUTS on JAX
pymc       :func:`bayescale.backends.pymc.pymc_model`: the same model written in PyMC, sampled by
           PyMC's own NUTS or by any NUTS implementation PyMC can call (numpyro, blackjax, nutpie)
=========  =======================================================================================

Every backend returns the same :class:`~bayescale.results.Fit`: the same posterior variables,
dims and coordinates, so a fit can be checked against another backend's, saved, loaded and
forecast in the same way. Choose the backend with ``bs.fit(..., backend="pymc")`` or
``bayescale fit ... --backend pymc``.
"""

BACKENDS = ("numpyro", "pymc")
"""Names accepted by ``bs.fit(backend=...)``."""

PYMC_NUTS_SAMPLERS = ("pymc", "numpyro", "blackjax", "nutpie")
"""NUTS implementations the PyMC backend can use (``nuts_sampler=``)."""
