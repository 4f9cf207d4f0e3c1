"""Deep belief networks (SPEC.md §7): the classifier computes the RBMs' conditionals, an
upper layer learns from samples of the fixed layer below, greedy stacking through train.fit."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lexicon import train
from lexicon.nn import dbn, rbm


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def test_classifier_is_the_stack_of_conditionals_and_a_head():
    """logits = head(p(h2 | p(h1 | x))) with layer i's kernel w and bias a, against NumPy."""
    keys = jax.random.split(jax.random.key(0), 3)
    layers = [rbm.init(keys[0], 7, 5, scale=1.0), rbm.init(keys[1], 5, 4, scale=1.0)]
    layers = [{**p, "a": p["a"] + 0.3} for p in layers]
    model = dbn.DBNClassifier((5, 4), 3)
    x = jax.random.uniform(keys[2], (6, 7))
    params = dbn.with_pretrained(model.init(keys[2], x)["params"], layers)
    logits = np.asarray(jax.jit(model.apply)({"params": params}, x), np.float64)
    h = np.asarray(x, np.float64)
    for p in layers:
        h = sigmoid(h @ np.asarray(p["w"]) + np.asarray(p["a"]))
    np.testing.assert_allclose(dbn.mean_field_codes(layers, x), h, rtol=1e-5)
    head = params["head"]
    np.testing.assert_allclose(logits, h @ head["kernel"] + head["bias"], rtol=1e-5, atol=1e-6)


def test_upper_layer_learns_from_samples_of_the_fixed_layer_below():
    """A step of layer 2 draws h1 ~ p(h1 | x) from the frozen layer 1 and makes the CD update
    of layer 2 on those binary samples; layer 1 is left as it was."""
    lower = rbm.init(jax.random.key(1), 8, 6, scale=1.0)
    tx = rbm.sgd_momentum(0.1, 0.5, 1e-4)
    task = rbm.task(6, 4, tx, k=2)
    state = task.init(jax.random.key(2)).replace(below=(lower,))
    x = (jax.random.uniform(jax.random.key(3), (10, 8)) < 0.5).astype(jnp.float32)
    key = jax.random.key(4)
    new, _ = jax.jit(task.make_step(None))(state, {"x": x}, key)
    up_key, cd_key = jax.random.split(key)
    h1 = rbm.sample_h(lower, x, jax.random.fold_in(up_key, 0))
    assert set(np.unique(h1)) <= {0.0, 1.0}
    gradient, _ = jax.jit(rbm.cd_gradient, static_argnums=3)(state.params, h1, cd_key, 2)
    updates, _ = tx.update(jax.tree.map(jnp.negative, gradient), state.opt_state, state.params)
    expected = optax.apply_updates(state.params, updates)
    jax.tree.map(np.testing.assert_array_equal, new.params, expected)
    jax.tree.map(np.testing.assert_array_equal, new.below, (lower,))


@pytest.mark.slow
def test_greedy_pretraining_stacks_fixed_layers(tmp_path):
    """Two layers, Gaussian-Bernoulli first, through train.fit: the first layer equals a plain
    RBM fit of the same config, the second carries it unchanged in its state."""
    config = train.defaults()
    config.update(dict(seeds=2, epochs=3, batch_size=20, progress=False))
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(80, 10)) + 2 * (rng.uniform(size=(80, 1)) < 0.5)).astype(np.float32)
    x = (x - x.mean(0)) / x.std(0)

    def tx_for(i):
        return rbm.sgd_momentum(0.01 if i == 0 else 0.1, 0.5, 1e-4)

    layers, results = dbn.pretrain(
        config,
        x,
        (6, 4),
        tmp_path,
        tx_for=tx_for,
        first_visible="gaussian",
        eval_x=x,
        log=lambda _: None,
    )
    assert [layer["w"].shape for layer in layers] == [(2, 10, 6), (2, 6, 4)]
    task = rbm.task(10, 6, tx_for(0), visible="gaussian", visible_bias=x.mean(0))
    plain = train.fit(config, task, {"x": x}, tmp_path / "plain", log=lambda _: None)
    jax.tree.map(np.testing.assert_array_equal, plain.state.params, layers[0])
    jax.tree.map(np.testing.assert_array_equal, results[1].state.below, (layers[0],))
    for result in results:
        _, curve = result.curve("train/reconstruction")
        assert np.all(np.isfinite(curve)) and curve.shape == (2, 3)
