"""lexicon.transfer: task splits, the replicas' labelled subsets, LeNet-5 stage outputs."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lexicon import data, losses, train
from lexicon import transfer as setting


def small_config(**changes):
    config = train.defaults()
    config.update(seeds=2, label_counts=(2, 3), activation="relu", progress=False)
    config.update(frozen="conv1", new_layers="dense1,dense2", feature_layer="c3")
    config.update(target_lr=3e-3, finetune_lr_scale=1.0)
    config.update(changes)
    return config


@pytest.fixture(scope="module")
def tasks():
    return setting.task_splits(data.load("digits", seed=0, flatten=False), 5)


def stacked_pretrained(config, seeds):
    """Random "pretrained" LeNet-5 params of ``seeds`` replicas, leading seed axis."""
    model = setting.make_model(config, 5)
    keys = jax.random.split(jax.random.key(42), seeds)
    return jax.jit(jax.vmap(lambda k: model.init(k, jnp.zeros((1, 8, 8, 1)))["params"]))(keys)


def test_task_splits_relabel_the_target(tasks):
    source, target = tasks
    for split in source:
        assert set(np.unique(split["y"])) <= set(range(5))
    full = data.load("digits", seed=0, flatten=False)
    for split, original in zip(target, full):
        np.testing.assert_array_equal(split["y"], original["y"][original["y"] >= 5] - 5)
    assert len(source.train["y"]) + len(target.train["y"]) == len(full.train["y"])


def test_labelled_mask_draws_per_class():
    labels = jnp.asarray(np.random.default_rng(0).integers(0, 4, size=200))
    counts = jnp.asarray([1, 3, 7])
    keys = jax.random.split(jax.random.key(0), 3)
    masks = jax.vmap(lambda k, n: setting.labelled_mask(k, labels, n, 4))(keys, counts)
    for mask, n in zip(np.asarray(masks), [1, 3, 7]):
        assert set(np.unique(mask)) <= {0.0, 1.0}
        np.testing.assert_array_equal(np.bincount(np.asarray(labels)[mask > 0], minlength=4), n)
    other = setting.labelled_mask(jax.random.key(9), labels, 7, 4)
    assert not np.array_equal(np.asarray(other), np.asarray(masks[2]))


def test_labelled_data_gives_each_replica_its_subset(tasks):
    """Replica r: a copy of the pool, weight 1 on label_counts[r // seeds] per class."""
    _, target = tasks
    config = small_config(seed=3)
    labelled = setting.labelled_data(config, target.train, 5)
    pool = len(target.train["y"])
    assert labelled["x"].shape == (4, pool, 8, 8, 1) and labelled["weight"].shape == (4, pool)
    for r, count in enumerate([2, 2, 3, 3]):
        np.testing.assert_array_equal(labelled["y"][r], target.train["y"])
        mine = labelled["weight"][r] > 0
        np.testing.assert_array_equal(np.bincount(target.train["y"][mine], minlength=5), count)
        key = jax.random.split(train.stream(3 + r, "init"))[1]
        expected = setting.labelled_mask(key, jnp.asarray(target.train["y"]), count, 5)
        np.testing.assert_array_equal(labelled["weight"][r], expected)
    assert not np.array_equal(labelled["weight"][0], labelled["weight"][1])


def test_layer_output_shapes():
    config = small_config()
    model = setting.make_model(config, 5)
    params = jax.tree.map(lambda p: p[0], stacked_pretrained(config, 1))
    x = jnp.linspace(0, 1, 3 * 64).reshape(3, 8, 8, 1)
    widths = {"c1": 8 * 8 * 6, "s2": 4 * 4 * 6, "c3": 4 * 4 * 16, "s4": 2 * 2 * 16}
    widths.update({"f5": 120, "f6": 84})
    for stage, width in widths.items():
        shape = jax.eval_shape(lambda s=stage: setting.layer_output(model, params, x, s)).shape
        assert shape == (3, width)
    last, features = jax.jit(
        lambda p: (
            setting.layer_output(model, p, x, "f6"),
            model.apply({"params": p}, x, method="features"),
        )
    )(params)
    np.testing.assert_allclose(last, features, rtol=1e-6)


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

        tx = setting.optimizer("finetune", config)
        return first(tx), first(optax.adam(0.1)), first(optax.adam(0.025))

    updates, new, tuned = first_updates(grads, params)
    for layer in ("dense1", "dense2", "classifier"):
        jax.tree.map(np.testing.assert_allclose, updates[layer], new[layer])
    jax.tree.map(np.testing.assert_allclose, updates["conv2"], tuned["conv2"])
    assert all(np.all(np.asarray(u) == 0) for u in jax.tree.leaves(updates["conv1"]))

    features = {"network": params, "head": {"kernel": jnp.ones((4, 5)), "bias": jnp.ones(5)}}
    tx = setting.optimizer("features", config)
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
    task = setting.target_task(config, method, model, 5, jnp.zeros((1, 8, 8, 1)))
    fresh = jax.jit(jax.vmap(task.init))(jax.random.split(jax.random.key(1), 4))
    state = setting.reuse(config, method, fresh, pretrained)  # 2 label counts x 2 seeds
    for r in range(4):
        mine = jax.tree.map(lambda p, r=r: np.asarray(p[r]), state.params)
        new = jax.tree.map(lambda p, r=r: np.asarray(p[r]), fresh.params)
        source = jax.tree.map(lambda p, r=r: np.asarray(p[r % 2]), pretrained)
        if method == "features":
            for layer in setting.LAYERS:
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
    frozen = {"features": list(setting.LAYERS), "finetune": ["conv1"]}
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
        logits = nn.Dense(5).apply({"params": params["head"]}, h)
    else:
        logits = model.apply({"params": params}, x)
    expected = losses.softmax_cross_entropy_with_integer_labels(logits, y)
    np.testing.assert_allclose(metrics["loss"][3], expected, rtol=1e-5)


def test_stage_outputs_are_every_layer_output_at_once():
    config = small_config()
    model = setting.make_model(config, 5)
    params = jax.tree.map(lambda p: p[0], stacked_pretrained(config, 1))
    x = jnp.linspace(0, 1, 2 * 64).reshape(2, 8, 8, 1)
    outputs = setting.stage_outputs(model, params, x)
    assert tuple(outputs) == setting.STAGES
    for stage in setting.STAGES:
        np.testing.assert_array_equal(outputs[stage], setting.layer_output(model, params, x, stage))


def test_defaults_pass_their_rules_and_the_target_keys_extend_the_setting():
    from lexicon import cli
    from lexicon.rules import check

    setting_keys, target = setting.defaults(), setting.defaults(target=True)
    assert set(setting_keys) < set(target) and set(setting.RULES) < set(setting.TARGET_RULES)
    for config, rules in ((setting_keys, setting.RULES), (target, setting.TARGET_RULES)):
        check(config, cli.rules_for(config, rules))  # raises on a default its rule refuses
        assert set(rules) <= set(config)
    assert target.eval_every == 25 and setting_keys.eval_every == train.defaults().eval_every
    comments = cli.key_comments(setting.defaults)  # what --help prints for transfer and probes
    assert all(comments.get(key) for key in set(target) - set(train.defaults()))
