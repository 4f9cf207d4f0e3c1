"""Weight initializers for the initialization experiment (SPEC.md section 2, "Glorot init").

Every initializer follows the ``jax.nn.initializers`` signature ``init(key, shape, dtype)`` so
it can be handed to ``flax.linen.Dense(kernel_init=...)``. Fan sizes follow the Dense/Conv
kernel layout used by Flax: the last axis is the output axis, the one before it the input
axis, and any leading axes form the receptive field (a conv kernel ``(h, w, in, out)`` has
``m = h w in`` inputs and ``n = h w out`` outputs per unit), exactly as
``jax.nn.initializers.variance_scaling`` counts them.

Relation to the JAX initializers (checked in ``tests/test_init.py``):

* :func:`glorot_uniform` draws from the same distribution as
  ``jax.nn.initializers.glorot_uniform()``, i.e. ``variance_scaling(1, 'fan_avg', 'uniform')``:
  the bound sqrt(3 * 1 / ((m + n) / 2)) = sqrt(6 / (m + n)) is the same. JAX draws
  u ~ U(-1, 1) and multiplies by the bound, while this module draws U(-b, b) directly; both
  map the same random bits through the same affine function, so with the same key the
  numbers agree to float rounding (not always bit for bit).
* :func:`he_uniform` matches ``jax.nn.initializers.he_uniform()`` in the same way.
* :func:`he_normal` is He et al.'s plain normal N(0, 2 / m); ``jax.nn.initializers.he_normal``
  uses a *truncated* normal rescaled to the same variance, so only the variance agrees.
"""

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lexicon.losses import softmax_cross_entropy_with_integer_labels

Initializer = Callable[..., jax.Array]

DEFAULT_SMALL_STDDEV = 0.01


def fans(shape: Sequence[int]) -> tuple[int, int]:
    """Returns (m, n): the number of inputs and outputs of one unit for a kernel ``shape``.

    For a 2-D kernel (m, n) that is its shape; leading axes multiply both by the receptive
    field size.

    Raises:
      ValueError: for shapes with fewer than two axes (a bias has no fan-in/fan-out pair).
    """
    shape = tuple(int(d) for d in shape)
    if len(shape) < 2:
        raise ValueError(f"fan sizes need a kernel of at least 2 axes, got shape {shape}")
    receptive_field = math.prod(shape[:-2])
    return shape[-2] * receptive_field, shape[-1] * receptive_field


def glorot_bound(shape: Sequence[int]) -> float:
    """The Glorot/normalized-initialization bound sqrt(6 / (m + n)) for a kernel ``shape``."""
    m, n = fans(shape)
    return math.sqrt(6.0 / (m + n))


def glorot_uniform(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
    """Normalized (Glorot) initialization: W_ij ~ U(-sqrt(6 / (m + n)), sqrt(6 / (m + n))).

    m is the number of inputs and n the number of outputs (document 001, "Inicializacion";
    SPEC.md section 2). The variance of U(-b, b) is b^2 / 3 = 2 / (m + n).
    """
    bound = glorot_bound(shape)
    return jax.random.uniform(key, tuple(shape), dtype, minval=-bound, maxval=bound)


def he_uniform(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
    """He (Kaiming) uniform initialization: W_ij ~ U(-sqrt(6 / m), sqrt(6 / m)), variance 2 / m.

    The factor 2 compensates for ReLU zeroing half of its inputs.
    """
    m, _ = fans(shape)
    bound = math.sqrt(6.0 / m)
    return jax.random.uniform(key, tuple(shape), dtype, minval=-bound, maxval=bound)


def he_normal(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
    """He (Kaiming) normal initialization: W_ij ~ N(0, 2 / m) (untruncated)."""
    m, _ = fans(shape)
    return math.sqrt(2.0 / m) * jax.random.normal(key, tuple(shape), dtype)


def small_normal(stddev: float = DEFAULT_SMALL_STDDEV) -> Initializer:
    """Returns an initializer drawing W_ij ~ N(0, stddev^2) regardless of layer size.

    The naive choice the initialization experiment contrasts with Glorot/He: with a fixed
    small stddev, activations shrink layer after layer in a deep network.
    """

    def init(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
        return stddev * jax.random.normal(key, tuple(shape), dtype)

    return init


def zeros(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
    """All-zero initialization; ``key`` is unused. Every hidden unit then stays identical
    (no symmetry breaking), which the initialization experiment shows."""
    del key
    return jnp.zeros(tuple(shape), dtype)


_REGISTRY: dict[str, Initializer] = {
    "glorot_uniform": glorot_uniform,
    "he_uniform": he_uniform,
    "he_normal": he_normal,
    "small_normal": small_normal(),
    "zeros": zeros,
}

NAMES: tuple[str, ...] = tuple(_REGISTRY)


def get(name: str, small_stddev: float | None = None) -> Initializer:
    """Returns the initializer registered as ``name`` (one of :data:`NAMES`).

    ``small_normal`` uses stddev 0.01, or ``small_stddev`` when it is given.

    Raises:
      ValueError: if ``name`` is not registered; the message lists the valid names.
    """
    if name == "small_normal" and small_stddev is not None:
        return small_normal(small_stddev)
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown initializer {name!r}; valid names: {', '.join(NAMES)}") from None


# --- what an initialization does to the variances of a deep net -------------------------------
# Var(h_l) = m Var(W_l) E[a_{l-1}^2] for a layer of m inputs (SPEC §2): the linear analysis
# behind Glorot (tanh) and He (ReLU), and its large-width (mean-field) form.


def kernel_variance(init_name: str, fan_in: int, fan_out: int, small_stddev: float) -> float:
    """Var(W_ij) of each initialization: 0, s^2, 2 / (m + n) (Glorot), 2 / m (He)."""
    return {
        "zeros": 0.0,
        "small_normal": small_stddev**2,
        "glorot_uniform": 2.0 / (fan_in + fan_out),
        "he_normal": 2.0 / fan_in,
    }[init_name]


def kernel_variances(init_name: str, widths, small_stddev: float) -> list[float]:
    """Var(W_l) of every layer of a net with layer sizes ``widths`` (inputs first)."""
    return [kernel_variance(init_name, m, n, small_stddev) for m, n in zip(widths[:-1], widths[1:])]


def linear_gain(init_name: str, activation: str, width: int, small_stddev: float) -> float:
    """Factor by which a hidden layer multiplies the variance in the linear analysis.

    Var(h_{l+1}) = m Var(W) E[a_l^2] with m = width inputs; near 0, tanh(h) ~ h keeps
    E[a^2] = Var(h), while ReLU keeps half of it, E[a^2] = Var(h) / 2.
    """
    keep = 1.0 if activation == "tanh" else 0.5
    return width * kernel_variance(init_name, width, width, small_stddev) * keep


def gaussian_moments(activation: str, q, points: int = 301):
    """(E[g(z)], E[g(z)^2]) for z ~ N(0, q), elementwise in q (float64).

    ReLU has closed forms, E[relu(z)] = sqrt(q / (2 pi)) and E[relu(z)^2] = q / 2; tanh is
    odd, so its mean is 0, and E[tanh(z)^2] uses Gauss-Hermite quadrature (probabilists'
    weight e^{-z^2/2}). With 301 nodes the quadrature error is below 1e-9 for q <= 4 (the
    range met here) and below 1% up to q = 100, where tanh^2 nears a step.
    """
    q = np.asarray(q, dtype=np.float64)
    if activation == "relu":
        return np.sqrt(q / (2 * np.pi)), q / 2
    if activation == "tanh":
        nodes, weights = np.polynomial.hermite_e.hermegauss(points)
        weights = weights / weights.sum()
        values = np.tanh(np.sqrt(q)[..., None] * nodes) ** 2
        return np.zeros_like(q), values @ weights
    raise ValueError(f"no Gaussian moments for activation {activation!r}")


def mean_field_variances(x, kernel_variances, width: int, activation: str):
    """Predicted variance of each hidden layer's activations over examples and units.

    For each example x the first pre-activation has q_1 = Var(W_1) ||x||^2; then
    q_{l+1} = Var(W_{l+1}) * width * E[g(z)^2] with z ~ N(0, q_l) (biases are 0). The
    activations a_l then have variance mean_x E[g^2] - (mean_x E[g])^2 across examples and
    units. This is exact in the limit of infinite width.
    """
    q = kernel_variances[0] * np.sum(np.asarray(x, np.float64) ** 2, axis=1)
    predicted = []
    for next_variance in [*kernel_variances[1:], None]:
        mean, second_moment = gaussian_moments(activation, q)
        predicted.append(np.mean(second_moment) - np.mean(mean) ** 2)
        if next_variance is not None:
            q = next_variance * width * second_moment
    return np.array(predicted)


# --- measurements on a network at initialization -----------------------------------------------
# For a lexicon.nn.layers.MLP, which sows the activations of every layer.


def hidden_activations(model, params, x):
    """The activations a_1, ..., a_L of every hidden layer (the output layer left out)."""
    _, state = model.apply({"params": params}, x, mutable=["intermediates"])
    return state["intermediates"]["activations"][:-1]


def activation_variances(model, params, x) -> jax.Array:
    """Var(a_l) over all examples and units of each hidden layer l: shape (L,)."""
    return jnp.stack([jnp.var(a) for a in hidden_activations(model, params, x)])


def weight_gradient_variances(model, params, x, y) -> jax.Array:
    """Var(dJ/dW_l) over the entries of every kernel (hidden layers and output), J = CE."""

    def loss(p):
        return softmax_cross_entropy_with_integer_labels(model.apply({"params": p}, x), y)

    grads = jax.grad(loss)(params)
    kernels = [grads[f"Dense_{i}"]["kernel"] for i in range(len(grads))]
    return jnp.stack([jnp.var(k) for k in kernels])


def unit_spread(model, params, x) -> jax.Array:
    """Largest gap between two units of the same hidden layer, over layers and examples.

    max_l max_x (max_i a_{l,i}(x) - min_i a_{l,i}(x)); 0 means every layer's units compute
    the same function, the signature of an initialization that never broke the symmetry.
    """
    gaps = [jnp.max(a.max(-1) - a.min(-1)) for a in hidden_activations(model, params, x)]
    return jnp.max(jnp.stack(gaps))


def variances_at_init(model, params, x, y) -> tuple[np.ndarray, np.ndarray]:
    """:func:`activation_variances` and :func:`weight_gradient_variances` of a stack of nets
    (``params`` with a leading axis, e.g. the seeds of ``train.init_states``), as one compiled
    program: arrays of shape (nets, hidden layers) and (nets, hidden layers + output layer)."""

    def measure(params, x, y):
        return activation_variances(model, params, x), weight_gradient_variances(
            model, params, x, y
        )

    # Data enter as arguments: arrays closed over would become constants of the program.
    activations, gradients = jax.jit(jax.vmap(measure, in_axes=(0, None, None)))(params, x, y)
    return np.asarray(activations), np.asarray(gradients)
