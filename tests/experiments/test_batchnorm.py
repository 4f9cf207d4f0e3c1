"""The batch-norm experiment: the sweep, divergence handling, eval mode, the literal form, and
the run end to end."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import batchnorm as exp
from lexicon import data, train
from lexicon.rules import ConfigError


def small_config(**overrides):
    config = exp.get_config()
    config.depth, config.width = 2, 16
    config.epochs, config.seeds, config.progress = 2, 2, False
    config.update(overrides)
    return config


@pytest.fixture(scope="module")
def splits():
    return data.standardize(data.load("digits", seed=0))


def test_learning_rates_are_log_spaced():
    config = small_config(lr_min=1e-3, lr_max=10.0, num_lrs=5)
    expected = [1e-3 * (10.0 / 1e-3) ** (i / 4) for i in range(5)]
    np.testing.assert_allclose(exp.learning_rates(config), expected, rtol=1e-12)
    assert exp.learning_rates(small_config(num_lrs=1, lr_min=0.5, lr_max=0.5)).tolist() == [0.5]


def numpy_eval_forward(params, batch_stats, x, epsilon):
    """Dense -> BN (running averages: (h - mean) / sqrt(delta + var) * gamma + beta) -> ReLU,
    then the output Dense; float64."""
    h = np.asarray(x, np.float64)
    depth = len(batch_stats)
    for i in range(depth):
        h = h @ np.asarray(params[f"Dense_{i}"]["kernel"], np.float64)
        stats, bn = batch_stats[f"BatchNorm_{i}"], params[f"BatchNorm_{i}"]
        h = (h - stats["mean"]) / np.sqrt(epsilon + np.asarray(stats["var"], np.float64))
        h = np.maximum(h * bn["scale"] + bn["bias"], 0.0)
    out = params[f"Dense_{depth}"]
    return h @ np.asarray(out["kernel"], np.float64) + out["bias"]


def test_evaluation_uses_the_running_averages(splits):
    config = small_config()
    model, task = exp.make_task(config, "batch_norm", splits)
    state = jax.jit(task.init)(jax.random.key(0))
    rng = np.random.default_rng(0)
    stats = jax.tree.map(
        lambda a: np.asarray(rng.uniform(0.5, 2.0, a.shape), np.float32),
        state.model_state["batch_stats"],
    )
    params = jax.tree.map(
        lambda a: a + rng.normal(0, 0.1, a.shape).astype(np.float32), state.params
    )
    state = state.replace(params=params, model_state={"batch_stats": stats})
    split = {"x": splits.test["x"][:200], "y": splits.test["y"][:200]}
    expected = numpy_eval_forward(params, stats, split["x"], config.bn_epsilon)
    logits, model_state = train.apply_model(
        model, state.params, state.model_state, split["x"], train=False
    )
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)
    assert model_state is state.model_state  # evaluation leaves the averages untouched
    got = jax.jit(task.evaluate)(state, split)
    assert float(got["accuracy"]) == pytest.approx(np.mean(np.argmax(logits, -1) == split["y"]))


def test_a_diverged_net_classifies_nothing(splits):
    _, task = exp.make_task(small_config(), "plain", splits)
    state = jax.jit(task.init)(jax.random.key(0))
    state = state.replace(params=jax.tree.map(lambda a: a * jnp.nan, state.params))
    got = task.evaluate(state, {"x": splits.test["x"][:50], "y": splits.test["y"][:50]})
    assert float(got["accuracy"]) == 0.0


def test_good_rates():
    lrs = [0.01, 0.1, 1.0]
    accuracy = [np.array([0.5, 0.6]), np.array([0.95, 0.93]), np.array([0.99, 0.1])]
    assert exp.good_rates(lrs, accuracy, 0.9) == [0.1]


def test_rates_must_increase(tmp_path):
    with pytest.raises(ConfigError, match="lr_max"):
        exp.train_and_evaluate(small_config(lr_min=1.0, lr_max=0.1), tmp_path)


def test_variants_follow_affine():
    assert exp.variants(small_config()) == ["plain", "batch_norm", "literal"]
    assert exp.variants(small_config(affine="true")) == ["plain", "batch_norm"]
    assert exp.variants(small_config(affine="false")) == ["plain", "literal"]


def test_the_literal_form_has_no_gamma_beta_or_running_averages(splits):
    model, task = exp.make_task(small_config(), "literal", splits)
    state = jax.eval_shape(task.init, jax.random.key(0))
    assert state.model_state == {}
    assert not any("BatchNorm" in name for name in state.params)
    assert "bias" not in state.params["Dense_0"]


def test_experiment_end_to_end_fast(tmp_path):
    """One rate far too large, trained as a sweep per net: the plain and the affine batch-norm
    nets blow up (fit records it, the run still reports); the literal form, whose layers
    normalize away the size of the weights, still classifies far above chance."""
    config = small_config(lr_min=1000.0, lr_max=1000.0, num_lrs=1)
    results = exp.train_and_evaluate(config, tmp_path)
    assert (tmp_path / "report.md").exists() and (tmp_path / "sweep.png").exists()
    report = (tmp_path / "report.md").read_text()
    assert "with batch norm" in report and "What gamma, beta" in report
    assert results["plain_accuracy"].shape == results["plain_diverged_at"].shape == (1, 2)
    # Both seeds blow up in epoch 1: frozen there, null metrics, scored as classifying nothing.
    np.testing.assert_array_equal(results["plain_diverged_at"], [[1, 1]])
    record = train.read_metrics(tmp_path / "plain")[-1]
    assert record["diverged_at"] == [1, 1] and record["test/accuracy"] == [None, None]
    assert record["grid"] == {"lr": [1000.0, 1000.0], "seed": [0, 1]}
    assert np.all(results["plain_accuracy"] == 0)
    # The affine batch norm does not rescue a rate this large: its net too blows up.
    np.testing.assert_array_equal(results["batch_norm_diverged_at"], [[1, 1]])
    assert np.all(results["batch_norm_accuracy"] == 0)
    # The literal form trains on (observed 0.91 and 0.71; chance is 0.1).
    np.testing.assert_array_equal(results["literal_diverged_at"], [[0, 0]])
    assert np.all(results["literal_accuracy"] > 0.5)


@pytest.mark.slow
def test_experiment_end_to_end(tmp_path):
    """Two rates, the second far too large: the plain net fails there, the sweep goes on."""
    config = small_config(lr_min=0.1, lr_max=1000.0, num_lrs=2)
    results = exp.train_and_evaluate(config, tmp_path)
    assert (tmp_path / "report.md").exists() and (tmp_path / "sweep.png").exists()
    report = (tmp_path / "report.md").read_text()
    assert "with batch norm" in report and "logistic regression" in report
    np.testing.assert_allclose(results["learning_rates"], [0.1, 1000.0])
    for key in ("plain_accuracy", "batch_norm_accuracy"):
        assert results[key].shape == (2, 2) and np.all(np.isfinite(results[key]))
        # eps = 0.1 trains both nets far above chance (0.1): observed 0.79 to 0.88.
        assert np.all(results[key][0] > 0.6), key
    # At eps = 0.1 nothing diverges; at eps = 1000 the plain net blows up (scored 0).
    np.testing.assert_array_equal(results["plain_diverged_at"][0], [0, 0])
    assert np.all(results["plain_diverged_at"][1] > 0)
    assert np.all(results["plain_accuracy"][1] == 0)
    assert np.mean(results["batch_norm_accuracy"][0]) > 0.5
    assert 0.9 < results["reference"] <= 1.0
