"""The sweep speed row: a 16-point learning-rate sweep as one program vs 16 separate runs.

Both train the same tanh MLP (64 -> 64 -> 10) on the embedded digits for 2 epochs at 16
log-spaced learning rates, one seed each, through ``train.fit`` into fresh work directories,
so the wall time holds everything a user waits for: tracing, compiling, training, evaluating
the validation split, metrics.jsonl and the final checkpoint. The sweep is one ``fit`` with
``config.sweep`` (one compilation); the separate runs are 16 ``fit`` calls (16 compilations,
as 16 jobs of a shell loop would pay, here without the process start-up). The target is a
sweep in at most half the time of the separate runs.
"""

from __future__ import annotations

import tempfile
import time

import numpy as np
import optax

from lexicon import data, train
from lexicon.nn.layers import MLP

POINTS = 16


def _quiet(_line: str) -> None:
    pass


def _config(**overrides):
    config = train.defaults()
    config.update(dict(epochs=2, seeds=1, batch_size=32, progress=False))
    config.lr = 0.1
    config.sweep = ""
    config.update(overrides)
    return config


def _cold_times(fns, repeats: int) -> list[float]:
    """Median wall time of each function, every call counted (no warm-up call: each ``fit``
    builds a new program, so every call traces and compiles afresh), calling them in turn."""
    times = [[] for _ in fns]
    for _ in range(max(1, repeats)):
        for fn, seen in zip(fns, times):
            start = time.perf_counter()
            fn()
            seen.append(time.perf_counter() - start)
    return [float(np.median(seen)) for seen in times]


def rows(repeats: int, points: int = POINTS, hidden: int = 64) -> dict[str, float]:
    digits = data.load("digits", seed=0)
    lrs = np.geomspace(1e-3, 1.0, points)
    example = digits.train["x"][:1]

    def build(config):
        model = MLP(features=[hidden, 10], activation="tanh")
        return train.classifier(model, optax.sgd(config.lr), example)

    def fit(config):
        with tempfile.TemporaryDirectory() as workdir:
            return train.fit(
                config, build, digits.train, workdir, eval_splits={"val": digits.val}, log=_quiet
            )

    def one_program():
        fit(_config(sweep="lr=" + ",".join(repr(float(lr)) for lr in lrs)))

    def separate_runs():
        for lr in lrs:
            fit(_config(lr=float(lr)))

    sweep, separate = _cold_times([one_program, separate_runs], repeats)
    shape = f"{points} learning rates, MLP 64-{hidden}-10 on digits, 2 epochs, wall incl. compile"
    return {
        f"sweep as one program ({shape}) (s)": sweep,
        f"{points} separate runs ({shape}) (s)": separate,
    }
