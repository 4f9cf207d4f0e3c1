"""Sweeps: a grid of config values x seeds as one program (lexicon.train.sweep)."""

import json

import jax
import numpy as np
import optax
import pytest
from train_tasks import config as small_config
from train_tasks import least_squares, regression_data

from lexicon import train
from lexicon.rules import ConfigError, positive
from lexicon.train import sweep as sweeps

LRS = (0.01, 0.03, 0.1, 0.3)
EVAL = {"val": regression_data(seed=1), "test": regression_data(seed=2)}


def build(config):
    """The task builder: the learning rate is read from the config (traced in a sweep)."""
    return least_squares(optax.sgd(config.lr))


def config(**overrides):
    cfg = small_config(seeds=3, epochs=2)
    cfg.lr = 0.05
    cfg.update(overrides)
    return cfg


def test_parse_a_grid_and_refuse_what_cannot_be_swept():
    sweep = sweeps.parse(" lr=0.1,1e-2 ; alpha=0.5,0.9,1")
    assert sweep.keys == ("lr", "alpha") and sweep.shape == (2, 3) and sweep.size == 6
    assert sweep.point(1) == {"lr": 0.1, "alpha": 0.9}  # the first key varies slowest
    assert sweep.replica_values(2)["lr"].tolist() == [np.float32(0.1)] * 6 + [np.float32(0.01)] * 6
    assert sweep.coordinates(2, 5)["seed"][:4] == [5, 6, 5, 6]
    assert sweeps.parse("") is None
    for text, words in [
        ("lr", "is not key=value"),
        ("lr=0.1;lr=1", "twice"),
        ("lr=a", "is not a number"),
        ("lr=1e39", "finite float32"),
    ]:
        with pytest.raises(ConfigError, match=words):
            sweeps.parse(text)
    cfg = config()
    with pytest.raises(ConfigError, match="epochs cannot be swept .* Sweepable keys here: lr"):
        sweeps.check(sweeps.parse("epochs=1,2"), cfg, ("lr",))
    with pytest.raises(ConfigError, match="sweep_memory cannot be swept"):
        sweeps.check(sweeps.parse("sweep_memory=1,2"), cfg, ("lr",))
    with pytest.raises(ConfigError, match="'lrr', which is not a config key"):
        sweeps.check(sweeps.parse("lrr=1"), cfg, ("lr",))
    with pytest.raises(ConfigError, match=r"config.sweep: config.lr=-1.0 is out of range"):
        sweeps.check(sweeps.parse("lr=0.1,-1"), cfg, ("lr",), {"lr": positive()})
    # The best point is chosen on validation, never on test.
    assert sweeps.selection(["test/accuracy", "val/loss", "train/loss"]) == ("val/loss", False)
    assert sweeps.selection(["test/accuracy", "train/loss"]) == ("train/loss", False)
    # config.sweep_select names the metric (and its direction) where the run records it.
    recorded = ["greedy/return", "val/loss", "train/loss"]
    assert sweeps.selection(recorded, "greedy/return:max") == ("greedy/return", True)
    assert sweeps.selection(recorded, "greedy/return:min") == ("greedy/return", False)
    assert sweeps.selection(recorded, "train/loss") == ("train/loss", False)
    assert sweeps.selection(recorded, "eval/return") == ("val/loss", False)  # not recorded
    for bad, words in (("test/accuracy", "never chosen on a test metric"), ("a:up", "metric:max")):
        with pytest.raises(ConfigError, match=words):
            sweeps.parse_select(bad)


def sweep_of_4_rates(tmp_path):
    return train.fit(
        config(sweep="lr=" + ",".join(map(str, LRS))),
        build,
        regression_data(),
        tmp_path / "sweep",
        eval_splits=EVAL,
    )


def assert_replica_equals(swept, replica, alone, index):
    for record, single in zip(swept.history, alone.history, strict=True):
        for key in ("train/loss", "train/noise", "val/loss", "test/loss"):
            assert record[key][replica] == single[key][index], (replica, key)
    for a, b in zip(jax.tree.leaves(swept.state), jax.tree.leaves(alone.state)):
        np.testing.assert_array_equal(np.asarray(a)[replica], np.asarray(b)[index])


@pytest.mark.slow
def test_a_sweep_of_4_rates_x_3_seeds_equals_the_12_separate_runs(tmp_path):
    """Bitwise: replica (g, s) draws the streams of seed s, and the traced learning rate
    rounds as the constant one does. (On nets whose step is a batched matmul, XLA:CPU's dot
    rounds differently with the number of replicas, so there vmapped seeds and sweeps match
    separate runs to float rounding; see test_loop's vmapped-seeds test.)"""
    swept = sweep_of_4_rates(tmp_path)
    for g, lr in enumerate(LRS):
        for s in range(3):
            cfg = config(lr=lr, seeds=1, seed=s)
            alone = train.fit(
                cfg, build, regression_data(), tmp_path / f"{g}-{s}", eval_splits=EVAL
            )
            assert_replica_equals(swept, g * 3 + s, alone, 0)


def test_a_sweep_of_4_rates_x_3_seeds_equals_a_run_per_rate(tmp_path):
    """Every grid point of the sweep, bitwise, against the plain run of its rate (3 vmapped
    seeds, which equal separate runs: test_loop); the slow test above checks the 12 runs.
    Also what the sweep writes: coordinates in metrics.jsonl, sweep.json."""
    swept = sweep_of_4_rates(tmp_path)
    assert swept.points("val/loss").shape == (4, 3)
    for g, lr in enumerate(LRS):
        alone = train.fit(
            config(lr=lr),
            build(config(lr=lr)),
            regression_data(),
            tmp_path / f"{g}",
            eval_splits=EVAL,
        )
        for s in range(3):
            assert_replica_equals(swept, g * 3 + s, alone, s)
    # metrics.jsonl carries the grid coordinates of every replica.
    record = train.read_metrics(tmp_path / "sweep")[-1]
    assert record["grid"]["lr"] == [lr for lr in LRS for _ in range(3)]
    assert record["grid"]["seed"] == [0, 1, 2] * 4
    # sweep.json: every grid point with mean and std over seeds, the best by validation.
    summary = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert summary["select"] == {"metric": "val/loss", "higher_is_better": False}
    val = swept.points("val/loss")
    assert summary["best"] == int(np.argmin(val.mean(axis=1)))
    point = summary["points"][1]
    assert point["point"] == {"lr": 0.03}
    assert point["metrics"]["val/loss"]["mean"] == pytest.approx(val[1].mean())
    assert point["metrics"]["val/loss"]["std"] == pytest.approx(val[1].std())


def test_a_grid_too_large_runs_in_chunks_with_one_notice(tmp_path):
    """A memory budget below the estimate cuts the grid into chunks of whole grid points,
    run in turn; the merged run equals the sweep in one program."""
    lines = []
    cfg = config(sweep="lr=0.01,0.3", sweep_memory=1e-4)  # MiB: one point per chunk
    chunked = train.fit(cfg, build, regression_data(), tmp_path / "chunked", log=lines.append)
    assert len(lines) == 1 and "running 2 chunks of up to 1 grid points in turn" in lines[0]
    assert sorted(p.name for p in (tmp_path / "chunked").glob("chunk-*")) == ["chunk-0", "chunk-1"]
    whole = train.fit(config(sweep="lr=0.01,0.3"), build, regression_data(), tmp_path / "one")
    assert train.read_metrics(tmp_path / "chunked") == train.read_metrics(tmp_path / "one")
    for a, b in zip(jax.tree.leaves(chunked.state), jax.tree.leaves(whole.state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert sweeps.chunk_points(10, 3, replica_mib=1.0, budget=4 * 3 * 4.5) == 4
    assert sweeps.chunk_points(10, 3, replica_mib=1.0, budget=1e9) == 10
    # With 8 devices sharing the replicas, a chunk's points x 3 seeds must fill them.
    assert sweeps.chunk_points(10, 3, replica_mib=1.0, budget=4 * 3 * 9.5, devices=8) == 8


def test_a_sweep_needs_a_task_builder(tmp_path):
    with pytest.raises(ConfigError, match="task builder"):
        train.fit(config(sweep="lr=0.1"), build(config()), regression_data(), tmp_path)


@pytest.mark.slow
def test_a_sweep_by_dispatch_by_data_parallel_and_resumed_equals_the_scanned_sweep(tmp_path):
    cfg = dict(sweep="lr=0.01,0.1", seeds=2)
    scanned = train.fit(config(**cfg), build, regression_data(), tmp_path / "scan")
    for name, extra in (("dispatch", dict(epoch_loop="dispatch")), ("data", dict(parallel="data"))):
        other = train.fit(config(**cfg, **extra), build, regression_data(), tmp_path / name)
        for a, b in zip(jax.tree.leaves(scanned.state), jax.tree.leaves(other.state)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)
    train.fit(config(**cfg, epochs=1), build, regression_data(), tmp_path / "resumed")
    train.fit(config(**cfg, resume=True), build, regression_data(), tmp_path / "resumed")
    metrics = [(tmp_path / d / "metrics.jsonl").read_bytes() for d in ("scan", "resumed")]
    assert metrics[0] == metrics[1]
