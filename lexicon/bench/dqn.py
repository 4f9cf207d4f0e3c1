"""Speed rows of the compiled DQN: environment steps per second, 1 seed against 16 vmapped,
and the wall time of 16 vmapped seeds trained until CartPole-v1 is solved.

Rates: one epoch of the whole training program (acting in the vectorized environments, the
replay buffer, the gradient steps and the target updates, one lax.scan) is timed at the
settings of experiments/dqn.py on CartPole-v1, past the start of learning, for one seed and
for 16 seeds vmapped into one program. From the rates follow the wall times of 500,000
environment steps (compilation left out), set beside CleanRL's dqn_jax, which takes about 75 s
of CPU wall time for one seed of 500,000 steps.

The goal is 16 seeds *solved* in less wall time than that one seed. Our run of CleanRL's settings
(the defaults of experiments/dqn.py) reaches a training return of 475 only after about
390,000 of its 500,000 steps. ``FAST`` is a setting of ours for fewer steps: 240,000 per
seed, one update per 8 steps (8 envs), batch 128, Adam 5e-4 decaying linearly to 0, target
copy every 50 updates, buffer 10,000, MLP 64-64, and epsilon 1 -> 0 over the first 5% of
training (12,000 steps), greedy after that. What decided it was the exploration: with
epsilon 1 -> 0.01 over the first 20% the 16-seed mean of the last-10% return was 473.3 (13
of 16 seeds solved on their own, two stayed near 320); over 10% it was 486.7; 1 -> 0 over 5%
gives 498.7 (16 of 16; seeds 16-31: 490.7, 13 of 16; seeds 32-47: 494.7, 15 of 16). Worse
were Polyak tau 0.01 (296.8), the Huber loss (9.4, see experiments/dqn.py), batch 256
(462.1), MLP 128-128 (458.5), buffer 30,000 (417.8), lr 1e-3 (461.0), gamma 0.98 (345.8),
a target copy every 100 updates (352.2), 208,000 steps (458.1). ``solved_run`` trains the
16 seeds through lexicon.train from nothing; its wall time includes compilation, checkpoint
and evaluation.
"""

from __future__ import annotations

import json
import pathlib
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lexicon import train
from lexicon.bench import core_devices, core_devices_env, json_from_child, paired_times
from lexicon.rl import dqn, envs

CLEANRL_WALL_S = 75.0  # CleanRL dqn_jax, CartPole-v1, 500k steps, one seed, CPU
TOTAL_STEPS = 500_000
SOLVED = 475.0
# Our fast CartPole-v1 setting: env steps = steps_per_epoch * epochs per seed.
FAST = dict(
    num_envs=8,
    steps_per_epoch=8000,
    epochs=30,
    batch_size=128,
    buffer_size=10_000,
    learning_starts=1000,
    train_every=1,
    target_every=50,
    lr=5e-4,
    hidden=(64, 64),
    eps_end=0.0,
    eps_fraction=0.05,
)


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


def fast_task(settings: dict = FAST):
    """The Task of the fast CartPole setting (Double DQN, MSE, Adam decaying linearly to 0)."""
    s = settings
    env, params = envs.make("cartpole")
    total = s["steps_per_epoch"] * s["epochs"]
    hyper = dqn.Hyper.from_config(
        s,
        iterations=s["steps_per_epoch"] // s["num_envs"],
        double=True,
        eps_steps=int(s["eps_fraction"] * total),
    )
    updates = (total - s["learning_starts"]) // (s["num_envs"] * s["train_every"])
    tx = optax.adam(optax.linear_schedule(s["lr"], 0.0, updates))
    model = dqn.QNetwork(env.num_actions, hidden=s["hidden"])
    return dqn.make_task(env, params, model, tx, hyper, eval_envs=8, eval_steps=600)


def solved_run(seeds: int = 16, settings: dict = FAST, parallel: str = "none") -> dict:
    """Trains ``seeds`` vmapped seeds of ``settings`` through lexicon.train from nothing:
    the wall time (compilation included) and, per seed, the mean return of the episodes that
    ended in the last 10% of training. ``parallel="seeds"`` spreads the seeds over the
    devices."""
    config = train.defaults()
    config.update(
        dict(seeds=seeds, epochs=settings["epochs"], eval_every=settings["epochs"], progress=False)
    )
    config.parallel = parallel
    config.steps_per_epoch = settings["steps_per_epoch"]
    with tempfile.TemporaryDirectory() as workdir:
        start = time.perf_counter()
        result = train.fit(config, fast_task(settings), None, pathlib.Path(workdir))
        wall = time.perf_counter() - start
    _, sums = result.curve("train/return_sum")
    _, counts = result.curve("train/episodes")
    last = max(1, settings["epochs"] // 10)
    final = sums[:, -last:].sum(axis=1) / np.maximum(counts[:, -last:].sum(axis=1), 1)
    return {"wall": wall, "final": final, "steps": settings["steps_per_epoch"] * settings["epochs"]}


def solved_run_on_cores(seeds: int = 16, settings: dict = FAST) -> dict:
    """``solved_run`` with the seeds spread over one host CPU device per core
    (``parallel=seeds``), in a child process that sees that many devices: each device trains
    its share of the seeds as one vmapped program, side by side with the others."""
    args = ["--solved", str(seeds), json.dumps(settings)]
    out = json_from_child("lexicon.bench.dqn", args, core_devices_env(seeds))
    return {**out, "final": np.asarray(out["final"])}


def rows(repeats: int = 3, steps: int = 10_000) -> dict[str, float]:
    one, many = paired_times([epoch_runner(1, steps), epoch_runner(16, steps)], repeats)
    rate_one, rate_many = steps / one, 16 * steps / many
    fast = solved_run(16)
    spread = solved_run_on_cores(16)
    on_cores = f"over {core_devices(16)} host devices (one per core)"
    return {
        "DQN CartPole env steps/s, 1 seed": rate_one,
        "DQN CartPole env steps/s, 16 vmapped seeds (all seeds)": rate_many,
        "DQN CartPole 500k steps, 1 seed (s)": TOTAL_STEPS / rate_one,
        "DQN CartPole 500k steps, 16 vmapped seeds (s)": 16 * TOTAL_STEPS / rate_many,
        "CleanRL dqn_jax CartPole 500k steps, 1 seed, published (s)": CLEANRL_WALL_S,
        "DQN CartPole fast setting, 16 vmapped seeds trained, compile included (s)": fast["wall"],
        "DQN CartPole fast setting, env steps per seed": float(fast["steps"]),
        "DQN CartPole fast setting, last-10% return, mean of 16 seeds": float(fast["final"].mean()),
        "DQN CartPole fast setting, seeds solved on their own (of 16)": float(
            (fast["final"] >= SOLVED).sum()
        ),
        f"DQN CartPole fast setting, 16 seeds {on_cores}, compile included (s)": spread["wall"],
        f"DQN CartPole fast setting, 16 seeds {on_cores}, last-10% return": float(
            spread["final"].mean()
        ),
        f"DQN CartPole fast setting, 16 seeds {on_cores}, seeds solved (of 16)": float(
            (spread["final"] >= SOLVED).sum()
        ),
    }


if __name__ == "__main__":
    if sys.argv[1:2] == ["--solved"]:  # the child of solved_run_on_cores
        run = solved_run(int(sys.argv[2]), json.loads(sys.argv[3]), parallel="seeds")
        print(json.dumps({**run, "final": run["final"].tolist()}))
    else:
        for label, value in rows().items():
            print(f"{label}: {value:.4g}")
