"""Regularizing an overfitting MLP on 50 digits: L2, L1, dropout, noise, augmentation, early stop.

A ReLU network with far more weights than training examples is trained on a deliberately
small part of the digits training split, so that it fits the training set perfectly and the
train-test gap is wide: in accuracy (train - test) and in cross-entropy (test - train). Each
method below changes one thing, with the same SGD learning rate, the same number of steps
and the same initial weights per seed (SPEC §4, document 001):
    none            plain SGD, w <- w - eps grad J                            (Alg. 8.1)
    l2              weight decay, w <- (1 - eps alpha) w - eps grad J, i.e. J + (alpha/2) w^T w
    l1              J + alpha ||w||_1 by subgradient descent, grad = alpha sign(w) + grad J
    l1_proximal     the same objective by proximal SGD: w <- soft_threshold(w - eps grad J,
                    eps alpha), which sets small weights to exactly 0
    dropout         unit outputs times a fresh Bernoulli mask per minibatch, keep probability
                    0.8 for inputs and 0.5 for hidden units (inverted scaling)
    weight_noise    the loss is evaluated at w + sigma z, z ~ N(0, I), drawn anew every step
    augmentation    every training image is rotated, noised (and shifted, if max_shift > 0)
                    anew every step
    early_stopping  the weights of the epoch with the best validation loss, where a patience
                    rule would have stopped training
    combined        the techniques listed in config.combined together (by default all but
                    L1, whose constant pull on top of the others leaves the net underfit)
Penalties and noise act on the weights (kernels) only, not on the biases. The reference is
scikit-learn's MLPClassifier with the same layers and SGD, without and with the same L2
penalty, on the same examples.
"""

from __future__ import annotations

import dataclasses
import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from jax import lax

from lexicon import cli, data, optim, regularizers, train
from lexicon.data import augment
from lexicon.nn.dropout import DropoutMLP
from lexicon.report import Figure, Report, band, mean_std
from lexicon.rules import (
    Choice,
    ConfigError,
    Names,
    Range,
    positive,
    probability,
    split_names,
    widths,
)
from lexicon.train.early_stopping import early_stopping

TECHNIQUES = (
    "l2",
    "l1",
    "l1_proximal",
    "dropout",
    "weight_noise",
    "augmentation",
    "early_stopping",
)
METHODS = ("none", *TECHNIQUES, "combined")
MONITORS = ("loss", "accuracy")


def get_config():
    config = train.defaults()
    config.seeds = 5
    config.epochs = 300
    config.batch_size = 10
    config.train_size = 50  # digits kept for training (few on purpose, so that the net overfits)
    config.hidden = (256, 256)  # widths of the hidden ReLU layers
    config.lr = 0.05  # eps of plain SGD, the same for every method
    config.methods = "all"  # all | a comma-separated subset, e.g. none,l2,dropout,combined
    config.combined = "l2,dropout,weight_noise,augmentation,early_stopping"  # mixed in 'combined'
    config.l2_alpha = 1e-2  # alpha of (alpha/2) w^T w
    config.l1_alpha = 1e-3  # alpha of alpha ||w||_1 (subgradient and proximal variants)
    config.input_keep = 0.8  # dropout: keep probability of the input units
    config.hidden_keep = 0.5  # dropout: keep probability of the hidden units
    config.weight_sigma = 0.05  # weight noise: std of the Gaussian added to every weight
    config.max_shift = 0  # augmentation: largest translation in pixels (1 px = 1/8 of a digit)
    config.max_degrees = 10.0  # augmentation: largest rotation, in degrees
    config.pixel_noise = 0.05  # augmentation: std of the Gaussian added to every pixel
    config.patience = 20  # early stopping: epochs without improvement before it stops
    config.monitor = "loss"  # early stopping watches the validation loss | accuracy
    config.zero_tol = 1e-3  # a weight with |w| below this counts as near zero
    return config


RULES = {
    "train_size": Range(10, 1200),
    "lr": positive(),
    "methods": Names(METHODS, everything="all"),
    "combined": Names(TECHNIQUES),
    "l2_alpha": Range(0),
    "l1_alpha": Range(0),
    "input_keep": Range(0, 1, open_lo=True),
    "hidden_keep": Range(0, 1, open_lo=True),
    "weight_sigma": Range(0),
    "max_shift": Range(0, 4),
    "max_degrees": Range(0, 180),
    "pixel_noise": Range(0),
    "patience": Range(1, cli.MAX_EPOCHS),
    "monitor": Choice(*MONITORS),
    "zero_tol": probability(),
    "hidden": widths(),
}


def check_config(config):
    """Cross-key rules; cli.run checks them before anything compiles."""
    if {"l1", "l1_proximal"} <= set(split_names(config.combined)):
        raise ConfigError(
            "config.combined lists both l1 and l1_proximal; keep one of the two L1 variants"
        )
    if config.train_size <= config.batch_size:
        raise ConfigError(
            f"config.train_size={config.train_size} must exceed config.batch_size="
            f"{config.batch_size}, or no minibatch step is left to regularize"
        )


def selected_methods(config) -> list[str]:
    return RULES["methods"].parse(config.methods)


def techniques_of(method: str, config) -> frozenset[str]:
    if method == "none":
        return frozenset()
    if method == "combined":
        return frozenset(split_names(config.combined))
    return frozenset({method})


# --- the network and one training step --------------------------------------------------------


class Network(nn.Module):
    """The MLP of every method; keep probabilities of 1 make dropout the identity."""

    hidden: tuple
    classes: int
    input_keep: float = 1.0
    hidden_keep: float = 1.0

    @nn.compact
    def __call__(self, x, train: bool = False):
        mlp = DropoutMLP(self.hidden, self.classes, self.input_keep, self.hidden_keep)
        return mlp(x, train=train)


def make_task(config, techniques: frozenset[str], example_input, classes: int) -> train.Task:
    """The classifier task of one method: its optimizer, penalty, noise and augmentation."""
    dropout = "dropout" in techniques
    model = Network(
        tuple(config.hidden),
        classes,
        config.input_keep if dropout else 1.0,
        config.hidden_keep if dropout else 1.0,
    )
    l2, l1 = config.l2_alpha, config.l1_alpha
    if "l1_proximal" in techniques:
        tx = regularizers.l1_proximal_step(config.lr, l1)
    elif "l2" in techniques:
        tx = regularizers.weight_decay_step(config.lr, l2)
    else:
        tx = optim.sgd(config.lr)

    def penalty(params):
        total = jnp.zeros(())
        if "l1" in techniques:
            total += regularizers.l1_penalty(params, l1)
        if "l2" in techniques and "l1_proximal" in techniques:
            # The proximal step owns the optimizer, so L2 enters as its penalty (same gradient).
            total += regularizers.l2_penalty(params, l2)
        return total

    def data_term(params, model_state, x, y, dropout_key):
        logits, model_state = train.apply_model(
            model, params, model_state, x, train=True, key=dropout_key
        )
        return train.cross_entropy(logits, y), (train.accuracy(logits, y), model_state)

    sigma = config.weight_sigma if "weight_noise" in techniques else 0.0
    noisy_data_term = regularizers.noisy_weights_loss(data_term, sigma)

    def objective(params, model_state, batch, key):
        augment_key, noise_key, dropout_key = jax.random.split(key, 3)
        x, y = batch["x"], batch["y"]
        if "augmentation" in techniques:
            x, y = augment.augment_flat_batch(
                x,
                y,
                augment_key,
                max_shift=config.max_shift,
                max_degrees=config.max_degrees,
                noise_sigma=config.pixel_noise,
                clip_range=(0.0, 1.0),
            )
        if sigma > 0:
            data_loss, (acc, model_state) = noisy_data_term(
                params, noise_key, model_state, x, y, dropout_key
            )
        else:
            data_loss, (acc, model_state) = data_term(params, model_state, x, y, dropout_key)
        return data_loss + penalty(params), (
            {"data_loss": data_loss, "accuracy": acc},
            model_state,
        )

    base = train.classifier(model, tx, example_input)
    return dataclasses.replace(base, make_step=train.gradient_step(objective))


# --- early stopping, replayed on the recorded validation curve ---------------------------------


def replay_early_stopping(monitored, tracked: dict, patience: int, mode: str):
    """Runs the patience rule of lexicon.train.early_stopping over per-epoch validation values.

    monitored: (epochs, seeds) validation metric; tracked: name -> (epochs, seeds) values to
    read at the best epoch. The state freezes once the rule fires, so its best epoch is the
    one a run stopped by the rule would restore. Returns (best epoch, stop epoch, tracked
    values at the best epoch), each per seed; the stop epoch is the last epoch if the rule
    never fires.
    """
    stopper = early_stopping(patience, mode=mode)
    epochs = jnp.arange(1, monitored.shape[0] + 1)

    def one_seed(curve, values):
        def body(state, inputs):
            epoch, metric, at_epoch = inputs
            state = stopper.update(state, metric, at_epoch, epoch)
            return state, state.should_stop

        first = jax.tree.map(lambda v: v[0], values)
        state, stopped = lax.scan(body, stopper.init(first), (epochs, curve, values))
        stop_epoch = jnp.where(stopped.any(), epochs[jnp.argmax(stopped)], epochs[-1])
        return state.best_step, stop_epoch, state.best_params

    best, stop, at_best = jax.vmap(one_seed, in_axes=(1, 1))(
        jnp.asarray(monitored, jnp.float32),
        {k: jnp.asarray(v, jnp.float32) for k, v in tracked.items()},
    )
    return np.asarray(best), np.asarray(stop), {k: np.asarray(v) for k, v in at_best.items()}


def per_epoch(history, key) -> np.ndarray:
    """(epochs, seeds) values of ``key`` over the history."""
    return np.array([record[key] for record in history], dtype=np.float64)


# --- weights ----------------------------------------------------------------------------------


def kernel_values(params) -> np.ndarray:
    """All weights (kernels, not biases) per seed: (seeds, number of weights)."""
    leaves = [
        np.asarray(leaf).reshape(leaf.shape[0], -1)
        for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
        if regularizers.is_kernel(path, leaf)
    ]
    return np.concatenate(leaves, axis=1)


def sparsity(weights: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Per seed: fraction of weights with |w| < tol, and fraction exactly 0."""
    return (np.abs(weights) < tol).mean(axis=1), (weights == 0).mean(axis=1)


# --- the reference ----------------------------------------------------------------------------


def sklearn_reference(config, splits) -> dict[str, dict[str, np.ndarray]]:
    """MLPClassifier with the same layers, ReLU and plain SGD, without and with L2, per seed.

    scikit-learn adds (alpha_sk / 2m) ||W||^2 to the mean loss of each minibatch of m
    examples, so alpha_sk = m alpha gives our (alpha/2) w^T w. Its minibatches keep the
    remainder of each epoch, so its step count differs slightly from ours.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    x, y = splits.train["x"], splits.train["y"]
    batch_size = config.batch_size or len(x)
    out = {}
    for name, alpha in (("none", 0.0), ("l2", config.l2_alpha * batch_size)):
        train_acc, test_acc = [], []
        for seed in range(config.seed, config.seed + config.seeds):
            model = MLPClassifier(
                hidden_layer_sizes=tuple(config.hidden),
                activation="relu",
                solver="sgd",
                alpha=alpha,
                batch_size=batch_size,
                learning_rate_init=config.lr,
                momentum=0.0,
                max_iter=config.epochs,
                n_iter_no_change=config.epochs + 1,
                random_state=seed,
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.fit(x, y)
            train_acc.append(model.score(x, y))
            test_acc.append(model.score(splits.test["x"], splits.test["y"]))
        train_acc, test_acc = np.array(train_acc), np.array(test_acc)
        out[name] = {"train": train_acc, "test": test_acc, "gap": train_acc - test_acc}
    return out


# --- the comparison ---------------------------------------------------------------------------

# What the table reports per method and seed, and the history key it is read from.
MEASURES = {
    "train_acc": "train_eval/accuracy",
    "test_acc": "test/accuracy",
    "train_loss": "train_eval/loss",
    "test_loss": "test/loss",
}
GAPS = {"accuracy gap": ("train_acc", "test_acc"), "loss gap": ("test_loss", "train_loss")}


def gaps_of(measures: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """accuracy gap = train - test accuracy; loss gap = test - train cross-entropy."""
    return {name: measures[a] - measures[b] for name, (a, b) in GAPS.items()}


def gap_verdict(
    method: str,
    gap: np.ndarray,
    baseline: np.ndarray,
    name: str = "accuracy gap",
    test: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[str, bool]:
    """A sentence on whether ``method`` closes the gap of 'none' by more than the seed std.

    ``test`` = (test accuracy of 'none', of ``method``) adds whether the test accuracy moved
    beyond the seed std too: a gap can also close because the training set is fit worse.
    """
    change = baseline.mean() - gap.mean()
    noise = max(baseline.std(), gap.std())
    if change > noise:
        text = (
            f"**{method}** closes the {name} from {baseline.mean():.3f} to {gap.mean():.3f}, "
            f"by {change:.3f}, more than the seed-to-seed std ({noise:.3f})."
        )
        closed = True
    elif change < -noise:
        text = (
            f"**{method}** widens the {name}, from {baseline.mean():.3f} to {gap.mean():.3f} "
            f"(std {noise:.3f}): it does not close it at this scale."
        )
        closed = False
    else:
        text = (
            f"**{method}** changes the {name} by {-change:+.3f} (from {baseline.mean():.3f} "
            f"to {gap.mean():.3f}), within the seed-to-seed std ({noise:.3f}): no clear "
            f"effect at this scale."
        )
        closed = False
    if test is not None:
        before, after = test
        moved = after.mean() - before.mean()
        spread = max(before.std(), after.std())
        if moved > spread:
            text += f" Test accuracy rises from {before.mean():.3f} to {after.mean():.3f}."
        elif moved < -spread:
            text += f" Test accuracy falls from {before.mean():.3f} to {after.mean():.3f}" + (
                ": the gap closes because the training set is fit worse." if closed else "."
            )
        else:
            text += " Test accuracy does not change beyond the seed std."
    return text, closed


def test_accuracy_rises(values, method: str) -> bool:
    """Test accuracy above that of 'none' by more than the larger seed std of the two."""
    before, after = values["none"]["test_acc"], values[method]["test_acc"]
    return after.mean() - before.mean() > max(before.std(), after.std())


def plot_curves(results, methods, early, metric: str):
    """``metric`` (accuracy or loss) on the training examples and the test split, per method."""
    columns = min(5, len(methods))
    rows = -(-len(methods) // columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(2.9 * columns, 2.5 * rows), squeeze=False, sharey=True
    )
    for ax, method in zip(axes.flat, methods):
        history = results[method].history
        epochs = [record["epoch"] for record in history]
        band(ax, epochs, per_epoch(history, f"train_eval/{metric}").T, "train")
        band(ax, epochs, per_epoch(history, f"test/{metric}").T, "test")
        if method in early:
            ax.axvline(early[method]["best"].mean(), color="k", ls="--", lw=1, label="best val")
        if metric == "loss":
            ax.set_yscale("log")
        ax.set_title(method, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes.flat[len(methods) :]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    for ax in axes[:, 0]:
        ax.set_ylabel("cross-entropy" if metric == "loss" else metric)
    fig.tight_layout()
    return fig


def plot_weights(weights: dict[str, np.ndarray], tol: float):
    fig, (hist_ax, cdf_ax) = plt.subplots(1, 2, figsize=(10, 3.6))
    largest = max(np.abs(w).max() for w in weights.values())
    bins = np.linspace(-largest, largest, 121)
    thresholds = np.logspace(-6, np.log10(largest), 200)
    for name, w in weights.items():
        hist_ax.hist(w.reshape(-1), bins=bins, histtype="step", lw=1.3, label=name)
        band(cdf_ax, thresholds, (np.abs(w)[:, :, None] < thresholds).mean(axis=1), name)
    hist_ax.set_yscale("log")
    hist_ax.set_xlabel("weight w (all kernels, all seeds)")
    hist_ax.set_ylabel("count")
    hist_ax.legend(fontsize=8)
    cdf_ax.axvline(tol, color="k", ls=":", lw=1)
    cdf_ax.set_xscale("log")
    cdf_ax.set_xlabel("threshold t")
    cdf_ax.set_ylabel("fraction of weights with |w| < t")
    cdf_ax.grid(alpha=0.3)
    cdf_ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_gaps(methods, values: dict[str, dict[str, np.ndarray]]):
    """Bars (mean ± std over seeds) of each gap and of the test accuracy, one per method."""
    panels = [*GAPS, "test accuracy"]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4))
    positions = np.arange(len(methods))
    for ax, panel in zip(axes, panels):
        means = np.array([values[m][panel].mean() for m in methods])
        stds = np.array([values[m][panel].std() for m in methods])
        ax.bar(positions, means, yerr=stds, capsize=3, color="tab:blue", alpha=0.8)
        if "none" in methods:
            ax.axhline(values["none"][panel].mean(), color="k", ls="--", lw=1)
        ax.set_xticks(positions, methods, rotation=45, ha="right", fontsize=8)
        ax.set_title(panel, fontsize=10)
        ax.grid(alpha=0.3, axis="y")
        if panel == "test accuracy":
            ax.set_ylim(max(0.0, (means - stds).min() - 0.05), 1.0)
    fig.tight_layout()
    return fig


def check_methods(config) -> list[str]:
    """The methods to run, after the cross-key rules (also when called without cli.run)."""
    check_config(config)
    return selected_methods(config)


def settings_of(config) -> dict[str, str]:
    return {
        "l2": f"alpha = {config.l2_alpha}",
        "l1": f"alpha = {config.l1_alpha}, subgradient",
        "l1_proximal": f"alpha = {config.l1_alpha}, soft threshold",
        "dropout": f"keep {config.input_keep} in, {config.hidden_keep} hidden",
        "weight_noise": f"sigma = {config.weight_sigma}",
        "augmentation": (
            f"shift <= {config.max_shift} px, rotation <= {config.max_degrees}°, "
            f"noise {config.pixel_noise}"
        ),
        "early_stopping": f"patience {config.patience}, val {config.monitor}",
        "combined": config.combined.replace(",", " + "),
    }


def train_and_evaluate(config, workdir):
    methods = check_methods(config)
    splits = data.load("digits", seed=config.data_seed, train_size=config.train_size)
    classes = splits.num_classes
    eval_splits = {"train_eval": splits.train, "val": splits.val, "test": splits.test}

    results, early, values = {}, {}, {}
    fitted = {}  # training techniques -> (method, Result): early stopping trains like 'none'
    for method in methods:
        techniques = techniques_of(method, config)
        training = techniques - {"early_stopping"}
        if training in fitted:
            print(f"--- {method}: selects an epoch of the training run of {fitted[training][0]}")
        else:
            task = make_task(config, training, splits.train["x"][:1], classes)
            print(f"--- {method}: {', '.join(sorted(techniques)) or 'no regularization'}")
            run = train.fit(config, task, splits.train, workdir / method, eval_splits=eval_splits)
            fitted[training] = (method, run)
        result = fitted[training][1]
        if "early_stopping" in techniques:
            best, stop, measures = replay_early_stopping(
                per_epoch(result.history, f"val/{config.monitor}"),
                {name: per_epoch(result.history, key) for name, key in MEASURES.items()},
                config.patience,
                "min" if config.monitor == "loss" else "max",
            )
            early[method] = {"best": best, "stop": stop}
        else:
            measures = {name: result.final(key) for name, key in MEASURES.items()}
        weights = kernel_values(result.state.params)
        near_zero, exact_zero = sparsity(weights, config.zero_tol)
        values[method] = {
            **measures,
            **gaps_of(measures),
            "test accuracy": measures["test_acc"],
            "weights": weights,
            "near_zero": near_zero,
            "exact_zero": exact_zero,
        }
        results[method] = result
    reference = sklearn_reference(config, splits)

    verdicts = {}
    if "none" in methods:
        for name in GAPS:
            verdicts[name] = {
                m: gap_verdict(
                    m,
                    values[m][name],
                    values["none"][name],
                    name,
                    test=(values["none"]["test_acc"], values[m]["test_acc"])
                    if name == "accuracy gap"
                    else None,
                )
                for m in methods
                if m != "none"
            }
    helped = {name: [m for m, (_, ok) in v.items() if ok] for name, v in verdicts.items()}
    raised = [m for m in methods if "none" in methods and test_accuracy_rises(values, m)]

    report = Report(workdir, "Regularization of an overfitting MLP on a small digits split")
    report.text(
        f"ReLU MLP {(64, *config.hidden, classes)} trained on **{len(splits.train['y'])}** "
        f"digits (validation {len(splits.val['y'])}, test {len(splits.test['y'])}) by plain "
        f"SGD, eps = {config.lr}, batch {config.batch_size}, {config.epochs} epochs "
        f"({results[methods[0]].history[-1]['step']} steps) for every method, "
        f"{config.seeds} seeds (the same initial weights per seed across methods). Train "
        f"accuracy and loss are measured on the training examples in evaluation mode (no "
        f"dropout, noise or augmentation). Early stopping reports the weights of its best "
        f"validation epoch: the patience rule of `lexicon.train.early_stopping` is replayed "
        f"on the validation curve recorded every epoch. Stopping changes which weights are "
        f"kept, not how they are trained, so `early_stopping` reads the training run of "
        f"`none` (and `combined` its own run)."
    )
    settings = settings_of(config)
    report.table(
        [
            "method",
            "setting",
            "train acc.",
            "test acc.",
            "accuracy gap",
            "loss gap",
            f"|w| < {config.zero_tol}",
            "w = 0",
            "best / stop epoch",
        ],
        [
            (
                method,
                settings.get(method, ""),
                mean_std(values[method]["train_acc"]),
                mean_std(values[method]["test_acc"]),
                mean_std(values[method]["accuracy gap"]),
                mean_std(values[method]["loss gap"], 3),
                mean_std(values[method]["near_zero"], 3),
                mean_std(values[method]["exact_zero"], 3),
                (
                    f"{mean_std(early[method]['best'], 1)} / {mean_std(early[method]['stop'], 1)}"
                    if method in early
                    else ""
                ),
            )
            for method in methods
        ],
        caption=(
            f"Final accuracy, gaps (accuracy: train - test; loss: test - train cross-entropy) "
            f"and weight sparsity, mean ± std over {config.seeds} seeds"
        ),
    )
    for name, per_method in verdicts.items():
        report.text(
            f"**{name.capitalize()}.** {len(helped[name])} of {len(per_method)} methods close "
            f"the {name} of the unregularized net by more than the seed-to-seed std: "
            f"{', '.join(helped[name]) if helped[name] else 'none of them'}.\n\n"
            + "\n".join(f"- {text}" for text, _ in per_method.values())
        )
    if "none" in methods:
        best = max(methods, key=lambda m: values[m]["test_acc"].mean())
        report.text(
            f"Test accuracy rises beyond the seed-to-seed std with: "
            f"{', '.join(raised) if raised else 'none of the methods'}. Best test accuracy: "
            f"**{best}** ({mean_std(values[best]['test_acc'])}, against "
            f"{mean_std(values['none']['test_acc'])} without regularization)."
        )
    batch_size = config.batch_size or len(splits.train["y"])
    report.table(
        ["scikit-learn MLPClassifier (SGD)", "train acc.", "test acc.", "accuracy gap"],
        [
            (
                f"l2 (alpha_sk = m alpha = {config.l2_alpha * batch_size:g})"
                if name == "l2"
                else name,
                mean_std(ref["train"]),
                mean_std(ref["test"]),
                mean_std(ref["gap"]),
            )
            for name, ref in reference.items()
        ],
        caption="Reference: the same comparison in scikit-learn (same layers, data, SGD steps)",
    )
    report.figure(
        plot_gaps(methods, values),
        "gaps",
        "accuracy gap, loss gap and test accuracy per method (mean ± std over seeds; dashed: none)",
    )
    for metric in ("accuracy", "loss"):
        report.figure(
            plot_curves(results, methods, early, metric),
            f"curves_{metric}",
            f"{'cross-entropy' if metric == 'loss' else metric} on the training examples and "
            f"the test split (mean ± std band over seeds); dashed: mean best-validation "
            f"epoch of early stopping",
        )
    shown = {m: values[m]["weights"] for m in ("none", "l2", "l1", "l1_proximal") if m in values}
    if shown:
        report.figure(
            plot_weights(shown, config.zero_tol),
            "weights",
            "weights after training: histogram (log counts) and the fraction below each "
            "threshold (dotted: zero_tol); only the proximal step sets weights exactly to 0",
        )
    report.write()
    return headline_figures(config, methods, values, early, reference)


def headline_figures(config, methods, values, early, reference) -> dict:
    """Test accuracy and both gaps per method, each held against 'none' by the report's rule
    (a change counts beyond the larger seed std of the two: 'below' a gap = closes it, 'above'
    in test accuracy = rises); 'none' against scikit-learn; the exact zeros of the L1 methods."""
    names = {"test_acc": "test_accuracy", "accuracy gap": "accuracy_gap", "loss gap": "loss_gap"}
    figures = {name: {} for name in names.values()}
    for method in methods:
        for key, name in names.items():
            ours = values[method][key]
            if method != "none" and "none" in values:
                baseline = values["none"][key]
                ours = Figure(
                    ours,
                    reference=float(baseline.mean()),
                    source="no regularization",
                    tolerance=float(max(baseline.std(), ours.std())),
                )
            elif method == "none" and key == "test_acc":
                theirs = np.asarray(reference["none"]["test"])
                ours = Figure(
                    ours,
                    reference=float(theirs.mean()),
                    source="scikit-learn MLPClassifier, same layers, SGD",
                    tolerance=2 * float(max(ours.std(), theirs.std())),  # both vary by seed
                )
            figures[name][method] = ours
    l1 = [m for m in methods if techniques_of(m, config) & {"l1", "l1_proximal"}]
    if l1:
        figures["zero_weights"] = {m: values[m]["exact_zero"] for m in l1}  # fraction w = 0
    if early:
        figures["best_epoch"] = {m: e["best"] for m, e in early.items()}
    return figures


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, RULES)
