"""Safe arithmetic formulas for scaling laws.

A law's mean function can be written as text, for example ``"E + A / N^alpha + B / D^beta"``.
The text is parsed with :mod:`ast` and checked against a short whitelist: numbers, the names the
law declares, the operators ``+ - * / ^ **`` and the functions in :data:`FUNCTIONS`. Anything else
(attribute access, indexing, calls to unknown names, strings, comparisons, lambdas) is refused
with a :class:`~bayescale.errors.FormulaError`. User text is never passed to ``eval``: the checked
tree is walked by a small interpreter that calls the array library's functions directly, so the
same formula runs on JAX (numpyro), NumPy or PyTensor (PyMC).

The interpreter can also evaluate the *logarithm* of a formula stably: sums of positive terms
become ``logaddexp``, products become sums of logs and ``x^a`` becomes ``a * log(x)``. For the
Chinchilla law this turns ``log(E + A/N^alpha + B/D^beta)`` into the log-sum-exp form that Hoffmann
et al. (2022) and Besiroglu et al. (2024) fit, without the user writing it.

Examples
--------
>>> import numpy as np
>>> f = parse_formula("E + A / N^alpha", names=["E", "A", "alpha", "N"])
>>> float(f.evaluate({"E": 1.0, "A": 4.0, "alpha": 0.5, "N": 16.0}, ops=NUMPY_OPS))
2.0
>>> parse_formula("N.__class__", names=["N"])
Traceback (most recent call last):
...
bayescale.errors.FormulaError: formula 'N.__class__': attribute access ('.__class__') is not allowed
"""

from __future__ import annotations

import ast
import functools
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

from bayescale.errors import FormulaError

MAX_FORMULA_LENGTH = 4000
"""Longest formula text accepted (characters); longer text is refused before parsing."""

FUNCTIONS: dict[str, int] = {
    "exp": 1,
    "log": 1,
    "log10": 1,
    "log2": 1,
    "log1p": 1,
    "expm1": 1,
    "sqrt": 1,
    "abs": 1,
    "tanh": 1,
    "sigmoid": 1,
    "softplus": 1,
    "logaddexp": 2,
    "min": 2,
    "max": 2,
    "effective_epochs": 2,
    "m4_logit": 2,
}
"""Functions a formula may call, with the number of arguments each takes.

``effective_epochs(r, tau)`` is the number of passes over *fresh* data worth ``r`` passes over a
pool whose utility halves every ``tau`` passes (Goyal et al. 2024); see
:func:`effective_epochs`. ``m4_logit(r, alpha)`` solves the implicit equation of the M4 law of
Alabdulmohsin et al. (2022); see :func:`m4_logit`.
"""

CONSTANTS: dict[str, float] = {"pi": math.pi}
"""Named constants a formula may use. Laws may not declare names that clash with these."""

RESERVED_NAMES = frozenset(FUNCTIONS) | frozenset(CONSTANTS)


def _numpy_sigmoid(x):
    from scipy.special import expit  # no overflow warning for large negative x

    return expit(x)


EXACT_PASSES = 64
"""Passes summed term by term in :func:`effective_epochs`; later passes use a closed-form tail."""


def effective_epochs(r, tau, xp=np, exp1=None):
    """Fresh-data epochs worth ``r`` passes over a pool whose utility halves every ``tau`` passes.

    Goyal et al. (2024, "Scaling Laws for Data Filtering", arXiv:2404.07177; authors' code
    ``objective.py`` in locuslab/scaling_laws_data_filtering) model the error after ``n`` samples
    drawn from a pool of ``S`` unique samples as ``y = (a n / 1e5)^b`` on the first pass, and on
    pass ``k + 1`` (``k = 0, 1, ...``) the utility decays to ``b_k = b 0.5^(k / tau)``, so that
    each later pass multiplies the error by ``(n_end / n_start)^(b_k)``. With ``r = n / S`` passes
    the error is therefore ``(a S e(r, tau) / 1e5)^b`` where ``e`` is this function:

    ``e(r, tau) = min(r, 1) exp(G(r, tau))``,
    ``G(r, tau) = sum_{k >= 1} 0.5^(k / tau) log(clip(r, k, k + 1) / k)``.

    Each term is the log growth of the samples seen during pass ``k + 1``; passes not reached
    (``k >= r``) contribute ``log(k / k) = 0``, which is the masking. Without decay
    (``tau -> inf``) the sum telescopes to ``log r`` and ``e = r``; with decay ``e`` grows ever
    more slowly and tends to a finite limit: repeating a pool forever is worth a bounded number
    of fresh epochs.

    The first :data:`EXACT_PASSES` passes are summed exactly. The rest use
    ``sum_{k > K} 0.5^(k/tau) log(clip(r,k,k+1)/k) ~ c [E1(lam (K+1)) - E1(lam max(r, K+1))]``
    with ``lam = log(2) / tau``, ``c = lam / (1 - exp(-lam))`` (the per-pass weight matched on
    each pass) and ``E1`` the exponential integral; the absolute error of ``G`` is below
    ``2e-5`` for every ``r`` and ``tau`` (tests compare against the pass-by-pass product up to
    20,000 passes). Memory stays that of the broadcast inputs (no axis over passes).

    Parameters
    ----------
    r : array-like
        Passes over the pool, ``n / S`` (positive).
    tau : array-like
        Repetition half-life in passes (positive).
    xp : module
        ``numpy`` or ``jax.numpy``.
    exp1 : callable, optional
        The exponential integral ``E1`` of that library (SciPy's by default).

    Examples
    --------
    >>> round(float(effective_epochs(0.5, 2.0)), 6)  # within the first pass: no repetition
    0.5
    >>> round(float(effective_epochs(10.0, 1e9)), 6)  # no decay: every pass counts in full
    10.0
    >>> float(effective_epochs(10.0, 2.0)) < 10.0
    True
    """
    if exp1 is None:
        from scipy.special import exp1
    r, tau = xp.broadcast_arrays(xp.asarray(r, dtype=float), xp.asarray(tau, dtype=float))
    rate = math.log(2.0) / tau
    gain = xp.zeros_like(r)
    for k in range(1, EXACT_PASSES + 1):
        gain = gain + xp.exp(-rate * k) * xp.log(xp.clip(r, k, k + 1) / k)
    first_tail = rate * (EXACT_PASSES + 1)
    last = rate * xp.maximum(r, EXACT_PASSES + 1)
    gain = gain + rate / -xp.expm1(-rate) * (exp1(first_tail) - exp1(last))
    return xp.minimum(r, 1.0) * xp.exp(gain)


M4_NEWTON_STEPS = 12
"""Newton steps of :func:`m4_logit` before its two differentiable ones. Measured over
``r`` in [-80, 80] and ``alpha`` in [0.001, 50]: 10 steps reach a relative error of 2e-13 against
200 steps; 8 reach 1e-8."""


def m4_logit(r, alpha, ops=None):
    """The logit ``t`` of the share ``s = sigmoid(t)`` solving ``log s - alpha log(1 - s) = r``.

    Alabdulmohsin, Neyshabur & Zhai (2022, "Revisiting Neural Scaling Laws in Language and
    Vision", NeurIPS, arXiv:2209.06640, section 3, estimator M4; authors' code
    ``revisiting_neural_scaling_laws/methods/m4.py`` in google-research) define the loss
    ``L_x`` at scale ``x`` implicitly by ``(L_x - L_inf) / (L_0 - L_x)^alpha = beta x^c``. With
    ``A = L_0 - L_inf`` and the share ``s = (L_x - L_inf) / A`` this reads
    ``A^(1 - alpha) s / (1 - s)^alpha = beta x^c``, that is
    ``log s - alpha log(1 - s) = r`` with ``r = log(beta x^c) - (1 - alpha) log A``. In the
    logit ``t`` of ``s`` the left side is ``g(t) = t + (alpha - 1) softplus(t)``: increasing
    (slope between ``min(1, alpha)`` and ``max(1, alpha)``), and convex for ``alpha > 1``,
    concave for ``alpha < 1``, so there is exactly one root, and Newton's method started at
    ``max(r, 0) + min(r, 0) / alpha`` (a point on the side of the root where the tangent does not
    overshoot) converges to it monotonically. With ``alpha = 1``, ``t = r`` (the log-logistic
    curve).

    The :data:`M4_NEWTON_STEPS` search steps are taken with the gradient stopped; two more
    steps from that root, differentiable in ``r`` and ``alpha``, give the implicit function's
    exact first and second derivatives (each Newton step squares the error in ``t``, so the
    error after two steps is of fourth order in a change of ``r`` or ``alpha``).

    Parameters
    ----------
    r : array-like
        Right-hand side, ``log(beta x^c) - (1 - alpha) log A``.
    alpha : array-like
        M4's shape exponent (positive).
    ops : SimpleNamespace, optional
        The array functions (:data:`NUMPY_OPS` by default, :func:`jax_ops`, :func:`pytensor_ops`);
        they need ``softplus``, ``sigmoid``, ``max``, ``min`` and ``stop_gradient``.

    Examples
    --------
    >>> round(float(m4_logit(0.7, 1.0)), 12)  # alpha = 1: the log-logistic curve
    0.7
    >>> t = float(m4_logit(-3.0, 0.4))
    >>> s = 1 / (1 + np.exp(-t))
    >>> round(float(np.log(s) - 0.4 * np.log(1 - s)), 10)
    -3.0
    """
    ops = NUMPY_OPS if ops is None else ops

    def newton_step(t, r, alpha):
        residual = t + (alpha - 1.0) * ops.softplus(t) - r
        return t - residual / (1.0 + (alpha - 1.0) * ops.sigmoid(t))

    fixed_r, fixed_alpha = ops.stop_gradient(r), ops.stop_gradient(alpha)
    t = ops.max(fixed_r, 0.0) + ops.min(fixed_r, 0.0) / fixed_alpha
    for _ in range(M4_NEWTON_STEPS):
        t = newton_step(t, fixed_r, fixed_alpha)
    t = ops.stop_gradient(t)
    return newton_step(newton_step(t, r, alpha), r, alpha)


NUMPY_OPS = SimpleNamespace(
    exp=np.exp,
    log=np.log,
    log10=np.log10,
    log2=np.log2,
    log1p=np.log1p,
    expm1=np.expm1,
    sqrt=np.sqrt,
    abs=np.abs,
    tanh=np.tanh,
    sigmoid=_numpy_sigmoid,
    softplus=lambda x: np.logaddexp(0.0, x),
    logaddexp=np.logaddexp,
    min=np.minimum,
    max=np.maximum,
    effective_epochs=effective_epochs,
    m4_logit=lambda r, alpha: m4_logit(r, alpha, NUMPY_OPS),
    power=np.power,
    stop_gradient=lambda x: x,
)
"""The array functions used to evaluate formulas with NumPy."""


def jax_ops() -> SimpleNamespace:
    """Return the array functions used to evaluate formulas with JAX.

    Built on demand so that importing this module does not import JAX.
    """
    import jax
    import jax.numpy as jnp
    from jax.scipy.special import exp1

    ops = SimpleNamespace(
        exp=jnp.exp,
        log=jnp.log,
        log10=jnp.log10,
        log2=jnp.log2,
        log1p=jnp.log1p,
        expm1=jnp.expm1,
        sqrt=jnp.sqrt,
        abs=jnp.abs,
        tanh=jnp.tanh,
        sigmoid=jax.nn.sigmoid,
        softplus=jax.nn.softplus,
        logaddexp=jnp.logaddexp,
        min=jnp.minimum,
        max=jnp.maximum,
        effective_epochs=lambda r, tau: effective_epochs(r, tau, xp=jnp, exp1=exp1),
        m4_logit=lambda r, alpha: m4_logit(r, alpha, ops),
        power=jnp.power,
        stop_gradient=jax.lax.stop_gradient,
    )
    return ops


def pytensor_ops() -> SimpleNamespace:
    """Return the array functions used to evaluate formulas with PyTensor (the PyMC backend).

    One line per function of :data:`FUNCTIONS`, plus ``power`` for the ``^`` operator and
    ``stop_gradient`` (used by :func:`m4_logit`). Plain
    numbers are made float64 tensors first: PyTensor would otherwise store a number that float32
    represents exactly (``480.0``) as a float32 constant and compute its ``log`` in float32.
    Built on demand so that importing this module does not import PyTensor.
    """
    import pytensor.tensor as pt
    from pytensor.gradient import disconnected_grad

    functions = {
        "exp": pt.exp,
        "log": pt.log,
        "log10": pt.log10,
        "log2": pt.log2,
        "log1p": pt.log1p,
        "expm1": pt.expm1,
        "sqrt": pt.sqrt,
        "abs": pt.abs,
        "tanh": pt.tanh,
        "sigmoid": pt.sigmoid,
        "softplus": pt.softplus,
        "logaddexp": pt.logaddexp,
        "min": pt.minimum,
        "max": pt.maximum,
        "power": pt.power,
    }

    def float64(value):
        return value if isinstance(value, pt.Variable) else np.asarray(value, dtype=np.float64)

    def on_float64(function):
        return lambda *arguments: function(*(float64(a) for a in arguments))

    tensor_namespace = SimpleNamespace(
        asarray=lambda value, dtype=None: pt.as_tensor_variable(value).astype("float64"),
        broadcast_arrays=pt.broadcast_arrays,
        zeros_like=pt.zeros_like,
        exp=pt.exp,
        log=pt.log,
        expm1=pt.expm1,
        clip=pt.clip,
        maximum=pt.maximum,
        minimum=pt.minimum,
    )
    exp1 = _pytensor_exp1()
    functions["effective_epochs"] = lambda r, tau: effective_epochs(
        r, tau, xp=tensor_namespace, exp1=exp1
    )
    functions["m4_logit"] = lambda r, alpha: m4_logit(r, alpha, ops)
    functions["stop_gradient"] = disconnected_grad
    ops = SimpleNamespace(**{name: on_float64(f) for name, f in functions.items()})
    return ops


@functools.cache
def _pytensor_exp1():
    """The exponential integral ``E1`` as a PyTensor operation (SciPy's values, gradient
    ``-exp(-x) / x``, JAX's ``exp1`` when PyMC runs the graph with a JAX sampler).

    PyTensor has no ``E1``; built on first use so that importing this module needs no PyTensor.
    PyTensor's Numba backend runs it in object mode (SciPy's function, called per array).
    """
    import pytensor.tensor as pt
    import scipy.special
    from pytensor.graph.basic import Apply
    from pytensor.graph.op import Op
    from pytensor.link.jax.dispatch import jax_funcify

    class Exp1(Op):
        __props__ = ()

        def make_node(self, x):
            x = pt.as_tensor_variable(x)
            return Apply(self, [x], [x.type()])

        def perform(self, node, inputs, outputs):
            value = scipy.special.exp1(inputs[0])
            outputs[0][0] = np.asarray(value, dtype=node.outputs[0].dtype)

        def pullback(self, inputs, outputs, cotangents):
            (x,) = inputs
            return [cotangents[0] * (-pt.exp(-x) / x)]

    @jax_funcify.register(Exp1)
    def _jax_exp1(op, **kwargs):
        from jax.scipy.special import exp1

        return exp1

    return Exp1()


_BINARY_OPERATORS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow)
_UNARY_OPERATORS = (ast.UAdd, ast.USub)
_ALWAYS_POSITIVE_FUNCTIONS = frozenset({"exp", "sigmoid", "softplus"})


@dataclass(frozen=True, eq=False)
class Formula:
    """A parsed, checked formula.

    Build it with :func:`parse_formula`; do not construct it directly.

    Attributes
    ----------
    text : str
        The formula as the user wrote it.
    names : frozenset of str
        The declared names the formula uses.
    """

    text: str
    names: frozenset[str]
    _tree: ast.expr

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Formula) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def evaluate(self, values: Mapping[str, Any], ops: SimpleNamespace | None = None):
        """Evaluate the formula.

        Parameters
        ----------
        values : mapping of str to array-like
            A value for every name in :attr:`names`. Arrays broadcast against each other.
        ops : namespace, optional
            The array functions to use (:data:`NUMPY_OPS`, :func:`jax_ops` or
            :func:`pytensor_ops`). Defaults to JAX.

        Returns
        -------
        array
        """
        ops = ops if ops is not None else jax_ops()
        return _Evaluator(values, {}, frozenset(), ops).value(self._tree)

    def evaluate_log(
        self,
        values: Mapping[str, Any],
        logs: Mapping[str, Any] | None = None,
        positive: Collection[str] = (),
        ops: SimpleNamespace | None = None,
    ):
        """Evaluate the natural logarithm of the formula in a numerically stable way.

        Parameters
        ----------
        values : mapping of str to array-like
            A value for every name in :attr:`names`.
        logs : mapping of str to array-like, optional
            Logarithms already known for some names (for example parameters sampled on the log
            scale); they are used instead of ``log(value)``.
        positive : collection of str
            Names known to be strictly positive. Only sums whose terms are all provably positive
            are rewritten as ``logaddexp``; anything else falls back to ``log(value)``.
        ops : namespace, optional
            As in :meth:`evaluate`.
        """
        ops = ops if ops is not None else jax_ops()
        return _Evaluator(values, dict(logs or {}), frozenset(positive), ops).log(self._tree)

    def is_positive(self, positive: Collection[str]) -> bool:
        """Whether the formula is provably positive when the names in ``positive`` are."""
        return _is_positive(self._tree, frozenset(positive))


def parse_formula(text: str, names: Collection[str]) -> Formula:
    """Parse and check a formula.

    Parameters
    ----------
    text : str
        Arithmetic over numbers, the declared ``names``, ``+ - * /``, powers written ``^`` or
        ``**``, parentheses, the constant ``pi`` and the functions in :data:`FUNCTIONS`.
    names : collection of str
        The names the formula may use (a law's inputs and parameters).

    Returns
    -------
    Formula

    Raises
    ------
    FormulaError
        If the text is not valid arithmetic or uses anything outside the whitelist.

    Examples
    --------
    >>> f = parse_formula("a * x^-b", names=["a", "b", "x"])
    >>> sorted(f.names)
    ['a', 'b', 'x']
    >>> parse_formula("open('x')", names=["x"])
    Traceback (most recent call last):
    ...
    bayescale.errors.FormulaError: formula "open('x')": unknown function 'open'; allowed: ...
    """
    if not isinstance(text, str):
        raise FormulaError(f"a formula must be a string, got {type(text).__name__}")
    shown = text if len(text) <= 80 else text[:77] + "..."
    if len(text) > MAX_FORMULA_LENGTH:
        raise FormulaError(f"formula {shown!r} is longer than {MAX_FORMULA_LENGTH} characters")
    if not text.strip():
        raise FormulaError("formula is empty")
    declared = frozenset(names)
    try:
        tree = ast.parse(text.replace("^", "**").strip(), mode="eval")
    except SyntaxError as exc:
        raise FormulaError(f"formula {shown!r} is not valid arithmetic: {exc.msg}") from None
    except (RecursionError, MemoryError, ValueError):
        raise FormulaError(f"formula {shown!r} is too deeply nested to parse") from None
    used: set[str] = set()
    try:
        _check(tree.body, declared, used, shown)
    except RecursionError:
        raise FormulaError(f"formula {shown!r} is too deeply nested") from None
    return Formula(text=text, names=frozenset(used), _tree=tree.body)


def _check(node: ast.AST, declared: frozenset[str], used: set[str], shown: str) -> None:
    """Raise FormulaError unless every node of the tree is on the whitelist."""

    def refuse(what: str) -> FormulaError:
        return FormulaError(f"formula {shown!r}: {what} is not allowed")

    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise refuse(f"the constant {node.value!r}")
        return
    if isinstance(node, ast.Name):
        if node.id in CONSTANTS:
            return
        if node.id in FUNCTIONS:
            raise FormulaError(f"formula {shown!r}: function {node.id!r} must be called")
        if node.id not in declared:
            known = ", ".join(sorted(declared)) or "none"
            raise FormulaError(f"formula {shown!r}: unknown name {node.id!r}; declared: {known}")
        used.add(node.id)
        return
    if isinstance(node, ast.BinOp):
        if not isinstance(node.op, _BINARY_OPERATORS):
            raise refuse(f"the operator {type(node.op).__name__}")
        _check(node.left, declared, used, shown)
        _check(node.right, declared, used, shown)
        return
    if isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, _UNARY_OPERATORS):
            raise refuse(f"the operator {type(node.op).__name__}")
        _check(node.operand, declared, used, shown)
        return
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name):
            raise refuse("calling anything but a named function")
        name = node.func.id
        if name not in FUNCTIONS:
            allowed = ", ".join(sorted(FUNCTIONS))
            raise FormulaError(f"formula {shown!r}: unknown function {name!r}; allowed: {allowed}")
        if node.keywords:
            raise refuse(f"a keyword argument in {name}()")
        if any(isinstance(arg, ast.Starred) for arg in node.args):
            raise refuse(f"argument unpacking in {name}()")
        if len(node.args) != FUNCTIONS[name]:
            raise FormulaError(
                f"formula {shown!r}: {name}() takes {FUNCTIONS[name]} argument(s), "
                f"got {len(node.args)}"
            )
        for arg in node.args:
            _check(arg, declared, used, shown)
        return
    if isinstance(node, ast.Attribute):
        raise refuse(f"attribute access ('.{node.attr}')")
    if isinstance(node, ast.Subscript):
        raise refuse("indexing")
    raise refuse(f"a {type(node).__name__} expression")


def _is_positive(node: ast.AST, positive: frozenset[str]) -> bool:
    if isinstance(node, ast.Constant):
        return node.value > 0
    if isinstance(node, ast.Name):
        return node.id in positive or node.id in CONSTANTS
    if isinstance(node, ast.BinOp):
        if isinstance(node.op, ast.Pow):
            return _is_positive(node.left, positive)
        if isinstance(node.op, ast.Add | ast.Mult | ast.Div):
            return _is_positive(node.left, positive) and _is_positive(node.right, positive)
        return False
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd):
        return _is_positive(node.operand, positive)
    if isinstance(node, ast.Call):
        name = node.func.id
        if name in _ALWAYS_POSITIVE_FUNCTIONS:
            return True
        if name == "sqrt":
            return _is_positive(node.args[0], positive)
        if name in ("min", "max"):
            return all(_is_positive(arg, positive) for arg in node.args)
        if name == "effective_epochs":
            return _is_positive(node.args[0], positive)
    return False


class _Evaluator:
    """Walks a checked tree; ``value`` computes the formula, ``log`` its logarithm."""

    def __init__(self, values, logs, positive, ops):
        self.values = values
        self.logs = logs
        self.positive = positive | frozenset(logs)
        self.ops = ops

    def value(self, node: ast.AST):
        ops = self.ops
        if isinstance(node, ast.Constant):
            return float(node.value)
        if isinstance(node, ast.Name):
            if node.id in CONSTANTS:
                return CONSTANTS[node.id]
            if node.id in self.values:
                return self.values[node.id]
            return ops.exp(self.logs[node.id])
        if isinstance(node, ast.BinOp):
            left, right = self.value(node.left), self.value(node.right)
            if isinstance(node.op, ast.Add):
                return left + right
            if isinstance(node.op, ast.Sub):
                return left - right
            if isinstance(node.op, ast.Mult):
                return left * right
            if isinstance(node.op, ast.Div):
                return left / right
            return ops.power(left, right)
        if isinstance(node, ast.UnaryOp):
            operand = self.value(node.operand)
            return -operand if isinstance(node.op, ast.USub) else operand
        # ast.Call: the only remaining node type after _check
        function = getattr(ops, node.func.id)
        return function(*(self.value(arg) for arg in node.args))

    def log(self, node: ast.AST):
        ops = self.ops
        if not _is_positive(node, self.positive):
            return ops.log(self.value(node))
        if isinstance(node, ast.Constant):
            return math.log(node.value)
        if isinstance(node, ast.Name):
            if node.id in CONSTANTS:
                return math.log(CONSTANTS[node.id])
            if node.id in self.logs:
                return self.logs[node.id]
            return ops.log(self.values[node.id])
        if isinstance(node, ast.BinOp):
            if isinstance(node.op, ast.Add):
                return ops.logaddexp(self.log(node.left), self.log(node.right))
            if isinstance(node.op, ast.Mult):
                return self.log(node.left) + self.log(node.right)
            if isinstance(node.op, ast.Div):
                return self.log(node.left) - self.log(node.right)
            # ast.Pow with a positive base
            return self.value(node.right) * self.log(node.left)
        if isinstance(node, ast.UnaryOp):
            return self.log(node.operand)
        name = node.func.id
        if name == "exp":
            return self.value(node.args[0])
        if name == "sqrt":
            return 0.5 * self.log(node.args[0])
        if name == "sigmoid":
            return -ops.softplus(-self.value(node.args[0]))
        return ops.log(self.value(node))


def constant_value(text: str) -> float:
    """Evaluate a formula without names (``"log(500)"``, ``"-1e-3"``) to a float.

    Used for the arguments of prior specifications.

    Examples
    --------
    >>> round(constant_value("log(500)"), 4)
    6.2146
    """
    formula = parse_formula(text, names=())
    with np.errstate(all="ignore"):
        result = float(formula.evaluate({}, ops=NUMPY_OPS))
    if not math.isfinite(result):
        raise FormulaError(f"{text!r} does not evaluate to a finite number")
    return result
