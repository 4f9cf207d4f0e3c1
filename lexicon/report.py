"""Reports: results tables (mean ± std over seeds) and PNG learning curves.

python -m lexicon.report WORKDIR         # report.md from WORKDIR/metrics.jsonl
python -m lexicon.report --index DIR     # DIR/index.md gathering DIR/*/report.md
"""

from __future__ import annotations

import argparse
import pathlib
from collections.abc import Iterable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lexicon.train.metrics import read  # noqa: E402

REPORT_FILE = "report.md"


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
    """``directory/index.md``: the first section of every report below ``directory``."""
    directory = pathlib.Path(directory)
    parts = ["# lexicon: all reports\n"]
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
