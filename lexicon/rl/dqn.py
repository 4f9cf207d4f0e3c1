"""Deep Q-learning (DQN, Mnih et al. 2015) as one pure epoch function for lexicon.train.

A Q-network maps a state to the values of every action (SPEC §11). The agent acts
epsilon-greedily on it in ``num_envs`` environments at once, stores every transition in a
replay buffer on the device, and every ``train_every`` iterations takes one gradient step on a
minibatch drawn uniformly from it [add, Mnih et al. 2015]:
    y = r + gamma (1 - terminated) Q_target(s', argmax_a' Q_target(s', a'))     (DQN)
    y = r + gamma (1 - terminated) Q_target(s', argmax_a' Q_online(s', a'))     (Double DQN,
                                                                  van Hasselt et al. 2016)
    loss = mean_batch L(Q_online(s, a) - y),  L = Huber (delta, 1 by default) or the square.
s' is the observation the transition reached even when the episode was truncated there (not
the automatic reset's), and only a termination stops the bootstrap.

The target network is a copy of the online one, updated every ``target_every`` gradient
steps as theta_target <- tau theta + (1 - tau) theta_target (tau = 1: the periodic copy of
Mnih et al.; small tau every step: Polyak averaging, Lillicrap et al. 2016).

One iteration steps all environments; an epoch is one lax.scan of ``iterations`` of them.
Whether an iteration learns or copies the target is a function of the global iteration
index (from the epoch number, the same for every replica), so under vmap over seeds the
update stays a real ``lax.cond`` instead of a select that would pay for every skipped update.
Each replica has its own streams: ``init`` for the network and the environments' first
state, ``step`` for exploration and minibatches, ``env`` for the environments' randomness.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct
from jax import lax

from lexicon import train
from lexicon.rl import envs, replay
from lexicon.rl.qlearning import epsilon_greedy, linear_epsilon

LOSSES = ("huber", "mse")


class Conv3x3(nn.Module):
    """A 3x3, stride-1, VALID convolution with ReLU-free output, computed as im2col: the nine
    shifted views of the input side by side, times the kernel reshaped to (9 C, F). Its
    parameters are flax's ``nn.Conv`` ones (kernel (3, 3, C, F), bias (F,)) and so is its value
    (tested); on XLA:CPU, and above all vmapped over seeds, where ``nn.Conv`` becomes a grouped
    convolution, the matmul is about 4x faster."""

    features: int

    @nn.compact
    def __call__(self, x):
        channels = x.shape[-1]
        kernel = self.param(
            "kernel", nn.initializers.lecun_normal(), (3, 3, channels, self.features)
        )
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        h, w = x.shape[-3] - 2, x.shape[-2] - 2
        patches = jnp.concatenate(
            [x[..., i : i + h, j : j + w, :] for i in range(3) for j in range(3)], axis=-1
        )
        return patches @ kernel.reshape(9 * channels, self.features) + bias


class QNetwork(nn.Module):
    """An MLP from the observation to one value per action; ``conv`` > 0 puts a 3x3 stride-1
    convolution with that many channels first (the MinAtar network of Young & Tian 2019:
    16 channels, then 128 units). ``obs_ndim`` is the number of axes of one observation (1 for
    a vector, 3 for an image); any leading axes are batch axes."""

    num_actions: int
    hidden: Sequence[int] = (120, 84)
    conv: int = 0
    obs_ndim: int = 1

    @nn.compact
    def __call__(self, obs):
        x = obs.astype(jnp.float32)
        if x.ndim < self.obs_ndim:  # a scalar observation (a cell index)
            x = x[..., None]
        batch = x.shape[: x.ndim - self.obs_ndim]
        if self.conv:
            x = nn.relu(Conv3x3(self.conv, name="Conv_0")(x))
        x = x.reshape(*batch, -1)
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(self.num_actions)(x)


class Hyper(NamedTuple):
    num_envs: int = 1
    iterations: int = 1000  # iterations (steps of all envs) per epoch
    gamma: float = 0.99
    batch_size: int = 128
    buffer_size: int = 10_000
    learning_starts: int = 10_000  # env steps before the first update
    train_every: int = 10  # iterations between gradient steps
    target_every: int = 50  # gradient steps between target updates
    tau: float = 1.0  # 1 = copy; < 1 = Polyak averaging
    loss: str = "mse"  # huber | mse
    huber_delta: float = 1.0  # where the Huber loss turns from square to linear
    double: bool = False
    eps_start: float = 1.0
    eps_end: float = 0.05
    eps_steps: int = 250_000  # env steps of the linear decay of epsilon

    @classmethod
    def from_config(cls, config, **overrides) -> Hyper:
        """The fields a config (or a mapping, or a sweep's traced config) has by name, then
        ``overrides`` (values the config gives only indirectly); the rest keep their defaults."""
        fields = {name: config[name] for name in cls._fields if name in config}
        return cls(**{**fields, **overrides})


class Transition(NamedTuple):
    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    next_obs: jax.Array
    terminated: jax.Array


class DQNState(struct.PyTreeNode):
    step: jax.Array  # environment steps taken (all envs)
    online: train.TrainState
    target_params: Any
    buffer: replay.Buffer
    obs: jax.Array
    env_state: Any
    episodes: envs.Episodes


def td_targets(apply_fn, params, target_params, batch: Transition, gamma, double: bool):
    """y = r + gamma (1 - terminated) Q_target(s', a*), a* by the target (DQN) or the online
    network (Double DQN); no gradient flows through y."""
    q_next = apply_fn({"params": target_params}, batch.next_obs)
    if double:
        best = jnp.argmax(apply_fn({"params": params}, batch.next_obs), axis=-1)
    else:
        best = jnp.argmax(q_next, axis=-1)
    value = jnp.take_along_axis(q_next, best[:, None], axis=-1)[:, 0]
    y = batch.reward + gamma * jnp.where(batch.terminated, 0.0, value)
    return lax.stop_gradient(y)


def q_loss(apply_fn, params, target_params, batch: Transition, hyper: Hyper):
    """The minibatch loss and the mean Q(s, a) it regressed."""
    q = apply_fn({"params": params}, batch.obs)
    q_sa = jnp.take_along_axis(q, batch.action[:, None], axis=-1)[:, 0]
    y = td_targets(apply_fn, params, target_params, batch, hyper.gamma, hyper.double)
    error = q_sa - y
    if hyper.loss == "huber":
        per_item = optax.huber_loss(error, delta=hyper.huber_delta)
    else:
        per_item = error**2
    return per_item.mean(), q_sa.mean()


def update_target(target_params, params, tau: float, due):
    """theta_target <- tau theta + (1 - tau) theta_target where ``due``, unchanged otherwise."""
    return jax.tree.map(
        lambda t, p: jnp.where(due, tau * p + (1.0 - tau) * t, t), target_params, params
    )


def update(online: train.TrainState, target_params, batch: Transition, hyper: Hyper):
    """One gradient step on a minibatch, then the target update when it is due.
    -> (online, target params, loss, mean Q(s, a))."""
    (loss, q_mean), grads = jax.value_and_grad(
        lambda p: q_loss(online.apply_fn, p, target_params, batch, hyper), has_aux=True
    )(online.params)
    online = online.apply_gradients(grads)
    due = online.step % hyper.target_every == 0
    return online, update_target(target_params, online.params, hyper.tau, due), loss, q_mean


def learn(state: DQNState, key, hyper: Hyper):
    """``update`` on a minibatch drawn uniformly from the replay buffer."""
    batch = replay.sample(state.buffer, key, hyper.batch_size)
    online, target, loss, q_mean = update(state.online, state.target_params, batch, hyper)
    return state.replace(online=online, target_params=target), loss, q_mean


def init(env, params, model: nn.Module, tx, hyper: Hyper, key) -> DQNState:
    net_key, env_key = jax.random.split(key)
    obs, env_state = envs.reset(env, params, env_key, hyper.num_envs)
    net_params = model.init(net_key, obs[:1])["params"]
    online = train.TrainState.create(apply_fn=model.apply, params=net_params, tx=tx)
    example = Transition(
        obs[0], jnp.zeros((), jnp.int32), jnp.zeros(()), obs[0], jnp.zeros((), bool)
    )
    return DQNState(
        step=jnp.zeros((), jnp.int32),
        online=online,
        target_params=net_params,
        buffer=replay.init(example, hyper.buffer_size),
        obs=obs,
        env_state=env_state,
        episodes=envs.Episodes.zeros(hyper.num_envs),
    )


def iterate(env, params, hyper: Hyper, state: DQNState, seed, it):
    """Iteration ``it`` (global, not batched over seeds): act in every env, store, maybe learn."""
    env_steps = it * hyper.num_envs
    epsilon = linear_epsilon(env_steps, hyper.eps_start, hyper.eps_end, hyper.eps_steps)
    act_key, sample_key = jax.random.split(jax.random.fold_in(train.stream(seed, "step"), it))
    q = state.online.apply_fn({"params": state.online.params}, state.obs)
    action = epsilon_greedy(act_key, q, epsilon)
    env_key = jax.random.fold_in(train.stream(seed, "env"), it)
    obs, env_state, reward, terminated, truncated, final = envs.step(
        env, params, env_key, state.env_state, action
    )
    buffer = replay.add(state.buffer, Transition(state.obs, action, reward, final, terminated))
    episodes, ended_return, ended_length = state.episodes.record(
        reward, jnp.logical_or(terminated, truncated)
    )
    state = state.replace(
        step=state.step + hyper.num_envs,
        buffer=buffer,
        obs=obs,
        env_state=env_state,
        episodes=episodes,
    )
    due = jnp.logical_and(
        it % hyper.train_every == 0, env_steps + hyper.num_envs >= hyper.learning_starts
    )
    # The minibatch is drawn outside the cond, so that the buffer does not pass through it
    # (a cond operand may be copied: the whole buffer of every seed at every iteration).
    batch = replay.sample(buffer, sample_key, hyper.batch_size)
    nan = jnp.full((), jnp.nan, jnp.float32)
    nan = _varying_like(nan, jax.tree.leaves(state.online.params)[0])  # parallel=seeds
    online, target, loss, q_mean = lax.cond(
        due,
        lambda o, t, b: update(o, t, b, hyper),
        lambda o, t, b: (o, t, nan, nan),
        state.online,
        state.target_params,
        batch,
    )
    state = state.replace(online=online, target_params=target)
    ended = jnp.logical_or(terminated, truncated)
    return state, {
        "loss": loss,
        "q": q_mean,
        "epsilon": epsilon,
        "ended": ended.sum(),
        "return_sum": ended_return.sum(),
        "length_sum": ended_length.sum(),
    }


def _varying_like(value, reference):
    """``value`` marked as varying over the mesh axes that ``reference`` varies over: under
    shard_map (parallel=seeds) both branches of a lax.cond must return the same such type,
    and the update's loss varies with the replica while a constant does not."""
    manual = getattr(jax.typeof(reference), "manual_axis_type", None)
    axes = tuple(sorted(manual.varying)) if manual is not None else ()
    return lax.pcast(value, axes, to="varying") if axes else value


def _mean_where(total, count):
    return jnp.where(count > 0, total / jnp.maximum(count, 1), jnp.nan)


def make_epoch(env, params, hyper: Hyper):
    """``epoch(state, seed, epoch)``: ``hyper.iterations`` iterations in one lax.scan. Metrics:
    the mean loss and Q(s, a) of the epoch's updates (NaN before learning starts), the last
    epsilon, the episodes that ended, their summed and mean return and mean length (NaN if
    none)."""

    def epoch(state, seed, epoch):
        first = (epoch - 1) * hyper.iterations
        its = first + jnp.arange(hyper.iterations)
        state, r = lax.scan(lambda s, it: iterate(env, params, hyper, s, seed, it), state, its)
        updates = jnp.isfinite(r["loss"]).sum()
        episodes = r["ended"].sum()
        return state, {
            "loss": _mean_where(jnp.nansum(r["loss"]), updates),
            "q": _mean_where(jnp.nansum(r["q"]), updates),
            "epsilon": r["epsilon"][-1],
            "episodes": episodes,
            "return_sum": r["return_sum"].sum(),
            "episode_return": _mean_where(r["return_sum"].sum(), episodes),
            "episode_length": _mean_where(r["length_sum"].sum(), episodes),
        }

    return epoch


def make_task(
    env, params, model: nn.Module, tx, hyper: Hyper, *, eval_envs: int = 8, eval_steps: int = 1000
) -> train.Task:
    """The Task of DQN for lexicon.train. Its evaluation is the mean return of the greedy
    policy's episodes in ``eval_envs`` environments over ``eval_steps`` steps. Nothing is
    watched by name (the loss is NaN by design before learning starts); the driver's check of
    the online network's parameters and optimizer state catches a divergence."""
    if hyper.loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, not {hyper.loss!r}")

    def evaluate(state, split):
        del split
        key = jax.random.key(0)  # the same evaluation episodes for every replica
        net = state.online.params
        return {"return": greedy_returns(env, params, model, net, key, eval_envs, eval_steps)}

    return train.Task(
        init=lambda key: init(env, params, model, tx, hyper, key),
        epoch=make_epoch(env, params, hyper),
        evaluate=evaluate,
        watch=(),
    )


def greedy_returns(env, params, model: nn.Module, net_params, key, num_envs: int, steps: int):
    """Mean return of the episodes the greedy policy finishes in ``num_envs`` envs over
    ``steps`` iterations (NaN if none ends)."""
    obs, env_state = envs.reset(env, params, key, num_envs)

    def body(carry, k):
        obs, env_state, episodes = carry
        action = jnp.argmax(model.apply({"params": net_params}, obs), axis=-1)
        obs, env_state, reward, terminated, truncated, _ = envs.step(
            env, params, k, env_state, action
        )
        done = jnp.logical_or(terminated, truncated)
        episodes, ended, _ = episodes.record(reward, done)
        return (obs, env_state, episodes), (ended.sum(), done.sum())

    keys = jax.random.split(jax.random.fold_in(key, 1), steps)
    _, (total, count) = lax.scan(body, (obs, env_state, envs.Episodes.zeros(num_envs)), keys)
    return _mean_where(total.sum(), count.sum())
