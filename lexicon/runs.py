"""What experiments do with the runs of ``train.fit``: derived configs, one replica of a
stacked state, values at an epoch, and the history and curves of a staged training.

``fit`` stacks the replicas (seeds, or a sweep's grid points x seeds) on the first axis of
every leaf of its state and writes one record per epoch; ``train.stages`` gives one Result
per stage, with epochs counted across the stages. These helpers read them back.
"""

from __future__ import annotations

import jax
import numpy as np


def derived(config, **changes):
    """A copy of ``config`` with ``changes`` (keys it may not have yet included): the setting of
    a helper run (a teacher, a stage, a shorter run). ``sweep=""`` keeps a run that does not
    depend on the swept keys out of a grid sweep."""
    run = config.copy_and_resolve_references()
    with run.unlocked():
        run.update(changes)
    return run


def replica(tree, index: int = 0):
    """Replica ``index`` (seed, or grid point x seed) of a stacked state or parameter tree."""
    return jax.tree.map(lambda leaf: leaf[index], tree)


def parameter_count(params) -> int:
    """The number of scalars in a parameter tree (of one replica)."""
    return int(sum(np.prod(np.shape(p)) for p in jax.tree.leaves(params)))


def value_at(history, key: str, epoch: int) -> np.ndarray:
    """Per-replica values of ``key`` in the last record at or before ``epoch`` that has it."""
    records = [r for r in history if key in r and r["epoch"] <= epoch]
    return np.asarray(records[-1][key])


def mean_until(history, key: str, step: int) -> np.ndarray:
    """Per replica: the mean of ``key`` over the evaluations made at or before ``step`` (the
    first evaluation if none), a measure of how fast a run learns (e.g. during a ramp)."""
    evaluated = [r for r in history if key in r]
    early = [r for r in evaluated if r["step"] <= step] or evaluated[:1]
    return np.mean([r[key] for r in early], axis=0)


def joined(staged: dict) -> list[dict]:
    """One history over the stages of a ``train.stages`` run (its epochs count across them)."""
    return [record for result in staged.values() for record in result.history]


def joined_curve(staged: dict, key: str, x: str = "epoch"):
    """(x values, values of shape (replicas, points)) of ``key`` over the stages of a run, as
    ``Result.curve`` gives it for one stage."""
    parts = [result.curve(key, x) for result in staged.values()]
    return np.concatenate([xs for xs, _ in parts]), np.concatenate([v for _, v in parts], axis=1)


def held_figure(result, key: str, baseline, comparison, source: str):
    """The final ``key`` of a ``fit`` result held against the mean of ``baseline`` with the
    verdict of ``comparison`` (``report.held_against``); in a sweep, one figure per grid point
    without a verdict (``report.figure``)."""
    from lexicon import report

    held = report.held_against(result.final(key), baseline, comparison, source)
    return report.figure(
        result, key, reference=held.reference, source=source, tolerance=held.tolerance
    )
