"""The sparsity study: the weights the L1 variants leave, end to end at a tiny scale."""

import json

import numpy as np
import pytest

from experiments import sparsity
from lexicon import cli

TINY = ["--config.seeds=2", "--config.hidden=(32,)", "--config.lr=0.3", "--config.epochs=10"]
TINY += ["--config.train_size=64", "--config.batch_size=8", "--config.progress=false"]


def run_tiny(tmp_path, methods):
    config = sparsity.get_config()
    config.update(epochs=10, seeds=2, progress=False, hidden=(32,), lr=0.3, train_size=64)
    config.update(batch_size=8, methods=methods)
    results = sparsity.train_and_evaluate(config, tmp_path)
    assert (tmp_path / "report.md").exists() and (tmp_path / "weights.png").exists()
    assert "w = 0" in (tmp_path / "report.md").read_text()
    return results


def test_an_l1_alpha_sweep_is_one_run_and_a_larger_alpha_zeroes_more_weights(tmp_path):
    """--config.sweep='l1_alpha=0.0001,0.01': 2 penalty weights x 2 seeds as one program. The
    stronger soft threshold leaves far more exact zeros, and the sweep picks the weaker one by
    validation accuracy (the stronger one underfits)."""
    argv = ["sparsity", "--config.sweep=l1_alpha=0.0001,0.01", *TINY]
    argv += ["--config.methods=l1_proximal", f"--workdir={tmp_path}"]
    cli.run(sparsity.get_config, sparsity.train_and_evaluate, sparsity.RULES, argv=argv)
    saved = json.loads((tmp_path / "results.json").read_text())
    zeros = {k: v["per_seed"] for k, v in saved["figures"].items() if k.startswith("zero_")}
    weak, strong = (zeros[f"zero_weights/l1_proximal/l1_alpha={a}"] for a in ("0.0001", "0.01"))
    assert max(weak) < 0.05 and min(strong) > 0.3, (weak, strong)  # observed 0.005, 0.595
    sweep = saved["sweeps"]["l1_proximal"]
    assert [p["point"] for p in sweep["points"]] == [{"l1_alpha": 0.0001}, {"l1_alpha": 0.01}]
    assert sweep["select"]["metric"] == "val/accuracy" and sweep["best"] == 0
    assert "alpha = swept" in (tmp_path / "report.md").read_text()


@pytest.mark.slow
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
