"""Batch normalization widens the range of learning rates a deep net trains at, on digits.

Batch normalization (document 001, SPEC §2) replaces the minibatch H of a layer's
pre-activations, one example per row, by

    H' = (H - mu) / sigma,   mu = (1/m) sum_i H_i,   sigma = sqrt(delta + (1/m) sum_i (H - mu)_i^2)

followed by a learned scale gamma and shift beta. The same deep ReLU net is trained by plain
SGD (Alg. 8.1) with and without it, over a log-spaced sweep of learning rates. At evaluation
the batch-norm layers use the running averages of mu and sigma^2 gathered during training
(eval mode), not the statistics of the evaluated batch. A replica whose loss, parameters or
batch statistics become NaN or infinite has diverged: train.fit (``on_divergence=record``)
freezes it, marks the epoch and trains the other replicas on; it scores as classifying nothing.
"""

from __future__ import annotations

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from lexicon import baselines, cli, data, optim, train
from lexicon.nn import activations as activation_functions
from lexicon.nn import init as initializers
from lexicon.nn.layers import MLP
from lexicon.report import Report, band, compare, mean_std
from lexicon.rules import (
    Choice,
    ConfigError,
    Range,
    check_batch_size,
    positive,
    probability,
)

VARIANTS = ("plain", "batch_norm")
LABELS = {"plain": "without batch norm", "batch_norm": "with batch norm"}


def get_config():
    config = train.defaults()
    config.seeds = 3
    config.epochs = 10
    config.batch_size = 32
    config.depth = 10  # hidden layers
    config.width = 64  # units per hidden layer
    config.activation = "relu"  # hidden nonlinearity (a name of lexicon.nn.activations)
    config.init = "glorot_uniform"  # kernel initializer (a name of lexicon.nn.init)
    config.lr_min = 1e-3  # smallest learning rate of the sweep
    config.lr_max = 10.0  # largest learning rate of the sweep
    config.num_lrs = 7  # learning rates, log-spaced from lr_min to lr_max
    config.bn_momentum = 0.9  # running averages: mean <- momentum mean + (1 - momentum) mu
    config.bn_epsilon = 1e-5  # delta inside sigma = sqrt(delta + variance)
    config.good_accuracy = 0.9  # a learning rate "trains" if the mean test accuracy reaches this
    config.dataset = "digits"  # digits | mnist1d (standardized with training statistics)
    config.on_divergence = "record"  # the sweep goes on past a diverged replica, marking it
    return config


RULES = {
    "depth": Range(1, 100),
    "width": Range(1, 16384),
    "activation": Choice(*activation_functions.NAMES),
    "init": Choice(*(n for n in initializers.NAMES if n != "zeros")),
    "lr_min": positive(),
    "lr_max": positive(),
    "num_lrs": Range(1, 50),
    "bn_momentum": probability(),
    "bn_epsilon": positive(),
    "good_accuracy": probability(),
    "dataset": Choice(*data.EMBEDDED),
}


def check_config(config):
    """Cross-key rules; cli.run checks them before anything compiles."""
    if config.lr_max < config.lr_min:
        raise ConfigError(f"config.lr_max={config.lr_max} is below config.lr_min={config.lr_min}")
    check_batch_size(config, cli.train_examples(config.dataset, seed=config.data_seed))


def learning_rates(config) -> np.ndarray:
    """num_lrs rates spaced evenly in log scale from lr_min to lr_max (both included)."""
    return np.geomspace(config.lr_min, config.lr_max, config.num_lrs)


def make_task(config, batch_norm: bool, lr: float, splits):
    """(model, Task): the deep net, with or without batch norm, trained by SGD at rate lr."""
    model = MLP(
        features=[config.width] * config.depth + [splits.num_classes],
        activation=config.activation,
        kernel_init=config.init,
        batch_norm=batch_norm,
        batch_norm_momentum=config.bn_momentum,
        batch_norm_epsilon=config.bn_epsilon,
    )
    task = train.classifier(model, optim.sgd(lr), splits.train["x"][:1])

    def evaluate(state, split):
        """Eval mode (running averages). Rows with non-finite logits count as wrong."""
        logits, _ = train.apply_model(
            model, state.params, state.model_state, split["x"], train=False
        )
        valid = jnp.all(jnp.isfinite(logits), axis=-1)
        return {"accuracy": jnp.mean((jnp.argmax(logits, -1) == split["y"]) & valid)}

    return model, train.Task(init=task.init, make_step=task.make_step, evaluate=evaluate)


def reference_accuracy(splits) -> float:
    """scikit-learn's logistic regression on the same standardized split: a well-trained,
    shallow baseline that any usable learning rate should approach."""
    return baselines.logistic_regression(splits.train, splits.test)


def good_rates(lrs, accuracy, threshold) -> list[float]:
    """The learning rates whose seed-mean test accuracy reaches ``threshold``."""
    return [float(lr) for lr, acc in zip(lrs, accuracy) if np.mean(acc) >= threshold]


def plot_sweep(lrs, results, reference):
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for variant, colour in zip(VARIANTS, ("C3", "C0")):
        accuracy = np.stack([r["test_accuracy"] for r in results[variant]], axis=1)
        band(ax, lrs, accuracy, LABELS[variant], color=colour, marker="o")
        diverged = [r["diverged_at"].any() for r in results[variant]]
        if any(diverged):
            ax.plot(
                lrs[np.array(diverged)],
                accuracy.mean(axis=0)[np.array(diverged)],
                "x",
                color="k",
                markersize=10,
                label=f"{LABELS[variant]}: a seed diverged",
            )
    ax.axhline(reference, color="gray", ls="--", lw=1, label="logistic regression (sklearn)")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate eps (SGD)")
    ax.set_ylabel("test accuracy (eval mode)")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def train_and_evaluate(config, workdir):
    if config.lr_max < config.lr_min:
        raise ConfigError(f"config.lr_max={config.lr_max} is below config.lr_min={config.lr_min}")
    splits = data.standardize(data.load(config.dataset, seed=config.data_seed))
    lrs = learning_rates(config)
    results = {variant: [] for variant in VARIANTS}
    for variant in VARIANTS:
        for lr in lrs:
            _, task = make_task(config, variant == "batch_norm", float(lr), splits)
            result = train.fit(
                config,
                task,
                splits.train,
                workdir / f"{variant}-lr{lr:.3g}",
                eval_splits={"test": splits.test},
            )
            diverged = result.diverged_at > 0  # a diverged replica classifies nothing
            accuracy = 0.0 if diverged.all() else result.final("test/accuracy")
            accuracy = np.where(diverged, 0.0, accuracy)
            results[variant].append({"test_accuracy": accuracy, "diverged_at": result.diverged_at})
    reference = reference_accuracy(splits)
    good = {
        v: good_rates(lrs, [r["test_accuracy"] for r in results[v]], config.good_accuracy)
        for v in VARIANTS
    }
    only_bn = sorted(set(good["batch_norm"]) - set(good["plain"]))

    report = Report(workdir, "Batch normalization across learning rates")
    report.text(
        f"A {config.depth}-hidden-layer {config.activation} net of width {config.width} "
        f"({config.init} init) on standardized `{config.dataset}`, trained by plain SGD "
        f"(batch {config.batch_size}, {config.epochs} epochs, {config.seeds} seeds) at "
        f"{config.num_lrs} learning rates from {config.lr_min:g} to {config.lr_max:g}, with and "
        "without batch normalization before every hidden nonlinearity (running-average "
        f"momentum {config.bn_momentum}, delta = {config.bn_epsilon:g}). Test accuracy is "
        "measured in eval mode, with the running averages."
    )
    report.figure(
        plot_sweep(lrs, results, reference),
        "sweep",
        "final test accuracy vs learning rate (seed mean ± std); x: at least one seed diverged",
    )
    report.table(
        ["learning rate", *(f"test accuracy {LABELS[v]}" for v in VARIANTS), "diverged seeds"],
        [
            (
                f"{lr:.3g}",
                *(mean_std(results[v][i]["test_accuracy"]) for v in VARIANTS),
                " / ".join(f"{np.count_nonzero(results[v][i]['diverged_at'])}" for v in VARIANTS),
            )
            for i, lr in enumerate(lrs)
        ],
        caption=(
            f"Final test accuracy (mean ± std over {config.seeds} seeds); diverged seeds: "
            f"without / with batch norm. Reference: logistic regression {reference:.4f}"
        ),
    )
    claim = (
        f"Batch norm reaches {config.good_accuracy:g} test accuracy at "
        f"{len(good['batch_norm'])} of {len(lrs)} learning rates, the plain net at "
        f"{len(good['plain'])}. Rates where only the batch-norm net trains: "
        f"{', '.join(f'{lr:.3g}' for lr in only_bn) or 'none'}."
    )
    largest = compare(
        results["batch_norm"][-1]["test_accuracy"],
        results["plain"][-1]["test_accuracy"],
        paired=True,
        names=("with batch norm", "without"),
    )
    report.text(f"{claim} Test accuracy at the largest rate, {lrs[-1]:.3g}: {largest.sentence}.")
    report.write()
    return {
        "learning_rates": lrs,
        "plain_accuracy": np.stack([r["test_accuracy"] for r in results["plain"]]),
        "batch_norm_accuracy": np.stack([r["test_accuracy"] for r in results["batch_norm"]]),
        "plain_diverged_at": np.stack([r["diverged_at"] for r in results["plain"]]),
        "batch_norm_diverged_at": np.stack([r["diverged_at"] for r in results["batch_norm"]]),
        "rates_only_batch_norm_trains": only_bn,
        "reference": reference,
    }


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, RULES)
