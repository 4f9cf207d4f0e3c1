"""The compiled program of a run: init, one epoch and evaluation of every replica.

Replica i of a run uses ``jax.random.key(config.seed + i)``, split into named streams:
``init`` for the parameters, ``data`` for the shuffling (``fold_in(data, epoch)``), ``step``
for the randomness of each step (``fold_in(step, global_step)``) and ``env`` for a topic's
environment. Every key is a function of the seed and the position in training, so a resumed
run is identical to one that never stopped.

An epoch is one of four kinds, chosen by what the run trains on:
- **shared data**: a shuffle of the training arrays cut into minibatches, one ``lax.scan``
  over the step (``config.epoch_loop=dispatch``: a Python loop of one jitted step per
  minibatch, same shuffles and keys, the faster loop for conv nets on XLA:CPU);
- **per-replica data**: the same, with each replica's own arrays (a leading seed axis);
- **data-free**: ``config.steps_per_epoch`` steps that get ``batch=None`` (an RL rollout and
  update, a federated round, a GAN update on fresh noise);
- **a topic's own epoch**: ``Task.epoch(state, seed, epoch) -> (state, metrics)``, any pure
  function of one replica.

Devices share the work in one of two ways (``config.parallel``):
- ``data``: every device holds the replicated state and takes a slice of each minibatch; the
  per-device step averages gradients with ``lax.pmean``. It is mapped by ``jax.shard_map`` or,
  with ``config.mapper=pmap``, by ``jax.pmap``.
- ``seeds``: the seed axis is spread over the devices, each training its own replicas.
The same code runs on several processes after ``jax.distributed.initialize``; the mesh then
spans every process's devices.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from lexicon.rules import ConfigError
from lexicon.train import shuffle

STREAMS = ("init", "data", "step", "env")
INT32_MAX = 2**31 - 1


def stream(seed, name: str) -> jax.Array:
    """The named random stream of a replica: fold_in(key(seed), index of name)."""
    return jax.random.fold_in(jax.random.key(seed), STREAMS.index(name))


def replica_seeds(config) -> np.ndarray:
    """The seeds of the replicas of a run: config.seed, ..., config.seed + config.seeds - 1."""
    return np.arange(config.seed, config.seed + config.seeds, dtype=np.int64).astype(np.int32)


def init_states(config, task):
    """The states ``task.init`` gives the replicas of this config (leading seed axis): the
    start of a run, for a caller that changes it before handing it to ``fit`` as
    ``initial_state`` (e.g. pretrained layers put into fresh networks)."""
    seeds = replica_seeds(config)
    return jax.jit(jax.vmap(lambda seed: task.init(stream(seed, "init"))))(seeds)


def batch_size_of(config, num_examples: int) -> int:
    return num_examples if config.batch_size == 0 else config.batch_size


def steps_per_epoch(config, num_examples: int | None = None) -> int:
    """Steps in one epoch: minibatches of ``num_examples`` (remainder left out), or, for a
    data-free run (``num_examples=None``), ``config.steps_per_epoch``."""
    if num_examples is None:
        return int(config.get("steps_per_epoch", 0))
    return num_examples // batch_size_of(config, num_examples)


def num_examples_of(data, per_replica: bool) -> int:
    leaf = jax.tree.leaves(data)[0]
    return int(np.shape(leaf)[1 if per_replica else 0])


def check_config(
    config,
    num_train: int | None,
    *,
    per_replica: bool = False,
    custom=False,
    replicas: int | None = None,
) -> int:
    """Checks what depends on the data and the devices; returns the batch size (0 when the run
    has no data). ``replicas``: a sweep's grid points x seeds (default config.seeds)."""
    devices = jax.device_count()
    if config.parallel == "seeds" and (replicas or config.seeds) % devices:
        if replicas and replicas != config.seeds:
            raise ConfigError(
                f"the sweep's {replicas} replicas (grid points x config.seeds={config.seeds}) "
                f"must be divisible by the {devices} devices for parallel=seeds"
            )
        raise ConfigError(
            f"config.seeds={config.seeds} must be divisible by the {devices} devices "
            f"for parallel=seeds"
        )
    if config.parallel != "none" and config.get("epoch_loop", "scan") != "scan":
        raise ConfigError(
            f"config.epoch_loop={config.epoch_loop} runs on one device; use parallel=none "
            f"or epoch_loop=scan"
        )
    if config.parallel == "seeds" and config.mapper == "pmap":
        raise ConfigError("config.mapper=pmap applies to parallel=data; use shard_map for seeds")
    if config.seed < 0 or config.seed + config.seeds - 1 > INT32_MAX:
        raise ConfigError(
            f"config.seed={config.seed} with config.seeds={config.seeds} leaves the seed range "
            f"[0, {INT32_MAX}]"
        )
    if custom or num_train is None:
        if config.parallel == "data":
            raise ConfigError(
                "config.parallel=data splits minibatches of training data; this run has none, "
                "use parallel=none or seeds"
            )
        if not custom and steps_per_epoch(config) < 1:
            raise ConfigError(
                "a run without training data needs config.steps_per_epoch >= 1 "
                f"(got {config.get('steps_per_epoch')})"
            )
        steps = steps_per_epoch(config) if not custom else 1
        _check_total_steps(config, steps)
        return 0
    if per_replica and config.parallel == "data":
        raise ConfigError("per-replica data runs with parallel=none or seeds, not data")
    if num_train < 1:
        raise ConfigError("the training split is empty")
    batch_size = batch_size_of(config, num_train)
    if batch_size > num_train:
        raise ConfigError(
            f"config.batch_size={batch_size} exceeds the {num_train} training examples; "
            f"use 0 for full batch or a value in [1, {num_train}]"
        )
    if config.parallel == "data" and batch_size % devices:
        raise ConfigError(
            f"config.batch_size={batch_size} must be divisible by the {devices} devices "
            f"for parallel=data"
        )
    _check_total_steps(config, num_train // batch_size)
    return batch_size


def _check_total_steps(config, per_epoch: int) -> None:
    if config.epochs * per_epoch > INT32_MAX:
        raise ConfigError(
            f"config.epochs={config.epochs} x {per_epoch} steps per epoch overflows the int32 "
            f"step counter; train at most {INT32_MAX // per_epoch} epochs"
        )


def _epoch_order(seed, num_examples: int, epoch, batch_size: int) -> jax.Array:
    """The minibatches of one replica's epoch: a shuffle cut into (batches, batch_size) indices;
    the remainder is left out of this epoch."""
    num_batches = num_examples // batch_size
    order = shuffle.permutation(jax.random.fold_in(stream(seed, "data"), epoch), num_examples)
    return order[: num_batches * batch_size].reshape(num_batches, batch_size)


def _indexed_step(step, state, step_key, arrays, indices):
    """One step on the examples at ``indices``, with the key of the state's step count."""
    batch = jax.tree.map(lambda a: a[indices], arrays)
    return step(state, batch, jax.random.fold_in(step_key, state.step))


def _data_epoch(step, state, seed, arrays, epoch, *, batch_size, axis_name, num_shards):
    """One epoch of one replica on one device: shuffle, cut into minibatches, scan the step."""
    num_examples = jax.tree.leaves(arrays)[0].shape[0]
    order = _epoch_order(seed, num_examples, epoch, batch_size)
    step_key = stream(seed, "step")
    if axis_name is not None:
        shard = batch_size // num_shards
        device = lax.axis_index(axis_name)
        order = lax.dynamic_slice_in_dim(order, device * shard, shard, axis=1)
        step_key = jax.random.fold_in(step_key, device)

    def body(state, indices):
        return _indexed_step(step, state, step_key, arrays, indices)

    return lax.scan(body, state, order)


def _free_epoch(step, state, seed, arrays, epoch, *, steps):
    """One data-free epoch of one replica: ``steps`` steps, each given ``batch=None``."""
    del arrays, epoch
    step_key = stream(seed, "step")

    def body(state, _):
        return step(state, None, jax.random.fold_in(step_key, state.step))

    return lax.scan(body, state, None, length=steps)


def _custom_epoch(epoch_fn, state, seed, arrays, epoch):
    """A topic's own epoch; scalar metrics count as an epoch of one step."""
    del arrays
    state, metrics = epoch_fn(state, seed, epoch)
    return state, jax.tree.map(lambda m: jnp.reshape(m, (-1,)) if jnp.ndim(m) == 0 else m, metrics)


def _dispatch_loop(replica_step, *, batch_size, steps, data_in_axis):
    """The epoch as a Python loop that calls ``replica_step(*lead, state, seeds, arrays,
    indices)``, one jitted step of every replica, per minibatch (or per data-free step)."""
    orders = jax.jit(jax.vmap(_epoch_order, in_axes=(0, None, None, None)), static_argnums=(1, 3))

    def epoch(*args):
        *lead, state, seeds, arrays, epoch = args
        if batch_size:
            num_examples = jax.tree.leaves(arrays)[0].shape[1 if data_in_axis == 0 else 0]
            order = orders(seeds, num_examples, epoch, batch_size)
            batches = [order[:, b] for b in range(order.shape[1])]
        else:
            batches = [None] * steps
        metrics = []
        for indices in batches:
            state, m = replica_step(*lead, state, seeds, arrays, indices)
            metrics.append(m)
        return state, jax.tree.map(lambda *ms: jnp.stack(ms, axis=1), *metrics)

    return epoch


def _dispatched_epoch(step, *, batch_size, steps, data_in_axis):
    """The epoch as a Python loop that calls one jitted step of every replica per minibatch
    (or per data-free step). Same shuffles, keys and updates as the scanned epoch."""

    def one(state, seed, arrays, indices):
        if indices is None:
            return step(state, None, jax.random.fold_in(stream(seed, "step"), state.step))
        return _indexed_step(step, state, stream(seed, "step"), arrays, indices)

    replica_step = jax.jit(jax.vmap(one, in_axes=(0, 0, data_in_axis, 0)))
    return _dispatch_loop(
        replica_step, batch_size=batch_size, steps=steps, data_in_axis=data_in_axis
    )


def _finite(tree) -> jax.Array:
    """Per replica: True where every float leaf is finite (leaves lead with the seed axis)."""
    flags = [
        jnp.all(jnp.isfinite(leaf).reshape(leaf.shape[0], -1), axis=1)
        for leaf in jax.tree.leaves(tree)
        if jnp.issubdtype(leaf.dtype, jnp.inexact) and leaf.ndim >= 1
    ]
    if not flags:
        return None
    return functools.reduce(jnp.logical_and, flags)


def guarded(state):
    """The parts of a state that must stay finite: the parameters, optimizer states and model
    states (batch statistics) of every TrainState-like node in it (anything with ``params``
    and ``opt_state``), or the whole state when it has none. Other fields (a best-so-far of
    +inf, a replay buffer) may hold non-finite values on purpose."""
    found = []

    def is_trainer(node):
        return hasattr(node, "params") and hasattr(node, "opt_state")

    for node in jax.tree.leaves(state, is_leaf=is_trainer):
        if is_trainer(node):
            found.append((node.params, node.opt_state, getattr(node, "model_state", None)))
    return found if found else state


class Program:
    """The compiled pieces of one configuration: ``init(seeds)``, ``epoch(state, seeds, data,
    epoch)``, ``evaluate(state, split)`` and ``finite(state)``, each over every replica."""

    def __init__(
        self,
        task,
        config,
        *,
        batch_size: int = 0,
        per_replica: bool = False,
        build=None,
        swept: tuple[str, ...] = (),
    ):
        if swept:
            return self._swept(task, config, batch_size, per_replica, build, swept)
        self.hparams = None
        self.uses_pmap = config.parallel == "data" and config.mapper == "pmap"
        self._place(config, per_replica)
        data_axis = 0 if per_replica else None
        init = jax.vmap(lambda seed: task.init(stream(seed, "init")))

        if task.epoch is not None:
            local = functools.partial(_custom_epoch, task.epoch)
        elif batch_size:
            local = functools.partial(
                _data_epoch, batch_size=batch_size, axis_name=None, num_shards=1
            )
        else:
            local = functools.partial(_free_epoch, steps=steps_per_epoch(config))

        def over_replicas(step):
            fn = functools.partial(local, step) if task.epoch is None else local
            return jax.vmap(fn, in_axes=(0, 0, data_axis, None))

        if config.parallel == "none":
            self.init = jax.jit(init)
            if config.get("epoch_loop", "scan") == "dispatch" and task.epoch is None:
                self.epoch = _dispatched_epoch(
                    task.make_step(None),
                    batch_size=batch_size,
                    steps=steps_per_epoch(config),
                    data_in_axis=data_axis,
                )
            else:
                self.epoch = jax.jit(over_replicas(_maybe_step(task, None)))
        elif config.parallel == "seeds":
            self.init = jax.jit(init, out_shardings=self.seed_sharding)
            data_spec = P("seeds") if per_replica else P()
            mapped = jax.shard_map(
                over_replicas(_maybe_step(task, None)),
                mesh=self.mesh,
                in_specs=(P("seeds"), P("seeds"), data_spec, P()),
                out_specs=(P("seeds"), P("seeds")),
            )
            self.epoch = jax.jit(mapped)
        else:
            self.init = jax.jit(init, out_shardings=self.replicated)
            local = functools.partial(
                _data_epoch,
                task.make_step("data"),
                batch_size=batch_size,
                axis_name="data",
                num_shards=self.num_devices,
            )
            local = jax.vmap(local, in_axes=(0, 0, None, None))
            if config.mapper == "pmap":
                mapped = jax.pmap(local, axis_name="data", in_axes=(None, None, None, 0))
                self.epoch = lambda state, seeds, arrays, epoch: jax.tree.map(
                    lambda x: x[0],
                    mapped(state, seeds, arrays, np.full(jax.local_device_count(), epoch)),
                )
            else:
                # check_vma=False keeps pmap's semantics: gradients of the replicated params
                # stay per-device until the step's own lax.pmean averages them. (With the
                # check on, shard_map would already sum them across devices.)
                mapped = jax.shard_map(
                    local,
                    mesh=self.mesh,
                    in_specs=(P(), P(), P(), P()),
                    out_specs=(P(), P()),
                    check_vma=False,
                )
                self.epoch = jax.jit(mapped)
        self.evaluate = None
        if task.evaluate is not None:
            self.evaluate = jax.jit(jax.vmap(task.evaluate, in_axes=(0, None)))
        self.finite = jax.jit(lambda state: _finite(guarded(state)))
        self.keep = jax.jit(_keep)

    def _place(self, config, per_replica: bool) -> None:
        """The device mesh and the shardings of the state (seeds), the data and the rest."""
        self.parallel = config.parallel
        self.per_replica = per_replica
        devices = jax.devices()
        self.num_devices = len(devices)
        axis = "seeds" if config.parallel == "seeds" else "data"
        self.mesh = jax.make_mesh(
            (self.num_devices,), (axis,), axis_types=(jax.sharding.AxisType.Auto,), devices=devices
        )
        replicated = NamedSharding(self.mesh, P())
        self.seed_sharding = NamedSharding(self.mesh, P("seeds")) if axis == "seeds" else replicated
        self.replicated = replicated
        self.data_sharding = self.seed_sharding if per_replica else replicated

    def _swept(self, task, config, batch_size, per_replica, build, swept):
        """The same pieces for a sweep: every function also takes the swept values of each
        replica (``self.hparams``, key -> (replicas,) float32) and builds the task from them
        inside its trace (lexicon.train.sweep)."""
        self.uses_pmap = False
        if config.parallel == "data" and config.mapper == "pmap":
            raise ConfigError("a sweep runs with mapper=shard_map; pmap does not take it")
        if task.init is None:
            raise ConfigError("a sweep needs a task builder whose task has an init")
        self._place(config, per_replica)
        self.hparams = None
        data_axis = 0 if per_replica else None
        canonical = jax.tree.structure(jax.eval_shape(task.init, jax.random.key(0)))

        def bound(hp):
            """The task of these swept values, and the state structure its init gives."""
            from lexicon.train.sweep import SweptConfig

            built = build(SweptConfig(config, hp))
            return built, jax.tree.structure(jax.eval_shape(built.init, jax.random.key(0)))

        def rebind(state, treedef):
            return jax.tree.unflatten(treedef, jax.tree.leaves(state))

        def init(hp, seed):
            built, _ = bound(hp)
            return rebind(built.init(stream(seed, "init")), canonical)

        def epoch_of(axis_name, num_shards):
            def one(hp, state, seed, arrays, epoch):
                built, treedef = bound(hp)
                state = rebind(state, treedef)
                if built.epoch is not None:
                    state, metrics = _custom_epoch(built.epoch, state, seed, arrays, epoch)
                elif batch_size:
                    state, metrics = _data_epoch(
                        built.make_step(axis_name),
                        state,
                        seed,
                        arrays,
                        epoch,
                        batch_size=batch_size,
                        axis_name=axis_name,
                        num_shards=num_shards,
                    )
                else:
                    state, metrics = _free_epoch(
                        built.make_step(axis_name),
                        state,
                        seed,
                        arrays,
                        epoch,
                        steps=steps_per_epoch(config),
                    )
                return rebind(state, canonical), metrics

            return one

        if config.parallel == "none":
            self._init = jax.jit(jax.vmap(init))
            if config.get("epoch_loop", "scan") == "dispatch" and task.epoch is None:
                self._epoch = _dispatched_sweep_epoch(
                    bound,
                    rebind,
                    canonical,
                    batch_size=batch_size,
                    steps=steps_per_epoch(config),
                    data_in_axis=data_axis,
                )
            else:
                self._epoch = jax.jit(
                    jax.vmap(epoch_of(None, 1), in_axes=(0, 0, 0, data_axis, None))
                )
        elif config.parallel == "seeds":
            self._init = jax.jit(jax.vmap(init), out_shardings=self.seed_sharding)
            data_spec = P("seeds") if per_replica else P()
            self._epoch = jax.jit(
                jax.shard_map(
                    jax.vmap(epoch_of(None, 1), in_axes=(0, 0, 0, data_axis, None)),
                    mesh=self.mesh,
                    in_specs=(P("seeds"), P("seeds"), P("seeds"), data_spec, P()),
                    out_specs=(P("seeds"), P("seeds")),
                )
            )
        else:
            self._init = jax.jit(jax.vmap(init), out_shardings=self.replicated)
            self._epoch = jax.jit(
                jax.shard_map(
                    jax.vmap(epoch_of("data", self.num_devices), in_axes=(0, 0, 0, None, None)),
                    mesh=self.mesh,
                    in_specs=(P(), P(), P(), P(), P()),
                    out_specs=(P(), P()),
                    check_vma=False,
                )
            )
        self._evaluate = None
        if task.evaluate is not None:

            def evaluate(hp, state, split):
                built, treedef = bound(hp)
                return built.evaluate(rebind(state, treedef), split)

            self._evaluate = jax.jit(jax.vmap(evaluate, in_axes=(0, 0, None)))
            self.evaluate = lambda state, split: self._evaluate(self.hparams, state, split)
        else:
            self.evaluate = None
        self.init = lambda seeds: self._init(self.hparams, seeds)
        self.epoch = lambda state, seeds, arrays, epoch: self._epoch(
            self.hparams, state, seeds, arrays, epoch
        )
        self.finite = jax.jit(lambda state: _finite(guarded(state)))
        self.keep = jax.jit(_keep)

    def put(self, tree, sharding=None):
        """Host arrays -> arrays laid out on the mesh (global arrays across processes)."""
        if self.parallel == "none" or self.uses_pmap:
            return jax.tree.map(jnp.asarray, tree)
        sharding = sharding or self.replicated
        return jax.tree.map(
            lambda x: jax.make_array_from_callback(
                np.shape(x), sharding, lambda i: np.asarray(x)[i]
            ),
            tree,
        )


def _dispatched_sweep_epoch(bound, rebind, canonical, *, batch_size, steps, data_in_axis):
    """``_dispatched_epoch`` for a sweep: one jitted step of every replica per minibatch, with
    the replicas' swept values ``hp`` as the first argument."""

    def one(hp, state, seed, arrays, indices):
        built, treedef = bound(hp)
        step = built.make_step(None)
        state = rebind(state, treedef)
        if indices is None:
            state, metrics = step(state, None, jax.random.fold_in(stream(seed, "step"), state.step))
        else:
            state, metrics = _indexed_step(step, state, stream(seed, "step"), arrays, indices)
        return rebind(state, canonical), metrics

    replica_step = jax.jit(jax.vmap(one, in_axes=(0, 0, 0, data_in_axis, 0)))
    return _dispatch_loop(
        replica_step, batch_size=batch_size, steps=steps, data_in_axis=data_in_axis
    )


def _maybe_step(task, axis_name):
    return None if task.epoch is not None else task.make_step(axis_name)


def _keep(healthy, new, old):
    """Per replica: the new state where ``healthy``, the old one elsewhere."""

    def pick(a, b):
        mask = healthy.reshape(healthy.shape + (1,) * (a.ndim - 1))
        return jnp.where(mask, a, b)

    return jax.tree.map(pick, new, old)


def to_host(tree):
    """Device arrays -> NumPy, gathering the shards of arrays that span several processes."""

    def fetch(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            if x.is_fully_replicated:
                return np.asarray(x.addressable_data(0))
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x)

    return jax.tree.map(fetch, tree)
