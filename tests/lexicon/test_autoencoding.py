"""lexicon.autoencoding: the reconstruction task, its penalty, its corruption, its greedy layer."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lexicon.autoencoding import autoencoder_task
from lexicon.nn import autoencoders as ae


def test_loss_is_the_squared_error_of_the_corrupted_input_plus_the_penalty():
    x = jnp.asarray(np.random.default_rng(0).uniform(size=(6, 5)), jnp.float32)
    model = ae.dense_autoencoder(5, 3)

    def penalty(params, x_in, h):
        return 0.5 * jnp.sum(h**2) / len(h)

    def noise(key, x):
        return x + 0.1

    task = autoencoder_task(model, optax.sgd(0.0), x, penalty=penalty, noise=noise)
    state = task.init(jax.random.key(0))
    _, metrics = task.make_step(None)(state, {"x": x}, jax.random.key(1))
    params = state.params
    h = model.apply({"params": params}, x + 0.1, method="encode")
    r = np.asarray(model.apply({"params": params}, h, method="decode"), np.float64)
    error = np.sum((r - np.asarray(x)) ** 2) / len(x)
    np.testing.assert_allclose(metrics["error"], error, rtol=1e-5)
    np.testing.assert_allclose(
        metrics["loss"], error + 0.5 * np.sum(np.asarray(h) ** 2) / 6, rtol=1e-5
    )
    clean = model.apply({"params": params}, x)
    expected = np.sum((np.asarray(clean) - np.asarray(x)) ** 2) / len(x)
    np.testing.assert_allclose(task.evaluate(state, {"x": x})["loss"], expected, rtol=1e-5)


def test_a_greedy_layer_reconstructs_the_code_below_it():
    x = jnp.asarray(np.random.default_rng(1).uniform(size=(4, 6)), jnp.float32)
    model = ae.StackedClassifier((6, 4, 3), 2)
    task = autoencoder_task(model, optax.sgd(0.0), x, layer=1)
    assert task.evaluate is None
    state = task.init(jax.random.key(0))
    _, metrics = task.make_step(None)(state, {"x": x}, jax.random.key(1))
    below, r = model.apply({"params": state.params}, x, 1, method="layer_reconstruction")
    expected = np.sum((np.asarray(r) - np.asarray(below)) ** 2) / len(x)
    np.testing.assert_allclose(metrics["loss"], expected, rtol=1e-5)
