"""The likelihood experiment: MSE and the Gaussian NLL both reach numpy.linalg.lstsq."""

import jax.numpy as jnp
import numpy as np

from experiments import likelihood


def test_polynomial_features_are_vandermonde(x64):
    x = np.linspace(-1, 1, 9)
    np.testing.assert_allclose(
        likelihood.polynomial_features(jnp.asarray(x), 3), np.vander(x, 4, increasing=True)
    )


def test_regression_fits_reach_least_squares(tmp_path):
    config = likelihood.get_config()
    config.update(seeds=2, progress=False, regression_steps=600)
    results = likelihood.train_and_evaluate(config, tmp_path)
    assert (tmp_path / "report.md").exists() and (tmp_path / "regression.png").exists()
    for name in ("mse_distance", "nll_distance"):  # ||w - w_lstsq|| per seed
        assert results[name].values.shape == (2,) and np.all(results[name].values < 1e-2), name
    # The fitted sigma is the RMS residual of the least-squares fit, recomputed here.
    x, y, _ = likelihood.regression_set(config)
    features = np.vander(x.astype(np.float64), 4, increasing=True)
    w = np.linalg.lstsq(features, y.astype(np.float64), rcond=None)[0]
    rms = np.sqrt(np.mean((y - features @ w) ** 2))
    sigma = results["nll_sigma"]
    assert sigma.reference == rms
    np.testing.assert_allclose(sigma.values, rms, rtol=1e-3)
