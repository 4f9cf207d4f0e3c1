"""The VAE library (SPEC.md §6, document 003): reparameterization, ELBO, importance sampling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from lexicon import data
from lexicon.nn import vae


def test_reparameterization_is_the_documents_formula(x64):
    """Z = Z_mu + eps sqrt(exp(Z_ln(sigma^2))), element by element in float64."""
    rng = np.random.default_rng(0)
    mu, log_var, eps = rng.normal(size=(3, 4, 5))
    got = np.asarray(jax.jit(vae.reparameterize)(mu, log_var, eps))
    for i in range(4):
        for j in range(5):
            expected = mu[i, j] + eps[i, j] * np.sqrt(np.exp(log_var[i, j]))
            # To a few float64 ulps: XLA's exp is its own polynomial, with or without FMAs.
            np.testing.assert_allclose(got[i, j], expected, rtol=1e-14)


def test_reparameterized_samples_have_the_encoders_mean_and_variance():
    """z = mu + eps sqrt(exp(log sigma^2)) over 200,000 draws of eps: the sample mean lies
    within 5 standard errors of mu and the sample variance within 5 of its own of sigma^2."""
    n = 200_000
    mu = jnp.array([1.5, -0.5, 0.0, 3.0])
    log_var = jnp.array([0.0, -2.0, 1.0, np.log(0.01)])
    eps = jax.random.normal(jax.random.key(0), (n, 4))
    z = np.asarray(jax.jit(vae.reparameterize)(mu, log_var, eps), np.float64)
    sigma2 = np.exp(np.asarray(log_var, np.float64))
    mean_error = np.abs(z.mean(axis=0) - np.asarray(mu))
    var_error = np.abs(z.var(axis=0, ddof=1) - sigma2)
    assert np.all(mean_error < 5 * np.sqrt(sigma2 / n)), mean_error
    assert np.all(var_error < 5 * sigma2 * np.sqrt(2 / (n - 1))), var_error
    # The samples are Gaussian: Kolmogorov-Smirnov against N(mu_j, sigma_j^2).
    for j in range(4):
        ks = scipy.stats.kstest(z[:20_000, j], "norm", args=(mu[j], np.sqrt(sigma2[j])))
        assert ks.pvalue > 1e-4, (j, ks)


def test_gradients_flow_through_the_sample():
    """The trick's point: d z / d mu = 1 and d z / d log sigma^2 = eps sigma / 2."""
    mu, log_var, eps = jnp.array(0.3), jnp.array(-0.4), jnp.array(1.7)
    d_mu, d_log_var = jax.grad(vae.reparameterize, argnums=(0, 1))(mu, log_var, eps)
    np.testing.assert_allclose(d_mu, 1.0)
    np.testing.assert_allclose(d_log_var, 1.7 * np.exp(-0.2) / 2, rtol=1e-6)


def numpy_elbo(params, x, eps, likelihood, x_log_var=0.0):
    """The ELBO of a one-hidden-layer tanh VAE, transcribed literally in float64."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    enc, dec = p["encoder"], p["decoder"]
    h = np.tanh(x @ enc["Dense_0"]["kernel"] + enc["Dense_0"]["bias"])
    mu = h @ enc["mu"]["kernel"] + enc["mu"]["bias"]
    log_var = h @ enc["log_var"]["kernel"] + enc["log_var"]["bias"]
    z = mu + eps * np.sqrt(np.exp(log_var))
    g = np.tanh(z @ dec["Dense_0"]["kernel"] + dec["Dense_0"]["bias"])
    out = g @ dec["out"]["kernel"] + dec["out"]["bias"]
    if likelihood == "bernoulli":
        prob = 1 / (1 + np.exp(-out))
        log_px_z = np.sum(x * np.log(prob) + (1 - x) * np.log(1 - prob), axis=1)
    else:
        s2 = np.exp(x_log_var)
        log_px_z = np.sum(-0.5 * np.log(2 * np.pi * s2) - (x - out) ** 2 / (2 * s2), axis=1)
    kl = 0.5 * np.sum(mu**2 + np.exp(log_var) - log_var - 1, axis=1)
    return log_px_z - kl, -log_px_z, kl


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_elbo_against_a_literal_transcription(x64, likelihood):
    rng = np.random.default_rng(1)
    x = (rng.uniform(size=(6, 10)) < 0.4).astype(np.float64)
    eps = rng.normal(size=(6, 3))
    model = vae.VAE(
        features=10, latent=3, hidden=(7,), likelihood=likelihood, decoder_log_var=np.log(0.2)
    )
    params = vae.init(model, jax.random.key(2), jnp.asarray(x))
    terms = jax.jit(lambda p, x, e: vae.elbo_terms(model, p, x, e))(params, x, eps)
    elbo, reconstruction, kl = numpy_elbo(params, x, eps, likelihood, np.log(0.2))
    np.testing.assert_allclose(np.asarray(terms["elbo"]), elbo, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(terms["reconstruction"]), reconstruction, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(terms["kl"]), kl, rtol=1e-12)


def test_learned_decoder_variance_is_a_parameter():
    model = vae.VAE(features=5, latent=2, hidden=(4,), likelihood="gaussian", decoder_log_var=None)
    params = vae.init(model, jax.random.key(0), jnp.zeros((1, 5)))
    assert params["x_log_var"].shape == (5,)
    x = jax.random.normal(jax.random.key(1), (8, 5))
    grads = jax.jit(jax.grad(lambda p: vae.negative_elbo(model, p, x, jax.random.key(2))[0]))(
        params
    )
    assert float(jnp.abs(grads["x_log_var"]).sum()) > 0
    with pytest.raises(ValueError, match="bernoulli, gaussian"):
        vae.init(vae.VAE(features=5, latent=2, likelihood="poisson"), jax.random.key(0), x)


def linear_gaussian_problem(n=300, dims=6, latent=2, noise=0.3):
    """A VAE with no hidden layers and a fixed-variance Gaussian decoder is the linear-Gaussian
    model x = W z + b + e: its log p(x) = log N(x; b, W^T W + s^2 I) is exact. The data come
    from the model; the (linear) encoder is left at its random init, far from the posterior."""
    model = vae.VAE(
        features=dims,
        latent=latent,
        hidden=(),
        likelihood="gaussian",
        decoder_log_var=np.log(noise),
    )
    params = vae.init(model, jax.random.key(0), jnp.zeros((1, dims)))
    w = np.asarray(params["decoder"]["out"]["kernel"], np.float64)
    b = np.asarray(params["decoder"]["out"]["bias"], np.float64)
    rng = np.random.default_rng(0)
    z = rng.normal(size=(n, latent))
    x = z @ w + b + np.sqrt(noise) * rng.normal(size=(n, dims))
    log_px = scipy.stats.multivariate_normal(b, w.T @ w + noise * np.eye(dims)).logpdf(x)
    return model, params, jnp.asarray(x), log_px


def test_importance_sampled_bound_is_above_the_elbo_and_tightens_with_k(x64):
    """ELBO <= IS_1 ~ IS_10 <= IS_100 <= IS_1000 <= IS_10000 <= log p(x), and IS_10000 is within
    0.15 nats of the exact log p(x) of the linear-Gaussian model (averages over 300 points)."""
    model, params, x, log_px = linear_gaussian_problem()
    elbo = vae.elbo(model, params, x, jax.random.key(1), num_samples=2000)["elbo"]
    estimate = jax.jit(
        lambda key, k: vae.importance_log_likelihood(model, params, x, key, k), static_argnums=1
    )
    bounds = {k: float(estimate(jax.random.key(2), k).mean()) for k in (1, 10, 100, 1000, 10000)}
    # k = 1 is a one-sample ELBO: its expectation is the ELBO itself.
    assert abs(bounds[1] - float(elbo.mean())) < 0.5
    gap = log_px.mean() - float(elbo.mean())
    assert gap > 5  # a poor q: the bound has room to tighten
    ladder = [float(elbo.mean())] + [bounds[k] for k in (10, 100, 1000, 10000)]
    assert all(b > a for a, b in zip(ladder, ladder[1:])), ladder
    assert bounds[10000] <= log_px.mean() + 0.02
    assert log_px.mean() - bounds[10000] < 0.15, (bounds, log_px.mean())


def test_importance_weights_average_to_the_elbo(x64):
    """E_q[log p(x|z) + log p(z) - log q(z|x)] = ELBO: the sampled KL matches the closed form."""
    model, params, x, _ = linear_gaussian_problem(n=50)
    eps = jax.random.normal(jax.random.key(3), (4000, 50, 2), jnp.float64)
    log_w = jax.vmap(lambda e: vae.log_weights(model, params, x, e))(eps)
    elbo = jax.vmap(lambda e: vae.elbo_terms(model, params, x, e)["elbo"])(eps)
    # Same draws: the difference is KL - (log q - log p), mean zero over eps.
    diff = np.asarray(log_w - elbo)
    assert np.all(np.abs(diff.mean(axis=0)) < 5 * diff.std(axis=0) / np.sqrt(4000) + 1e-9)


def test_importance_chunks_that_do_not_divide_k():
    model, params, x, _ = linear_gaussian_problem(n=20)
    x = x.astype(jnp.float32)
    params = jax.tree.map(lambda a: a.astype(jnp.float32), params)
    key = jax.random.key(4)
    got = vae.importance_log_likelihood(model, params, x, key, num_samples=7, chunk=3)
    keys = jax.random.split(key, 3)
    weights = jnp.concatenate(
        [
            jax.vmap(lambda e: vae.log_weights(model, params, x, e))(
                jax.random.normal(k, (3, 20, 2))
            )
            for k in keys
        ]
    )[:7]
    expected = jax.scipy.special.logsumexp(weights, axis=0) - np.log(7)
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-5, atol=1e-5)


def test_importance_bound_on_digits_is_above_the_elbo():
    """The same ordering for a Bernoulli VAE on the binarized digits, at its random init."""
    splits = data.load("digits", seed=0)
    x = jnp.asarray(splits.test["x"][:200] > 0.5, jnp.float32)
    model = vae.VAE(features=64, latent=4, hidden=(32,))
    params = vae.init(model, jax.random.key(0), x)
    elbo = float(vae.elbo(model, params, x, jax.random.key(1), num_samples=200)["elbo"].mean())
    fn = jax.jit(
        lambda key, k: vae.importance_log_likelihood(model, params, x, key, k), static_argnums=1
    )
    is_10, is_500 = (float(fn(jax.random.key(2), k).mean()) for k in (10, 500))
    assert elbo < is_10 < is_500, (elbo, is_10, is_500)


def test_prior_samples_reconstructions_and_lattice():
    model = vae.VAE(features=64, latent=2, hidden=(16,))
    params = vae.init(model, jax.random.key(0), jnp.zeros((1, 64)))
    samples = jax.jit(vae.sample_prior, static_argnums=(0, 3))(model, params, jax.random.key(1), 9)
    assert samples.shape == (9, 64)
    assert float(samples.min()) >= 0 and float(samples.max()) <= 1  # Bernoulli means
    x = jax.random.uniform(jax.random.key(2), (5, 64))
    assert jax.jit(vae.reconstruct, static_argnums=0)(model, params, x).shape == (5, 64)
    lattice = np.asarray(vae.latent_lattice(5))
    quantiles = scipy.stats.norm.ppf(np.linspace(0.05, 0.95, 5))
    assert lattice.shape == (25, 2)
    np.testing.assert_allclose(lattice[:5, 0], quantiles, rtol=1e-5, atol=1e-6)  # z1 across
    np.testing.assert_allclose(lattice[::5, 1], quantiles[::-1], rtol=1e-5, atol=1e-6)  # z2 down


def test_seedwise_measures_read_each_seed_alone():
    """active_units: Var_x(mu_j) > 0.01 per seed; the log-likelihood of seed s is the mean
    importance-sampled log p(x) of that seed's params with key s."""
    model = vae.VAE(features=6, latent=3, hidden=(5,))
    x = jnp.asarray(np.random.default_rng(0).uniform(size=(12, 6)) > 0.5, jnp.float32)
    params = jax.vmap(lambda k: vae.init(model, k, x[:1]))(jax.random.split(jax.random.key(0), 2))
    params["encoder"]["mu"]["kernel"] = params["encoder"]["mu"]["kernel"].at[1].multiply(0.0)
    params["encoder"]["mu"]["bias"] = params["encoder"]["mu"]["bias"].at[1].set(0.0)
    counts = vae.active_units(model, params, x)
    for s in range(2):
        p = jax.tree.map(lambda a, s=s: a[s], params)
        mu = np.asarray(model.apply({"params": p}, x, method="encode")[0])
        assert counts[s] == (mu.var(axis=0) > 1e-2).sum()
    assert counts[1] == 0  # a constant mean: no active unit
    ours = vae.seedwise_log_likelihood(model, params, x, 4, 2)
    p1 = jax.tree.map(lambda a: a[1], params)
    alone = vae.importance_log_likelihood(model, p1, x, jax.random.key(1), 4, 2).mean()
    np.testing.assert_allclose(ours[1], alone, rtol=1e-6)
