"""Tabular Q-learning: the update as written, epsilon-greedy, convergence to Q*."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lexicon import train
from lexicon.rl import envs, qlearning, tabular


def test_one_update_is_the_formula(x64):
    """Q(S,A) <- Q(S,A) + alpha [R + gamma max_a Q(S',a) - Q(S,A)], literally, in float64."""
    rng = np.random.default_rng(0)
    q = rng.normal(size=(6, 4))
    s, a, r, s2, alpha, gamma = 2, 3, 0.7, 5, 0.3, 0.9
    expected = q.copy()
    target = r + gamma * max(q[s2, 0], q[s2, 1], q[s2, 2], q[s2, 3])
    error = target - q[s, a]
    expected[s, a] = q[s, a] + alpha * error
    new, got_target, got_error = qlearning.td_update(
        jnp.asarray(q), s, a, r, s2, False, alpha, gamma
    )
    np.testing.assert_array_equal(np.asarray(new), expected)
    assert float(got_target) == target and float(got_error) == error
    # A termination has no successor: the target is the reward alone.
    new, got_target, _ = qlearning.td_update(jnp.asarray(q), s, a, r, s2, True, alpha, gamma)
    assert float(got_target) == r
    assert float(new[s, a]) == q[s, a] + alpha * (r - q[s, a])


def test_epsilon_greedy_takes_the_argmax_with_probability_1_minus_eps_plus_eps_over_A():
    q = jnp.array([0.1, 0.9, -0.2, 0.3, 0.0])
    n, eps = 40_000, 0.3
    keys = jax.random.split(jax.random.key(1), n)
    actions = np.asarray(jax.vmap(lambda k: qlearning.epsilon_greedy(k, q, eps))(keys))
    p = 1 - eps + eps / 5
    freq = np.mean(actions == 1)
    assert abs(freq - p) < 4 * np.sqrt(p * (1 - p) / n), (freq, p)
    for other in (0, 2, 3, 4):  # each other action: eps / |A|
        assert abs(np.mean(actions == other) - eps / 5) < 4 * np.sqrt(0.06 * 0.94 / n)


def test_linear_epsilon_schedule():
    eps = [float(qlearning.linear_epsilon(t, 1.0, 0.1, 100)) for t in (0, 50, 100, 500)]
    np.testing.assert_allclose(eps, [1.0, 0.55, 0.1, 0.1], rtol=1e-6)


def run(env, params, hyper, steps, seeds=2):
    task = qlearning.make_task(env, params, hyper, steps)
    keys = jnp.arange(seeds)
    state = jax.vmap(lambda s: task.init(train.stream(s, "init")))(keys)
    epoch = jax.jit(
        jax.vmap(
            qlearning.make_epoch(env, params, hyper, steps, per_step=True), in_axes=(0, 0, None)
        )
    )
    return epoch(state, keys, 1)


@pytest.mark.parametrize(
    "name, kwargs, steps",
    [("gridworld", {"rows": 3, "cols": 4}, 12_000), ("frozenlake-4x4", {}, 30_000)],
)
def test_q_learning_converges_to_value_iteration(name, kwargs, steps):
    """Uniform behaviour (off-policy) and a decaying alpha = n(s,a)^-0.6: max |Q - Q*| < 1e-3
    over the states an agent acts from, for every seed."""
    env, params = envs.make(name, **kwargs)
    table = tabular.build(env, params)
    hyper = qlearning.Hyper(gamma=0.9, alpha=1.0, omega=0.6, eps_start=1.0, eps_end=1.0)
    q_star = tabular.value_iteration(table, 0.9)
    state, records = run(env, params, hyper, steps)
    acted = ~tabular.terminal_states(table)
    error = np.abs(np.asarray(state.q) - q_star[None])[:, acted].max(axis=(1, 2))
    assert np.all(error < 1e-3), error
    # The logged TD target and error are those of the update (one step, recomputed).
    t = 100
    s, a = np.asarray(records["state"][0, t]), np.asarray(records["action"][0, t])
    alpha = records["alpha"][0, t]
    assert float(alpha) == pytest.approx(
        1.0
        / float(
            np.sum(
                (np.asarray(records["state"][0, : t + 1]) == s)
                & (np.asarray(records["action"][0, : t + 1]) == a)
            )
        )
        ** 0.6
    )
    # Seeds are independent: their trajectories differ.
    assert not np.array_equal(np.asarray(records["action"][0]), np.asarray(records["action"][1]))


def test_truncation_bootstraps_and_termination_does_not():
    """On the grid world with a time limit of 3 steps: a truncated step's TD target includes
    gamma max Q(final cell), a terminating one is the reward alone."""
    env, _ = envs.make("gridworld", rows=1, cols=3)
    params = envs.GridParams(max_steps_in_episode=3)
    hyper = qlearning.Hyper(gamma=0.5, alpha=0.5, eps_start=1.0, eps_end=1.0)
    state, records = run(env, params, hyper, 400, seeds=1)
    r = {k: np.asarray(v[0]) for k, v in records.items()}
    assert r["truncated"].any() and r["terminated"].any()
    assert not (r["truncated"] & r["terminated"]).any()
    np.testing.assert_array_equal(r["td_target"][r["terminated"]], 1.0)
    truncated = np.flatnonzero(r["truncated"])
    truncated = truncated[truncated > 200]  # once Q has learned, gamma max Q(s') > 0
    assert truncated.size and np.all(r["td_target"][truncated] > 0)
    assert np.all(r["reward"][truncated] == 0)
