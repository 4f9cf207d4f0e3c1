"""The batch-size study at a tiny scale."""

import numpy as np
import pytest

from experiments import batch_size as exp
from lexicon import cli


@pytest.mark.slow  # 2,500 one-example steps: about 20 s on an idle machine
def test_experiment_end_to_end(tmp_path):
    config = exp.get_config()
    config.seeds, config.epochs, config.progress = 2, 2, False
    config.noise_draws, config.noise_batches = 16, (1, 16, 256)
    headline = exp.train_and_evaluate(config, tmp_path)
    assert (tmp_path / "batch_size.png").exists()
    report = (tmp_path / "report.md").read_text()
    # Two passes: the stochastic and minibatch runs make many more updates and end closer to
    # J* than the 2 full-batch steps, in every seed (J - J* 0.05 against 1.7).
    assert "minibatch m=32 is lower than full batch" in report
    assert "one example better in 2/2 paired seeds" in report
    noise = headline["noise_ratio"]
    assert np.isfinite(noise.values) and noise.reference == 1.0 and noise.tolerance > 0
    assert abs(noise.values - 1.0) < 0.3  # 16 draws: within sampling error of the 1/m law


def test_noise_batches_larger_than_the_data_stop_before_training():
    with pytest.raises(SystemExit) as stop:
        cli.run(
            exp.get_config,
            lambda config, workdir: None,
            exp.RULES,
            argv=["batch_size", "--config.noise_batches=(1,100000)"],
        )
    assert stop.value.code == 2
