"""The recommender experiment: config rules, the paper preset, the data fallback, and a tiny
run on the synthetic data where NeuMF beats the popularity and item-CF baselines."""

import json

import numpy as np
import pytest

from experiments import recommender as experiment
from lexicon import cli, report
from lexicon.data import DataError, movielens


def tiny_config(**changes):
    config = experiment.get_config()
    config.update(
        dict(
            dataset="synthetic",
            synthetic_users=300,
            synthetic_items=300,
            models="neumf_scratch",
            factor_sizes=(8,),
            seeds=2,
            epochs=5,
            batch_size=256,
            lr=1e-2,
            progress=False,
        )
    )
    config.update(changes)
    return config


def test_bad_input_stops_with_one_line(capsys):
    for flag, word in (
        ("--config.dataset=netflix", "ml-100k"),
        ("--config.models=neumf", "gmf and mlp"),
        ("--config.factors=12", "config.factor_sizes"),
        ("--config.models=svd", "neumf_scratch"),
    ):
        with pytest.raises(SystemExit) as stop:
            cli.run(
                experiment.get_config,
                experiment.train_and_evaluate,
                experiment.RULES,
                ["recommender", "--config.dataset=synthetic", flag],
            )
        assert stop.value.code == 2
        err = capsys.readouterr().err.strip()
        assert word in err and "\n" not in err, err


def test_paper_preset_is_he_et_al():
    config = experiment.get_config()
    config.scale = "paper"
    run = experiment.settings(config)
    assert run.factor_sizes == (8, 16, 32, 64) and run.factors == 64 and run.negatives == 4
    assert run.batch_size * (1 + run.negatives) == 255  # ~256 training instances per step
    assert run.lr == 1e-3 and run.pretrained_optimizer == "sgd" and run.alpha == 0.5
    assert experiment.PUBLISHED == {"hr": 0.730, "ndcg": 0.447}


def test_offline_ml100k_falls_back_to_synthetic(monkeypatch):
    def offline(*args, **kwargs):
        raise DataError("cannot fetch recbole with pip (offline)")

    monkeypatch.setattr(movielens, "ml100k", offline)
    data, note = experiment.load(tiny_config(dataset="ml-100k"))
    assert data.name == "synthetic" and "offline" in note and "synthetic data stood in" in note


def test_tiny_run_neumf_beats_popularity_and_item_cf(tmp_path):
    """Five epochs of NeuMF on 300 synthetic users: its HR@10 beats most-popular and
    item-based CF by more than twice its seed spread and by 0.05 at least."""
    figures = experiment.train_and_evaluate(tiny_config(), tmp_path)
    assert figures["_data"] == "synthetic"
    neumf = np.asarray(figures["neumf_scratch"]["hr@10"].values)
    for rival in ("most_popular", "item_knn"):
        margin = np.asarray(figures[f"neumf_scratch_minus_{rival}_hr"].values)
        np.testing.assert_allclose(margin, neumf - figures[rival]["hr@10"].values)
        assert margin.mean() > max(0.05, 2 * neumf.std()), (rival, margin)
    assert neumf.mean() > 0.45
    # Content from noisy synthetic genres beats chance (0.1) but not collaboration.
    content = np.mean(figures["content"]["hr@10"].values)
    assert 0.1 < content < np.mean(figures["item_knn"]["hr@10"].values)
    text = (tmp_path / "report.md").read_text()
    assert "**synthetic**" in text and "NeuMF (from scratch) is higher than most popular" in text
    for name in ("hr_curves.png", "ndcg_curves.png"):
        assert (tmp_path / name).exists(), name
    records = [
        json.loads(line)
        for line in (tmp_path / "neumf_scratch8" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["epoch"] for r in records] == list(range(1, 6))
    assert "test/hr" in records[-1] and "train/loss" in records[-1]
    assert report.figures_of(figures)["neumf_scratch/hr@10"]["mean"] == pytest.approx(neumf.mean())


@pytest.mark.slow
def test_default_models_on_synthetic(tmp_path):
    """Every model and the sweep (8, 16) on the synthetic data: pretrained NeuMF beats the
    popularity and item-CF baselines; the sweep figure is written."""
    config = tiny_config(models="all", factor_sizes=(8, 16), seeds=3, epochs=8)
    figures = experiment.train_and_evaluate(config, tmp_path)
    for rival in ("most_popular", "item_knn"):
        margin = np.asarray(figures[f"neumf_minus_{rival}_hr"].values)
        assert margin.mean() > 2 * margin.std() and margin.mean() > 0.03
    assert (tmp_path / "factors_sweep.png").exists()
