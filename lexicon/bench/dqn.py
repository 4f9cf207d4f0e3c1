"""Speed rows of the compiled DQN: environment steps per second, 1 seed against 16 vmapped.

One epoch of the whole training program (acting in the vectorized environments, the replay
buffer, the gradient steps and the target updates, one lax.scan) is timed at the settings of
experiments/dqn.py on CartPole-v1, past the start of learning, for one seed and for 16 seeds
vmapped into one program. From the rates follow the wall times of 500,000 environment steps
(compilation left out), set beside CleanRL's dqn_jax, which takes about 75 s of CPU wall
time for one seed of 500,000 steps. The goal: 16 seeds in less wall time than that one seed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from lexicon import train
from lexicon.bench import paired_times
from lexicon.rl import dqn, envs

CLEANRL_WALL_S = 75.0  # CleanRL dqn_jax, CartPole-v1, 500k steps, one seed, CPU
TOTAL_STEPS = 500_000


def epoch_runner(seeds: int, steps: int = 10_000, num_envs: int = 10):
    """A function that runs one epoch of ``steps`` environment steps for ``seeds`` replicas."""
    env, params = envs.make("cartpole")
    hyper = dqn.Hyper(
        num_envs=num_envs,
        iterations=steps // num_envs,
        train_every=1,
        learning_starts=10_000,
        double=True,
        eps_steps=TOTAL_STEPS // 2,
    )
    model = dqn.QNetwork(env.num_actions)
    task = dqn.make_task(env, params, model, optax.adam(2.5e-4), hyper)
    keys = jnp.arange(seeds)
    state = jax.jit(jax.vmap(lambda s: task.init(train.stream(s, "init"))))(keys)
    epoch = jax.jit(jax.vmap(task.epoch, in_axes=(0, 0, None)))
    later = jnp.int32(3)  # an epoch after learning starts: every iteration takes its update

    def run():
        jax.block_until_ready(epoch(state, keys, later))

    return run


def rows(repeats: int = 3, steps: int = 10_000) -> dict[str, float]:
    one, many = paired_times([epoch_runner(1, steps), epoch_runner(16, steps)], repeats)
    rate_one, rate_many = steps / one, 16 * steps / many
    return {
        "DQN CartPole env steps/s, 1 seed": rate_one,
        "DQN CartPole env steps/s, 16 vmapped seeds (all seeds)": rate_many,
        "DQN CartPole 500k steps, 1 seed (s)": TOTAL_STEPS / rate_one,
        "DQN CartPole 500k steps, 16 vmapped seeds (s)": 16 * TOTAL_STEPS / rate_many,
        "CleanRL dqn_jax CartPole 500k steps, 1 seed, published (s)": CLEANRL_WALL_S,
    }


if __name__ == "__main__":
    for label, value in rows().items():
        print(f"{label}: {value:.4g}")
