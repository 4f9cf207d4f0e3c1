"""The optimizers experiment at a tiny scale (formulas: tests/lexicon/optim/test_problems.py)."""

import json
import math

import numpy as np
import pytest

from experiments import optimizers as exp
from lexicon import cli
from lexicon.rules import ConfigError, check


def test_names_rule_and_bad_flags_stop_before_training(capsys):
    rule = exp.RULES["optimizers"]
    assert rule.check("optimizers", "sgd, adam") is None
    assert rule.check("optimizers", ("sgd", "nesterov")) is None
    message = rule.check("optimizers", "sgd,bogus")
    assert "bogus" in message and "rmsprop_nesterov" in message
    assert rule.check("optimizers", " , ") is not None
    config = exp.get_config()
    config.parts = "logreg,nothing"
    with pytest.raises(ConfigError, match="nothing"):
        check(config, exp.RULES)

    def never(config, workdir):
        raise AssertionError("training started despite a bad flag")

    with pytest.raises(SystemExit) as stop:
        cli.run(exp.get_config, never, exp.RULES, argv=["optimizers", "--config.optimizers=bogus"])
    assert stop.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "bogus" in error
    with pytest.raises(SystemExit):
        cli.run(exp.get_config, never, exp.RULES, argv=["optimizers", "--config.adam.lr=-1"])


def tiny_config(**changes):
    config = exp.get_config()
    config.seeds = 2
    config.epochs = 2
    config.progress = False
    for key, value in changes.items():
        config[key] = value
    return config


def test_a_rate_sweep_is_one_run_with_every_grid_point(tmp_path):
    """--config.sweep='nesterov.lr=0.003,0.03': 2 rates x 2 seeds of Nesterov (evaluated at
    theta, not at the look-ahead) as one program, through the cli. In 2 epochs the larger rate
    gets closer to J* in every seed, and the sweep marks it best (by the training loss: this
    study has no validation split)."""
    argv = ["optimizers", "--config.parts=logreg", "--config.optimizers=nesterov"]
    argv += ["--config.seeds=2", "--config.epochs=2", "--config.progress=false"]
    argv += ["--config.sweep=nesterov.lr=0.003,0.03", f"--workdir={tmp_path}"]
    headline = cli.run(exp.get_config, exp.train_and_evaluate, exp.RULES, argv=argv)
    report = (tmp_path / "report.md").read_text()
    assert "reference: sklearn LogisticRegression" in report and "Sweep of" in report
    figures = headline["logreg_objective"]["nesterov"]
    assert list(figures) == ["nesterov.lr=0.003", "nesterov.lr=0.03"]
    slow, fast = (np.asarray(figure.values) for figure in figures.values())
    assert slow.shape == fast.shape == (2,) and np.isfinite([slow, fast]).all()
    # Above J* (0.1 for lambda = 1e-3), well below log(10), the uniform prediction's loss.
    assert (fast < slow - 0.05).all() and (fast > 0.05).all() and (slow < 0.5 * math.log(10)).all()
    sweeps = json.loads((tmp_path / "results.json").read_text())["sweeps"]
    (where, sweep), *_ = sweeps.items()
    assert where == "logreg_nesterov_lr0.03_m32_e2" and sweep["best"] == 1


@pytest.mark.slow
def test_experiment_end_to_end(tmp_path):
    """Logistic regression with Nesterov (evaluated at theta, not at the look-ahead)."""
    config = tiny_config(parts="logreg", optimizers="nesterov")
    headline = exp.train_and_evaluate(config, tmp_path)
    for name in ("report.md", "logreg.png"):
        assert (tmp_path / name).exists(), name
    assert "reference: sklearn LogisticRegression" in (tmp_path / "report.md").read_text()
    figure = headline["logreg_objective"]["nesterov"]
    optimum, final = figure.reference, np.asarray(figure.values)
    assert figure.source == "scikit-learn LogisticRegression J*"
    assert final.shape == (2,) and np.isfinite(final).all()
    # Above the optimum, and well below log(10), the loss of the uniform prediction.
    assert (final > optimum - 1e-4).all() and (final < 0.5 * math.log(10)).all()
    assert figure.verdict() == "above"  # 2 epochs do not reach J*


@pytest.mark.slow
def test_experiment_end_to_end_both_parts(tmp_path):
    config = tiny_config(optimizers="sgd,momentum,ema_momentum,rmsprop_nesterov")
    headline = exp.train_and_evaluate(config, tmp_path)
    for name in ("logreg", "mlp"):
        assert (tmp_path / f"{name}.png").exists(), name
    report = (tmp_path / "report.md").read_text()
    assert "are one algorithm" in report  # ema_momentum = momentum at these rates
    objective = headline["logreg_objective"]
    np.testing.assert_allclose(
        objective["ema_momentum"].values, objective["momentum"].values, rtol=1e-5
    )
    accuracy = np.asarray(list(headline["mlp_test_accuracy"].values()))
    # MNIST-1D, chance 0.1: every optimizer reaches 0.43 to 0.47 in two epochs.
    assert accuracy.shape == (4, 2) and np.isfinite(accuracy).all()
    assert (accuracy > 0.3).all()
