"""The training loop's own speed rows for experiments/speed.py: a jitted step vs the per-step
dispatch loop vs the epoch as one lax.scan, 1 vs 8 vmapped seeds, 1 vs N devices, and each
hand-written lexicon.optim transform beside its optax twin."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lexicon import optim, train
from lexicon.bench import epoch_runner, median_time, paired_times
from lexicon.nn.layers import MLP


def classifier_task(hidden, num_inputs, tx=None):
    """The timed model: a ReLU MLP with 10 outputs and cross-entropy, Adam by default."""
    model = MLP((*hidden, 10), activation="relu")
    return train.classifier(model, tx or optax.adam(1e-3), jnp.zeros((1, num_inputs)))


def loop_rows(config, splits):
    """Jitted step vs per-step dispatch vs epoch-as-scan, and 1 vs 8 vmapped seeds."""
    x, y = splits.train["x"], splits.train["y"]
    bs = config.batch_size
    steps = len(x) // bs
    task = classifier_task(config.hidden, x.shape[1])
    step = jax.jit(task.make_step(None))
    state = task.init(jax.random.key(0))
    key = jax.random.key(1)
    batches = [
        {"x": jnp.asarray(x[i * bs : (i + 1) * bs]), "y": jnp.asarray(y[i * bs : (i + 1) * bs])}
        for i in range(steps)
    ]
    order = np.random.default_rng(0).permutation(len(x))
    arrays = {"x": jnp.asarray(x), "y": jnp.asarray(y)}

    def single_step():
        jax.block_until_ready(step(state, batches[0], key))

    def dispatch_loop():
        s = state
        for i in range(steps):
            idx = order[i * bs : (i + 1) * bs]
            batch = {"x": arrays["x"][idx], "y": arrays["y"][idx]}
            s, _ = step(s, batch, jax.random.fold_in(key, i))
        jax.block_until_ready(s)

    scans = []
    for seeds in (1, 8):
        c = config.copy_and_resolve_references()
        c.seeds = seeds
        scans.append(epoch_runner(task, c, bs, splits.train))

    def steps_on_resident_batch():
        for _ in range(steps):
            single_step()

    times = paired_times([steps_on_resident_batch, dispatch_loop, *scans], config.repeats)
    labels = [
        "jitted step (resident batch)",
        "per-step dispatch loop",
        "epoch as lax.scan, 1 seed",
        "epoch as lax.scan, 8 seeds",
    ]
    return {label: t / steps for label, t in zip(labels, times)}


def seeds_scan_row(config, splits, seeds: int = 8) -> dict:
    """Per-step seconds of the digits MLP's epoch scan with ``seeds`` vmapped seeds."""
    c = config.copy_and_resolve_references()
    c.seeds = seeds
    task = classifier_task(config.hidden, splits.train["x"].shape[1])
    run = epoch_runner(task, c, config.batch_size, splits.train)
    steps = len(splits.train["x"]) // config.batch_size
    return {
        f"digits MLP {seeds} vmapped seeds, epoch as lax.scan": median_time(run, config.repeats)
        / steps
    }


def device_rows(config, splits):
    """Per-step time of one data-parallel epoch on 1 device vs all host devices."""
    bs = config.batch_size
    steps = len(splits.train["x"]) // bs
    task = classifier_task(config.hidden, splits.train["x"].shape[1])
    rows = {}
    for label, parallel, mapper in [
        ("1 device", "none", "shard_map"),
        (f"{jax.device_count()} devices, shard_map", "data", "shard_map"),
        (f"{jax.device_count()} devices, pmap", "data", "pmap"),
    ]:
        run = epoch_runner(task, config, bs, splits.train, parallel, mapper)
        rows[label] = median_time(run, config.repeats) / steps
    return rows


def optimizer_twins():
    """Each hand-written transform next to the optax transform with the same maths."""
    return {
        "sgd": (optim.sgd(0.1), optax.sgd(0.1)),
        "momentum": (optim.momentum(0.1, alpha=0.9), optax.sgd(0.1, momentum=0.9)),
        "nesterov": (optim.nesterov(0.1, alpha=0.9), optax.sgd(0.1, momentum=0.9, nesterov=True)),
        "adagrad": (
            optim.adagrad(0.1, delta=1e-7, delta_inside_sqrt=True, initial_accumulator=0.1),
            optax.adagrad(0.1, initial_accumulator_value=0.1, eps=1e-7),
        ),
        "rmsprop": (
            optim.rmsprop(1e-3, rho=0.9, delta=1e-6),
            optax.rmsprop(1e-3, decay=0.9, eps=1e-6),
        ),
        "adam": (optim.adam(1e-3), optax.adam(1e-3, eps=0.0, eps_root=1e-8)),
    }


def optimizer_rows(config, splits):
    """Per-step time of the epoch scan with each lexicon transform and its optax twin."""
    bs = config.batch_size
    steps = len(splits.train["x"]) // bs
    rows = {}
    for name, pair in optimizer_twins().items():
        runs = []
        for tx in pair:
            task = classifier_task(config.hidden, splits.train["x"].shape[1], tx)
            runs.append(epoch_runner(task, config, bs, splits.train))
        times = [t / steps for t in paired_times(runs, config.repeats)]
        rows[name] = tuple(times)
    return rows


def core_rows(config, splits, num_steps: int = 12) -> dict:
    """1 seed vs 8 seeds spread over the host devices (``parallel=seeds``), per-step seconds
    of the epoch scan, for the digits MLP and the small 64-32-10 net. Run in a process that
    sees one host CPU device per core: each device trains its share of the seeds as one
    vmapped program, and the devices run side by side, one per core. On one device the
    seeds' batched matmuls run one after another; here they run on every core at once."""
    from lexicon.bench.frameworks import random_data

    x, y = random_data((64,), num_steps)
    small = classifier_task((32,), 64)
    digits = classifier_task(config.hidden, splits.train["x"].shape[1])
    fns = {}
    for name, task, arrays, bs in (
        ("64-32-10 MLP", small, {"x": x, "y": y}, 128),
        ("digits MLP", digits, splits.train, config.batch_size),
    ):
        steps = len(arrays["x"]) // bs
        for seeds, parallel in ((1, "none"), (8, "seeds")):
            c = config.copy_and_resolve_references()
            c.seeds = seeds
            run = epoch_runner(task, c, bs, arrays, parallel)
            label = "1 seed" if seeds == 1 else f"8 seeds over {jax.device_count()} devices"
            fns[f"{name}, epoch scan, {label}"] = (run, steps)
    times = paired_times([fn for fn, _ in fns.values()], config.repeats)
    return {label: t / steps for (label, (_, steps)), t in zip(fns.items(), times)}
