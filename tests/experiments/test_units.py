"""The units experiment: its perceptron/LMS helpers against NumPy, and the run end to end."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import units as experiment
from lexicon import cli
from lexicon.nn import units
from lexicon.rules import ConfigError, check


def literal_perceptron_updates(x, t, w, alpha, epochs):
    """w_i <- w_i + alpha (t - o) x_i with o = sign(w . x) (+1 at 0), after every example."""
    trajectory = []
    for _ in range(epochs):
        for d in range(len(t)):
            o = 1.0 if sum(w[i] * x[d, i] for i in range(len(w))) >= 0 else -1.0
            w = np.array([w[i] + alpha * (t[d] - o) * x[d, i] for i in range(len(w))])
            trajectory.append(w)
    return np.array(trajectory)


def test_trajectory_is_the_literal_perceptron_rule(x64):
    x = np.hstack([np.ones((4, 1)), experiment.XOR_INPUTS.astype(np.float64)])
    t = 2.0 * experiment.XOR_LABELS - 1
    w0 = np.array([0.3, -0.7, 0.2])
    ours = units.perceptron_path(jnp.asarray(x), jnp.asarray(t), jnp.asarray(w0), 0.5, 3)
    np.testing.assert_allclose(np.asarray(ours), literal_perceptron_updates(x, t, w0, 0.5, 3))


def test_separable_set_keeps_its_margin():
    points, labels, (normal, offset) = units.separable_set(300, 0.1, seed=3)
    assert points.shape == (300, 2) and np.all(np.abs(points) <= 1)
    # They fill the square on both sides of the line: each coordinate spans nearly [-1, 1] and
    # each class holds a fair share (111 and 189 of 300 for this seed).
    assert np.all(points.min(axis=0) < -0.9) and np.all(points.max(axis=0) > 0.9)
    assert min(np.sum(labels == 1), np.sum(labels == -1)) > 60
    assert np.linalg.norm(normal) == pytest.approx(1.0)  # so |signed| is the distance
    signed = points.astype(np.float64) @ normal + offset
    assert np.all(np.abs(signed) >= 0.1 - 1e-6)
    np.testing.assert_array_equal(labels, np.where(signed >= 0, 1.0, -1.0))


def test_novikoff_bound_of_a_set_with_a_known_margin():
    """x = (1, +-2) labelled +-1: the best unit w is (0, 1), margin 2, R = sqrt(5)."""
    x = np.array([[1.0, 2.0], [1.0, -2.0], [1.0, 3.0]])
    t = np.array([1.0, -1.0, 1.0])
    radius, gamma, bound = units.novikoff_bound(x, t)
    assert radius == pytest.approx(np.sqrt(10))
    assert gamma == pytest.approx(2.0, rel=1e-6)
    assert bound == pytest.approx(10 / 4, rel=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_perceptron_mistakes_respect_novikoff(seed):
    points, labels, _ = units.separable_set(60, 0.1, seed=seed)
    x = np.hstack([np.ones((60, 1)), points]).astype(np.float32)
    _, _, bound = units.novikoff_bound(x, labels)
    history = units.perceptron(
        jnp.asarray(x), jnp.asarray(labels), jnp.zeros(3), 1.0, 40, key=jax.random.key(seed)
    )
    mistakes = np.asarray(history.mistakes)
    assert mistakes[-1] == 0 and mistakes.sum() <= bound


def test_first_zero_and_smallest_period():
    mistakes = np.array([[3, 1, 0, 0], [2, 2, 2, 2], [0, 1, 0, 0]])
    np.testing.assert_array_equal(units.first_zero(mistakes), [3, 0, 1])
    cycle = np.array([[0.0, 1.0], [1.0, 1.0], [2.0, 0.0], [1.0, 1.0], [2.0, 0.0]])
    assert units.smallest_period(cycle) == 2
    assert units.smallest_period(np.arange(6.0)[:, None]) == 0


def test_rules_refuse_bad_values():
    config = experiment.get_config()
    config.activation = "swish"
    with pytest.raises(ConfigError, match="activation"):
        check(config, experiment.RULES)
    config = experiment.get_config()
    config.lms_rate = 1.5
    with pytest.raises(ConfigError, match="lms_rate"):
        check(config, experiment.RULES)


def tiny_config():
    config = experiment.get_config()
    config.seeds = 2
    config.progress = False
    config.perceptron_epochs = 12
    config.lms_epochs = 60
    return config


def test_single_units_fast():
    config = tiny_config()
    perceptron = experiment.run_perceptron(config)
    assert np.all(perceptron["converged_epoch"] > 0)
    assert np.all(perceptron["total_mistakes"] <= perceptron["bound"])
    assert perceptron["xor_mistakes"].min() >= 1 and np.all(perceptron["xor_periods"] > 0)
    assert perceptron["xor_trajectory"].shape == (2, 3 * 4, 3)
    lms, least_squares, minimum, _ = experiment.run_lms(config)
    assert np.all(lms["batch"]["distance"][:, -1] < 1e-4)
    np.testing.assert_allclose(lms["batch"]["error"][:, -1], minimum, rtol=1e-5)
    incremental = [run["distance"][:, -1].mean() for name, run in lms.items() if name != "batch"]
    assert incremental[1] < incremental[0], "a smaller alpha settles closer to least squares"


@pytest.mark.slow
def test_experiment_end_to_end(tmp_path):
    config = tiny_config()
    config.epochs = 40
    results = experiment.train_and_evaluate(config, tmp_path)
    for name in ("report.md", "perceptron.png", "lms.png", "xor_network.png"):
        assert (tmp_path / name).exists(), name
    report = (tmp_path / "report.md").read_text()
    assert "Novikoff" in report and "numpy.linalg.lstsq" in report
    assert results["separable_converged"].verdict() == "matches"
    updates = results["separable_updates"]
    assert np.all(updates.values <= updates.reference) and updates.verdict() == "below"
    assert np.all(results["xor_perceptron_min_mistakes"] >= 1)
    assert np.all(results["lms_distance"].values < 1e-3)
    assert results["xor_hidden_accuracy"].verdict() == "matches"
    assert np.all(results["xor_linear_accuracy"].values <= 0.75)


def test_experiment_end_to_end_tiny_with_a_learning_rate_sweep(tmp_path):
    """Every part at a tiny scale through the cli, the XOR networks' rate swept (2 rates x 2
    seeds, one program per network): the report, its plots and a sweep section per network
    are written, the perceptron figures hold, and after 10 epochs the hidden layer solves XOR
    at lr = 0.5 (both seeds; 0.5 and 0.75 at lr = 0.05), which the sweep picks by its loss,
    while no rate lifts the linear classifier above 3 of the 4 points."""
    argv = ["units", "--config.sweep=lr=0.05,0.5", "--config.epochs=10", f"--workdir={tmp_path}"]
    argv += ["--config.seeds=2", "--config.perceptron_epochs=12", "--config.lms_epochs=60"]
    argv += ["--config.progress=false"]
    results = cli.run(experiment.get_config, experiment.train_and_evaluate, experiment.RULES, argv)
    for name in ("report.md", "perceptron.png", "lms.png", "xor_network.png", "sweep-hidden.png"):
        assert (tmp_path / name).exists(), name
    updates = results["separable_updates"]
    assert np.all(updates.values <= updates.reference)
    assert np.all(results["xor_perceptron_min_mistakes"] >= 1)
    slow, fast = (results["xor_hidden_accuracy"][f"lr={lr}"].values for lr in (0.05, 0.5))
    assert np.all(fast == 1.0) and np.mean(slow) < 0.8
    for point in results["xor_linear_accuracy"].values():
        assert np.all(point.values <= 0.75)
    sweeps = json.loads((tmp_path / "results.json").read_text())["sweeps"]
    assert set(sweeps) == {"hidden", "linear"} and sweeps["hidden"]["best"] == 1
    assert "## Sweep of hidden: lr" in (tmp_path / "report.md").read_text()
