"""The optimizer paths on the 2-D test functions at a tiny scale."""

import jax.numpy as jnp
import numpy as np

from experiments import optimizer_paths as exp
from lexicon.optim import problems


def test_experiment_end_to_end_fast(tmp_path):
    """Nesterov (drawn at theta) on both functions: each start descends from f at its start."""
    config = exp.get_config()
    config.seeds, config.progress, config.optimizers = 2, False, "nesterov,adam"
    config.quadratic_steps, config.rosenbrock_steps = 40, 60
    headline = exp.train_and_evaluate(config, tmp_path)
    for name in ("report.md", "surfaces.png"):
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
