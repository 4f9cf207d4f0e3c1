"""Tests for lexicon.adversarial: FGSM and the mixed adversarial-training loss."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lexicon import adversarial


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
