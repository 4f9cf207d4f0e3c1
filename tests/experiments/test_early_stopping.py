"""The early-stopping study: the patience rule replayed on a recorded run, end to end."""

import numpy as np

from experiments import early_stopping
from lexicon import train


def test_best_epoch_is_the_best_validation_loss_before_the_stop(tmp_path):
    config = early_stopping.get_config()
    config.update(epochs=10, seeds=2, progress=False, hidden=(32,), lr=0.3, train_size=64)
    config.update(batch_size=8, methods="none", patience=3)
    results = early_stopping.train_and_evaluate(config, tmp_path)
    for name in ("report.md", "curves_accuracy.png", "curves_loss.png"):
        assert (tmp_path / name).exists(), name
    best, stop = results["best_epoch"]["none"], results["stop_epoch"]["none"]
    val = np.array([r["val/loss"] for r in train.read_metrics(tmp_path / "none")])
    for seed in range(2):
        assert 1 <= best[seed] <= stop[seed] <= 10
        seen = val[: stop[seed], seed]
        assert best[seed] == np.argmin(seen) + 1  # the lowest validation loss up to the stop
