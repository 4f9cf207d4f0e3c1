"""The digits GAN experiment: rules and a tiny conditional/unconditional run on 8x8 digits."""

import math

import numpy as np
import pytest

from experiments import gan_digits as experiment
from lexicon import cli


def test_bad_input_stops_with_one_line(capsys):
    for flag, word in (
        ("--config.architecture=resnet", "dcgan"),
        ("--config.disc_steps=3", "disc_steps"),
        ("--config.label_mode=text", "embed"),
    ):
        with pytest.raises(SystemExit) as stop:
            cli.run(
                experiment.get_config,
                experiment.train_and_evaluate,
                experiment.RULES,
                ["gan_digits", flag],
            )
        assert stop.value.code == 2
        err = capsys.readouterr().err.strip()
        assert word in err and "\n" not in err, err


def tiny_config(**changes):
    config = experiment.get_config()
    config.update(
        dict(
            dataset="digits",
            seeds=1,
            epochs=8,
            lr=2e-3,
            gen_hidden=(64,),
            disc_hidden=(64,),
            classifier_epochs=10,
            samples=500,
            progress=False,
        )
    )
    config.update(changes)
    return config


def test_tiny_run_on_digits(tmp_path):
    """A few epochs on the 8x8 digits: the judge reads real test digits well, and it reads the
    conditional GAN's samples as the requested digit far above chance (1/10)."""
    figures = experiment.train_and_evaluate(tiny_config(), tmp_path)
    assert figures["judge_test_accuracy"].values > 0.9
    accuracy = np.asarray(figures["conditional"]["accuracy"].values)
    assert np.all(accuracy > 0.3), accuracy
    entropy = np.asarray(figures["unconditional"]["class_entropy"].values)
    assert np.all(entropy <= math.log(10) + 1e-9) and np.all(entropy > 1.0)
    frechet = figures["conditional"]["frechet"]
    assert np.all(np.asarray(frechet.values) > frechet.reference)  # samples are not real digits
    for name in ("report.md", "conditional_samples.png", "unconditional_samples.png"):
        assert (tmp_path / name).exists()


@pytest.mark.slow
def test_default_run_meets_acceptance(tmp_path):
    config = experiment.get_config()
    config.progress = False
    figures = experiment.train_and_evaluate(config, tmp_path)
    assert figures["conditional"]["accuracy"].verdict() == "holds"
