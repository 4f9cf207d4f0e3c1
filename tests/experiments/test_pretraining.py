"""Greedy supervised pretraining vs end to end, at a tiny scale."""

import numpy as np
import pytest

from experiments import pretraining as exp
from lexicon.rules import ConfigError


def test_experiment_end_to_end(tmp_path):
    """Four sigmoid layers, plain SGD: the greedy stages each train a one-layer problem and
    learn; end to end, the same steps through the saturating stack leave the net near chance
    (1/10) on the same seeds, so the paired verdict holds."""
    config = exp.get_config()
    config.seeds, config.progress, config.mlp_reference, config.batch_size = 2, False, False, 8
    config.hidden, config.layer_epochs, config.fine_tune_epochs = (32, 32, 32, 32), 2, 2
    headline = exp.train_and_evaluate(config, tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert (tmp_path / "curves.png").exists() and "| layer_4 |" in report
    greedy = np.asarray(headline["test_accuracy"]["greedy"].values)
    end_to_end = np.asarray(headline["test_accuracy"]["end_to_end"].values)
    assert greedy.shape == end_to_end.shape == (2,)
    assert (greedy > 0.4).all() and (end_to_end < 0.25).all(), (greedy, end_to_end)
    assert headline["verdicts"]["test accuracy"] == "holds"
    assert headline["greedy_vs_end_to_end"].verdict() == "above"


def test_batch_larger_than_the_split_is_refused():
    config = exp.get_config()
    config.batch_size = 2000
    with pytest.raises(ConfigError, match="exceeds the 1258"):
        exp.check_config(config)
