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

from lexicon import cli, regularized, report

RULES = regularized.RULES
SWEEPABLE = regularized.SWEEPABLE  # e.g. --config.sweep='l2_alpha=0.001,0.1'
check_config = regularized.check_config


def get_config():
    config = regularized.defaults()
    config.methods = "none,l2,dropout,early_stopping,combined"  # the runs drawn over time
    return config


def train_and_evaluate(config, workdir):
    splits, fitted = regularized.run_methods(config, workdir)
    runs = {m: result for m, (result, _, _) in fitted.items()}
    stops = {}  # per seed: the best validation epoch, the stop epoch, the test acc. at the best
    for method, result in runs.items():
        best, stop, at_best = regularized.replay(config, result, {"test_acc": "test/accuracy"})
        stops[method] = {"best": best, "stop": stop, "test_acc": at_best["test_acc"]}

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
        fig, axes = report.panels(len(runs), 5, size=(2.9, 2.5), sharey=True)
        for ax, method in zip(axes, runs):
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
        f"{name}_epoch": {m: regularized.per_point(runs[m], s[name]) for m, s in stops.items()}
        for name in ("best", "stop")
    }


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, RULES)
