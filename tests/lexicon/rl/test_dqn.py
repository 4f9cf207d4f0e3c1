"""DQN: targets, losses, the target network's period, independent seeds, truncation."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lexicon import train
from lexicon.rl import dqn, envs


def linear_net(num_actions=3):
    return dqn.QNetwork(num_actions, hidden=())


def test_targets_and_losses_are_the_formulas(x64):
    """y = r + gamma (1 - terminated) Q_target(s', a*), a* from the target (DQN) or the online
    net (Double DQN); Huber (delta 1) or squared error, against NumPy float64."""
    model = linear_net()
    rng = np.random.default_rng(0)
    obs, nxt = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    params = model.init(jax.random.key(0), jnp.asarray(obs))["params"]
    target = model.init(jax.random.key(1), jnp.asarray(obs))["params"]
    batch = dqn.Transition(
        jnp.asarray(obs),
        jnp.array([0, 2, 1, 1, 0]),
        jnp.asarray(rng.normal(size=5)),
        jnp.asarray(nxt),
        jnp.array([False, True, False, False, True]),
    )

    def q_np(p, x):
        return x @ np.asarray(p["Dense_0"]["kernel"]) + np.asarray(p["Dense_0"]["bias"])

    qt, qo = q_np(target, nxt), q_np(params, nxt)
    cont = 1.0 - np.asarray(batch.terminated, np.float64)
    r = np.asarray(batch.reward)
    y_dqn = r + 0.9 * cont * qt.max(axis=1)
    y_double = r + 0.9 * cont * qt[np.arange(5), qo.argmax(axis=1)]
    for double, y in ((False, y_dqn), (True, y_double)):
        got = dqn.td_targets(model.apply, params, target, batch, 0.9, double)
        np.testing.assert_allclose(np.asarray(got), y, rtol=1e-6)  # the net runs in float32
        q_sa = q_np(params, obs)[np.arange(5), np.asarray(batch.action)]
        err = q_sa - y
        huber = np.where(np.abs(err) <= 1, 0.5 * err**2, np.abs(err) - 0.5).mean()
        for loss, expected in (("huber", huber), ("mse", (err**2).mean())):
            hyper = dqn.Hyper(gamma=0.9, loss=loss, double=double)
            value, _ = dqn.q_loss(model.apply, params, target, batch, hyper)
            np.testing.assert_allclose(float(value), expected, rtol=1e-5)
    assert not np.allclose(y_dqn, y_double)


def small(env_name="cartpole", **changes):
    env, params = envs.make(env_name)
    fields = dict(
        num_envs=2,
        iterations=40,
        batch_size=8,
        buffer_size=64,
        learning_starts=16,
        train_every=2,
        target_every=3,
        eps_steps=50,
    )
    fields.update(changes)
    hyper = dqn.Hyper(**fields)
    model = dqn.QNetwork(env.num_actions, hidden=(8,))
    return env, params, model, optax.adam(1e-2), hyper


def test_target_network_changes_only_at_its_period():
    env, params, model, tx, hyper = small()
    state = dqn.init(env, params, model, tx, hyper, jax.random.key(0))
    obs = jax.random.normal(jax.random.key(1), (20, 4))
    items = dqn.Transition(obs, jnp.arange(20) % 2, jnp.ones(20), obs[::-1], jnp.zeros(20, bool))
    state = state.replace(buffer=dqn.replay.add(state.buffer, items))
    learn = jax.jit(lambda state, key: dqn.learn(state, key, hyper)[0])
    for step in range(1, 10):
        before = state.target_params
        state = learn(state, jax.random.key(step))
        assert int(state.online.step) == step
        changed = [
            not np.array_equal(a, b)
            for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(state.target_params))
        ]
        assert all(changed) if step % hyper.target_every == 0 else not any(changed)
        if step % hyper.target_every == 0:  # tau = 1: a copy of the online network
            for a, b in zip(
                jax.tree.leaves(state.target_params), jax.tree.leaves(state.online.params)
            ):
                np.testing.assert_array_equal(a, b)


def test_polyak_average():
    old = {"w": jnp.array([1.0, 2.0])}
    new = {"w": jnp.array([3.0, 6.0])}
    got = dqn.update_target(old, new, 0.25, True)
    np.testing.assert_allclose(got["w"], 0.25 * np.array([3.0, 6.0]) + 0.75 * np.array([1, 2]))
    assert np.array_equal(dqn.update_target(old, new, 0.25, False)["w"], old["w"])


def test_vmapped_seeds_are_independent_and_reproducible():
    env, params, model, tx, hyper = small()
    task = dqn.make_task(env, params, model, tx, hyper)
    seeds = jnp.arange(3)
    init = jax.jit(jax.vmap(lambda s: task.init(train.stream(s, "init"))))
    epoch = jax.jit(jax.vmap(task.epoch, in_axes=(0, 0, None)))
    state = init(seeds)
    kernels = np.asarray(state.online.params["Dense_0"]["kernel"])
    assert not np.array_equal(kernels[0], kernels[1])  # each seed its own initialization
    first = np.asarray(state.obs)
    assert not np.array_equal(first[0], first[1])  # and its own environment start
    after, metrics = epoch(state, seeds, jnp.int32(1))
    actions = np.asarray(after.buffer.data.action)
    assert not np.array_equal(actions[0], actions[1])  # different trajectories
    again, metrics_again = epoch(init(seeds), seeds, jnp.int32(1))
    for a, b in zip(jax.tree.leaves(after), jax.tree.leaves(again)):
        np.testing.assert_array_equal(a, b)  # bitwise the same
    assert int(after.step[0]) == hyper.iterations * hyper.num_envs
    assert np.all(np.isfinite(np.asarray(metrics["loss"])))


def test_seeds_spread_over_two_devices_train_as_the_vmapped_seeds():
    """parallel=seeds (a shard_map over 2 host devices, in a child process) runs the DQN epoch,
    learning included, and gives each seed the return it has when all seeds share one device."""
    from lexicon.bench import dqn as bench_dqn

    settings = {**bench_dqn.FAST, "epochs": 1, "steps_per_epoch": 800, "learning_starts": 200}
    settings["buffer_size"] = 1000
    spread = bench_dqn.solved_run_on_cores(2, settings)
    shared = bench_dqn.solved_run(2, settings)
    assert spread["final"][0] != spread["final"][1]  # two seeds, two runs
    np.testing.assert_allclose(spread["final"], shared["final"], rtol=1e-5)


def test_truncation_stores_the_final_observation_and_is_not_a_termination():
    """A CartPole at its time limit: the stored transition keeps the observation the episode
    was cut at (not the reset's), flagged not terminated, so its target bootstraps."""
    env, params = envs.make("cartpole")
    obs, states = envs.reset(env, params, jax.random.key(0), 2)
    states = states.replace(time=jnp.array([params.max_steps_in_episode - 1, 3]))
    obs2, _, reward, terminated, truncated, final = envs.step(
        env, params, jax.random.key(1), states, jnp.array([1, 1])
    )
    assert truncated.tolist() == [True, False] and terminated.tolist() == [False, False]
    assert not np.allclose(obs2[0], final[0])  # obs2 is the reset, final the cut
    np.testing.assert_array_equal(obs2[1], final[1])
    model = linear_net(2)
    net = model.init(jax.random.key(0), obs)["params"]
    batch = dqn.Transition(
        obs, jnp.array([1, 1]), reward, final, terminated | jnp.array([False, True])
    )
    y = dqn.td_targets(model.apply, net, net, batch, 0.99, False)
    q_final = model.apply({"params": net}, final)
    assert float(y[0]) == pytest.approx(1.0 + 0.99 * float(q_final[0].max()), rel=1e-6)
    assert float(y[1]) == 1.0  # a termination: the reward alone


@pytest.mark.slow
def test_a_resumed_run_is_bitwise_the_run_that_never_stopped(tmp_path):
    env, params, model, tx, hyper = small()
    task = dqn.make_task(env, params, model, tx, hyper, eval_envs=2, eval_steps=20)
    config = train.defaults()
    config.update(dict(seeds=2, epochs=3, progress=False))
    straight = train.fit(config, task, None, tmp_path / "s")
    config.epochs = 1
    train.fit(config, task, None, tmp_path / "r")
    config.update(dict(epochs=3, resume=True))
    resumed = train.fit(config, task, None, tmp_path / "r")
    for a, b in zip(jax.tree.leaves(straight.state), jax.tree.leaves(resumed.state)):
        np.testing.assert_array_equal(a, b)
    assert (tmp_path / "s/metrics.jsonl").read_bytes() == (
        tmp_path / "r/metrics.jsonl"
    ).read_bytes()


def test_im2col_convolution_is_the_convolution(x64):
    """Conv3x3 (nine shifted views times the reshaped kernel, flax nn.Conv's parameters) is
    the VALID 3x3 convolution, against a brute-force NumPy float64 sum; QNetwork flattens the
    image after it, batch axes kept."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 6, 5, 4))
    conv = dqn.Conv3x3(5)
    p = conv.init(jax.random.key(1), jnp.asarray(x))
    kernel, bias = np.asarray(p["params"]["kernel"]), np.asarray(p["params"]["bias"])
    want = np.zeros((2, 4, 3, 5))
    for i in range(4):
        for j in range(3):
            want[:, i, j] = np.einsum("bhwc,hwcf->bf", x[:, i : i + 3, j : j + 3], kernel) + bias
    np.testing.assert_allclose(np.asarray(conv.apply(p, jnp.asarray(x))), want, rtol=1e-10)
    net = dqn.QNetwork(3, hidden=(), conv=2, obs_ndim=3)
    assert jax.eval_shape(net.init, jax.random.key(2), x[None])["params"]["Dense_0"][
        "kernel"
    ].shape == (4 * 3 * 2, 3)


@pytest.mark.slow
def test_breakout_minatar_with_the_convolutional_network():
    env, params, model, tx, hyper = small("breakout-minatar", iterations=30)
    model = dqn.QNetwork(env.num_actions, hidden=(16,), conv=4, obs_ndim=3)
    task = dqn.make_task(env, params, model, tx, hyper, eval_envs=2, eval_steps=20)
    state = jax.jit(task.init)(jax.random.key(0))
    assert state.obs.shape == (2, 10, 10, 4)
    assert state.online.params["Conv_0"]["kernel"].shape == (3, 3, 4, 4)
    state, metrics = jax.jit(task.epoch)(state, jnp.int32(0), jnp.int32(1))
    assert np.isfinite(float(metrics["loss"])) and int(state.step) == 60


def test_hyper_from_config_takes_fields_by_name_then_overrides():
    config = {"gamma": 0.9, "batch_size": 32, "lr": 1e-3, "iterations": 5, "eps_steps": 7}
    hyper = dqn.Hyper.from_config(config, iterations=100, double=True)
    assert (hyper.gamma, hyper.batch_size, hyper.iterations, hyper.eps_steps) == (0.9, 32, 100, 7)
    assert hyper.double and hyper.tau == dqn.Hyper().tau  # the rest keep their defaults
