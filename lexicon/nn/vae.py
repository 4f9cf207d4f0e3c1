"""The variational autoencoder (SPEC.md section 6, document 003) as Flax modules and pure functions.

Document 003 defines the model and leaves out its loss:

    Z_mu, Z_ln(sigma^2) = enc(X)
    eps ~ N(0, 1)
    Z = Z_mu + eps sqrt(exp(Z_ln(sigma^2)))
    X_recon = dec(Z)

and new data come from decoding z ~ p(z) = N(0, I). The loss is an ``[add]`` (Kingma &
Welling 2014): the negative evidence lower bound

    -ELBO(x) = E_q(z|x)[-log p(x|z)] + KL(N(mu, sigma^2) || N(0, I))  >=  -log p(x),

with the expectation estimated by reparameterized samples and the KL in closed form
(:func:`lexicon.losses.gaussian_kl`). The decoder p(x|z) is a Bernoulli (binary pixels, its
output is logits) or a Gaussian (its output is the mean; the log variance is fixed or learned
per dimension). :func:`importance_log_likelihood` estimates log p(x) itself with k samples of
q (Burda et al. 2016):

    log p(x) ~= logsumexp_k [log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log k,

a lower bound for every k whose expectation rises with k towards log p(x); k = 1 is a
one-sample ELBO.

Every function takes the module, its ``params`` and explicit noise (``eps`` or a key), so a
training step can vmap it over seeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lexicon import losses
from lexicon.nn import activations
from lexicon.nn import init as initializers

LIKELIHOODS = ("bernoulli", "gaussian")


def _mlp(x: jax.Array, hidden: Sequence[int], activation: str) -> jax.Array:
    act = activations.get(activation)
    for width in hidden:
        x = act(nn.Dense(width, kernel_init=initializers.glorot_uniform)(x))
    return x


class GaussianEncoder(nn.Module):
    """q(z|x) = N(mu(x), diag exp(log_var(x))): hidden layers, then two linear heads."""

    hidden: Sequence[int]
    latent: int
    activation: str = "tanh"

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = _mlp(x, self.hidden, self.activation)
        mu = nn.Dense(self.latent, kernel_init=initializers.glorot_uniform, name="mu")(h)
        log_var = nn.Dense(self.latent, kernel_init=initializers.glorot_uniform, name="log_var")(h)
        return mu, log_var


class Decoder(nn.Module):
    """The decoder network z -> the parameter of p(x|z): logits (Bernoulli) or mean (Gaussian)."""

    hidden: Sequence[int]
    features: int
    activation: str = "tanh"

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        h = _mlp(z, self.hidden, self.activation)
        return nn.Dense(self.features, kernel_init=initializers.glorot_uniform, name="out")(h)


class VAE(nn.Module):
    """Encoder q(z|x), decoder p(x|z) and the prior p(z) = N(0, I) of a variational autoencoder.

    Attributes:
      features: the dimension of x (784 for 28x28 images).
      latent: the dimension of z.
      hidden: widths of the encoder's hidden layers; the decoder mirrors them.
      activation: hidden nonlinearity (a name of :mod:`lexicon.nn.activations`).
      likelihood: ``bernoulli`` (the decoder gives logits) or ``gaussian`` (it gives the mean).
      decoder_log_var: the Gaussian decoder's fixed log sigma^2; None learns one per dimension.

    ``model.apply(variables, x, eps)`` returns (log p(x|z), mu, log_var) for z reparameterized
    from eps; the methods ``encode``, ``decode`` and ``log_likelihood`` are the parts, called as
    ``model.apply(variables, ..., method="encode")``.
    """

    features: int
    latent: int
    hidden: Sequence[int] = (200, 200)
    activation: str = "tanh"
    likelihood: str = "bernoulli"
    decoder_log_var: float | None = 0.0

    def setup(self):
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(
                f"unknown likelihood {self.likelihood!r}; valid: {', '.join(LIKELIHOODS)}"
            )
        self.encoder = GaussianEncoder(tuple(self.hidden), self.latent, self.activation)
        self.decoder = Decoder(tuple(reversed(self.hidden)), self.features, self.activation)
        if self.likelihood == "gaussian" and self.decoder_log_var is None:
            self.x_log_var = self.param("x_log_var", nn.initializers.zeros, (self.features,))

    def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(mu, log sigma^2) of q(z|x)."""
        return self.encoder(x)

    def decode(self, z: jax.Array) -> jax.Array:
        """The decoder output: logits (Bernoulli) or the mean (Gaussian) of p(x|z)."""
        return self.decoder(z)

    def output_log_var(self) -> jax.Array | float:
        if self.decoder_log_var is None:
            return self.x_log_var
        return self.decoder_log_var

    def log_likelihood(self, x: jax.Array, z: jax.Array) -> jax.Array:
        """log p(x|z), one value per example."""
        out = self.decode(z)
        if self.likelihood == "bernoulli":
            return losses.bernoulli_log_likelihood(out, x)
        return losses.gaussian_log_likelihood(out, x, self.output_log_var())

    def mean(self, z: jax.Array) -> jax.Array:
        """E[x|z]: sigmoid(logits) for a Bernoulli decoder, the mean for a Gaussian one."""
        out = self.decode(z)
        return jax.nn.sigmoid(out) if self.likelihood == "bernoulli" else out

    def __call__(self, x: jax.Array, eps: jax.Array):
        mu, log_var = self.encode(x)
        z = reparameterize(mu, log_var, eps)
        return self.log_likelihood(x, z), mu, log_var


def reparameterize(mu: jax.Array, log_var: jax.Array, eps: jax.Array) -> jax.Array:
    """Z = Z_mu + eps sqrt(exp(Z_ln(sigma^2))), exactly as document 003 writes it.

    With eps ~ N(0, I), z ~ N(mu, diag sigma^2), and z is a differentiable function of (mu,
    log sigma^2): the reparameterization trick.
    """
    return mu + eps * jnp.sqrt(jnp.exp(log_var))


def init(model: VAE, key: jax.Array, example_input: jax.Array):
    """The params of ``model`` for inputs shaped like ``example_input`` (n, features)."""
    eps = jnp.zeros((example_input.shape[0], model.latent), example_input.dtype)
    return model.init(key, example_input, eps)["params"]


def elbo_terms(model: VAE, params, x: jax.Array, eps: jax.Array) -> dict[str, jax.Array]:
    """Per example, for one noise draw eps (n, latent):

    reconstruction = -log p(x|z), z = mu + eps sqrt(exp(log sigma^2)) (one sample of
    E_q[-log p(x|z)]); kl = KL(q(z|x) || p(z)) in closed form; elbo = -(reconstruction + kl).
    """
    log_px_z, mu, log_var = model.apply({"params": params}, x, eps)
    kl = losses.gaussian_kl(mu, log_var)
    return {"elbo": log_px_z - kl, "reconstruction": -log_px_z, "kl": kl}


def elbo(model: VAE, params, x: jax.Array, key: jax.Array, num_samples: int = 1):
    """``elbo_terms`` averaged over ``num_samples`` draws of eps: per-example estimates."""
    eps = jax.random.normal(key, (num_samples, x.shape[0], model.latent), x.dtype)
    terms = jax.vmap(lambda e: elbo_terms(model, params, x, e))(eps)
    return jax.tree.map(lambda t: t.mean(axis=0), terms)


def negative_elbo(model: VAE, params, x: jax.Array, key: jax.Array) -> tuple[jax.Array, dict]:
    """The training loss: the batch mean of -ELBO (one sample per example), and its terms."""
    terms = elbo(model, params, x, key)
    means = jax.tree.map(jnp.mean, terms)
    return -means["elbo"], means


def log_weights(model: VAE, params, x: jax.Array, eps: jax.Array) -> jax.Array:
    """log w = log p(x|z) + log p(z) - log q(z|x) per example, z reparameterized from eps."""
    mu, log_var = model.apply({"params": params}, x, method="encode")
    z = reparameterize(mu, log_var, eps)
    log_px_z = model.apply({"params": params}, x, z, method="log_likelihood")
    log_pz = losses.gaussian_log_density(z, jnp.zeros_like(z))
    log_qz_x = losses.gaussian_log_density(z, mu, log_var)
    return log_px_z + log_pz - log_qz_x


def importance_log_likelihood(
    model: VAE,
    params,
    x: jax.Array,
    key: jax.Array,
    num_samples: int,
    chunk: int = 100,
) -> jax.Array:
    """log p(x) ~= logsumexp_k log w_k - log k with z_k ~ q(z|x), per example (Burda et al.).

    The k samples are drawn ``chunk`` at a time (lax.map), so k = 5000 over a test set never
    holds more than ``chunk`` decoded copies of it.
    """
    chunk = max(1, min(chunk, num_samples))
    num_chunks = math.ceil(num_samples / chunk)
    keys = jax.random.split(key, num_chunks)

    def chunk_weights(k):
        eps = jax.random.normal(k, (chunk, x.shape[0], model.latent), x.dtype)
        return jax.vmap(lambda e: log_weights(model, params, x, e))(eps)

    weights = jax.lax.map(chunk_weights, keys).reshape(num_chunks * chunk, x.shape[0])
    keep = (jnp.arange(num_chunks * chunk) < num_samples)[:, None]
    weights = jnp.where(keep, weights, -jnp.inf)
    return jax.scipy.special.logsumexp(weights, axis=0) - jnp.log(num_samples)


def sample_prior(model: VAE, params, key: jax.Array, num: int) -> jax.Array:
    """E[x|z] for ``num`` draws z ~ p(z) = N(0, I): new data from the decoder (document 003)."""
    z = jax.random.normal(key, (num, model.latent))
    return model.apply({"params": params}, z, method="mean")


def reconstruct(model: VAE, params, x: jax.Array) -> jax.Array:
    """E[x|z = mu(x)]: the decoded posterior mean."""
    mu, _ = model.apply({"params": params}, x, method="encode")
    return model.apply({"params": params}, mu, method="mean")


def latent_lattice(size: int, edge: float = 0.05) -> jax.Array:
    """(size^2, 2) latent points: a regular lattice on [edge, 1 - edge]^2 mapped through the
    inverse normal CDF, so that it covers p(z) evenly (Kingma & Welling 2014, figure 4).
    Row-major with z_2 falling down the rows, as an image grid reads."""
    u = jnp.linspace(edge, 1.0 - edge, size)
    z1 = jax.scipy.stats.norm.ppf(u)
    z2 = jax.scipy.stats.norm.ppf(u[::-1])
    grid_z2, grid_z1 = jnp.meshgrid(z2, z1, indexing="ij")
    return jnp.stack([grid_z1.reshape(-1), grid_z2.reshape(-1)], axis=-1)


# --- measures of trained VAEs, one value per seed (params with a leading seed axis) -------------


def seedwise_log_likelihood(model: VAE, params, x: jax.Array, num_samples: int, chunk: int):
    """Per seed s: the mean over x of the importance-sampled log p(x) with ``num_samples``
    draws (:func:`importance_log_likelihood`, key s), as a float64 array."""
    fn = jax.jit(
        lambda p, key: importance_log_likelihood(model, p, x, key, num_samples, chunk).mean()
    )
    seeds = len(jax.tree.leaves(params)[0])
    replica = [jax.tree.map(lambda a, i=i: a[i], params) for i in range(seeds)]
    return np.array([float(fn(replica[i], jax.random.key(i))) for i in range(seeds)])


def active_units(model: VAE, params, x: jax.Array) -> np.ndarray:
    """Per seed: latent units whose posterior mean varies over the data, Cov_x(mu_j) > 0.01
    (Burda et al. 2016's measure of the units a VAE uses)."""
    encode = jax.jit(jax.vmap(lambda p: model.apply({"params": p}, x, method="encode")[0]))
    mu = np.asarray(encode(params))
    return (mu.var(axis=1) > 1e-2).sum(axis=1)
