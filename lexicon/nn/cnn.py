"""Convolutional classifiers named in the documents (SPEC.md section 5), as Flax Linen modules.

Every model maps a batch to class logits with ``__call__(x, train=False)`` and exposes the
layer that feeds its classifier through ``features(x, train=False)``; call it with
``model.apply(variables, x, method="features")``. That is the first transfer-learning recipe of
the documents: take an intermediate layer of a trained network as the features of a new
classifier. Each model also sows every stage's output into the ``"intermediates"`` collection
(``model.apply(variables, x, mutable=["intermediates"])``), so any earlier layer can serve too.

A convolutional layer is convolution, activation, pooling. The models use ``flax.linen.Conv``
(cross-correlation, like every CNN library) and flax's pooling for speed; the hand-written
operations in :mod:`lexicon.nn.conv` and :mod:`lexicon.nn.pooling` are their reference.
Every model takes ``conv_impl`` (``auto`` | ``xla`` | ``im2col``, see
:func:`lexicon.nn.conv.Conv`): the same parameters, computed by XLA's convolution or as
im2col and matmuls (in the form :func:`lexicon.nn.conv.im2col_form` picks); ``auto`` picks
im2col on CPU (the faster there, inside a compiled epoch too) and XLA's convolution on
GPU/TPU.

Inputs are channels-last. Image models take ``(N, H, W, C)`` or ``(N, H, W)`` (one channel is
added); :class:`CNN1D` takes ``(N, L)`` or ``(N, L, C)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from lexicon.nn import activations, conv, pooling


def _as_images(x: jax.Array) -> jax.Array:
    """(N, H, W) -> (N, H, W, 1); (N, H, W, C) unchanged."""
    if x.ndim == 3:
        return x[..., None]
    if x.ndim != 4:
        raise ValueError(f"expected images (N, H, W) or (N, H, W, C), got shape {x.shape}")
    return x


def _flatten(h: jax.Array) -> jax.Array:
    return h.reshape(h.shape[0], -1)


@jax.jit
def sobel_gradient_magnitude(images: jax.Array) -> jax.Array:
    """Edge strength of each channel: sqrt(G_x^2 + G_y^2), G = Sobel kernel * image.

    G_x and G_y are the 2-D convolutions (:func:`lexicon.nn.conv.convolve_2d`, "same" zero
    padding) of each channel with the Sobel kernels, so the result has the shape of the input,
    ``(N, H, W, C)`` or ``(N, H, W)``. The square root is taken only where G_x^2 + G_y^2 > 0,
    which keeps the gradient with respect to the image finite on flat regions.
    """
    squeeze = images.ndim == 3
    images = _as_images(images)
    n, h, w, c = images.shape
    # Channels are filtered independently: fold them into the batch of a 1-channel conv.
    per_channel = jnp.transpose(images, (0, 3, 1, 2)).reshape(n * c, h, w, 1)
    sobel = jnp.stack([jnp.asarray(conv.SOBEL_X), jnp.asarray(conv.SOBEL_Y)], axis=-1)
    sobel = sobel[:, :, None, :].astype(images.dtype)  # HWIO, 1 input, 2 outputs
    gradients = conv.convolve_2d(per_channel, sobel, 1, "same")
    squared = jnp.sum(gradients**2, axis=-1)
    positive = squared > 0
    magnitude = jnp.where(positive, jnp.sqrt(jnp.where(positive, squared, 1.0)), 0.0)
    magnitude = jnp.transpose(magnitude.reshape(n, c, h, w), (0, 2, 3, 1))
    return magnitude[..., 0] if squeeze else magnitude


class LeNet5(nn.Module):
    """LeNet-5: C1 conv(6, 5x5) -> S2 avg-pool 2x2 -> C3 conv(16, 5x5) -> S4 avg-pool 2x2
    -> F5 dense 120 -> F6 dense 84 -> output dense ``num_classes``.

    The activation (``"tanh"`` as in the original, or ``"relu"``) follows every conv and hidden
    dense layer. Parameters of the classic 32x32x1 input with 10 classes (valid padding):

        C1    5*5*1*6 + 6           =    156
        C3    5*5*6*16 + 16         =  2,416
        F5    (5*5*16)*120 + 120    = 48,120
        F6    120*84 + 84           = 10,164
        out   84*10 + 10            =    850
        total                       = 61,706

    (C3 is fully connected to the six S2 maps and the pools have no trainable coefficients,
    the usual modern reading of the 1998 layout.)

    Small inputs: 8x8 digits vanish under two valid 5x5 convs. Either zero-pad the input to
    32x32 (``pad_input_to=32``, the classic layout and parameter count), or use "SAME" padding
    (``first_padding="SAME", second_padding="SAME"``: 8 -> 8 -> 4 -> 4 -> 2, so F5 sees
    2*2*16 = 64 inputs). 28x28 MNIST fits the classic sizes with ``first_padding="SAME"``.

    Parameters live under ``conv1`` (C1), ``conv2`` (C3), ``dense1`` (F5), ``dense2`` (F6) and
    ``classifier``; the sown intermediates are named after the layers: c1, s2, c3, s4, f5, f6.

    Attributes:
      num_classes: size of the output layer.
      activation: name of the activation (see :func:`lexicon.nn.activations.get`).
      first_padding: padding of C1, "VALID" or "SAME" (or anything ``nn.Conv`` takes).
      second_padding: padding of C3.
      pad_input_to: if set, zero-pad the image symmetrically to this height and width first.
    """

    num_classes: int = 10
    activation: str = "tanh"
    first_padding: str = "VALID"
    second_padding: str = "VALID"
    pad_input_to: int | None = None
    conv_impl: str = "auto"

    def setup(self):
        self.act = activations.get(self.activation)
        self.conv1 = conv.Conv(6, (5, 5), padding=self.first_padding, impl=self.conv_impl)
        self.conv2 = conv.Conv(16, (5, 5), padding=self.second_padding, impl=self.conv_impl)
        self.dense1 = nn.Dense(120)
        self.dense2 = nn.Dense(84)
        self.classifier = nn.Dense(self.num_classes)

    def _pad(self, x: jax.Array) -> jax.Array:
        if self.pad_input_to is None:
            return x
        height, width = x.shape[1:3]
        if height > self.pad_input_to or width > self.pad_input_to:
            raise ValueError(
                f"input {height}x{width} is larger than pad_input_to={self.pad_input_to}"
            )
        top = (self.pad_input_to - height) // 2
        left = (self.pad_input_to - width) // 2
        bottom = self.pad_input_to - height - top
        right = self.pad_input_to - width - left
        return jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))

    def features(self, x: jax.Array, train: bool = False) -> jax.Array:
        """The F6 activations (N, 84), the input of the output layer."""
        h = self.act(self.conv1(self._pad(_as_images(x))))
        self.sow("intermediates", "c1", h)
        h = nn.avg_pool(h, (2, 2), strides=(2, 2))
        self.sow("intermediates", "s2", h)
        h = self.act(self.conv2(h))
        self.sow("intermediates", "c3", h)
        h = nn.avg_pool(h, (2, 2), strides=(2, 2))
        self.sow("intermediates", "s4", h)
        h = self.act(self.dense1(_flatten(h)))
        self.sow("intermediates", "f5", h)
        h = self.act(self.dense2(h))
        self.sow("intermediates", "f6", h)
        return h

    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        return self.classifier(self.features(x, train))


def lenet_paddings(side: int) -> tuple[str, str]:
    """Paddings of C1 and C3 so that two 5x5 convs and two 2x2 pools fit a side x side image.

    32x32 is the classic valid layout; 28x28 (MNIST) pads C1 ("same") as LeNet-5 padded its
    digits to 32; smaller images (8x8 digits) keep their size in both convs.
    """
    if side >= 32:
        return "VALID", "VALID"
    if side >= 20:
        return "SAME", "VALID"
    return "SAME", "SAME"


def lenet5_for(
    side: int, num_classes: int, activation: str = "tanh", conv_impl: str = "auto"
) -> LeNet5:
    """LeNet-5 with the paddings of :func:`lenet_paddings` for side x side images."""
    first, second = lenet_paddings(side)
    return LeNet5(
        num_classes=num_classes,
        activation=activation,
        first_padding=first,
        second_padding=second,
        conv_impl=conv_impl,
    )


class FedAvgCNN(nn.Module):
    """The CNN of McMahan et al. (2017) for MNIST: two 5x5 convolutions with 32 and 64
    channels ("same" padding), each followed by ReLU and 2x2 max-pooling, a fully connected
    layer of 512 ReLU units and a linear output layer (1,663,370 parameters on 28x28 images).
    Vector inputs of a square number of pixels are reshaped into one-channel images."""

    num_classes: int = 10
    conv_impl: str = "auto"

    def setup(self):
        self.convs = [conv.Conv(c, (5, 5), padding="SAME", impl=self.conv_impl) for c in (32, 64)]
        self.hidden = nn.Dense(512)
        self.output = nn.Dense(self.num_classes)

    def features(self, x: jax.Array, train: bool = False) -> jax.Array:
        if x.ndim == 2:
            side = int(round(x.shape[1] ** 0.5))
            x = x.reshape(x.shape[0], side, side)
        h = _as_images(x)
        for layer in self.convs:
            h = nn.max_pool(nn.relu(layer(h)), (2, 2), strides=(2, 2))
        return nn.relu(self.hidden(_flatten(h)))

    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        return self.output(self.features(x))


class VGGSmall(nn.Module):
    """A small VGGNet: stages of 3x3 "same" convs + ReLU, each stage closed by a 2x2 max-pool
    (stride 2); then the maps are flattened into dense ReLU layers and a linear output layer.

    The logits go to a softmax cross-entropy loss, which applies the softmax.

    Attributes:
      num_classes: size of the output layer.
      stage_channels: output channels of the convs of each stage (one entry per stage).
      convs_per_stage: how many 3x3 convs each stage stacks before its pool.
      hidden_units: widths of the dense layers between the flattened maps and the output.
      dropout_rate: dropout on the dense hidden layers when ``train=True`` (needs a
        ``"dropout"`` rng then); 0 disables it.
    """

    num_classes: int = 10
    stage_channels: Sequence[int] = (16, 32)
    convs_per_stage: int = 2
    hidden_units: Sequence[int] = (64,)
    dropout_rate: float = 0.0
    conv_impl: str = "auto"

    def setup(self):
        self.convs = [
            conv.Conv(channels, (3, 3), padding="SAME", impl=self.conv_impl)
            for channels in self.stage_channels
            for _ in range(self.convs_per_stage)
        ]
        self.hidden = [nn.Dense(units) for units in self.hidden_units]
        self.dropout = nn.Dropout(self.dropout_rate)
        self.classifier = nn.Dense(self.num_classes)

    def features(self, x: jax.Array, train: bool = False) -> jax.Array:
        """The last hidden dense layer (N, hidden_units[-1]), or the flattened maps if none."""
        h = _as_images(x)
        for stage in range(len(self.stage_channels)):
            for layer in range(self.convs_per_stage):
                h = nn.relu(self.convs[stage * self.convs_per_stage + layer](h))
            h = nn.max_pool(h, (2, 2), strides=(2, 2))
            self.sow("intermediates", f"stage{stage}", h)
        h = _flatten(h)
        for index, dense in enumerate(self.hidden):
            h = self.dropout(nn.relu(dense(h)), deterministic=not train)
            self.sow("intermediates", f"hidden{index}", h)
        return h

    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        return self.classifier(self.features(x, train))


class PoolingNet(nn.Module):
    """Two 3x3 ReLU conv layers (``channels``) that halve the resolution either by 2x2
    max-pooling after a stride-1 conv (``downsample="max"``) or by the conv's own stride 2
    with no pooling (``downsample="stride"``, the all-convolutional net of Springenberg et
    al. 2015); the flattened maps feed a linear output layer. Both have the same parameters
    and map sizes, so they differ only in the pooling, whose claimed gift is approximate
    invariance to small translations (SPEC.md section 5).

    Attributes:
      num_classes: size of the output layer.
      channels: output channels of each conv layer.
      downsample: ``"max"`` or ``"stride"``.
    """

    num_classes: int = 10
    channels: Sequence[int] = (16, 32)
    downsample: str = "max"
    conv_impl: str = "auto"

    def setup(self):
        if self.downsample not in ("max", "stride"):
            raise ValueError(f"downsample must be max or stride, got {self.downsample!r}")
        stride = 2 if self.downsample == "stride" else 1
        self.convs = [
            conv.Conv(c, (3, 3), strides=stride, padding="SAME", impl=self.conv_impl)
            for c in self.channels
        ]
        self.classifier = nn.Dense(self.num_classes)

    def features(self, x: jax.Array, train: bool = False) -> jax.Array:
        """The flattened last maps (N, H/4 * W/4 * channels[-1]) for two layers."""
        h = _as_images(x)
        for layer in self.convs:
            h = nn.relu(layer(h))
            if self.downsample == "max":
                h = nn.max_pool(h, (2, 2), strides=(2, 2))
        return _flatten(h)

    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        return self.classifier(self.features(x, train))


def shift_effects(model: nn.Module, variables, x: jax.Array, y: jax.Array, shifts=None) -> dict:
    """What 1-pixel translations T (``pooling.ONE_PIXEL_SHIFTS`` unless ``shifts`` is given,
    zero fill) do to a trained classifier on images ``x`` with labels ``y``:

        feature_change    mean over T and examples of ||f(Tx) - f(x)|| / ||f(x)||, f the
                          model's ``features``
        accuracy          accuracy on x
        shifted_accuracy  mean over T of the accuracy on T x
        accuracy_drop     accuracy - shifted_accuracy
    """
    shifts = pooling.ONE_PIXEL_SHIFTS if shifts is None else shifts
    images = _as_images(x)
    feats = model.apply(variables, images, method="features")

    def accuracy(inputs):
        return jnp.mean(jnp.argmax(model.apply(variables, inputs), -1) == y)

    changes, accuracies = [], []
    for rows, cols in shifts:
        moved = pooling.shift_images(images, rows, cols)
        shifted = model.apply(variables, moved, method="features")
        changes.append(jnp.mean(pooling.relative_change(feats, shifted)))
        accuracies.append(accuracy(moved))
    clean, shifted_accuracy = accuracy(images), jnp.mean(jnp.stack(accuracies))
    return {
        "feature_change": jnp.mean(jnp.stack(changes)),
        "accuracy": clean,
        "shifted_accuracy": shifted_accuracy,
        "accuracy_drop": clean - shifted_accuracy,
    }


class ResidualBlock(nn.Module):
    """y = relu(F(x) + shortcut(x)), F = conv3x3(stride) -> relu -> conv3x3.

    The shortcut is the identity when the shapes agree; only a change of width or a stride
    uses a 1x1 projection conv (named ``"projection"``). With ``use_batch_norm`` every conv is
    followed by batch normalization (running averages when ``train=False``).
    """

    width: int
    stride: int = 1
    use_batch_norm: bool = False
    conv_impl: str = "auto"

    def _norm(self, h: jax.Array, train: bool, name: str) -> jax.Array:
        if not self.use_batch_norm:
            return h
        return nn.BatchNorm(use_running_average=not train, name=name)(h)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        bias = not self.use_batch_norm
        residual = conv.Conv(
            self.width,
            (3, 3),
            strides=self.stride,
            padding="SAME",
            use_bias=bias,
            name="conv1",
            impl=self.conv_impl,
        )(x)
        residual = nn.relu(self._norm(residual, train, "norm1"))
        residual = conv.Conv(
            self.width, (3, 3), padding="SAME", use_bias=bias, name="conv2", impl=self.conv_impl
        )(residual)
        residual = self._norm(residual, train, "norm2")
        shortcut = x
        if x.shape[-1] != self.width or self.stride != 1:
            shortcut = conv.Conv(
                self.width,
                (1, 1),
                strides=self.stride,
                padding="SAME",
                use_bias=bias,
                name="projection",
                impl=self.conv_impl,
            )(x)
            shortcut = self._norm(shortcut, train, "projection_norm")
        return nn.relu(residual + shortcut)


class ResNetSmall(nn.Module):
    """A small residual network: a 3x3 stem conv, stages of :class:`ResidualBlock`, global
    average pooling and a linear output layer.

    The first block of every stage after the first halves the resolution (stride 2) and
    changes the width, so it is the only block with a projection shortcut; all others add the
    identity. Depth counted in weight layers: 2 + 2 * blocks_per_stage * len(stage_widths).

    Attributes:
      num_classes: size of the output layer.
      stage_widths: channels of each stage; the stem has ``stage_widths[0]`` channels.
      blocks_per_stage: residual blocks per stage.
      use_batch_norm: batch-normalize after each conv; training then needs
        ``mutable=["batch_stats"]``.
    """

    num_classes: int = 10
    stage_widths: Sequence[int] = (16, 32)
    blocks_per_stage: int = 2
    use_batch_norm: bool = False
    conv_impl: str = "auto"

    def setup(self):
        self.stem = conv.Conv(
            self.stage_widths[0],
            (3, 3),
            padding="SAME",
            use_bias=not self.use_batch_norm,
            impl=self.conv_impl,
        )
        self.stem_norm = nn.BatchNorm() if self.use_batch_norm else None
        self.blocks = [
            ResidualBlock(
                width,
                stride=2 if (stage > 0 and block == 0) else 1,
                use_batch_norm=self.use_batch_norm,
                conv_impl=self.conv_impl,
            )
            for stage, width in enumerate(self.stage_widths)
            for block in range(self.blocks_per_stage)
        ]
        self.classifier = nn.Dense(self.num_classes)

    def features(self, x: jax.Array, train: bool = False) -> jax.Array:
        """The globally average-pooled last stage (N, stage_widths[-1])."""
        h = self.stem(_as_images(x))
        if self.stem_norm is not None:
            h = self.stem_norm(h, use_running_average=not train)
        h = nn.relu(h)
        for index, block in enumerate(self.blocks):
            h = block(h, train)
            self.sow("intermediates", f"block{index}", h)
        h = jnp.mean(h, axis=(1, 2))
        self.sow("intermediates", "pooled", h)
        return h

    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        return self.classifier(self.features(x, train))


class MultiStream(nn.Module):
    """Two input streams, each a small conv stack, fused late: the flattened maps of both are
    concatenated and go through a dense ReLU layer and a linear output layer.

    ``x`` is either a pair ``(stream_a, stream_b)`` of image batches (their sizes may differ)
    or one image batch, whose second stream is then its Sobel gradient magnitude
    (:func:`sobel_gradient_magnitude`).

    Attributes:
      num_classes: size of the output layer.
      stream_channels: channels of the 3x3 "same" conv + ReLU + 2x2 max-pool layers of each
        stream.
      fused_units: width of the dense layer after the concatenation.
    """

    num_classes: int = 10
    stream_channels: Sequence[int] = (8, 16)
    fused_units: int = 64
    conv_impl: str = "auto"

    def setup(self):
        self.stream_a_convs = [
            conv.Conv(c, (3, 3), padding="SAME", impl=self.conv_impl) for c in self.stream_channels
        ]
        self.stream_b_convs = [
            conv.Conv(c, (3, 3), padding="SAME", impl=self.conv_impl) for c in self.stream_channels
        ]
        self.fusion = nn.Dense(self.fused_units)
        self.classifier = nn.Dense(self.num_classes)

    @staticmethod
    def _run_stream(layers: Sequence[nn.Module], h: jax.Array) -> jax.Array:
        for layer in layers:
            h = nn.max_pool(nn.relu(layer(h)), (2, 2), strides=(2, 2))
        return _flatten(h)

    def features(
        self, x: jax.Array | tuple[jax.Array, jax.Array], train: bool = False
    ) -> jax.Array:
        """The fused dense layer (N, fused_units)."""
        if isinstance(x, (tuple, list)):
            first, second = x
        else:
            first, second = x, sobel_gradient_magnitude(x)
        a = self._run_stream(self.stream_a_convs, _as_images(first))
        b = self._run_stream(self.stream_b_convs, _as_images(second))
        self.sow("intermediates", "stream_a", a)
        self.sow("intermediates", "stream_b", b)
        h = nn.relu(self.fusion(jnp.concatenate([a, b], axis=-1)))
        self.sow("intermediates", "fused", h)
        return h

    def __call__(
        self, x: jax.Array | tuple[jax.Array, jax.Array], train: bool = False
    ) -> jax.Array:
        return self.classifier(self.features(x, train))


class CNN1D(nn.Module):
    """The MNIST-1D convolutional baseline (Greydanus 2020, ``ConvBase`` in the mnist1d
    repository): three ReLU convs with 25 channels, stride 2 and one zero of padding on each
    side, kernels 5, 3, 3; the maps are flattened into a linear layer to the classes.

    On 40-sample signals the lengths are 40 -> 19 -> 10 -> 5, so the linear layer reads
    5 * 25 = 125 features, and the parameter count is 150 + 1,900 + 1,900 + 1,260 = 5,210.
    (The reference flattens channel-major; flattening length-major here only permutes the
    rows of the linear layer's weights.)

    Attributes:
      num_classes: size of the output layer.
      channels: channels of every conv.
      kernel_sizes: kernel width of each conv (one conv per entry).
      stride: stride of every conv.
      padding: zeros added on each side before every conv.
    """

    num_classes: int = 10
    channels: int = 25
    kernel_sizes: Sequence[int] = (5, 3, 3)
    stride: int = 2
    padding: int = 1
    conv_impl: str = "auto"

    def setup(self):
        self.convs = [
            conv.Conv(
                self.channels,
                (k,),
                strides=(self.stride,),
                padding=((self.padding,) * 2,),
                impl=self.conv_impl,
            )
            for k in self.kernel_sizes
        ]
        self.classifier = nn.Dense(self.num_classes)

    def features(self, x: jax.Array, train: bool = False) -> jax.Array:
        """The flattened last conv maps (N, length * channels)."""
        if x.ndim == 2:
            x = x[..., None]
        if x.ndim != 3:
            raise ValueError(f"expected signals (N, L) or (N, L, C), got shape {x.shape}")
        h = x
        for index, layer in enumerate(self.convs):
            h = nn.relu(layer(h))
            self.sow("intermediates", f"conv{index}", h)
        return _flatten(h)

    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        return self.classifier(self.features(x, train))
