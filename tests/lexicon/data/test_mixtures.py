"""The GAN densities: the ring of Gaussians and the 1-D mixtures with D* in closed form."""

import jax
import numpy as np
import scipy.integrate
import scipy.stats

from lexicon.data import mixtures


def test_ring_modes_lie_on_the_circle():
    """m_k = 2 (cos 2 pi k / 8, sin 2 pi k / 8), transcribed in float64."""
    modes = np.asarray(mixtures.ring_modes(), np.float64)
    expected = [[2 * np.cos(2 * np.pi * k / 8), 2 * np.sin(2 * np.pi * k / 8)] for k in range(8)]
    np.testing.assert_allclose(modes, expected, atol=1e-6)


def test_ring_samples_have_the_benchmarks_law():
    """20,000 draws: every mode gets 1/8 of them (chi-square), each point lies near its mode
    with per-axis std 0.02, and the same key gives the same points."""
    key = jax.random.key(0)
    x = np.asarray(mixtures.sample_ring(key, 20_000), np.float64)
    np.testing.assert_array_equal(x, mixtures.sample_ring(key, 20_000))
    modes = np.asarray(mixtures.ring_modes(), np.float64)
    nearest = np.argmin(((x[:, None] - modes[None]) ** 2).sum(-1), axis=1)
    counts = np.bincount(nearest, minlength=8)
    assert scipy.stats.chisquare(counts).pvalue > 1e-3, counts
    offsets = x - modes[nearest]
    np.testing.assert_allclose(offsets.mean(0), 0, atol=5 * 0.02 / np.sqrt(20_000))
    np.testing.assert_allclose(offsets.std(0), 0.02, rtol=0.03)


def test_mixture_density_against_scipy(x64):
    p = mixtures.Mixture1D((0.3, 0.7), (-1.0, 1.5), (0.5, 0.8))
    x = np.linspace(-6, 6, 101)
    expected = 0.3 * scipy.stats.norm.pdf(x, -1, 0.5) + 0.7 * scipy.stats.norm.pdf(x, 1.5, 0.8)
    np.testing.assert_allclose(p.pdf(x), expected, rtol=1e-12)
    np.testing.assert_allclose(p.log_pdf(x), np.log(expected), rtol=1e-12)
    total, _ = scipy.integrate.quad(lambda v: float(p.pdf(v)), -np.inf, np.inf)
    np.testing.assert_allclose(total, 1.0, rtol=1e-10)
    assert np.isfinite(float(p.log_pdf(60.0)))  # far in the tails, where the pdf underflows


def test_mixture_samples_have_its_moments():
    p = mixtures.Mixture1D((0.3, 0.7), (-1.0, 1.5), (0.5, 0.8))
    x = np.asarray(p.sample(jax.random.key(1), 50_000), np.float64)[:, 0]
    mean = 0.3 * -1 + 0.7 * 1.5
    var = 0.3 * (0.25 + 1) + 0.7 * (0.64 + 2.25) - mean**2
    assert abs(x.mean() - mean) < 5 * np.sqrt(var / len(x))
    np.testing.assert_allclose(x.var(), var, rtol=0.03)
    assert (
        scipy.stats.kstest(
            x,
            lambda v: (
                0.3 * scipy.stats.norm.cdf(v, -1, 0.5) + 0.7 * scipy.stats.norm.cdf(v, 1.5, 0.8)
            ),
        ).pvalue
        > 1e-3
    )


def test_optimal_discriminator_is_the_density_ratio(x64):
    """D*(x) = p_r(x) / (p_r(x) + p_g(x)), literally, and 1/2 wherever p_g = p_r."""
    p_r = mixtures.Mixture1D((0.5, 0.5), (-1.0, 1.5), (0.5, 0.7))
    p_g = mixtures.gaussian(0.5, 1.2)
    x = np.linspace(-4, 5, 50)
    pr = 0.5 * scipy.stats.norm.pdf(x, -1, 0.5) + 0.5 * scipy.stats.norm.pdf(x, 1.5, 0.7)
    pg = scipy.stats.norm.pdf(x, 0.5, 1.2)
    np.testing.assert_allclose(mixtures.optimal_discriminator(p_r, p_g, x), pr / (pr + pg), 1e-12)
    np.testing.assert_allclose(mixtures.optimal_discriminator(p_r, p_r, x), 0.5, rtol=1e-15)
