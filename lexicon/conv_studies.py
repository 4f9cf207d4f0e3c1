"""Analyses of convolution and of convolutional nets, each a report's worth of one study.

- ``filter_gaps``: 2-D kernels applied by :mod:`lexicon.nn.conv` against scipy.signal (float64),
  with the mean-intensity ratio each kernel gives.
- ``shape_rule``: the output-size rule floor((n + lo + hi - k) / s) + 1 against the maps a
  kernel bank gives by running, and against ``jax.lax``.
- ``matrix_section``: convolution as a matrix product (:mod:`lexicon.nn.conv_matrix`) as a
  report section: the matrix drawn, and its checks in float64.
- ``picture_grid`` and ``signed``: rows of pictures (images, kernels, feature maps), each with
  its own colour map, for the filters and learned kernels a conv lecture draws.
- ``labelled_points``: one point per model at (x, seed mean) with ±1 std error bars, e.g.
  accuracy against the number of parameters.
- ``shift_section``: the table, bars and paired verdicts of nets under 1-pixel translations
  (:func:`lexicon.nn.cnn.shift_effects`).
- ``step_time_ms``: the wall time of one jitted, vmapped training step of a fitted task.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import scipy.signal

from lexicon import sweeping, train
from lexicon.bench import median_time
from lexicon.nn import conv, conv_matrix
from lexicon.report import Report, compare, mean_std, plot_bars, plot_heatmap

# --- filters against scipy.signal and the shape rule --------------------------------------------


def filter_gaps(images: dict[str, np.ndarray], kernels: dict[str, np.ndarray]) -> list[dict]:
    """Per kernel: its size and sum, the mean-intensity ratio and the largest gaps to scipy.

    ``convolve_gap`` / ``correlate_gap``: the largest |ours - scipy.signal| of the "same"
    convolution (cross-correlation) over all ``images`` (2-D), scipy working in float64 on the
    same image. ``intensity_ratio``: mean over the images of mean(valid output) / mean(image),
    1 for a kernel summing to 1 on a smooth image, scaling with the kernel sum otherwise.
    """
    references = {
        "convolve_gap": scipy.signal.convolve2d,
        "correlate_gap": scipy.signal.correlate2d,
    }
    rows = []
    for name, kernel in kernels.items():
        gaps = dict.fromkeys(references, 0.0)
        ratios = []
        for image in images.values():
            for key, reference in references.items():
                ours = conv.filter_image(image, kernel, correlate=key == "correlate_gap")
                theirs = reference(image.astype(np.float64), kernel.astype(np.float64), "same")
                gaps[key] = max(gaps[key], float(np.max(np.abs(ours - theirs))))
            valid = conv.filter_image(image, kernel, padding="valid")
            ratios.append(float(valid.mean() / image.mean()))
        rows.append({"filter": name, "size": "x".join(map(str, kernel.shape)),
                     "kernel_sum": float(kernel.sum()), "intensity_ratio": float(np.mean(ratios)),
                     **gaps})  # fmt: skip
    return rows


def shape_rule(x: jax.Array, bank: jax.Array, cases) -> list[dict]:
    """The maps of kernel ``bank`` (KH, KW, C, K) on images ``x`` (N, H, W, C), per (stride,
    padding) case: their shape by running :func:`lexicon.nn.conv.cross_correlate_2d`
    (``run``), by the rule floor((n + lo + hi - k) / s) + 1 per side (``rule``, written out
    for the height in ``formula``), and by ``jax.lax.conv_general_dilated`` (``lax_shape``),
    with the largest gap of the values to lax (``gap``). An int padding pads that many zeros
    on each side."""
    n, k, count = x.shape[1], bank.shape[0], bank.shape[-1]
    rows = []
    for stride, padding in cases:
        maps = conv.cross_correlate_2d(x, bank, stride, padding)
        pads = conv.resolve_padding(x.shape[1:3], bank.shape[:2], (stride, stride), padding)
        reference = jax.lax.conv_general_dilated(
            x, bank, (stride, stride), pads, dimension_numbers=("NHWC", "HWIO", "NHWC"),
            precision=jax.lax.Precision.HIGHEST,
        )  # fmt: skip
        sides = [conv.output_size(*pair, stride, padding) for pair in zip(x.shape[1:3], bank.shape)]
        lo, hi = pads[0]
        rows.append({"stride": stride, "padding": f"{padding} ({lo}, {hi})",
                     "run": tuple(int(d) for d in maps.shape[1:]), "rule": (*sides, count),
                     "formula": f"floor(({n} + {lo} + {hi} - {k}) / {stride}) + 1 = {sides[0]}",
                     "gap": float(jnp.max(jnp.abs(maps - reference))),
                     "lax_shape": tuple(int(d) for d in reference.shape[1:])})  # fmt: skip
    return rows


def matrix_section(report: Report, size: int, seed: int) -> dict:
    """Convolution as a matrix product in ``report``: the text, the heat map of M (the Sobel x
    cross-correlation on a size x size image, "same" zeros) and the table of
    :func:`lexicon.nn.conv_matrix.summary` (float64 checks, NumPy seed ``seed``), which it
    returns."""
    n, matrix = size, conv_matrix.summary(size, seed)
    report.text(
        f"Convolution as a matrix product: on a {n}x{n} image vec(S) = M vec(I), with M[(i, j), "
        '(r, c)] = K[r - i + 1, c - j + 1] for the 3x3 Sobel x kernel and "same" zeros. Block '
        f"(i, r) depends on r - i only, and each block is Toeplitz (gap {matrix['defect']:g}). The "
        "table checks M vec(x), the backward pass M^T delta and the kernel gradient (input "
        "correlated with delta) in float64 on standard-normal operands (NumPy seed "
        f"{seed}); with one channel, scipy.signal is the second reference."
    )
    labels = [f"({i},{j})" for i in range(n) for j in range(n)]
    report.figure(
        plot_heatmap(matrix["matrix"], row_labels=labels, col_labels=labels, cmap="RdBu_r",
                     title="M: rows output (i, j), columns input (r, c)"),
        "conv_matrix", f"the matrix of the Sobel x cross-correlation on a {n}x{n} image",
    )  # fmt: skip
    report.table(matrix["headers"], matrix["rows"], caption="Convolution as a matrix product")
    return matrix


# --- pictures -----------------------------------------------------------------------------------


def signed(values, percentile: float | None = None) -> dict:
    """The imshow style of a signed array: a diverging map centred on 0, its limit the largest
    |value| (or that ``percentile`` of |values|, which keeps a few extremes from washing the
    rest out)."""
    magnitude = np.abs(values)
    limit = magnitude.max() if percentile is None else np.percentile(magnitude, percentile)
    return {"cmap": "RdBu_r", "vmin": -limit, "vmax": limit}


def picture_grid(rows, cell=(2.0, 2.0), fontsize: int = 8):
    """A figure of pictures in rows: each entry is (title, 2-D array, imshow style) or None (a
    blank cell); ``cell`` is the (width, height) of one picture in inches."""
    columns = max(len(row) for row in rows)
    size = (cell[0] * columns, cell[1] * len(rows))
    fig, axes = plt.subplots(len(rows), columns, figsize=size, squeeze=False)
    for ax_row, row in zip(axes, rows):
        for ax, entry in zip(ax_row, [*row, *[None] * (columns - len(row))]):
            ax.axis("off")
            if entry is not None:
                title, values, style = entry
                ax.imshow(values, **style)
                ax.set_title(title, fontsize=fontsize)
    fig.tight_layout()
    return fig


def labelled_points(points, *, xlabel: str, ylabel: str, title: str = "", log_x=False, ax=None):
    """One point per label at (x, mean of the per-seed values) with ±1 std error bars, the
    label written beside it. points: label -> (x, per-seed values)."""
    if ax is None:
        _, ax = plt.subplots()
    for label, (x, values) in points.items():
        values = np.asarray(values)
        ax.errorbar(x, values.mean(), yerr=values.std(), fmt="o", capsize=3)
        ax.annotate(
            label, (x, values.mean()), fontsize=8, textcoords="offset points", xytext=(4, 4)
        )
    if log_x:
        ax.set_xscale("log")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return ax.figure


# --- translations -------------------------------------------------------------------------------

SHIFT_KEYS = {
    "feature_change": "relative feature change",
    "accuracy_drop": "test accuracy drop",
}


def shift_section(report: Report, shifts: dict, names: dict, caption: str, run=None) -> dict:
    """The report of :func:`lexicon.nn.cnn.shift_effects` over nets (per replica values):
    a table (mean ± std), one unpaired ``compare`` per effect of the first net against the
    second (lower is better), and bars of both effects. ``names`` maps each key of ``shifts``
    to (its label in the table and bars, its short name in the verdicts). Returns, per net,
    the two effects as headline figures (``lexicon.sweeping.figure``: one per grid point when
    ``run``, the fit or config the values come from, is a sweep)."""
    labels = {k: label for k, (label, _) in names.items()}
    report.table(
        ["net", "feature change ||f(Tx)-f(x)||/||f(x)||", "test accuracy", "under 1-px shifts",
         "accuracy drop"],
        [(labels[k], mean_std(v["feature_change"]), mean_std(v["accuracy"]),
          mean_std(v["shifted_accuracy"]), mean_std(v["accuracy_drop"]))
         for k, v in shifts.items()],
        caption=caption,
    )  # fmt: skip
    first, second = (names[k][1] for k in list(shifts)[:2])
    verdicts = {
        key: compare(*(v[key] for v in list(shifts.values())[:2]), paired=False,
                     higher_is_better=False, names=(first, second))
        for key in SHIFT_KEYS
    }  # fmt: skip
    drop, change = verdicts["accuracy_drop"].sentence, verdicts["feature_change"].sentence
    report.text(f"Features: {change}. Accuracy drop under the shifts: {drop}.")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, (key, label) in zip(axes, SHIFT_KEYS.items()):
        plot_bars({labels[k]: v[key] for k, v in shifts.items()}, ylabel=label, ax=ax)
    fig.tight_layout()
    report.figure(fig, "shift_invariance", f"1-pixel shifts: {first} vs {second} (± 1 std)")
    return {k: {key: sweeping.figure(run, v[key]) for key in SHIFT_KEYS} for k, v in shifts.items()}


# --- timing -------------------------------------------------------------------------------------


def step_time_ms(task, state, split: dict, batch_size: int, repeats: int, seed: int = 0) -> float:
    """Median wall time (ms) of one jitted, vmapped training step of ``task`` on a resident
    batch, the first ``batch_size`` examples of ``split`` (0: all of them): one call trains
    every replica of ``state`` (leading axis), replica r with the step stream of seed
    ``seed + r``. ``repeats`` timed calls follow one that compiles."""
    replicas = len(jax.tree.leaves(state.params)[0])
    seeds = np.arange(seed, seed + replicas)
    keys = jax.vmap(lambda s: train.stream(s, "step"))(seeds)
    step = jax.jit(jax.vmap(task.make_step(None), in_axes=(0, None, 0)))
    batch = jax.tree.map(lambda a: jnp.asarray(a[: batch_size or len(a)]), split)
    seconds = median_time(lambda: jax.block_until_ready(step(state, batch, keys)), repeats)
    return 1000.0 * seconds
