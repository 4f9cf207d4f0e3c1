"""lexicon.multitask: the labels of task 2, the weighted loss, its gradients."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lexicon import baselines
from lexicon import multitask as mt


def test_second_labels_follow_their_definitions():
    digits = np.arange(10)
    np.testing.assert_array_equal(mt.second_labels(digits, "loop"), [1, 0, 0, 0, 0, 0, 1, 0, 1, 1])
    np.testing.assert_array_equal(
        mt.second_labels(digits, "parity"), [0, 1, 0, 1, 0, 1, 0, 1, 0, 1]
    )
    np.testing.assert_array_equal(mt.second_labels(digits, "ge5"), [0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    with pytest.raises(ValueError, match="parity"):
        mt.second_labels(digits, "colour")


def numpy_cross_entropy(logits, labels):
    """-(1/N) sum_n log softmax(z_n)_{y_n}, float64."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    log_softmax = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -np.mean(log_softmax[np.arange(len(labels)), labels])


def test_multitask_loss_is_w1_l1_plus_w2_l2(x64):
    rng = np.random.default_rng(0)
    logits_1, logits_2 = rng.normal(size=(7, 10)), rng.normal(size=(7, 2))
    y1, y2 = rng.integers(0, 10, 7), rng.integers(0, 2, 7)
    total, loss_1, loss_2 = mt.multitask_loss(logits_1, logits_2, y1, y2, 0.7, 2.5)
    expected_1, expected_2 = numpy_cross_entropy(logits_1, y1), numpy_cross_entropy(logits_2, y2)
    np.testing.assert_allclose(loss_1, expected_1, rtol=1e-12)
    np.testing.assert_allclose(loss_2, expected_2, rtol=1e-12)
    np.testing.assert_allclose(total, 0.7 * expected_1 + 2.5 * expected_2, rtol=1e-12)


def losses_of(model, params, batch, w1, w2):
    logits_1, logits_2 = model.apply({"params": params}, batch["x"])
    return mt.multitask_loss(logits_1, logits_2, batch["y"], batch["y2"], w1, w2)[0]


def test_gradients_through_the_shared_trunk(x64):
    """grad J = grad L_1 + lambda grad L_2; with lambda = 0 head 2 gets exactly no gradient."""
    model = mt.TwoHeadNet(trunk=(6, 5), activation="tanh")
    kx, ky, kp = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, (9, 4), jnp.float64)
    y = jax.random.randint(ky, (9,), 0, 10)
    batch = {"x": x, "y": y, "y2": mt.second_labels(y, "loop")}
    params = jax.tree.map(lambda p: p.astype(jnp.float64), model.init(kp, x)["params"])
    lam = 0.3
    grad = jax.jit(jax.grad(losses_of, argnums=1), static_argnums=0)  # one compile, 3 weights
    g = grad(model, params, batch, 1.0, lam)
    g1 = grad(model, params, batch, 1.0, 0.0)
    g2 = grad(model, params, batch, 0.0, 1.0)
    for a, b, c in zip(jax.tree.leaves(g), jax.tree.leaves(g1), jax.tree.leaves(g2)):
        np.testing.assert_allclose(a, b + lam * c, rtol=1e-10, atol=1e-14)
    assert all(np.all(leaf == 0) for leaf in jax.tree.leaves(g1["head_2"]))
    assert all(np.all(leaf == 0) for leaf in jax.tree.leaves(g2["head_1"]))
    assert any(np.any(leaf != 0) for leaf in jax.tree.leaves(g2["trunk"]))


def test_reference_accuracies_fit_one_sklearn_net_per_task():
    rng = np.random.default_rng(0)
    split = {"x": rng.normal(size=(60, 4)), "y": np.arange(60) % 10}
    splits = types.SimpleNamespace(
        **{k: mt.with_second_task(split, "parity") for k in ("train", "test")}
    )
    got = mt.reference_accuracies(splits, (8,), "sigmoid", max_iter=50, quiet=True)
    expected = [
        baselines.mlp_classifier(
            {"x": split["x"], "y": labels},
            {"x": split["x"], "y": labels},
            (8,),
            activation="logistic",
            max_iter=50,
            quiet=True,
        )
        for labels in (split["y"], split["y"] % 2)
    ]
    assert got == tuple(expected)
