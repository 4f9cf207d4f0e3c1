"""Speed: side-by-side ratios of the training loop's variants, measured in one run.

Rows (each a median over repeats, after compiling):
- a jitted train step on a resident batch; the per-step dispatch loop (Python calls the
  jitted step once per minibatch); the epoch as one compiled lax.scan;
- 1 seed vs 8 vmapped seeds in one program;
- 1 vs N host devices, data-parallel (shard_map and pmap), in a child process that sees N
  CPU devices;
- the MLP 784-256-256-10 and LeNet-5 with Adam at batch 128 in JAX and, when torch is
  installed, in PyTorch on the CPU;
- each hand-written lexicon.optim transform next to its optax twin on the same model.
Timings are figures for a report, never assertions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lexicon import cli, data, optim, train
from lexicon.bench import median_time, paired_times
from lexicon.nn.cnn import LeNet5
from lexicon.nn.layers import MLP
from lexicon.report import Figure, Report
from lexicon.rules import Choice, ConfigError, Names, Range, widths

PARTS = ("all", "devices")
ROWS = ("loop", "devices", "frameworks", "optimizers")


def get_config():
    config = train.defaults()
    config.epochs = 1
    config.batch_size = 128
    config.repeats = 5  # timed repetitions of each row; the median is reported
    config.hidden = (256, 256)  # hidden layers of the timed MLP
    config.devices = 8  # host CPU devices of the data-parallel child process
    config.torch = True  # time PyTorch too when it is installed
    config.rows = "all"  # all, or comma-separated: loop, devices, frameworks, optimizers
    config.part = "all"  # all | devices (the child process measuring device parallelism)
    return config


RULES = {
    "repeats": Range(1, 1000),
    "devices": Range(1, 64),
    "rows": Names(ROWS, everything="all"),
    "part": Choice(*PARTS),
    "hidden": widths(),
}


def check_config(config):
    """Cross-key rules; cli.run checks them before anything compiles."""
    n = cli.train_examples("digits", seed=config.data_seed)
    if not 1 <= config.batch_size <= n:
        raise ConfigError(
            f"config.batch_size={config.batch_size} must lie in [1, {n}], the digits training "
            f"examples: speed times minibatch steps"
        )
    rows = RULES["rows"].parse(config.rows)
    if config.part == "all" and "devices" in rows and config.batch_size % config.devices:
        raise ConfigError(
            f"config.batch_size={config.batch_size} must be divisible by config.devices="
            f"{config.devices} for the device rows (or leave devices out of config.rows)"
        )


def classifier_task(hidden, num_inputs, tx=None):
    """The timed model: a ReLU MLP with 10 outputs and cross-entropy, Adam by default."""
    model = MLP((*hidden, 10), activation="relu")
    return train.classifier(model, tx or optax.adam(1e-3), jnp.zeros((1, num_inputs)))


def epoch_runner(task, config, batch_size, parallel="none", mapper="shard_map"):
    """A function timing one epoch of ``task`` through lexicon.train's compiled program."""
    config = config.copy_and_resolve_references()
    config.parallel, config.mapper = parallel, mapper
    program = train.Program(task, config, batch_size=batch_size)
    seeds = program.put(np.arange(config.seeds, dtype=np.int32), program.seed_sharding)
    state = program.init(seeds)
    return program, state, seeds


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
        program, st, sd = epoch_runner(task, c, bs)
        data_arrays = program.put(splits.train)

        def scan_epoch(program=program, st=st, sd=sd, data_arrays=data_arrays):
            jax.block_until_ready(program.epoch(st, sd, data_arrays, np.int32(1)))

        scans.append(scan_epoch)

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
        program, st, sd = epoch_runner(task, config, bs, parallel, mapper)
        data_arrays = program.put(splits.train)

        def run(program=program, st=st, sd=sd, data_arrays=data_arrays):
            jax.block_until_ready(program.epoch(st, sd, data_arrays, np.int32(1)))

        rows[label] = median_time(run, config.repeats) / steps
    return rows


def torch_model(name):
    """The PyTorch twin of each timed JAX model (same layers, default initialization)."""
    import torch
    from torch import nn as tnn

    if name == "mlp":
        return tnn.Sequential(
            tnn.Linear(784, 256), tnn.ReLU(), tnn.Linear(256, 256), tnn.ReLU(), tnn.Linear(256, 10)
        )
    return tnn.Sequential(  # LeNet-5 on 32x32x1 (NCHW in PyTorch)
        tnn.Conv2d(1, 6, 5),
        tnn.Tanh(),
        tnn.AvgPool2d(2),
        tnn.Conv2d(6, 16, 5),
        tnn.Tanh(),
        tnn.AvgPool2d(2),
        tnn.Flatten(),
        tnn.Linear(400, 120),
        tnn.Tanh(),
        tnn.Linear(120, 84),
        tnn.Tanh(),
        tnn.Linear(84, 10),
        torch.nn.Identity(),
    )


def framework_rows(config, name, num_steps=50):
    """JAX step vs PyTorch CPU step, Adam, batch 128, on the same random data.

    ``name`` is "mlp" (784-256-256-10, ReLU) or "lenet5" (LeNet-5 on 32x32x1 images).
    """
    rng = np.random.default_rng(0)
    shape = (784,) if name == "mlp" else (32, 32, 1)
    x = rng.normal(size=(num_steps * 128, *shape)).astype(np.float32)
    y = rng.integers(0, 10, size=num_steps * 128).astype(np.int32)
    model = MLP((256, 256, 10), activation="relu") if name == "mlp" else LeNet5()
    task = train.classifier(model, optax.adam(1e-3), jnp.zeros((1, *shape)))
    c = config.copy_and_resolve_references()
    c.batch_size, c.seeds = 128, 1
    program, st, sd = epoch_runner(task, c, 128)
    arrays = program.put({"x": x, "y": y})
    label = "MLP 784-256-256-10" if name == "mlp" else "LeNet-5 32x32"
    rows = {
        f"{label}: JAX, epoch as lax.scan": median_time(
            lambda: jax.block_until_ready(program.epoch(st, sd, arrays, np.int32(1))),
            config.repeats,
        )
        / num_steps
    }
    step = jax.jit(task.make_step(None))
    state = task.init(jax.random.key(0))
    xb, yb = jnp.asarray(x[:128]), jnp.asarray(y[:128])

    def jax_loop():
        s = state
        for i in range(num_steps):
            s, _ = step(s, {"x": xb, "y": yb}, jax.random.key(i))
        jax.block_until_ready(s)

    rows[f"{label}: JAX, jitted step per call"] = median_time(jax_loop, config.repeats) / num_steps
    try:
        import torch
    except ImportError:
        return rows, None
    net = torch_model(name)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    tx = torch.from_numpy(x if name == "mlp" else x.transpose(0, 3, 1, 2).copy())
    ty = torch.from_numpy(y.astype(np.int64))

    def torch_loop():
        for i in range(num_steps):
            opt.zero_grad()
            batch = slice(i * 128, (i + 1) * 128)
            loss = torch.nn.functional.cross_entropy(net(tx[batch]), ty[batch])
            loss.backward()
            opt.step()

    rows[f"{label}: PyTorch CPU, default Adam"] = (
        median_time(torch_loop, config.repeats) / num_steps
    )
    return rows, torch.__version__


def measure_devices_in_child(config) -> dict:
    """Runs this module with ``part=devices`` in a process that sees ``config.devices`` CPUs."""
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={config.devices}"}
    env.pop("LEXICON_NUM_PROCESSES", None)
    args = [
        sys.executable,
        "-m",
        "experiments.speed",
        "--config.part=devices",
        f"--config.repeats={config.repeats}",
        f"--config.batch_size={config.batch_size}",
        "--config.progress=false",
        "--workdir="
        + os.path.join(os.environ.get("TMPDIR", "/tmp"), f"lexicon-speed-{os.getpid()}"),
    ]
    out = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
    return json.loads([line for line in out.stdout.splitlines() if line.startswith("{")][-1])


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
            program, st, sd = epoch_runner(task, config, bs)
            arrays = program.put(splits.train)

            def run(program=program, st=st, sd=sd, arrays=arrays):
                jax.block_until_ready(program.epoch(st, sd, arrays, np.int32(1)))

            runs.append(run)
        times = [t / steps for t in paired_times(runs, config.repeats)]
        rows[name] = tuple(times)
    return rows


def train_and_evaluate(config, workdir):
    splits = data.load("digits", seed=config.data_seed)
    if config.part == "devices":
        print(json.dumps(device_rows(config, splits)))
        return {}
    rows = RULES["rows"].parse(config.rows)
    loop = loop_rows(config, splits) if "loop" in rows else {}
    devices = measure_devices_in_child(config) if "devices" in rows else {}
    frameworks, torch_version = {}, None
    if config.torch and "frameworks" in rows:
        for name in ("mlp", "lenet5"):
            measured, torch_version = framework_rows(config, name)
            frameworks.update(measured)
    twins = optimizer_rows(config, splits) if "optimizers" in rows else {}

    ratios = []
    if loop:
        scan1 = loop["epoch as lax.scan, 1 seed"]
        ratios += [
            (
                "per-step dispatch / epoch scan (per step)",
                loop["per-step dispatch loop"] / scan1,
                ">= 1.2",
            ),
            (
                "8 vmapped seeds / 1 seed (wall time)",
                loop["epoch as lax.scan, 8 seeds"] / scan1,
                "<= 3",
            ),
        ]
    ratios += [
        (f"{k} / 1 device (per step)", v / devices["1 device"], "")
        for k, v in devices.items()
        if k != "1 device"
    ]
    if torch_version:
        for label in ("MLP 784-256-256-10", "LeNet-5 32x32"):
            torch_step = frameworks[f"{label}: PyTorch CPU, default Adam"]
            ratios += [
                (f"{k} / PyTorch (per step)", v / torch_step, "< 0.8")
                for k, v in frameworks.items()
                if k.startswith(label) and "JAX" in k
            ]
    report = Report(workdir, "Speed of the training loop")
    report.text(
        f"Machine: {os.cpu_count()} CPU cores, jax {jax.__version__}, "
        f"{jax.devices()[0].platform}; torch {torch_version or 'not installed'}. "
        f"MLP {tuple(config.hidden)} with Adam, batch {config.batch_size}, "
        f"median of {config.repeats} repeats."
    )
    timings = {**loop, **devices, **frameworks}
    if timings:
        report.table(
            ["measurement", "ms per step"],
            [(k, f"{v * 1e3:.3f}") for k, v in timings.items()],
            caption="Timings (digits MLP unless the row names another model)",
        )
    if ratios:
        report.table(
            ["ratio", "value", "target"],
            [(k, f"{v:.2f}", t) for k, v, t in ratios],
            caption="Ratios measured side by side",
        )
    if frameworks:
        report.text(
            "On XLA:CPU a convolution net's epoch as lax.scan can be slower than its jitted step "
            "called once per minibatch: inside the compiled loop the weight-gradient "
            "convolutions keep the operand layout autodiff gives them instead of being "
            "rewritten to the layout of the fast convolution kernels."
        )
    if twins:
        report.table(
            ["optimizer", "lexicon.optim ms/step", "optax ms/step", "ratio", "target"],
            [
                (k, f"{a * 1e3:.3f}", f"{b * 1e3:.3f}", f"{a / b:.3f}", "<= 1.05")
                for k, (a, b) in twins.items()
            ],
            caption="Hand-written transforms vs their optax twins (epoch scan, same model)",
        )
    report.write()
    ratios += [
        (f"lexicon.optim.{k} / optax twin (per step)", a / b, "<= 1.05")
        for k, (a, b) in twins.items()
    ]
    results = {k: v for k, v, _ in ratios}
    (workdir / "speed.json").write_text(
        json.dumps({"timings_s": timings, "ratios": results}, indent=2)
    )
    return headline_figures(loop, devices, frameworks, twins)


def headline_figures(loop, devices, frameworks, twins) -> dict:
    """The ratios of the report under short names (time per step over time per step; wall
    time of one epoch for the vmapped seeds); the hand-written optimizers are held to their
    optax twins within the 5% of their target."""
    figures = {}
    if loop:
        scan = loop["epoch as lax.scan, 1 seed"]
        figures["dispatch_over_scan"] = loop["per-step dispatch loop"] / scan
        figures["vmap_8_seeds_over_1"] = loop["epoch as lax.scan, 8 seeds"] / scan
    for k, v in devices.items():
        if k != "1 device":
            count, method = k.split(" devices, ")
            figures[f"{method}_{count}_devices_over_1"] = v / devices["1 device"]
    for label, model in (("MLP 784-256-256-10", "mlp"), ("LeNet-5 32x32", "lenet5")):
        torch_step = frameworks.get(f"{label}: PyTorch CPU, default Adam")
        if torch_step:
            for kind, row in (("scan", "epoch as lax.scan"), ("step", "jitted step per call")):
                jax_step = frameworks[f"{label}: JAX, {row}"]
                figures[f"{model}_jax_{kind}_over_torch"] = jax_step / torch_step
    for k, (a, b) in twins.items():
        figures[f"{k}_over_optax"] = Figure(
            a / b, reference=1.0, source=f"optax twin of lexicon.optim.{k}", tolerance=0.05
        )
    return figures


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, RULES)
