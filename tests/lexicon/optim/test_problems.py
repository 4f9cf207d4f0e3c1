"""The optimizer studies' shared problems against NumPy float64 and brute force."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lexicon import data, losses, optim, regularizers
from lexicon.nn.layers import MLP
from lexicon.optim import problems


def test_quadratic_is_the_rotated_matrix_form(x64):
    """f = 1/2 theta^T Q^T diag(1, kappa) Q theta (Q: rotation to u, v); Hessian eigs 1, kappa."""
    kappa, angle = 37.0, 25.0
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    q = np.array([[c, s], [-s, c]])
    a = q.T @ np.diag([1.0, kappa]) @ q
    for theta in np.random.default_rng(0).normal(size=(5, 2)):
        expected = 0.5 * theta @ a @ theta
        assert float(problems.quadratic(jnp.asarray(theta), kappa, angle)) == pytest.approx(
            expected
        )
    hessian = jax.hessian(lambda t: problems.quadratic(t, kappa, angle))(jnp.zeros(2))
    np.testing.assert_allclose(np.linalg.eigvalsh(np.asarray(hessian)), [1.0, kappa], rtol=1e-12)


def test_rosenbrock_formula_and_minimum(x64):
    for x, y in [(-1.2, 1.0), (0.5, -0.3), (2.0, 3.0)]:
        expected = (1 - x) ** 2 + 100 * (y - x * x) ** 2
        assert float(problems.rosenbrock(jnp.array([x, y]))) == pytest.approx(expected)
    assert float(problems.rosenbrock(jnp.ones(2))) == 0.0
    np.testing.assert_array_equal(jax.grad(problems.rosenbrock)(jnp.ones(2)), [0.0, 0.0])


def test_descend_follows_the_literal_algorithms(x64):
    """SGD (Alg 8.1) and Nesterov (Alg 8.3, theta recovered from the look-ahead) on f = 1/2 t'At."""
    kappa, angle, steps = 10.0, 30.0, 25
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    q = np.array([[c, s], [-s, c]])
    a = q.T @ np.diag([1.0, kappa]) @ q
    start = np.array([-2.0, 1.5])

    def f(t):
        return problems.quadratic(t, kappa, angle)

    eps = 0.05
    path, values = map(
        np.asarray, problems.descend(f, optim.sgd(eps), jnp.asarray(start), steps=steps)
    )
    theta, expected = start.copy(), [start.copy()]
    for _ in range(steps):
        theta = theta - eps * (a @ theta)
        expected.append(theta.copy())
    np.testing.assert_allclose(path, expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(values, [0.5 * t @ a @ t for t in expected], rtol=1e-12)

    eps, alpha = 0.02, 0.9
    tx = optim.nesterov(eps, alpha)
    path = np.asarray(problems.descend(f, tx, jnp.asarray(start), steps=steps)[0])
    theta, v, expected = start.copy(), np.zeros(2), [start.copy()]
    for _ in range(steps):
        g = a @ (theta + alpha * v)  # gradient at the interim point
        v = alpha * v - eps * g
        theta = theta + v
        expected.append(theta.copy())
    np.testing.assert_allclose(path, expected, rtol=1e-10, atol=1e-12)


def test_logreg_objective_is_the_literal_formula(x64):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(7, 4)), rng.integers(0, 3, size=7)
    w, b, l2 = rng.normal(size=(4, 3)), rng.normal(size=3), 0.3
    total = 0.0
    for xi, yi in zip(x, y):
        z = [sum(xi[j] * w[j, k] for j in range(4)) + b[k] for k in range(3)]
        total += -(z[yi] - math.log(sum(math.exp(zk) for zk in z)))
    expected = total / 7 + 0.5 * l2 * sum(v * v for v in w.ravel())
    assert problems.logreg_objective(w, b, x, y, l2) == pytest.approx(expected, rel=1e-12)
    # The same J as the one trained: cross-entropy of the one-layer MLP plus l2_penalty.
    model = MLP(features=(3,), activation="identity")
    params = {"Dense_0": {"kernel": jnp.asarray(w), "bias": jnp.asarray(b)}}
    trained = losses.softmax_cross_entropy_with_integer_labels(
        model.apply({"params": params}, jnp.asarray(x)), jnp.asarray(y)
    )
    trained += regularizers.l2_penalty(params, l2)
    assert float(trained) == pytest.approx(expected, rel=1e-12)


@pytest.mark.slow  # a scikit-learn fit to tol 1e-10; offsets the landscape tests
def test_sklearn_optimum_is_a_stationary_point_of_our_objective(x64):
    """C = 1/(lambda N) makes sklearn's solution the minimizer of our J: grad J(W*, b*) = 0."""
    l2 = 1e-3
    splits = data.standardize(data.load("digits", seed=0))
    optimum = problems.sklearn_optimum(l2, splits)
    x, y = jnp.asarray(splits.train["x"], jnp.float64), jnp.asarray(splits.train["y"])

    def objective(w, b):
        logits = x @ w + b
        return losses.softmax_cross_entropy_with_integer_labels(logits, y) + 0.5 * l2 * jnp.sum(
            w**2
        )

    w, b = jnp.asarray(optimum["w"]), jnp.asarray(optimum["b"])
    grad_w, grad_b = jax.grad(objective, argnums=(0, 1))(w, b)
    assert float(jnp.linalg.norm(grad_w)) < 1e-5 and float(jnp.linalg.norm(grad_b)) < 1e-5
    assert float(objective(w, b)) == pytest.approx(optimum["objective"], rel=1e-10)
    assert 0.9 < optimum["test_accuracy"] <= 1.0


def test_gradient_noise_law_by_enumerating_every_minibatch(x64):
    """E||g_B - g||^2 over all C(N, m) subsets equals (sigma^2/m)(N-m)/(N-1) exactly.

    The per-example gradients of softmax regression are written out in NumPy:
    dL_i/dW = x_i (p_i - e_{y_i})^T and dL_i/db = p_i - e_{y_i}; a minibatch gradient is their mean.
    """
    rng = np.random.default_rng(2)
    n, d, k = 6, 3, 4
    x, y = rng.normal(size=(n, d)), rng.integers(0, k, size=n)
    w, b = rng.normal(size=(d, k)), rng.normal(size=k)
    z = x @ w + b
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    residual = p - np.eye(k)[y]
    per_example = np.concatenate([np.einsum("id,ik->idk", x, residual).reshape(n, -1), residual], 1)
    full = per_example.mean(axis=0)

    def data_loss(params, xb, yb):
        return losses.softmax_cross_entropy_with_integer_labels(xb @ params["w"] + params["b"], yb)

    params = {"w": jnp.asarray(w), "b": jnp.asarray(b)}
    sizes = (1, 2, 3, 6)
    noise = jax.jit(
        lambda key: problems.gradient_noise(
            data_loss, params, jnp.asarray(x), jnp.asarray(y), sizes, 4000, key
        )
    )
    measured, predicted, standard_error = map(np.asarray, noise(jax.random.key(0)))
    for i, m in enumerate(sizes):
        subsets = itertools.combinations(range(n), m)
        exact = np.mean([np.sum((per_example[list(s)].mean(0) - full) ** 2) for s in subsets])
        assert predicted[i] == pytest.approx(exact, rel=1e-10, abs=1e-14)
        assert abs(measured[i] - exact) <= 4 * standard_error[i] + 1e-14
    assert measured[-1] < 1e-20  # the whole set is the full gradient


def test_blocks_are_data_for_from_config():
    """add_blocks writes each optimizer's rates and hyperparameters; from_config reads them."""
    import ml_collections

    config = ml_collections.ConfigDict()
    problems.add_blocks(config, {n: {"lr": 0.1, "lr_other": 0.2} for n in optim.NAMES})
    assert dict(config.adam) == {
        "lr": 0.1,
        "lr_other": 0.2,
        "rho1": 0.9,
        "rho2": 0.999,
        "delta": 1e-8,
    }
    rules = problems.block_rules(("lr", "lr_other"))
    assert set(rules) == {f"{n}.{k}" for n in optim.NAMES for k in config[n]}
    params = {"w": jnp.array([1.0, -2.0])}
    grads = {"w": jnp.array([0.5, 0.25])}
    for name in optim.NAMES:
        tx = problems.optimizer(config, name, "lr_other", rate_keys=("lr", "lr_other"))
        hyper = {k: v for k, v in config[name].items() if not k.startswith("lr")}
        twin = optim.get(name, learning_rate=0.2, **hyper)
        got = tx.update(grads, tx.init(params), params)[0]
        want = twin.update(grads, twin.init(params), params)[0]
        np.testing.assert_array_equal(got["w"], want["w"])
    assert (
        problems.describe(config.momentum, ("lr", "lr_other")) == "alpha=0.9, lr=0.1"
    )  # ConfigDict sorts its keys


# --- the hard landscapes ------------------------------------------------------------------------

# Each landscape and its gradient, transcribed in NumPy float64.
LANDSCAPES = {
    "well": (
        lambda t: (t[0] ** 2 - 1) ** 2 + 0.3 * t[0] + 0.5 * t[1] ** 2,
        lambda t: np.array([4 * t[0] * (t[0] ** 2 - 1) + 0.3, t[1]]),
        problems.tilted_double_well,
    ),
    "plateau": (
        lambda t: 1 - np.exp(-(t @ t) / 2),
        lambda t: t * np.exp(-(t @ t) / 2),
        problems.plateau,
    ),
    "saddle": (
        lambda t: t[0] ** 2 / 2 - t[1] ** 2 / 2 + t[1] ** 4 / 4,
        lambda t: np.array([t[0], -t[1] + t[1] ** 3]),
        problems.saddle,
    ),
    "cliff": (
        lambda t: (t @ t) / 2 + 10 / (1 + np.exp(-(t[0] - 1.5) / 0.02)),
        lambda t: (
            t
            + np.array(
                [
                    10
                    / 0.02
                    * np.exp(-(t[0] - 1.5) / 0.02)
                    / (1 + np.exp(-(t[0] - 1.5) / 0.02)) ** 2,
                    0,
                ]
            )
        ),
        problems.cliff,
    ),
}


def test_landscapes_and_their_gradients_are_the_formulas(x64):
    points = np.random.default_rng(3).normal(size=(4, 2)) * 1.5
    points = np.concatenate([points, [[1.49, 0.2], [1.52, -0.1]]])  # on the cliff's face
    for name, (f, grad, ours) in LANDSCAPES.items():
        for theta in points:
            assert float(ours(jnp.asarray(theta))) == pytest.approx(f(theta), rel=1e-12), name
            np.testing.assert_allclose(jax.grad(ours)(jnp.asarray(theta)), grad(theta), rtol=1e-9)


def test_landscapes_critical_points(x64):
    """The well's two minima (roots of 4x^3 - 4x + tilt) are minima, the right one local; the
    saddle's Hessian has a negative eigenvalue; the plateau's gradient all but vanishes."""
    roots = np.sort(np.roots([4.0, 0.0, -4.0, 0.3]).real)  # x of the critical points, y = 0
    well = problems.tilted_double_well
    hessians = jax.jit(jax.vmap(jax.hessian(well)))(jnp.stack([roots, np.zeros(3)], axis=1))
    values = []
    for x, hessian in zip(roots[[0, 2]], np.asarray(hessians)[[0, 2]]):
        point = jnp.array([x, 0.0])
        np.testing.assert_allclose(LANDSCAPES["well"][1](np.array([x, 0.0])), 0.0, atol=1e-12)
        np.testing.assert_allclose(hessian, np.diag([12 * x * x - 4, 1.0]), rtol=1e-12)
        assert np.linalg.eigvalsh(hessian).min() > 0
        values.append(float(well(point)))
    assert values[0] < -0.25 < 0.25 < values[1]  # global near x = -1, local near x = +1
    assert np.linalg.eigvalsh(np.asarray(hessians[1])).min() < 0  # the ridge between them
    hessian = np.asarray(jax.hessian(problems.saddle)(jnp.zeros(2)))
    np.testing.assert_allclose(hessian, np.diag([1.0, -1.0]), atol=1e-15)
    for y in (1.0, -1.0):
        assert float(problems.saddle(jnp.array([0.0, y]))) == -0.25
        assert (
            np.linalg.eigvalsh(np.asarray(jax.hessian(problems.saddle)(jnp.array([0.0, y])))).min()
            > 0
        )
    far = jnp.array([4.0, 0.5])
    assert (
        float(problems.plateau(far)) > 0.9997
        and np.linalg.norm(jax.grad(problems.plateau)(far)) < 2e-3
    )
    np.testing.assert_allclose(jax.hessian(problems.plateau)(jnp.zeros(2)), np.eye(2), atol=1e-15)
    # The cliff's face: the gradient peaks at height / (4 width) = 125 (plus the bowl's x).
    assert float(jax.grad(problems.cliff)(jnp.array([1.5, 0.0]))[0]) == pytest.approx(126.5)


def test_clipping_bounds_the_step_on_the_cliff(x64):
    """optax.clip_by_global_norm then SGD is g <- g min(1, c / ||g||), theta <- theta - eps g:
    transcribed, and every step is at most eps c long; unclipped, the face throws the iterate."""
    import optax

    eps, c, steps = 0.1, 1.0, 40
    grad = LANDSCAPES["cliff"][1]
    for start in ([3.0, 0.5], [1.53, 0.2]):
        tx = optax.chain(optax.clip_by_global_norm(c), optim.sgd(eps))
        paths, _ = problems.descend(problems.cliff, tx, jnp.asarray(start), steps=steps)
        theta, expected = np.asarray(start), [np.asarray(start)]
        for _ in range(steps):
            g = grad(theta)
            theta = theta - eps * g * min(1.0, c / np.linalg.norm(g))
            expected.append(theta)
        np.testing.assert_allclose(paths, expected, rtol=1e-9, atol=1e-12)
        assert np.linalg.norm(np.diff(paths, axis=0), axis=1).max() <= eps * c * (1 + 1e-12)
    thrown, _ = problems.descend(problems.cliff, optim.sgd(eps), jnp.asarray([1.53, 0.2]), steps=1)
    assert np.linalg.norm(thrown[1] - thrown[0]) > 5  # eps * ||g|| on the face


def test_noisy_descend_is_minibatch_sgd_on_the_finite_sum(x64):
    """Each step: theta <- theta - eps (grad f + mean of xi over the drawn minibatch); the full
    batch adds exactly nothing (the xi are centered): plain gradient descent."""
    eps, steps, m = 0.1, 6, 3
    noise = problems.centered_noise(jax.random.key(1), 8, 2.0)
    xi = np.asarray(noise)
    np.testing.assert_allclose(xi.mean(axis=0), 0.0, atol=1e-15)
    key, start = jax.random.key(2), jnp.array([1.5, 0.3])
    f, grad = LANDSCAPES["well"][2], LANDSCAPES["well"][1]
    paths, values = problems.noisy_descend(f, optim.sgd(eps), start, noise, key, m, steps=steps)
    theta, expected = np.asarray(start), [np.asarray(start)]
    draws = jax.vmap(lambda k: jax.random.permutation(k, 8))(jax.random.split(key, steps))
    for batch in np.asarray(draws)[:, :m]:
        theta = theta - eps * (grad(theta) + xi[batch].mean(axis=0))
        expected.append(theta)
    np.testing.assert_allclose(paths, expected, rtol=1e-12)
    np.testing.assert_allclose(values, [LANDSCAPES["well"][0](t) for t in expected], rtol=1e-12)
    full, _ = problems.noisy_descend(
        f, optim.sgd(eps), start, noise, key, batch_size=8, steps=steps
    )
    plain, _ = problems.descend(f, optim.sgd(eps), start, steps=steps)
    np.testing.assert_allclose(full, plain, rtol=1e-12, atol=1e-14)


def test_step_counts_and_last_finite():
    event = np.array([[False, True, True], [False, False, False]])
    np.testing.assert_array_equal(problems.first_step(event), [1.0, np.nan])
    assert problems.rate(event[:, -1]) == "1/2" and problems.steps_text([np.nan]) == "never"
    values = np.array([[3.0, 2.0, np.nan], [1.0, np.nan, np.nan]])
    np.testing.assert_array_equal(problems.last_finite(values), [2.0, 1.0])


def test_logistic_objective_is_its_numpy_twin_and_the_literal_formula(x64):
    """JAX's J and its gradient against logistic_value_and_grad, and J example by example."""
    rng = np.random.default_rng(0)
    x, l2 = rng.normal(size=(9, 4)), 0.07
    for num_outputs in (1, 5):
        t = rng.integers(0, 2 if num_outputs == 1 else num_outputs, size=9)
        shape = (4,) if num_outputs == 1 else (4, num_outputs)
        params = {"w": rng.normal(size=shape), "b": rng.normal(size=shape[1:])}
        theta = np.concatenate([np.ravel(params["w"]), np.ravel(params["b"])])  # [w, b]
        value, grad = problems.logistic_value_and_grad(theta, x, t, l2, num_outputs)
        jax_value, jax_grad = jax.value_and_grad(problems.logistic_objective)(
            jax.tree.map(jnp.asarray, params), x, t, l2
        )
        assert value == pytest.approx(float(jax_value), rel=1e-13)
        jax_theta = np.concatenate([np.ravel(jax_grad["w"]), np.ravel(jax_grad["b"])])
        np.testing.assert_allclose(grad, jax_theta, rtol=1e-11, atol=1e-14)
        z = x @ params["w"] + params["b"]
        if num_outputs == 1:
            p = 1 / (1 + np.exp(-z))
            data_term = np.mean(
                [-(ti * np.log(pi) + (1 - ti) * np.log(1 - pi)) for ti, pi in zip(t, p)]
            )
        else:
            data_term = np.mean([np.log(np.sum(np.exp(zi))) - zi[ti] for zi, ti in zip(z, t)])
        penalty = 0.5 * l2 * (np.sum(params["w"] ** 2) + np.sum(params["b"] ** 2))
        assert value == pytest.approx(data_term + penalty, rel=1e-12)


def test_digits_logistic_targets():
    x, t, outputs = problems.digits_logistic("binary", 0)
    x10, y, outputs10 = problems.digits_logistic("multiclass", 0)
    assert x.dtype == np.float64 and (outputs, outputs10) == (1, 10)
    np.testing.assert_array_equal(x, x10)
    np.testing.assert_array_equal(t, y % 2)
    np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=0.2)  # standardized on the split
