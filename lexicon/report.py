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


@dataclasses.dataclass(frozen=True)
class Figure:
    """A headline figure of a run: its per-seed values and the reference it is held against.

    The verdict rule: with a reference, the figure *matches* when |mean - reference| is at
    most ``tolerance`` (given by the experiment; by default twice the std over seeds, so one
    seed is held to the reference exactly), otherwise it lies *above* or *below* it.
    """

    values: object  # a number or per-seed values
    reference: float | None = None
    source: str | None = None  # where the reference comes from (a paper, scikit-learn, ...)
    tolerance: float | None = None

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
            out["verdict"] = self.verdict()
        return out

    def verdict(self) -> str | None:
        if self.reference is None:
            return None
        values = np.asarray(self.values, dtype=np.float64).reshape(-1)
        mean = float(values.mean())
        if not math.isfinite(mean):
            return "not finite"
        tolerance = 2 * float(values.std()) if self.tolerance is None else self.tolerance
        gap = mean - float(self.reference)
        if abs(gap) <= tolerance:
            return "matches"
        return "above" if gap > 0 else "below"


def _number(value):
    value = float(value)
    return value if math.isfinite(value) else None


def figures_of(results, prefix: str = "") -> dict[str, dict]:
    """The headline figures in what an experiment returns: Figures as they are; numbers and
    per-seed arrays as figures without a reference; nested dicts flattened as ``a/b``.
    Text and other values are left out."""
    found: dict[str, dict] = {}
    if not isinstance(results, dict):
        return found
    for key, value in results.items():
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
            line += f"  vs {figure['reference']:.4g}{source}: {figure['verdict']}"
        lines.append(line)
    return "\n".join(lines)


def mean_std(values, digits: int = 4) -> str:
    """'mean ± std' over seeds (population std; 0 for a single seed)."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.size == 1:
        return f"{values[0]:.{digits}f}"
    return f"{values.mean():.{digits}f} ± {values.std():.{digits}f}"


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
        """Saves a matplotlib figure as ``name``.png next to the report and links it."""
        fig.savefig(self.workdir / f"{name}.png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        return self.image(f"{name}.png", caption)

    def image(self, filename: str, caption: str = "") -> Report:
        self.parts.append(f"![{caption or filename}]({filename})\n")
        if caption:
            self.parts.append(f"*{caption}*\n")
        return self

    def learning_curves(self, history: list[dict], keys: Sequence[str], name="curves", **kw):
        curves(history, keys, self.workdir / f"{name}.png", **kw)
        return self.image(f"{name}.png", "learning curves: seed mean with a ±1 std band")

    def write(self) -> pathlib.Path:
        path = self.workdir / REPORT_FILE
        path.write_text("\n".join(self.parts))
        return path


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
