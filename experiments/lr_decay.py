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

from lexicon import cli, optim, sweeping, train
from lexicon.optim import problems, studies
from lexicon.report import Figure, Report, plot_curves
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


SWEEPABLE = ("decay_lr",)  # --config.sweep='decay_lr=0.3,1': both schedules at every eps_0

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

    def schedule(config):  # eps_k; config.decay_lr is a traced value in a sweep
        return optim.linear_decay(config.decay_lr, config.decay_final * config.decay_lr, tau)

    schedules = {  # label -> (run name, eps, SGD at that rate)
        "constant": (f"sgd_lr{eps0:g}", f"{eps0:g}", lambda c: optim.sgd(c.decay_lr)),
        "linear decay": (
            "sgd_decay",
            f"{eps0:g} -> {eps_tau:g} over {tau} steps",
            lambda c: optim.sgd(schedule(c)),
        ),
    }
    runs = {
        label: logreg.fit(sgd, name, batch_size=config.batch_size, epochs=config.decay_epochs)
        for label, (name, _, sgd) in schedules.items()
    }
    gaps = {label: run.final["objective"] - optimum["objective"] for label, run in runs.items()}
    settings = {label: [eps] for label, (_, eps, _) in schedules.items()}
    report.text(
        f"{config.seeds} seeds trained together (vmap); tables give mean ± std over seeds.\n\n"
        f"SGD on the logistic regression of digits (lambda = {config.l2:g}, J* = "
        f"{optimum['objective']:.5f} from scikit-learn), m = {config.batch_size}, "
        f"{config.decay_epochs} epochs; eps_tau = {config.decay_final:g} eps_0 and tau = the "
        "whole run."
    )
    report.table(
        ["schedule", "eps", "final J", "J - J*", "test accuracy"],
        studies.objective_rows(runs, optimum, settings),
        caption="Constant rate vs linear decay (mean ± std over seeds)",
    )
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    plot_curves(problems.gap_curves(runs, optimum), ylabel="J - J*", log_y=True, ax=axes[0])
    steps = np.arange(tau + 1)
    rates = {"constant": np.full(steps.shape, eps0), "linear decay": schedule(config)(steps)}
    rates = {label: (steps, np.asarray(eps)) for label, eps in rates.items()}
    plot_curves(rates, xlabel="step k", ylabel="eps_k", ax=axes[1])
    fig.suptitle("SGD on the logistic regression: constant rate vs linear decay")
    report.figure(fig, "decay", "J - J* per epoch (mean ± std band), and the two schedules")
    verdict = studies.lower(gaps, "linear decay", "constant")
    report.text(f"Measured J - J*: {verdict.sentence}.")
    report.write()
    sweep_run = runs["constant"].result  # a sweep: per grid point and schedule
    if sweep_run.sweep is not None:
        figures = {label: sweeping.figure(sweep_run, gap) for label, gap in gaps.items()}
        return {"decay_gap": {k.replace(" ", "_"): v for k, v in figures.items()}}
    mean = {label: float(np.mean(gap)) for label, gap in gaps.items()}
    # 'below': the decaying rate settles closer to J* than the constant one
    held = Figure(mean["linear decay"], reference=mean["constant"], source="constant rate")
    return {"decay_gap": {"constant": mean["constant"], "linear_decay": held}}


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, RULES)
