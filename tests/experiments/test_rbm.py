"""The RBM experiment: config rules, the paper preset, and a tiny run end to end."""

import json

import numpy as np
import pytest

from experiments import rbm as experiment
from lexicon import cli


def tiny_config(**changes):
    config = experiment.get_config()
    config.update(
        dict(
            seeds=2,
            epochs=3,
            batch_size=20,
            datasets="digits",
            methods="cd1,pcd",
            small_hidden=6,
            lr=0.1,
            lr_decay="none",
            large_hidden=10,
            large_epochs=2,
            ais_runs=50,
            ais_betas=300,
            gibbs_steps=10,
            gaussian_hidden=4,
            gaussian_epochs=4,
            gaussian_lr=0.01,
            progress=False,
        )
    )
    config.update(changes)
    return config


def test_bad_input_stops_with_one_line(capsys):
    for flag, word in (
        ("--config.methods=cd2", "cdk"),
        ("--config.small_hidden=30", "small_hidden"),
        ("--config.datasets=none", "mnist5k"),
    ):
        with pytest.raises(SystemExit) as stop:
            cli.run(
                experiment.get_config,
                experiment.train_and_evaluate,
                experiment.RULES,
                ["rbm", flag],
            )
        assert stop.value.code == 2
        err = capsys.readouterr().err.strip()
        assert word in err and "\n" not in err, err


def test_paper_preset_is_salakhutdinov_and_murray():
    config = experiment.get_config()
    config.scale = "paper"
    run = experiment.settings(config)
    assert run.large_hidden == 500 and run.k == 25 and run.ais_betas == 14500
    assert run.ais_runs == 100


def test_tiny_run_on_binarized_digits(tmp_path):
    """PCD on binarized digits, 6 hidden units, 3 epochs: the exact test log-likelihood rises
    above the initial RBM's by more than 0.5 nats in every seed."""
    config = tiny_config(methods="pcd", large_hidden=0, gaussian_hidden=0)
    figures = experiment.train_and_evaluate(config, tmp_path)
    gain = np.asarray(figures["digits/pcd/test_gain"].values)
    assert np.all(gain > 0.5), gain
    assert figures["digits/pcd/test_gain"].verdict() == "holds"
    assert (tmp_path / "exact_digits.png").exists() and "PCD" in (
        tmp_path / "report.md"
    ).read_text()


@pytest.mark.slow
def test_every_part_on_binarized_digits(tmp_path):
    """All parts at a tiny scale: the exact test log-likelihood rises by more than 0.5 nats
    for CD-1 and PCD; for a 10-hidden RBM the AIS estimate lies within 1 nat of the exact
    value; the Gaussian-Bernoulli RBM beats the independent Gaussian it starts from."""
    figures = experiment.train_and_evaluate(tiny_config(), tmp_path)
    for method in ("cd1", "pcd"):
        gain = np.asarray(figures[f"digits/{method}/test_gain"].values)
        assert np.all(gain > 0.5), (method, gain)
        ais = np.asarray(figures[f"digits/large_{method}/test_log_likelihood_ais"].values)
        exact = np.asarray(figures[f"digits/large_{method}/test_log_likelihood_exact"].values)
        assert np.all(np.abs(ais - exact) < 1.0), (ais, exact)
    assert figures["digits_gaussian/test_log_likelihood"].verdict() == "holds"
    for name in ("exact_digits.png", "filters_digits.png", "samples_digits.png", "gaussian.png"):
        assert (tmp_path / name).exists(), name


@pytest.mark.slow
def test_default_run(tmp_path):
    """The default run: the exact test log-likelihood rises for every method on both data
    sets; the 500-hidden RBMs' AIS log-likelihoods are finite and above -200 nats."""
    config = experiment.get_config()
    config.progress = False
    figures = experiment.train_and_evaluate(config, tmp_path)
    for name in ("mnist5k", "digits"):
        for method in experiment.METHODS:
            assert figures[f"{name}/{method}/test_gain"].verdict() == "holds"
    for method in experiment.METHODS:
        ll = np.asarray(figures[f"mnist5k/large_{method}/test_log_likelihood_ais"].values)
        assert np.all(ll > -200), ll


def test_a_learning_rate_sweep_gives_every_grid_point_its_figures(tmp_path):
    """--config.sweep='lr=0.01,0.1': PCD at both rates x 2 seeds as one program, every grid
    point from the same initial RBMs; the larger rate gains more test log-likelihood in every
    seed within the 3 epochs."""
    argv = ["rbm", f"--workdir={tmp_path}", "--config.sweep=lr=0.01,0.1", "--config.seeds=2"]
    argv += ["--config.epochs=3", "--config.batch_size=20", "--config.datasets=digits"]
    argv += ["--config.methods=pcd", "--config.small_hidden=6", "--config.lr_decay=none"]
    argv += ["--config.large_hidden=0", "--config.gaussian_hidden=0", "--config.progress=false"]
    cli.run(experiment.get_config, experiment.train_and_evaluate, experiment.RULES, argv)
    saved = json.loads((tmp_path / "results.json").read_text())
    gains = [saved["figures"][f"digits/pcd/test_gain/lr={v}"]["per_seed"] for v in ("0.01", "0.1")]
    assert np.all(np.asarray(gains[1]) > np.asarray(gains[0])), gains
    points = saved["sweeps"]["small_digits/pcd"]["points"]
    assert [p["point"] for p in points] == [{"lr": 0.01}, {"lr": 0.1}]
