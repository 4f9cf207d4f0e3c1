"""The embeddings experiment: config rules, and tiny and default runs end to end."""

import json

import numpy as np
import pytest

from experiments import embeddings as experiment
from lexicon import cli


def tiny_config(**changes):
    config = experiment.get_config()
    config.update(
        dict(
            seeds=2,
            epochs=1,
            dim=10,
            models="skipgram",
            corpus="lee",
            synthetic_sentences=3000,
            synthetic_dim=16,
            synthetic_epochs=3,
            baskets=600,
            item_dim=8,
            item_epochs=2,
            batch_size=512,
            workers=1,
            progress=False,
        )
    )
    config.update(changes)
    return config


def test_bad_input_stops_with_one_line(capsys):
    for flag, word in (
        ("--config.corpus=gutenberg", "shakespeare"),
        ("--config.models=glove", "skipgram"),
        ("--config.parts=table,poems", "synthetic"),
        ("--config.synthetic_objective=hierarchical", "softmax"),
        ("--config.min_alpha=0.5", "exceeds alpha"),
    ):
        with pytest.raises(SystemExit) as stop:
            cli.run(
                experiment.get_config,
                experiment.train_and_evaluate,
                experiment.RULES,
                ["embeddings", flag],
            )
        assert stop.value.code == 2
        err = capsys.readouterr().err.strip()
        assert word in err and "\n" not in err, err


def test_tiny_run(tmp_path):
    """Three epochs on 3,000 synthetic sentences: skip-gram answers the factor analogies far
    above chance (1 in 90 candidates) and king - man + woman = queen for every seed; the
    documents' table holds the analogy exactly and one-hot codes tie; item2vec neighbours
    share their category well above chance; one epoch on the Lee corpus beside gensim."""
    figures = experiment.train_and_evaluate(tiny_config(), tmp_path)
    table = figures["table"]
    assert table["table_king_man_woman_error"].values == 0
    assert table["onehot_tied_answers"].values == 6
    synthetic = figures["synthetic"]["skipgram"]
    assert np.all(np.asarray(synthetic["analogy_accuracy"].values) > 0.6)
    assert np.all(np.asarray(synthetic["king_man_woman_queen"].values) == 1)
    assert np.all(np.asarray(figures["items"]["neighbour_precision"].values) > 0.6)
    lee = figures["lee"]["skipgram"]
    assert set(lee) == {"ours", "gensim", "ours_vs_gensim"}
    text = (tmp_path / "report.md").read_text()
    assert "answered / skipped" in text and "ours - gensim" in text
    for name in ("dense_cosines.png", "onehot_cosines.png", "nine_words_gender_royalty.png"):
        assert (tmp_path / name).exists(), name
    records = (tmp_path / "synthetic_skipgram" / "metrics.jsonl").read_text().splitlines()
    accuracy = [json.loads(r)["analogies/accuracy"] for r in records]
    assert len(accuracy) == 3


@pytest.mark.slow
def test_default_synthetic_and_items(tmp_path):
    """The acceptance run on the synthetic corpus: skip-gram >= 90% analogy accuracy and
    king - man + woman = queen over 3 seeds."""
    config = experiment.get_config()
    config.update(parts="table,synthetic,items", progress=False)
    figures = experiment.train_and_evaluate(config, tmp_path)
    skipgram = figures["synthetic"]["skipgram"]
    assert np.all(np.asarray(skipgram["analogy_accuracy"].values) >= 0.9)
    assert np.all(np.asarray(skipgram["king_man_woman_queen"].values) == 1)
    assert np.all(np.asarray(figures["items"]["neighbour_precision"].values) > 0.9)
