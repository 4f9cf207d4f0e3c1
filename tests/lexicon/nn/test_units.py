"""Delta rule (LMS) and perceptron rule against literal NumPy loops and their theorems."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lexicon.nn import units


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def regression_problem(rng, n=40, d=3, noise=0.1):
    x = np.hstack([np.ones((n, 1)), rng.normal(size=(n, d))])
    true_w = rng.normal(size=d + 1)
    t = x @ true_w + noise * rng.normal(size=n)
    return x, t


def np_half_sse(w, x, t):
    return 0.5 * sum((t[d] - w @ x[d]) ** 2 for d in range(len(t)))


def test_add_bias_input():
    x = jnp.array([[2.0, 3.0], [4.0, 5.0]])
    np.testing.assert_array_equal(np.asarray(units.add_bias_input(x)), [[1, 2, 3], [1, 4, 5]])


def test_lms_batch_matches_literal_rule(x64, rng):
    x, t = regression_problem(rng)
    alpha, epochs = 0.005, 5
    history = units.lms_batch(jnp.asarray(x), jnp.asarray(t), jnp.zeros(4), alpha, epochs)
    w = np.zeros(4)
    for e in range(epochs):
        o = np.array([w @ x[d] for d in range(len(t))])
        dw = np.array(
            [alpha * sum((t[d] - o[d]) * x[d, i] for d in range(len(t))) for i in range(4)]
        )
        w = w + dw
        np.testing.assert_allclose(np.asarray(history.weights[e]), w, rtol=1e-12)
        np.testing.assert_allclose(float(history.errors[e]), np_half_sse(w, x, t), rtol=1e-12)


def test_lms_batch_converges_to_least_squares(x64, rng):
    x, t = regression_problem(rng)
    lstsq = np.linalg.lstsq(x, t, rcond=None)[0]
    alpha = 1.0 / np.linalg.eigvalsh(x.T @ x).max()  # inside the stable range (0, 2 / lambda_max)
    history = units.lms_batch(jnp.asarray(x), jnp.asarray(t), jnp.zeros(4), alpha, 500)
    np.testing.assert_allclose(np.asarray(history.weights[-1]), lstsq, atol=1e-10)
    errors = np.asarray(history.errors)
    assert np.all(np.diff(errors) <= 1e-12), "gradient descent on E never increases it here"
    np.testing.assert_allclose(errors[-1], np_half_sse(lstsq, x, t), rtol=1e-12)


def test_lms_incremental_matches_literal_rule(x64, rng):
    x, t = regression_problem(rng, n=6)
    alpha, epochs = 0.05, 3
    history = units.lms_incremental(jnp.asarray(x), jnp.asarray(t), jnp.zeros(4), alpha, epochs)
    w = np.zeros(4)
    for e in range(epochs):
        for d in range(len(t)):
            o = sum(w[j] * x[d, j] for j in range(4))
            w = np.array([w[j] + alpha * (t[d] - o) * x[d, j] for j in range(4)])
        np.testing.assert_allclose(np.asarray(history.weights[e]), w, rtol=1e-12)
        np.testing.assert_allclose(float(history.errors[e]), np_half_sse(w, x, t), rtol=1e-12)


def test_lms_incremental_converges(x64, rng):
    # Exactly linear targets: the fixed point of every per-example update is the solution.
    x, t = regression_problem(rng, noise=0.0)
    lstsq = np.linalg.lstsq(x, t, rcond=None)[0]
    fixed = units.lms_incremental(jnp.asarray(x), jnp.asarray(t), jnp.zeros(4), 0.05, 1000)
    np.testing.assert_allclose(np.asarray(fixed.weights[-1]), lstsq, atol=1e-8)
    shuffled = units.lms_incremental(
        jnp.asarray(x), jnp.asarray(t), jnp.zeros(4), 0.05, 1000, key=jax.random.key(0)
    )
    np.testing.assert_allclose(np.asarray(shuffled.weights[-1]), lstsq, atol=1e-8)
    assert not np.allclose(np.asarray(fixed.weights[0]), np.asarray(shuffled.weights[0]))
    # Noisy targets with a small constant alpha: within O(alpha) of least squares.
    x, t = regression_problem(rng, noise=0.1)
    lstsq = np.linalg.lstsq(x, t, rcond=None)[0]
    noisy = units.lms_incremental(jnp.asarray(x), jnp.asarray(t), jnp.zeros(4), 0.002, 1000)
    np.testing.assert_allclose(np.asarray(noisy.weights[-1]), lstsq, atol=3e-3)


def np_perceptron(x, t, w, alpha, epochs, unit):
    history, mistakes = [], []
    for _ in range(epochs):
        count = 0
        for d in range(len(t)):
            net = sum(w[i] * x[d, i] for i in range(len(w)))
            o = (1.0 if net >= 0 else -1.0) if unit == "sign" else (1.0 if net >= 0 else 0.0)
            count += int(o != t[d])
            w = np.array([w[i] + alpha * (t[d] - o) * x[d, i] for i in range(len(w))])
        history.append(w)
        mistakes.append(count)
    return np.array(history), np.array(mistakes)


def separable_problem(rng, n=60):
    points = rng.uniform(-1, 1, size=(n, 2))
    margin = points @ np.array([1.0, -2.0]) + 0.3
    keep = np.abs(margin) > 0.1
    x = np.hstack([np.ones((keep.sum(), 1)), points[keep]])
    return x, np.where(margin[keep] >= 0, 1.0, -1.0)


XOR_X = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
XOR_SIGN = np.array([-1.0, 1.0, 1.0, -1.0])


@pytest.mark.parametrize("unit", ["sign", "step"])
def test_perceptron_matches_literal_rule(x64, rng, unit):
    x, t = separable_problem(rng, n=12)
    if unit == "step":
        t = (t + 1) / 2
    w0 = rng.normal(size=3)
    history = units.perceptron(
        jnp.asarray(x), jnp.asarray(t), jnp.asarray(w0), 0.5, 4, threshold_unit=unit
    )
    expected_w, expected_mistakes = np_perceptron(x, t, w0, 0.5, 4, unit)
    np.testing.assert_allclose(np.asarray(history.weights), expected_w, rtol=1e-12)
    np.testing.assert_array_equal(np.asarray(history.mistakes), expected_mistakes)


@pytest.mark.parametrize("unit", ["sign", "step"])
def test_perceptron_converges_on_separable_data(rng, unit):
    x, t = separable_problem(rng)
    if unit == "step":
        t = (t + 1) / 2
    x, t = jnp.asarray(x, jnp.float32), jnp.asarray(t, jnp.float32)
    history = units.perceptron(x, t, jnp.zeros(3), 1.0, 100, threshold_unit=unit)
    mistakes = np.asarray(history.mistakes)
    assert mistakes[0] > 0 and mistakes[-1] == 0
    first_clean = int(np.argmax(mistakes == 0))
    assert np.all(mistakes[first_clean:] == 0), "once error-free the weights stop changing"
    outputs = units.threshold_unit_output(history.weights[-1], x, unit)
    np.testing.assert_array_equal(np.asarray(outputs), np.asarray(t))


def test_perceptron_cycles_on_xor():
    history = units.perceptron(
        jnp.asarray(XOR_X, jnp.float32), jnp.asarray(XOR_SIGN, jnp.float32), jnp.zeros(3), 1.0, 40
    )
    assert np.all(np.asarray(history.mistakes) > 0), "XOR is not linearly separable"
    weights = np.asarray(history.weights)
    # The weights stay on a bounded integer lattice, so they must revisit an earlier state.
    repeats = [
        (i, j)
        for i in range(40)
        for j in range(i + 1, 40)
        if np.array_equal(weights[i], weights[j])
    ]
    assert repeats, "perceptron weights should cycle on XOR"


def test_trainers_vmap_over_learning_rates_and_initial_weights(rng):
    x, t = separable_problem(rng)
    x, t = jnp.asarray(x, jnp.float32), jnp.asarray(t, jnp.float32)
    alphas = jnp.array([0.1, 1.0, 3.0])
    inits = jnp.asarray(rng.normal(size=(3, 3)), jnp.float32)
    batched = jax.vmap(lambda a, w: units.perceptron(x, t, w, a, 50))(alphas, inits)
    assert batched.weights.shape == (3, 50, 3) and batched.mistakes.shape == (3, 50)
    single = units.perceptron(x, t, inits[1], alphas[1], 50)
    np.testing.assert_allclose(
        np.asarray(batched.weights[1]), np.asarray(single.weights), rtol=1e-6
    )
    lms = jax.vmap(lambda a: units.lms_batch(x, t, jnp.zeros(3), a, 10))(jnp.array([1e-3, 1e-2]))
    assert lms.errors.shape == (2, 10)


def test_unknown_threshold_unit():
    with pytest.raises(ValueError, match="unknown threshold unit 'relu'; valid units: sign, step"):
        units.perceptron(jnp.ones((2, 2)), jnp.ones(2), jnp.zeros(2), 1.0, 1, threshold_unit="relu")
    with pytest.raises(ValueError, match="unknown threshold unit"):
        units.threshold_unit_output(jnp.zeros(2), jnp.ones((1, 2)), "tanh")


def test_regression_set_and_its_least_squares_reference():
    """x = [1, z]: a bias column first; w_lstsq solves the normal equations X^T X w = X^T t,
    E(w_lstsq) is 1/2 the residual sum of squares, lambda_max the top singular value squared."""
    x, t = units.regression_set(50, 4, 0.1, seed=3)
    assert x.shape == (50, 4) and t.shape == (50,) and x.dtype == t.dtype == np.float32
    np.testing.assert_array_equal(x[:, 0], 1.0)
    again = units.regression_set(50, 4, 0.1, seed=3)
    np.testing.assert_array_equal(again[1], t)
    weights, minimum, lambda_max = units.least_squares(x, t)
    x64, t64 = x.astype(np.float64), t.astype(np.float64)
    np.testing.assert_allclose(weights, np.linalg.solve(x64.T @ x64, x64.T @ t64), rtol=1e-10)
    residual = t64 - x64 @ weights
    assert minimum == pytest.approx(0.5 * residual @ residual, rel=1e-12)
    assert lambda_max == pytest.approx(np.linalg.svd(x64, compute_uv=False)[0] ** 2, rel=1e-10)
    # Noise std 0.1 over 50 examples: E(w_lstsq) is near 1/2 * 50 * 0.01 = 0.25.
    assert 0.1 < minimum < 0.5
