"""What the first-order optimizer studies share beyond :mod:`lexicon.optim.problems`.

experiments/optimizers.py, lr_decay.py and batch_size.py train classifiers of a ``Problem``
with optimizers built from the config, which may be swept (``--config.sweep``: ``Problem.fit``
takes an optimizer builder ``config -> optax.GradientTransformation``). ``objective_rows``
gives the rows of their tables of J and J - J*, ``lower`` the paired verdict on a gap,
``gradient_noise_at`` the minibatch gradient's noise per replica and ``curves_and_bars``
curves beside the bars of a final figure.
experiments/optimizer_paths.py counts events along the paths of 2-D descents
(``event_table``) and draws the paths on the contours of f (``paths_figure``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from lexicon import losses, train
from lexicon.optim.problems import (
    Problem,
    draw_paths,
    first_step,
    gradient_noise,
    last_finite,
    rate,
    steps_text,
)
from lexicon.report import compare, mean_std, plot_bars, plot_curves, scientific


def objective_rows(runs: dict, optimum: dict, settings: dict, *, accuracy=True) -> list[list]:
    """Per run (label -> Run of a penalized problem): the label, its ``settings`` cells, the
    final J (mean ± std over the replicas), J - J* against ``optimum["objective"]`` and, with
    ``accuracy``, the test accuracy."""
    rows = []
    for label, run in runs.items():
        objective = run.final["objective"]
        row = [label, *settings[label], mean_std(objective, 5)]
        row.append(scientific(objective - optimum["objective"], 3))
        if accuracy:
            row.append(mean_std(run.final["test_accuracy"]))
        rows.append(row)
    return rows


def lower(values: dict, label: str, baseline: str):
    """``report.compare`` of ``values[label]`` against ``values[baseline]`` (per replica, the
    same seeds: paired), where lower is better (a gap to the optimum, a step count)."""
    return compare(
        values[label],
        values[baseline],
        paired=True,
        higher_is_better=False,
        names=(label, baseline),
    )


def gradient_noise_at(problem: Problem, params, seeds, batch_sizes, draws: int):
    """``problems.gradient_noise`` of a classifier ``problem``'s data loss (the mean
    cross-entropy over its training split) per replica: (E||g_B - g||^2, the 1/m law, the
    standard error), each of shape (replicas, len(batch_sizes)). ``params`` stacks the
    replicas' parameters; replica i draws its ``draws`` minibatches per size from seed
    ``seeds[i]``'s data stream, apart from the minibatch order of its training."""

    def data_loss(theta, xb, yb):
        logits = problem.model.apply({"params": theta}, xb)
        return losses.softmax_cross_entropy_with_integer_labels(logits, yb)

    keys = jax.vmap(lambda s: jax.random.fold_in(train.stream(s, "data"), 2**20))(seeds)
    x, y = jnp.asarray(problem.splits.train["x"]), jnp.asarray(problem.splits.train["y"])
    noise = jax.vmap(lambda p, k: gradient_noise(data_loss, p, x, y, batch_sizes, draws, k))
    return tuple(map(np.asarray, jax.jit(noise)(params, keys)))


def event_table(runs: dict, event, when: str) -> tuple[list[list], dict]:
    """How often, and when, an event happens along the paths of 2-D descents.

    ``runs``: label -> (paths (seeds, steps + 1, 2), f along them (seeds, steps + 1)), with NaN
    after a path stopped; ``event(paths, values)`` -> per seed and step, whether it holds;
    ``when`` "end" counts a seed where it holds at the last step, "any" where it ever holds.
    Returns the rows (label, seeds counted 'k/S', the first step it holds (mean ± std over
    the seeds where it does), the longest step ||theta_{k+1} - theta_k||, the final f) and,
    per label, (counted per seed, first step per seed (NaN: never), longest step per seed).
    """
    rows, per_label = [], {}
    for label, (paths, values) in runs.items():
        happened = np.nan_to_num(event(paths, values))
        counted = happened[:, -1] if when == "end" else happened.any(axis=1)
        longest = np.nanmax(np.linalg.norm(np.diff(paths, axis=1), axis=2), axis=1)
        first = first_step(happened)
        per_label[label] = (counted, first, longest)
        final = scientific(last_finite(values), 3)
        rows.append([label, rate(counted), steps_text(first), scientific(longest, 3), final])
    return rows, per_label


def paths_figure(panels: dict, *, size, title: str = "", log_levels: bool = False):
    """One panel per entry of ``panels``, title -> (f, window (x0, x1, y0, y1), paths (label ->
    (seeds, steps + 1, 2)), the seed to draw, the known minimizer or None): the contours of f
    and that seed's path of every label (``problems.draw_paths``), in one row."""
    fig, axes = plt.subplots(1, len(panels), figsize=size)
    for ax, (name, (f, window, paths, seed, minimum)) in zip(axes, panels.items()):
        draw_paths(ax, f, window, paths, title=name, log_levels=log_levels, seed=seed)
        if minimum is not None:
            ax.plot(*minimum, "r*", ms=14, label="known minimum")
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return fig


def curves_and_bars(curves: dict, bars: dict, title: str, *, ylabel: str, **bar_options):
    """Curves of several runs on a log scale (label -> (x, values (seeds, points)), e.g. a loss
    per epoch) beside the bars of a final figure per run (label -> per-seed values; by default
    the test accuracy, ``bar_options`` go to ``report.plot_bars``)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    plot_curves(curves, ylabel=ylabel, log_y=True, ax=axes[0])
    plot_bars(bars, **{"ylabel": "test accuracy", **bar_options}, ax=axes[1])
    fig.suptitle(title)
    return fig
