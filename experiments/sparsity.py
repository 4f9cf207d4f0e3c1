"""What a penalty leaves in the weights: L2 shrinks them, only a proximal L1 step zeroes them.

Document 001 (SPEC §4): the L2 penalty (alpha/2) w^T w shrinks every weight by the factor
(1 - eps alpha) per step; the L1 penalty alpha ||w||_1 pulls every weight towards 0 by
eps alpha, and is known for sparse solutions. With subgradient steps the pull overshoots 0,
so a weight only oscillates around it; the proximal step w <- soft_threshold(w - eps grad J,
eps alpha) sets every weight whose step would cross 0 to exactly 0.

The runs are those of experiments/regularization.py (lexicon.regularized: the same
overfitting MLP, methods, seeds and workdir layout); this study reads their final weights
(kernels, not biases).
"""

from __future__ import annotations

import numpy as np

from lexicon import cli, regularized, regularizers, report
from lexicon.rules import probability

RULES = {**regularized.RULES, "zero_tol": probability()}
SWEEPABLE = regularized.SWEEPABLE  # e.g. --config.sweep='l1_alpha=0.0001,0.01'
check_config = regularized.check_config


def get_config():
    config = regularized.defaults()
    config.methods = "none,l2,l1,l1_proximal"  # the runs whose weights are compared
    config.zero_tol = 1e-3  # a weight with |w| below this counts as near zero
    return config


def train_and_evaluate(config, workdir):
    splits, runs = regularized.run_methods(config, workdir)
    weights = {m: regularizers.kernel_values(r.state.params) for m, (r, _, _) in runs.items()}
    zeros = {m: regularizers.sparsity(w, config.zero_tol) for m, w in weights.items()}
    settings = regularized.settings_of(config)

    out = report.Report(workdir, "What L2 and L1 leave in the weights")
    out.text(
        f"The runs of experiments/regularization.py ({len(splits.train['y'])} digits, "
        f"{config.epochs} epochs of SGD, eps = {config.lr}, {config.seeds} seeds); all "
        f"{next(iter(weights.values())).shape[1]} weights of the kernels after training."
    )
    ms = report.mean_std
    out.table(
        ["method", "setting", f"|w| < {config.zero_tol}", "w = 0", "mean |w|", "test acc."],
        [
            (
                m,
                settings.get(m, ""),
                ms(near, 3),
                ms(exact, 3),
                ms(np.abs(weights[m]).mean(1)),
                ms(runs[m][1]["test_acc"]),
            )
            for m, (near, exact) in zeros.items()
        ],
        caption=f"Weight sparsity after training, mean ± std over {config.seeds} seeds",
    )
    out.figure(
        regularizers.plot_weights(weights, config.zero_tol),
        "weights",
        "weights after training: histogram (log counts) and the fraction below each "
        "threshold (dotted: zero_tol); only the proximal step sets weights exactly to 0",
    )
    out.write()
    l1 = [m for m in runs if regularized.techniques_of(m, config) & {"l1", "l1_proximal"}]
    figure = regularized.per_point  # one figure per grid point in a sweep
    return {
        "zero_weights": {m: figure(runs[m][0], zeros[m][1]) for m in l1},  # fraction w = 0
        "near_zero_weights": {m: figure(runs[m][0], near) for m, (near, _) in zeros.items()},
    }


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, RULES)
