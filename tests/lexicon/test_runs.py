"""lexicon.runs: derived configs, one replica, values at an epoch, staged histories."""

import types

import ml_collections
import numpy as np
import pytest

from lexicon import report, runs
from lexicon.train.loop import Result


def history(epochs, offset=0.0):
    return [
        {"epoch": e, "step": 10 * e, "test/accuracy": [0.1 * e + offset, 0.2 * e + offset]}
        for e in epochs
    ]


def test_derived_copies_and_adds_keys_without_touching_the_original():
    config = ml_collections.ConfigDict({"epochs": 3, "lr": 0.1})
    config.lock()
    run = runs.derived(config, epochs=5, sweep="")
    assert (run.epochs, run.lr, run.sweep) == (5, 0.1, "")
    assert config.epochs == 3 and "sweep" not in config


def test_replica_and_parameter_count():
    tree = {"a": np.arange(6).reshape(3, 2), "b": {"c": np.ones((3, 4, 5))}}
    first = runs.replica(tree, 1)
    np.testing.assert_array_equal(first["a"], [2, 3])
    assert first["b"]["c"].shape == (4, 5)
    assert runs.parameter_count(first) == 2 + 20


def test_value_at_is_the_last_record_at_or_before_the_epoch():
    records = history([2, 4, 6])
    np.testing.assert_allclose(runs.value_at(records, "test/accuracy", 5), [0.4, 0.8])
    np.testing.assert_allclose(runs.value_at(records, "test/accuracy", 6), [0.6, 1.2])
    with pytest.raises(IndexError):
        runs.value_at(records, "test/accuracy", 1)


def test_joined_history_and_curve_over_stages():
    staged = {"hints": Result(None, history([1]), []), "distill": Result(None, history([2, 3]), [])}
    assert [r["epoch"] for r in runs.joined(staged)] == [1, 2, 3]
    x, values = runs.joined_curve(staged, "test/accuracy")
    np.testing.assert_array_equal(x, [1, 2, 3])
    np.testing.assert_allclose(values, [[0.1, 0.2, 0.3], [0.2, 0.4, 0.6]])


def test_held_figure_is_held_against_in_a_plain_run_and_per_point_in_a_sweep():
    result = Result(None, [{"epoch": 1, "acc": [0.5, 0.7, 0.6, 0.8]}], [])
    baseline = np.array([0.4, 0.5, 0.5, 0.6])
    comparison = report.compare(result.final("acc"), baseline, paired=True)
    held = runs.held_figure(result, "acc", baseline, comparison, "base")
    expected = report.held_against(result.final("acc"), baseline, comparison, "base")
    assert held.summary() == expected.summary() and held.tolerance == expected.tolerance
    sweep = types.SimpleNamespace(size=2, label=lambda g: f"lr={g}")
    result.sweep = sweep
    per_point = runs.held_figure(result, "acc", baseline, comparison, "base")
    assert list(per_point) == ["lr=0", "lr=1"] and per_point["lr=1"].reference is None
    np.testing.assert_allclose(per_point["lr=1"].values, [0.6, 0.8])


def test_mean_until_averages_the_evaluations_up_to_a_step():
    records = history([1, 2, 3])  # steps 10, 20, 30
    np.testing.assert_allclose(runs.mean_until(records, "test/accuracy", 25), [0.15, 0.3])
    np.testing.assert_allclose(runs.mean_until(records, "test/accuracy", 5), [0.1, 0.2])  # first
