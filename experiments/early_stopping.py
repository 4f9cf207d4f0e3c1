"""Early stopping: the train-test gap opening epoch by epoch, and the epoch a patience rule keeps.

Document 001 (SPEC §4): as training goes on, the training error keeps falling while the
validation error, after a while, rises again; early stopping keeps the parameters of the
epoch with the lowest validation error, and a patience rule stops training once that error
has not improved for ``patience`` epochs. Stopping changes which weights are kept, not how
they are trained, so the rule of ``lexicon.train.early_stopping`` is replayed on the
validation curve recorded every epoch (``regularizers.replay_early_stopping``): one recorded
run answers for any patience.

The runs are those of experiments/regularization.py (lexicon.regularized: the same
overfitting MLP, methods, seeds and workdir layout); this study draws them over time.
"""

from __future__ import annotations

import numpy as np

from lexicon import cli, data, regularized, regularizers, report

RULES = regularized.RULES
check_config = regularized.check_config


def get_config():
    config = regularized.defaults()
    config.methods = "none,l2,dropout,early_stopping,combined"  # the runs drawn over time
    return config


def stopping_epochs(config, result) -> dict[str, np.ndarray]:
    """Per seed: the best validation epoch, the epoch the rule stops at, and the test
    accuracy at the best epoch, replayed on the run's recorded curves."""
    best, stop, at_best = regularizers.replay_early_stopping(
        result.curve(f"val/{config.monitor}")[1].T,
        {"test_acc": result.curve("test/accuracy")[1].T},
        config.patience,
        "min" if config.monitor == "loss" else "max",
    )
    return {"best": best, "stop": stop, "test_acc": at_best["test_acc"]}


def train_and_evaluate(config, workdir):
    methods = regularized.check_methods(config)
    splits = data.load("digits", seed=config.data_seed, train_size=config.train_size)
    runs = {
        m: r for m, (r, _, _) in regularized.fit_methods(config, workdir, methods, splits).items()
    }
    stops = {m: stopping_epochs(config, r) for m, r in runs.items()}

    out = report.Report(workdir, "Early stopping on an overfitting MLP")
    out.text(
        f"The runs of experiments/regularization.py ({len(splits.train['y'])} digits, "
        f"{config.epochs} epochs, {config.seeds} seeds). Patience {config.patience} on the "
        f"validation {config.monitor}, replayed on the curve recorded every epoch."
    )
    ms = report.mean_std
    out.table(
        ["run", "best epoch", "stop epoch", "test acc. at the best epoch", "final test acc."],
        [
            (
                m,
                ms(s["best"], 1),
                ms(s["stop"], 1),
                ms(s["test_acc"]),
                ms(runs[m].final("test/accuracy")),
            )
            for m, s in stops.items()
        ],
        caption=f"Where the patience rule stops each run (mean ± std over {config.seeds} seeds)",
    )
    for metric in ("accuracy", "loss"):
        fig, axes = report.panels(len(methods), 5, size=(2.9, 2.5), sharey=True)
        for ax, method in zip(axes, methods):
            curves = {
                s: runs[method].curve(f"{k}/{metric}")
                for s, k in (("train", "train_eval"), ("test", "test"))
            }
            label = "cross-entropy" if metric == "loss" else metric
            report.plot_curves(curves, title=method, ylabel=label, log_y=metric == "loss", ax=ax)
            ax.axvline(stops[method]["best"].mean(), color="k", ls="--", lw=1, label="best val")
            ax.legend(fontsize=7)
        out.figure(
            fig,
            f"curves_{metric}",
            f"{label} on the training examples and the test split (mean ± std band over seeds); "
            "dashed: the mean best-validation epoch a patience rule keeps",
        )
    out.write()
    return {
        "best_epoch": {m: s["best"] for m, s in stops.items()},
        "stop_epoch": {m: s["stop"] for m, s in stops.items()},
    }


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, RULES)
