"""Batch size: SGD (Alg 8.1) with the full batch, minibatches and one example per step, and the
gradient noise of a minibatch.

On the penalized logistic regression of digits (J = mean cross-entropy + (lambda/2)||W||^2,
J* from scikit-learn, as in optimizers.py), SGD runs the same number of passes over the data at
m = N (batch), m (minibatch) and m = 1 (stochastic, online). Then the gradient noise
E||g_B - g||^2 of a random minibatch B of size m around the full gradient g, at fixed
parameters. Drawing B without replacement from the N examples,
    E||g_B - g||^2 = (sigma^2 / m) (N - m) / (N - 1),   sigma^2 = (1/N) sum_i ||g_i - g||^2:
the 1/m law with its finite-population correction.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from lexicon import cli, optim, train
from lexicon.optim import problems, studies
from lexicon.optim.problems import sci
from lexicon.report import Figure, Report, band, mean_std
from lexicon.rules import ConfigError, Items, Range, check_batch_size, positive


def get_config():
    config = train.defaults()
    config.seeds = 3
    config.epochs = 20  # passes over the data at every batch size
    config.batch_size = 32  # m of the minibatch run
    config.l2 = 1e-3  # lambda of the logistic regression's (lambda/2)||W||^2 (biases free)
    config.lr = 0.3  # eps of SGD, the rate of optimizers.py's SGD on the same problem
    config.noise_batches = (1, 4, 16, 64, 256)  # minibatch sizes m of the gradient-noise study
    config.noise_draws = 256  # random minibatches per size for E||g_B - g||^2
    return config


SWEEPABLE = ("lr",)  # --config.sweep='lr=0.1,0.3': the three batch sizes at every eps

RULES = {
    "l2": positive(),
    "lr": positive(),
    "noise_draws": Range(2, 100_000),
    "noise_batches": Items(Range(1, 1_000_000), kind=int),
}


def check_config(config):
    """Cross-key rules; cli.run checks them before anything compiles."""
    n = cli.train_examples("digits", seed=config.data_seed)
    check_batch_size(config, n, of="digits training examples")
    if max(config.noise_batches) > n:
        raise ConfigError(
            f"config.noise_batches={tuple(config.noise_batches)} must lie in [1, {n}], the "
            f"digits training examples"
        )


def train_and_evaluate(config, workdir):
    report = Report(workdir, "Batch size: batch, minibatch and stochastic gradient descent")
    logreg, optimum = problems.logistic_problem(config, report.workdir)
    n = len(logreg.splits.train["y"])
    minibatch = f"minibatch m={config.batch_size or n}"
    batch_sizes = {"full batch": 0, minibatch: config.batch_size, "one example": 1}
    runs = {  # eps = config.lr is read inside the program: a sweep trains every grid point
        label: logreg.fit(lambda config: optim.sgd(config.lr), f"sgd_lr{config.lr:g}", batch_size=m)
        for label, m in batch_sizes.items()
    }
    regimes = {label: batch_size or n for label, batch_size in batch_sizes.items()}
    gaps = {label: run.final["objective"] - optimum["objective"] for label, run in runs.items()}
    settings = {
        label: [m, n // m, runs[label].result.history[-1]["step"]] for label, m in regimes.items()
    }
    report.text(
        f"{config.seeds} seeds trained together (vmap); tables give mean ± std over seeds.\n\n"
        f"SGD (eps = {config.lr:g}) on the logistic regression of digits (lambda = "
        f"{config.l2:g}), {config.epochs} epochs at each batch size: full batch (deterministic "
        "gradient), minibatch, and one example per step (stochastic, online). J* is the same J "
        f"at scikit-learn's solution, {optimum['objective']:.5f}."
    )
    report.table(
        ["regime", "m", "updates / epoch", "updates", "final J", "J - J*"],
        studies.objective_rows(runs, optimum, settings, accuracy=False),
        caption="Batch, minibatch and stochastic gradient descent (mean ± std over seeds)",
    )
    for label in (minibatch, "one example"):
        verdict = studies.lower(gaps, label, "full batch")
        report.text(f"After the same {config.epochs} passes, J - J*: {verdict.sentence}.")

    init = train.classifier(logreg.model, optim.sgd(config.lr), logreg.splits.train["x"][:1]).init
    sweep = runs[minibatch].result.sweep  # replica g * seeds + s: grid point g, seed s
    seeds = jnp.tile(
        jnp.arange(config.seed, config.seed + config.seeds), sweep.size if sweep else 1
    )
    at = {
        "initial": jax.vmap(lambda s: init(train.stream(s, "init")).params)(seeds),
        "trained": runs[minibatch].result.state.params,
    }
    sizes = tuple(sorted({int(m) for m in config.noise_batches if 1 <= int(m) <= n}))
    measured = {  # per parameter point: E||g_B - g||^2, the 1/m law, the standard error
        where: studies.gradient_noise_at(logreg, params, seeds, sizes, config.noise_draws)
        for where, params in at.items()
    }
    noise_rows = []
    for i, m in enumerate(sizes):
        row = [m]
        for observed, law, _ in measured.values():
            row += [sci(observed[:, i]), sci(law[:, i]), mean_std(observed[:, i] / law[:, i], 3)]
        noise_rows.append(row)
    report.text(
        f"Gradient noise at fixed parameters: E||g_B - g||^2 averaged over {config.noise_draws} "
        "random minibatches per size (drawn without replacement), against the 1/m law "
        "(sigma^2/m)(N-m)/(N-1) with sigma^2 from the per-example gradients; at the initial "
        "parameters and at the end of the minibatch run."
    )
    report.table(
        ["m", "measured (initial)", "1/m law (initial)", "ratio"]
        + ["measured (trained)", "1/m law (trained)", "ratio"],
        noise_rows,
        caption="Variance of the minibatch gradient vs the 1/m law (mean ± std over seeds)",
    )
    fig, axes = plt.subplots(1, 3, figsize=(16, 4))
    for label, (epochs, gap) in problems.gap_curves(runs, optimum).items():
        band(axes[0], epochs, gap, label)
        band(axes[1], epochs * (n // regimes[label]), gap, label)
    axes[0].set(yscale="log", xlabel="epoch (examples seen / N)", ylabel="J - J*")
    axes[1].set(xscale="log", yscale="log", xlabel="parameter updates", ylabel="J - J*")
    for (where, (observed, law, _)), marker in zip(measured.items(), "os"):
        band(axes[2], sizes, observed, f"measured, {where} parameters", marker=marker)
        axes[2].plot(sizes, law.mean(axis=0), "k--", lw=1)
    axes[2].plot([], [], "k--", lw=1, label="1/m law (sigma^2/m)(N-m)/(N-1)")
    axes[2].set(xscale="log", yscale="log", xlabel="minibatch size m", ylabel="E||g_B - g||^2")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("SGD on the logistic regression: batch size and gradient noise")
    caption = "J - J* per epoch and per update; minibatch gradient variance against m"
    report.figure(fig, "batch_size", caption)
    ratios = np.concatenate([observed / law for observed, law, _ in measured.values()], axis=1)
    errors = np.concatenate([error / law for _, law, error in measured.values()], axis=1)
    within = np.abs(ratios - 1) <= 2 * errors
    report.text(
        f"Measured: over every m, seed and both parameter points the ratio measured / law lies in "
        f"[{ratios.min():.3f}, {ratios.max():.3f}] (mean {ratios.mean():.3f}); {int(within.sum())}"
        f" of {within.size} ratios are within two standard errors of 1 (the sampling error of "
        f"the {config.noise_draws}-draw average, median {np.median(errors):.3f} relative)."
    )
    report.write()
    tolerance = 2 * float(np.median(errors))  # two standard errors of one ratio
    return {"noise_ratio": Figure(float(ratios.mean()), 1.0, "the 1/m law", tolerance)}


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, RULES)
