"""The DBN experiment: config rules and a tiny run end to end."""

import numpy as np
import pytest

from experiments import dbn as experiment
from lexicon import cli


def tiny_config(**changes):
    config = experiment.get_config()
    config.update(
        dict(
            seeds=2,
            dataset="digits",
            first_layer="bernoulli",
            sizes=(32,),
            pretrain_epochs=3,
            lr=0.1,
            labels_per_class=(10,),
            finetune_steps=100,
            finetune_lr=3e-3,
            batch_size=10,
            progress=False,
        )
    )
    config.update(changes)
    return config


def test_bad_input_stops_with_one_line(capsys):
    for flag, word in (
        ("--config.first_layer=poisson", "gaussian"),
        ("--config.labels_per_class=(500,)", "labels_per_class"),
        ("--config.sizes=()", "sizes"),
    ):
        with pytest.raises(SystemExit) as stop:
            cli.run(
                experiment.get_config,
                experiment.train_and_evaluate,
                experiment.RULES,
                ["dbn", flag],
            )
        assert stop.value.code == 2
        err = capsys.readouterr().err.strip()
        assert word in err and "\n" not in err, err


def test_tiny_run_on_digits(tmp_path):
    """A 64-32 DBN on digits, 10 labels per class: both the pretrained and the random-init
    networks classify the test digits far above chance (0.1), every seed."""
    figures = experiment.train_and_evaluate(tiny_config(), tmp_path)
    pre = np.asarray(figures["accuracy_10/pretrained"].values)
    scratch = np.asarray(figures["accuracy_10/random_init"].values)
    assert np.all(pre > 0.5) and np.all(scratch > 0.5), (pre, scratch)
    for name in ("report.md", "pretraining.png", "fine_tuning.png"):
        assert (tmp_path / name).exists(), name
    assert (tmp_path / "pretrain" / "layer_0" / "metrics.jsonl").exists()


@pytest.mark.slow
def test_default_run(tmp_path):
    """The default run: every network beats chance by far at every label count."""
    config = experiment.get_config()
    config.progress = False
    figures = experiment.train_and_evaluate(config, tmp_path)
    for n in config.labels_per_class:
        assert np.all(np.asarray(figures[f"accuracy_{n}/pretrained"].values) > 0.5)
