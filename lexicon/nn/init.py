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


def get(name: str) -> Initializer:
    """Returns the initializer registered as ``name`` (one of :data:`NAMES`).

    ``small_normal`` uses stddev 0.01; call :func:`small_normal` for another value.

    Raises:
      ValueError: if ``name`` is not registered; the message lists the valid names.
    """
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown initializer {name!r}; valid names: {', '.join(NAMES)}") from None
