"""lexicon.train: reproducibility, resume, vmapped seeds, devices, processes, NaN stops."""

import os
import pathlib
import random
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from support import ROOT, run_python, xla_flags
from train_tasks import classifier_task

from lexicon import data, train
from lexicon.rules import ConfigError


def small_config(**overrides):
    config = train.defaults()
    config.update(dict(epochs=2, seeds=1, batch_size=32, progress=False))
    config.update(overrides)
    return config


@pytest.fixture(scope="module")
def digits():
    return data.load("digits", seed=0)


def fit(config, digits, workdir):
    return train.fit(
        config, classifier_task(), digits.train, workdir, eval_splits={"val": digits.val}
    )


@pytest.mark.slow
def test_same_seed_in_separate_processes_gives_identical_metrics(tmp_path):
    """Slow: in the fast suite, test_two_processes_equal_one_process_by_launch_sh_and_by_slurm
    compares two separate runs of the same seeds (by launch.sh and by SLURM) bitwise."""
    files = []
    for run in ("a", "b"):
        workdir = tmp_path / run
        result = run_python(
            [
                "-m",
                "experiments.backprop",
                "--config.epochs=2",
                "--config.seeds=2",
                "--config.progress=false",
                "--config.reference=false",
                f"--workdir={workdir}",
            ]
        )
        assert result.returncode == 0, result.stderr
        files.append((workdir / "metrics.jsonl").read_bytes())
    assert files[0] == files[1]


def test_resumed_run_ends_identical_to_uninterrupted(digits, tmp_path):
    straight = fit(small_config(epochs=4), digits, tmp_path / "straight")
    fit(small_config(epochs=2), digits, tmp_path / "resumed")
    resumed = fit(small_config(epochs=4, resume=True), digits, tmp_path / "resumed")
    for a, b in zip(jax.tree.leaves(straight.state), jax.tree.leaves(resumed.state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert (tmp_path / "straight/metrics.jsonl").read_bytes() == (
        tmp_path / "resumed/metrics.jsonl"
    ).read_bytes()


def test_vmapped_seeds_equal_separate_runs(digits, tmp_path):
    together = fit(small_config(seeds=3, seed=10), digits, tmp_path / "together")
    for i in (0, 2):
        alone = fit(small_config(seeds=1, seed=10 + i), digits, tmp_path / f"alone{i}")
        for a, b in zip(
            jax.tree.leaves(together.state.params), jax.tree.leaves(alone.state.params)
        ):
            np.testing.assert_allclose(np.asarray(a)[i], np.asarray(b)[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("batch_size", [0, 1, 100])
def test_batch_size_sets_the_regime(digits, tmp_path, batch_size):
    """0 = full batch (one step per epoch), 1 = stochastic, else minibatches (remainder left)."""
    n = len(digits.train["y"])
    steps = {0: 1, 1: n, 100: n // 100}[batch_size]
    result = fit(small_config(epochs=1, batch_size=batch_size), digits, tmp_path)
    assert result.history[0]["step"] == steps


def nan_task(bad_step):
    """Least squares whose loss turns NaN from step ``bad_step`` on."""
    tx = optax.sgd(0.1)

    def init(key):
        return train.TrainState.create(apply_fn=None, params={"w": jnp.ones(3)}, tx=tx)

    def loss(params, model_state, batch, key):
        err = jnp.mean((batch["x"] @ params["w"] - batch["y"]) ** 2)
        return err, ({}, model_state)

    def make_step(axis_name):
        base = train.gradient_step(loss)(axis_name)

        def step(state, batch, key):
            state, metrics = base(state, batch, key)
            poison = jnp.where(state.step >= bad_step, jnp.nan, 0.0)
            return state, {**metrics, "loss": metrics["loss"] + poison}

        return step

    return train.Task(init=init, make_step=make_step)


def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    rng = np.random.default_rng(0)
    split = {
        "x": rng.normal(size=(40, 3)).astype(np.float32),
        "y": rng.normal(size=40).astype(np.float32),
    }
    config = train.defaults()
    config.update(dict(epochs=10, batch_size=10, checkpoint_every=2, progress=False))
    # 4 steps per epoch; step 15 is the third batch of epoch 4.
    with pytest.raises(train.TrainingDiverged, match=r"loss is not finite at step 15 \(epoch 4"):
        train.fit(config, nan_task(15), split, tmp_path)
    checkpointer = train.Checkpointer(tmp_path / "checkpoints")
    assert checkpointer.latest() == 3
    template = jax.vmap(nan_task(15).init)(jax.random.split(jax.random.key(0), 1))
    restored = checkpointer.restore(3, template)
    assert int(restored.step[0]) == 12
    assert np.all(np.isfinite(np.asarray(restored.params["w"])))
    assert len(train.read_metrics(tmp_path)) == 3


def test_batch_larger_than_the_data_is_refused_before_compiling(digits, tmp_path):
    with pytest.raises(ConfigError, match="exceeds the 1258 training examples"):
        fit(small_config(batch_size=5000), digits, tmp_path)


def test_resume_starts_a_part_that_never_ran_afresh_and_refuses_one_without_checkpoint(
    digits, tmp_path
):
    """An experiment of several fits, resumed: a fit whose workdir holds nothing never
    started, so it runs from the beginning (bitwise the plain run); a fit that wrote metrics
    but no checkpoint cannot be continued and is refused."""
    fresh = fit(small_config(resume=True), digits, tmp_path / "never-started")
    plain = fit(small_config(), digits, tmp_path / "plain")
    assert (tmp_path / "never-started" / "metrics.jsonl").read_bytes() == (
        tmp_path / "plain" / "metrics.jsonl"
    ).read_bytes()
    assert fresh.final("val/accuracy") == plain.final("val/accuracy")
    started = tmp_path / "started"
    started.mkdir()
    (started / "metrics.jsonl").write_text('{"epoch": 1}\n')
    with pytest.raises(ConfigError, match="no checkpoint"):
        fit(small_config(resume=True), digits, started)


PARALLEL_SCRIPT = """
import sys, jax, numpy as np
sys.path.insert(0, "tests/helpers")
from train_tasks import classifier_task
from lexicon import data, train
assert jax.device_count() == 8
digits = data.load("digits", seed=0)
def run(**kw):
    config = train.defaults()
    config.update(dict(epochs=2, seeds=2, batch_size=64, progress=False, **kw))
    task = classifier_task()
    workdir = sys.argv[1] + "/" + "-".join(map(str, kw.values()))
    return train.fit(config, task, digits.train, workdir, eval_splits={"val": digits.val})
single = run(parallel="none")
for mapper in ("shard_map", "pmap"):
    parallel = run(parallel="data", mapper=mapper)
    for a, b in zip(jax.tree.leaves(single.state.params), jax.tree.leaves(parallel.state.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(single.final("val/accuracy"), parallel.final("val/accuracy"))
config = train.defaults()
config.update(dict(epochs=2, seeds=8, batch_size=64, progress=False))
task = classifier_task()
a = train.fit(config, task, digits.train, sys.argv[1] + "/s-none")
config.parallel = "seeds"
b = train.fit(config, task, digits.train, sys.argv[1] + "/s-seeds")
for x, y in zip(jax.tree.leaves(a.state.params), jax.tree.leaves(b.state.params)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)
# A sweep's 4 grid points x 2 seeds spread over the 8 devices equal the sweep on one device.
from train_tasks import least_squares, regression_data
import optax
def build(c):
    return least_squares(optax.sgd(c.lr))
swept = {}
for parallel in ("none", "seeds"):
    config = train.defaults()
    config.update(dict(epochs=2, seeds=2, batch_size=10, progress=False, parallel=parallel))
    config.lr, config.sweep = 0.05, "lr=0.01,0.03,0.1,0.3"
    swept[parallel] = train.fit(config, build, regression_data(), sys.argv[1] + "/sw-" + parallel)
assert len(swept["seeds"].state.params["w"].sharding.device_set) == 8
for x, y in zip(jax.tree.leaves(swept["none"].state), jax.tree.leaves(swept["seeds"].state)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-7)
print("PARALLEL OK")
"""


def test_data_and_seed_parallel_on_8_devices_equal_single_device(tmp_path):
    result = run_python(["-c", PARALLEL_SCRIPT, str(tmp_path)], devices=8)
    assert "PARALLEL OK" in result.stdout, result.stderr[-3000:]


def slurm_task(task: int, tasks: int, job: int) -> dict:
    """The environment of task ``task`` of a SLURM step on this machine: the variables that
    JAX's SlurmCluster reads (job id -> coordinator port, node list -> coordinator host,
    task count, task id, local task id), with no LEXICON_* variable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEXICON_", "SLURM_"))}
    env.update(
        SLURM_JOB_ID=str(job),
        SLURM_STEP_NODELIST="localhost",
        SLURM_NTASKS=str(tasks),
        SLURM_PROCID=str(task),
        SLURM_LOCALID=str(task),
        XLA_FLAGS=xla_flags(devices=4),
    )
    return env


def test_two_processes_equal_one_process_by_launch_sh_and_by_slurm(tmp_path):
    """One process on 8 devices, launch.sh's 2-process loopback mode, and a simulated 2-task
    SLURM step (jax.distributed.initialize() finds the cluster by itself) give the same
    metrics. The two multi-process runs go at the same time."""
    common = [
        "--config.epochs=2",
        "--config.seeds=2",
        "--config.batch_size=64",
        "--config.parallel=data",
        "--config.progress=false",
        "--config.reference=false",
    ]
    launcher = subprocess.Popen(
        [
            "./launch.sh",
            "--processes",
            "2",
            "--devices",
            "4",
            "backprop",
            *common,
            f"--workdir={tmp_path / 'two'}",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    job = random.randrange(10**6)  # the coordinator's port follows from it
    slurm = [
        subprocess.Popen(
            [sys.executable, "-m", "experiments.backprop", *common, f"--workdir={tmp_path / 's'}"],
            cwd=ROOT,
            env=slurm_task(task, 2, job),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for task in range(2)
    ]
    single = run_python(
        ["-m", "experiments.backprop", *common, f"--workdir={tmp_path / 'one'}"], devices=8
    )
    assert single.returncode == 0, single.stderr
    for process in [launcher, *slurm]:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-3000:]
    one, two, by_slurm = (train.read_metrics(tmp_path / d) for d in ("one", "two", "s"))
    assert [r["epoch"] for r in one] == [r["epoch"] for r in two] == [1, 2]
    for r1, r2, r3 in zip(one, two, by_slurm, strict=True):
        for key in r1:
            np.testing.assert_allclose(r1[key], r2[key], rtol=1e-5, atol=1e-6)
            assert r3[key] == r2[key], key  # the same program on the same 2 x 4 devices
    for run in ("two", "s"):
        manifest = (tmp_path / run / "manifest.json").read_text()
        assert '"process_count": 2' in manifest


def test_checkpoint_files_are_orbax(tmp_path, digits):
    fit(small_config(epochs=2, checkpoint_every=1), digits, tmp_path)
    steps = sorted(
        int(p.name) for p in pathlib.Path(tmp_path, "checkpoints").iterdir() if p.name.isdigit()
    )
    assert steps == [1, 2]


def test_a_fresh_run_never_overwrites_checkpoints(digits, tmp_path):
    fit(small_config(epochs=1), digits, tmp_path)
    with pytest.raises(ConfigError, match="already holds checkpoints"):
        fit(small_config(epochs=1), digits, tmp_path)
    assert train.Checkpointer(tmp_path / "checkpoints").latest() == 1


def test_a_second_stage_starts_from_the_given_state(digits, tmp_path):
    first = fit(small_config(seeds=2), digits, tmp_path / "first")
    # Stage 2 swaps the optimizer for one with a zero step size, which keeps every weight.
    tx = optax.sgd(0.0)
    start = first.state.replace(tx=tx, opt_state=jax.vmap(tx.init)(first.state.params))
    config = small_config(seeds=2, epochs=1)
    task = classifier_task()
    second = train.fit(config, task, digits.train, tmp_path / "second", initial_state=start)
    for a, b in zip(jax.tree.leaves(first.state.params), jax.tree.leaves(second.state.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    steps_per_epoch = len(digits.train["y"]) // 32
    assert second.history[-1]["step"] == first.history[-1]["step"] + steps_per_epoch
    with pytest.raises(ConfigError, match="config.seeds=3 replicas"):
        train.fit(
            small_config(seeds=3), task, digits.train, tmp_path / "third", initial_state=start
        )


def test_dispatched_epochs_take_the_same_steps_as_the_scan(digits, tmp_path):
    scanned = fit(small_config(seeds=2), digits, tmp_path / "scan")
    dispatched = fit(small_config(seeds=2, epoch_loop="dispatch"), digits, tmp_path / "dispatch")
    again = fit(small_config(seeds=2, epoch_loop="dispatch"), digits, tmp_path / "again")
    for a, b, c in zip(
        jax.tree.leaves(scanned.state.params),
        jax.tree.leaves(dispatched.state.params),
        jax.tree.leaves(again.state.params),
    ):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(np.asarray(b), np.asarray(c))
    assert [r["step"] for r in scanned.history] == [r["step"] for r in dispatched.history]
    for name, values in scanned.step_metrics[-1].items():
        assert (
            dispatched.step_metrics[-1][name].shape
            == values.shape
            == (2, len(digits.train["y"]) // 32)
        )
        np.testing.assert_allclose(dispatched.step_metrics[-1][name], values, rtol=1e-4, atol=1e-5)


def test_dispatched_epochs_run_on_one_device():
    config = small_config(epoch_loop="dispatch", parallel="seeds")
    with pytest.raises(ConfigError, match="epoch_loop=dispatch runs on one device"):
        train.loop.check_config(config, 100)
