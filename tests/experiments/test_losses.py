"""The losses experiment: its losses and gradients against NumPy float64 formulas, the verdict,
and the run end to end (the sigmoid losses themselves: tests/lexicon/test_losses.py)."""

import numpy as np
import pytest

from experiments import losses as experiment
from lexicon import train
from lexicon.rules import ConfigError, check


def numpy_sigmoid(z):
    return 1 / (1 + np.exp(-z))


@pytest.mark.parametrize("target", [0.0, 1.0])
def test_output_gradients_match_closed_forms_and_finite_differences(target):
    z = np.linspace(-10, 10, 81)
    mse, ce = experiment.output_gradients(z, target)
    mse_closed, ce_closed = experiment.closed_form_gradients(z, target)
    np.testing.assert_allclose(mse, mse_closed, atol=1e-7, rtol=1e-5)
    np.testing.assert_allclose(ce, ce_closed, atol=1e-6)
    # The closed forms themselves, against central differences of the float64 losses.
    h = 1e-6

    def squared(v):
        return 0.5 * (numpy_sigmoid(v) - target) ** 2

    def cross_entropy(v):
        # log sigmoid(v) = -log(1 + e^-v) and log(1 - sigmoid(v)) = -log(1 + e^v), written
        # without 1 - o so that the difference quotient keeps its digits where o is near 1.
        return target * np.logaddexp(0, -v) + (1 - target) * np.logaddexp(0, v)

    np.testing.assert_allclose(
        mse_closed, (squared(z + h) - squared(z - h)) / (2 * h), atol=1e-9, rtol=1e-5
    )
    np.testing.assert_allclose(
        ce_closed, (cross_entropy(z + h) - cross_entropy(z - h)) / (2 * h), atol=1e-7
    )


def test_saturation_at_a_confidently_wrong_output():
    mse, ce = experiment.closed_form_gradients(np.array([-10.0]), 1.0)
    assert abs(mse[0]) < 1e-4 and abs(ce[0]) > 0.99


def test_steps_to_target():
    history = [
        {"epoch": 1, "step": 10, "val/accuracy": [0.5, 0.91, 0.2]},
        {"epoch": 2, "step": 20, "val/accuracy": [0.92, 0.95, 0.3]},
        {"epoch": 3, "step": 30, "val/accuracy": [0.85, 0.99, 0.4]},
    ]
    result = train.Result(state=None, history=history, step_metrics=[])
    np.testing.assert_array_equal(experiment.steps_to_target(result, 0.9), [20, 10, np.nan])


def test_speed_verdict_is_the_paired_comparison_of_mean_accuracy():
    mse, ce = "sigmoid outputs + MSE", "sigmoid outputs + cross-entropy"
    steps = {mse: np.array([50.0, 100.0, 80.0]), ce: np.array([20.0, 40.0, 30.0])}
    faster = {mse: np.array([0.5, 0.6, 0.55]), ce: np.array([0.8, 0.85, 0.86])}
    text = experiment.speed_verdict(steps, faster)
    assert "faster than MSE holds here" in text and "CE is higher than MSE" in text
    assert "2.6 times as many steps" in text
    steps[mse][0] = np.nan  # never reached: no ratio
    text = experiment.speed_verdict(steps, {mse: faster[ce], ce: faster[mse]})
    assert "is not established here" in text and "the opposite holds" in text
    assert "times as many" not in text


def test_rules_refuse_bad_values():
    config = experiment.get_config()
    config.target_accuracy = 1.5
    with pytest.raises(ConfigError, match="target_accuracy"):
        check(config, experiment.RULES)


SCALES = {
    "tiny": dict(seeds=1, epochs=1, target_accuracy=0.3),
    "small": dict(seeds=2, epochs=3, target_accuracy=0.5),
}


@pytest.mark.parametrize("scale", ["tiny", pytest.param("small", marks=pytest.mark.slow)])
def test_experiment_end_to_end(scale, tmp_path):
    config = experiment.get_config()
    config.update(progress=False, **SCALES[scale])
    results = experiment.train_and_evaluate(config, tmp_path)
    for name in ("report.md", "saturation.png", "classifiers.png"):
        assert (tmp_path / name).exists(), name
    assert results["gradient_error"].values < 1e-5
    assert results["gradient_error"].verdict() == "matches"
    saturated = results["saturated_gradient"]  # dE/dz at z = -10, t = 1
    assert abs(saturated["mse"]) < 1e-4 and saturated["cross_entropy"] == pytest.approx(-1, 1e-3)
    accuracy = {name: figure.values for name, figure in results["test_accuracy"].items()}
    steps = {name: figure.values for name, figure in results["steps_to_target"].items()}
    assert set(accuracy) == set(steps) == {"sigmoid_mse", "sigmoid_ce", "softmax_ce"}
    for name, values in accuracy.items():
        assert values.shape == steps[name].shape == (config.seeds,), name
        assert np.all(values > 0.2), name  # chance: 0.1
    # Already after the first epoch, cross-entropy is ahead of MSE on the same sigmoid outputs.
    assert np.all(accuracy["sigmoid_ce"] > accuracy["sigmoid_mse"] + 0.1)
    if scale == "tiny":
        return
    ce_first = np.nan_to_num(steps["sigmoid_ce"], nan=np.inf) < np.nan_to_num(
        steps["sigmoid_mse"], nan=np.inf
    )
    assert ce_first.all()  # cross-entropy reached the target first on every seed
    assert "cross-entropy learns faster than MSE holds here" in (tmp_path / "report.md").read_text()
