"""lexicon.train for every kind of learning: data-free and custom epochs, any state, per-replica
data, the divergence policy, stages, gradient hooks, results.json."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from train_tasks import config, duel_task, least_squares, regression_data

from lexicon import report, train
from lexicon.rules import ConfigError


def leaves_equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_data_free_scan_equals_a_python_loop_of_the_same_steps(tmp_path):
    task = duel_task()
    cfg = config(epochs=2, seeds=2, steps_per_epoch=5)
    result = train.fit(cfg, task, None, tmp_path)
    seeds = train.replica_seeds(cfg)
    step = task.make_step(None)
    for i, seed in enumerate(seeds):
        state = task.init(train.stream(seed, "init"))
        losses = []
        for _ in range(10):
            key = jax.random.fold_in(train.stream(seed, "step"), state.step)
            state, metrics = step(state, None, key)
            losses.append(float(metrics["loss"]))
        for x, y in zip(jax.tree.leaves(result.state), jax.tree.leaves(state)):
            np.testing.assert_allclose(np.asarray(x)[i], np.asarray(y), rtol=1e-6, atol=1e-6)
        scanned = np.concatenate([m["loss"][i] for m in result.step_metrics])
        np.testing.assert_allclose(scanned, losses, rtol=1e-6, atol=1e-6)
    assert result.history[-1]["step"] == 10


def test_data_free_dispatch_equals_scan(tmp_path):
    scanned = train.fit(config(seeds=2, steps_per_epoch=3), duel_task(), None, tmp_path / "s")
    cfg = config(seeds=2, steps_per_epoch=3, epoch_loop="dispatch")
    dispatched = train.fit(cfg, duel_task(), None, tmp_path / "d")
    for x, y in zip(jax.tree.leaves(scanned.state), jax.tree.leaves(dispatched.state)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-6)


def test_a_data_free_run_needs_steps_per_epoch(tmp_path):
    with pytest.raises(ConfigError, match="steps_per_epoch >= 1"):
        train.fit(config(), duel_task(), None, tmp_path)


def test_two_players_idle_player_does_not_move_and_resume_is_bitwise(tmp_path):
    task = duel_task()
    # One step per epoch: epoch 1 moves the generator, epoch 2 the discriminator.
    start = train.init_states(config(seeds=2), task)
    first = train.fit(config(epochs=1, seeds=2, steps_per_epoch=1), task, None, tmp_path / "r")
    leaves_equal(first.state.disc, start.disc)  # params and optimizer state both
    assert not np.array_equal(first.state.gen.params["a"], start.gen.params["a"])
    cfg = config(epochs=2, seeds=2, steps_per_epoch=1, resume=True)
    resumed = train.fit(cfg, task, None, tmp_path / "r")
    leaves_equal(resumed.state.gen, first.state.gen)
    assert not np.array_equal(resumed.state.disc.params["b"], first.state.disc.params["b"])
    straight = train.fit(config(epochs=2, seeds=2, steps_per_epoch=1), task, None, tmp_path / "s")
    leaves_equal(straight.state, resumed.state)
    assert (tmp_path / "s/metrics.jsonl").read_bytes() == (
        tmp_path / "r/metrics.jsonl"
    ).read_bytes()


def counting_epoch_task():
    """A topic's own epoch: a tabular 'agent' whose epoch is a scan of its own."""

    def init(key):
        return {"step": jnp.zeros((), jnp.int32), "q": jax.random.uniform(key, (4,))}

    def epoch(state, seed, epoch):
        key = jax.random.fold_in(train.stream(seed, "env"), epoch)

        def body(q, k):
            target = jax.random.uniform(k, (4,))
            q = q + 0.5 * (target - q)
            return q, jnp.mean((target - q) ** 2)

        q, errors = jax.lax.scan(body, state["q"], jax.random.split(key, 3))
        return {"step": state["step"] + 3, "q": q}, {"loss": errors, "last": errors[-1]}

    return train.Task(init=init, epoch=epoch)


def test_a_custom_epoch_gets_resume_bitwise_from_the_driver(tmp_path):
    task = counting_epoch_task()
    straight = train.fit(config(epochs=4, seeds=3), task, None, tmp_path / "s")
    train.fit(config(epochs=2, seeds=3), task, None, tmp_path / "r")
    resumed = train.fit(config(epochs=4, seeds=3, resume=True), task, None, tmp_path / "r")
    leaves_equal(straight.state, resumed.state)
    assert (tmp_path / "s/metrics.jsonl").read_bytes() == (
        tmp_path / "r/metrics.jsonl"
    ).read_bytes()
    assert straight.history[-1]["step"] == 12
    assert straight.step_metrics[0]["loss"].shape == (3, 3)
    assert straight.step_metrics[0]["last"].shape == (3, 1)


def test_per_replica_data_equals_separate_runs(tmp_path):
    datasets = [regression_data(seed=s) for s in range(3)]
    stacked = {k: np.stack([d[k] for d in datasets]) for k in datasets[0]}
    together = train.fit(
        config(seeds=3, seed=5), least_squares(), stacked, tmp_path / "t", per_replica=True
    )
    for i, data in enumerate(datasets):
        alone = train.fit(config(seeds=1, seed=5 + i), least_squares(), data, tmp_path / f"{i}")
        for a, b in zip(
            jax.tree.leaves(together.state.params), jax.tree.leaves(alone.state.params)
        ):
            np.testing.assert_allclose(np.asarray(a)[i], np.asarray(b)[0], rtol=1e-6, atol=1e-7)
    with pytest.raises(ConfigError, match="stack config.seeds=2 datasets"):
        train.fit(config(seeds=2), least_squares(), stacked, tmp_path / "x", per_replica=True)


def test_watch_stops_on_a_watched_nan_and_ignores_an_unwatched_one(tmp_path):
    data = regression_data()
    with pytest.raises(train.TrainingDiverged, match=r"loss is not finite at step 7 \(epoch 2"):
        train.fit(config(epochs=3), least_squares(poison_step=7), data, tmp_path / "a")
    # Watching another metric: the NaN loss is recorded (as null) and training goes on.
    task = least_squares(poison_step=7, watch=("noise",))
    result = train.fit(config(epochs=3), task, data, tmp_path / "b")
    lines = (tmp_path / "b/metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]  # valid JSON throughout
    assert records[0]["train/loss"][0] is not None  # epoch 1: steps 1-4 are finite
    assert records[2]["train/loss"] == [None] and records[2]["nonfinite"] == ["train/loss"]
    assert "NaN" not in "".join(lines)
    assert np.isnan(result.final("train/loss")).all()


def test_unwatched_nan_steps_are_averaged_with_nanmean(tmp_path):
    def epoch(state, seed, epoch):
        values = jnp.array([1.0, jnp.nan, 3.0])
        return {"step": state["step"] + 3}, {"loss": jnp.zeros(3), "reward": values}

    task = train.Task(init=lambda key: {"step": jnp.zeros((), jnp.int32)}, epoch=epoch)
    result = train.fit(config(epochs=1), task, None, tmp_path)
    assert result.history[0]["train/reward"] == [2.0]


def test_record_keeps_the_healthy_replicas_bitwise_equal(tmp_path):
    datasets = [regression_data(seed=s) for s in range(3)]
    stacked = {k: np.stack([d[k] for d in datasets]) for k in datasets[0]}
    poisoned = {k: v.copy() for k, v in stacked.items()}
    poisoned["y"][1, 5] = np.inf  # replica 1 meets an infinite target in its first epoch
    cfg = config(epochs=3, seeds=3, on_divergence="record")
    task = least_squares()
    clean = train.fit(cfg, task, stacked, tmp_path / "clean", per_replica=True)
    mixed = train.fit(cfg, task, poisoned, tmp_path / "mixed", per_replica=True)
    assert mixed.diverged_at.tolist() == [0, 1, 0]
    for a, b in zip(jax.tree.leaves(clean.state), jax.tree.leaves(mixed.state)):
        np.testing.assert_array_equal(np.asarray(a)[[0, 2]], np.asarray(b)[[0, 2]])
    # The diverged replica is frozen at its last good (here: initial) state, never NaN.
    assert np.isfinite(np.asarray(mixed.state.params["w"])).all()
    record = json.loads((tmp_path / "mixed/metrics.jsonl").read_text().splitlines()[-1])
    assert record["train/loss"][1] is None and record["diverged_at"] == [0, 1, 0]
    with pytest.raises(train.TrainingDiverged, match="seed 1"):
        train.fit(config(epochs=3, seeds=3), task, poisoned, tmp_path / "stop", per_replica=True)


def test_stages_start_from_the_last_stage_with_a_fresh_optimizer(tmp_path):
    data = regression_data()
    plan = [
        train.Stage("adam", least_squares(optax.adam(0.05)), epochs=2),
        train.Stage("frozen", least_squares(), epochs=1, tx=optax.sgd(0.0)),
        train.Stage("sgd", least_squares(), epochs=1, tx=optax.sgd(0.05)),
    ]
    results = train.stages(config(seeds=2), plan, data, tmp_path)
    assert list(results) == ["adam", "frozen", "sgd"]
    leaves_equal(results["adam"].state.params, results["frozen"].state.params)
    assert results["sgd"].history[-1]["step"] == 4 * 4
    assert results["sgd"].history[-1]["train/loss"][0] < results["adam"].history[0]["train/loss"][0]
    assert [r["epoch"] for r in results["sgd"].history] == [4]  # epochs count across stages
    # Resuming the whole plan continues stage by stage and ends where it ended.
    again = train.stages(config(seeds=2, resume=True), plan, data, tmp_path)
    leaves_equal(again["sgd"].state, results["sgd"].state)


def test_gradient_step_logs_gradient_statistics(tmp_path):
    def loss(params, model_state, batch, key):
        return jnp.mean((batch["x"] @ params["w"] - batch["y"]) ** 2), ({}, model_state)

    def norms(grads):
        return {"grad_norm": optax.tree.norm(grads)}

    def init(key):
        return train.TrainState.create(apply_fn=None, params={"w": jnp.zeros(3)}, tx=optax.sgd(0.1))

    task = train.Task(init=init, make_step=train.gradient_step(loss, grad_metrics=norms))
    data = regression_data()
    result = train.fit(config(epochs=1, batch_size=0), task, data, tmp_path)
    grad = jax.grad(lambda w: jnp.mean((data["x"] @ w - data["y"]) ** 2))(jnp.zeros(3))
    np.testing.assert_allclose(
        result.history[0]["train/grad_norm"], [float(jnp.linalg.norm(grad))], rtol=1e-6
    )


def test_evaluate_in_chunks_pads_the_last_chunk():
    x = np.arange(10, dtype=np.float32)
    split = {"x": x}

    def per_example(batch):
        return {"value": batch["x"] ** 2}

    chunked = train.evaluate_in_chunks(per_example, split, chunk=4)  # 4 + 4 + 2 (padded)
    np.testing.assert_allclose(float(chunked["value"]), np.mean(x**2), rtol=1e-6)
    whole = train.evaluate_in_chunks(per_example, split, chunk=64)
    np.testing.assert_allclose(float(whole["value"]), np.mean(x**2), rtol=1e-6)


def test_results_json_is_written_and_read_back_by_the_index(tmp_path):
    results = {
        "accuracy": report.Figure([0.91, 0.93], reference=0.92, source="scikit-learn"),
        "gap": report.Figure(0.5, reference=0.1, source="paper", tolerance=0.05),
        "steps": np.array([10, 12]),
        "nested": {"loss": 0.25},
        "speedup": report.Figure([1.3, 1.5], reference=1.2, claim="at_least"),
        "ratio": report.Figure(1.08, reference=1.0, claim="at_most", tolerance=0.05),
        "close": report.Figure(0.14, reference=0.146, tolerance=0.1, relative=True),
        "note": "text is left out",
        "_sweep": np.arange(5.0),
    }
    (tmp_path / "topic").mkdir()
    figures = report.write_results(tmp_path / "topic", "topic", results)
    saved = json.loads((tmp_path / "topic/results.json").read_text())
    assert saved["figures"] == figures
    assert figures["accuracy"]["verdict"] == "matches"  # |0.92 - 0.92| <= 2 std
    assert figures["gap"]["verdict"] == "above"
    assert figures["steps"]["per_seed"] == [10.0, 12.0] and "nested/loss" in figures
    assert "note" not in figures and "_sweep" not in figures
    assert figures["speedup"]["verdict"] == "holds" and figures["ratio"]["verdict"] == "fails"
    assert figures["close"]["verdict"] == "matches"
    index = report.index(tmp_path).read_text()
    assert "| topic | accuracy | 0.9200 ± 0.0100 | 0.92 (scikit-learn) | matches |" in index
    assert "| topic | gap | 0.5000 | 0.1 (paper) | above |" in index


def test_stages_that_keep_the_step_and_optimizer_equal_one_run(tmp_path):
    data = regression_data()
    task = least_squares(optax.adam(0.05))
    plan = [train.Stage("first", task, epochs=2), train.Stage("second", task, epochs=3)]
    staged = train.stages(config(seeds=2), plan, data, tmp_path / "staged")
    straight = train.fit(config(seeds=2, epochs=5), task, data, tmp_path / "straight")
    leaves_equal(staged["second"].state, straight.state)
    joined = staged["first"].history + staged["second"].history
    assert joined == straight.history
