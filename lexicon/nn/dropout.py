"""Dropout with keep probabilities, and Monte Carlo dropout prediction (SPEC.md section 4).

Document 001 describes dropout as multiplying unit outputs by a random binary mask drawn anew
for each minibatch, keeping input units with probability 0.8 and hidden units with probability
0.5. This module uses *inverted* scaling: during training a kept unit is divided by its keep
probability p,

    y = m * x / p,   m ~ Bernoulli(p) independently per unit,

so E[y] = x and evaluation needs no rescaling: at evaluation time dropout is the identity.
"""

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

INPUT_KEEP_PROB = 0.8
HIDDEN_KEEP_PROB = 0.5


def dropout(
    x: jax.Array, keep_prob: float, key: jax.Array | None, deterministic: bool = False
) -> jax.Array:
    """Inverted dropout y = m * x / keep_prob with m ~ Bernoulli(keep_prob) per entry.

    With ``deterministic=True`` or ``keep_prob == 1`` the input is returned unchanged and no
    key is needed. ``keep_prob`` and ``deterministic`` are static Python values (they choose
    the program); ``x`` and ``key`` may be traced.
    """
    if not 0.0 < keep_prob <= 1.0:
        raise ValueError(f"keep_prob must be in (0, 1], got {keep_prob}")
    if deterministic or keep_prob == 1.0:
        return x
    if key is None:
        raise ValueError("dropout in training mode needs a PRNG key")
    mask = jax.random.bernoulli(key, keep_prob, jnp.shape(x))
    return jnp.where(mask, x / keep_prob, jnp.zeros_like(x))


class Dropout(nn.Module):
    """Linen inverted-dropout layer parameterized by the keep probability.

    Attributes:
      keep_prob: probability p that a unit is kept (0.8 for inputs, 0.5 for hidden units in
        document 001).
      deterministic: default mode; can be overridden per call. True means evaluation mode.
      rng_collection: the rng stream the mask is drawn from (``rngs={'dropout': key}``).
    """

    keep_prob: float
    deterministic: bool | None = None
    rng_collection: str = "dropout"

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool | None = None) -> jax.Array:
        deterministic = nn.merge_param("deterministic", self.deterministic, deterministic)
        if deterministic or self.keep_prob == 1.0:
            return dropout(x, self.keep_prob, None, deterministic=True)
        return dropout(x, self.keep_prob, self.make_rng(self.rng_collection))


class DropoutMLP(nn.Module):
    """Multilayer perceptron with input and hidden dropout as document 001 recommends.

    The input is dropped with ``input_keep_prob`` (0.8) and the output of every hidden layer
    with ``hidden_keep_prob`` (0.5); the output layer is linear (logits). Call with
    ``train=True`` (and a 'dropout' rng) to drop units, ``train=False`` to evaluate.

    Attributes:
      hidden_features: widths of the hidden layers.
      out_features: width of the output layer.
      input_keep_prob: keep probability of the input units.
      hidden_keep_prob: keep probability of the hidden units.
      activation: hidden nonlinearity.
    """

    hidden_features: Sequence[int]
    out_features: int
    input_keep_prob: float = INPUT_KEEP_PROB
    hidden_keep_prob: float = HIDDEN_KEEP_PROB
    activation: Callable[[jax.Array], jax.Array] = nn.relu

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = Dropout(self.input_keep_prob, name="input_dropout")(x, not train)
        for layer, width in enumerate(self.hidden_features):
            x = self.activation(nn.Dense(width, name=f"hidden_{layer}")(x))
            x = Dropout(self.hidden_keep_prob, name=f"hidden_dropout_{layer}")(x, not train)
        return nn.Dense(self.out_features, name="output")(x)


def monte_carlo_average(
    predict_fn: Callable[[jax.Array], jax.Array], key: jax.Array, num_samples: int
) -> jax.Array:
    """(1/T) sum_{t=1}^T predict_fn(k_t) with k_1..k_T = jax.random.split(key, T).

    The T predictions are computed with ``jax.vmap``, so they run as one batched program.
    """
    keys = jax.random.split(key, num_samples)
    return jnp.mean(jax.vmap(predict_fn)(keys), axis=0)


def mc_dropout_predict(
    model: nn.Module,
    variables,
    inputs: jax.Array,
    key: jax.Array,
    num_samples: int,
    output_transform: Callable[[jax.Array], jax.Array] | None = None,
    rng_collection: str = "dropout",
) -> jax.Array:
    """Monte Carlo dropout: average the model's outputs over T sampled dropout masks.

    Calls ``model.apply(variables, inputs, train=True, rngs={rng_collection: k_t})``
    for T keys split from ``key`` and returns the mean of ``output_transform(output)`` (for
    example ``jax.nn.softmax`` to average class probabilities rather than logits).
    """
    transform = output_transform if output_transform is not None else (lambda y: y)

    def predict(sample_key):
        outputs = model.apply(variables, inputs, train=True, rngs={rng_collection: sample_key})
        return transform(outputs)

    return monte_carlo_average(predict, key, num_samples)
