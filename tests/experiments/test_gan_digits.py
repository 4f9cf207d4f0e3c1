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
            seeds=2,
            epochs=4,
            lr=2e-3,
            gen_hidden=(64,),
            disc_hidden=(64,),
            classifier_epochs=5,
            r1=0.0,
            samples=200,
            progress=False,
        )
    )
    config.update(changes)
    return config


def test_tiny_run_on_digits(tmp_path):
    """Four epochs on the 8x8 digits (too few for digit-like samples, see the slow test): the
    judge reads real test digits well; each discriminator already tells the real images from
    the fakes (mean D(x) higher on real than on fake by a margin, every seed); the samples lie
    farther from the test set than the real training images do."""
    figures = experiment.train_and_evaluate(tiny_config(), tmp_path)
    assert figures["judge_test_accuracy"].values > 0.9
    for name in ("conditional", "unconditional"):
        gap = np.asarray(figures[name]["d_real_minus_d_fake"].values)
        assert gap.shape == (2,) and np.all(gap > 0.05), (name, gap)
        frechet = figures[name]["frechet"]
        assert np.all(np.asarray(frechet.values) > frechet.reference)
    accuracy = np.asarray(figures["conditional"]["accuracy"].values)
    assert np.all((accuracy >= 0) & (accuracy <= 1))
    entropy = np.asarray(figures["unconditional"]["class_entropy"].values)
    assert np.all(entropy <= math.log(10) + 1e-9)
    for name in ("report.md", "conditional_samples.png", "unconditional_samples.png"):
        assert (tmp_path / name).exists()


@pytest.mark.slow
def test_default_run_meets_acceptance(tmp_path):
    config = experiment.get_config()
    config.progress = False
    figures = experiment.train_and_evaluate(config, tmp_path)
    assert figures["conditional"]["accuracy"].verdict() == "holds"
