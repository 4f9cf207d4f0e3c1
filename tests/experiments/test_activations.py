"""The activations experiment: gallery derivatives and the SGD step's gradient norms against a
NumPy float64 backpropagation, and the run end to end (the dead-unit diagnostics it uses are
tested in tests/lexicon/nn/test_activations.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import activations as experiment
from lexicon.nn.layers import MLP
from lexicon.rules import ConfigError, check


def numpy_tanh_kernel_gradients(params, x, y):
    """Literal backprop of mean softmax cross-entropy through x -> tanh(x W0 + b0) W1 + b1."""
    w0, b0 = params["Dense_0"]["kernel"], params["Dense_0"]["bias"]
    w1, b1 = params["Dense_1"]["kernel"], params["Dense_1"]["bias"]
    a = np.tanh(x @ w0 + b0)
    z = a @ w1 + b1
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    dz = (p - np.eye(z.shape[1])[y]) / len(x)
    dh = (dz @ w1.T) * (1 - a**2)
    return [x.T @ dh, a.T @ dz]


@pytest.fixture
def tiny_problem():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(12, 5))
    y = rng.integers(0, 3, size=12)
    return x, y


def test_gradient_norm_task_is_sgd_and_reports_layer_norms(x64, tiny_problem):
    x, y = tiny_problem
    model = MLP(features=(4, 3), activation="tanh")
    config = experiment.get_config()
    config.lr = 0.1
    task = experiment.gradient_norm_task(model, config, jnp.zeros((1, 5), jnp.float64))
    state = task.init(jax.random.key(0))
    state = state.replace(params=jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), state.params))
    params = jax.tree.map(np.asarray, state.params)
    grads = numpy_tanh_kernel_gradients(params, x, y)
    step = task.make_step(None)
    new_state, metrics = step(state, {"x": jnp.asarray(x), "y": jnp.asarray(y)}, None)
    assert set(metrics) == {"loss", "accuracy", "grad_norm_01", "grad_norm_02"}
    np.testing.assert_allclose(metrics["grad_norm_01"], np.linalg.norm(grads[0]), rtol=1e-10)
    np.testing.assert_allclose(metrics["grad_norm_02"], np.linalg.norm(grads[1]), rtol=1e-10)
    np.testing.assert_allclose(
        new_state.params["Dense_0"]["kernel"], params["Dense_0"]["kernel"] - 0.1 * grads[0]
    )


def test_gallery_derivatives_match_closed_forms():
    x = np.linspace(-4, 4, 801)  # the experiment's points: its compiled gallery is reused
    values = experiment.gallery(x)
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
    assert run["norms_init"].shape == run["norms_final"].shape == (2, config.depth + 1)
    assert np.all(np.isfinite(run["norms_init"])) and np.all(run["norms_init"] > 0)
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
        accuracy = results[f"test_accuracy/{name}"]
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
    sigmoid, tanh = (results[f"test_accuracy/{n}"] for n in ("sigmoid", "tanh"))
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
        absolute, relu = (results[f"test_accuracy/{n}"] for n in ("abs", "relu"))
        assert np.mean(absolute) > np.mean(relu) + 0.1
    if scale == "small":
        # Sigmoid's derivative is at most 1/4, so the first layer gets far less gradient.
        sigmoid, tanh = (results[f"gradient_ratio_init/{n}"] for n in ("sigmoid", "tanh"))
        assert np.all(sigmoid < tanh)
