"""The second-order experiment: Newton's iteration count, the run (its objective against NumPy:
tests/lexicon/optim/test_problems.py; the minimizers and the reading of their results:
tests/lexicon/optim/test_second_order.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from experiments import second_order as exp
from lexicon import cli
from lexicon.optim import problems


@pytest.mark.slow
def test_newton_reaches_the_tolerance_within_15_iterations(x64):
    """On the experiment's default problem, from every seed's start, to ||g|| <= 1e-8."""
    config = exp.get_config()
    x, t, num_outputs = problems.digits_logistic(config.classes, config.data_seed)
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


def test_empty_method_lists_are_refused_before_compiling(tmp_path, capsys):
    argv = ["second_order", "--config.methods=", "--config.first_order=", f"--workdir={tmp_path}"]
    with pytest.raises(SystemExit) as stop:
        cli.run(exp.get_config, exp.train_and_evaluate, exp.RULES, argv)
    assert stop.value.code == 2 and "both empty" in capsys.readouterr().err
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
    x, t, num_outputs = problems.digits_logistic(config.classes, config.data_seed)
    assert num_outputs == 10
    starts = exp.initial_params(config, x.shape[1], num_outputs)
    result = exp.solver(config, "newton")(
        starts, jnp.asarray(x), jnp.asarray(t), jnp.asarray(config.l2), config.tol
    )
    assert (np.asarray(result.num_iterations) <= 15).all() and np.asarray(result.converged).all()
