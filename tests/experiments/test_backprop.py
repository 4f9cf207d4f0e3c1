"""The hand-written delta rules against jax.grad, and the experiment end to end."""

import json

import jax
import numpy as np
import pytest
from support import run_python

from lexicon.nn import units


@pytest.mark.parametrize("sizes", [(5, 3), (64, 32, 10), (7, 11, 6, 4), (3, 8, 8, 8, 2)])
def test_delta_rules_equal_jax_grad(sizes):
    kp, kx, kt = jax.random.split(jax.random.key(len(sizes)), 3)
    params = units.init_params(kp, sizes)
    x = jax.random.normal(kx, (17, sizes[0]))
    t = jax.random.uniform(kt, (17, sizes[-1]))
    hand = jax.jit(units.backprop_gradient)(params, x, t)
    auto = jax.jit(jax.grad(units.squared_error))(params, x, t)
    for h, a in zip(jax.tree.leaves(hand), jax.tree.leaves(auto)):
        np.testing.assert_allclose(h, a, atol=1e-6, rtol=1e-5)


def test_output_delta_is_the_documents_formula():
    """delta_k = o_k (1 - o_k)(t_k - o_k) and delta_h = o_h (1 - o_h) sum_k w_hk delta_k."""
    rng = np.random.default_rng(0)
    w1, w2 = rng.normal(size=(4, 3)), rng.normal(size=(3, 2))
    x, t = rng.normal(size=(1, 4)), rng.uniform(size=(1, 2))
    params = [{"w": w1, "b": np.zeros(3)}, {"w": w2, "b": np.zeros(2)}]
    o_h = 1 / (1 + np.exp(-(x @ w1)))
    o_k = 1 / (1 + np.exp(-(o_h @ w2)))
    delta_k = o_k * (1 - o_k) * (t - o_k)
    delta_h = np.array(
        [
            [
                o_h[0, h] * (1 - o_h[0, h]) * sum(w2[h, k] * delta_k[0, k] for k in range(2))
                for h in range(3)
            ]
        ]
    )
    outputs = units.forward(jax.tree.map(np.float32, params), x.astype(np.float32))
    deltas = units.backprop_deltas(jax.tree.map(np.float32, params), outputs, t)
    np.testing.assert_allclose(deltas[1], delta_k, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(deltas[0], delta_h, rtol=1e-5, atol=1e-6)


def test_experiment_end_to_end(tmp_path):
    """The README's first command at a tiny scale: results printed, report and plots written."""
    result = run_python(
        [
            "-m",
            "experiments.backprop",
            "--config.epochs=3",
            "--config.seeds=2",
            "--config.progress=false",
            "--config.reference=false",
            f"--workdir={tmp_path}",
        ]
    )
    assert result.returncode == 0, result.stderr
    assert "test_accuracy" in result.stdout and "max_grad_diff" in result.stdout
    for name in ("report.md", "curves.png", "metrics.jsonl", "manifest.json"):
        assert (tmp_path / name).exists(), name
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["config"]["seeds"] == 2 and manifest["versions"]["jax"]
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert len(records[-1]["test/accuracy"]) == 2
    assert np.mean(records[-1]["test/accuracy"]) > 0.5


def test_a_learning_rate_sweep_is_one_run_with_every_grid_point(tmp_path):
    """--config.sweep='lr=0.1,1': 2 rates x 2 seeds as one program. After 2 epochs the delta
    rule at alpha = 1 is well above chance and above alpha = 0.1, and the sweep picks it by
    validation."""
    result = run_python(
        [
            "-m",
            "experiments.backprop",
            "--config.sweep=lr=0.1,1",
            "--config.epochs=2",
            "--config.seeds=2",
            "--config.progress=false",
            "--config.reference=false",
            f"--workdir={tmp_path}",
        ]
    )
    assert result.returncode == 0, result.stderr
    sweep = json.loads((tmp_path / "results.json").read_text())["sweeps"]["."]
    assert [p["point"] for p in sweep["points"]] == [{"lr": 0.1}, {"lr": 1.0}]
    slow, fast = (p["metrics"]["test/accuracy"]["mean"] for p in sweep["points"])
    assert fast > 0.5 and fast > slow + 0.1, (slow, fast)
    assert sweep["best"] == 1
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(records[-1]["test/accuracy"]) == 4
