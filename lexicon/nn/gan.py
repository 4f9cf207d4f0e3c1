"""Generative adversarial networks (SPEC.md section 9; documents 000, 003, 004).

A generator x = G(z; theta_g), z ~ p_z, and a discriminator D(x), the probability that x is
real (one sigmoid output unit), play the zero-sum game

    min_G max_D V(G, D),  V = E_{x~p_r}[log D(x)] + E_{z~p_z}[log(1 - D(G(z)))].

p_z is Uniform([0, 1]^d) by default, as document 004 says; the standard normal is an option.
Every network here outputs the *logit* l of D (D = sigmoid(l)), and every loss is written on
logits with log-sigmoid (log D = log sigmoid(l), log(1 - D) = log sigmoid(-l)), so that a
discriminator sure of itself gives finite losses and gradients:

- the discriminator minimizes its binary cross-entropy with real = 1, fake = 0 (004's
  labelled set), which is -V: ``discriminator_loss``;
- the generator minimizes either the minimax objective of documents 000/003,
  E[log(1 - D(G(z)))], or the non-saturating one of 004, -E[log D(G(z))]:
  ``generator_loss``. Where D rejects the fakes (D(G(z)) -> 0) the first one's gradient with
  respect to the logit, -D(G(z)), vanishes, while the second's, -(1 - D(G(z))), tends to -1.

Training alternates k discriminator updates with one generator update (Goodfellow et al.,
2014, Algorithm 1) [add], each player with its own optax optimizer, in one compiled step
(``GAN.step``); the idle player's parameters and optimizer state do not move. The state is a
``GANState``: an int32 ``step`` and both players' TrainStates, which ``lexicon.train.fit``
trains like any other state.

Conditional GANs (000, 004: "a label is given to both nets") take the label y by one-hot
concatenation, [z, onehot(y)] and [x, onehot(y)] (Mirza & Osindero 2014) [add], or by a
learned embedding concatenated the same way.

The remedies the documents name for mode collapse, low diversity and vanishing gradients
(bigger batches, a regularized discriminator, other optimizers) are options:
- a bigger batch is the batch size of the run (and ``fake_batch``, the fakes per update);
- the regularized discriminator is the R1 gradient penalty of Mescheder, Geiger & Nowozin
  (ICML 2018) [add], (gamma / 2) E_{x~p_r} ||grad_x l(x)||^2 on the real data, with l the
  discriminator's logit (``r1_penalty``; ``GAN.r1`` is gamma, a number or a schedule of D's
  update count), or spectral normalization (Miyato et al., ICLR 2018) [add], every layer of
  D divided by its largest singular value (``SpectralDense``, ``DenseDiscriminator(spectral=
  True)``). We left out the WGAN-GP penalty, which belongs to the Wasserstein critic;
- the optimizers are the caller's: Adam with beta1 = 0.5 (Radford et al. 2016) or its
  defaults, or SGD;
- beyond the documents' list, the unrolled GAN (Metz et al., ICLR 2017) [add], ``GAN.unroll``
  = K: G's loss is taken against D after K more updates of D's own optimizer, and
  differentiated through them (``unrolled_discriminator``, a lax.scan).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from lexicon import losses
from lexicon.nn import activations, conv
from lexicon.train.loop import Task
from lexicon.train.state import TrainState

PRIORS = ("uniform", "normal")
OBJECTIVES = ("minimax", "non_saturating")
LABEL_MODES = ("onehot", "embed")
OPTIMIZERS = ("adam", "adam_default", "sgd")
LEAKY_SLOPE = 0.2  # the discriminators' leaky ReLU slope (Radford et al. 2016)
SN_ITERATIONS = 10  # power-iteration rounds per spectral-norm estimate


# --- latent prior ------------------------------------------------------------------------------


def sample_latent(key: jax.Array, n: int, dim: int, prior: str = "uniform") -> jax.Array:
    """n draws of z, shape (n, dim): Uniform([0, 1]^dim) (document 004, the default) or N(0, I)."""
    if prior == "uniform":
        return jax.random.uniform(key, (n, dim))
    if prior == "normal":
        return jax.random.normal(key, (n, dim))
    raise ValueError(f"unknown prior {prior!r}; valid priors: {', '.join(PRIORS)}")


# --- networks ----------------------------------------------------------------------------------


class LabelInput(nn.Module):
    """The label as a vector to concatenate: one-hot(y) or a learned embedding of y."""

    num_classes: int
    mode: str = "onehot"
    embed_dim: int = 16

    @nn.compact
    def __call__(self, labels: jax.Array) -> jax.Array:
        if self.mode == "onehot":
            return jax.nn.one_hot(labels, self.num_classes)
        if self.mode == "embed":
            return nn.Embed(self.num_classes, self.embed_dim, name="embed")(labels)
        raise ValueError(f"unknown label mode {self.mode!r}; valid modes: {', '.join(LABEL_MODES)}")


def _condition(module, x, labels):
    if not module.num_classes:
        return x
    if labels is None:
        raise ValueError("a conditional network (num_classes > 0) needs labels")
    code = LabelInput(module.num_classes, module.label_mode, module.embed_dim, name="label")(labels)
    return jnp.concatenate([x, code.astype(x.dtype)], axis=-1)


class DenseGenerator(nn.Module):
    """G(z[, y]): an MLP from the latent (and label) to ``features`` outputs, linear or squashed
    by ``output_activation`` (sigmoid for pixels in [0, 1])."""

    features: int
    hidden: Sequence[int] = (128, 128)
    activation: str = "relu"
    output_activation: str | None = None
    num_classes: int = 0  # 0: unconditional
    label_mode: str = "onehot"
    embed_dim: int = 16

    @nn.compact
    def __call__(self, z: jax.Array, labels: jax.Array | None = None) -> jax.Array:
        act = activations.get(self.activation)
        h = _condition(self, z, labels)
        for width in self.hidden:
            h = act(nn.Dense(width)(h))
        out = nn.Dense(self.features, name="out")(h)
        return activations.get(self.output_activation or "identity")(out)


def spectral_norm(w: jax.Array, iterations: int = SN_ITERATIONS) -> jax.Array:
    """The largest singular value of a matrix w (m, n), by ``iterations`` rounds of power
    iteration v <- W^T W v / ||.|| from a fixed start, as u^T W v with u and v held constant
    under differentiation (Miyato et al. 2018) [add]: the gradient is that of sigma_1 alone,
    u_1 v_1^T. Each call starts afresh (no carried u), so the module stays a pure function of
    its parameters; the estimate never exceeds sigma_1 and converges like
    (sigma_2 / sigma_1)^(2 iterations)."""

    def normalize(a):
        return a / (jnp.linalg.norm(a) + 1e-12)

    def power(_, uv):
        u = normalize(w @ uv[1])
        return u, normalize(w.T @ u)

    v = normalize(jax.random.normal(jax.random.key(0), (w.shape[1],), w.dtype))
    u, v = jax.lax.fori_loop(0, iterations, power, (normalize(w @ v), v))
    u, v = jax.lax.stop_gradient(u), jax.lax.stop_gradient(v)
    return u @ w @ v


class SpectralDense(nn.Module):
    """A dense layer x W / sigma_1(W) + b: spectral normalization (Miyato et al. 2018) [add],
    which bounds the layer's Lipschitz constant by 1. The kernel and bias are initialized as
    flax's Dense."""

    features: int
    iterations: int = SN_ITERATIONS

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        return x @ (kernel / spectral_norm(kernel, self.iterations)) + bias


class DenseDiscriminator(nn.Module):
    """The logit l(x[, y]) of D = sigmoid(l): an MLP with leaky ReLUs and one output unit.
    Inputs of any shape are flattened to vectors."""

    hidden: Sequence[int] = (128, 128)
    activation: str = "leaky_relu"
    num_classes: int = 0
    label_mode: str = "onehot"
    embed_dim: int = 16
    spectral: bool = False  # every layer a SpectralDense (spectral normalization)

    @nn.compact
    def __call__(self, x: jax.Array, labels: jax.Array | None = None) -> jax.Array:
        act = _discriminator_activation(self.activation)
        dense = SpectralDense if self.spectral else nn.Dense
        h = _condition(self, x.reshape(x.shape[0], -1), labels)
        for width in self.hidden:
            h = act(dense(width)(h))
        return dense(1, name="logit")(h)[:, 0]


def _discriminator_activation(name: str) -> Callable:
    if name == "leaky_relu":
        return lambda x: activations.leaky_relu(x, LEAKY_SLOPE)
    return activations.get(name)


class DCGANGenerator(nn.Module):
    """A small DCGAN-style generator (Radford et al. 2016) [add]: a dense layer to a
    (h/4, w/4, 2 width) map, then two stride-2 transposed convolutions to (h, w, channels).
    Batch normalization is left out, so that one step of every seed stays a pure function of
    its parameters."""

    image_shape: Sequence[int]  # (h, w, channels); h and w divisible by 4
    width: int = 32
    output_activation: str | None = "sigmoid"
    num_classes: int = 0
    label_mode: str = "onehot"
    embed_dim: int = 16

    @nn.compact
    def __call__(self, z: jax.Array, labels: jax.Array | None = None) -> jax.Array:
        h, w, c = self.image_shape
        if h % 4 or w % 4:
            raise ValueError(f"DCGANGenerator needs sides divisible by 4, got {h}x{w}")
        x = _condition(self, z, labels)
        x = nn.relu(nn.Dense((h // 4) * (w // 4) * 2 * self.width)(x))
        x = x.reshape(x.shape[0], h // 4, w // 4, 2 * self.width)
        x = nn.relu(nn.ConvTranspose(self.width, (4, 4), strides=(2, 2), padding="SAME")(x))
        x = nn.ConvTranspose(c, (4, 4), strides=(2, 2), padding="SAME", name="out")(x)
        return activations.get(self.output_activation or "identity")(x)


class DCGANDiscriminator(nn.Module):
    """A small DCGAN-style discriminator: two stride-2 convolutions with leaky ReLUs, then one
    logit. A label enters as constant extra input channels (its one-hot code or embedding)."""

    width: int = 32
    num_classes: int = 0
    label_mode: str = "onehot"
    embed_dim: int = 16
    conv_impl: str = "auto"  # xla | im2col | auto (im2col on CPU), see lexicon.nn.conv

    @nn.compact
    def __call__(self, x: jax.Array, labels: jax.Array | None = None) -> jax.Array:
        if self.num_classes:
            if labels is None:
                raise ValueError("a conditional network (num_classes > 0) needs labels")
            code = LabelInput(self.num_classes, self.label_mode, self.embed_dim, name="label")(
                labels
            )
            maps = jnp.broadcast_to(code[:, None, None, :], (*x.shape[:3], code.shape[-1]))
            x = jnp.concatenate([x, maps.astype(x.dtype)], axis=-1)
        act = _discriminator_activation("leaky_relu")
        x = act(
            conv.Conv(self.width, (4, 4), strides=(2, 2), padding="SAME", impl=self.conv_impl)(x)
        )
        x = act(
            conv.Conv(2 * self.width, (4, 4), strides=(2, 2), padding="SAME", impl=self.conv_impl)(
                x
            )
        )
        return nn.Dense(1, name="logit")(x.reshape(x.shape[0], -1))[:, 0]


# --- the game's losses, on logits --------------------------------------------------------------


def value(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """V = E_r[log D(x)] + E_g[log(1 - D(x))], as means over the two batches of logits."""
    return jnp.mean(jax.nn.log_sigmoid(real_logits)) + jnp.mean(jax.nn.log_sigmoid(-fake_logits))


def discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """The binary cross-entropy with real = 1 and fake = 0, one mean per batch: -V."""
    return losses.binary_cross_entropy_with_logits(
        real_logits, jnp.ones_like(real_logits)
    ) + losses.binary_cross_entropy_with_logits(fake_logits, jnp.zeros_like(fake_logits))


def generator_loss(fake_logits: jax.Array, objective: str = "non_saturating") -> jax.Array:
    """What G minimizes: E[log(1 - D(G(z)))] (minimax, 000/003) or -E[log D(G(z))]
    (non-saturating, 004)."""
    if objective == "minimax":
        return jnp.mean(jax.nn.log_sigmoid(-fake_logits))
    if objective == "non_saturating":
        return -jnp.mean(jax.nn.log_sigmoid(fake_logits))
    raise ValueError(f"unknown objective {objective!r}; valid objectives: {', '.join(OBJECTIVES)}")


def r1_penalty(logit_fn: Callable, real: jax.Array, labels: jax.Array | None = None) -> jax.Array:
    """E_{x~p_r} ||grad_x l(x)||^2 over a batch of real inputs, with each example's label held
    fixed: Mescheder et al. (2018)'s R1 without its factor gamma / 2. ``logit_fn(x, labels)``
    maps a batch to its logits."""

    def one(x, y):
        return logit_fn(x[None], None if y is None else y[None])[0]

    grads = jax.vmap(jax.grad(one))(real, labels)
    return jnp.mean(jnp.sum(grads.reshape(grads.shape[0], -1) ** 2, axis=1))


# --- the two-player state and the alternating step ---------------------------------------------


class GANState(struct.PyTreeNode):
    """Both players: ``step`` counts the alternating rounds (k discriminator updates and one
    generator update); ``gen.step`` and ``disc.step`` count each player's own updates."""

    step: jax.Array
    gen: TrainState
    disc: TrainState


@dataclasses.dataclass(frozen=True)
class GAN:
    """A GAN's networks and training rules; its methods are pure functions of params and keys.

    generator(z[, y]) -> x and discriminator(x[, y]) -> logits are Flax modules;
    ``num_classes > 0`` makes both conditional. ``disc_steps`` is k. ``fake_batch`` is the
    number of fakes per update (0: as many as the real examples of that update).
    """

    generator: nn.Module
    discriminator: nn.Module
    latent_dim: int
    prior: str = "uniform"
    objective: str = "non_saturating"
    disc_steps: int = 1
    r1: float | Callable = 0.0  # gamma, or a schedule gamma(D's update count)
    num_classes: int = 0
    fake_batch: int = 0
    unroll: int = 0  # K: G looks K discriminator updates ahead (0: the plain GAN)

    def __post_init__(self):
        if self.prior not in PRIORS:
            raise ValueError(f"unknown prior {self.prior!r}; valid priors: {', '.join(PRIORS)}")
        if self.objective not in OBJECTIVES:
            raise ValueError(
                f"unknown objective {self.objective!r}; valid: {', '.join(OBJECTIVES)}"
            )
        if self.disc_steps < 1:
            raise ValueError(f"disc_steps must be >= 1, got {self.disc_steps}")

    # pieces ------------------------------------------------------------------------------------

    def latent(self, key: jax.Array, n: int) -> jax.Array:
        return sample_latent(key, n, self.latent_dim, self.prior)

    def labels(self, key: jax.Array, n: int) -> jax.Array | None:
        """Uniform random labels for conditional fakes; None for an unconditional GAN."""
        return jax.random.randint(key, (n,), 0, self.num_classes) if self.num_classes else None

    def generate(self, gen_params, z: jax.Array, labels: jax.Array | None = None) -> jax.Array:
        return self.generator.apply({"params": gen_params}, z, labels)

    def sample(self, gen_params, key: jax.Array, n: int, labels=None) -> jax.Array:
        """n samples G(z), z ~ p_z; labels default to uniform random ones (conditional)."""
        z_key, y_key = jax.random.split(key)
        if labels is None:
            labels = self.labels(y_key, n)
        return self.generate(gen_params, self.latent(z_key, n), labels)

    def logits(self, disc_params, x: jax.Array, labels: jax.Array | None = None) -> jax.Array:
        return self.discriminator.apply({"params": disc_params}, x, labels)

    def init(self, key: jax.Array, example_x: jax.Array, gen_tx, disc_tx) -> GANState:
        """Fresh players for one replica; ``example_x`` is a batch of real inputs (shape only)."""
        g_key, d_key = jax.random.split(key)
        n = example_x.shape[0]
        labels = jnp.zeros((n,), jnp.int32) if self.num_classes else None
        z = jnp.zeros((n, self.latent_dim))
        gen_params = self.generator.init(g_key, z, labels)["params"]
        disc_params = self.discriminator.init(d_key, example_x, labels)["params"]
        return GANState(
            step=jnp.zeros((), jnp.int32),
            gen=TrainState.create(apply_fn=None, params=gen_params, tx=gen_tx),
            disc=TrainState.create(apply_fn=None, params=disc_params, tx=disc_tx),
        )

    # updates -----------------------------------------------------------------------------------

    def r1_weight(self, disc_step):
        """gamma at D's update ``disc_step``: ``r1`` itself, or ``r1(disc_step)`` for a
        schedule."""
        return self.r1(disc_step) if callable(self.r1) else self.r1

    def discriminator_objective(self, disc_params, real, labels, fake, fake_labels, disc_step=0):
        """D's loss on a batch of real inputs and one of fakes, BCE(real = 1, fake = 0)
        (+ gamma/2 R1, gamma at D's update ``disc_step``), and its metrics."""
        real_logits = self.logits(disc_params, real, labels)
        fake_logits = self.logits(disc_params, fake, fake_labels)
        loss = discriminator_loss(real_logits, fake_logits)
        metrics = {
            "d_loss": loss,
            "d_real": jnp.mean(jax.nn.sigmoid(real_logits)),
            "d_fake": jnp.mean(jax.nn.sigmoid(fake_logits)),
        }
        if self.r1:
            penalty = r1_penalty(lambda x, y: self.logits(disc_params, x, y), real, labels)
            metrics["r1"] = penalty
            loss = loss + 0.5 * self.r1_weight(disc_step) * penalty
        return loss, metrics

    def discriminator_update(self, state: GANState, real, key, labels=None):
        """One update of D on a batch of real inputs (and labels) and as many fresh fakes (or
        ``fake_batch``): minimize BCE(real = 1, fake = 0) (+ gamma/2 R1). G does not move."""
        n = self.fake_batch or real.shape[0]
        z_key, y_key = jax.random.split(key)
        fake_labels = None
        if self.num_classes:
            fake_labels = labels if n == real.shape[0] else self.labels(y_key, n)
        fake = jax.lax.stop_gradient(
            self.generate(state.gen.params, self.latent(z_key, n), fake_labels)
        )
        grads, metrics = jax.grad(self.discriminator_objective, has_aux=True)(
            state.disc.params, real, labels, fake, fake_labels, state.disc.step
        )
        return state.replace(disc=state.disc.apply_gradients(grads)), metrics

    def unrolled_discriminator(self, disc: TrainState, real, labels, fake, fake_labels):
        """D after ``unroll`` updates of its own optimizer on one batch of real inputs and one
        of fakes, as a differentiable function of the fakes (a lax.scan): the look-ahead of
        the unrolled GAN (Metz et al. 2017) [add]."""

        def one(disc, _):
            grads, _ = jax.grad(self.discriminator_objective, has_aux=True)(
                disc.params, real, labels, fake, fake_labels, disc.step
            )
            return disc.apply_gradients(grads), None

        return jax.lax.scan(one, disc, None, length=self.unroll)[0]

    def generator_update(self, state: GANState, key, n: int, real=None, real_labels=None):
        """One update of G on n fresh fakes: minimize the chosen objective. D does not move.

        With ``unroll`` = K > 0, G's loss is taken against D after K more updates on ``real``
        (and ``real_labels``) and these fakes, f(theta_G, D_K(theta_G)), and differentiated
        through the K updates (Metz et al. 2017, eq. 7-8) [add]; D itself stays where it is."""
        z_key, y_key = jax.random.split(key)
        z, labels = self.latent(z_key, n), self.labels(y_key, n)
        if self.unroll and real is None:
            raise ValueError("an unrolled generator update needs a batch of real inputs")

        def loss_fn(params):
            fake = self.generate(params, z, labels)
            disc_params = state.disc.params
            if self.unroll:
                ahead = self.unrolled_discriminator(state.disc, real, real_labels, fake, labels)
                disc_params = ahead.params
            fake_logits = self.logits(disc_params, fake, labels)
            return generator_loss(fake_logits, self.objective), fake_logits

        (loss, fake_logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.gen.params)
        d_fake = jnp.mean(jax.nn.sigmoid(fake_logits))
        metrics = {"g_loss": loss, "d_of_g": d_fake, "g_grad_norm": optax.tree.norm(grads)}
        return state.replace(gen=state.gen.apply_gradients(grads)), metrics

    def step(self, state: GANState, batch, key, *, sample_real=None, real_batch: int = 0):
        """k discriminator updates, then one generator update: one round of Algorithm 1.

        ``batch`` is a dict with "x" (and "y" for a conditional GAN); it is cut into k equal
        slices, one per discriminator update. A data-free run (``batch=None``) draws each
        update's ``real_batch`` real examples from ``sample_real(key, n)``.
        """
        k = self.disc_steps
        d_keys = jax.random.split(jax.random.fold_in(key, 0), k)
        g_key = jax.random.fold_in(key, 1)
        if batch is None:
            if sample_real is None:
                raise ValueError("a data-free GAN step needs sample_real(key, n)")
            per_update = real_batch
            reals = jax.vmap(lambda d_key: sample_real(jax.random.fold_in(d_key, 2), per_update))
            slices = (reals(d_keys), None)
        else:
            x = batch["x"]
            if x.shape[0] % k:
                raise ValueError(f"the batch of {x.shape[0]} does not split into k={k} slices")
            per_update = x.shape[0] // k
            cut = lambda a: a.reshape(k, per_update, *a.shape[1:])  # noqa: E731
            slices = (cut(x), cut(batch["y"]) if self.num_classes else None)

        def one_disc_update(state, inputs):
            d_key, real, labels = inputs
            return self.discriminator_update(state, real, d_key, labels)

        state, d_metrics = jax.lax.scan(one_disc_update, state, (d_keys, *slices))
        d_metrics = jax.tree.map(lambda m: m[-1], d_metrics)
        last = jax.tree.map(lambda a: a[-1], slices)  # the round's last real slice (unrolling)
        state, g_metrics = self.generator_update(state, g_key, self.fake_batch or per_update, *last)
        return state.replace(step=state.step + 1), {**d_metrics, **g_metrics}

    def task(
        self,
        gen_tx: optax.GradientTransformation,
        disc_tx: optax.GradientTransformation,
        example_x: jax.Array,
        *,
        sample_real: Callable | None = None,
        real_batch: int = 0,
        evaluate: Callable[[Any, dict], dict] | None = None,
    ) -> Task:
        """The lexicon.train Task of this GAN: init, the alternating step, ``evaluate``.
        Give ``sample_real`` and ``real_batch`` for a data-free run."""

        def make_step(axis_name):
            if axis_name is not None:
                raise ValueError("the GAN step runs with parallel=none or seeds")

            def step(state, batch, key):
                return self.step(state, batch, key, sample_real=sample_real, real_batch=real_batch)

            return step

        return Task(
            init=lambda key: self.init(key, example_x, gen_tx, disc_tx),
            make_step=make_step,
            evaluate=evaluate,
            watch=("d_loss", "g_loss"),
        )


def optimizer(name: str, lr: float, beta1: float = 0.5) -> optax.GradientTransformation:
    """A player's optimizer: ``adam`` (beta1 as given, beta2 = 0.999), ``adam_default``
    (beta1 = 0.9) or ``sgd``."""
    if name == "adam":
        return optax.adam(lr, b1=beta1)
    if name == "adam_default":
        return optax.adam(lr)
    if name == "sgd":
        return optax.sgd(lr)
    raise ValueError(f"unknown optimizer {name!r}; valid: adam, adam_default, sgd")
