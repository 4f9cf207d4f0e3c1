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


def epoch_runner(task, config, batch_size, parallel="none", mapper="shard_map"):
    """A function timing one epoch of ``task`` through lexicon.train's compiled program."""
    config = config.copy_and_resolve_references()
    config.parallel, config.mapper = parallel, mapper
    program = train.Program(task, config, batch_size=batch_size)
    seeds = program.put(np.arange(config.seeds, dtype=np.int32), program.seed_sharding)
    state = program.init(seeds)
    return program, state, seeds
