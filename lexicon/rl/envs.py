"""Environments: gymnax's, by short name, a grid world of our own, and vectorized stepping.

The agent/environment vocabulary of SPEC §11: at time t the agent in state S_t takes action
A_t; the environment answers with the reward R_{t+1} and the next state S_{t+1}. gymnax
(1.0.x) environments are pure JAX functions: ``reset(key, params) -> (obs, state)`` and
``step(key, state, action, params) -> (obs, state, reward, terminated, truncated, info)``, with
an automatic reset: when an episode ends, ``obs`` is already the first observation of the
next one and the observation the episode ended on is ``info["final_observation"]``.

Terminated and truncated differ. A termination (the pole fell, the agent fell in a hole) is
the end of the task: nothing follows, and a value target must not bootstrap through it. A
truncation (the time limit) is an artefact of training: the state still has a future, and
the target bootstraps from the final observation's value.

``GridWorld`` is an open grid of our own: the agent moves up, down, left or right (a move into
a wall stays), reaching the goal gives reward 1 and ends the episode, every other step gives 0.
Its optimal values are known in closed form: with d(s) the Manhattan distance to the goal,
    Q*(s, a) = gamma^d(s'),   V*(s) = gamma^(d(s) - 1)   (s' the cell that a leads to),
since the shortest route from s' needs d(s') more moves and only the last one is rewarded.
"""

from __future__ import annotations

from typing import Any

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces
from gymnax.environments.misc import frozen_lake

# Short names -> (gymnax id, keyword arguments of its constructor).
GYMNAX = {
    "cartpole": ("CartPole-v1", {}),
    "acrobot": ("Acrobot-v1", {}),
    "mountaincar": ("MountainCar-v0", {}),
    "breakout-minatar": ("Breakout-MinAtar", {}),
    "frozenlake-4x4": ("FrozenLake-misc", {"map_name": "4x4", "is_slippery": False}),
    "frozenlake-4x4-slippery": ("FrozenLake-misc", {"map_name": "4x4", "is_slippery": True}),
    "frozenlake-8x8": ("FrozenLake-misc", {"map_name": "8x8", "is_slippery": False}),
    "frozenlake-8x8-slippery": ("FrozenLake-misc", {"map_name": "8x8", "is_slippery": True}),
}
NAMES = (*GYMNAX, "gridworld")
# The four moves, in FrozenLake's order: left, down, right, up, as (row, column) steps.
MOVES = np.array(((0, -1), (1, 0), (0, 1), (-1, 0)))
ARROWS = "←↓→↑"


@struct.dataclass
class GridState(environment.EnvState):
    position: jax.Array
    time: int


@struct.dataclass
class GridParams(environment.EnvParams):
    max_steps_in_episode: int = 100


class GridWorld(environment.Environment[GridState, GridParams]):
    """An open rows x cols grid: start in a corner, goal in the opposite corner (by default).

    Observations are the row-major cell index, as in FrozenLake, so the tabular code serves
    both.
    """

    def __init__(self, rows: int = 4, cols: int = 5, start: int = 0, goal: int | None = None):
        self.nrow, self.ncol = rows, cols
        self.n_states = rows * cols
        self.start = start
        self.goal = self.n_states - 1 if goal is None else goal

    @property
    def default_params(self) -> GridParams:
        return GridParams()

    @property
    def name(self) -> str:
        return "GridWorld"

    @property
    def num_actions(self) -> int:
        return 4

    def step_env(self, key, state, action, params):
        del key
        row, col = jnp.divmod(state.position, self.ncol)
        move = jnp.asarray(MOVES)[action]
        row = jnp.clip(row + move[0], 0, self.nrow - 1)
        col = jnp.clip(col + move[1], 0, self.ncol - 1)
        position = row * self.ncol + col
        state = GridState(position=position, time=state.time + 1)
        at_goal = position == self.goal
        return position, state, at_goal.astype(jnp.float32), at_goal, {}

    def reset_env(self, key, params):
        del key
        state = GridState(position=jnp.asarray(self.start, jnp.int32), time=0)
        return state.position, state

    def is_terminated(self, state, params):
        return state.position == self.goal

    def action_space(self, params=None):
        return spaces.Discrete(4)

    def observation_space(self, params):
        return spaces.Discrete(self.n_states)

    def distances(self) -> np.ndarray:
        """d(s): the Manhattan distance of every cell to the goal."""
        rows, cols = np.divmod(np.arange(self.n_states), self.ncol)
        goal_row, goal_col = divmod(self.goal, self.ncol)
        return np.abs(rows - goal_row) + np.abs(cols - goal_col)

    def optimal_q(self, gamma: float) -> np.ndarray:
        """Q*(s, a) = gamma^d(s') in closed form (float64); 0 at the goal, which ends the
        episode and is never acted from."""
        d = self.distances()
        rows, cols = np.divmod(np.arange(self.n_states), self.ncol)
        nxt_r = np.clip(rows[:, None] + MOVES[None, :, 0], 0, self.nrow - 1)
        nxt_c = np.clip(cols[:, None] + MOVES[None, :, 1], 0, self.ncol - 1)
        q = gamma ** d[nxt_r * self.ncol + nxt_c].astype(np.float64)
        q[self.goal] = 0.0
        return q


def make(name: str, **kwargs) -> tuple[Any, Any]:
    """(env, default params) for a short name of ``NAMES`` (or any gymnax id)."""
    if name == "gridworld":
        env = GridWorld(**kwargs)
        return env, env.default_params
    gymnax_id, defaults = GYMNAX.get(name, (name, {}))
    return gymnax.make(gymnax_id, **{**defaults, **kwargs})


def is_tabular(env) -> bool:
    """Whether the observations are cell indices of a finite grid (FrozenLake, GridWorld)."""
    return isinstance(env, (GridWorld, frozen_lake.FrozenLake))


def state_at(env, position: int | jax.Array):
    """The environment state of a tabular env with the agent at ``position``, at time 0."""
    position = jnp.asarray(position, jnp.int32)
    if isinstance(env, GridWorld):
        return GridState(position=position, time=0)
    return frozen_lake.EnvState(position=position, time=0)


def grid_map(env) -> list[str]:
    """The map as rows of letters: S start, F free (or frozen), H hole, G goal."""
    if isinstance(env, GridWorld):
        cells = ["F"] * env.n_states
        cells[env.start], cells[env.goal] = "S", "G"
    else:
        cells = ["SFHG"[t] for t in np.asarray(env.desc).reshape(-1)]
    return ["".join(cells[r * env.ncol : (r + 1) * env.ncol]) for r in range(env.nrow)]


# ---------------------------------------------------------------------------------------------
# Vectorized environments and episode bookkeeping


class Episodes(struct.PyTreeNode):
    """Per environment: the return and length of the running episode."""

    returns: jax.Array
    lengths: jax.Array

    @classmethod
    def zeros(cls, num_envs: int) -> Episodes:
        return cls(jnp.zeros(num_envs, jnp.float32), jnp.zeros(num_envs, jnp.int32))

    def record(self, reward, done) -> tuple[Episodes, jax.Array, jax.Array]:
        """Adds a step; returns the new bookkeeping and, per env, the finished episode's return
        and length (0 where no episode ended)."""
        returns = self.returns + reward
        lengths = self.lengths + 1
        ended_return = jnp.where(done, returns, 0.0)
        ended_length = jnp.where(done, lengths, 0)
        keep = ~done
        return Episodes(returns * keep, lengths * keep), ended_return, ended_length


def reset(env, params, key, num_envs: int):
    """Resets ``num_envs`` environments, each with its own key."""
    return jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, num_envs), params)


def step(env, params, key, states, actions):
    """Steps every environment with its own key: (obs, states, reward, terminated, truncated,
    final_obs), where final_obs is the observation each transition reached (before an
    automatic reset)."""
    keys = jax.random.split(key, actions.shape[0])
    obs, states, reward, terminated, truncated, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
        keys, states, actions, params
    )
    # A time limit reached on the terminating step is still a termination.
    truncated = jnp.logical_and(truncated, ~terminated)
    return obs, states, reward, terminated, truncated, info["final_observation"]
