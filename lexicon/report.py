"""Reports: results tables (mean ± std over seeds), PNG learning curves, results.json.

python -m lexicon.report WORKDIR         # report.md from WORKDIR/metrics.jsonl
python -m lexicon.report --index DIR     # DIR/index.md gathering DIR/*/report.md and the
                                         # headline figures of every DIR/*/results.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import numbers
import pathlib
from collections.abc import Iterable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lexicon.train.metrics import read  # noqa: E402

REPORT_FILE = "report.md"
RESULTS_FILE = "results.json"
SWEEP_FILE = "sweep.json"  # lexicon.train.sweep.SUMMARY_FILE


def primary() -> bool:
    """Whether this process writes files: process 0 of a multi-process run (or the only one)."""
    import jax

    return jax.process_index() == 0


@dataclasses.dataclass(frozen=True)
class Figure:
    """A headline figure of a run: its per-seed values and the reference it is held against.

    The verdict rule, by ``claim``:
    - ``"match"`` (default): the figure *matches* when |mean - reference| is at most
      ``tolerance`` (by default twice the std over seeds, so one seed is held to the reference
      exactly); otherwise it lies *above* or *below* it;
    - ``"at_least"`` / ``"at_most"``: a bound, such as a target speed-up; the claim *holds*
      when mean >= reference - tolerance (or mean <= reference + tolerance; tolerance 0 by
      default) and *fails* otherwise.
    ``relative=True`` reads the tolerance as a fraction of |reference|.
    """

    values: object  # a number or per-seed values
    reference: float | None = None
    source: str | None = None  # where the reference comes from (a paper, scikit-learn, ...)
    tolerance: float | None = None
    claim: str = "match"  # match | at_least | at_most
    relative: bool = False

    def __post_init__(self):
        if self.claim not in ("match", "at_least", "at_most"):
            raise ValueError(f"claim must be match, at_least or at_most, not {self.claim!r}")

    def summary(self) -> dict:
        values = np.asarray(self.values, dtype=np.float64).reshape(-1)
        out = {
            "mean": _number(values.mean()),
            "std": _number(values.std()),
            "per_seed": [_number(v) for v in values],
        }
        if self.reference is not None:
            out["reference"] = _number(self.reference)
            out["source"] = self.source
            if self.claim != "match":
                out["claim"] = self.claim
            out["verdict"] = self.verdict()
        return out

    def verdict(self) -> str | None:
        if self.reference is None:
            return None
        values = np.asarray(self.values, dtype=np.float64).reshape(-1)
        mean = float(values.mean())
        if not math.isfinite(mean):
            return "not finite"
        reference = float(self.reference)
        if self.tolerance is None:
            tolerance = 2 * float(values.std()) if self.claim == "match" else 0.0
        else:
            tolerance = self.tolerance * (abs(reference) if self.relative else 1.0)
        gap = mean - reference
        if self.claim == "at_least":
            return "holds" if gap >= -tolerance else "fails"
        if self.claim == "at_most":
            return "holds" if gap <= tolerance else "fails"
        if abs(gap) <= tolerance:
            return "matches"
        return "above" if gap > 0 else "below"


def _number(value):
    value = float(value)
    return value if math.isfinite(value) else None


def figures_of(results, prefix: str = "") -> dict[str, dict]:
    """The headline figures in what an experiment returns: Figures as they are; numbers and
    per-seed arrays as figures without a reference; nested dicts flattened as ``a/b``.
    Text, other values and keys that start with "_" (data returned for callers, not a
    headline) are left out."""
    found: dict[str, dict] = {}
    if not isinstance(results, dict):
        return found
    for key, value in results.items():
        if str(key).startswith("_"):
            continue
        name = f"{prefix}{key}"
        if isinstance(value, Figure):
            found[name] = value.summary()
        elif isinstance(value, dict):
            found.update(figures_of(value, name + "/"))
        elif isinstance(value, (numbers.Number, np.ndarray, list, tuple)) and not isinstance(
            value, bool
        ):
            try:
                array = np.asarray(value, dtype=np.float64)
            except (TypeError, ValueError):
                continue
            if 0 < array.size <= 4096:
                found[name] = Figure(array).summary()
    return found


def write_results(workdir, topic: str, results) -> dict[str, dict]:
    """Writes ``workdir/results.json``: {"topic", "figures": {name: mean, std, per_seed,
    reference, source, verdict}}; returns the figures."""
    figures = figures_of(results)
    path = pathlib.Path(workdir) / RESULTS_FILE
    path.write_text(json.dumps({"topic": topic, "figures": figures}, indent=1) + "\n")
    return figures


def format_figure(figure: dict) -> str:
    if figure["mean"] is None:
        return "not finite"
    mean, std = figure["mean"], figure["std"] or 0.0
    digits = 4 if abs(mean) >= 1e-3 or mean == 0 else 2
    style = "f" if abs(mean) >= 1e-3 or mean == 0 else "e"
    text = f"{mean:.{digits}{style}}"
    if len(figure["per_seed"]) > 1:
        text += f" ± {std:.{digits}{style}}"
    return text


def results_text(figures: dict[str, dict]) -> str:
    """The headline figures as aligned lines: name, ours, reference, verdict."""
    width = max(len(name) for name in figures)
    lines = []
    for name, figure in figures.items():
        line = f"{name:<{width}}  {format_figure(figure)}"
        if figure.get("reference") is not None:
            source = f" ({figure['source']})" if figure.get("source") else ""
            relation = {"at_least": ">=", "at_most": "<="}.get(figure.get("claim"), "vs")
            line += f"  {relation} {figure['reference']:.4g}{source}: {figure['verdict']}"
        lines.append(line)
    return "\n".join(lines)


def mean_std(values, digits: int = 4) -> str:
    """'mean ± std' over seeds (population std; 0 for a single seed)."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.size == 1:
        return f"{values[0]:.{digits}f}"
    return f"{values.mean():.{digits}f} ± {values.std():.{digits}f}"


def scientific(values, digits: int = 1, std_digits: int = 1) -> str:
    """'mean ± std' over seeds in scientific notation, for values that span decades (distances
    that reach 1e-7, gradient ratios)."""
    values = np.asarray(values, dtype=np.float64)
    return f"{values.mean():.{digits}e} ± {values.std():.{std_digits}e}"


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence]) -> str:
    def cells(values):
        return "| " + " | ".join(str(v).replace("|", "\\|") for v in values) + " |"

    lines = [cells(headers), "|" + "---|" * len(headers)]
    lines += [cells(row) for row in rows]
    return "\n".join(lines)


def band(ax, x, values, label: str, **style) -> None:
    """Plots the seed mean of ``values`` (seeds, points) with a ±1 std band."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[None]
    mean, std = values.mean(axis=0), values.std(axis=0)
    (line,) = ax.plot(x, mean, label=label, **style)
    if len(values) > 1:
        ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2, lw=0)


def curves(history: list[dict], keys: Sequence[str], path, *, title: str = "", log_y=False):
    """One panel per metric name (e.g. loss, accuracy), one line per split, against epoch."""
    groups: dict[str, list[str]] = {}
    for key in keys:
        groups.setdefault(key.split("/")[-1], []).append(key)
    fig, axes = plt.subplots(1, len(groups), figsize=(4.5 * len(groups), 3.4), squeeze=False)
    for ax, (name, members) in zip(axes[0], groups.items()):
        for key in members:
            records = [r for r in history if key in r]
            epochs = [r["epoch"] for r in records]
            values = np.array([r[key] for r in records]).T  # (seeds, epochs)
            band(ax, epochs, values, key.split("/")[0])
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        if log_y and name == "loss":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def final_table(history: list[dict]) -> str:
    """Last recorded value of every metric, mean ± std over seeds."""
    latest: dict[str, list] = {}
    for record in history:
        for key, value in record.items():
            if "/" in key:
                latest[key] = value
    if not latest:
        return "(no metrics recorded)"
    seeds = len(np.atleast_1d(next(iter(latest.values()))))
    rows = [(key, mean_std(value)) for key, value in sorted(latest.items())]
    return markdown_table(["metric", f"final value (mean ± std over {seeds} seeds)"], rows)


# ---------------------------------------------------------------------------------------------
# Standard figures: each is one call that returns a matplotlib figure; Report.figure embeds it.

STYLE = {
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "font.size": 9,
}


def _axes(ax=None, size=(5.0, 3.5)):
    if ax is not None:
        return ax.figure, ax
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=size)
    return fig, ax


def panels(count: int, columns: int | None = None, size=(5.0, 3.5), **subplots):
    """A figure of ``count`` axes in rows of ``columns`` (all in one row by default), in the
    house style with a constrained layout; returns (figure, flat list of the used axes) and
    hides the axes left over. Each axis takes the ``ax=`` of the plot_* figures."""
    columns = max(1, min(columns or count, count))
    rows = -(-count // columns)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(
            rows,
            columns,
            figsize=(size[0] * columns, size[1] * rows),
            squeeze=False,
            layout="constrained",
            **subplots,
        )
    axes = list(axes.reshape(-1))
    for ax in axes[count:]:
        ax.set_visible(False)
    return fig, axes[:count]


def plot_curves(
    runs,
    *,
    xlabel: str = "epoch",
    ylabel: str = "",
    title: str = "",
    log_y: bool = False,
    ax=None,
):
    """Curves of several runs, each the seed mean with a ±1 std band.

    runs: label -> (x, values of shape (seeds, points)), e.g. ``Result.curve(key)``.
    """
    fig, ax = _axes(ax)
    with plt.rc_context(STYLE):
        for label, (x, values) in runs.items():
            band(ax, x, values, label)
        ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
        if log_y:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        if len(runs) > 1:
            ax.legend()
    return fig


def plot_bars(
    values,
    *,
    ylabel: str = "",
    title: str = "",
    baseline: float | None = None,
    baseline_label: str = "baseline",
    ax=None,
):
    """One bar per label at the seed mean, with ±1 std error bars and an optional baseline.

    values: label -> per-seed values.
    """
    fig, ax = _axes(ax)
    labels = list(values)
    arrays = [np.asarray(values[k], dtype=np.float64).reshape(-1) for k in labels]
    with plt.rc_context(STYLE):
        ax.bar(
            range(len(labels)),
            [a.mean() for a in arrays],
            yerr=[a.std() for a in arrays],
            capsize=3,
            color="tab:blue",
            alpha=0.8,
        )
        ax.set_xticks(range(len(labels)), labels, rotation=30 if len(labels) > 4 else 0)
        if baseline is not None:
            ax.axhline(baseline, color="tab:red", ls="--", lw=1, label=baseline_label)
            ax.legend()
        ax.set(ylabel=ylabel, title=title)
    return fig


def plot_images(images, *, columns: int = 10, titles=None, cmap: str = "gray", size=1.0):
    """A grid of images (n, h, w) or (n, h, w, c), one optional title each."""
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    n = len(images)
    columns = max(1, min(columns, n))
    rows = -(-n // columns)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(
            rows, columns, figsize=(size * columns, size * rows + 0.2), squeeze=False
        )
    for i, ax in enumerate(axes.reshape(-1)):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i], cmap=cmap)
            if titles is not None:
                ax.set_title(str(titles[i]), fontsize=7)
    fig.tight_layout()
    return fig


def plot_scatter(points, labels=None, *, title: str = "", xlabel="", ylabel="", ax=None):
    """A 2-D scatter of ``points`` (n, 2), coloured by class ``labels`` (n,) when given."""
    fig, ax = _axes(ax, size=(4.5, 4.0))
    points = np.asarray(points)
    with plt.rc_context(STYLE):
        if labels is None:
            ax.scatter(points[:, 0], points[:, 1], s=4, alpha=0.7)
        else:
            labels = np.asarray(labels)
            for c in np.unique(labels):
                pick = labels == c
                ax.scatter(points[pick, 0], points[pick, 1], s=4, alpha=0.7, label=str(c))
            ax.legend(markerscale=3, fontsize=7, ncols=2)
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    return fig


def plot_heatmap(
    matrix, *, row_labels=None, col_labels=None, title: str = "", annotate=True, cmap="viridis"
):
    """A heat map of ``matrix`` with labelled rows and columns, values written in the cells."""
    matrix = np.asarray(matrix, dtype=np.float64)
    rows, cols = matrix.shape
    fig, ax = _axes(None, size=(1.0 + 0.7 * cols, 0.8 + 0.45 * rows))
    with plt.rc_context(STYLE):
        image = ax.imshow(matrix, cmap=cmap, aspect="auto")
        ax.grid(False)
        fig.colorbar(image, ax=ax)
        if row_labels is not None:
            ax.set_yticks(range(rows), [str(r) for r in row_labels])
        if col_labels is not None:
            ax.set_xticks(range(cols), [str(c) for c in col_labels])
        if annotate:
            for i in range(rows):
                for j in range(cols):
                    if np.isfinite(matrix[i, j]):
                        ax.text(j, i, f"{matrix[i, j]:.3g}", ha="center", va="center", fontsize=7)
        ax.set_title(title)
    return fig


# ---------------------------------------------------------------------------------------------
# Does a claim hold across seeds?


@dataclasses.dataclass(frozen=True)
class Comparison:
    """The outcome of ``compare``: the mean difference a - b, its spread and interval, the
    seeds where a wins, the verdict and the sentence a report prints."""

    mean: float
    std: float
    low: float
    high: float
    wins: int
    seeds: int
    paired: bool
    verdict: str  # "holds", "reversed" or "undecided"
    sentence: str

    @property
    def holds(self) -> bool:
        return self.verdict == "holds"


def compare(
    a,
    b,
    *,
    paired: bool,
    higher_is_better: bool = True,
    names: tuple[str, str] = ("a", "b"),
    confidence: float = 0.95,
    digits: int = 4,
) -> Comparison:
    """The one rule by which a report says that "a beats b" holds across seeds.

    ``a`` and ``b`` are per-seed values of the same figure. Paired (the seeds share their
    initialization and data, so seed i of a and of b differ only in the method): the
    differences d_i = a_i - b_i get a Student t-interval, mean(d) ± t_{n-1} s_d / sqrt(n).
    Unpaired: Welch's t-interval for mean(a) - mean(b). The claim *holds* when the whole
    interval lies on the better side of 0 (above for ``higher_is_better``), is *reversed* when
    it lies on the worse side, and is *undecided* otherwise, or with fewer than 2 seeds. Wins
    count the seeds (paired) or the pairs of seeds (unpaired) where a is better than b.
    """
    from scipy import stats

    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    sign = 1.0 if higher_is_better else -1.0
    if paired:
        if a.shape != b.shape:
            raise ValueError(
                f"paired comparison needs as many values in a as in b: {a.shape}, {b.shape}"
            )
        d = a - b
        n = d.size
        mean = float(d.mean())
        std = float(d.std(ddof=1)) if n > 1 else 0.0
        half = (
            float(stats.t.ppf(0.5 + confidence / 2, n - 1) * std / np.sqrt(n)) if n > 1 else np.inf
        )
        wins = int(np.sum(sign * d > 0))
        total = n
    else:
        n = min(a.size, b.size)
        mean = float(a.mean() - b.mean())
        va = a.var(ddof=1) / a.size if a.size > 1 else np.nan
        vb = b.var(ddof=1) / b.size if b.size > 1 else np.nan
        std = float(np.sqrt(va + vb)) if a.size > 1 and b.size > 1 else 0.0
        if a.size > 1 and b.size > 1 and std > 0:
            dof = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
            half = float(stats.t.ppf(0.5 + confidence / 2, dof) * std)
        elif a.size > 1 and b.size > 1:
            half = 0.0
        else:
            half = np.inf
        wins = int(np.sum(sign * (a[:, None] - b[None, :]) > 0))
        total = a.size * b.size
    low, high = mean - half, mean + half
    # On the better side: the interval of sign * (a - b) lies above 0.
    better_low, better_high = sorted((sign * low, sign * high))
    if n < 2:
        verdict = "undecided"
    elif better_low > 0:
        verdict = "holds"
    elif better_high < 0:
        verdict = "reversed"
    else:
        verdict = "undecided"
    better = "higher" if higher_is_better else "lower"
    interval = (
        f"{int(confidence * 100)}% interval [{low:+.{digits}f}, {high:+.{digits}f}]"
        if np.isfinite(half)
        else "one seed, no interval"
    )
    kind = "paired seeds" if paired else "seed pairs"
    outcome = {
        "holds": f"{names[0]} is {better} than {names[1]}",
        "reversed": f"{names[0]} is not {better} than {names[1]}: the opposite holds",
        "undecided": f"{names[0]} is not clearly {better} than {names[1]}",
    }[verdict]
    sentence = (
        f"{outcome} ({names[0]} - {names[1]} = {mean:+.{digits}f}, {interval}; "
        f"{names[0]} better in {wins}/{total} {kind})"
    )
    return Comparison(mean, std, low, high, wins, total, paired, verdict, sentence)


def held_against(values, baseline, comparison: Comparison, source: str) -> Figure:
    """``values`` as a Figure held against the mean of ``baseline`` with the verdict of
    ``comparison`` (a ``compare(values, baseline, ...)``): it *matches* while the interval of
    the difference holds 0, and lies *above* or *below* once the interval leaves 0."""
    half = (comparison.high - comparison.low) / 2
    return Figure(values, reference=float(np.mean(baseline)), source=source, tolerance=half)


def figure(result, key: str, **held) -> Figure | dict[str, Figure]:
    """The final ``key`` of a ``train.fit`` result as a headline figure: one Figure over the
    seeds, or, for a sweep, one per grid point (named by its coordinates, e.g. ``lr=0.1``).

    ``held`` (reference, source, tolerance, claim, relative) goes to the Figure of a plain run;
    a grid point gets no verdict (a claim is made at the configured setting, and the sweep's
    own table marks its best point by validation)."""
    if getattr(result, "sweep", None) is None:
        return Figure(result.final(key), **held)
    return {result.sweep.label(g): Figure(v) for g, v in enumerate(result.points(key))}


class Report:
    """Collects markdown sections and figures, then writes ``workdir/report.md``."""

    def __init__(self, workdir, title: str):
        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.parts = [f"# {title}\n"]

    def text(self, markdown: str) -> Report:
        self.parts.append(markdown.strip() + "\n")
        return self

    def table(self, headers: Sequence[str], rows: Iterable[Sequence], caption: str = "") -> Report:
        if caption:
            self.parts.append(f"**{caption}**\n")
        self.parts.append(markdown_table(headers, rows) + "\n")
        return self

    def figure(self, fig, name: str, caption: str = "") -> Report:
        """Saves a matplotlib figure as ``name``.png next to the report and links it (process
        0 only, as every file of a multi-process run)."""
        if primary():
            fig.savefig(self.workdir / f"{name}.png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        return self.image(f"{name}.png", caption)

    def image(self, filename: str, caption: str = "") -> Report:
        self.parts.append(f"![{caption or filename}]({filename})\n")
        if caption:
            self.parts.append(f"*{caption}*\n")
        return self

    def learning_curves(self, history: list[dict], keys: Sequence[str], name="curves", **kw):
        if primary():
            curves(history, keys, self.workdir / f"{name}.png", **kw)
        return self.image(f"{name}.png", "learning curves: seed mean with a ±1 std band")

    def write(self) -> pathlib.Path:
        path = self.workdir / REPORT_FILE
        if primary():
            path.write_text("\n".join(self.parts))
        return path


# ---------------------------------------------------------------------------------------------
# Sweeps: every grid point of a swept run (lexicon.train.sweep), its table and its heat map


def _metric_text(entry: dict | None) -> str:
    if not entry or entry.get("mean") is None:
        return "not finite"
    per_seed = entry.get("per_seed") or []
    figure = {"mean": entry["mean"], "std": entry.get("std"), "per_seed": per_seed}
    return format_figure(figure)


def sweep_section(report: Report, summary: dict, name: str = "sweep", title: str = "") -> Report:
    """A sweep's table (every grid point: the selection metric and its test counterpart,
    mean ± std over seeds; the best point by validation in bold) and its figure: a heat map
    of the selection metric for two swept keys, a curve for one."""
    select = summary.get("select")
    keys = summary["keys"]
    points = summary["points"]
    best = summary.get("best")
    report.text(f"## {title or 'Sweep'}")
    if select is None:
        report.text("The run recorded no metric to choose a grid point by.")
        return report
    metric = select["metric"]
    test = "test/" + metric.split("/", 1)[1]
    shown = [metric] + ([test] if any(test in p["metrics"] for p in points) else [])
    rows = []
    for g, point in enumerate(points):
        cells = [f"{point['point'][k]:g}" for k in keys]
        cells += [_metric_text(point["metrics"].get(m)) for m in shown]
        if g == best:
            cells = [f"**{c}**" for c in cells]
        rows.append(cells)
    direction = "highest" if select["higher_is_better"] else "lowest"
    chosen = (
        ", ".join(f"{k}={points[best]['point'][k]:g}" for k in keys) if best is not None else "none"
    )
    report.table(
        [*keys, *shown],
        rows,
        caption=(
            f"{len(points)} grid points x {summary['seeds']} seeds, final values (mean ± std "
            f"over seeds); in bold the point with the {direction} {metric}: {chosen}"
            + (
                f" (its {test}: {_metric_text(points[best]['metrics'].get(test))})"
                if best is not None and test in shown
                else ""
            )
        ),
    )
    means = np.array(
        [
            np.nan
            if p["metrics"].get(metric, {}).get("mean") is None
            else p["metrics"][metric]["mean"]
            for p in points
        ],
        dtype=np.float64,
    )
    axes = summary.get("axes")
    if axes and len(keys) == 2:
        shape = summary["shape"]
        fig = plot_heatmap(
            means.reshape(shape),
            row_labels=[f"{v:g}" for v in axes[keys[0]]],
            col_labels=[f"{v:g}" for v in axes[keys[1]]],
            title=f"{metric} (seed mean)",
        )
        ax = fig.axes[0]
        ax.set(ylabel=keys[0], xlabel=keys[1])
        if best is not None:
            i, j = np.unravel_index(best, shape)
            ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="red", lw=2))
        report.figure(fig, name, f"{metric} over the grid; red box: the best point by validation")
    elif len(keys) == 1:
        x = np.array([p["point"][keys[0]] for p in points], dtype=np.float64)
        values = np.array(
            [
                [np.nan if v is None else v for v in p["metrics"][metric]["per_seed"]]
                for p in points
            ],
            dtype=np.float64,
        ).T
        fig, ax = _axes()
        with plt.rc_context(STYLE):
            band(ax, x, values, metric, marker="o")
            if best is not None:
                ax.plot(
                    [x[best]], [means[best]], "*", color="tab:red", ms=14, label="best (validation)"
                )
            if np.all(x > 0) and x.max() / x.min() >= 10:
                ax.set_xscale("log")
            ax.set(xlabel=keys[0], ylabel=metric)
            ax.legend()
        report.figure(
            fig, name, f"{metric} against {keys[0]} (seed mean ± std); star: the best point"
        )
    return report


def add_sweeps(workdir) -> list[pathlib.Path]:
    """After a run: every ``sweep.json`` under ``workdir`` goes into results.json (under
    "sweeps", by folder) and into report.md (a section each). Process 0 only."""
    workdir = pathlib.Path(workdir)
    found = sorted(workdir.rglob(SWEEP_FILE))
    if not found or not primary():
        return found
    results_path = workdir / RESULTS_FILE
    saved = json.loads(results_path.read_text()) if results_path.exists() else {"figures": {}}
    report_path = workdir / REPORT_FILE
    body = report_path.read_text() if report_path.exists() else f"# {workdir.name}\n"
    report = Report(workdir, "")
    report.parts = [body.rstrip("\n") + "\n"]
    saved["sweeps"] = {}
    for path in found:
        summary = json.loads(path.read_text())
        where = path.parent.relative_to(workdir).as_posix()
        saved["sweeps"][where] = summary
        label = "" if where == "." else where
        name = "sweep-" + (label.replace("/", "-") or "grid")
        title = f"Sweep{' of ' + label if label else ''}: {', '.join(summary['keys'])}"
        sweep_section(report, summary, name=name, title=title)
    results_path.write_text(json.dumps(saved, indent=1) + "\n")
    report.write()
    return found


def from_metrics(workdir, title: str | None = None) -> pathlib.Path:
    """The default report of a run: final-metrics table and curves from metrics.jsonl."""
    workdir = pathlib.Path(workdir)
    history = read(workdir)
    report = Report(workdir, title or workdir.name)
    report.text(final_table(history))
    keys = sorted({k for r in history for k in r if "/" in k})
    if keys:
        report.learning_curves(history, keys)
    return report.write()


def index(directory) -> pathlib.Path:
    """``directory/index.md``: one table of every run's headline figures against their
    references (from each ``results.json``), then the first section of every report."""
    directory = pathlib.Path(directory)
    parts = ["# lexicon: all reports\n"]
    rows = []
    for path in sorted(directory.glob(f"*/{RESULTS_FILE}")):
        saved = json.loads(path.read_text())
        for name, figure in saved.get("figures", {}).items():
            reference = figure.get("reference")
            rows.append(
                (
                    saved.get("topic", path.parent.name),
                    name,
                    format_figure(figure),
                    "" if reference is None else f"{reference:.4g} ({figure.get('source') or ''})",
                    figure.get("verdict") or "",
                )
            )
    if rows:
        parts.append("## Headline figures\n")
        parts.append(markdown_table(["topic", "figure", "ours", "reference", "verdict"], rows))
        parts.append("")
    for path in sorted(directory.glob(f"*/{REPORT_FILE}")):
        body = path.read_text().split("\n")
        heading = body[0].lstrip("# ") if body else path.parent.name
        parts.append(f"## [{heading}]({path.parent.name}/{REPORT_FILE})\n")
        # Images are relative to each report; re-root them under the report's folder.
        lines = [
            line.replace("](", f"]({path.parent.name}/") if line.startswith("![") else line
            for line in body[1:]
        ]
        parts.append("\n".join(lines).strip() + "\n")
    out = directory / "index.md"
    out.write_text("\n".join(parts))
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", nargs="?", help="a run's work directory")
    parser.add_argument("--index", help="gather every DIR/*/report.md into DIR/index.md")
    args = parser.parse_args(argv)
    if args.index:
        print(index(args.index))
    elif args.workdir:
        print(from_metrics(args.workdir))
    else:
        parser.error("give a WORKDIR or --index DIR")


if __name__ == "__main__":
    main()
