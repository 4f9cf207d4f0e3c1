"""lexicon.report: tables with mean ± std, curves, the default report and the index."""

import json

import numpy as np

from lexicon import report


def test_mean_std_and_table():
    assert report.mean_std([1.0, 3.0]) == "2.0000 ± 1.0000"
    assert report.mean_std([0.5]) == "0.5000"
    table = report.markdown_table(["a", "b"], [(1, 2)])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| 1 | 2 |"]


def test_report_from_metrics_and_index(tmp_path):
    run = tmp_path / "topic"
    run.mkdir()
    records = [
        {
            "epoch": e,
            "step": 10 * e,
            "train/loss": [1 / e, 2 / e],
            "val/accuracy": [0.5 + e / 10, 0.4 + e / 10],
        }
        for e in (1, 2, 3)
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    path = report.from_metrics(run, "A topic")
    text = path.read_text()
    assert text.startswith("# A topic")
    assert f"| val/accuracy | {np.mean([0.8, 0.7]):.4f} ± 0.0500 |" in text
    assert (run / "curves.png").stat().st_size > 1000
    index = report.index(tmp_path).read_text()
    assert "## [A topic](topic/report.md)" in index and "](topic/curves.png)" in index
