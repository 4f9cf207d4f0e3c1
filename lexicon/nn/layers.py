"""Feed-forward layers with parameters: PReLU, maxout, batch norm and a configurable MLP.

SPEC.md section 3 (units in_i = sum_j w_ji a_j, a_i = g(in_i); PReLU and maxout as remedies
for dead ReLUs; deep f(x) = W3 phi3(W2 phi2(W1 phi1(X) + b) + b2) + b3) and section 2 (batch
normalization, document 001). All modules are Flax Linen, so ``init``/``apply`` are pure and
whole training runs can be vmapped over seeds.
"""

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from lexicon.nn import activations
from lexicon.nn import init as initializers

Initializer = Callable[..., jax.Array]

LEARNED_ACTIVATIONS = ("prelu", "maxout")


def _resolve_initializer(kernel_init: Initializer | str) -> Initializer:
    if isinstance(kernel_init, str):
        return initializers.get(kernel_init)
    return kernel_init


def max_over_pieces(pieces: jax.Array, num_pieces: int) -> jax.Array:
    """Maxout nonlinearity: splits the last axis (num_pieces * features) into ``num_pieces``
    groups of ``features`` and returns h_i = max_j z_{j, i}.

    Piece j of unit i is column j * features + i, so with one piece this is the identity.
    """
    if pieces.shape[-1] % num_pieces:
        raise ValueError(
            f"last axis {pieces.shape[-1]} is not a multiple of num_pieces={num_pieces}"
        )
    features = pieces.shape[-1] // num_pieces
    grouped = pieces.reshape(*pieces.shape[:-1], num_pieces, features)
    return jnp.max(grouped, axis=-2)


class PReLU(nn.Module):
    """Parametric ReLU: g(x) = x if x >= 0 else a x, with the slope a learned.

    Attributes:
      per_feature: one slope per feature (last axis), as He et al. do per channel; if False,
        a single scalar slope shared by all units (the layout of ``flax.linen.PReLU``).
      negative_slope_init: initial slope (He et al. use 0.25).
      param_dtype: dtype of the slope parameter.

    The parameter is called ``negative_slope``, as in ``flax.linen.PReLU``.
    """

    per_feature: bool = True
    negative_slope_init: float = 0.25
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        shape = (x.shape[-1],) if self.per_feature else ()
        negative_slope = self.param(
            "negative_slope",
            lambda _key, s: jnp.full(s, self.negative_slope_init, self.param_dtype),
            shape,
        )
        return jnp.where(x >= 0, x, jnp.asarray(negative_slope, x.dtype) * x)


class Maxout(nn.Module):
    """Maxout unit layer: h_i(x) = max_{j = 1..k} (x^T W_{:, j, i} + b_{j, i}).

    Each of the ``features`` outputs is the maximum of ``k`` affine pieces. The parameters are
    a ``kernel`` of shape (in_features, k * features) and a ``bias`` of shape (k * features,),
    the layout of ``flax.linen.Dense(k * features)``; with k = 1 the layer is exactly that
    Dense layer.
    """

    features: int
    k: int = 2
    kernel_init: Initializer | str = initializers.glorot_uniform
    bias_init: Initializer = nn.initializers.zeros
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.k < 1:
            raise ValueError(f"Maxout needs k >= 1 pieces, got k={self.k}")
        width = self.k * self.features
        kernel = self.param(
            "kernel",
            _resolve_initializer(self.kernel_init),
            (x.shape[-1], width),
            self.param_dtype,
        )
        bias = self.param("bias", self.bias_init, (width,), self.param_dtype)
        pieces = jnp.dot(x, kernel.astype(x.dtype)) + bias.astype(x.dtype)
        return max_over_pieces(pieces, self.k)


class BatchNorm(nn.Module):
    """Batch normalization written from the document's formula (001; SPEC.md section 2).

    With H the minibatch of activations, one example per row (m rows):

        mu    = (1/m) sum_i H_i
        sigma = sqrt(delta + (1/m) sum_i (H_i - mu)^2)
        H'    = (H - mu) / sigma,   output = gamma * H' + beta

    delta is ``epsilon``; gamma (``scale``, init 1) and beta (``bias``, init 0) are learned.
    Statistics are per feature (the ``axis``, default last) over every other axis, so for
    conv maps (N, H, W, C) the rows are all N H W positions.

    Train mode (``use_running_average=False``) normalizes with the minibatch statistics and,
    outside of ``init``, updates the ``batch_stats`` collection (``mean``, ``var``; pass
    ``mutable=['batch_stats']`` to ``apply``) as exponential moving averages:
    mean <- momentum mean + (1 - momentum) mu, var <- momentum var + (1 - momentum) sigma_b^2,
    where sigma_b^2 = (1/m) sum_i (H_i - mu)^2 is the biased batch variance. Eval mode
    (``use_running_average=True``) uses those averages in place of mu and sigma_b^2.

    Names, defaults (momentum 0.99, epsilon 1e-5, running mean 0 and var 1 at init) and the
    variable layout are those of ``flax.linen.BatchNorm``, so the two are interchangeable.

    ``affine=False`` is the form the slide prints, H' = (H - mu) / sigma and nothing more: no
    gamma, no beta and no running averages (the module has no variables at all). Train and
    eval mode then compute the same thing: the statistics of the batch it is given (at
    evaluation, the evaluated split or chunk).
    With ``axis_name`` set (inside ``shard_map``/``pmap``/``vmap`` with that axis), mu and
    sigma_b^2 are averaged over the devices of that axis, which equals the statistics of the
    whole global batch when the shards have equal size.
    """

    use_running_average: bool | None = None
    axis: int = -1
    momentum: float = 0.99
    epsilon: float = 1e-5
    use_scale: bool = True
    use_bias: bool = True
    scale_init: Initializer = nn.initializers.ones
    bias_init: Initializer = nn.initializers.zeros
    param_dtype: jnp.dtype = jnp.float32
    axis_name: str | None = None
    affine: bool = True  # False: the slide's literal form (no gamma, beta, running averages)

    @nn.compact
    def __call__(self, x: jax.Array, use_running_average: bool | None = None) -> jax.Array:
        if not self.affine:
            return self._literal(x)
        use_running_average = nn.merge_param(
            "use_running_average", self.use_running_average, use_running_average
        )
        feature_axis = self.axis % x.ndim
        reduction_axes = tuple(i for i in range(x.ndim) if i != feature_axis)
        features = x.shape[feature_axis]
        broadcast_shape = [1] * x.ndim
        broadcast_shape[feature_axis] = features

        running_mean = self.variable(
            "batch_stats", "mean", lambda: jnp.zeros((features,), self.param_dtype)
        )
        running_var = self.variable(
            "batch_stats", "var", lambda: jnp.ones((features,), self.param_dtype)
        )

        if use_running_average:
            mu = running_mean.value.reshape(broadcast_shape).astype(x.dtype)
            variance = running_var.value.reshape(broadcast_shape).astype(x.dtype)
        else:
            mu, variance = self._batch_statistics(x, reduction_axes)
            if not self.is_initializing():
                # Cast back so that the collection keeps its dtype as a lax.scan carry.
                running_mean.value = (
                    self.momentum * running_mean.value + (1 - self.momentum) * mu.reshape(-1)
                ).astype(running_mean.value.dtype)
                running_var.value = (
                    self.momentum * running_var.value + (1 - self.momentum) * variance.reshape(-1)
                ).astype(running_var.value.dtype)

        sigma = jnp.sqrt(self.epsilon + variance)
        normalized = (x - mu) / sigma
        if self.use_scale:
            gamma = self.param("scale", self.scale_init, (features,), self.param_dtype)
            normalized = normalized * gamma.reshape(broadcast_shape).astype(x.dtype)
        if self.use_bias:
            beta = self.param("bias", self.bias_init, (features,), self.param_dtype)
            normalized = normalized + beta.reshape(broadcast_shape).astype(x.dtype)
        return normalized

    def _literal(self, x: jax.Array) -> jax.Array:
        """H' = (H - mu) / sigma with the statistics of this batch, as the slide prints it."""
        feature_axis = self.axis % x.ndim
        reduction_axes = tuple(i for i in range(x.ndim) if i != feature_axis)
        mu, variance = self._batch_statistics(x, reduction_axes)
        return (x - mu) / jnp.sqrt(self.epsilon + variance)

    def _batch_statistics(self, x: jax.Array, reduction_axes) -> tuple[jax.Array, jax.Array]:
        """mu and mean((H - mu)^2) over the batch (and over the devices of ``axis_name``)."""
        # The device axis does not exist while initializing, so flax (and we) skip it there.
        axis_name = None if self.is_initializing() else self.axis_name
        mu = jnp.mean(x, axis=reduction_axes, keepdims=True)
        if axis_name is not None:
            mu = lax.pmean(mu, axis_name)
        variance = jnp.mean(jnp.square(x - mu), axis=reduction_axes, keepdims=True)
        if axis_name is not None:
            variance = lax.pmean(variance, axis_name)
        return mu, variance


class MLP(nn.Module):
    """Fully connected network f(x) = g_L(W_L g(... g(W_1 x + b_1) ...) + b_L).

    Attributes:
      features: widths of every layer, the last one being the output layer
        (``[64] * 10 + [10]`` is a 10-hidden-layer net with 10 outputs).
      activation: hidden nonlinearity, a name from :data:`lexicon.nn.activations.NAMES`, or
        ``'prelu'`` (a :class:`PReLU` per layer) or ``'maxout'`` (each hidden layer becomes
        ``maxout_pieces`` affine pieces per unit and their max, as in :class:`Maxout`).
      kernel_init: initializer or a name from :data:`lexicon.nn.init.NAMES`; the default is
        the document's Glorot heuristic (flax's own default is LeCun normal).
      batch_norm: if True, every hidden layer is Dense -> :class:`BatchNorm` -> activation,
        and the Dense drops its bias because the batch-norm shift beta replaces it.
      output_activation: None (linear output, e.g. logits) or an activation name.
      maxout_pieces: pieces per unit when ``activation == 'maxout'``.
      batch_norm_momentum, batch_norm_epsilon: forwarded to :class:`BatchNorm`.
      batch_norm_affine: False gives the slide's literal batch norm (no gamma, beta or running
        averages; :class:`BatchNorm` ``affine=False``).
      flatten: reshape each input to a vector first (images of shape (n, h, w, c) go in as
        they are).

    Call as ``model.apply(variables, x, train=...)``; ``train`` only matters with batch norm
    (train: batch statistics and ``mutable=['batch_stats']``; eval: running averages).

    Per-layer values are sown into the ``intermediates`` collection (request them with
    ``mutable=['intermediates']``): ``pre_activations`` and ``activations`` are tuples with
    one entry per layer, output layer last. Pre-activations are taken after batch norm when
    it is on (for maxout, they are all the pieces before the max).
    """

    features: Sequence[int]
    activation: str
    kernel_init: Initializer | str = initializers.glorot_uniform
    batch_norm: bool = False
    output_activation: str | None = None
    bias_init: Initializer = nn.initializers.zeros
    maxout_pieces: int = 2
    batch_norm_momentum: float = 0.99
    batch_norm_epsilon: float = 1e-5
    flatten: bool = False
    batch_norm_affine: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if self.flatten:
            x = x.reshape(x.shape[0], -1)
        if not self.features:
            raise ValueError("MLP needs at least one layer in `features`")
        hidden_names = activations.NAMES + LEARNED_ACTIVATIONS
        if self.activation not in hidden_names:
            raise ValueError(
                f"unknown activation {self.activation!r}; valid names: {', '.join(hidden_names)}"
            )
        if self.activation in LEARNED_ACTIVATIONS:
            hidden_activation = None
        else:
            hidden_activation = activations.get(self.activation)
        output_activation = activations.get(self.output_activation or "identity")
        kernel_init = _resolve_initializer(self.kernel_init)
        pieces = self.maxout_pieces if self.activation == "maxout" else 1

        for width in self.features[:-1]:
            h = nn.Dense(
                pieces * width,
                use_bias=not self.batch_norm,
                kernel_init=kernel_init,
                bias_init=self.bias_init,
            )(x)
            if self.batch_norm:
                h = BatchNorm(
                    momentum=self.batch_norm_momentum,
                    epsilon=self.batch_norm_epsilon,
                    affine=self.batch_norm_affine,
                )(h, use_running_average=not train)
            self.sow("intermediates", "pre_activations", h)
            if self.activation == "maxout":
                x = max_over_pieces(h, pieces)
            elif self.activation == "prelu":
                x = PReLU()(h)
            else:
                x = hidden_activation(h)
            self.sow("intermediates", "activations", x)

        h = nn.Dense(self.features[-1], kernel_init=kernel_init, bias_init=self.bias_init)(x)
        self.sow("intermediates", "pre_activations", h)
        x = output_activation(h)
        self.sow("intermediates", "activations", x)
        return x
