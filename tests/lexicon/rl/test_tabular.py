"""Transition tables read off the environments, value iteration, exact policy evaluation."""

import jax
import numpy as np

from lexicon.rl import envs, tabular


def test_slippery_table_matches_the_environment_step():
    """The branch probabilities of a slippery FrozenLake equal the frequencies of its own step
    from a cell (4,000 draws: within 4 standard errors)."""
    env, params = envs.make("frozenlake-4x4-slippery")
    table = tabular.build(env, params)
    s, a, n = 6, 1, 4000
    state = envs.state_at(env, s)
    keys = jax.random.split(jax.random.key(0), n)
    obs, *_ = jax.vmap(env.step_env, in_axes=(0, None, None, None))(keys, state, a, params)
    counts = np.bincount(np.asarray(obs), minlength=env.n_states) / n
    expected = np.zeros(env.n_states)
    np.add.at(expected, np.asarray(table.next[s, a]), np.asarray(table.prob[s, a]))
    assert np.abs(counts - expected).max() < 4 * np.sqrt(0.25 / n)
    np.testing.assert_allclose(np.asarray(table.prob).sum(-1), 1.0)
    assert set(np.flatnonzero(tabular.terminal_states(table))) == {5, 7, 11, 12, 15}


def test_value_iteration_is_the_bellman_fixed_point_and_the_known_optima():
    env, params = envs.make("frozenlake-4x4-slippery")
    table = tabular.build(env, params)
    q = tabular.value_iteration(table, 0.99)
    prob, nxt, r = (np.asarray(x) for x in (table.prob, table.next, table.reward))
    cont = ~np.asarray(table.terminal)
    bellman = (prob * (r + 0.99 * cont * q.max(1)[nxt])).sum(-1)
    bellman[tabular.terminal_states(table)] = 0.0
    np.testing.assert_allclose(q, bellman, atol=1e-10)
    # The exact optimum success rates within the time limits (100 and 200 steps).
    assert round(tabular.finite_horizon_optimum(table, 100), 4) == 0.7442
    big, big_params = envs.make("frozenlake-8x8-slippery")
    assert round(tabular.finite_horizon_optimum(tabular.build(big, big_params), 200), 4) == 0.9132


def test_grid_world_value_iteration_equals_the_closed_form():
    env, params = envs.make("gridworld", rows=3, cols=4)
    table = tabular.build(env, params)
    for gamma in (0.5, 0.9):
        np.testing.assert_allclose(
            tabular.value_iteration(table, gamma), env.optimal_q(gamma), atol=1e-12
        )


def test_policy_return_equals_a_float64_propagation():
    env, params = envs.make("frozenlake-4x4-slippery")
    table = tabular.build(env, params)
    policy = np.random.default_rng(0).integers(0, 4, env.n_states)
    mass, total = np.zeros(env.n_states), 0.0
    mass[table.start] = 1.0
    for _ in range(30):
        new = np.zeros(env.n_states)
        for s in range(env.n_states):
            for k in range(3):
                flow = mass[s] * table.prob[s, policy[s], k]
                total += flow * table.reward[s, policy[s], k]
                if not table.terminal[s, policy[s], k]:
                    new[table.next[s, policy[s], k]] += flow
        mass = new
    np.testing.assert_allclose(float(tabular.policy_return(table, policy, 30)), total, atol=1e-6)


def test_policy_map_draws_arrows_holes_and_goal():
    env, _ = envs.make("frozenlake-4x4")
    drawn = tabular.policy_map(env, np.full(16, 2))
    assert drawn == ["→→→→", "→H→H", "→→→H", "H→→G"]
