"""Speed: side-by-side ratios of the training loop's variants, measured in one run.

Rows (each a median over repeats, after compiling):
- a jitted train step on a resident batch; the per-step dispatch loop (Python calls the
  jitted step once per minibatch); the epoch as one compiled lax.scan;
- 1 seed vs 8 vmapped seeds in one program;
- 1 vs N host devices, data-parallel (shard_map and pmap), in a child process that sees N
  CPU devices;
- the MLP 784-256-256-10 and LeNet-5 with Adam at batch 128 in JAX and, when torch is
  installed, in PyTorch on the CPU;
- each hand-written lexicon.optim transform next to its optax twin on the same model;
- the topics measured beside a reference (lexicon.bench.<topic>): the scanned LSTM vs flax's
  OptimizedLSTMCell, the compiled DQN (1 vs 16 vmapped seeds) vs CleanRL's published wall
  time, our skip-gram vs gensim's Word2Vec in words per second.
Timings are figures for a report, never assertions.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lexicon import cli, data, optim, train
from lexicon.bench import epoch_runner, median_time, paired_times
from lexicon.bench.frameworks import framework_rows
from lexicon.nn.layers import MLP
from lexicon.report import Figure, Report
from lexicon.rules import Choice, ConfigError, Names, Range, widths

PARTS = ("all", "devices")
# Topics whose speed is measured beside a reference implementation (lexicon.bench.<topic>).
TOPICS = ("rnn", "dqn", "word2vec")
ROWS = ("loop", "devices", "frameworks", "optimizers", *TOPICS)


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
    topics = {}
    for name in TOPICS:
        if name in rows:
            topics.update(importlib.import_module(f"lexicon.bench.{name}").rows(config.repeats))

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
    if topics:
        report.table(
            ["measurement", "value"],
            [(k, f"{v:,.1f}" if "(s)" in k else f"{v:,.0f}") for k, v in topics.items()],
            caption="Topics beside their reference implementations (rates, or seconds where "
            "the label says (s))",
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
    return {**headline_figures(loop, devices, frameworks, twins), **topic_figures(topics)}


def topic_figures(topics: dict) -> dict:
    """Ours over the reference, by rate (higher is faster), for each topic row measured."""
    figures = {}
    ours = [k for k in topics if "lexicon.nn.rnn" in k]
    if ours:
        flax = next(k for k in topics if "OptimizedLSTMCell" in k)
        figures["lstm_scan_over_flax_steps_per_s"] = topics[ours[0]] / topics[flax]
    if "word2vec skip-gram, ours, 1 XLA:CPU device (words/s)" in topics:
        gensim = [k for k in topics if "gensim" in k and "1 thread" not in k]
        figures["word2vec_ours_over_gensim_words_per_s"] = (
            topics["word2vec skip-gram, ours, 1 XLA:CPU device (words/s)"] / topics[gensim[0]]
        )
    sixteen = "DQN CartPole 500k steps, 16 vmapped seeds (s)"
    if sixteen in topics:
        figures["dqn_16_seeds_500k_wall_s"] = Figure(
            topics[sixteen],
            reference=topics["CleanRL dqn_jax CartPole 500k steps, 1 seed, published (s)"],
            source="CleanRL dqn_jax, 1 seed, 500k steps (the goal: 16 seeds in less time)",
            claim="at_most",
        )
        figures["dqn_1_seed_500k_wall_s"] = topics["DQN CartPole 500k steps, 1 seed (s)"]
    return figures


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
