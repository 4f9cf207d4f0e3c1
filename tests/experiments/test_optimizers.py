"""The optimizers experiment: its formulas against NumPy float64, and the run at a tiny scale."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import optimizers as exp
from lexicon import cli, data, optim, regularizers, train
from lexicon.nn.layers import MLP
from lexicon.rules import ConfigError, check


def test_quadratic_is_the_rotated_matrix_form(x64):
    """f = 1/2 theta^T Q^T diag(1, kappa) Q theta (Q: rotation to u, v); Hessian eigs 1, kappa."""
    kappa, angle = 37.0, 25.0
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    q = np.array([[c, s], [-s, c]])
    a = q.T @ np.diag([1.0, kappa]) @ q
    for theta in np.random.default_rng(0).normal(size=(5, 2)):
        expected = 0.5 * theta @ a @ theta
        assert float(exp.quadratic(jnp.asarray(theta), kappa, angle)) == pytest.approx(expected)
    hessian = jax.hessian(lambda t: exp.quadratic(t, kappa, angle))(jnp.zeros(2))
    np.testing.assert_allclose(np.linalg.eigvalsh(np.asarray(hessian)), [1.0, kappa], rtol=1e-12)


def test_rosenbrock_formula_and_minimum(x64):
    for x, y in [(-1.2, 1.0), (0.5, -0.3), (2.0, 3.0)]:
        expected = (1 - x) ** 2 + 100 * (y - x * x) ** 2
        assert float(exp.rosenbrock(jnp.array([x, y]))) == pytest.approx(expected)
    assert float(exp.rosenbrock(jnp.ones(2))) == 0.0
    np.testing.assert_array_equal(jax.grad(exp.rosenbrock)(jnp.ones(2)), [0.0, 0.0])


def test_descend_follows_the_literal_algorithms(x64):
    """SGD (Alg 8.1) and Nesterov (Alg 8.3, theta recovered from the look-ahead) on f = 1/2 t'At."""
    kappa, angle, steps = 10.0, 30.0, 25
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    q = np.array([[c, s], [-s, c]])
    a = q.T @ np.diag([1.0, kappa]) @ q
    start = np.array([-2.0, 1.5])

    def f(t):
        return exp.quadratic(t, kappa, angle)

    eps = 0.05
    path = np.asarray(
        exp.descend(f, optim.sgd(eps), jnp.asarray(start), steps=steps, lookahead=False)
    )
    theta, expected = start.copy(), [start.copy()]
    for _ in range(steps):
        theta = theta - eps * (a @ theta)
        expected.append(theta.copy())
    np.testing.assert_allclose(path, expected, rtol=1e-12, atol=1e-14)

    eps, alpha = 0.02, 0.9
    tx = optim.nesterov(eps, alpha)
    path = np.asarray(exp.descend(f, tx, jnp.asarray(start), steps=steps, lookahead=True))
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
    assert exp.logreg_objective(w, b, x, y, l2) == pytest.approx(expected, rel=1e-12)
    # The same J as the one trained: cross-entropy of the one-layer MLP plus l2_penalty.
    model = MLP(features=(3,), activation="identity")
    params = {"Dense_0": {"kernel": jnp.asarray(w), "bias": jnp.asarray(b)}}
    trained = train.cross_entropy(model.apply({"params": params}, jnp.asarray(x)), jnp.asarray(y))
    trained += regularizers.l2_penalty(params, l2)
    assert float(trained) == pytest.approx(expected, rel=1e-12)


def test_sklearn_optimum_is_a_stationary_point_of_our_objective(x64):
    """C = 1/(lambda N) makes sklearn's solution the minimizer of our J: grad J(W*, b*) = 0."""
    config = exp.get_config()
    splits = data.standardize(data.load("digits", seed=0))
    optimum = exp.sklearn_optimum(config, splits)
    x, y = jnp.asarray(splits.train["x"], jnp.float64), jnp.asarray(splits.train["y"])

    def objective(w, b):
        logits = x @ w + b
        return train.cross_entropy(logits, y) + 0.5 * config.l2 * jnp.sum(w**2)

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
        return train.cross_entropy(xb @ params["w"] + params["b"], yb)

    params = {"w": jnp.asarray(w), "b": jnp.asarray(b)}
    sizes = (1, 2, 3, 6)
    noise = jax.jit(
        lambda key: exp.gradient_noise(
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


def test_names_rule_and_bad_flags_stop_before_training(capsys):
    rule = exp.RULES["optimizers"]
    assert rule.check("optimizers", "sgd, adam") is None
    assert rule.check("optimizers", ("sgd", "nesterov")) is None
    message = rule.check("optimizers", "sgd,bogus")
    assert "bogus" in message and "rmsprop_nesterov" in message
    assert rule.check("optimizers", " , ") is not None
    config = exp.get_config()
    config.parts = "logreg,nothing"
    with pytest.raises(ConfigError, match="nothing"):
        check(config, exp.RULES)

    def never(config, workdir):
        raise AssertionError("training started despite a bad flag")

    with pytest.raises(SystemExit) as stop:
        cli.run(exp.get_config, never, exp.RULES, argv=["optimizers", "--config.optimizers=bogus"])
    assert stop.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "bogus" in error
    with pytest.raises(SystemExit):
        cli.run(exp.get_config, never, exp.RULES, argv=["optimizers", "--config.adam.lr=-1"])


def tiny_config(**changes):
    config = exp.get_config()
    config.seeds = 2
    config.epochs = 2
    config.progress = False
    config.quadratic_steps = 40
    config.rosenbrock_steps = 60
    config.noise_draws = 16
    config.noise_batches = (1, 16, 256)
    config.decay_epochs = 2
    for key, value in changes.items():
        config[key] = value
    return config


def test_experiment_end_to_end_fast(tmp_path):
    """Logistic regression with Nesterov (look-ahead evaluation) and the 2-D functions."""
    config = tiny_config(parts="logreg,surfaces", optimizers="nesterov")
    headline = exp.train_and_evaluate(config, tmp_path)
    for name in ("report.md", "logreg.png", "surfaces.png"):
        assert (tmp_path / name).exists(), name
    report = (tmp_path / "report.md").read_text()
    assert "reference: sklearn LogisticRegression" in report and "known minimum" in report
    figure = headline["logreg_objective"]["nesterov"]
    optimum, final = figure.reference, np.asarray(figure.values)
    assert figure.source == "scikit-learn LogisticRegression J*"
    assert final.shape == (2,) and np.isfinite(final).all()
    # Above the optimum, and well below log(10), the loss of the uniform prediction.
    assert (final > optimum - 1e-4).all() and (final < 0.5 * math.log(10)).all()
    assert figure.verdict() == "above"  # 2 epochs do not reach J*
    for surface in ("quadratic", "rosenbrock"):
        values = np.asarray(headline["final_f"][surface]["nesterov"].values)
        assert np.isfinite(values).all() and (values >= 0).all()
        assert headline["final_f"][surface]["nesterov"].tolerance == config.surface_tol
    # Nesterov's first steps on the quadratic lower f from its start, f(-2, 1.5).
    start = float(exp.quadratic(jnp.array([-2.0, 1.5]), config.condition, config.angle))
    assert max(headline["final_f"]["quadratic"]["nesterov"].values) < start


@pytest.mark.slow
def test_experiment_end_to_end_all_parts(tmp_path):
    config = tiny_config(optimizers="sgd,momentum,ema_momentum,rmsprop_nesterov")
    headline = exp.train_and_evaluate(config, tmp_path)
    for name in ("logreg", "mlp", "surfaces", "batch_size", "decay"):
        assert (tmp_path / f"{name}.png").exists(), name
    report = (tmp_path / "report.md").read_text()
    assert "are one algorithm" in report  # ema_momentum = momentum at these rates
    objective = headline["logreg_objective"]
    np.testing.assert_allclose(
        objective["ema_momentum"].values, objective["momentum"].values, rtol=1e-5
    )
    accuracy = np.asarray(list(headline["mlp_test_accuracy"].values()))
    # MNIST-1D, chance 0.1: every optimizer reaches 0.43 to 0.47 in two epochs.
    assert accuracy.shape == (4, 2) and np.isfinite(accuracy).all()
    assert (accuracy > 0.3).all()
    noise = headline["noise_ratio"]
    assert 0.3 < noise.values < 3.0 and noise.reference == 1.0 and noise.tolerance > 0
    gaps = headline["decay_gap"]
    assert set(gaps) == {"constant", "linear_decay"}
    assert np.isfinite(gaps["constant"]) and np.isfinite(gaps["linear_decay"].values)
    assert gaps["linear_decay"].reference == gaps["constant"]
    closer = "linear decay" if gaps["linear_decay"].values < gaps["constant"] else "constant"
    assert f"the {closer} run ends closer to J*" in report
