"""The Q-learning experiment: config rules and a tiny run end to end."""

import json

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


def test_a_step_size_sweep_learns_q_star_faster_at_the_larger_step(tmp_path):
    """--config.sweep='alpha=0.1,1' on the 3x3 grid world, 2 seeds, one program: with a
    constant step (omega = 0) after 2,000 steps alpha = 1 lies closer to Q* than alpha = 0.1
    in every seed; each grid point gets its own figures."""
    argv = ["qlearning", f"--workdir={tmp_path}", "--config.sweep=alpha=0.1,1"]
    argv += ["--config.envs=gridworld", "--config.grid_rows=3", "--config.grid_cols=3"]
    argv += ["--config.seeds=2", "--config.epochs=2", "--config.steps_per_epoch=1000"]
    argv += ["--config.omega=0", "--config.gamma=0.9", "--config.progress=false"]
    cli.run(experiment.get_config, experiment.train_and_evaluate, experiment.RULES, argv)
    saved = json.loads((tmp_path / "results.json").read_text())
    slow, fast = (
        saved["figures"][f"gridworld/q_error/alpha={v}"]["per_seed"] for v in ("0.1", "1")
    )
    assert np.all(np.asarray(fast) < np.asarray(slow)), (slow, fast)
    points = saved["sweeps"]["gridworld"]["points"]
    assert [p["point"] for p in points] == [{"alpha": 0.1}, {"alpha": 1.0}]
