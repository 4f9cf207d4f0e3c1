"""The depth experiment: the first layer's breakpoints, end to end (the sawtooth and its
constructions: tests/lexicon/test_sawtooth.py; the kernel machine: test_baselines.py)."""

import jax
import numpy as np

from experiments import depth as exp
from lexicon.nn.layers import MLP


def small_config(**overrides):
    config = exp.get_config()
    config.update(
        epochs=2,
        seeds=2,
        progress=False,
        eval_every=1,
        num_train=512,
        num_test=257,
        batch_size=128,
        min_width=8,
        num_widths=1,
        num_svr=2,
        svr_train=256,
        max_k=4,
    )
    config.update(overrides)
    return config


def test_first_layer_breakpoints_start_inside_the_unit_interval():
    model, task = exp.make_task(small_config(), [64, 64], np.zeros((1, 1), np.float32))
    state = jax.jit(task.init)(jax.random.key(0))
    layer = state.params["Dense_0"]
    breakpoints = -np.asarray(layer["bias"]) / np.asarray(layer["kernel"][0])
    assert np.all((breakpoints > 0) & (breakpoints < 1))
    # Spread over the interval (zero biases would put all 64 at x = 0): every quarter of [0, 1]
    # holds at least 4 of them (observed 27, 14, 9 and 14).
    quarters, _ = np.histogram(breakpoints, bins=4, range=(0, 1))
    assert quarters.min() >= 4, quarters
    assert isinstance(model, MLP)


def test_experiment_end_to_end(tmp_path):
    results = exp.train_and_evaluate(small_config(), tmp_path)
    assert (tmp_path / "report.md").exists() and (tmp_path / "depth.png").exists()
    report = (tmp_path / "report.md").read_text()
    assert "hand-set deep construction" in report and "SVR" in report
    assert results["deep_construction_mse"].values == 0.0
    assert results["shallow_construction_mse"].values < 1e-10
    for key in ("deep", "shallow"):
        assert results[f"{key}_construction_mse"].verdict() == "matches"
    assert results["deep_construction_params"] == 6 * 4 + 1
    assert results["shallow_construction_params"] > results["deep_construction_params"]
    for key in ("best_shallow_mse", "best_deep_mse"):
        assert results[key].shape == (2,)  # one budget, two seeds
        assert np.all(np.isfinite(results[key])) and np.all(results[key] < 0.5)
    wins = np.mean(results["best_deep_mse"]) < np.mean(results["best_shallow_mse"])
    assert results["deep_wins"] == int(wins)  # one budget: its seed means decide
    assert results["deep_wins_across_seeds"] <= results["deep_wins"]
    assert ("Welch interval below 0) at 0" in report) == (results["deep_wins_across_seeds"] == 0)
    assert 0 < results["best_svr_mse"] < 0.2
