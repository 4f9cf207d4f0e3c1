"""experiments/transfer.py: optimizer groups, frozen layers, verdicts, end to end."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments import transfer
from lexicon import data
from lexicon import transfer as setting
from lexicon.rules import ConfigError


def small_config(**changes):
    config = transfer.get_config()
    config.seeds, config.label_counts, config.progress = 2, (2, 3), False
    config.update(changes)
    return config


@pytest.fixture(scope="module")
def tasks():
    splits = data.load("digits", seed=0, flatten=False)
    return setting.task_splits(splits, 5)


def stacked_pretrained(config, seeds):
    """Random "pretrained" LeNet-5 params of ``seeds`` replicas, leading seed axis."""
    model = setting.make_model(config, 5)
    keys = jax.random.split(jax.random.key(42), seeds)
    return jax.jit(jax.vmap(lambda k: model.init(k, jnp.zeros((1, 8, 8, 1)))["params"]))(keys)


def test_optimizer_groups_match_optax():
    """new layers: Adam(lr); fine-tuned: Adam(lr * scale); frozen: exactly no update."""
    config = small_config(finetune_lr_scale=0.25, target_lr=0.1)
    shapes = {"conv1": (5, 5, 1, 6), "conv2": (5, 5, 6, 16), "dense1": (64, 120)}
    shapes.update({"dense2": (120, 84), "classifier": (84, 5)})
    params = {k: {"kernel": jnp.ones(v), "bias": jnp.ones(v[-1])} for k, v in shapes.items()}
    grads = jax.tree.map(
        lambda p: jnp.cos(jnp.arange(p.size, dtype=p.dtype)).reshape(p.shape), params
    )

    @jax.jit
    def first_updates(grads, params):
        def first(tx):
            return tx.update(grads, tx.init(params), params)[0]

        tx = transfer.optimizer("finetune", config)
        return first(tx), first(optax.adam(0.1)), first(optax.adam(0.025))

    updates, new, tuned = first_updates(grads, params)
    for layer in ("dense1", "dense2", "classifier"):
        jax.tree.map(np.testing.assert_allclose, updates[layer], new[layer])
    jax.tree.map(np.testing.assert_allclose, updates["conv2"], tuned["conv2"])
    assert all(np.all(np.asarray(u) == 0) for u in jax.tree.leaves(updates["conv1"]))

    features = {"network": params, "head": {"kernel": jnp.ones((4, 5)), "bias": jnp.ones(5)}}
    tx = transfer.optimizer("features", config)
    grads = jax.tree.map(jnp.ones_like, features)
    updates, _ = tx.update(grads, tx.init(features), features)
    assert all(np.all(np.asarray(u) == 0) for u in jax.tree.leaves(updates["network"]))
    assert all(np.all(np.asarray(u) != 0) for u in jax.tree.leaves(updates["head"]))


@pytest.mark.parametrize("method", ["features", "finetune"])
def test_target_task_starts_from_the_right_weights(method, tasks):
    """reuse puts each replica's pretrained layers in place; a step on the replicas' labelled
    data leaves frozen weights exactly as they were and averages over the subset only.

    (scratch, the plain case, runs in the end-to-end test.)"""
    _, target = tasks
    config = small_config()
    pretrained = stacked_pretrained(config, config.seeds)
    model = setting.make_model(config, 5)
    task = transfer.target_task(config, method, model, 5, jnp.zeros((1, 8, 8, 1)))
    fresh = jax.jit(jax.vmap(task.init))(jax.random.split(jax.random.key(1), 4))
    state = transfer.reuse(config, method, fresh, pretrained)  # 2 label counts x 2 seeds
    for r in range(4):
        mine = jax.tree.map(lambda p, r=r: np.asarray(p[r]), state.params)
        new = jax.tree.map(lambda p, r=r: np.asarray(p[r]), fresh.params)
        source = jax.tree.map(lambda p, r=r: np.asarray(p[r % 2]), pretrained)
        if method == "features":
            for layer in transfer.LAYERS:
                jax.tree.map(np.testing.assert_array_equal, mine["network"][layer], source[layer])
            jax.tree.map(np.testing.assert_array_equal, mine["head"], new["head"])
        else:
            for layer in ("conv1", "conv2"):
                jax.tree.map(np.testing.assert_array_equal, mine[layer], source[layer])
            for layer in ("dense1", "dense2", "classifier"):
                jax.tree.map(np.testing.assert_array_equal, mine[layer], new[layer])

    # One full-batch step: frozen weights keep their exact values, trained ones move.
    labelled = jax.tree.map(jnp.asarray, setting.labelled_data(config, target.train, 5))
    keys = jax.random.split(jax.random.key(7), 4)
    moved, metrics = jax.jit(jax.vmap(task.make_step(None)))(state, labelled, keys)
    before, after = state.params, moved.params
    if method == "features":
        before, after = before["network"], after["network"]
    frozen = {"features": list(transfer.LAYERS), "finetune": ["conv1"]}
    for layer in frozen[method]:
        jax.tree.map(np.testing.assert_array_equal, after[layer], before[layer])
    trained = "head" if method == "features" else "classifier"
    assert not np.allclose(moved.params[trained]["kernel"], state.params[trained]["kernel"])
    # The loss and accuracy are those of the replica's labelled examples (10 or 15) alone.
    hits = np.asarray(metrics["accuracy"]) * np.array([10, 10, 15, 15])
    np.testing.assert_allclose(hits, np.round(hits), atol=1e-4)
    mine = np.asarray(labelled["weight"][3]) > 0
    params = jax.tree.map(lambda p: p[3], state.params)
    x, y = target.train["x"][mine], target.train["y"][mine]
    if method == "features":
        h = setting.layer_output(model, params["network"], x, config.feature_layer)
        logits = transfer.nn.Dense(5).apply({"params": params["head"]}, h)
    else:
        logits = model.apply({"params": params}, x)
    expected = transfer.losses.softmax_cross_entropy_with_integer_labels(logits, y)
    np.testing.assert_allclose(metrics["loss"][3], expected, rtol=1e-5)


def test_label_counts_are_checked_before_training(tasks):
    _, target = tasks
    with pytest.raises(ConfigError, match="label_counts"):
        setting.check_counts(small_config(label_counts=(5, 1000)), target.train["y"], 5)
    assert transfer.RULES["frozen"].check("frozen", "conv1,dense9") is not None
    assert transfer.RULES["frozen"].check("frozen", "none") is None


@pytest.mark.slow
def test_experiment_end_to_end(tmp_path):
    config = small_config(epochs=2, target_steps=4, eval_every=2)
    results = transfer.train_and_evaluate(config, tmp_path)
    for name in ("report.md", "accuracy_vs_labels.png", "curves.png", "probes.png"):
        assert (tmp_path / name).exists(), name
    for method in transfer.METHODS:
        accuracy = results["accuracy"][method]
        assert accuracy.shape == (2, 2) and np.all(np.isfinite(accuracy))
    assert set(results["probes"]) == {"pixels", *transfer.STAGES}
    assert np.all(results["probes"]["pixels"] > 0.5)
    assert results["transfer_wins"].shape == (2,)
    assert "beats training from scratch" in (tmp_path / "report.md").read_text()


def test_experiment_end_to_end_tiny(tmp_path):
    config = small_config(seeds=1, label_counts=(2,), epochs=2, target_steps=10, eval_every=5)
    results = transfer.train_and_evaluate(config, tmp_path)
    for name in ("report.md", "accuracy_vs_labels.png", "curves.png", "probes.png"):
        assert (tmp_path / name).exists(), name
    for method in transfer.METHODS:
        accuracy = results["accuracy"][method]
        # 5 classes (chance 0.2): observed 0.55 (scratch), 0.64 (features), 0.67 (finetune).
        assert accuracy.shape == (1, 1) and np.isfinite(accuracy[0, 0]) and accuracy[0, 0] > 0.35
        # The replica trains on its own 2 labelled images per class: accuracy in tenths.
        records = transfer.train.read_metrics(tmp_path / method)
        assert [r["step"] for r in records] == list(range(1, 11))
        hits = np.asarray([r["train/accuracy"] for r in records]) * 10
        np.testing.assert_allclose(hits, np.round(hits), atol=1e-4)
    assert results["probes"]["pixels"][0, 0] > 0.6  # observed 0.82
    assert "regression on the raw pixels matches or beats" in (tmp_path / "report.md").read_text()
