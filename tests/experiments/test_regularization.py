"""The regularization experiment: the paired verdicts, and every method end to end."""

import numpy as np
import pytest

from experiments import regularization as reg
from lexicon import regularized


def test_gap_verdicts_are_paired_comparisons():
    base = {"accuracy gap": np.array([0.10, 0.12, 0.11]), "loss gap": np.ones(3)}
    base["test accuracy"] = np.array([0.8, 0.7, 0.75])
    closed = {k: v - np.array([0.05, 0.06, 0.04]) for k, v in base.items()}
    judged = reg.verdicts(["none", "a"], {"none": base, "a": closed})
    assert judged["accuracy gap"]["a"].holds and judged["loss gap"]["a"].holds
    assert judged["test accuracy"]["a"].verdict == "reversed"
    assert judged["accuracy gap"]["a"].sentence.startswith("a is lower than none")


def run_tiny(tmp_path, methods, epochs=10):
    config = reg.get_config()
    config.update(
        epochs=epochs,
        seeds=2,
        progress=False,
        hidden=(32,),
        lr=0.3,
        train_size=64,
        batch_size=8,
        methods=methods,
        combined="l1_proximal,dropout,augmentation,early_stopping",
        patience=3,
    )
    return reg.train_and_evaluate(config, tmp_path), config


def test_experiment_end_to_end(tmp_path):
    """One training run: 'none', and early stopping replayed on that same run."""
    results, _ = run_tiny(tmp_path, "none,early_stopping")
    for name in ("report.md", "gaps.png"):
        assert (tmp_path / name).exists(), name
    assert not (tmp_path / "early_stopping").exists()  # no second training run
    report = (tmp_path / "report.md").read_text()
    assert "scikit-learn" in report and "methods close the accuracy gap" in report
    for method in ("none", "early_stopping"):
        assert values_of(results["test_accuracy"][method]).shape == (2,)
        assert np.all(values_of(results["test_accuracy"][method]) > 0.4)
        assert np.all(np.abs(values_of(results["accuracy_gap"][method])) < 0.7)
        assert np.all(np.isfinite(values_of(results["loss_gap"][method])))
    # Every method is held against 'none' by the report's rule: 'below' a gap = closes it.
    for name in ("accuracy gap", "loss gap"):
        figures = results[name.replace(" ", "_")]
        figure = figures["early_stopping"]
        assert figure.reference == pytest.approx(values_of(figures["none"]).mean())
        closes = f"- {name}: early_stopping is lower than none" in report
        assert (figure.verdict() == "below") == closes, name
    assert 1 <= results["best_epoch"]["early_stopping"].min() <= 10
    sklearn = results["test_accuracy"]["none"]
    assert "scikit-learn" in sklearn.source and sklearn.reference > 0.3


@pytest.mark.slow
def test_every_method_end_to_end(tmp_path):
    results, _ = run_tiny(tmp_path, "all")
    assert set(results["accuracy_gap"]) == set(regularized.METHODS)
    for values in results["test_accuracy"].values():
        values = values_of(values)
        assert np.all(np.isfinite(values)) and values.min() > 0.2
    assert 1 <= results["best_epoch"]["combined"].min() <= 10


def values_of(figure):
    """A figure's per-seed values, whether it carries a reference or not."""
    return np.asarray(getattr(figure, "values", figure))
