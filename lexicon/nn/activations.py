"""Activation functions of a single unit, a_i = g(in_i) (SPEC.md section 3).

Every function here is pure and elementwise, so it works under ``jax.jit``, ``jax.vmap`` and
``jax.grad``. Learned activations (PReLU, maxout) carry parameters and therefore live as Linen
modules in :mod:`lexicon.nn.layers`.

Derivatives are the ones reverse-mode autodiff produces:

===================  ==============================  =========================================
function             g(x)                            g'(x) as ``jax.grad`` returns it
===================  ==============================  =========================================
``step``             1 if x >= t else 0              0 everywhere (also at x = t; never NaN)
``sign``             +1 if x >= 0 else -1            0 everywhere (also at x = 0; never NaN)
``sigmoid``          1 / (1 + e^-x)                  g(x) (1 - g(x))
``tanh``             tanh x                          1 - tanh^2 x
``relu``             max(0, x)                       1 if x > 0 else 0 (0 at x = 0)
``leaky_relu``       x if x >= 0 else a x            1 if x >= 0 else a (1 at x = 0)
``abs``              |x|                             sign(x), with +1 at x = 0 (see below)
``identity``         x                               1
===================  ==============================  =========================================

At a kink autodiff returns one subgradient, and the table names which. For absolute-value
rectification any value in [-1, 1] is a subgradient at 0; ``jnp.abs`` gives +1 there (the
derivative of the x >= 0 branch), so |g'(x)| = 1 at every x, 0 included.

Use :func:`get` to turn a config string into one of these functions.
"""

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from lexicon import losses

Activation = Callable[[jax.Array], jax.Array]

DEFAULT_LEAKY_SLOPE = 0.01


def step(x: jax.Array, threshold: float = 0.0) -> jax.Array:
    """Threshold (Heaviside) unit: step_t(x) = 1 if x >= t, else 0.

    The output keeps the dtype of ``x``. Its derivative is 0 almost everywhere and autodiff
    returns 0 at every point, which is why the perceptron rule, not backprop, trains it.
    """
    return jnp.where(x >= threshold, jnp.ones_like(x), jnp.zeros_like(x))


def sign(x: jax.Array) -> jax.Array:
    """Sign unit: sign(x) = +1 if x >= 0, else -1 (note: +1 at x = 0, unlike ``jnp.sign``).

    Derivative 0 everywhere as autodiff gives it.
    """
    return jnp.where(x >= 0, jnp.ones_like(x), -jnp.ones_like(x))


def sigmoid(x: jax.Array) -> jax.Array:
    """Logistic sigmoid: sigmoid(x) = 1 / (1 + e^-x); derivative sigmoid(x) (1 - sigmoid(x)).

    Computed with ``jax.nn.sigmoid`` because the literal quotient gives a NaN gradient for
    large negative x (inf / inf); the values are the same.
    """
    return jax.nn.sigmoid(x)


def tanh(x: jax.Array) -> jax.Array:
    """Hyperbolic tangent: tanh(x) = (e^x - e^-x) / (e^x + e^-x); derivative 1 - tanh^2(x)."""
    return jnp.tanh(x)


def relu(x: jax.Array) -> jax.Array:
    """Rectified linear unit: relu(x) = max(0, x); derivative 1 for x > 0, 0 for x <= 0."""
    return jax.nn.relu(x)


def leaky_relu(x: jax.Array, negative_slope: float = DEFAULT_LEAKY_SLOPE) -> jax.Array:
    """Leaky ReLU: g(x) = x if x >= 0 else a x, with a fixed small slope a (default 0.01).

    One of the document's remedies for units that stop learning when ReLU outputs 0: the
    gradient for x < 0 is a instead of 0.
    """
    return jnp.where(x >= 0, x, negative_slope * x)


def absolute_value_rectification(x: jax.Array) -> jax.Array:
    """Absolute-value rectification: g(x) = |x| (the ReLU family with slope -1 for x < 0).

    One of the document's remedies for dead units: |g'(x)| = 1 on both sides of 0, so a unit
    passes gradient back whatever the sign of its input. Derivative sign(x); autodiff
    (``jnp.abs``) picks the subgradient +1 at x = 0.
    """
    return jnp.abs(x)


def identity(x: jax.Array) -> jax.Array:
    """Linear (identity) output: g(x) = x; derivative 1."""
    return x


_REGISTRY: dict[str, Activation] = {
    "step": step,
    "sign": sign,
    "sigmoid": sigmoid,
    "tanh": tanh,
    "relu": relu,
    "leaky_relu": leaky_relu,
    "abs": absolute_value_rectification,
    "identity": identity,
}

NAMES: tuple[str, ...] = tuple(_REGISTRY)


def get(name: str) -> Activation:
    """Returns the activation function registered as ``name`` (one of :data:`NAMES`).

    ``step`` uses threshold 0 and ``leaky_relu`` slope 0.01; wrap the functions with
    ``functools.partial`` for other values.

    Raises:
      ValueError: if ``name`` is not registered; the message lists the valid names.
    """
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown activation {name!r}; valid names: {', '.join(NAMES)}") from None


def _np_sigmoid(x):
    return 1 / (1 + np.exp(-x))


# name -> (g'(x) in NumPy float64, its formula): the closed forms of the table above, to hold
# jax.grad against.
DERIVATIVES: dict[str, tuple[Callable, str]] = {
    "step": (np.zeros_like, "0"),
    "sign": (np.zeros_like, "0"),
    "sigmoid": (lambda x: _np_sigmoid(x) * (1 - _np_sigmoid(x)), "g (1 - g)"),
    "tanh": (lambda x: 1 - np.tanh(x) ** 2, "1 - tanh^2"),
    "relu": (lambda x: (x > 0).astype(float), "1 if x > 0 else 0"),
    "leaky_relu": (
        lambda x: np.where(x >= 0, 1.0, DEFAULT_LEAKY_SLOPE),
        f"1 if x >= 0 else {DEFAULT_LEAKY_SLOPE}",
    ),
    "abs": (lambda x: np.where(x >= 0, 1.0, -1.0), "+1 if x >= 0 else -1"),
    "identity": (np.ones_like, "1"),
}


def derivative_table(functions: dict, x) -> dict:
    """Autodiff against closed forms: name -> (g(x), g'(x) as ``jax.grad`` gives it, the closed
    form g'(x) in NumPy float64, its formula) at the points ``x`` taken as float32.

    functions: name -> (g, closed-form g' in NumPy, its formula), g a scalar function; e.g.
    ``{n: (get(n), *DERIVATIVES[n]) for n in NAMES}``.
    """
    points = jnp.asarray(x, jnp.float32)
    table = {}
    for name, (g, closed_form, formula) in functions.items():
        value, slope = jax.jit(jax.vmap(jax.value_and_grad(g)))(points)
        exact = np.asarray(closed_form(np.asarray(points, np.float64)), np.float64)
        table[name] = (np.asarray(value), np.asarray(slope), exact, formula)
    return table


# --- what the units of an MLP do: per-layer gradients and dead units --------------------------


def dense_kernels(params) -> list:
    """The kernels of an MLP's Dense layers (``Dense_0``, ``Dense_1``, ...), first layer first."""
    names = sorted((k for k in params if k.startswith("Dense_")), key=lambda k: int(k[6:]))
    return [params[k]["kernel"] for k in names]


def layer_gradient_norms(grads) -> dict:
    """||dL/dW_l||_F of every layer l = 1..L, as scalar metrics grad_norm_01, grad_norm_02, ..."""
    return {
        f"grad_norm_{layer:02d}": jnp.linalg.norm(kernel)
        for layer, kernel in enumerate(dense_kernels(grads), start=1)
    }


def unit_activity(loss: Callable, params, x: jax.Array, y: jax.Array, pieces: int = 1) -> jax.Array:
    """(hidden layers, units): sum over examples e of |dL_e / dW_in(unit)|, the gradient that
    example e alone sends to each hidden unit's incoming weights; ``loss(params, x, y)``.

    Zero means no example sends any: the unit is dead (a ReLU unit that is never active, for
    one). A maxout unit owns ``pieces`` kernel columns (piece j of unit i is column
    j * width + i, the layout of lexicon.nn.layers.max_over_pieces).
    """
    per_example = jax.vmap(lambda xe, ye: dense_kernels(jax.grad(loss)(params, xe[None], ye[None])))
    kernels = per_example(x, y)[:-1]  # the output layer has no hidden units
    return jnp.stack([jnp.abs(k).sum(axis=(0, 1)).reshape(pieces, -1).sum(axis=0) for k in kernels])


@functools.partial(jax.jit, static_argnames=("model", "pieces"))
def classifier_diagnostics(model, params, split: dict, pieces: int = 1) -> dict:
    """What the units of an MLP classifier do on a whole split, per seed (leading axis).

    The loss is the mean softmax cross-entropy of ``model.apply`` (logits) on split["x"],
    split["y"] (integer labels). Returns gradient_norms (layers,), ||dL/dW_l||_F of every
    Dense kernel, output layer last; activity (depth, width) from :func:`unit_activity`, zero
    for a dead unit; pre_activations (depth, examples, units), the inputs in_i of the hidden
    units (for maxout, every piece) as the model sows them.
    """

    def per_seed(p):
        def loss(q, x, y):
            logits = model.apply({"params": q}, x)
            return losses.softmax_cross_entropy_with_integer_labels(logits, y)

        grads = jax.grad(loss)(p, split["x"], split["y"])
        _, state = model.apply({"params": p}, split["x"], mutable=["intermediates"])
        return {
            "gradient_norms": jnp.stack([jnp.linalg.norm(k) for k in dense_kernels(grads)]),
            "activity": unit_activity(loss, p, split["x"], split["y"], pieces),
            "pre_activations": jnp.stack(state["intermediates"]["pre_activations"][:-1]),
        }

    return jax.vmap(per_seed)(params)
