"""lexicon.nn.autoencoders: blocks, tied stacks, stochastic encoders/decoders, corruption."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from lexicon.nn import autoencoders as ae
from lexicon.nn.tying import TiedAutoencoder


def count(params):
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(params))


def test_regime_names_the_code_size():
    assert ae.regime(784, 32) == "undercomplete"
    assert ae.regime(784, 784) == "complete"
    assert ae.regime(784, 1024) == "overcomplete"


def test_dense_autoencoder_shapes_and_linear_case():
    x = np.random.default_rng(0).uniform(size=(5, 12)).astype(np.float32)
    model = ae.dense_autoencoder(12, 3, (8,))
    params = model.init(jax.random.key(0), x)["params"]
    assert model.apply({"params": params}, x).shape == (5, 12)
    assert model.apply({"params": params}, x, method=ae.Autoencoder.encode).shape == (5, 3)
    assert count(params) == (12 * 8 + 8) + (8 * 3 + 3) + (3 * 8 + 8) + (8 * 12 + 12)
    # no hidden layer, identity activations: r = (x W_e + b_e) W_d + b_d
    linear = ae.dense_autoencoder(12, 3)
    p = linear.init(jax.random.key(1), x)["params"]
    we, be = p["encoder"]["code"]["kernel"], p["encoder"]["code"]["bias"]
    wd, bd = p["decoder"]["output"]["kernel"], p["decoder"]["output"]["bias"]
    expected = (x @ np.asarray(we) + np.asarray(be)) @ np.asarray(wd) + np.asarray(bd)
    np.testing.assert_allclose(linear.apply({"params": p}, x), expected, rtol=1e-5, atol=1e-6)


def test_dense_encoder_flattens_images():
    images = np.zeros((4, 8, 8, 1), np.float32)
    model = ae.Autoencoder(ae.DenseEncoder((16,), 2), ae.DenseDecoder((16,), 64, shape=(8, 8, 1)))
    variables = model.init(jax.random.key(0), images)
    assert model.apply(variables, images).shape == (4, 8, 8, 1)


@pytest.mark.parametrize("shape", [(28, 28, 1), (8, 8, 1)])
def test_conv_autoencoder_returns_images_of_the_input_shape(shape):
    x = np.random.default_rng(0).uniform(size=(3, *shape)).astype(np.float32)
    model = ae.conv_autoencoder(shape, 10, (8, 16))
    variables = model.init(jax.random.key(0), x)
    assert model.apply(variables, x).shape == (3, *shape)
    assert model.apply(variables, x, method=ae.Autoencoder.encode).shape == (3, 10)


def test_tied_stack_builds_on_tied_autoencoder():
    x = np.random.default_rng(1).uniform(size=(6, 10)).astype(np.float32)
    stack = ae.TiedStack((10, 6, 3))
    params = stack.init(jax.random.key(0), x)["params"]
    assert set(params) == {"layer_0", "layer_1"}
    assert count(params) == (10 * 6 + 6 + 10) + (6 * 3 + 3 + 6)  # one kernel per layer
    # layer 0 alone is a TiedAutoencoder with the same parameters
    single = TiedAutoencoder(10, 6, nn.sigmoid, ae.identity)
    below, rec = stack.apply({"params": params}, x, 0, method=ae.TiedStack.layer_reconstruction)
    np.testing.assert_allclose(below, x)
    np.testing.assert_allclose(rec, single.apply({"params": params["layer_0"]}, x), rtol=1e-6)
    # the deep code goes through both encoders; decoding uses the transposed kernels
    w0, b0 = params["layer_0"]["kernel"], params["layer_0"]["hidden_bias"]
    w1, b1 = params["layer_1"]["kernel"], params["layer_1"]["hidden_bias"]
    h1 = jax.nn.sigmoid(x @ w0 + b0)
    h2 = jax.nn.sigmoid(h1 @ w1 + b1)
    np.testing.assert_allclose(stack.apply({"params": params}, x, method="encode"), h2, rtol=1e-5)
    r = jax.nn.sigmoid(h2 @ w1.T + params["layer_1"]["visible_bias"]) @ w0.T
    r = r + params["layer_0"]["visible_bias"]
    np.testing.assert_allclose(stack.apply({"params": params}, x), r, rtol=1e-5, atol=1e-6)


def test_greedy_layer_loss_only_trains_its_own_layer():
    x = np.random.default_rng(2).uniform(size=(6, 10)).astype(np.float32)
    stack = ae.TiedStack((10, 6, 3))
    params = stack.init(jax.random.key(0), x)["params"]

    def loss(p):
        below, rec = stack.apply({"params": p}, x, 1, method=ae.TiedStack.layer_reconstruction)
        return jnp.sum((rec - below) ** 2)

    grads = jax.grad(loss)(params)
    assert all(float(jnp.abs(g).max()) == 0 for g in jax.tree.leaves(grads["layer_0"]))
    assert float(jnp.abs(grads["layer_1"]["kernel"]).max()) > 0


def test_decoder_log_likelihoods_match_scipy():
    rng = np.random.default_rng(3)
    x01 = rng.integers(0, 2, size=(4, 7)).astype(np.float64)
    logits = rng.normal(size=(4, 7))
    p = 1 / (1 + np.exp(-logits))
    expected = stats.bernoulli.logpmf(x01, p).sum(axis=1)
    np.testing.assert_allclose(ae.bernoulli_log_likelihood(x01, logits), expected, rtol=1e-5)
    x = rng.normal(size=(4, 7))
    mean, log_var = rng.normal(size=(4, 7)), rng.normal(size=(4, 7))
    expected = stats.norm.logpdf(x, mean, np.exp(0.5 * log_var)).sum(axis=1)
    np.testing.assert_allclose(ae.gaussian_log_likelihood(x, mean, log_var), expected, rtol=1e-5)
    # fixed sigma: -log p = ||x - mean||^2 / (2 sigma^2) + const
    nll = -ae.gaussian_log_likelihood(x, mean, 0.0)
    sq = 0.5 * ((x - mean) ** 2).sum(axis=1)
    np.testing.assert_allclose(nll - sq, np.full(4, 3.5 * np.log(2 * np.pi)), rtol=1e-5)


def test_samplers_have_the_right_moments():
    key = jax.random.key(0)
    logits = jnp.array([-2.0, 0.0, 1.5])
    draws = jax.vmap(lambda k: ae.sample_bernoulli(k, logits))(jax.random.split(key, 20000))
    np.testing.assert_allclose(draws.mean(0), jax.nn.sigmoid(logits), atol=0.015)
    mean, log_var = jnp.array([0.5, -1.0]), jnp.log(jnp.array([0.25, 4.0]))
    draws = jax.vmap(lambda k: ae.sample_gaussian(k, mean, log_var))(jax.random.split(key, 20000))
    np.testing.assert_allclose(draws.mean(0), mean, atol=0.04)
    np.testing.assert_allclose(draws.var(0), [0.25, 4.0], rtol=0.05)


@pytest.mark.parametrize("kind", ae.DECODERS)
def test_stochastic_autoencoder(kind):
    x = (np.random.default_rng(4).uniform(size=(5, 9)) > 0.5).astype(np.float32)
    model = ae.StochasticAutoencoder(ae.DenseEncoder((), 3), ae.DenseDecoder((), 9), kind, 0.5)
    variables = model.init(jax.random.key(0), x)
    # the mean code without a key; a draw around it with one
    mean = model.apply(variables, x, method="encode")
    h = model.apply(variables, x, jax.random.key(1), method="encode")
    again = model.apply(variables, x, jax.random.key(1), method="encode")
    np.testing.assert_array_equal(h, again)
    assert h.shape == (5, 3) and not np.allclose(h, mean)
    loglik = model.apply(variables, x, method="log_likelihood", h=mean)
    location = ae.DenseDecoder((), 9).apply(
        {"params": variables["params"]["decoder"]}, np.asarray(mean)
    )
    expected = (
        ae.bernoulli_log_likelihood(x, location)
        if kind == "bernoulli"
        else ae.gaussian_log_likelihood(x, location, 0.0)
    )
    np.testing.assert_allclose(loglik, expected, rtol=1e-5)
    np.testing.assert_allclose(model.apply(variables, x), expected, rtol=1e-5)
    sample = model.apply(variables, mean, jax.random.key(2), method="sample")
    assert sample.shape == x.shape
    if kind == "bernoulli":
        assert set(np.unique(sample)) <= {0.0, 1.0}


def test_unknown_decoder_is_refused():
    model = ae.StochasticAutoencoder(ae.DenseEncoder((), 3), ae.DenseDecoder((), 9), "poisson")
    with pytest.raises(ValueError, match="bernoulli"):
        model.init(jax.random.key(0), np.zeros((1, 9), np.float32))


@pytest.mark.parametrize("kind, level", [("gaussian", 0.3), ("masking", 0.25)])
def test_corruption_is_seed_deterministic_and_has_its_law(kind, level):
    x = jnp.asarray(np.random.default_rng(5).uniform(0.2, 1.0, size=(400, 50)), jnp.float32)
    a = ae.corrupt(jax.random.key(7), x, kind, level)
    b = ae.corrupt(jax.random.key(7), x, kind, level)
    c = ae.corrupt(jax.random.key(8), x, kind, level)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    eta = np.asarray(a - x, np.float64)
    if kind == "gaussian":
        assert abs(eta.mean()) < 0.01 and abs(eta.std() - level) < 0.01
    else:
        dropped = np.asarray(a) == 0
        assert abs(dropped.mean() - level) < 0.01
        np.testing.assert_array_equal(np.asarray(a)[~dropped], np.asarray(x)[~dropped])


def test_unknown_noise_is_refused():
    with pytest.raises(ValueError, match="gaussian, masking"):
        ae.corrupt(jax.random.key(0), jnp.zeros(3), "salt", 0.1)


def test_stacked_classifier_heads_the_last_code_and_can_freeze_it():
    x = np.random.default_rng(6).uniform(size=(4, 10)).astype(np.float32)
    y = np.array([0, 1, 2, 0])
    model = ae.StackedClassifier((10, 6, 3), classes=3)
    params = model.init(jax.random.key(0), x)["params"]
    assert set(params) == {"stack", "head"} and set(params["stack"]) == {"layer_0", "layer_1"}
    code = ae.TiedStack((10, 6, 3)).apply({"params": params["stack"]}, x, method="encode")
    logits = code @ params["head"]["kernel"] + params["head"]["bias"]
    np.testing.assert_allclose(model.apply({"params": params}, x), logits, rtol=1e-5, atol=1e-6)

    def loss(p, frozen):
        out = ae.StackedClassifier((10, 6, 3), 3, frozen=frozen).apply({"params": p}, x)
        return -jnp.mean(jax.nn.log_softmax(out)[jnp.arange(4), y])

    free, frozen = jax.grad(loss)(params, False), jax.grad(loss)(params, True)
    assert float(jnp.abs(free["stack"]["layer_0"]["kernel"]).max()) > 0
    assert all(float(jnp.abs(g).max()) == 0 for g in jax.tree.leaves(frozen["stack"]))
    np.testing.assert_allclose(free["head"]["kernel"], frozen["head"]["kernel"], rtol=1e-6)
