"""The ring experiment: variants, rules, and a tiny end-to-end run."""

import numpy as np
import pytest

from experiments import gan_ring as experiment
from lexicon import cli


def test_bad_input_stops_with_one_line(capsys):
    for flag, word in (
        ("--config.variants=packing", "packing"),
        ("--config.snapshots=3", "snapshots"),
        ("--config.prior=cauchy", "uniform"),
    ):
        with pytest.raises(SystemExit) as stop:
            cli.run(
                experiment.get_config,
                experiment.train_and_evaluate,
                experiment.RULES,
                ["gan_ring", flag],
            )
        assert stop.value.code == 2
        err = capsys.readouterr().err.strip()
        assert word in err and "\n" not in err, err


def test_each_variant_changes_one_thing():
    config = experiment.get_config()
    base = experiment.variant_settings(config, experiment.BASE)
    assert base == dict(
        objective="non_saturating",
        optimizer="adam",
        lr=config.lr,
        batch_size=config.batch_size,
        r1=0.0,
        r1_end=None,
        prior="uniform",
        spectral=False,
        unroll=0,
    )
    for name in experiment.VARIANTS:
        changed = {k for k, v in experiment.variant_settings(config, name).items() if base[k] != v}
        expected = {"non_saturating": 0, "sgd": 2, "r1_big_batch": 2, "best": 4}.get(name, 1)
        assert len(changed) == expected, (name, changed)
    best = experiment.variant_settings(config, experiment.BEST)
    model, _ = experiment.make_task(config, best)
    rounds = config.epochs * config.steps_per_epoch
    assert model.prior == "normal" and model.r1(0) == config.r1
    np.testing.assert_allclose(model.r1(rounds), config.r1_end, rtol=1e-6)
    model, _ = experiment.make_task(config, experiment.variant_settings(config, "spectral"))
    assert model.discriminator.spectral and not model.r1 and not model.unroll
    model, _ = experiment.make_task(config, experiment.variant_settings(config, "unrolled"))
    assert model.unroll == config.unroll and not model.discriminator.spectral
    assert config.prior == "uniform"
    paper = config.copy_and_resolve_references()
    paper.scale = "paper"
    run = experiment.settings(paper)
    assert run.batch_size == 512 and run.latent_dim == 256 and run.lr == 1e-4


def test_tiny_run(tmp_path):
    """The R1 variant, 2 seeds, 300 rounds: the samples move out from near the origin (mean
    distance to the nearest mode about 2 at the start) towards the ring, below 1.2 in every
    seed."""
    config = experiment.get_config()
    config.update(
        dict(
            seeds=2,
            epochs=2,
            steps_per_epoch=150,
            snapshots=2,
            eval_every=1,
            variants="r1",
            eval_samples=500,
            progress=False,
        )
    )
    figures = experiment.train_and_evaluate(config, tmp_path)
    distance = np.asarray(figures["r1"]["distance"].values)
    assert distance.shape == (2,) and np.all(distance < 1.2), distance
    text = (tmp_path / "report.md").read_text()
    assert "VEEGAN" in text and "unrolled GAN" in text
    for name in ("modes.png", "quality.png", "samples.png"):
        assert (tmp_path / name).exists()


@pytest.mark.slow
def test_default_run_meets_acceptance(tmp_path):
    """The best variant at the default scale: >= 7 of 8 modes, >= 80% high quality."""
    config = experiment.get_config()
    config.progress = False
    config.variants = experiment.BEST
    figures = experiment.train_and_evaluate(config, tmp_path)
    assert figures[experiment.BEST]["modes"].verdict() == "holds"
    assert figures[experiment.BEST]["high_quality"].verdict() == "holds"
