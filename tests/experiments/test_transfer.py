"""experiments/transfer.py: optimizer groups, frozen layers, verdicts, end to end."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import transfer
from lexicon import data, train
from lexicon import transfer as setting
from lexicon.rules import ConfigError


def small_config(**changes):
    config = transfer.get_config()
    config.seeds, config.label_counts, config.progress = 2, (2, 3), False
    config.update(changes)
    return config


@pytest.fixture(scope="module")
def tasks():
    splits = data.load("digits", seed=0, flatten=False)
    return setting.task_splits(splits, 5)


def stacked_pretrained(config, seeds):
    """Random "pretrained" LeNet-5 params of ``seeds`` replicas, leading seed axis."""
    model = setting.make_model(config, 5)
    keys = jax.random.split(jax.random.key(42), seeds)
    return jax.jit(jax.vmap(lambda k: model.init(k, jnp.zeros((1, 8, 8, 1)))["params"]))(keys)


def test_label_counts_are_checked_before_training(tasks):
    _, target = tasks
    with pytest.raises(ConfigError, match="label_counts"):
        setting.check_counts(small_config(label_counts=(5, 1000)), target.train["y"], 5)
    assert transfer.RULES["frozen"].check("frozen", "conv1,dense9") is not None
    assert transfer.RULES["frozen"].check("frozen", "none") is None


@pytest.mark.slow
def test_experiment_end_to_end(tmp_path):
    config = small_config(epochs=2, target_steps=4, eval_every=2)
    results = transfer.train_and_evaluate(config, tmp_path)
    for name in ("report.md", "accuracy_vs_labels.png", "curves.png", "probes.png"):
        assert (tmp_path / name).exists(), name
    for method in transfer.METHODS:
        accuracy = results["accuracy"][method]
        assert accuracy.shape == (2, 2) and np.all(np.isfinite(accuracy))
    assert set(results["probes"]) == {"pixels", *setting.STAGES}
    assert np.all(results["probes"]["pixels"] > 0.5)
    assert results["transfer_wins"].shape == (2,)
    assert "beats training from scratch" in (tmp_path / "report.md").read_text()


def test_experiment_end_to_end_tiny(tmp_path):
    config = small_config(seeds=1, label_counts=(2,), epochs=2, target_steps=10, eval_every=5)
    results = transfer.train_and_evaluate(config, tmp_path)
    for name in ("report.md", "accuracy_vs_labels.png", "curves.png", "probes.png"):
        assert (tmp_path / name).exists(), name
    for method in transfer.METHODS:
        accuracy = results["accuracy"][method]
        # 5 classes (chance 0.2): observed 0.55 (scratch), 0.64 (features), 0.67 (finetune).
        assert accuracy.shape == (1, 1) and np.isfinite(accuracy[0, 0]) and accuracy[0, 0] > 0.35
        # The replica trains on its own 2 labelled images per class: accuracy in tenths.
        records = train.read_metrics(tmp_path / method)
        assert [r["step"] for r in records] == list(range(1, 11))
        hits = np.asarray([r["train/accuracy"] for r in records]) * 10
        np.testing.assert_allclose(hits, np.round(hits), atol=1e-4)
    assert results["probes"]["pixels"][0, 0] > 0.6  # observed 0.82
    assert "regression on the raw pixels matches or beats" in (tmp_path / "report.md").read_text()
