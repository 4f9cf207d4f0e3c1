"""lexicon.transfer: task splits, the replicas' labelled subsets, LeNet-5 stage outputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lexicon import data, train
from lexicon import transfer as setting


def small_config(**changes):
    config = train.defaults()
    config.update(seeds=2, label_counts=(2, 3), activation="relu", progress=False)
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
