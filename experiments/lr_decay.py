"""Linear decay of the learning rate against a constant rate, for SGD (Alg 8.1).

On the penalized logistic regression of digits (J = mean cross-entropy + (lambda/2)||W||^2,
J* from scikit-learn, as in optimizers.py): the linear schedule
    eps_k = (1 - a) eps_0 + a eps_tau,   a = k / tau   (constant after tau),
with eps_tau = 1% of eps_0 as document 001 suggests and tau the whole run, against the
constant eps_0. The claim under test: with a constant rate the minibatch noise keeps SGD
moving around the optimum at a distance that grows with eps, while a decaying rate lets it
settle closer.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from lexicon import cli, optim, train
from lexicon.optim import problems
from lexicon.optim.problems import sci
from lexicon.report import Figure, Report, compare, mean_std, plot_curves
from lexicon.rules import Range, check_batch_size, positive


def get_config():
    config = train.defaults()
    config.seeds = 3
    config.batch_size = 32  # minibatch size m
    config.l2 = 1e-3  # lambda of the logistic regression's (lambda/2)||W||^2 (biases free)
    config.decay_lr = 1.0  # eps_0 of both schedules
    config.decay_epochs = 100  # tau spans this many epochs (the document: hundreds of passes)
    config.decay_final = 0.01  # eps_tau / eps_0 (the document suggests 1%)
    return config


RULES = {
    "l2": positive(),
    "decay_lr": positive(),
    "decay_epochs": Range(1, cli.MAX_EPOCHS),
    "decay_final": Range(0.0, 1.0),
}


def check_config(config):
    """Cross-key rules; cli.run checks them before anything compiles."""
    n = cli.train_examples("digits", seed=config.data_seed)
    check_batch_size(config, n, of="digits training examples")


def train_and_evaluate(config, workdir):
    report = Report(workdir, "Linear learning-rate decay against a constant rate")
    logreg, optimum = problems.logistic_problem(config, report.workdir)
    n = len(logreg.splits.train["y"])
    tau = config.decay_epochs * (n // (config.batch_size or n))
    eps0, eps_tau = config.decay_lr, config.decay_final * config.decay_lr
    schedule = optim.linear_decay(eps0, eps_tau, tau)
    schedules = {"constant": (eps0, f"sgd_lr{eps0:g}"), "linear decay": (schedule, "sgd_decay")}
    runs = {
        label: logreg.fit(
            optim.sgd(rate), name, batch_size=config.batch_size, epochs=config.decay_epochs
        )
        for label, (rate, name) in schedules.items()
    }
    gaps = {label: run.final["objective"] - optimum["objective"] for label, run in runs.items()}
    rows = [
        (
            label,
            f"{eps0:g}" if label == "constant" else f"{eps0:g} -> {eps_tau:g} over {tau} steps",
            mean_std(run.final["objective"], 5),
            sci(gaps[label]),
            mean_std(run.final["test_accuracy"]),
        )
        for label, run in runs.items()
    ]
    report.text(
        f"{config.seeds} seeds trained together (vmap); tables give mean ± std over seeds.\n\n"
        f"SGD on the logistic regression of digits (lambda = {config.l2:g}, J* = "
        f"{optimum['objective']:.5f} from scikit-learn), m = {config.batch_size}, "
        f"{config.decay_epochs} epochs; eps_tau = {config.decay_final:g} eps_0 and tau = the "
        "whole run."
    )
    report.table(
        ["schedule", "eps", "final J", "J - J*", "test accuracy"],
        rows,
        caption="Constant rate vs linear decay (mean ± std over seeds)",
    )
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    plot_curves(problems.gap_curves(runs, optimum), ylabel="J - J*", log_y=True, ax=axes[0])
    steps = np.arange(tau + 1)
    rates = {"constant": np.full(steps.shape, eps0), "linear decay": np.asarray(schedule(steps))}
    plot_curves(
        {k: (steps, v) for k, v in rates.items()}, xlabel="step k", ylabel="eps_k", ax=axes[1]
    )
    fig.suptitle("SGD on the logistic regression: constant rate vs linear decay")
    report.figure(fig, "decay", "J - J* per epoch (mean ± std band), and the two schedules")
    verdict = compare(
        gaps["linear decay"],
        gaps["constant"],
        paired=True,
        higher_is_better=False,
        names=("linear decay", "constant"),
    )
    report.text(f"Measured J - J*: {verdict.sentence}.")
    report.write()
    mean = {label: float(np.mean(gap)) for label, gap in gaps.items()}
    return {
        "decay_gap": {
            "constant": mean["constant"],
            # 'below': the decaying rate settles closer to J* than the constant one
            "linear_decay": Figure(
                mean["linear decay"], reference=mean["constant"], source="constant rate"
            ),
        }
    }


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, RULES)
