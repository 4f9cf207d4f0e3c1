"""Parameter tying and sharing as Linen modules (SPEC.md section 4).

Document 001 lists forcing parameters to be equal as a way to put prior knowledge into a
model (the same idea that gives convolutional layers their shared kernels). Two reusable
patterns:

* :class:`TiedAutoencoder`: the decoder reuses the encoder kernel transposed,
  h = f(x W + b_h), r = g(h W^T + b_x), so W is one parameter used twice and its gradient is
  the sum of the encoder-path and decoder-path contributions.
* :class:`Siamese`: one branch module applied to two inputs; both outputs come from the same
  weights because Linen shares a submodule's parameters across calls.
"""

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp


def _identity(x: jax.Array) -> jax.Array:
    return x


class TiedAutoencoder(nn.Module):
    """One-hidden-layer autoencoder whose decoder kernel is the encoder kernel transposed.

        h = encoder_activation(x W + b_h),   W of shape (features, latent_features)
        r = decoder_activation(h W^T + b_x)

    Parameters: ``kernel`` (features x latent_features), ``hidden_bias`` (latent_features),
    ``visible_bias`` (features): features * latent_features + latent_features + features in
    all, against 2 * features * latent_features + latent_features + features untied.

    Attributes:
      features: input (and reconstruction) dimension D.
      latent_features: code dimension H.
      encoder_activation: f.
      decoder_activation: g (identity gives a linear decoder, suitable for MSE).
      kernel_init: initializer of W.
    """

    features: int
    latent_features: int
    encoder_activation: Callable[[jax.Array], jax.Array] = nn.sigmoid
    decoder_activation: Callable[[jax.Array], jax.Array] = _identity
    kernel_init: Callable = nn.initializers.glorot_uniform()

    def setup(self):
        self.kernel = self.param("kernel", self.kernel_init, (self.features, self.latent_features))
        self.hidden_bias = self.param("hidden_bias", nn.initializers.zeros, (self.latent_features,))
        self.visible_bias = self.param("visible_bias", nn.initializers.zeros, (self.features,))

    def encode(self, x: jax.Array) -> jax.Array:
        """h = f(x W + b_h)."""
        return self.encoder_activation(jnp.dot(x, self.kernel) + self.hidden_bias)

    def decode(self, h: jax.Array) -> jax.Array:
        """r = g(h W^T + b_x): the transpose of the encoder kernel, not a second matrix."""
        return self.decoder_activation(jnp.dot(h, self.kernel.T) + self.visible_bias)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.decode(self.encode(x))


class Siamese(nn.Module):
    """Apply one branch module to two inputs: (branch(x1), branch(x2)) with shared weights.

    Attributes:
      branch: any Linen module mapping an input to an embedding. It is bound once, so both
        inputs go through exactly the same parameters (there is one ``branch`` subtree in the
        params).
    """

    branch: nn.Module

    def __call__(self, x1: jax.Array, x2: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self.branch(x1), self.branch(x2)
