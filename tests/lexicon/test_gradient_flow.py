"""lexicon.gradient_flow against a NumPy float64 backpropagation and forward pass."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lexicon import gradient_flow, optim
from lexicon.nn.layers import MLP


def numpy_tanh_kernel_gradients(params, x, y):
    """Literal backprop of mean softmax cross-entropy through x -> tanh(x W0 + b0) W1 + b1."""
    w0, b0 = params["Dense_0"]["kernel"], params["Dense_0"]["bias"]
    w1, b1 = params["Dense_1"]["kernel"], params["Dense_1"]["bias"]
    a = np.tanh(x @ w0 + b0)
    z = a @ w1 + b1
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    dz = (p - np.eye(z.shape[1])[y]) / len(x)
    dh = (dz @ w1.T) * (1 - a**2)
    return [x.T @ dh, a.T @ dz]


@pytest.fixture
def tiny_problem():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(12, 5))
    y = rng.integers(0, 3, size=12)
    return x, y


def test_gradient_norm_task_is_sgd_and_reports_layer_norms(x64, tiny_problem):
    x, y = tiny_problem
    model = MLP(features=(4, 3), activation="tanh")
    task = gradient_flow.gradient_norm_task(model, optim.sgd(0.1), jnp.zeros((1, 5), jnp.float64))
    state = task.init(jax.random.key(0))
    state = state.replace(params=jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), state.params))
    params = jax.tree.map(np.asarray, state.params)
    grads = numpy_tanh_kernel_gradients(params, x, y)
    step = task.make_step(None)
    new_state, metrics = step(state, {"x": jnp.asarray(x), "y": jnp.asarray(y)}, None)
    assert set(metrics) == {"loss", "accuracy", "grad_norm_01", "grad_norm_02"}
    np.testing.assert_allclose(metrics["grad_norm_01"], np.linalg.norm(grads[0]), rtol=1e-10)
    np.testing.assert_allclose(metrics["grad_norm_02"], np.linalg.norm(grads[1]), rtol=1e-10)
    np.testing.assert_allclose(
        new_state.params["Dense_0"]["kernel"], params["Dense_0"]["kernel"] - 0.1 * grads[0]
    )


def test_unit_health_of_a_deep_relu_net(x64, tiny_problem):
    """Two hidden ReLU layers of 4 units, 2 seeds: the ratio of the first to the last hidden
    layer's gradient norm, never-active and dead units, and the mean |relu'| all from NumPy."""
    x, y = tiny_problem
    model = MLP(features=(4, 4, 3), activation="relu")
    params = [model.init(jax.random.key(s), jnp.zeros((1, 5)))["params"] for s in (1, 2)]
    params = [jax.tree.map(lambda a: np.asarray(a, np.float64), p) for p in params]
    # Unit 0 of the first hidden layer never fires on inputs in [0, 1], in seed 0 only.
    params[0]["Dense_0"]["kernel"][:, 0] = -1.0
    params[0]["Dense_0"]["bias"][0] = -0.5
    stacked = jax.tree.map(lambda *a: jnp.asarray(np.stack(a)), *params)
    split = {"x": jnp.asarray(x), "y": jnp.asarray(y)}
    health = gradient_flow.unit_health(model, stacked, split, activation="relu")
    for seed, p in enumerate(params):
        pre, h = [], x
        for layer in ("Dense_0", "Dense_1"):
            pre.append(h @ p[layer]["kernel"] + p[layer]["bias"])
            h = np.maximum(pre[-1], 0)
        pre = np.stack(pre)  # (layers, examples, units)
        never = np.all(pre <= 0, axis=1)
        assert health["never_active"][seed] == pytest.approx(never.mean())
        # A ReLU unit that never fires gets no gradient: dead. (Here no other unit is.)
        assert health["dead"][seed] == pytest.approx(never.mean())
        assert health["mean_slope"][seed] == pytest.approx((pre > 0).mean())
        norms = health["gradient_norms"][seed]
        assert norms.shape == (3,)
        assert health["gradient_ratio"][seed] == pytest.approx(norms[0] / norms[1])
    assert health["never_active"][0] >= 1 / 8 and health["dead"][0] >= 1 / 8
    assert set(health) == {"gradient_norms", "gradient_ratio", "dead", "never_active", "mean_slope"}
    assert "mean_slope" not in gradient_flow.unit_health(model, stacked, split)
