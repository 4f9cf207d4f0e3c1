"""Tabular MDPs built from the environment, value iteration, and exact policy evaluation.

A tabular MDP is stored as its outcome table: for every state s and action a, K branches k
with probability p[s, a, k], next state next[s, a, k], reward r[s, a, k] and whether that
next state ends the episode, terminal[s, a, k]. The table is read off the environment's own
``step_env``: every move of a tabular env is stepped from every cell, and a slippery
FrozenLake turns action a into a (probability ``success_rate``) or into one of its two
perpendicular moves (a - 1 and a + 1 mod 4, (1 - success_rate) / 2 each), as its step does.

Value iteration (Bellman's optimality equation, the ground truth of the Q-learning tests)
    Q*(s, a) = sum_k p_k [r_k + gamma (1 - terminal_k) max_a' Q*(next_k, a')]
in NumPy float64 until the largest change is below ``tol``. The time limit is a truncation,
not part of the task, so Q* is the infinite-horizon value.

The success rate of an episode with a time limit T is a finite-horizon quantity: the expected
undiscounted reward within T steps (for FrozenLake and the grid world, the probability of
reaching the goal). ``finite_horizon_optimum`` is its exact optimum over all (time-dependent)
policies, by backward induction; ``policy_return`` is the exact value of a stationary policy,
by propagating the state distribution for T steps (no Monte Carlo noise).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments.misc import frozen_lake

from lexicon.rl import envs


class Table(struct.PyTreeNode):
    """Outcome table of a tabular MDP: arrays of shape (states, actions, branches)."""

    prob: jax.Array
    next: jax.Array
    reward: jax.Array
    terminal: jax.Array
    start: int = struct.field(pytree_node=False, default=0)

    @property
    def num_states(self) -> int:
        return self.prob.shape[0]

    @property
    def num_actions(self) -> int:
        return self.prob.shape[1]


def _moves(env, params):
    """Each deterministic move b from each cell s: (next cell, reward, terminated)."""
    deterministic = env
    if isinstance(env, frozen_lake.FrozenLake):
        deterministic = frozen_lake.FrozenLake(
            desc=envs.grid_map(env), is_slippery=False, reward_schedule=env.reward_schedule
        )
    key = jax.random.key(0)  # unused by a deterministic move

    def move(s, b):
        obs, _, reward, terminated, _ = deterministic.step_env(
            key, envs.state_at(env, s), b, params
        )
        return obs, reward, terminated

    cells = jnp.arange(env.n_states)
    actions = jnp.arange(env.num_actions)
    nxt, reward, terminated = jax.vmap(lambda s: jax.vmap(lambda b: move(s, b))(actions))(cells)
    return np.asarray(nxt), np.asarray(reward, np.float64), np.asarray(terminated)


def build(env, params) -> Table:
    """The outcome table of a tabular env (FrozenLake slippery or not, GridWorld), in float64
    NumPy arrays."""
    if not envs.is_tabular(env):
        raise ValueError(f"{env.name} is not a tabular environment")
    nxt, reward, terminated = _moves(env, params)
    num_actions = env.num_actions
    if getattr(env, "is_slippery", False):
        p = env.success_rate
        branches = [(0, p), (-1, (1.0 - p) / 2.0), (1, (1.0 - p) / 2.0)]
    else:
        branches = [(0, 1.0)]
    actions = np.arange(num_actions)
    picks = np.stack([(actions + offset) % num_actions for offset, _ in branches], axis=-1)
    prob = np.broadcast_to(np.array([q for _, q in branches]), picks.shape[:1] + picks.shape[1:])
    cells = np.arange(env.n_states)[:, None, None]
    start = int(np.asarray(env.reset_env(jax.random.key(0), params)[0]))
    return Table(
        prob=np.broadcast_to(prob, (env.n_states, *picks.shape)).astype(np.float64),
        next=nxt[cells, picks[None]],
        reward=reward[cells, picks[None]],
        terminal=terminated[cells, picks[None]],
        start=start,
    )


def terminal_states(table: Table) -> np.ndarray:
    """The states an episode ends in (the holes and the goal): never acted from."""
    mask = np.zeros(table.num_states, bool)
    mask[np.asarray(table.next)[np.asarray(table.terminal)]] = True
    return mask


def value_iteration(table: Table, gamma: float, tol: float = 1e-12, max_iters: int = 100_000):
    """Q* by value iteration in float64; rows of terminal states are 0."""
    prob, nxt = np.asarray(table.prob), np.asarray(table.next)
    reward, cont = np.asarray(table.reward), ~np.asarray(table.terminal)
    ends = terminal_states(table)
    q = np.zeros((table.num_states, table.num_actions))
    for _ in range(max_iters):
        v = q.max(axis=1)
        new = (prob * (reward + gamma * cont * v[nxt])).sum(axis=-1)
        new[ends] = 0.0
        change = np.abs(new - q).max()
        q = new
        if change < tol:
            return q
    raise RuntimeError(f"value iteration did not converge to {tol} in {max_iters} sweeps")


def finite_horizon_optimum(table: Table, horizon: int) -> float:
    """The best expected undiscounted reward within ``horizon`` steps from the start, over all
    policies (which may depend on the time left), by backward induction in float64."""
    prob, nxt = np.asarray(table.prob), np.asarray(table.next)
    reward, cont = np.asarray(table.reward), ~np.asarray(table.terminal)
    v = np.zeros(table.num_states)
    for _ in range(horizon):
        v = (prob * (reward + cont * v[nxt])).sum(axis=-1).max(axis=1)
    return float(v[table.start])


def policy_return(table: Table, policy, horizon: int) -> jax.Array:
    """The exact expected undiscounted reward of a stationary ``policy`` (state -> action)
    within ``horizon`` steps from the start, in JAX (jit- and vmap-able)."""
    states = jnp.arange(table.num_states)
    prob = jnp.asarray(table.prob, jnp.float32)[states, policy]
    nxt = jnp.asarray(table.next)[states, policy]
    reward = jnp.asarray(table.reward, jnp.float32)[states, policy]
    cont = ~jnp.asarray(table.terminal)[states, policy]
    start = jnp.zeros(table.num_states, jnp.float32).at[table.start].set(1.0)

    def one_step(_, carry):
        mass, total = carry
        flow = mass[:, None] * prob
        total = total + jnp.sum(flow * reward)
        mass = jnp.zeros_like(mass).at[nxt.reshape(-1)].add((flow * cont).reshape(-1))
        return mass, total

    return jax.lax.fori_loop(0, horizon, one_step, (start, jnp.zeros((), jnp.float32)))[1]


def greedy(q) -> jax.Array:
    """The greedy policy pi(s) = argmax_a Q(s, a) (the first maximum on ties)."""
    return jnp.argmax(q, axis=-1)


def policy_map(env, policy) -> list[str]:
    """The greedy policy drawn on the map: an arrow per free cell, H and G kept."""
    cells = "".join(envs.grid_map(env))
    policy = np.asarray(policy).reshape(-1)
    drawn = [c if c in "HG" else envs.ARROWS[policy[i]] for i, c in enumerate(cells)]
    return ["".join(drawn[r * env.ncol : (r + 1) * env.ncol]) for r in range(env.nrow)]
