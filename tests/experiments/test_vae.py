"""The VAE experiment: config rules, data, the paper schedule, and runs end to end."""

import json

import numpy as np
import pytest

from experiments import vae as experiment
from lexicon import cli


def tiny_config(**changes):
    config = experiment.get_config()
    config.update(
        dict(
            seeds=2,
            epochs=3,
            hidden=(64,),
            latent_sizes=(2,),
            eval_samples=50,
            lattice=4,
            samples=10,
            progress=False,
        )
    )
    config.update(changes)
    return config


def test_bad_input_stops_with_one_line(capsys):
    for flag, word in (
        ("--config.binarize=sometimes", "threshold"),
        ("--config.likelihood=gaussian", "binarize=none"),
        ("--config.latent_sizes=(0,)", "latent_sizes"),
    ):
        with pytest.raises(SystemExit) as stop:
            cli.run(
                experiment.get_config,
                experiment.train_and_evaluate,
                experiment.RULES,
                ["vae", flag],
            )
        assert stop.value.code == 2
        err = capsys.readouterr().err.strip()
        assert word in err and "\n" not in err, err


def test_paper_preset_is_burda_et_al():
    config = experiment.get_config()
    config.scale = "paper"
    run = experiment.settings(config)
    assert run.epochs == 3280 and run.batch_size == 20 and run.hidden == (200, 200)
    assert 50 in run.latent_sizes and run.binarize == "dynamic" and run.eval_samples == 5000
    # Stage i lasts 3^i epochs at 1e-3 * 10^(-i/7).
    lr = experiment.learning_rate(run, steps_per_epoch=10)
    starts = np.cumsum([0] + [3**i for i in range(8)])[:-1] * 10
    for i, start in enumerate(starts):
        for step in (start, start + 3**i * 10 - 1):
            np.testing.assert_allclose(float(lr(step)), 1e-3 * 10 ** (-i / 7), rtol=1e-5)


def test_binarizations():
    config = tiny_config(dataset="digits")
    threshold, same = experiment.load_splits(config)
    assert threshold is same and set(np.unique(threshold.train["x"])) == {0.0, 1.0}
    config.binarize = "dynamic"
    grey, fixed = experiment.load_splits(config)
    assert len(np.unique(grey.train["x"])) > 2  # drawn afresh at every step
    assert set(np.unique(fixed.test["x"])) == {0.0, 1.0}
    np.testing.assert_array_equal(fixed.test["x"], experiment.load_splits(config)[1].test["x"])


def test_tiny_run_on_binarized_mnist5k(tmp_path):
    """Three epochs of a small VAE on mnist5k: no NaN, the test ELBO rises by more than 20 nats
    over its first-epoch value for every seed, and -log p(x) (IS) lies below the -ELBO."""
    figures = experiment.train_and_evaluate(tiny_config(), tmp_path)
    z2 = figures["z2"]
    gain = np.asarray(z2["test_elbo_gain"].values)
    assert np.all(gain > 20), gain
    neg_elbo, neg_log_px = (np.asarray(z2[k].values) for k in ("test_neg_elbo", "test_neg_log_px"))
    assert np.all(np.isfinite(neg_elbo)) and np.all(neg_log_px < neg_elbo), (neg_log_px, neg_elbo)
    assert np.all(neg_elbo < 250)  # well below the 543 nats of p = 1/2 for every pixel
    for name in ("report.md", "elbo_z2.png", "prior_samples.png", "reconstructions.png"):
        assert (tmp_path / name).exists(), name
    for name in ("manifold.png", "latent_means.png"):
        assert (tmp_path / name).exists(), name
    records = [
        json.loads(line) for line in (tmp_path / "z2" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert "Burda et al. 2016" in (tmp_path / "report.md").read_text()


@pytest.mark.slow
def test_default_run(tmp_path):
    """The default run (3 seeds, latent sizes 2, 10 and 20, 30 epochs): the test ELBO rises over
    training for every seed and size, the bound ordering holds, samples and figures exist."""
    config = experiment.get_config()
    config.progress = False
    figures = experiment.train_and_evaluate(config, tmp_path)
    for latent in (2, 10, 20):
        f = figures[f"z{latent}"]
        assert np.all(np.asarray(f["test_elbo_gain"].values) > 30)
        neg_elbo = np.asarray(f["test_neg_elbo"].values)
        neg_log_px = np.asarray(f["test_neg_log_px"].values)
        assert np.all(neg_log_px < neg_elbo)
    # More latent units than 2 buy a better model.
    assert np.mean(figures["z20"]["test_neg_log_px"].values) < np.mean(
        figures["z2"]["test_neg_log_px"].values
    )
    assert np.mean(figures["z20"]["test_neg_log_px"].values) < 110
