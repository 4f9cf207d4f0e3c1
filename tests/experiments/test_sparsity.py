"""The sparsity study: the weights the L1 variants leave, end to end at a tiny scale."""

import numpy as np

from experiments import sparsity


def test_only_the_proximal_step_leaves_exact_zeros(tmp_path):
    config = sparsity.get_config()
    config.update(epochs=10, seeds=2, progress=False, hidden=(32,), lr=0.3, train_size=64)
    config.update(batch_size=8, methods="l1,l1_proximal")
    results = sparsity.train_and_evaluate(config, tmp_path)
    assert (tmp_path / "report.md").exists() and (tmp_path / "weights.png").exists()
    zeros = results["zero_weights"]
    assert set(zeros) == {"l1", "l1_proximal"}
    assert zeros["l1"].max() == 0  # subgradient steps only oscillate around 0
    assert zeros["l1_proximal"].min() > 0.01  # soft thresholding sets weights to exactly 0
    near = results["near_zero_weights"]
    assert np.all(near["l1_proximal"] >= zeros["l1_proximal"])
    assert "w = 0" in (tmp_path / "report.md").read_text()
