"""The activations experiment: gallery derivatives against their closed forms, and the run end
to end (the gradient-norm task and the dead-unit diagnostics it uses are tested in
tests/lexicon/test_gradient_flow.py and tests/lexicon/nn/test_activations.py)."""

import numpy as np
import pytest

from experiments import activations as experiment
from lexicon.nn import activations
from lexicon.rules import ConfigError, check


def test_gallery_derivatives_match_closed_forms():
    x = np.linspace(-4, 4, 801)  # the experiment's points: its compiled gallery is reused
    values = activations.derivative_table(experiment.gallery_functions(), x)
    assert set(values) >= {"sigmoid", "tanh", "relu", "leaky_relu", "prelu", "maxout (3 pieces)"}
    for name, (g, auto, closed, _) in values.items():
        assert g.shape == auto.shape == closed.shape == x.shape, name
        np.testing.assert_allclose(auto, closed, atol=1e-6, err_msg=name)
    sigmoid, *_ = values["sigmoid"]
    np.testing.assert_allclose(sigmoid, 1 / (1 + np.exp(-x)), rtol=1e-6)
    maxout, *_ = values["maxout (3 pieces)"]
    lines = np.array(experiment.MAXOUT_SLOPES) * x[:, None] + np.array(experiment.MAXOUT_OFFSETS)
    np.testing.assert_allclose(maxout, lines.max(axis=1), rtol=1e-6, atol=1e-6)


def test_rules_refuse_bad_values():
    config = experiment.get_config()
    config.init = "orthogonal"
    with pytest.raises(ConfigError, match="init"):
        check(config, experiment.RULES)


def tiny_config():
    config = experiment.get_config()
    config.seeds = 2
    config.epochs = 2
    config.depth = 2
    config.width = 8
    config.progress = False
    return config


def check_relu_run(run, config):
    """What one ReLU network's run records (the tiny run's: 2 seeds, depth 2, width 8)."""
    assert (
        run["gradient_norms_init"].shape
        == run["gradient_norms_final"].shape
        == (2, config.depth + 1)
    )
    assert np.all(run["gradient_norms_init"] > 0)
    # A fraction of the depth * width hidden units; ReLU kills some in this run (2 and 1 of 16).
    units = config.depth * config.width
    np.testing.assert_allclose(run["dead_final"] * units, np.round(run["dead_final"] * units))
    assert np.any(run["dead_final"] > 0) and np.all(run["dead_final"] < 0.5)
    # A ReLU unit that is never active gets no gradient, so it is counted as dead.
    assert np.all(run["dead_final"] >= run["never_active_final"])
    assert np.all((run["mean_slope_init"] > 0) & (run["mean_slope_init"] < 1))
    # grad_metrics logs every layer's gradient norm, per seed, in each epoch's record.
    for layer in range(1, config.depth + 2):
        norms = run["result"].final(f"train/grad_norm_{layer:02d}")
        assert norms.shape == (2,) and np.all(np.isfinite(norms)) and np.all(norms > 0)


@pytest.mark.parametrize("scale", ["tiny", pytest.param("small", marks=pytest.mark.slow)])
def test_experiment_end_to_end(scale, tmp_path, monkeypatch):
    config = tiny_config()
    if scale == "small":
        config.depth = 3
    runs, run_network = {}, experiment.run_network

    def recorded(config, splits, activation, workdir):
        runs[activation] = run_network(config, splits, activation, workdir)
        return runs[activation]

    monkeypatch.setattr(experiment, "run_network", recorded)
    results = experiment.train_and_evaluate(config, tmp_path)
    for name in ("report.md", "gallery.png", "gradient_norms.png", "accuracy_dead_units.png"):
        assert (tmp_path / name).exists(), name
    assert results["max_derivative_error"] < 1e-6
    assert set(runs) == set(experiment.NETWORKS) and "abs" in runs
    for name in experiment.NETWORKS:
        accuracy = results[f"test_accuracy/{name}"].values
        assert accuracy.shape == (config.seeds,), name
        assert np.all(np.isfinite(accuracy)), name
        # Every network but sigmoid leaves chance (0.1) behind (lowest: leaky_relu and relu at
        # 0.27 and 0.28 tiny).
        if name != "sigmoid":
            assert np.all(accuracy > 0.2), name
        assert np.all(np.isfinite(results[f"gradient_ratio_init/{name}"])), name
        if name in experiment.REMEDIES:  # their gradient never vanishes: no unit dies
            assert np.all(results[f"dead_final/{name}"] == 0), name
    # Sigmoid's small derivative leaves it near chance (0.15, 0.18 tiny) where tanh learns
    # (0.60, 0.52 tiny).
    sigmoid, tanh = (results[f"test_accuracy/{n}"].values for n in ("sigmoid", "tanh"))
    assert np.mean(tanh) > np.mean(sigmoid) + 0.1
    # |z| has |g'| = 1 at every input (subgradient +1 at 0), so its mean |g'(in)| is exactly 1
    # where ReLU's is the fraction of active units.
    np.testing.assert_array_equal(results["mean_slope_init/abs"], 1.0)
    assert np.all(results["mean_slope_init/relu"] < 1)
    report = (tmp_path / "report.md").read_text()
    assert "Absolute-value rectification g(z) = |z|" in report
    if scale == "tiny":
        check_relu_run(runs["relu"], config)
        # No |z| unit dies where ReLU loses 2 and 1 of 16, and |z| learns faster than ReLU
        # here (test accuracy 0.47, 0.57 against 0.28, 0.30).
        assert np.all(results["dead_final/relu"] > results["dead_final/abs"])
        absolute, relu = (results[f"test_accuracy/{n}"].values for n in ("abs", "relu"))
        assert np.mean(absolute) > np.mean(relu) + 0.1
    if scale == "small":
        # Sigmoid's derivative is at most 1/4, so the first layer gets far less gradient.
        sigmoid, tanh = (results[f"gradient_ratio_init/{n}"] for n in ("sigmoid", "tanh"))
        assert np.all(sigmoid < tanh)
