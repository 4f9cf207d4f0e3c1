"""The exact constructions study end to end: its table, its figure, its headline figures."""

import numpy as np

from experiments import sawtooth


def test_constructions_are_exact_and_deep_grows_linearly(tmp_path):
    config = sawtooth.get_config()
    config.max_k = 6
    results = sawtooth.train_and_evaluate(config, tmp_path)
    assert (tmp_path / "report.md").exists() and (tmp_path / "sizes.png").exists()
    assert results["largest_error"] < 1e-12
    k = np.arange(1, 7)
    np.testing.assert_array_equal(results["deep_params"], 6 * k + 1)
    np.testing.assert_array_equal(results["shallow_params"], 3 * 2**k + 1)
