"""The likelihood experiment: MSE and the Gaussian NLL both reach numpy.linalg.lstsq."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from experiments import likelihood
from lexicon import cli


def test_polynomial_features_are_vandermonde(x64):
    x = np.linspace(-1, 1, 9)
    np.testing.assert_allclose(
        likelihood.polynomial_features(jnp.asarray(x), 3), np.vander(x, 4, increasing=True)
    )


def least_squares_rms(config):
    """The RMS residual of the least-squares fit, recomputed here."""
    x, y, _ = likelihood.regression_set(config)
    features = np.vander(x.astype(np.float64), config.regression_degree + 1, increasing=True)
    w = np.linalg.lstsq(features, y.astype(np.float64), rcond=None)[0]
    return np.sqrt(np.mean((y - features @ w) ** 2))


def test_a_learning_rate_sweep_reaches_least_squares_at_the_larger_rate(tmp_path):
    """--config.sweep='regression_lr=0.01,0.1', 2 seeds, through the cli: both fits' rates x
    seeds as one program each. At 0.1 both objectives reach numpy.linalg.lstsq's w and the NLL
    its RMS residual as sigma; at 0.01 the MSE fit is still far off, and each sweep picks 0.1
    by its final loss."""
    flags = ["--config.sweep=regression_lr=0.01,0.1", "--config.seeds=2", f"--workdir={tmp_path}"]
    flags += ["--config.regression_steps=600", "--config.progress=false"]
    get_config, run = likelihood.get_config, likelihood.train_and_evaluate
    results = cli.run(get_config, run, likelihood.RULES, ["likelihood", *flags])
    assert (tmp_path / "report.md").exists() and (tmp_path / "regression.png").exists()
    slow, fast = "regression_lr=0.01", "regression_lr=0.1"
    for name in ("mse_distance", "nll_distance"):  # ||w - w_lstsq|| per seed
        values = results[name][fast].values
        assert values.shape == (2,) and np.all(values < 1e-2), name
    assert np.all(results["mse_distance"][slow].values > 0.05)
    rms = least_squares_rms(likelihood.get_config())
    np.testing.assert_allclose(results["nll_sigma"][fast].values, rms, rtol=1e-3)
    sweeps = json.loads((tmp_path / "results.json").read_text())["sweeps"]
    assert {name: sweep["best"] for name, sweep in sweeps.items()} == {
        "regression_mse": 1,
        "regression_gaussian_nll": 1,
    }


@pytest.mark.slow
def test_regression_fits_reach_least_squares(tmp_path):
    config = likelihood.get_config()
    config.update(seeds=2, progress=False, regression_steps=600)
    results = likelihood.train_and_evaluate(config, tmp_path)
    for name in ("mse_distance", "nll_distance"):  # ||w - w_lstsq|| per seed
        assert results[name].values.shape == (2,) and np.all(results[name].values < 1e-2), name
    sigma = results["nll_sigma"]
    assert sigma.reference == least_squares_rms(config)
    np.testing.assert_allclose(sigma.values, sigma.reference, rtol=1e-3)
