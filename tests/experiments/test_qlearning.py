"""The Q-learning experiment: config rules and a tiny run end to end."""

import numpy as np
import pytest

from experiments import qlearning as experiment
from lexicon import cli


def test_bad_input_stops_with_one_line(capsys):
    for flag, word in (
        ("--config.envs=frozenlake-5x5", "frozenlake-4x4"),
        ("--config.gamma=1.0", "gamma"),
        ("--config.grid_rows=1", "2 cells"),
    ):
        argv = ["qlearning", flag] + (["--config.grid_cols=1"] if "rows" in flag else [])
        with pytest.raises(SystemExit) as stop:
            cli.run(experiment.get_config, experiment.train_and_evaluate, experiment.RULES, argv)
        assert stop.value.code == 2
        err = capsys.readouterr().err.strip()
        assert word in err and "\n" not in err, err


def test_tiny_run(tmp_path):
    """Two seeds, 3 x 4,000 steps on the deterministic 4x4 lake and the grid world: the
    greedy policy reaches the goal (success 1, the exact optimum) and Q is within 0.1 of Q*."""
    config = experiment.get_config()
    config.update(
        dict(
            seeds=2,
            epochs=3,
            steps_per_epoch=4000,
            envs="frozenlake-4x4,gridworld",
            progress=False,
            gamma=0.9,
            eps_end=1.0,
            grid_rows=3,
            grid_cols=3,
        )
    )
    figures = experiment.train_and_evaluate(config, tmp_path)
    for name in ("frozenlake-4x4", "gridworld"):
        success = figures[name]["success"]
        assert success.reference == 1.0 and success.verdict() == "matches"
        np.testing.assert_array_equal(success.values, 1.0)
        assert np.all(np.asarray(figures[name]["q_error"].values) < 0.1)
    text = (tmp_path / "report.md").read_text()
    assert "optimum (exact)" in text and "→" in text
    assert (tmp_path / "success.png").exists()


@pytest.mark.slow
def test_slippery_4x4_greedy_success_is_within_0_03_of_the_optimum(tmp_path):
    config = experiment.get_config()
    config.update(dict(envs="frozenlake-4x4-slippery", progress=False))
    figures = experiment.train_and_evaluate(config, tmp_path)
    success = figures["frozenlake-4x4-slippery"]["success"]
    assert round(success.reference, 4) == 0.7442
    assert abs(np.mean(success.values) - 0.7442) <= 0.03, success.values
