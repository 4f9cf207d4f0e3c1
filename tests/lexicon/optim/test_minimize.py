"""optim.minimize (first-order methods on the common driver), evaluation_params, from_config."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from lexicon import optim

A = np.array([[3.0, 0.5], [0.5, 1.0]])
B = np.array([1.0, -2.0])


def quadratic(params):
    w = params["w"]
    return 0.5 * w @ jnp.asarray(A, w.dtype) @ w - jnp.asarray(B, w.dtype) @ w


def test_gradient_descent_follows_its_literal_iteration_to_the_tolerance(x64):
    result = optim.minimize(optim.sgd(0.2), quadratic, {"w": jnp.zeros(2)}, tol=1e-10)
    w, k = np.zeros(2), 0
    while np.linalg.norm(A @ w - B) > 1e-10:
        w, k = w - 0.2 * (A @ w - B), k + 1
    assert int(result.num_iterations) == k and bool(result.converged)
    np.testing.assert_allclose(np.asarray(result.params["w"]), w, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(result.params["w"]), np.linalg.solve(A, B), atol=1e-9)


def test_nesterov_is_tested_and_returned_at_theta_not_the_look_ahead(x64):
    """Algorithm 8.3 literally: theta~ = theta + a v; v <- a v - eps g(theta~); theta += v."""
    eps, alpha, steps = 0.1, 0.9, 25
    result = optim.minimize(
        optim.nesterov(eps, alpha), quadratic, {"w": jnp.zeros(2)}, tol=0.0, max_iter=steps
    )
    theta, v = np.zeros(2), np.zeros(2)
    norms = [np.linalg.norm(A @ theta - B)]
    for _ in range(steps):
        g = A @ (theta + alpha * v) - B
        v = alpha * v - eps * g
        theta = theta + v
        norms.append(np.linalg.norm(A @ theta - B))
    np.testing.assert_allclose(np.asarray(result.params["w"]), theta, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(result.grad_norm_history), norms, rtol=1e-9)


def test_evaluation_params_is_theta_for_nesterov_and_the_params_otherwise():
    params = {"w": jnp.ones(2)}
    tx = optim.nesterov(0.1, 0.5)
    state = tx.init(params)
    grads = {"w": jnp.full(2, 2.0)}
    updates, state = tx.update(grads, state, params)
    phi = jax.tree.map(lambda p, u: p + u, params, updates)
    np.testing.assert_allclose(
        optim.evaluation_params(phi, state)["w"], optim.nesterov_theta(phi, state)["w"]
    )
    adam_state = optim.adam(0.1).init(params)
    assert optim.evaluation_params(params, adam_state) is params


def test_from_config_builds_the_named_optimizer_from_its_block():
    block = ml_collections.ConfigDict({"lr": 3e-3, "rho": 0.8, "delta": 1e-6, "lr_quadratic": 1.0})
    tx = optim.from_config("rmsprop", block, skip=("lr_quadratic",))
    reference = optim.rmsprop(learning_rate=3e-3, rho=0.8, delta=1e-6)
    params, grads = {"w": jnp.ones(3)}, {"w": jnp.arange(3.0)}
    a, _ = tx.update(grads, tx.init(params), params)
    b, _ = reference.update(grads, reference.init(params), params)
    np.testing.assert_array_equal(np.asarray(a["w"]), np.asarray(b["w"]))
    with pytest.raises(ValueError, match="no 'lr' key"):
        optim.from_config("sgd", {"rate": 0.1})
