"""Autoencoders: encoder and decoder blocks, tied stacks, stochastic codes, corruption noise.

SPEC.md section 6 (documents 000-003). An autoencoder is an encoder h = f(x) and a decoder
r = g(h) trained on L(x, g(f(x))) (002: f*, g* = argmin_{f,g} L(x, g(f(x)))). It is
*undercomplete* when the code has fewer units than the input (dim h < dim x) and
*overcomplete* otherwise; an overcomplete code without a regularizer can learn to copy its
input (003). The pieces here:

* :class:`DenseEncoder`, :class:`DenseDecoder`, :class:`ConvEncoder`, :class:`ConvDecoder`:
  blocks that :class:`Autoencoder` puts together (untied weights).
* :class:`TiedStack`: a deep autoencoder of :class:`~lexicon.nn.tying.TiedAutoencoder`
  layers, each decoding with its encoder kernel transposed; layer l alone is what greedy
  layer-wise pretraining trains (001's deep autoencoder).
* Stochastic encoders and decoders p_encoder(h|x), p_decoder(x|h) (000, 002):
  :class:`StochasticAutoencoder` with a Gaussian encoder h ~ N(f(x), sigma^2 I), and a
  Bernoulli or Gaussian decoder given by its log-likelihood and its sampler.
* :func:`corrupt`: the x~ = x + eta of a denoising autoencoder (002, 003), Gaussian or
  masking noise, a function of its key only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from lexicon.nn import conv
from lexicon.nn.tying import TiedAutoencoder

Activation = Callable[[jax.Array], jax.Array]


def identity(x: jax.Array) -> jax.Array:
    return x


def regime(features: int, code: int) -> str:
    """'undercomplete' (dim h < dim x), 'complete' or 'overcomplete' (dim h > dim x)."""
    if code < features:
        return "undercomplete"
    return "complete" if code == features else "overcomplete"


# --- deterministic blocks ----------------------------------------------------------------------


class DenseEncoder(nn.Module):
    """h = f(x): dense hidden layers with ``activation``, then the code layer of ``code``
    units with ``code_activation`` (identity: a linear code). Images are flattened first."""

    hidden: Sequence[int]
    code: int
    activation: Activation = nn.relu
    code_activation: Activation = identity

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim > 2:
            x = x.reshape(x.shape[0], -1)
        for i, width in enumerate(self.hidden):
            x = self.activation(nn.Dense(width, name=f"hidden_{i}")(x))
        return self.code_activation(nn.Dense(self.code, name="code")(x))


class DenseDecoder(nn.Module):
    """r = g(h): dense hidden layers with ``activation``, then ``features`` outputs with
    ``output_activation`` (identity for a Gaussian / squared-error decoder; the logits of a
    Bernoulli decoder are the identity outputs too). ``shape`` reshapes the output."""

    hidden: Sequence[int]
    features: int
    activation: Activation = nn.relu
    output_activation: Activation = identity
    shape: tuple | None = None

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        for i, width in enumerate(self.hidden):
            h = self.activation(nn.Dense(width, name=f"hidden_{i}")(h))
        r = self.output_activation(nn.Dense(self.features, name="output")(h))
        return r if self.shape is None else r.reshape(*r.shape[:-1], *self.shape)


class ConvEncoder(nn.Module):
    """h = f(x) for images (N, H, W, C): 3x3 convolutions of stride 2 with ``channels``
    feature maps each (every one halves the side), flattened, then a dense code layer."""

    channels: Sequence[int]
    code: int
    activation: Activation = nn.relu
    code_activation: Activation = identity
    conv_impl: str = "auto"  # see lexicon.nn.conv.Conv

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i, c in enumerate(self.channels):
            layer = conv.Conv(
                c, (3, 3), strides=2, padding="SAME", name=f"conv_{i}", impl=self.conv_impl
            )
            x = self.activation(layer(x))
        x = x.reshape(x.shape[0], -1)
        return self.code_activation(nn.Dense(self.code, name="code")(x))


class ConvDecoder(nn.Module):
    """r = g(h) back to images of ``shape`` (H, W, C): a dense layer to the smallest feature
    map, then 3x3 transposed convolutions of stride 2 (``channels`` in the encoder's order,
    used in reverse), each doubling the side, and a last 3x3 convolution to C channels. H and
    W must be multiples of 2^len(channels) after the encoder's 'SAME' halvings (28 -> 14 -> 7
    for two layers)."""

    channels: Sequence[int]
    shape: tuple
    activation: Activation = nn.relu
    output_activation: Activation = identity
    conv_impl: str = "auto"  # of the last convolution (transposed ones stay XLA's)

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        height, width, out_channels = self.shape
        factor = 2 ** len(self.channels)
        side_h, side_w = math.ceil(height / factor), math.ceil(width / factor)
        channels = list(self.channels)[::-1]
        x = self.activation(nn.Dense(side_h * side_w * channels[0], name="project")(h))
        x = x.reshape(h.shape[0], side_h, side_w, channels[0])
        for i, c in enumerate(channels):
            x = nn.ConvTranspose(c, (3, 3), strides=(2, 2), padding="SAME", name=f"deconv_{i}")(x)
            x = self.activation(x)
        x = conv.Conv(out_channels, (3, 3), padding="SAME", name="output", impl=self.conv_impl)(x)
        return self.output_activation(x[:, :height, :width, :])


class Autoencoder(nn.Module):
    """r = g(f(x)) with an encoder and a decoder block of its own (untied weights).

    ``__call__`` returns the reconstruction; ``encode`` and ``decode`` give the halves (call
    them with ``model.apply(variables, x, method=Autoencoder.encode)``).
    """

    encoder: nn.Module
    decoder: nn.Module

    def encode(self, x: jax.Array) -> jax.Array:
        return self.encoder(x)

    def decode(self, h: jax.Array) -> jax.Array:
        return self.decoder(h)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.decode(self.encode(x))


def dense_autoencoder(
    features: int,
    code: int,
    hidden: Sequence[int] = (),
    *,
    activation: Activation = nn.relu,
    code_activation: Activation = identity,
    output_activation: Activation = identity,
) -> Autoencoder:
    """A symmetric dense autoencoder features -> hidden -> code -> reversed(hidden) -> features.

    With no hidden layers and identity activations it is the linear autoencoder whose optimum
    under squared error spans the top-``code`` principal subspace of the data."""
    return Autoencoder(
        DenseEncoder(tuple(hidden), code, activation, code_activation),
        DenseDecoder(tuple(hidden)[::-1], features, activation, output_activation),
    )


def conv_autoencoder(
    shape: tuple,
    code: int,
    channels: Sequence[int] = (16, 32),
    *,
    activation: Activation = nn.relu,
    output_activation: Activation = identity,
    conv_impl: str = "auto",
) -> Autoencoder:
    """A convolutional autoencoder for images of ``shape`` (H, W, C) with a dense code;
    ``conv_impl`` as in :func:`lexicon.nn.conv.Conv`."""
    return Autoencoder(
        ConvEncoder(tuple(channels), code, activation, conv_impl=conv_impl),
        ConvDecoder(
            tuple(channels), tuple(shape), activation, output_activation, conv_impl=conv_impl
        ),
    )


class TiedStack(nn.Module):
    """A deep autoencoder made of tied one-layer autoencoders (``TiedAutoencoder``).

    ``sizes`` = (D, H_1, ..., H_L). Layer l encodes h_l = f(h_{l-1} W_l + b_l) and decodes
    with the transpose of its own kernel, g(h_l W_l^T + c_l); the whole stack encodes
    through layers 1..L and decodes back through L..1. Layer 1 decodes to the input with
    ``output_activation``, deeper layers to the code below with ``activation``.

    ``layer_reconstruction(x, l)`` returns (h_{l-1}, reconstruction of h_{l-1} by layer l
    alone) with the layers below held fixed (``stop_gradient``): the loss of greedy
    layer-wise pretraining, one layer at a time (001's deep autoencoder).
    """

    sizes: Sequence[int]
    activation: Activation = nn.sigmoid
    output_activation: Activation = identity

    def setup(self):
        self.layers = [
            TiedAutoencoder(
                features=self.sizes[i],
                latent_features=self.sizes[i + 1],
                encoder_activation=self.activation,
                decoder_activation=self.output_activation if i == 0 else self.activation,
                name=f"layer_{i}",
            )
            for i in range(len(self.sizes) - 1)
        ]

    def encode(self, x: jax.Array, depth: int | None = None) -> jax.Array:
        """The code of the first ``depth`` layers (all of them by default)."""
        for layer in self.layers[: len(self.layers) if depth is None else depth]:
            x = layer.encode(x)
        return x

    def decode(self, h: jax.Array) -> jax.Array:
        for layer in reversed(self.layers):
            h = layer.decode(h)
        return h

    def layer_reconstruction(self, x: jax.Array, layer: int) -> tuple[jax.Array, jax.Array]:
        below = jax.lax.stop_gradient(self.encode(x, layer))
        return below, self.layers[layer](below)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.decode(self.encode(x))


# --- stochastic encoders and decoders ----------------------------------------------------------

LOG_2PI = math.log(2 * math.pi)


def bernoulli_log_likelihood(x: jax.Array, logits: jax.Array) -> jax.Array:
    """log p_decoder(x|h) = sum_d [x_d log p_d + (1 - x_d) log(1 - p_d)], p = sigmoid(logits),
    summed over every axis but the first (one value per example). Its negative is the binary
    cross-entropy, the reconstruction loss of binary (or [0, 1]) data."""
    terms = x * jax.nn.log_sigmoid(logits) + (1 - x) * jax.nn.log_sigmoid(-logits)
    return jnp.sum(terms.reshape(terms.shape[0], -1), axis=-1)


def gaussian_log_likelihood(x: jax.Array, mean: jax.Array, log_var) -> jax.Array:
    """log N(x; mean, diag(exp(log_var))) = -1/2 sum_d [(x_d - mean_d)^2 / sigma_d^2
    + log sigma_d^2 + log 2 pi], one value per example. With a fixed sigma its negative is the
    squared error ||x - mean||^2 / (2 sigma^2) plus a constant."""
    log_var = jnp.broadcast_to(log_var, mean.shape)
    terms = jnp.square(x - mean) * jnp.exp(-log_var) + log_var + LOG_2PI
    return -0.5 * jnp.sum(terms.reshape(terms.shape[0], -1), axis=-1)


def sample_bernoulli(key: jax.Array, logits: jax.Array) -> jax.Array:
    """x ~ Bernoulli(sigmoid(logits)), as float 0/1."""
    return jax.random.bernoulli(key, jax.nn.sigmoid(logits)).astype(logits.dtype)


def sample_gaussian(key: jax.Array, mean: jax.Array, log_var) -> jax.Array:
    """x = mean + sigma eps, eps ~ N(0, I), sigma = exp(log_var / 2)."""
    eps = jax.random.normal(key, mean.shape, mean.dtype)
    return mean + jnp.exp(0.5 * jnp.asarray(log_var, mean.dtype)) * eps


DECODERS = ("bernoulli", "gaussian")


class StochasticAutoencoder(nn.Module):
    """p_encoder(h|x) = N(h; f(x), code_sigma^2 I) and p_decoder(x|h), Bernoulli or Gaussian.

    000 and 002 extend the deterministic f and g to distributions, f(x) -> p(h|x) and
    g(h) -> p(x|h). The decoder network gives the parameters of p(x|h): Bernoulli logits, or a
    Gaussian mean with one learned log-variance shared by the features (``log_var``,
    initialized at 0).
    ``__call__(x, key)`` draws h from the encoder (code_sigma = 0: h = f(x)) and returns the
    per-example log p_decoder(x|h), the quantity whose negative the autoencoder minimizes.
    """

    encoder: nn.Module
    decoder: nn.Module
    decoder_kind: str = "bernoulli"
    code_sigma: float = 0.0

    def setup(self):
        if self.decoder_kind not in DECODERS:
            raise ValueError(f"unknown decoder {self.decoder_kind!r}; choose one of {DECODERS}")
        if self.decoder_kind == "gaussian":
            self.log_var = self.param("log_var", nn.initializers.zeros, (1,))

    def encode(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """A draw h ~ p_encoder(h|x); its mean f(x) without a key or with code_sigma = 0."""
        mean = self.encoder(x)
        if key is None or self.code_sigma == 0:
            return mean
        return mean + self.code_sigma * jax.random.normal(key, mean.shape, mean.dtype)

    def decoder_params(self, h: jax.Array) -> tuple[jax.Array, jax.Array | None]:
        """(logits, None) for Bernoulli, (mean, log-variance) for Gaussian."""
        out = self.decoder(h)
        if self.decoder_kind == "bernoulli":
            return out, None
        return out, jnp.broadcast_to(self.log_var.reshape((1,) * (out.ndim - 1) + (-1,)), out.shape)

    def log_likelihood(self, x: jax.Array, h: jax.Array) -> jax.Array:
        """log p_decoder(x|h), one value per example."""
        location, log_var = self.decoder_params(h)
        if self.decoder_kind == "bernoulli":
            return bernoulli_log_likelihood(x, location)
        return gaussian_log_likelihood(x, location, log_var)

    def sample(self, h: jax.Array, key: jax.Array) -> jax.Array:
        """x ~ p_decoder(x|h)."""
        location, log_var = self.decoder_params(h)
        if self.decoder_kind == "bernoulli":
            return sample_bernoulli(key, location)
        return sample_gaussian(key, location, log_var)

    def mean(self, h: jax.Array) -> jax.Array:
        """E[x|h]: sigmoid(logits) for Bernoulli, the mean for Gaussian."""
        location, _ = self.decoder_params(h)
        return jax.nn.sigmoid(location) if self.decoder_kind == "bernoulli" else location

    def __call__(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
        return self.log_likelihood(x, self.encode(x, key))


# --- denoising: the corruption x~ of the input --------------------------------------------------

NOISES = ("gaussian", "masking")


def corrupt(key: jax.Array, x: jax.Array, kind: str, level: float) -> jax.Array:
    """x~ for a denoising autoencoder, trained on ||g(f(x~)) - x||^2 (003).

    gaussian: x~ = x + eta, eta ~ N(0, level^2 I) (002's x~ = x + eta).
    masking: each input is set to 0 with probability ``level`` (missing inputs, 002's
    "entradas perdidas"; Vincent et al. 2008), i.e. eta = -x on the dropped inputs.
    The result depends on ``key`` alone: the same key gives the same x~.
    """
    if kind == "gaussian":
        return x + level * jax.random.normal(key, x.shape, x.dtype)
    if kind == "masking":
        keep = jax.random.bernoulli(key, 1.0 - level, x.shape)
        return jnp.where(keep, x, jnp.zeros_like(x))
    raise ValueError(f"unknown noise {kind!r}; choose one of {', '.join(NOISES)}")


class StackedClassifier(nn.Module):
    """A softmax classifier on the last code of a :class:`TiedStack` (001's deep autoencoder:
    "at the end, use the last hidden layer as the input of a classifier").

    ``layer_reconstruction`` is the stack's greedy pretraining loss for one layer; with
    ``frozen=True`` the classifier's gradient stops at the code, so only the head learns.
    """

    sizes: Sequence[int]
    classes: int
    frozen: bool = False
    activation: Activation = nn.sigmoid

    def setup(self):
        self.stack = TiedStack(self.sizes, self.activation)
        self.head = nn.Dense(self.classes)

    def layer_reconstruction(self, x: jax.Array, layer: int) -> tuple[jax.Array, jax.Array]:
        return self.stack.layer_reconstruction(x, layer)

    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        del train  # no dropout or batch norm: the same in training and evaluation
        h = self.stack.encode(x)
        return self.head(jax.lax.stop_gradient(h) if self.frozen else h)
