"""The linear-decay study at a tiny scale."""

import numpy as np

from experiments import lr_decay as exp


def test_experiment_end_to_end(tmp_path):
    config = exp.get_config()
    config.seeds, config.decay_epochs, config.progress = 2, 2, False
    headline = exp.train_and_evaluate(config, tmp_path)
    assert (tmp_path / "decay.png").exists()
    gaps = headline["decay_gap"]
    assert set(gaps) == {"constant", "linear_decay"}
    assert gaps["linear_decay"].reference == gaps["constant"]
    # Two epochs: the decaying rate is still near eps_0 and both runs stay above J*, at
    # J - J* of 0.05 to 0.07, far below the uniform prediction's log(10) - J* = 2.2.
    for gap in (gaps["constant"], gaps["linear_decay"].values):
        assert np.isfinite(gap) and 0 < gap < 0.2
    assert "Measured J - J*: linear decay is" in (tmp_path / "report.md").read_text()
