"""Tests for lexicon.adversarial: FGSM and the mixed adversarial-training loss."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lexicon import adversarial, optim
from lexicon.nn.layers import MLP as LayersMLP


class SmallMLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        hidden = nn.tanh(nn.Dense(16, name="hidden")(x))
        return nn.Dense(3, name="output")(hidden)


MLP = SmallMLP()


def init_mlp(seed, in_features):
    """NumPy params with the layout of ``SmallMLP().init`` (no Flax initializer to compile)."""
    rng = np.random.default_rng(seed)
    sizes = {"hidden": (in_features, 16), "output": (16, 3)}
    params = {
        name: {
            "kernel": (rng.normal(size=(m, n)) / np.sqrt(m)).astype(np.float32),
            "bias": (0.1 * rng.normal(size=n)).astype(np.float32),
        }
        for name, (m, n) in sizes.items()
    }
    layout = jax.eval_shape(MLP.init, jax.random.key(0), np.zeros((1, in_features), np.float32))
    assert jax.tree.map(lambda a: a.shape, layout["params"]) == jax.tree.map(np.shape, params)
    return {"params": params}


# Tests jit whole computations: many small eager dispatches cost more than one compile.
fgsm_mlp = jax.jit(functools.partial(adversarial.fgsm, MLP.apply), static_argnames="clip_range")


def linear_apply(params, x):
    return x @ params["w"] + params["b"]


fgsm_linear = jax.jit(functools.partial(adversarial.fgsm, linear_apply))


@jax.jit
def linear_losses_and_accuracy(params, x, y):
    logits = linear_apply(params, x)
    losses = adversarial.per_example_cross_entropy(logits, y)
    return losses, jnp.mean(jnp.argmax(logits, -1) == y)


@jax.jit
def mean_mlp_loss(params, x, y):
    return jnp.mean(adversarial.per_example_cross_entropy(MLP.apply(params, x), y))


def blobs(seed, n_per_class=50, dtype=np.float32):
    """Three Gaussian blobs in 2-D around fixed centres, separable by a linear classifier."""
    centres = np.array([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])
    noise = 0.4 * np.random.default_rng(seed).normal(size=(3, n_per_class, 2))
    x = (centres[:, None, :] + noise).reshape(-1, 2).astype(dtype)
    y = np.repeat(np.arange(3, dtype=np.int32), n_per_class)
    return x, y


def normal(seed, shape):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


@functools.partial(jax.jit, static_argnames=("steps", "lr"))
def train_linear_classifier(x, y, steps=200, lr=0.5):
    params = {"w": jnp.zeros((x.shape[1], 3)), "b": jnp.zeros(3)}

    def loss(p):
        return jnp.mean(adversarial.per_example_cross_entropy(linear_apply(p, x), y))

    def step(p, _):
        return jax.tree.map(lambda a, g: a - lr * g, p, jax.grad(loss)(p)), None

    params, _ = jax.lax.scan(step, params, None, length=steps)
    return params


def test_perturbation_has_linf_norm_exactly_epsilon():
    x = normal(0, (10, 5))
    y = np.arange(10, dtype=np.int32) % 3
    params = init_mlp(1, x.shape[1])
    epsilon = 0.1

    @jax.jit
    def perturbation(params, x):
        def input_loss(inputs):
            return jnp.sum(adversarial.per_example_cross_entropy(MLP.apply(params, inputs), y))

        return adversarial.fgsm_perturbation(input_loss, x, epsilon)

    delta = np.asarray(perturbation(params, x))
    assert np.max(np.abs(delta)) == np.float32(epsilon)
    assert set(np.unique(np.abs(delta))) <= {0.0, np.float32(epsilon)}
    # Per example, too: every example moves by exactly epsilon in L-infinity.
    np.testing.assert_array_equal(np.max(np.abs(delta), axis=1), np.full(10, np.float32(epsilon)))

    x_adv = np.asarray(fgsm_mlp(params, x, y, epsilon))
    np.testing.assert_array_equal(x_adv, x + delta)
    np.testing.assert_allclose(np.max(np.abs(x_adv - x), axis=1), epsilon, rtol=1e-6)


def test_clipping_keeps_inputs_in_range():
    x = np.random.default_rng(2).uniform(size=(10, 5)).astype(np.float32)
    y = np.arange(10, dtype=np.int32) % 3
    params = init_mlp(3, x.shape[1])
    x_adv = np.asarray(fgsm_mlp(params, x, y, 0.3, clip_range=(0.0, 1.0)))
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    unclipped = np.asarray(fgsm_mlp(params, x, y, 0.3))
    assert np.any(unclipped < 0.0) and np.any(unclipped > 1.0)
    np.testing.assert_array_equal(x_adv, np.clip(unclipped, 0.0, 1.0))


def test_fgsm_matches_numpy_for_logistic_regression(x64):
    """Binary logistic loss L = -y log s(z) - (1-y) log(1-s(z)), z = w.x + b:
    grad_x L = (s(z) - y) w, so x_adv = x + eps sign((s(z) - y) w)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 4))
    y = (rng.uniform(size=12) > 0.5).astype(np.float64)
    w, b, eps = rng.normal(size=4), 0.3, 0.05

    apply_fn = lambda p, inputs: inputs @ p["w"] + p["b"]
    attack = jax.jit(
        functools.partial(adversarial.fgsm, apply_fn, loss_fn=optax.sigmoid_binary_cross_entropy)
    )
    x_adv = attack({"w": w, "b": b}, x, y, eps)
    s = 1.0 / (1.0 + np.exp(-(x @ w + b)))
    expected = x + eps * np.sign((s - y)[:, None] * w[None, :])
    np.testing.assert_array_equal(np.asarray(x_adv), expected)


def test_fgsm_raises_loss_of_trained_linear_and_random_mlp_classifiers():
    x, y = blobs(4)
    params = train_linear_classifier(x, y)
    clean, accuracy = linear_losses_and_accuracy(params, x, y)
    assert float(accuracy) > 0.95

    x_adv = fgsm_linear(params, x, y, 0.5)
    attacked, accuracy_adv = linear_losses_and_accuracy(params, x_adv, y)
    # Cross-entropy of a linear model is convex in x, so L(x + d) >= L(x) + grad.d, and
    # grad.d = eps ||grad||_1 > 0: every example's loss must go up.
    assert bool(jnp.all(attacked > clean))
    assert float(accuracy_adv) < float(accuracy)

    mlp_params = init_mlp(5, x.shape[1])
    mlp_adv = fgsm_mlp(mlp_params, x, y, 0.1)
    assert float(mean_mlp_loss(mlp_params, mlp_adv, y)) > float(mean_mlp_loss(mlp_params, x, y))


def test_adversarial_training_loss_mixes_clean_and_adversarial_terms(x64):
    x, y = blobs(6, n_per_class=10, dtype=np.float64)
    params = {"w": np.random.default_rng(7).normal(size=(2, 3)), "b": np.zeros(3)}
    epsilon, weight = 0.2, 0.3

    def mean_loss(p, inputs):
        return jnp.mean(adversarial.per_example_cross_entropy(linear_apply(p, inputs), y))

    def mixed(p, clean_weight):
        return adversarial.adversarial_training_loss(
            linear_apply, p, x, y, epsilon, clean_weight=clean_weight
        )

    @jax.jit
    def compute(p):
        x_adv = adversarial.fgsm(linear_apply, p, x, y, epsilon)
        (loss, metrics), grads = jax.value_and_grad(mixed, has_aux=True)(p, weight)
        return {
            "loss": loss,
            "metrics": metrics,
            "grads": grads,
            "only_clean": mixed(p, 1.0)[0],
            "only_adversarial": mixed(p, 0.0)[0],
            "clean": mean_loss(p, x),
            "adversarial": mean_loss(p, x_adv),
            # The attack is a constant, so grad = w grad J(x) + (1 - w) grad J(x_adv).
            "g_clean": jax.grad(mean_loss)(p, x),
            "g_adversarial": jax.grad(mean_loss)(p, x_adv),
        }

    out = compute(params)
    clean, adv = out["clean"], out["adversarial"]
    assert float(adv) > float(clean)
    np.testing.assert_allclose(out["metrics"]["clean_loss"], clean, rtol=1e-14)
    np.testing.assert_allclose(out["metrics"]["adversarial_loss"], adv, rtol=1e-14)
    np.testing.assert_allclose(out["loss"], weight * clean + (1 - weight) * adv, rtol=1e-14)
    np.testing.assert_allclose(out["only_clean"], clean, rtol=1e-14)
    np.testing.assert_allclose(out["only_adversarial"], adv, rtol=1e-14)
    for name in ("w", "b"):
        np.testing.assert_allclose(
            out["grads"][name],
            weight * out["g_clean"][name] + (1 - weight) * out["g_adversarial"][name],
            rtol=1e-12,
            atol=1e-15,
        )


# --- the classifier under attack and its adversarial training task ---


def linear_problem(seed=0, n=40, d=12, k=4):
    rng = np.random.default_rng(seed)
    params = {"w": rng.normal(size=(d, k)), "b": rng.normal(size=k)}
    x = rng.uniform(size=(n, d))
    y = rng.integers(0, k, size=n)
    return params, x, y


def linear_apply(params, x):
    return x @ params["w"] + params["b"]


def numpy_fgsm_accuracy(params, x, y, epsilon):
    """Softmax regression: grad_x CE = (softmax(x W + b) - onehot(y)) W^T, then clip."""
    logits = x @ params["w"] + params["b"]
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    grad_x = (p - np.eye(p.shape[1])[y]) @ params["w"].T
    x_adv = np.clip(x + epsilon * np.sign(grad_x), 0.0, 1.0)
    return np.mean((x_adv @ params["w"] + params["b"]).argmax(axis=1) == y)


@pytest.mark.parametrize("epsilon", [0.0, 0.05, 0.2, 0.6])
def test_fgsm_accuracy_matches_numpy_softmax_regression(x64, epsilon):
    params, x, y = linear_problem()
    got = adversarial.accuracy_under_fgsm(linear_apply, params, x, y, epsilon)
    np.testing.assert_allclose(float(got), numpy_fgsm_accuracy(params, x, y, epsilon))


def test_random_signs_at_zero_budget_is_clean_accuracy_and_stay_in_range(x64):
    params, x, y = linear_problem(1)
    clean = np.mean(linear_apply(params, x).argmax(1) == y)
    key = jax.random.key(0)
    got = adversarial.accuracy_under_random_signs(linear_apply, params, x, y, 0.0, key)
    np.testing.assert_allclose(float(got), clean, rtol=1e-6)

    # A model that reports whether every pixel moved by exactly eps (or was clipped to 0/1).
    epsilon = 0.3

    def probe(_, noisy):
        moved = jnp.abs(noisy - x)
        ok = jnp.isclose(moved, epsilon) | (noisy == 0.0) | (noisy == 1.0)
        inside = (noisy >= 0) & (noisy <= 1)
        good = jnp.all(ok & inside, axis=1)
        return jnp.stack([~good, good], axis=1).astype(jnp.float32)

    ones = np.ones(len(y), np.int32)
    assert float(adversarial.accuracy_under_random_signs(probe, None, x, ones, epsilon, key)) == 1.0


def test_adversarial_objective_gradient_is_the_mixture(x64):
    """grad = w grad J(x) + (1 - w) grad J(x_adv) with x_adv held fixed."""
    epsilon, w = 0.15, 0.3
    model = LayersMLP(features=(6, 3), activation="tanh")
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(10, 5))
    y = rng.integers(0, 3, size=10).astype(np.int32)
    task = adversarial.robust_classifier(model, optim.adam(1e-3), jnp.asarray(x[:1]), epsilon, w)
    state = task.init(jax.random.key(0))
    params = jax.tree.map(lambda a: a.astype(np.float64), state.params)

    def ce(p, inputs):
        logits = model.apply({"params": p}, inputs)
        return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(len(y)), y])

    x_adv = np.clip(x + epsilon * np.sign(jax.grad(ce, argnums=1)(params, x)), 0, 1)
    expected = jax.tree.map(
        lambda a, b: w * a + (1 - w) * b, jax.grad(ce)(params, x), jax.grad(ce)(params, x_adv)
    )
    objective = adversarial.adversarial_objective(model, epsilon, w)
    grad_fn = jax.jit(jax.grad(objective, has_aux=True))
    grads, (metrics, _) = grad_fn(params, {}, {"x": x, "y": y}, None)
    for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(expected)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(metrics["adversarial_loss"], ce(params, x_adv), rtol=1e-12)


def test_plot_examples_draws_clean_perturbation_and_adversarial_rows():
    x = np.full((3, 4), 0.5, np.float32)
    y = np.array([0, 1, 2])
    x_adv = x + 0.1 * np.sign(np.arange(12).reshape(3, 4) - 5.5).astype(np.float32)
    attacks = {"a": (x_adv, y, np.array([0, 2, 2])), "b": (x, y, y)}
    fig = adversarial.plot_examples(x, y, (2, 2), attacks, epsilon=0.1)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == (1 + 2 * len(attacks)) * 3
    np.testing.assert_allclose(axes[3].images[0].get_array(), (x_adv - x)[0].reshape(2, 2))
    assert axes[0].get_title() == "y=0 pred 0/0"
    # model a's adversarial row: right, wrong (red), right
    titles = [(ax.get_title(), ax.title.get_color()) for ax in axes[6:9]]
    assert titles == [("pred 0", "green"), ("pred 2", "red"), ("pred 2", "green")]


def test_per_example_cross_entropy_is_minus_log_softmax_of_the_label(x64):
    z = np.random.default_rng(3).normal(size=(6, 3))
    y = np.array([0, 2, 1, 1, 0, 2])
    expected = -(z[np.arange(6), y] - np.log(np.exp(z).sum(axis=1)))
    np.testing.assert_allclose(adversarial.per_example_cross_entropy(z, y), expected, rtol=1e-12)
