"""The initialization experiment: variance formulas, measurements and the run end to end."""

import json
import math

import jax
import numpy as np
import pytest
import scipy.integrate

from experiments import initialization as exp
from lexicon import cli, train
from lexicon.nn import init as initializers


def small_config(**overrides):
    config = exp.get_config()
    config.depth, config.width = 3, 16
    config.epochs, config.seeds, config.progress = 2, 2, False
    config.update(overrides)
    return config


def test_kernel_variances_are_the_initializers_formulas():
    m, n, s = 64, 32, 0.05
    assert initializers.kernel_variance("zeros", m, n, s) == 0.0
    assert initializers.kernel_variance("small_normal", m, n, s) == s**2
    # U(-b, b) has variance b^2 / 3 with Glorot's bound b = sqrt(6 / (m + n)).
    assert math.isclose(initializers.kernel_variance("glorot_uniform", m, n, s), (6 / (m + n)) / 3)
    assert initializers.kernel_variance("he_normal", m, n, s) == 2 / m
    # And the library's initializers draw with those variances (1% at 10^6 draws).
    key = jax.random.key(0)
    for name in ("glorot_uniform", "he_normal"):
        sample = np.asarray(initializers.get(name)(key, (1000, 1000)), np.float64)
        assert sample.var() == pytest.approx(
            initializers.kernel_variance(name, 1000, 1000, s), rel=0.01
        )


def test_linear_gain_is_one_for_glorot_tanh_and_he_relu():
    assert initializers.linear_gain("glorot_uniform", "tanh", 64, 0.01) == pytest.approx(1.0)
    assert initializers.linear_gain("he_normal", "relu", 64, 0.01) == pytest.approx(1.0)
    assert initializers.linear_gain("glorot_uniform", "relu", 64, 0.01) == pytest.approx(0.5)
    assert initializers.linear_gain("small_normal", "tanh", 64, 0.01) == pytest.approx(64 * 1e-4)


def gaussian_expectation(g, q):
    """E[g(z)] for z ~ N(0, q) by adaptive quadrature (scipy), split at the kink z = 0."""

    def integrand(z):
        return g(z) * math.exp(-z * z / (2 * q)) / math.sqrt(2 * math.pi * q)

    limit = 12 * math.sqrt(q)
    return scipy.integrate.quad(integrand, -limit, limit, points=[0], epsabs=1e-13)[0]


@pytest.mark.parametrize("q", [1e-6, 0.3, 1.0, 4.0])
def test_gaussian_moments_against_quadrature(q):
    def relu(z):
        return max(z, 0.0)

    for activation, g in (("tanh", math.tanh), ("relu", relu)):
        got_mean, got_second = initializers.gaussian_moments(activation, np.array([q]))
        assert got_mean[0] == pytest.approx(gaussian_expectation(g, q), rel=1e-6, abs=1e-12)
        second = gaussian_expectation(lambda z, g=g: g(z) ** 2, q)
        assert got_second[0] == pytest.approx(second, rel=1e-6)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_mean_field_matches_a_wide_random_network(activation):
    """At width 2048 the measured per-layer variance is within a few % of the recursion."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 32))
    width, sigma2 = 2048, [1.5 / 32, 1.5 / 2048, 1.5 / 2048]
    h = x
    measured = []
    for variance in sigma2:
        w = rng.normal(scale=np.sqrt(variance), size=(h.shape[1], width))
        h = np.tanh(h @ w) if activation == "tanh" else np.maximum(h @ w, 0.0)
        measured.append(h.var())
    predicted = initializers.mean_field_variances(x, sigma2, width, activation)
    np.testing.assert_allclose(measured, predicted, rtol=0.05)


@pytest.mark.slow
def test_experiment_end_to_end_zeros(tmp_path):
    """One zero-initialized net; its units stay identical, report and plot exist (the fast
    end-to-end run is the sweep below)."""
    config = small_config(activation="relu", init="zeros")
    results = exp.train_and_evaluate(config, tmp_path)
    assert (tmp_path / "report.md").exists() and (tmp_path / "variances.png").exists()
    assert "exactly 0" in (tmp_path / "report.md").read_text()
    np.testing.assert_array_equal(results["relu/zeros/unit_spread"].values, 0.0)
    assert results["relu/zeros/unit_spread"].verdict() == "matches"
    accuracy = results["relu/zeros/test_accuracy"]
    assert accuracy.values.shape == (2,)
    assert np.all(accuracy.values <= accuracy.reference + 1e-6)  # the best constant prediction
    # it predicts one class, not the most frequent: 0.089 in both seeds, below the best 0.117
    assert accuracy.verdict() == "below" and accuracy.values[0] == accuracy.values[1]
    assert set(results) == {"relu/zeros/unit_spread", "relu/zeros/test_accuracy"}


@pytest.mark.slow
def test_experiment_end_to_end_every_init(tmp_path):
    """tanh nets of every initialization, tiny scale: report, plot and the claims."""
    config = small_config(activation="tanh")
    results = exp.train_and_evaluate(config, tmp_path)
    assert (tmp_path / "report.md").exists() and (tmp_path / "variances.png").exists()
    report = (tmp_path / "report.md").read_text()
    assert "Glorot uniform" in report and "mean field" in report
    accuracy = {}
    for init_name in exp.INITS:
        values = results[f"tanh/{init_name}/test_accuracy"]
        accuracy[init_name] = np.asarray(getattr(values, "values", values))
        assert accuracy[init_name].shape == (2,) and np.all(np.isfinite(accuracy[init_name]))
    # Glorot and He train (0.69 to 0.77 observed); zeros and the small normal, whose signal
    # vanishes, stay at a constant prediction (0.089, below chance 0.1).
    for init_name in ("glorot_uniform", "he_normal"):
        assert np.all(accuracy[init_name] > 0.5), init_name
    for init_name in ("zeros", "small_normal"):
        assert np.all(accuracy[init_name] < 0.2), init_name
    # Zeros: identical units and no better than a constant prediction.
    np.testing.assert_array_equal(results["tanh/zeros/unit_spread"].values, 0.0)
    zeros = results["tanh/zeros/test_accuracy"]
    assert np.all(zeros.values <= zeros.reference + 1e-6)
    # Small normal: the variance collapses over the layers; Glorot keeps the same order, that
    # of the mean-field recursion (within 50%).
    assert np.all(results["tanh/small_normal/variance_ratio"].values < 1e-3)
    glorot = results["tanh/glorot_uniform/variance_ratio"]
    assert np.all(glorot.values > 0.1)
    assert np.mean(glorot.values) == pytest.approx(glorot.reference, rel=0.5)
    assert glorot.verdict() == "matches" and glorot.source == "mean-field recursion"
    assert np.mean(results["tanh/glorot_uniform/test_accuracy"].values) > 0.5


def test_a_learning_rate_sweep_is_one_run(tmp_path):
    """--config.sweep='lr=0.01,0.3': the He/ReLU net's 2 rates x 2 seeds as one program. After
    1 epoch the larger rate classifies far better (observed 0.88 vs 0.17; chance 0.1), each grid
    point has its own figure, and the sweep marks it best (by training loss: the study has no
    validation split)."""
    flags = "activation=relu init=he_normal depth=1 width=16 epochs=1 seeds=2 progress=false"
    argv = ["initialization", "--config.sweep=lr=0.01,0.3", f"--workdir={tmp_path}"]
    argv += [f"--config.{flag}" for flag in flags.split()]
    results = cli.run(exp.get_config, exp.train_and_evaluate, exp.RULES, argv=argv)
    accuracy = results["relu/he_normal/test_accuracy"]
    slow, fast = accuracy["lr=0.01"].values, accuracy["lr=0.3"].values
    assert slow.shape == fast.shape == (2,)
    assert np.all(fast > 0.7) and np.all(fast > slow + 0.3), (slow, fast)
    run = tmp_path / "relu-he_normal"
    assert json.loads((run / "sweep.json").read_text())["best"] == 1
    grid = train.read_metrics(run)[-1]["grid"]
    assert grid == {"lr": [0.01, 0.01, 0.3, 0.3], "seed": [0, 1, 0, 1]}
    assert (tmp_path / "variances.png").exists()
    assert "grid points" in (tmp_path / "report.md").read_text()
