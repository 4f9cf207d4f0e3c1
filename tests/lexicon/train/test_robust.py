"""Robust runs: resume checks what it resumes, the workdir lock, SIGTERM, a failed save, the
NaN guard on the state, valid JSON, a torn metrics.jsonl."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import optax
import pytest
from support import ROOT
from train_tasks import classifier_task, config, least_squares, regression_data

from lexicon import train
from lexicon.rules import ConfigError

TESTS = ROOT / "tests" / "helpers"


def leaves_equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def data():
    return regression_data()


def test_resume_refuses_what_would_change_the_run(data, tmp_path):
    cfg = config(epochs=2)
    cfg.lr = 0.1
    train.fit(cfg, least_squares(), data, tmp_path)
    changed = {"seeds": 2, "batch_size": 20, "lr": 0.2, "data_seed": 3}
    for key, value in changed.items():
        bad = config(epochs=3, resume=True)
        bad.lr = 0.1
        bad[key] = value
        with pytest.raises(ConfigError, match=rf"resume would change .*{key} "):
            train.fit(bad, least_squares(), data, tmp_path)
    below = config(epochs=1, resume=True)
    below.lr = 0.1
    with pytest.raises(ConfigError, match=r"epochs=1 is below the newest checkpoint \(epoch 2\)"):
        train.fit(below, least_squares(), data, tmp_path)
    allowed = config(epochs=3, resume=True, eval_every=2, progress=False, checkpoint_every=1)
    allowed.lr = 0.1
    result = train.fit(allowed, least_squares(), data, tmp_path)
    assert [r["epoch"] for r in result.history] == [1, 2, 3]


def test_resume_refuses_a_state_of_another_shape_before_compiling(tmp_path):
    digits = {"x": np.zeros((40, 64), np.float32), "y": np.zeros(40, np.int32)}
    train.fit(config(epochs=1), classifier_task(hidden=(16,)), digits, tmp_path)
    fits = r"does not fit this run.s state \(params.Dense_0.bias has shape \(1, 16\)"
    with pytest.raises(ConfigError, match=fits):
        train.fit(config(epochs=2, resume=True), classifier_task(hidden=(8,)), digits, tmp_path)


def test_a_busy_workdir_is_refused_and_a_stale_lock_taken_over(data, tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / ".lock").write_text(f"{sleeper.pid} {os.uname().nodename}\n")
        with pytest.raises(train.WorkdirBusy, match=f"in use by process {sleeper.pid}"):
            train.fit(config(), least_squares(), data, tmp_path)
        assert not (tmp_path / "metrics.jsonl").exists()  # refused before touching anything
    finally:
        sleeper.kill()
        sleeper.wait()
    notices = []
    train.fit(config(), least_squares(), data, tmp_path, log=notices.append)
    assert any(f"taking over the lock of process {sleeper.pid}" in n for n in notices)
    assert not (tmp_path / ".lock").exists()


def test_parameters_turning_inf_on_an_epochs_last_step_are_never_saved(data, tmp_path):
    # 4 steps per epoch; the update of step 8 (the last of epoch 2) makes w infinite, while
    # every metric, measured before its update, stays finite.
    task = least_squares(poison_step=8, poison_params=True)
    with pytest.raises(train.TrainingDiverged, match="not finite after epoch 2"):
        train.fit(config(epochs=4, checkpoint_every=1), task, data, tmp_path)
    checkpointer = train.Checkpointer(tmp_path / "checkpoints")
    assert checkpointer.all() == [1]
    template = jax.vmap(task.init)(jax.random.split(jax.random.key(0), 1))
    assert np.isfinite(np.asarray(checkpointer.restore(1, template).params["w"])).all()
    checkpointer.close()


def test_a_non_finite_evaluation_is_null_in_valid_json_and_watched(data, tmp_path):
    val = {k: v.copy() for k, v in data.items()}
    val["y"][0] = np.nan
    task = least_squares(watch=())  # nothing watched: the NaN is recorded
    train.fit(config(epochs=2), task, data, tmp_path / "a", eval_splits={"val": val})
    text = (tmp_path / "a/metrics.jsonl").read_text()
    records = [json.loads(line) for line in text.splitlines()]
    assert records[0]["val/loss"] == [None] and records[0]["nonfinite"] == ["val/loss"]
    with pytest.raises(train.TrainingDiverged, match="val/loss is not finite after epoch 1"):
        train.fit(config(epochs=2), least_squares(), data, tmp_path / "b", eval_splits={"val": val})


def test_a_torn_last_line_of_metrics_is_repaired_on_resume(data, tmp_path):
    straight = train.fit(config(epochs=3), least_squares(), data, tmp_path / "s")
    train.fit(config(epochs=2), least_squares(), data, tmp_path / "r")
    with (tmp_path / "r/metrics.jsonl").open("a") as f:
        f.write('{"epoch": 3, "step": 12, "train/lo')
    notices = []
    resumed = train.fit(
        config(epochs=3, resume=True), least_squares(), data, tmp_path / "r", log=notices.append
    )
    assert any("cut mid-write" in n for n in notices)
    leaves_equal(straight.state, resumed.state)
    assert (tmp_path / "s/metrics.jsonl").read_bytes() == (
        tmp_path / "r/metrics.jsonl"
    ).read_bytes()


def tiny_run(workdir, *args, env=None):
    """Starts tests/tiny_experiment.py through cli.run in its own process."""
    return subprocess.Popen(
        [sys.executable, str(TESTS / "tiny_experiment.py"), f"--workdir={workdir}", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(TESTS), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def lines_in(path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def stop_after(process, metrics, at_least: int, signum, timeout=120):
    deadline = time.time() + timeout
    while lines_in(metrics) < at_least and process.poll() is None:
        assert time.time() < deadline, "the run did not progress"
        time.sleep(0.05)
    process.send_signal(signum)
    return process.communicate(timeout=60)


def test_sigterm_saves_a_checkpoint_and_the_resumed_run_ends_bitwise_equal(tmp_path):
    run = tmp_path / "run"
    process = tiny_run(run, "--config.epochs=100000", "--config.progress=false")
    _, err = stop_after(process, run / "metrics.jsonl", 3, signal.SIGTERM)
    assert process.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM after epoch" in err and "--config.resume=true" in err
    saved = train.Checkpointer(run / "checkpoints").latest()
    assert saved is not None and saved >= 3
    total = saved + 2
    resumed = tiny_run(run, f"--config.epochs={total}", "--config.resume=true")
    assert resumed.wait(timeout=120) == 0, resumed.stderr.read()
    straight = tiny_run(tmp_path / "straight", f"--config.epochs={total}")
    assert straight.wait(timeout=120) == 0, straight.stderr.read()
    assert (run / "metrics.jsonl").read_bytes() == (
        tmp_path / "straight/metrics.jsonl"
    ).read_bytes()
    manifest = json.loads((run / "manifest.json").read_text())
    assert len(manifest["history"]) == 1 and manifest["config"]["epochs"] == total


FAILING_SAVE = """
import sys, errno
sys.path.insert(0, sys.argv[1])
import tiny_experiment
from lexicon import cli
from lexicon.train import checkpoint

save = checkpoint.ocp.CheckpointManager.save
def disk_full_at_epoch_3(self, step, *args, **kwargs):
    if step == 3:
        raise OSError(errno.ENOSPC, "No space left on device")
    return save(self, step, *args, **kwargs)
checkpoint.ocp.CheckpointManager.save = disk_full_at_epoch_3
argv = ["tiny", "--workdir=" + sys.argv[2], "--config.epochs=5", "--config.checkpoint_every=1",
        "--config.progress=false"]
cli.run(tiny_experiment.get_config, tiny_experiment.train_and_evaluate, tiny_experiment.RULES,
        argv=argv)
"""


def test_a_failed_save_ends_the_run_in_one_line_and_keeps_the_last_good_checkpoint(tmp_path):
    start = time.time()
    result = subprocess.run(
        [sys.executable, "-c", FAILING_SAVE, str(TESTS), str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert time.time() - start < 30
    assert result.returncode == 1
    err = result.stderr.strip().splitlines()
    assert len(err) == 1 and "could not save the checkpoint of epoch 3" in err[0], err
    assert "No space left on device" in err[0]
    checkpointer = train.Checkpointer(tmp_path / "checkpoints")
    assert checkpointer.latest() == 2
    template = jax.vmap(least_squares(optax.sgd(0.05)).init)(jax.random.split(jax.random.key(0), 1))
    restored = checkpointer.restore(2, template)
    assert int(restored.step[0]) == 8 and np.isfinite(np.asarray(restored.params["w"])).all()
    checkpointer.close()


@pytest.mark.slow
def test_chaos_random_kills_and_stops_end_bitwise_equal_to_an_uninterrupted_run(tmp_path):
    total = 400
    straight = tiny_run(tmp_path / "straight", f"--config.epochs={total}")
    assert straight.wait(timeout=300) == 0
    run = tmp_path / "chaos"
    rng = random.Random(0)
    args = [f"--config.epochs={total}", "--config.checkpoint_every=7"]
    first = True
    for trial in range(10):
        process = tiny_run(run, *args, *([] if first else ["--config.resume=true"]))
        first = False
        time.sleep(rng.uniform(1.0, 4.0))
        process.send_signal(signal.SIGKILL if trial % 2 else signal.SIGTERM)
        process.communicate(timeout=120)
        if train.Checkpointer(run / "checkpoints").latest() is None:
            first = True  # killed before its first checkpoint: start afresh
            for path in run.glob("*"):
                if path.is_file():
                    path.unlink()
    final = tiny_run(run, *args, *([] if first else ["--config.resume=true"]))
    assert final.wait(timeout=300) == 0, final.stderr.read()
    assert (run / "metrics.jsonl").read_bytes() == (
        tmp_path / "straight/metrics.jsonl"
    ).read_bytes()


def test_a_run_saved_before_sweep_select_existed_resumes():
    """sweep_select picks only a sweep's best point: a saved config without it (or with
    another value) does not stop a resume; a key that shapes the run still does."""
    from lexicon.train.checkpoint import differing_keys

    saved = {"lr": 0.1, "epochs": 3, "sweep": ""}
    current = {"lr": 0.1, "epochs": 5, "sweep": "", "sweep_select": "greedy/return:max"}
    assert differing_keys(saved, current, train.RESUMABLE) == []
    assert differing_keys(saved, {**current, "lr": 0.2}, train.RESUMABLE) == ["lr (0.1 -> 0.2)"]
