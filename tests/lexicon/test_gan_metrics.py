"""GAN sample measures: ring modes and quality, the Frechet distance, class spread."""

import jax.numpy as jnp
import numpy as np
import scipy.linalg

from lexicon import gan_metrics
from lexicon.data import mixtures


def test_ring_quality_against_a_literal_count():
    rng = np.random.default_rng(0)
    modes = np.asarray(mixtures.ring_modes(), np.float64)
    # 3 modes well covered, one with 5 points only, plus points far from every mode
    points = [modes[k] + 0.02 * rng.normal(size=(30, 2)) for k in (0, 2, 5)]
    points += [modes[7] + 0.01 * rng.normal(size=(5, 2)), rng.uniform(-0.5, 0.5, size=(40, 2))]
    x = np.concatenate(points).astype(np.float32)
    got = gan_metrics.ring_quality(jnp.asarray(x), jnp.asarray(modes), 0.02, min_count=20)
    counts = np.zeros(8, int)
    good, nearest = 0, []
    for point in x.astype(np.float64):
        d = [np.hypot(*(point - m)) for m in modes]
        nearest.append(min(d))
        if min(d) <= 3 * 0.02:
            good += 1
            counts[int(np.argmin(d))] += 1
    np.testing.assert_array_equal(got["counts"], counts)
    assert float(got["modes"]) == np.sum(counts >= 20) == 3
    np.testing.assert_allclose(got["high_quality"], good / len(x), rtol=1e-6)
    np.testing.assert_allclose(got["distance"], np.mean(nearest), rtol=1e-5)


def test_frechet_distance_in_closed_forms():
    """Commuting (diagonal) covariances: d^2 = ||mu1 - mu2||^2 + sum (sqrt a - sqrt b)^2; a
    general pair against scipy's sqrtm of the product, transcribed; 0 for equal Gaussians."""
    a, b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    got = gan_metrics.frechet_distance(mu1, np.diag(a), mu2, np.diag(b))
    np.testing.assert_allclose(got, 5.0 + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2), rtol=1e-12)
    rng = np.random.default_rng(1)
    m = rng.normal(size=(4, 4))
    c1, c2 = m @ m.T + np.eye(4), np.cov(rng.normal(size=(50, 4)), rowvar=False)
    root = scipy.linalg.sqrtm(c1 @ c2).real
    np.testing.assert_allclose(
        gan_metrics.frechet_distance(mu1[:1].repeat(4), c1, mu2[:1].repeat(4), c2),
        1.0 * 4 + np.trace(c1) + np.trace(c2) - 2 * np.trace(root),
        rtol=1e-10,
    )
    np.testing.assert_allclose(
        gan_metrics.frechet_distance(mu1, c1[:3, :3], mu1, c1[:3, :3]), 0.0, atol=1e-9
    )
    features = rng.normal(size=(200, 3))
    np.testing.assert_allclose(
        gan_metrics.feature_frechet(features, features + 2.0), 12.0, rtol=1e-8
    )


def test_class_spread():
    """Entropy of the predicted-class histogram, and coverage at half the fair share."""
    predicted = np.array([0] * 50 + [1] * 30 + [2] * 15 + [3] * 5)
    spread = gan_metrics.class_spread(predicted, 4)
    p = np.array([0.5, 0.3, 0.15, 0.05])
    np.testing.assert_allclose(spread["entropy"], -np.sum(p * np.log(p)), rtol=1e-12)
    assert spread["coverage"] == 3  # class 3 has 5% < 1/8
    uniform = gan_metrics.class_spread(np.arange(1000) % 10, 10)
    np.testing.assert_allclose(uniform["entropy"], np.log(10), rtol=1e-12)
    assert uniform["coverage"] == 10
