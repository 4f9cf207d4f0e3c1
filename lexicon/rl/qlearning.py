"""Tabular Q-learning (SPEC §11), as a pure epoch function for lexicon.train.

Q starts at 0. At each step the agent in state S_t picks A_t epsilon-greedily (with probability
epsilon a uniformly random action, otherwise argmax_a Q(S_t, a)), the environment answers
R_{t+1}, S_{t+1}, and the table moves toward the TD target:
    TD target  y_t     = R_{t+1} + gamma max_a Q(S_{t+1}, a)
    TD error   delta_t = y_t - Q(S_t, A_t)
    Q(S_t, A_t) <- Q(S_t, A_t) + alpha delta_t.
A termination has no successor, so its target is R_{t+1} alone; a truncation (the time limit)
keeps the bootstrap from the state the episode was cut at.

Schedules [add]: epsilon decays linearly from ``eps_start`` to ``eps_end`` over ``eps_steps``
steps (as in Mnih et al. 2015); the step size may decay with the visits of each pair,
alpha_t(s, a) = alpha / n(s, a)^omega with n counting this visit, which meets the
Robbins-Monro conditions for 1/2 < omega <= 1 (Watkins & Dayan 1992 prove convergence to Q*
under them; omega = 0 is the constant alpha of the documents).

Keys: replica ``seed`` draws its exploration from ``fold_in(stream(seed, "step"), t)`` and its
environment from ``fold_in(stream(seed, "env"), t)`` at global step t, so seeds are
independent and a resumed run is identical to one that never stopped.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct
from jax import lax

from lexicon import train
from lexicon.rl import envs, tabular


class Hyper(NamedTuple):
    gamma: float = 0.99
    alpha: float = 0.1  # step size (its scale when omega > 0)
    omega: float = 0.0  # alpha_t = alpha / n(s, a)^omega; 0 = constant
    eps_start: float = 1.0
    eps_end: float = 0.05
    eps_steps: int = 10_000  # steps of the linear decay of epsilon


def linear_epsilon(t, eps_start: float, eps_end: float, eps_steps: int):
    """eps(t) = eps_end + (eps_start - eps_end) max(0, 1 - t / eps_steps)."""
    fraction = jnp.clip(1.0 - t / max(eps_steps, 1), 0.0, 1.0)
    return eps_end + (eps_start - eps_end) * fraction


def epsilon_greedy(key, q_values, epsilon):
    """argmax_a q_values[a] with probability 1 - epsilon, else a uniform action; the argmax is
    thus taken with probability 1 - epsilon + epsilon / |A|. Works on a leading batch axis."""
    explore_key, action_key = jax.random.split(key)
    shape = q_values.shape[:-1]
    random = jax.random.randint(action_key, shape, 0, q_values.shape[-1])
    explore = jax.random.uniform(explore_key, shape) < epsilon
    return jnp.where(explore, random, jnp.argmax(q_values, axis=-1))


def td_update(q, s, a, reward, s_next, terminated, alpha, gamma):
    """One Q-learning update: returns (new Q, TD target, TD error)."""
    bootstrap = jnp.where(terminated, 0.0, jnp.max(q[s_next]))
    target = reward + gamma * bootstrap
    error = target - q[s, a]
    return q.at[s, a].add(alpha * error), target, error


class QState(struct.PyTreeNode):
    """One replica: the table, visit counts, and the environment it is acting in."""

    step: jax.Array  # environment steps taken
    q: jax.Array  # (states, actions)
    visits: jax.Array  # (states, actions) updates of each pair
    obs: jax.Array
    env_state: Any
    episodes: envs.Episodes


def init(env, params, key) -> QState:
    obs, env_state = env.reset(key, params)
    shape = (env.n_states, env.num_actions)
    return QState(
        step=jnp.zeros((), jnp.int32),
        q=jnp.zeros(shape, jnp.float32),
        visits=jnp.zeros(shape, jnp.int32),
        obs=obs,
        env_state=env_state,
        episodes=envs.Episodes(jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32)),
    )


def act_and_learn(env, params, hyper: Hyper, state: QState, seed):
    """One step of the agent: act epsilon-greedily, observe, update. -> (state, step record)."""
    t = state.step
    epsilon = linear_epsilon(t, hyper.eps_start, hyper.eps_end, hyper.eps_steps)
    s = state.obs
    a = epsilon_greedy(jax.random.fold_in(train.stream(seed, "step"), t), state.q[s], epsilon)
    env_key = jax.random.fold_in(train.stream(seed, "env"), t)
    obs, env_state, reward, terminated, truncated, info = env.step(
        env_key, state.env_state, a, params
    )
    visits = state.visits.at[s, a].add(1)
    alpha = hyper.alpha / visits[s, a].astype(jnp.float32) ** hyper.omega
    q, target, error = td_update(
        state.q, s, a, reward, info["final_observation"], terminated, alpha, hyper.gamma
    )
    truncated = jnp.logical_and(truncated, ~terminated)  # a goal reached at the limit ends it
    done = jnp.logical_or(terminated, truncated)
    episodes, ended_return, _ = state.episodes.record(reward, done)
    state = QState(t + 1, q, visits, obs, env_state, episodes)
    record = {
        "td_target": target,
        "td_error": error,
        "epsilon": epsilon,
        "alpha": alpha,
        "done": done,
        "episode_return": ended_return,
        "state": s,
        "action": a,
        "reward": reward,
        "terminated": terminated,
        "truncated": truncated,
    }
    return state, record


def make_epoch(env, params, hyper: Hyper, steps: int, per_step: bool = False):
    """``epoch(state, seed, epoch)``: ``steps`` steps of Q-learning in one lax.scan. Metrics are
    the epoch's means (|TD error|, TD target, alpha), the last epsilon, the episodes that ended
    and their mean return (NaN if none); ``per_step`` returns every step's record instead."""

    def epoch(state, seed, epoch):
        del epoch
        state, records = lax.scan(
            lambda state, _: act_and_learn(env, params, hyper, state, seed),
            state,
            None,
            length=steps,
        )
        if per_step:
            return state, records
        ended = records["done"].sum()
        return state, {
            "td_error": jnp.mean(jnp.abs(records["td_error"])),
            "td_target": jnp.mean(records["td_target"]),
            "alpha": jnp.mean(records["alpha"]),
            "epsilon": records["epsilon"][-1],
            "episodes": ended,
            "episode_return": jnp.where(
                ended > 0, records["episode_return"].sum() / jnp.maximum(ended, 1), jnp.nan
            ),
        }

    return epoch


def make_task(
    env, params, hyper: Hyper, steps: int, *, horizon: int | None = None, table=None
) -> train.Task:
    """The Task of tabular Q-learning. Its evaluation gives the greedy policy's exact success
    rate within ``horizon`` steps (default: the env's time limit) and, for a split holding
    ``q_star``, the largest |Q - Q*| over the states that are acted from. ``table``: the env's
    ``tabular.build`` if the caller has it (a task builder that a sweep calls inside a compiled
    function must pass it: the table is computed on the host)."""
    table = tabular.build(env, params) if table is None else table
    acted = jnp.asarray(~tabular.terminal_states(table))
    horizon = horizon or params.max_steps_in_episode

    def evaluate(state, split):
        out = {"success": tabular.policy_return(table, tabular.greedy(state.q), horizon)}
        if "q_star" in split:
            gap = jnp.abs(state.q - split["q_star"]).max(axis=1)
            out["q_error"] = jnp.max(jnp.where(acted, gap, 0.0))
        return out

    return train.Task(
        init=lambda key: init(env, params, key),
        epoch=make_epoch(env, params, hyper, steps),
        evaluate=evaluate,
        watch=("td_error",),
    )
