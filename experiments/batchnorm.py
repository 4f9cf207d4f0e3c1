"""Batch normalization widens the range of learning rates a deep net trains at, on digits.

Batch normalization (document 001, SPEC §2) replaces the minibatch H of a layer's
pre-activations, one example per row, by

    H' = (H - mu) / sigma,   mu = (1/m) sum_i H_i,   sigma = sqrt(delta + (1/m) sum_i (H - mu)_i^2)

and nothing more: that literal form has no learned scale and shift and no running averages,
so at evaluation it normalizes with the statistics of the evaluated split itself. The usual
form adds a learned scale gamma and shift beta and evaluates with running averages of mu and
sigma^2 gathered during training (eval mode). ``--config.affine`` picks the form: true (gamma,
beta, running averages), false (the slide's literal form) or both (default). The same deep
ReLU net is trained by plain SGD (Alg. 8.1) without batch norm and with each form, over a
log-spaced range of learning rates: each net's learning rates and seeds are one sweep, one
compiled program (lexicon.train.sweep). A replica whose loss, parameters or batch statistics
become NaN or infinite has diverged: train.fit (``on_divergence=record``) freezes it, marks the
epoch and trains the other replicas on; it scores as classifying nothing.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from lexicon import baselines, cli, data, optim, train
from lexicon.nn import activations as activation_functions
from lexicon.nn import init as initializers
from lexicon.nn.layers import MLP
from lexicon.report import Figure, Report, compare, mean_std, plot_curves
from lexicon.rules import Choice, ConfigError, Range, check_batch_size, positive, probability

VARIANTS = ("plain", "batch_norm", "literal")
LABELS = {
    "plain": "without batch norm",
    "batch_norm": "with batch norm",
    "literal": "with the literal batch norm",
}
AFFINE = ("both", "true", "false")
SWEEPABLE = ()  # the study sweeps the learning rate itself (lr_min, lr_max, num_lrs)


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
    config.affine = "both"  # true (gamma, beta, running averages) | false (the slide's) | both
    config.lr = 0.1  # the learning rate of one net; the study sweeps it over learning_rates()
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
    "affine": Choice(*AFFINE),
    "lr": positive(),
}


def check_config(config):
    """Cross-key rules; cli.run checks them before anything compiles."""
    if config.lr_max < config.lr_min:
        raise ConfigError(f"config.lr_max={config.lr_max} is below config.lr_min={config.lr_min}")
    check_batch_size(config, cli.train_examples(config.dataset, seed=config.data_seed))


def learning_rates(config) -> np.ndarray:
    """num_lrs rates spaced evenly in log scale from lr_min to lr_max (both included)."""
    return np.geomspace(config.lr_min, config.lr_max, config.num_lrs)


def variants(config) -> list[str]:
    """The nets a run trains: without batch norm, and with the form(s) config.affine picks."""
    forms = {"both": ["batch_norm", "literal"], "true": ["batch_norm"], "false": ["literal"]}
    return ["plain", *forms[config.affine]]


def make_task(config, variant: str, splits):
    """(model, Task): the deep net of ``variant`` (plain, batch_norm: gamma, beta and running
    averages, literal: the slide's form) trained by SGD at rate config.lr (traced in a sweep)."""
    model = MLP(
        features=[config.width] * config.depth + [splits.num_classes],
        activation=config.activation,
        kernel_init=config.init,
        batch_norm=variant != "plain",
        batch_norm_momentum=config.bn_momentum,
        batch_norm_epsilon=config.bn_epsilon,
        batch_norm_affine=variant == "batch_norm",
    )
    task = train.classifier(model, optim.sgd(config.lr), splits.train["x"][:1])

    def evaluate(state, split):
        """Eval mode (running averages). Rows with non-finite logits count as wrong."""
        logits, _ = train.apply_model(
            model, state.params, state.model_state, split["x"], train=False
        )
        valid = jnp.all(jnp.isfinite(logits), axis=-1)
        return {"accuracy": jnp.mean((jnp.argmax(logits, -1) == split["y"]) & valid)}

    return model, train.Task(init=task.init, make_step=task.make_step, evaluate=evaluate)


def good_rates(lrs, accuracy, threshold) -> list[float]:
    """The learning rates whose seed-mean test accuracy reaches ``threshold``."""
    return [float(lr) for lr, acc in zip(lrs, accuracy) if np.mean(acc) >= threshold]


def sweep_variant(config, variant, splits, lrs, workdir):
    """One net's learning rates x seeds as one sweep: the test and validation accuracy of
    every (rate, seed) (a diverged replica classifies nothing) and its divergence epoch."""
    result = train.fit(
        config,
        lambda run: make_task(run, variant, splits)[1],
        splits.train,
        workdir / variant,
        eval_splits={"val": splits.val, "test": splits.test},
        sweep=train.Sweep.grid({"lr": lrs}),
    )
    scores = {"diverged_at": result.diverged_at.reshape(len(lrs), -1)}
    for split in ("val", "test"):
        accuracy = result.points(f"{split}/accuracy")
        diverged = (scores["diverged_at"] > 0) | ~np.isfinite(accuracy)
        scores[split] = np.where(diverged, 0.0, accuracy)
    return scores


def plot_sweep(lrs, results, reference):
    """Test accuracy against the learning rate, one band per net; x: a seed diverged."""
    fig = plot_curves(
        {LABELS[v]: (lrs, scores["test"].T) for v, scores in results.items()},
        xlabel="learning rate eps (SGD)",
        ylabel="test accuracy (eval mode)",
    )
    ax = fig.axes[0]
    for line in ax.lines:
        line.set_marker("o")
    for variant, scores in results.items():
        diverged = scores["diverged_at"].any(axis=1)
        if diverged.any():
            ax.plot(lrs[diverged], scores["test"].mean(axis=1)[diverged], "x", color="k",
                    markersize=10, label=f"{LABELS[variant]}: a seed diverged")  # fmt: skip
    ax.axhline(reference, color="gray", ls="--", lw=1, label="logistic regression (sklearn)")
    ax.set(xscale="log", ylim=(0, 1.02))
    ax.legend(fontsize=8)
    return fig


def rates(values) -> str:
    return ", ".join(f"{lr:.3g}" for lr in sorted(values)) or "none"


def train_and_evaluate(config, workdir):
    check_config(config)
    splits = data.standardize(data.load(config.dataset, seed=config.data_seed))
    lrs = learning_rates(config)
    names = variants(config)
    results = {v: sweep_variant(config, v, splits, lrs, workdir) for v in names}
    # scikit-learn's logistic regression on the same standardized split: a well-trained,
    # shallow baseline that any usable learning rate should approach.
    reference = baselines.logistic_regression(splits.train, splits.test)
    good = {v: good_rates(lrs, results[v]["test"], config.good_accuracy) for v in names}
    main = names[1]  # the affine form when it runs, else the literal one
    only_bn = sorted(set(good[main]) - set(good["plain"]))
    best = {v: int(np.argmax(results[v]["val"].mean(axis=1))) for v in names}  # by validation

    report = Report(workdir, "Batch normalization across learning rates")
    report.text(
        f"A {config.depth}-hidden-layer {config.activation} net of width {config.width} "
        f"({config.init} init) on standardized `{config.dataset}`, trained by plain SGD "
        f"(batch {config.batch_size}, {config.epochs} epochs, {config.seeds} seeds) at "
        f"{config.num_lrs} learning rates from {config.lr_min:g} to {config.lr_max:g} (one "
        "sweep per net), without batch normalization and with it before every hidden "
        f"nonlinearity (delta = {config.bn_epsilon:g}): "
        + "; ".join(
            {
                "batch_norm": "the usual form with gamma, beta and running averages (momentum "
                f"{config.bn_momentum}), evaluated with the averages",
                "literal": "the slide's literal form H' = (H - mu) / sigma, no gamma, beta or "
                "running averages, evaluated with the statistics of the evaluated split",
            }[v]
            for v in names[1:]
        )
        + "."
    )
    report.figure(
        plot_sweep(lrs, results, reference),
        "sweep",
        "final test accuracy vs learning rate (seed mean ± std); x: at least one seed diverged",
    )
    report.table(
        ["learning rate", *(f"test accuracy {LABELS[v]}" for v in names), "diverged seeds"],
        [
            (
                f"{lr:.3g}",
                *(mean_std(results[v]["test"][i]) for v in names),
                " / ".join(f"{np.count_nonzero(results[v]['diverged_at'][i])}" for v in names),
            )
            for i, lr in enumerate(lrs)
        ],
        caption=(
            f"Final test accuracy (mean ± std over {config.seeds} seeds); diverged seeds: "
            f"{' / '.join(LABELS[v] for v in names)}. Reference: logistic regression "
            f"{reference:.4f}"
        ),
    )
    claim = (
        f"Batch norm ({LABELS[main]}) reaches {config.good_accuracy:g} test accuracy at "
        f"{len(good[main])} of {len(lrs)} learning rates, the plain net at "
        f"{len(good['plain'])}. Rates where only the batch-norm net trains: "
        f"{rates(only_bn)}. "
        + " ".join(
            f"Best by validation, {LABELS[v]}: rate {lrs[best[v]]:.3g}, test accuracy "
            f"{mean_std(results[v]['test'][best[v]])}."
            for v in names
        )
    )
    largest = compare(
        results[main]["test"][-1],
        results["plain"]["test"][-1],
        paired=True,
        names=("with batch norm", "without"),
    )
    report.text(f"{claim} Test accuracy at the largest rate, {lrs[-1]:.3g}: {largest.sentence}.")
    if "literal" in results and "batch_norm" in results:
        rate = best["batch_norm"]
        gamma_beta = compare(
            results["batch_norm"]["test"][rate],
            results["literal"]["test"][rate],
            paired=True,
            names=("gamma, beta", "literal"),
        )
        report.text(
            "What gamma, beta (and the running averages) change: the literal form trains well "
            f"at {len(good['literal'])} rates, the affine form at {len(good['batch_norm'])}; "
            f"rates where only the affine form trains: "
            f"{rates(set(good['batch_norm']) - set(good['literal']))}"
            f"; where only the literal form does: "
            f"{rates(set(good['literal']) - set(good['batch_norm']))}. "
            f"At the affine form's best rate ({lrs[rate]:.3g}), test accuracy: "
            f"{gamma_beta.sentence}. gamma and beta let a layer undo the normalization (scale "
            "and shift each unit back), and the literal form is evaluated with the test split's "
            "own statistics where the affine one uses the running averages."
        )
    report.write()
    out = {"learning_rates": lrs, "rates_only_batch_norm_trains": only_bn, "reference": reference}
    for v in names:
        out[f"{v}_accuracy"] = results[v]["test"]
        out[f"{v}_diverged_at"] = results[v]["diverged_at"]
        out[f"{v}_best_rate"] = float(lrs[best[v]])
        out[f"{v}_best_accuracy"] = Figure(
            results[v]["test"][best[v]],
            reference=reference,
            source="scikit-learn logistic regression, same split",
        )
    return out


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, RULES)
