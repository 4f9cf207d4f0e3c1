"""The activations experiment: gallery derivatives, gradient norms and dead-unit counts against a
NumPy float64 backpropagation, and the run end to end."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import activations as experiment
from lexicon import data
from lexicon.nn.layers import MLP
from lexicon.rules import ConfigError, check


def numpy_one_hidden_layer(params, x, y, activation, pieces=1):
    """Literal backprop of mean softmax cross-entropy through x -> g(x W0 + b0) W1 + b1.

    Returns the full-batch kernel gradients, the per-unit activity sum_e |dL_e/dW0[:, unit]|
    (summed over the unit's inputs and maxout pieces), and the pre-activations.
    """
    w0, b0 = params["Dense_0"]["kernel"], params["Dense_0"]["bias"]
    w1, b1 = params["Dense_1"]["kernel"], params["Dense_1"]["bias"]
    n = len(x)
    h = x @ w0 + b0
    if activation == "maxout":
        grouped = h.reshape(n, pieces, -1)
        a, winner = grouped.max(axis=1), grouped.argmax(axis=1)
    elif activation == "relu":
        a = np.maximum(h, 0)
    else:
        a = np.tanh(h)
    z = a @ w1 + b1
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    dz = (p - np.eye(z.shape[1])[y]) / n
    da = dz @ w1.T
    if activation == "maxout":
        dh = np.zeros_like(grouped)
        for e in range(n):
            for unit in range(a.shape[1]):
                dh[e, winner[e, unit], unit] = da[e, unit]
        dh = dh.reshape(n, -1)
    elif activation == "relu":
        dh = da * (h > 0)
    else:
        dh = da * (1 - np.tanh(h) ** 2)
    grads = [x.T @ dh, a.T @ dz]
    # Example e alone: its loss is not divided by n, so its gradient is n times its share.
    per_column = np.sum(n * np.abs(dh) * np.abs(x).sum(axis=1, keepdims=True), axis=0)
    activity = per_column.reshape(pieces, -1).sum(axis=0)
    return grads, activity, h


@pytest.fixture
def tiny_problem():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(12, 5))
    y = rng.integers(0, 3, size=12)
    return x, y


@pytest.mark.parametrize("activation", ["tanh", "relu", "maxout"])
def test_diagnostics_match_numpy_backprop(x64, tiny_problem, activation):
    x, y = tiny_problem
    pieces = 2 if activation == "maxout" else 1
    model = MLP(features=(4, 3), activation=activation, maxout_pieces=pieces)
    params = model.init(jax.random.key(1), jnp.zeros((1, 5)))["params"]
    params = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    if activation == "relu":
        # Unit 0 can never be active on inputs in [0, 1]: a planted dead unit.
        params["Dense_0"]["kernel"][:, 0] = -1.0
        params["Dense_0"]["bias"][0] = -0.5
    grads, activity, pre = numpy_one_hidden_layer(params, x, y, activation, pieces)
    stacked = jax.tree.map(lambda a: jnp.asarray(a)[None], params)
    found = experiment.diagnostics(
        model, stacked, {"x": jnp.asarray(x), "y": jnp.asarray(y)}, pieces
    )
    np.testing.assert_allclose(
        found["gradient_norms"][0], [np.linalg.norm(g) for g in grads], rtol=1e-10
    )
    np.testing.assert_allclose(found["activity"][0, 0], activity, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(found["pre_activations"][0, 0], pre, rtol=1e-12)
    if activation == "relu":
        assert found["activity"][0, 0, 0] == 0 and np.all(found["activity"][0, 0, 1:] > 0)


def test_gradient_norm_task_is_sgd_and_reports_layer_norms(x64, tiny_problem):
    x, y = tiny_problem
    model = MLP(features=(4, 3), activation="tanh")
    config = experiment.get_config()
    config.lr = 0.1
    task = experiment.gradient_norm_task(model, config, jnp.zeros((1, 5), jnp.float64))
    state = task.init(jax.random.key(0))
    state = state.replace(params=jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), state.params))
    params = jax.tree.map(np.asarray, state.params)
    grads, _, _ = numpy_one_hidden_layer(params, x, y, "tanh")
    step = task.make_step(None)
    new_state, metrics = step(state, {"x": jnp.asarray(x), "y": jnp.asarray(y)}, None)
    assert set(metrics) == {"loss", "accuracy", "grad_norm_01", "grad_norm_02"}
    np.testing.assert_allclose(metrics["grad_norm_01"], np.linalg.norm(grads[0]), rtol=1e-10)
    np.testing.assert_allclose(metrics["grad_norm_02"], np.linalg.norm(grads[1]), rtol=1e-10)
    np.testing.assert_allclose(
        new_state.params["Dense_0"]["kernel"], params["Dense_0"]["kernel"] - 0.1 * grads[0]
    )


def test_gallery_derivatives_match_closed_forms():
    x = np.linspace(-4, 4, 161)
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
    config.depth = 3
    config.width = 8
    config.progress = False
    return config


def test_one_network_fast(tmp_path):
    config = tiny_config()
    config.depth = 2
    splits = data.load("digits", seed=0)
    run = experiment.run_network(config, splits, "relu", tmp_path)
    assert run["norms_init"].shape == run["norms_final"].shape == (2, config.depth + 1)
    assert np.all(np.isfinite(run["norms_init"])) and np.all(run["norms_init"] > 0)
    # A fraction of the depth * width hidden units; ReLU kills some in this run (2 and 1 of 16).
    units = config.depth * config.width
    np.testing.assert_allclose(run["dead_final"] * units, np.round(run["dead_final"] * units))
    assert np.any(run["dead_final"] > 0) and np.all(run["dead_final"] < 0.5)
    # A ReLU unit that is never active gets no gradient, so it is counted as dead.
    assert np.all(run["dead_final"] >= run["never_active_final"])
    assert np.all((run["mean_slope_init"] > 0) & (run["mean_slope_init"] < 1))
    assert np.mean(run["result"].final("val/accuracy")) > 0.2
    # grad_metrics logs every layer's gradient norm, per seed, in each epoch's record.
    for layer in range(1, config.depth + 2):
        norms = run["result"].final(f"train/grad_norm_{layer:02d}")
        assert norms.shape == (2,) and np.all(np.isfinite(norms)) and np.all(norms > 0)


@pytest.mark.parametrize("scale", ["tiny", pytest.param("small", marks=pytest.mark.slow)])
def test_experiment_end_to_end(scale, tmp_path):
    config = tiny_config()
    if scale == "tiny":
        config.seeds, config.epochs, config.depth, config.width = 1, 1, 2, 4
    results = experiment.train_and_evaluate(config, tmp_path)
    for name in ("report.md", "gallery.png", "gradient_norms.png", "accuracy_dead_units.png"):
        assert (tmp_path / name).exists(), name
    assert results["max_derivative_error"] < 1e-6
    for name in experiment.NETWORKS:
        accuracy = results[f"test_accuracy/{name}"]
        assert accuracy.shape == (config.seeds,), name
        assert np.all(np.isfinite(accuracy)), name
        # Every network but sigmoid leaves chance (0.1) behind even in the tiny run (lowest:
        # relu and leaky_relu at 0.173 tiny, 0.212 small).
        if name != "sigmoid":
            assert np.all(accuracy > 0.13), name
        assert np.all(np.isfinite(results[f"gradient_ratio_init/{name}"])), name
        if name in ("leaky_relu", "prelu", "maxout"):  # their gradient never vanishes: no unit dies
            assert np.all(results[f"dead_final/{name}"] == 0), name
    # Sigmoid's small derivative leaves it at chance (0.09 tiny, 0.10 small) where tanh learns
    # (0.29 tiny, 0.40 and 0.58 small).
    sigmoid, tanh = (results[f"test_accuracy/{n}"] for n in ("sigmoid", "tanh"))
    assert np.mean(tanh) > np.mean(sigmoid) + 0.1
    if scale == "small":
        # Sigmoid's derivative is at most 1/4, so the first layer gets far less gradient.
        sigmoid, tanh = (results[f"gradient_ratio_init/{n}"] for n in ("sigmoid", "tanh"))
        assert np.all(sigmoid < tanh)
