"""Greedy supervised pretraining: the cut net against NumPy, frozen layers, the stage plan."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lexicon import optim, train
from lexicon.greedy import DeepClassifier, freeze, greedy_plan


def test_each_depth_is_the_literal_net_read_by_its_own_head(x64):
    """logits_k = V_k h_k + c_k, h_k = sigmoid(W_k h_{k-1} + b_k), h_0 = x; one init for all."""
    x = np.random.default_rng(0).normal(size=(5, 7))
    model = DeepClassifier(hidden=(6, 4, 3), num_classes=2)
    params = jax.jit(model.init)(jax.random.key(0), jnp.asarray(x))["params"]
    shallow = jax.jit(model.clone(depth=1).init)(jax.random.key(0), jnp.asarray(x))["params"]
    assert jax.tree.all(jax.tree.map(lambda a, b: bool((a == b).all()), params, shallow))
    h = x
    for k in (1, 2, 3):
        layer = params[f"layer_{k}"]
        h = 1 / (1 + np.exp(-(h @ np.asarray(layer["kernel"]) + np.asarray(layer["bias"]))))
        head = params[f"head_{k}"]
        expected = h @ np.asarray(head["kernel"]) + np.asarray(head["bias"])
        ours = jax.jit(model.clone(depth=k).apply)({"params": params}, jnp.asarray(x))
        np.testing.assert_allclose(ours, expected, rtol=1e-12)
    np.testing.assert_array_equal(jax.jit(model.apply)({"params": params}, x), ours)  # depth L


def test_freeze_zeroes_the_updates_of_frozen_modules():
    params = {"a": {"w": jnp.ones(3)}, "b": {"w": jnp.ones(2), "v": jnp.ones(1)}}
    grads = jax.tree.map(lambda p: 2.0 * p, params)
    tx = freeze(optim.sgd(0.1), lambda name: name == "a")
    updates, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(updates["a"]["w"], -0.2 * np.ones(3), rtol=1e-6)
    assert all(bool((u == 0).all()) for u in jax.tree.leaves(updates["b"]))


def test_greedy_stages_freeze_the_layers_below_and_fine_tune_changes_all(tmp_path):
    """Through train.stages: stage k changes layer k and head k only (bitwise); the fine-tune
    changes every layer and the last head, and leaves the other heads as they were."""
    rng = np.random.default_rng(1)
    data = {"x": rng.normal(size=(64, 5)).astype(np.float32), "y": rng.integers(0, 3, size=64)}
    config = train.defaults()
    config.batch_size, config.progress, config.seeds = 32, False, 1
    model = DeepClassifier(hidden=(4, 4), num_classes=3)
    plan = greedy_plan(
        model, lambda: optax.sgd(0.5), data["x"][:1], layer_epochs=1, fine_tune_epochs=1
    )
    assert [stage.name for stage in plan] == ["layer_1", "layer_2", "fine_tune"]
    results = train.stages(config, plan, data, tmp_path, log=lambda _: None)
    after = {name: result.state.params for name, result in results.items()}

    def same(a, b, module):
        return jax.tree.all(jax.tree.map(lambda u, v: bool((u == v).all()), a[module], b[module]))

    # layer_2 left layer 1 and head 1 as layer_1 ended them, and changed layer 2 and head 2.
    assert same(after["layer_1"], after["layer_2"], "layer_1")
    assert same(after["layer_1"], after["layer_2"], "head_1")
    assert not same(after["layer_1"], after["layer_2"], "layer_2")
    assert not same(after["layer_1"], after["layer_2"], "head_2")
    # The fine-tune changed both layers and head 2; head 1 (not on the path) stays.
    for module in ("layer_1", "layer_2", "head_2"):
        assert not same(after["layer_2"], after["fine_tune"], module), module
    assert same(after["layer_2"], after["fine_tune"], "head_1")
