"""What an experiment needs beyond ``train.fit`` to run as a sweep (lexicon.train.sweep).

A swept fit's replicas are grid points x seeds (replica ``g * seeds + s``: point g, seed s).
- ``figure``: values an experiment computes after a fit, one per replica (an estimate from the
  final parameters, a count), as headline figures: one per grid point in a sweep, the way
  ``report.figure`` does it for a metric of the fit's history.
- ``replicas``: how many replicas every fit of a run trains.
- ``tile``: a tree over the seeds (the initial states) repeated for every grid point.
- ``note``: the line a report gets in a sweep, where its tables pool the grid points.
- ``without``: the config of a fit that the swept keys do not reach (a judge, a reference
  model), which then trains once, not once per grid point.
Without a sweep each is the identity of the plain run: the same Figure, the same tree, no
line, the same config object; so the outputs of a plain run do not change.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lexicon.report import Figure
from lexicon.train.loop import Result
from lexicon.train.sweep import of as sweep_of


def figure(run, values, *args, **held) -> Figure | dict[str, Figure]:
    """Per-replica ``values`` of a run as headline figures: one Figure over the seeds
    (``Figure(values, *args, **held)``: reference, source, tolerance, ...), or for a sweep one
    Figure per grid point, named by its coordinates (``lr=0.1``), as ``report.figure`` (a grid
    point gets no verdict). ``run`` is the ``train.fit`` Result the values come from, or the
    config of the run (whose sweep every fit of it trains)."""
    sweep = run.sweep if isinstance(run, Result) else sweep_of(run)
    if sweep is None:
        return Figure(values, *args, **held)
    per_point = np.asarray(values).reshape(sweep.size, -1)
    return {sweep.label(g): Figure(v) for g, v in enumerate(per_point)}


def replicas(config) -> int:
    """The replicas of every fit of a run: ``config.seeds``, times the grid points in a sweep."""
    sweep = sweep_of(config)
    return config.seeds * (1 if sweep is None else sweep.size)


def tile(config, tree):
    """A tree over the seeds (leading axis) repeated for every grid point of ``config``'s
    sweep, in the replica order of a swept fit (the tree itself without a sweep): e.g. the
    initial states, which every grid point shares seed by seed."""
    sweep = sweep_of(config)
    if sweep is None:
        return tree
    return jax.tree.map(lambda x: jnp.concatenate([x] * sweep.size), tree)


def note(report, config) -> None:
    """In a sweep, a line in ``report`` saying that its tables' mean ± std pool the seeds of
    every grid point (each point has its own row in the sweep tables); nothing otherwise."""
    sweep = sweep_of(config)
    if sweep is not None:
        report.text(
            f"*A sweep over {', '.join(sweep.keys)}: every mean ± std below pools the seeds of "
            "all grid points; each point's own figures are in the sweep tables and in "
            "results.json.*"
        )


def without(config):
    """``config`` for a fit that the swept keys do not reach: the config itself without a
    sweep, else a copy whose ``sweep`` is empty (that fit trains once, over the seeds)."""
    from lexicon.runs import derived

    return config if sweep_of(config) is None else derived(config, sweep="")
