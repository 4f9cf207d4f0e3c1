"""Timing for experiments/speed.py: medians of wall time, and the rows each topic adds.

A topic whose speed is measured side by side with a reference (a flax cell, gensim, a
compiled RL loop) keeps its row builder in its own module here, ``rows(repeats) -> dict``
mapping a row label to seconds (or to a rate, when the label says so); speed.py gathers
them. Timings are figures for a report, never assertions.
"""

from __future__ import annotations

import time

import numpy as np

from lexicon import train


def median_time(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` (which must block until its result is ready)."""
    fn()  # compile and warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def paired_times(fns, repeats: int) -> list[float]:
    """Median wall time of each function, calling them in turn so that load on the machine
    falls on all of them alike."""
    for fn in fns:
        fn()  # compile and warm up
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, bucket in zip(fns, times):
            start = time.perf_counter()
            fn()
            bucket.append(time.perf_counter() - start)
    return [float(np.median(t)) for t in times]


def epoch_runner(task, config, batch_size, arrays, parallel="none", mapper="shard_map"):
    """A function that runs one epoch of ``task`` on ``arrays`` (``config.seeds`` seeds)
    through lexicon.train's compiled program and blocks until it is done."""
    import jax

    config = config.copy_and_resolve_references()
    config.parallel, config.mapper = parallel, mapper
    program = train.Program(task, config, batch_size=batch_size)
    seeds = program.put(np.arange(config.seeds, dtype=np.int32), program.seed_sharding)
    state = program.init(seeds)
    data = program.put(arrays)

    def run():
        jax.block_until_ready(program.epoch(state, seeds, data, np.int32(1)))

    return run


# --- the roofline: the machine's matmul peak and the FLOPs of a compiled step -------------------


def matmul_gflops(n: int = 2048, repeats: int = 5, backend: str = "xla") -> float:
    """GFLOP/s of one n x n float32 matmul (2 n^3 FLOPs), median of ``repeats``: the machine's
    practical peak through XLA (``backend="xla"``, jitted ``a @ b``) or NumPy's BLAS."""
    rng = np.random.default_rng(0)
    a, b = (rng.normal(size=(n, n)).astype(np.float32) for _ in range(2))
    if backend == "numpy":
        seconds = median_time(lambda: a @ b, repeats)
    else:
        import jax

        matmul = jax.jit(lambda x, y: x @ y)
        x, y = jax.device_put(a), jax.device_put(b)
        seconds = median_time(lambda: jax.block_until_ready(matmul(x, y)), repeats)
    return 2.0 * n**3 / seconds / 1e9


def compiled_flops(fn, *args) -> float:
    """FLOPs of one call of ``fn(*args)`` by XLA's cost analysis of the compiled program
    (multiply-adds count 2; a loop's body is counted once, so give it one step, not a scan)."""
    import jax

    cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0]
    return float(cost["flops"])


def xla_flag_accepted(flag: str) -> bool:
    """Whether this jaxlib knows an XLA flag: an unknown one aborts XLA, so ask a child."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "XLA_FLAGS": flag, "JAX_PLATFORMS": "cpu"}
    probe = "import jax.numpy as jnp; (jnp.ones((2, 2)) @ jnp.ones((2, 2))).block_until_ready()"
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True)
    return done.returncode == 0


def core_devices(seeds: int) -> int:
    """One host CPU device per core, as many as divide ``seeds`` (parallel=seeds needs it)."""
    import os

    return max(d for d in range(1, (os.cpu_count() or 1) + 1) if seeds % d == 0)


def core_devices_env(seeds: int) -> dict[str, str]:
    """The environment of a child process that sees ``core_devices(seeds)`` CPU devices."""
    return {"XLA_FLAGS": f"--xla_force_host_platform_device_count={core_devices(seeds)}"}


def json_from_child(module: str, args: list[str], env: dict[str, str]) -> dict:
    """Runs ``python -m module *args`` with extra environment ``env`` (XLA_FLAGS, ...) and
    returns the last JSON object line it prints."""
    import json
    import os
    import subprocess
    import sys

    full_env = {**os.environ, **env}
    full_env.pop("LEXICON_NUM_PROCESSES", None)
    out = subprocess.run(
        [sys.executable, "-m", module, *args], env=full_env, capture_output=True, text=True
    )
    if out.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed:\n{out.stderr[-2000:]}")
    return json.loads([line for line in out.stdout.splitlines() if line.startswith("{")][-1])
