"""lexicon.sweeping: per-replica figures, tiled states, the report's note and unswept configs,
each the identity of a plain run."""

import numpy as np

from lexicon import sweeping, train
from lexicon.report import Figure, Report


def config_of(sweep: str = "", seeds: int = 2):
    config = train.defaults()
    config.seeds = seeds
    config.sweep = sweep
    return config


def test_without_a_sweep_every_helper_is_the_plain_run(tmp_path):
    config = config_of()
    values = np.array([0.5, 0.7])
    assert sweeping.figure(config, values, 0.6, "a source") == Figure(values, 0.6, "a source")
    assert sweeping.replicas(config) == 2
    tree = {"w": np.ones((2, 3))}
    assert sweeping.tile(config, tree) is tree
    assert sweeping.without(config) is config
    report = Report(tmp_path, "title")
    sweeping.note(report, config)
    assert report.parts == ["# title\n"]


def test_a_sweep_gives_one_figure_per_grid_point_in_replica_order(tmp_path):
    config = config_of("lr=0.1,1;alpha=0.5", seeds=2)
    values = np.arange(4.0)  # replica g * seeds + s
    figures = sweeping.figure(config, values, 1.0, "ignored at a grid point")
    assert list(figures) == ["lr=0.1, alpha=0.5", "lr=1, alpha=0.5"]
    np.testing.assert_array_equal(figures["lr=1, alpha=0.5"].values, [2.0, 3.0])
    assert figures["lr=0.1, alpha=0.5"].reference is None
    result = train.Result(
        state=None, history=[], step_metrics=[], sweep=train.Sweep.grid({"k": [1, 2]})
    )
    assert list(sweeping.figure(result, values)) == ["k=1", "k=2"]
    assert sweeping.replicas(config) == 4
    tiled = sweeping.tile(config, {"w": np.array([[1.0], [2.0]])})
    np.testing.assert_array_equal(tiled["w"][:, 0], [1.0, 2.0, 1.0, 2.0])
    plain = sweeping.without(config)
    assert plain.sweep == "" and config.sweep and plain.seeds == 2
    report = Report(tmp_path, "title")
    sweeping.note(report, config)
    assert "sweep over lr, alpha" in report.parts[-1]
