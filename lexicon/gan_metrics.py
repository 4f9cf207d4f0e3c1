"""How good and how diverse a GAN's samples are (SPEC.md section 9) [add].

- On the ring of Gaussians (``lexicon.data.mixtures``), the measures of the unrolled-GAN line
  of work (Metz et al. 2017; Srivastava et al. 2017, VEEGAN): a sample is *high quality* when
  it lies within ``threshold`` = 3 standard deviations of its nearest mode, and a mode is
  *captured* when at least ``min_count`` high-quality samples fall to it.
- On images, a classifier trained on the real data judges the samples: its accuracy on the
  requested labels of a conditional GAN; the entropy and coverage of the classes it assigns to
  an unconditional GAN's samples; and the Frechet distance between Gaussians fitted to its
  hidden features of generated and real images (Heusel et al. 2017's FID, with our
  classifier in place of Inception),

      d^2 = ||mu_1 - mu_2||^2 + tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2)).
"""

from __future__ import annotations

import warnings

import jax.numpy as jnp
import numpy as np
import scipy.linalg


def ring_quality(samples, modes, std: float, *, threshold: float = 3.0, min_count: int = 20):
    """Per batch of samples (n, 2): {"modes": modes captured, "high_quality": share of samples
    within threshold * std of the nearest mode, "distance": mean distance to the nearest mode,
    "counts": high-quality samples per mode}.
    Written in jax.numpy, so it runs inside a compiled evaluation."""
    distances = jnp.sqrt(jnp.sum((samples[:, None, :] - modes[None, :, :]) ** 2, axis=-1))
    nearest = jnp.argmin(distances, axis=1)
    good = jnp.min(distances, axis=1) <= threshold * std
    counts = jnp.sum(good[:, None] & (nearest[:, None] == jnp.arange(len(modes))), axis=0)
    return {
        "modes": jnp.sum(counts >= min_count).astype(jnp.float32),
        "high_quality": jnp.mean(good.astype(jnp.float32)),
        "distance": jnp.mean(jnp.min(distances, axis=1)),
        "counts": counts,
    }


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
    """||mu1 - mu2||^2 + tr(cov1 + cov2 - 2 sqrtm(cov1 cov2)), in float64 with scipy's sqrtm
    (its imaginary round-off dropped)."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    cov1, cov2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
    with warnings.catch_warnings():  # a singular product (dead ReLU features) is fine here
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        root = np.real(scipy.linalg.sqrtm(cov1 @ cov2))
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(cov1 + cov2 - 2 * root))


def feature_frechet(features_a, features_b) -> float:
    """The Frechet distance between Gaussians fitted (mean, unbiased covariance) to two sets of
    feature vectors (n, d)."""
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    return frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


def class_spread(predicted, num_classes: int) -> dict:
    """How the predicted classes of samples spread: the entropy (nats) of their histogram, at
    most log(num_classes), and the coverage, the number of classes given at least half their
    fair share 1 / (2 num_classes) of the samples."""
    counts = np.bincount(np.asarray(predicted).reshape(-1), minlength=num_classes)
    share = counts / counts.sum()
    nonzero = share[share > 0]
    return {
        "entropy": float(-np.sum(nonzero * np.log(nonzero))),
        "coverage": int(np.sum(share >= 0.5 / num_classes)),
    }
