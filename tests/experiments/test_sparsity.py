"""The sparsity study: the weights the L1 variants leave, end to end at a tiny scale."""

import numpy as np
import pytest

from experiments import sparsity


def run_tiny(tmp_path, methods):
    config = sparsity.get_config()
    config.update(epochs=10, seeds=2, progress=False, hidden=(32,), lr=0.3, train_size=64)
    config.update(batch_size=8, methods=methods)
    results = sparsity.train_and_evaluate(config, tmp_path)
    assert (tmp_path / "report.md").exists() and (tmp_path / "weights.png").exists()
    assert "w = 0" in (tmp_path / "report.md").read_text()
    return results


def test_the_proximal_step_leaves_exact_zeros(tmp_path):
    results = run_tiny(tmp_path, "none,l1_proximal")  # 'none' is the regularization test's run
    zeros = results["zero_weights"]
    assert set(zeros) == {"l1_proximal"}
    assert zeros["l1_proximal"].min() > 0.01  # observed 0.055 and 0.049
    near = results["near_zero_weights"]
    assert np.all(near["l1_proximal"] >= zeros["l1_proximal"])
    assert np.all(near["none"] < near["l1_proximal"])


@pytest.mark.slow
def test_subgradient_steps_leave_no_exact_zero(tmp_path):
    zeros = run_tiny(tmp_path, "l1,l1_proximal")["zero_weights"]
    assert zeros["l1"].max() == 0  # subgradient steps only oscillate around 0
    assert zeros["l1_proximal"].min() > 0.01
