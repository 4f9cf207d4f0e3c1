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


def test_a_two_key_sweep_gets_a_table_and_a_heat_map_marking_the_best_by_validation(tmp_path):
    points = []
    for i, lr in enumerate((0.1, 1.0)):
        for j, alpha in enumerate((0.5, 0.9, 0.99)):
            val, test = 0.5 + 0.1 * i + 0.01 * j, 0.9 - 0.1 * i  # test would pick lr=0.1
            points.append(
                {
                    "point": {"lr": lr, "alpha": alpha},
                    "metrics": {
                        "val/accuracy": {"mean": val, "std": 0.0, "per_seed": [val, val]},
                        "test/accuracy": {"mean": test, "std": 0.0, "per_seed": [test, test]},
                    },
                }
            )
    summary = {
        "keys": ["lr", "alpha"],
        "axes": {"lr": [0.1, 1.0], "alpha": [0.5, 0.9, 0.99]},
        "shape": [2, 3],
        "seeds": 2,
        "select": {"metric": "val/accuracy", "higher_is_better": True},
        "best": 5,
        "points": points,
    }
    (tmp_path / "sweep.json").write_text(json.dumps(summary))
    report.add_sweeps(tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert "| **1** | **0.99** | **0.6200 ± 0.0000** | **0.8000 ± 0.0000** |" in text
    assert "highest val/accuracy: lr=1, alpha=0.99" in text
    assert (tmp_path / "sweep-grid.png").exists()
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["sweeps"]["."]["best"] == 5


def test_figure_is_one_figure_per_run_or_one_per_grid_point():
    """report.figure: a plain run's final values with its reference and verdict; a sweep's
    values split by grid point (replica g * seeds + s), named by coordinates, no verdict."""
    import types

    from lexicon.report import figure
    from lexicon.train.sweep import Sweep

    values = np.arange(6.0)
    plain = types.SimpleNamespace(sweep=None, final=lambda key: values)
    one = figure(plain, "test/accuracy", reference=2.5, tolerance=0.1)
    assert one.summary()["mean"] == 2.5 and one.verdict() == "matches"
    swept = types.SimpleNamespace(
        sweep=Sweep.grid({"lr": [0.1, 1.0, 10.0]}),
        points=lambda key: values.reshape(3, 2),
    )
    per_point = figure(swept, "test/accuracy", reference=2.5)
    assert list(per_point) == [Sweep.grid({"lr": [0.1, 1.0, 10.0]}).label(g) for g in range(3)]
    assert [f.summary()["per_seed"] for f in per_point.values()] == [[0, 1], [2, 3], [4, 5]]
    assert all(f.verdict() is None for f in per_point.values())
