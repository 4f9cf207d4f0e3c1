"""The optimizer paths on the 2-D test functions at a tiny scale."""

import jax.numpy as jnp
import numpy as np
import pytest

from experiments import optimizer_paths as exp
from lexicon.optim import problems
from lexicon.rules import ConfigError


def test_experiment_end_to_end_fast(tmp_path):
    """Nesterov (drawn at theta) on both functions: each start descends from f at its start."""
    config = exp.get_config()
    config.seeds, config.progress, config.optimizers = 2, False, "nesterov,adam"
    config.quadratic_steps, config.rosenbrock_steps = 40, 60
    config.batch_sizes, config.well_steps, config.plateau_steps = (1,), 100, 100
    config.saddle_steps, config.cliff_steps = 120, 30
    headline = exp.train_and_evaluate(config, tmp_path)
    for name in ("report.md", "surfaces.png", "landscapes.png"):
        assert (tmp_path / name).exists(), name
    assert "known minimum" in (tmp_path / "report.md").read_text()
    starts = {
        "quadratic": float(problems.quadratic(jnp.array([-2.0, 1.5]), config.condition, 30.0)),
        "rosenbrock": float(problems.rosenbrock(jnp.array([-1.2, 1.0]))),
    }
    for surface, start in starts.items():
        for name in ("nesterov", "adam"):
            figure = headline["final_f"][surface][name]
            values = np.asarray(figure.values)
            assert values.shape == (2,) and np.isfinite(values).all()
            assert figure.tolerance == config.surface_tol and figure.reference == 0.0
            # The start's f is 9.3 (quadratic) and 24.2 (Rosenbrock); a few dozen steps go far
            # below it (nudged starts differ from it by jitter only).
            assert (values < 0.3 * start).all(), (surface, name, values, start)
    # The hard landscapes: full-batch descent stays in the local minimum; it leaves the saddle
    # (in ~70 steps from y ~ 1e-3) where Newton's method converges to it; clipping at c bounds
    # every step by eps c, so nothing is thrown.
    rates = headline["landscapes"]["rates"]
    assert rates["local minimum"]["full batch, N = 64"] == 0.0
    assert rates["saddle"]["full batch, N = 64"] == 1.0 and rates["saddle"][exp.NEWTON] == 0.0
    assert rates["cliff"]["clipped"] == 0.0
    verdicts = headline["landscapes"]["verdicts"]
    assert verdicts["saddle"] == "holds"  # 1 - 0 on both seeds
    assert set(verdicts) == {"local minimum", "saddle", "cliff"}  # no sgd: no plateau claim
    assert "left" not in verdicts and "Claim (longest step" in (tmp_path / "report.md").read_text()


def test_batch_sizes_beyond_the_examples_are_refused():
    config = exp.get_config()
    config.batch_sizes = (1, 65)
    with pytest.raises(ConfigError, match="exceed config.examples=64"):
        exp.check_config(config)
