"""Speed: side-by-side ratios of the training loop's variants, measured in one run.

Rows (each a median over repeats, after compiling):
- a jitted train step on a resident batch; the per-step dispatch loop (Python calls the
  jitted step once per minibatch); the epoch as one compiled lax.scan;
- 1 seed vs 8 vmapped seeds in one program;
- 1 vs N host devices, data-parallel (shard_map and pmap), in a child process that sees N
  CPU devices;
- the roofline: the machine's float32 matmul peak (XLA and NumPy, 2048x2048) measured in the
  run, and each timed model's GFLOP/s (FLOPs of one step from XLA's cost analysis) and share
  of the XLA peak;
- vmapped seeds: 8 seeds of the compute-bound MLP as a share of the peak, 8 seeds / 1 seed of
  a small overhead-bound 64-32-10 net, a vmapped (batched) matmul vs the same matmuls in turn;
  and both models again with the 8 seeds spread over one host device per core
  (``parallel=seeds``, in a child process that sees one CPU device per core, as many as
  divide 8);
- the conv nets (LeNet-5, the MNIST-1D CNN, VGG-small, ResNet-small) with XLA's convolution
  and with im2col (lexicon.nn.conv), epoch as lax.scan vs jitted step per call;
- the MLP 784-256-256-10 and LeNet-5 with Adam at batch 128 in JAX and, when torch is
  installed (pip install -e '.[bench]'), in PyTorch on the CPU with as many threads;
- the XLA:CPU flags this jaxlib accepts (--xla_cpu_use_xnnpack, --xla_cpu_use_onednn, and
  --xla_cpu_experimental_ynn_fusion_type= that turns YNNPACK's fusions off): the
  matmul peak, LeNet-5 and 8 vmapped MLP seeds in a child process with each flag, over a
  child without, the median of ``flag_rounds`` rounds;
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

import jax
import jax.numpy as jnp
import numpy as np

from lexicon import bench, cli, data, train
from lexicon.bench.frameworks import conv_rows, framework_rows, seed_rows, torch_info
from lexicon.bench.loops import (
    classifier_task,
    core_rows,
    device_rows,
    loop_rows,
    optimizer_rows,
    seeds_scan_row,
)
from lexicon.bench.ratios import achieved, headline_figures, ratio_rows, topic_figures
from lexicon.report import Report
from lexicon.rules import Choice, ConfigError, Names, Range, widths

PARTS = ("all", "devices", "flags", "cores")
# The XLA:CPU flags whose effect speed.py records: XNNPACK and oneDNN kernels on, and
# YNNPACK's fusions (this jaxlib's default kernels for dots and reductions) off.
XLA_FLAGS = (
    "--xla_cpu_use_xnnpack=true",
    "--xla_cpu_use_onednn=true",
    "--xla_cpu_experimental_ynn_fusion_type=",
)
# Topics whose speed is measured beside a reference implementation (lexicon.bench.<topic>).
TOPICS = ("rnn", "dqn", "word2vec", "sweep")
ROWS = ("loop", "roofline", "seeds", "cores", "convnets", "flags", "devices", "frameworks",
        "optimizers", *TOPICS)  # fmt: skip


def get_config():
    config = train.defaults()
    config.epochs = 1
    config.batch_size = 128
    config.repeats = 5  # timed repetitions of each row; the median is reported
    config.hidden = (256, 256)  # hidden layers of the timed MLP
    config.devices = 8  # host CPU devices of the data-parallel child process
    config.torch = True  # time PyTorch too when it is installed
    config.rows = "all"  # all, or comma-separated names of ROWS
    config.part = "all"  # all | devices | flags | cores (the child processes)
    config.conv_steps = 20  # minibatches per timed epoch of each conv net
    config.flag_rounds = 3  # rounds of the XLA-flag child processes (medians over rounds)
    return config


RULES = {
    "repeats": Range(1, 1000),
    "devices": Range(1, 64),
    "rows": Names(ROWS, everything="all"),
    "part": Choice(*PARTS),
    "conv_steps": Range(1, 1000),
    "flag_rounds": Range(1, 100),
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


def child_args(config, part: str) -> list[str]:
    workdir = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"lexicon-speed-{os.getpid()}")
    return [f"--config.part={part}", f"--config.repeats={config.repeats}",
            f"--config.batch_size={config.batch_size}", f"--config.conv_steps={config.conv_steps}",
            f"--config.hidden=({','.join(map(str, config.hidden))},)",
            "--config.progress=false", f"--workdir={workdir}-{part}"]  # fmt: skip


def measure_devices_in_child(config) -> dict:
    """Runs this module with ``part=devices`` in a process that sees ``config.devices`` CPUs."""
    env = {"XLA_FLAGS": f"--xla_force_host_platform_device_count={config.devices}"}
    return bench.json_from_child("experiments.speed", child_args(config, "devices"), env)


def measure_cores_in_child(config) -> dict:
    """Runs this module with ``part=cores`` in a process that sees one CPU device per core."""
    env = bench.core_devices_env(8)  # core_rows spreads 8 seeds
    return bench.json_from_child("experiments.speed", child_args(config, "cores"), env)


def flag_rows(config) -> dict:
    """The matmul peak, LeNet-5 (im2col, epoch scan) and 8 vmapped digits-MLP seeds in one
    child process per XLA flag this jaxlib accepts and one without flags, in
    ``config.flag_rounds`` rounds: each figure over the same round's child without flags,
    the median over the rounds (the same child minutes later can differ by 30% on a virtual
    machine; one round is not enough to tell a flag's effect from that drift)."""
    flags = [f for f in XLA_FLAGS if bench.xla_flag_accepted(f)]
    rounds = []
    for _ in range(config.flag_rounds):
        runs = {
            flag: bench.json_from_child(
                "experiments.speed", child_args(config, "flags"), {"XLA_FLAGS": flag}
            )
            for flag in ["", *flags]
        }
        base = runs.pop("")
        rounds.append(
            {
                f"{flag}: {k} / no flag": v / base[k]
                for flag, r in runs.items()
                for k, v in r.items()
            }
        )
    return {k: float(np.median([r[k] for r in rounds])) for k in rounds[0]}


def flag_measurements(config, splits) -> dict:
    """What a flags child measures: the XLA matmul peak, LeNet-5's scanned steps and the
    digits MLP's scanned step with 8 vmapped seeds."""
    rows, _ = conv_rows(config.repeats, config.conv_steps, ["LeNet-5 32x32"], ("im2col",))
    scans = {k.split(": ")[1]: v for k, v in rows.items() if "scan" in k}
    return {
        "XLA matmul GFLOP/s": bench.matmul_gflops(repeats=config.repeats),
        **scans,
        **seeds_scan_row(config, splits, seeds=8),
    }


def train_and_evaluate(config, workdir):
    splits = data.load("digits", seed=config.data_seed)
    if config.part != "all":
        child = {"devices": device_rows, "cores": core_rows}.get(config.part)
        print(json.dumps((child or flag_measurements)(config, splits)))
        return {}
    rows = RULES["rows"].parse(config.rows)
    measured = {name: name in rows for name in ROWS}
    roof = measured["roofline"] or measured["seeds"] or measured["cores"]

    def peaks(before=None):  # measured at the start and at the end: the best of both
        now = {b: bench.matmul_gflops(repeats=config.repeats, backend=b) for b in ("xla", "numpy")}
        return {b: max(now[b], (before or now)[b]) for b in now}

    peak = peaks() if roof else {}
    loop = loop_rows(config, splits) if measured["loop"] else {}
    seeds = seed_rows(config.repeats) if measured["seeds"] else {}
    convs, flops = (
        conv_rows(config.repeats, config.conv_steps) if measured["convnets"] else ({}, {})
    )
    flags = flag_rows(config) if measured["flags"] else {}
    devices = measure_devices_in_child(config) if measured["devices"] else {}
    cores = measure_cores_in_child(config) if measured["cores"] else {}
    frameworks, torch = {}, torch_info() if config.torch else {}
    if measured["frameworks"]:
        for name, label in (("mlp", "MLP 784-256-256-10"), ("lenet5", "LeNet-5 32x32")):
            timed, flops[label] = framework_rows(config, name)
            frameworks.update(timed if torch else {k: v for k, v in timed.items() if "Py" not in k})
    twins = optimizer_rows(config, splits) if measured["optimizers"] else {}
    topics = {}
    for name in TOPICS:
        if name in rows:
            topics.update(importlib.import_module(f"lexicon.bench.{name}").rows(config.repeats))
    if loop or seeds or cores:
        task = classifier_task(config.hidden, splits.train["x"].shape[1])
        batch = {k: jnp.asarray(v[: config.batch_size]) for k, v in splits.train.items()}
        step = task.make_step(None)
        flops["digits MLP"] = bench.compiled_flops(
            step, task.init(jax.random.key(0)), batch, jax.random.key(1)
        )
    peak = peaks(peak) if roof else {}
    ratios = ratio_rows(loop, seeds, convs, flags, devices, frameworks, peak, flops, cores)

    report = Report(workdir, "Speed of the training loop")
    threads = torch and f", {torch['threads']} threads, oneDNN {'on' if torch['mkldnn'] else 'off'}"
    report.text(
        f"Machine: {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at the end, "
        f"jax {jax.__version__}, {jax.devices()[0].platform}; torch "
        f"{torch['version'] + threads if torch else 'not installed (pip install -e .[bench])'}. "
        f"Adam, batch {config.batch_size}, median of {config.repeats} repeats; the rows of one "
        "table are timed in turn, so load falls on them alike."
    )
    timings = {**loop, **seeds, **cores, **convs, **devices, **frameworks}
    if timings:
        report.table(
            ["measurement", "ms per step"],
            [(k, f"{v * 1e3:.3f}") for k, v in timings.items()],
            caption="Timings (digits MLP 64-256-256-10 unless the row names another "
            "model; matmul rows: ms per call)",
        )
    roofline = achieved(timings, flops, peak)
    if roofline:
        report.table(
            ["model, loop", "GFLOP per step", "GFLOP/s", "share of XLA peak"],
            roofline,
            caption=f"Roofline: XLA matmul peak {peak['xla']:.0f} GFLOP/s, "
            f"NumPy {peak['numpy']:.0f} GFLOP/s (2048x2048 fp32, best of the run's start and end)",
        )
    if ratios:
        report.table(
            ["ratio", "value", "target"],
            [(k, f"{v:.2f}", t) for k, _, v, t in ratios],
            caption="Ratios measured side by side",
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
        (f"lexicon.optim.{k} / optax twin (per step)", f"{k}_over_optax", a / b, "<= 1.05")
        for k, (a, b) in twins.items()
    ]
    (workdir / "speed.json").write_text(
        json.dumps(
            {
                "timings_s": timings,
                "ratios": {k: v for k, _, v, _ in ratios},
                "peak_gflops": peak,
                "flops_per_step": flops,
                "torch": torch,
            },
            indent=2,
        )
    )
    return {**headline_figures(ratios), **topic_figures(topics)}


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, RULES)
