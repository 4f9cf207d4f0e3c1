"""The second-order experiment: its objective against NumPy, Newton's iteration count, the run."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from experiments import second_order as exp
from lexicon import optim
from lexicon.optim import problems
from lexicon.rules import ConfigError


def flat(params, num_outputs):
    """The NumPy layout theta = [w.ravel(), b] (ravel_pytree would put b first)."""
    return np.concatenate([np.ravel(params["w"]), np.ravel(params["b"])])


def random_problem(num_outputs, seed=0, n=9, d=4):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    t = rng.integers(0, 2 if num_outputs == 1 else num_outputs, size=n)
    shape = (d,) if num_outputs == 1 else (d, num_outputs)
    params = {"w": rng.normal(size=shape), "b": rng.normal(size=shape[1:])}
    return x, t, params


@pytest.mark.parametrize("num_outputs", [1, 5])
def test_numpy_objective_matches_jax(x64, num_outputs):
    x, t, params = random_problem(num_outputs)
    l2 = 0.07
    value, grad = problems.logistic_value_and_grad(flat(params, num_outputs), x, t, l2, num_outputs)
    jax_params = jax.tree.map(jnp.asarray, params)
    jax_value, jax_grad = jax.value_and_grad(exp.objective)(jax_params, x, t, l2)
    assert value == pytest.approx(float(jax_value), rel=1e-13)
    np.testing.assert_allclose(grad, flat(jax_grad, num_outputs), rtol=1e-11, atol=1e-14)
    # And J itself, written out example by example.
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


def test_optim_minimize_on_the_objective_is_literal_gradient_descent(x64):
    """SGD on the full batch: theta <- theta - eps g until ||g|| <= tol, history row by row."""
    x, t, params = random_problem(1, seed=3)
    l2, eps, tol = 0.1, 0.5, 1e-3
    result = optim.minimize(
        optim.sgd(eps),
        exp.objective,
        jax.tree.map(jnp.asarray, params),
        x,
        t,
        l2,
        tol=tol,
        max_iter=500,
    )
    theta, losses, norms = flat(params, 1), [], []
    while True:
        value, grad = problems.logistic_value_and_grad(theta, x, t, l2, 1)
        losses.append(value)
        norms.append(np.linalg.norm(grad))
        if norms[-1] <= tol:
            break
        theta = theta - eps * grad
    k = int(result.num_iterations)
    assert k == len(losses) - 1 and bool(result.converged)
    np.testing.assert_allclose(np.asarray(result.loss_history[: k + 1]), losses, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(result.grad_norm_history[: k + 1]), norms, rtol=1e-10)
    assert np.isnan(np.asarray(result.grad_norm_history[k + 1 :])).all()
    np.testing.assert_allclose(flat(result.params, 1), theta, rtol=1e-12)


def test_optim_minimize_tests_nesterov_at_theta(x64):
    """Nesterov (Alg 8.3): the gradient is taken at theta + alpha v, the record at theta."""
    x, t, params = random_problem(1, seed=4)
    l2, eps, alpha, steps = 0.1, 0.3, 0.9, 12
    result = optim.minimize(
        optim.nesterov(eps, alpha),
        exp.objective,
        jax.tree.map(jnp.asarray, params),
        x,
        t,
        l2,
        tol=0.0,
        max_iter=steps,
    )
    theta, v = flat(params, 1), np.zeros(5)
    expected = [problems.logistic_value_and_grad(theta, x, t, l2, 1)[0]]
    for _ in range(steps):
        _, g = problems.logistic_value_and_grad(theta + alpha * v, x, t, l2, 1)
        v = alpha * v - eps * g
        theta = theta + v
        expected.append(problems.logistic_value_and_grad(theta, x, t, l2, 1)[0])
    np.testing.assert_allclose(np.asarray(result.loss_history), expected, rtol=1e-11)
    np.testing.assert_allclose(flat(result.params, 1), theta, rtol=1e-10)


@pytest.mark.slow
def test_newton_reaches_the_tolerance_within_15_iterations(x64):
    """On the experiment's default problem, from every seed's start, to ||g|| <= 1e-8."""
    config = exp.get_config()
    x, t, num_outputs = exp.load_problem(config)
    starts = exp.initial_params(config, x.shape[1], num_outputs)
    run = exp.solver(config, "newton")
    result = run(starts, jnp.asarray(x), jnp.asarray(t), jnp.asarray(config.l2), config.tol)
    iterations = np.asarray(result.num_iterations)
    assert (iterations <= 15).all() and np.asarray(result.converged).all(), iterations
    norms = np.asarray(result.grad_norm_history)
    assert (norms[np.arange(config.seeds), iterations] <= config.tol).all()
    reference = problems.scipy_optimum(config.l2, x, t, num_outputs)
    final = np.asarray(result.loss_history)[np.arange(config.seeds), iterations]
    np.testing.assert_allclose(final, reference["objective"], rtol=1e-12)
    theta = np.asarray(jax.vmap(lambda p: ravel_pytree(p)[0])(result.params))
    scipy_theta = np.asarray(ravel_pytree(jax.tree.map(jnp.asarray, reference["params"]))[0])
    assert np.abs(theta - scipy_theta).max() < 1e-4


def test_iterations_to():
    norms = np.array([[1.0, 0.1, 1e-9, np.nan], [1.0, 0.5, 0.2, 0.1]])
    iterations, reached = exp.iterations_to(norms, 1e-8)
    assert iterations.tolist() == [2, -1] and reached.tolist() == [True, False]


def test_empty_method_lists_are_refused(tmp_path):
    config = exp.get_config()
    config.methods, config.first_order = "", ""
    with pytest.raises(ConfigError, match="both empty"):
        exp.train_and_evaluate(config, tmp_path)
    assert exp.RULES["first_order"].check("first_order", "sgd,bogus") is not None
    assert exp.RULES["methods"].check("methods", "newton,bfgs") is None


def test_experiment_end_to_end(tmp_path):
    config = exp.get_config()
    config.seeds = 2
    config.repeats = 1
    config.methods = "newton,cg_fr"
    config.first_order = "nesterov"
    config.first_order_max_iter = 200  # too few for 1e-8: the table must say so
    headline = exp.train_and_evaluate(config, tmp_path)
    assert (tmp_path / "report.md").exists() and (tmp_path / "convergence.png").exists()
    report = (tmp_path / "report.md").read_text()
    assert "reference: scipy L-BFGS-B" in report and "not reached in 200" in report
    assert "reference: scipy CG, Polak-Ribiere+" in report
    assert "Newton's method, iterate by iterate" in report
    iterations, gaps = headline["iterations"], headline["objective_gap"]
    for method in ("newton", "cg_fr"):
        assert iterations[method].shape == (2,) and np.isfinite(iterations[method]).all(), method
        assert np.all(np.abs(gaps[method].values) < 1e-10) and gaps[method].verdict() == "matches"
        row = next(line for line in report.splitlines() if line.startswith(f"| {method} |"))
        assert float(row.split("|")[3]) > 0  # wall time, ms
    # 200 iterations leave Nesterov short of the tolerance, above J*.
    assert np.isnan(iterations["nesterov"]).all() and gaps["nesterov"].verdict() == "above"
    assert np.nanmax(iterations["newton"]) <= 15
    # Nonlinear CG needs only gradients: more iterations than Newton, far fewer than n = 65
    # times the condition number that gradient descent would need.
    assert np.nanmax(iterations["newton"]) < np.nanmin(iterations["cg_fr"]) <= 300
    # Newton converges quadratically: e_{k+1}/e_k falls towards 0, e_{k+1}/e_k^2 stays bounded.
    rate = headline["newton_rate"]
    assert rate["linear"] < 0.1 and 0 < rate["quadratic"] < 1e3


@pytest.mark.slow
def test_newton_on_the_multiclass_problem(x64):
    config = exp.get_config()
    config.classes = "multiclass"
    x, t, num_outputs = exp.load_problem(config)
    assert num_outputs == 10
    starts = exp.initial_params(config, x.shape[1], num_outputs)
    result = exp.solver(config, "newton")(
        starts, jnp.asarray(x), jnp.asarray(t), jnp.asarray(config.l2), config.tol
    )
    assert (np.asarray(result.num_iterations) <= 15).all() and np.asarray(result.converged).all()
