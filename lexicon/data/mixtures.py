"""Synthetic densities for GANs (SPEC.md section 9): the 2-D ring of Gaussians and 1-D mixtures.

The ring is the mode-collapse benchmark of the unrolled-GAN paper (Metz et al., ICLR 2017,
section 3.1) [add]: eight Gaussians of standard deviation 0.02 whose means lie evenly on a
circle of radius 2,

    p_r(x) = 1/8 sum_k N(x; m_k, 0.02^2 I),  m_k = 2 (cos 2 pi k / 8, sin 2 pi k / 8).

Samples are drawn inside a compiled step from an explicit key, so a data-free training run
(``lexicon.train`` with ``data=None``) sees a fresh batch at every step.

The 1-D mixtures have densities in closed form, for the theory of the optimal discriminator
D*(x) = p_r(x) / (p_r(x) + p_g(x)) and the value of the game.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

RING_MODES = 8
RING_RADIUS = 2.0
RING_STD = 0.02


def ring_modes(modes: int = RING_MODES, radius: float = RING_RADIUS) -> jax.Array:
    """The means m_k = radius (cos 2 pi k / modes, sin 2 pi k / modes), k = 0..modes-1."""
    angles = 2 * jnp.pi * jnp.arange(modes) / modes
    return radius * jnp.stack([jnp.cos(angles), jnp.sin(angles)], axis=1)


def sample_ring(
    key: jax.Array,
    n: int,
    *,
    modes: int = RING_MODES,
    radius: float = RING_RADIUS,
    std: float = RING_STD,
) -> jax.Array:
    """n points of the ring mixture: a mode k uniform over the modes, then m_k + std * N(0, I)."""
    pick, noise = jax.random.split(key)
    k = jax.random.randint(pick, (n,), 0, modes)
    return ring_modes(modes, radius)[k] + std * jax.random.normal(noise, (n, 2))


class Mixture1D(NamedTuple):
    """A 1-D Gaussian mixture sum_j w_j N(x; mu_j, sigma_j^2) with weights summing to 1."""

    weights: tuple[float, ...]
    means: tuple[float, ...]
    stds: tuple[float, ...]

    def pdf(self, x: jax.Array) -> jax.Array:
        """p(x) = sum_j w_j exp(-(x - mu_j)^2 / (2 sigma_j^2)) / (sigma_j sqrt(2 pi))."""
        x = jnp.asarray(x)[..., None]
        w, mu, s = (jnp.asarray(v, x.dtype) for v in self)
        return jnp.sum(w * jnp.exp(-0.5 * ((x - mu) / s) ** 2) / (s * math.sqrt(2 * math.pi)), -1)

    def log_pdf(self, x: jax.Array) -> jax.Array:
        """log p(x) by log-sum-exp over the components (finite far in the tails)."""
        x = jnp.asarray(x)[..., None]
        w, mu, s = (jnp.asarray(v, x.dtype) for v in self)
        terms = jnp.log(w) - 0.5 * ((x - mu) / s) ** 2 - jnp.log(s * math.sqrt(2 * math.pi))
        return jax.scipy.special.logsumexp(terms, axis=-1)

    def sample(self, key: jax.Array, n: int) -> jax.Array:
        """n draws, shape (n, 1): a component j with probability w_j, then mu_j + sigma_j eps."""
        pick, noise = jax.random.split(key)
        j = jax.random.choice(pick, len(self.weights), (n,), p=jnp.asarray(self.weights))
        mu, s = jnp.asarray(self.means)[j], jnp.asarray(self.stds)[j]
        return (mu + s * jax.random.normal(noise, (n,)))[:, None]


def gaussian(mean: float, std: float) -> Mixture1D:
    """N(mean, std^2) as a one-component mixture."""
    return Mixture1D((1.0,), (float(mean),), (float(std),))


def optimal_discriminator(p_r: Mixture1D, p_g: Mixture1D, x: jax.Array) -> jax.Array:
    """D*(x) = p_r(x) / (p_r(x) + p_g(x)) (document 003), as sigmoid(log p_r - log p_g) so that
    it stays exact where both densities underflow."""
    return jax.nn.sigmoid(p_r.log_pdf(x) - p_g.log_pdf(x))


def _integrate(fn, p_r: Mixture1D, p_g: Mixture1D, points: int = 20001) -> float:
    """The integral of fn(x) over the span of both mixtures (their means +- 12 stds), by the
    trapezoid rule on a fine grid in float64 NumPy."""
    centres = np.asarray(p_r.means + p_g.means)
    spread = 12 * max(p_r.stds + p_g.stds)
    x = np.linspace(centres.min() - spread, centres.max() + spread, points)
    return float(np.trapezoid(fn(x), x))


def _pdf64(p: Mixture1D, x: np.ndarray) -> np.ndarray:
    w, mu, s = (np.asarray(v, np.float64) for v in p)
    z = (x[:, None] - mu) / s
    return np.sum(w * np.exp(-0.5 * z**2) / (s * np.sqrt(2 * np.pi)), axis=1)


def game_value(p_r: Mixture1D, p_g: Mixture1D) -> float:
    """C(G) = max_D V(G, D) = E_r[log D*(x)] + E_g[log(1 - D*(x))], by quadrature (nats)."""

    def integrand(x):
        pr, pg = _pdf64(p_r, x), _pdf64(p_g, x)
        total = pr + pg
        safe = np.where(total > 0, total, 1.0)
        return np.where(pr > 0, pr * np.log(np.where(pr > 0, pr, 1) / safe), 0.0) + np.where(
            pg > 0, pg * np.log(np.where(pg > 0, pg, 1) / safe), 0.0
        )

    return _integrate(integrand, p_r, p_g)


def jensen_shannon(p_r: Mixture1D, p_g: Mixture1D) -> float:
    """JSD(p_r || p_g) = 1/2 KL(p_r || m) + 1/2 KL(p_g || m), m = (p_r + p_g) / 2, by quadrature
    (nats); C(G) = -log 4 + 2 JSD [add] (Goodfellow et al. 2014, Theorem 1)."""

    def kl_to_mean(p, q):
        def integrand(x):
            a, m = _pdf64(p, x), 0.5 * (_pdf64(p, x) + _pdf64(q, x))
            return np.where(a > 0, a * np.log(np.where(a > 0, a, 1) / np.where(m > 0, m, 1)), 0.0)

        return _integrate(integrand, p_r, p_g)

    return 0.5 * kl_to_mean(p_r, p_g) + 0.5 * kl_to_mean(p_g, p_r)
