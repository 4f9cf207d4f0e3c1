"""The DQN experiment: config rules, the MinAtar preset, and a tiny run end to end."""

import json

import numpy as np
import pytest

from experiments import dqn as experiment
from lexicon import cli


def test_bad_input_stops_with_one_line(capsys):
    for flag, word in (
        ("--config.env=pong", "cartpole"),
        ("--config.loss=l1", "huber"),
        ("--config.num_envs=3", "multiple"),
        ("--config.env=cartpole,breakout-minatar", "alone"),
    ):
        with pytest.raises(SystemExit) as stop:
            cli.run(
                experiment.get_config,
                experiment.train_and_evaluate,
                experiment.RULES,
                ["dqn", flag],
            )
        assert stop.value.code == 2
        err = capsys.readouterr().err.strip()
        assert word in err and "\n" not in err, err


def test_breakout_preset_is_the_minatar_papers_dqn():
    config = experiment.get_config()
    config.env = "breakout-minatar"
    run = experiment.settings(config)
    assert run.epochs * run.steps_per_epoch == 5_000_000
    assert run.batch_size == 32 and run.buffer_size == 100_000 and run.target_every == 1000
    assert run.conv == 16 and run.hidden == (128,) and run.optimizer == "rmsprop"
    assert run.eps_steps == 100_000 and run.eps_end == 0.1
    config.epochs, config.seeds = 8, 6  # a flag that changes a default wins over the preset
    run = experiment.settings(config)
    assert (run.epochs, run.seeds, run.steps_per_epoch) == (8, 6, 50_000)


def test_tiny_run_learns_cartpole(tmp_path):
    """Two seeds, 9,600 steps of CartPole: the return of the last epoch's episodes is more than
    twice the first's for every seed (a random policy keeps about 22)."""
    config = experiment.get_config()
    config.update(
        dict(
            env="cartpole",
            seeds=2,
            epochs=3,
            steps_per_epoch=3200,
            num_envs=4,
            learning_starts=1000,
            batch_size=64,
            target_every=25,
            lr=1e-3,
            lr_decay="constant",
            hidden=(64,),
            eps_fraction=0.6,
            eval_envs=4,
            eval_steps=300,
            progress=False,
        )
    )
    figures = experiment.train_and_evaluate(config, tmp_path)
    result_curve = [
        line for line in (tmp_path / "cartpole" / "metrics.jsonl").read_text().splitlines()
    ]
    assert len(result_curve) == 3
    first, last = (json.loads(result_curve[i])["train/episode_return"] for i in (0, -1))
    assert np.all(np.asarray(last) > 2 * np.asarray(first)), (first, last)
    assert np.all(np.asarray(figures["cartpole"]["greedy_return"].values) > 50)
    assert (tmp_path / "return_cartpole.png").exists()


@pytest.mark.slow
def test_cartpole_is_solved_over_the_last_tenth_of_training(tmp_path):
    """The default CartPole-v1 run (4 seeds, 500k steps): the mean episodic return over the last
    10% of training, averaged over the seeds, is at least 475."""
    config = experiment.get_config()
    config.update(dict(env="cartpole", progress=False))
    figures = experiment.train_and_evaluate(config, tmp_path)
    assert figures["cartpole"]["solved"].verdict() == "holds", figures["cartpole"]["solved"]


def test_published_references_beside_ours():
    """CleanRL's CartPole figures; Breakout's reference is the MinAtar DQN curve read at our
    frame budget, interpolated between the points read off the plot."""
    value, wall, text, source = experiment.reference("breakout-minatar", 200_000)
    assert (value, wall) == (6.1, None) and "200,000 frames" in text and "plot" in source
    assert experiment.reference("breakout-minatar", 150_000)[0] == pytest.approx(5.3)
    assert experiment.reference("breakout-minatar", 50_000) is None  # before the curve
    assert experiment.reference("cartpole", 1_000)[:3] == (498.0, 75.0, "498 ± 2 (CleanRL)")
    assert experiment.reference("acrobot", 500_000) is None
