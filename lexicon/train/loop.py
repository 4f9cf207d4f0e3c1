"""The training loop: an epoch is one compiled lax.scan, seeds are a vmap axis.

``fit`` trains ``config.seeds`` independent replicas of a task in one program. Replica i
uses ``jax.random.key(config.seed + i)``, split into named streams: ``init`` for the
parameters, ``data`` for the shuffling (``fold_in(data, epoch)``) and ``step`` for the
randomness of each step (``fold_in(step, global_step)``). Every key is a function of the
seed and the position in training, so a resumed run is identical to one that never stopped.
With ``config.epoch_loop=dispatch`` the epoch is instead a Python loop over one jitted step
per minibatch (same shuffles and keys), the faster loop for conv nets on XLA:CPU.

Devices share the work in one of two ways (``config.parallel``):
- ``data``: every device holds the replicated state and takes a slice of each minibatch;
  the per-device step averages gradients with ``lax.pmean``. It is mapped by
  ``jax.shard_map`` or, with ``config.mapper=pmap``, by ``jax.pmap``.
- ``seeds``: the seed axis is spread over the devices, each training its own replicas.
The same code runs on several processes after ``jax.distributed.initialize``; the mesh then
spans every process's devices.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from lexicon.rules import ConfigError
from lexicon.train.checkpoint import Checkpointer
from lexicon.train.metrics import MetricWriter, read, to_json
from lexicon.train.steps import StepFactory

STREAMS = ("init", "data", "step", "env")


class TrainingDiverged(RuntimeError):
    """A metric became NaN or infinite; training stopped at that step."""


@dataclasses.dataclass(frozen=True)
class Task:
    """What an experiment hands to ``fit``.

    init: key -> TrainState of one replica; None for a task that fit always starts from an
      ``initial_state``.
    step: axis name (or None) -> ``step(state, batch, key) -> (state, metrics)``.
    evaluate: (state, split) -> dict of scalar metrics for one replica, or None.
    """

    init: Callable[[jax.Array], Any] | None
    step: StepFactory
    evaluate: Callable[[Any, dict], dict] | None = None


@dataclasses.dataclass
class Result:
    state: Any  # the final TrainState, with a leading seed axis
    history: list[dict]  # the records of metrics.jsonl, one per epoch
    step_metrics: list[dict]  # per epoch: metric -> array (seeds, steps in the epoch)

    def final(self, key: str) -> np.ndarray:
        """Per-seed values of ``key`` in the last record that has it."""
        for record in reversed(self.history):
            if key in record:
                return np.asarray(record[key])
        raise KeyError(key)


def stream(seed, name: str) -> jax.Array:
    """The named random stream of a replica: fold_in(key(seed), index of name)."""
    return jax.random.fold_in(jax.random.key(seed), STREAMS.index(name))


def batch_size_of(config, num_examples: int) -> int:
    return num_examples if config.batch_size == 0 else config.batch_size


def _epoch_order(seed, num_examples: int, epoch, batch_size: int) -> jax.Array:
    """The minibatches of one replica's epoch: a shuffle cut into (batches, batch_size) indices;
    the remainder is left out of this epoch."""
    num_batches = num_examples // batch_size
    order = jax.random.permutation(jax.random.fold_in(stream(seed, "data"), epoch), num_examples)
    return order[: num_batches * batch_size].reshape(num_batches, batch_size)


def _indexed_step(step, state, step_key, arrays, indices):
    """One step on the examples at ``indices``, with the key of the state's step count."""
    batch = jax.tree.map(lambda a: a[indices], arrays)
    return step(state, batch, jax.random.fold_in(step_key, state.step))


def _device_epoch(step, state, seed, arrays, epoch, *, batch_size, axis_name, num_shards):
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


def _dispatched_epoch(step, *, batch_size):
    """The epoch as a Python loop that calls one jitted step of every replica per minibatch.

    Same shuffles, keys and updates as the scanned epoch; on XLA:CPU it is the faster loop for
    convolution nets, whose weight-gradient convolutions run slowly inside a compiled loop.
    """
    orders = jax.jit(jax.vmap(_epoch_order, in_axes=(0, None, None, None)), static_argnums=(1, 3))
    replica_step = jax.jit(
        jax.vmap(
            lambda state, seed, arrays, indices: _indexed_step(
                step, state, stream(seed, "step"), arrays, indices
            ),
            in_axes=(0, 0, None, 0),
        )
    )

    def epoch(state, seeds, arrays, epoch):
        num_examples = jax.tree.leaves(arrays)[0].shape[0]
        order = orders(seeds, num_examples, epoch, batch_size)
        metrics = []
        for b in range(order.shape[1]):
            state, m = replica_step(state, seeds, arrays, order[:, b])
            metrics.append(m)
        return state, jax.tree.map(lambda *ms: jnp.stack(ms, axis=1), *metrics)

    return epoch


class _Program:
    """The compiled pieces of one configuration: init, epoch and evaluation."""

    def __init__(self, task: Task, config, batch_size: int):
        self.parallel = config.parallel
        self.uses_pmap = config.parallel == "data" and config.mapper == "pmap"
        devices = jax.devices()
        self.num_devices = len(devices)
        axis = "seeds" if config.parallel == "seeds" else "data"
        self.mesh = jax.make_mesh(
            (self.num_devices,), (axis,), axis_types=(jax.sharding.AxisType.Auto,), devices=devices
        )
        replicated = NamedSharding(self.mesh, P())
        self.seed_sharding = NamedSharding(self.mesh, P("seeds")) if axis == "seeds" else replicated
        self.replicated = replicated
        epoch = functools.partial(_device_epoch, batch_size=batch_size)
        init = jax.vmap(lambda seed: task.init(stream(seed, "init")))

        if config.parallel == "none":
            self.init = jax.jit(init)
            if config.get("epoch_loop", "scan") == "dispatch":
                self.epoch = _dispatched_epoch(task.step(None), batch_size=batch_size)
            else:
                local = functools.partial(epoch, task.step(None), axis_name=None, num_shards=1)
                self.epoch = jax.jit(jax.vmap(local, in_axes=(0, 0, None, None)))
        elif config.parallel == "seeds":
            self.init = jax.jit(init, out_shardings=self.seed_sharding)
            local = functools.partial(epoch, task.step(None), axis_name=None, num_shards=1)
            mapped = jax.shard_map(
                jax.vmap(local, in_axes=(0, 0, None, None)),
                mesh=self.mesh,
                in_specs=(P("seeds"), P("seeds"), P(), P()),
                out_specs=(P("seeds"), P("seeds")),
            )
            self.epoch = jax.jit(mapped)
        else:
            self.init = jax.jit(init, out_shardings=replicated)
            local = functools.partial(
                epoch, task.step("data"), axis_name="data", num_shards=self.num_devices
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


def to_host(tree):
    """Device arrays -> NumPy, gathering the shards of arrays that span several processes."""

    def fetch(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            if x.is_fully_replicated:
                return np.asarray(x.addressable_data(0))
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x)

    return jax.tree.map(fetch, tree)


def check_config(config, num_train: int) -> int:
    """Checks what depends on the data and the devices; returns the batch size."""
    batch_size = batch_size_of(config, num_train)
    if batch_size > num_train:
        raise ConfigError(
            f"config.batch_size={batch_size} exceeds the {num_train} training examples; "
            f"use 0 for full batch or a value in [1, {num_train}]"
        )
    devices = jax.device_count()
    if config.parallel == "data" and batch_size % devices:
        raise ConfigError(
            f"config.batch_size={batch_size} must be divisible by the {devices} devices "
            f"for parallel=data"
        )
    if config.parallel == "seeds" and config.seeds % devices:
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
    return batch_size


def check_initial_state(state, seeds: int) -> None:
    sizes = {np.shape(leaf)[0] if np.ndim(leaf) else None for leaf in jax.tree.leaves(state)}
    if sizes != {seeds}:
        raise ConfigError(
            f"the initial state must stack config.seeds={seeds} replicas on its first axis; "
            f"its leaves lead with {sorted(sizes, key=str)}"
        )


def _first_bad(step_metrics: dict) -> tuple[str, int, int] | None:
    """(metric, seed, step within the epoch) of the first non-finite value, or None."""
    first = None
    for name, values in step_metrics.items():
        bad = ~np.isfinite(np.asarray(values, dtype=np.float64))
        if bad.any():
            seed, index = np.argwhere(bad)[np.argmin(np.argwhere(bad)[:, 1])]
            if first is None or index < first[2]:
                first = (name, int(seed), int(index))
    return first


def fit(
    config,
    task: Task,
    train: dict,
    workdir: str | pathlib.Path,
    *,
    eval_splits: dict[str, dict] | None = None,
    initial_state: Any = None,
    log: Callable[[str], None] = print,
) -> Result:
    """Trains ``config.seeds`` replicas of ``task`` on ``train`` for ``config.epochs`` epochs.

    ``train`` and each of ``eval_splits`` (e.g. {"val": ..., "test": ...}) are dicts of
    arrays with a leading example axis. Metrics are written to ``workdir/metrics.jsonl`` and
    TensorBoard; checkpoints to ``workdir/checkpoints`` every ``config.checkpoint_every``
    epochs and at the end. Raises TrainingDiverged at the first non-finite metric, after
    making sure the last good state is saved.

    ``initial_state`` (a TrainState with the leading seed axis, e.g. the ``state`` of an
    earlier Result) replaces ``task.init``: training starts from it, at its own step count and
    with its own optimizer; ``state.replace(tx=..., opt_state=...)`` changes the optimizer.
    """
    workdir = pathlib.Path(workdir)
    num_train = len(jax.tree.leaves(train)[0])
    batch_size = check_config(config, num_train)
    eval_splits = eval_splits or {}
    program = _Program(task, config, batch_size)
    seeds = np.arange(config.seed, config.seed + config.seeds, dtype=np.int32)
    primary = jax.process_index() == 0

    seed_array = program.put(seeds, program.seed_sharding)
    train_array = program.put(train)
    eval_arrays = {name: program.put(split) for name, split in eval_splits.items()}
    if initial_state is None:
        if task.init is None:
            raise ConfigError("this task has no init; give train.fit an initial_state")
        state = program.init(seed_array)
    else:
        check_initial_state(initial_state, config.seeds)
        state = program.put(initial_state, program.seed_sharding)

    checkpointer = Checkpointer(workdir / "checkpoints")
    if not config.resume and checkpointer.latest() is not None:
        checkpointer.close()
        raise ConfigError(
            f"{checkpointer.directory} already holds checkpoints; continue that run with "
            f"config.resume=true, or choose a new --workdir"
        )
    start = 0
    history: list[dict] = []
    if config.resume:
        start = checkpointer.latest()
        if start is None:
            raise ConfigError(f"config.resume=true but {checkpointer.directory} has no checkpoint")
        state = checkpointer.restore(start, state)
        history = [r for r in read(workdir) if r["epoch"] <= start]
        log(f"resumed from the checkpoint of epoch {start}")
    writer = MetricWriter(workdir, keep_until_epoch=start, enabled=primary)

    from tqdm.auto import tqdm

    bar = tqdm(
        total=config.epochs, initial=start, unit="epoch", disable=not (config.progress and primary)
    )
    step_metrics: list[dict] = []
    saved_epoch = start if config.resume else None
    good_state, good_epoch = state, start
    try:
        for epoch in range(start + 1, config.epochs + 1):
            state, metrics = program.epoch(state, seed_array, train_array, np.int32(epoch))
            metrics = to_host(metrics)
            bad = _first_bad(metrics)
            if bad is not None:
                name, seed_index, index = bad
                global_step = int(to_host(good_state.step)[seed_index]) + index + 1
                raise TrainingDiverged(
                    f"{name} is not finite at step {global_step} (epoch {epoch}, batch "
                    f"{index + 1}, seed {seeds[seed_index]}); training stopped"
                )
            good_state, good_epoch = state, epoch
            step_metrics.append(metrics)
            record = {"epoch": epoch, "step": int(to_host(state.step)[0])}
            record.update({f"train/{k}": to_json(v.mean(axis=1)) for k, v in metrics.items()})
            if program.evaluate is not None and (
                epoch % config.eval_every == 0 or epoch == config.epochs
            ):
                for name, split in eval_arrays.items():
                    values = to_host(program.evaluate(state, split))
                    record.update({f"{name}/{k}": to_json(v) for k, v in values.items()})
            history.append(record)
            writer.write(record)
            if config.checkpoint_every and epoch % config.checkpoint_every == 0:
                checkpointer.save(epoch, state)
                saved_epoch = epoch
            bar.update(1)
            bar.set_postfix({k: f"{np.mean(v):.4g}" for k, v in record.items() if "/" in k})
        if saved_epoch != config.epochs:
            checkpointer.save(config.epochs, state)
            saved_epoch = config.epochs
    except BaseException as error:
        # Keep what was learned: the state after the last finished epoch goes to disk.
        if good_epoch > 0 and saved_epoch != good_epoch:
            try:
                checkpointer.save(good_epoch, good_state)
                saved_epoch = good_epoch
            except Exception as save_error:  # report the original error, not this one
                log(f"could not save the last good state: {save_error}")
        if isinstance(error, TrainingDiverged) and saved_epoch:
            raise TrainingDiverged(
                f"{error}; the last good checkpoint is epoch {saved_epoch} in "
                f"{checkpointer.directory}"
            ) from None
        raise
    finally:
        bar.close()
        writer.close()
        checkpointer.close()
    return Result(state=state, history=history, step_metrics=step_metrics)
