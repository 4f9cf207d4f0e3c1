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
penalty, on the same examples. What L1 does to the weights themselves is the study of
experiments/sparsity.py; how early stopping chooses its epoch, of experiments/early_stopping.py.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lexicon import baselines, cli, data, optim, regularizers, report, train
from lexicon.data import augment
from lexicon.losses import softmax_cross_entropy_with_integer_labels
from lexicon.nn.dropout import DropoutMLP
from lexicon.rules import Choice, ConfigError, Names, Range, positive, split_names, widths

TECHNIQUES = ("l2", "l1", "l1_proximal", "dropout", "weight_noise", "augmentation")
TECHNIQUES += ("early_stopping",)
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


def check_methods(config) -> list[str]:
    """The methods to run, after the cross-key rules (also when called without cli.run)."""
    check_config(config)
    return RULES["methods"].parse(config.methods)


def techniques_of(method: str, config) -> frozenset[str]:
    if method == "none":
        return frozenset()
    if method == "combined":
        return frozenset(split_names(config.combined))
    return frozenset({method})


# --- the methods: one network, one training step per set of techniques ------------------------


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
    keep = (config.input_keep, config.hidden_keep) if "dropout" in techniques else (1.0, 1.0)
    model = Network(tuple(config.hidden), classes, *keep)
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
        loss = softmax_cross_entropy_with_integer_labels(logits, y)
        return loss, (train.accuracy(logits, y), model_state)

    sigma = config.weight_sigma if "weight_noise" in techniques else 0.0
    augmentation = {"max_shift": config.max_shift, "max_degrees": config.max_degrees}
    augmentation.update(noise_sigma=config.pixel_noise, clip_range=(0.0, 1.0))
    noisy_data_term = regularizers.noisy_weights_loss(data_term, sigma)

    def objective(params, model_state, batch, key):
        augment_key, noise_key, dropout_key = jax.random.split(key, 3)
        x, y = batch["x"], batch["y"]
        if "augmentation" in techniques:
            x, y = augment.augment_flat_batch(x, y, augment_key, **augmentation)
        if sigma > 0:
            data_loss, (acc, model_state) = noisy_data_term(
                params, noise_key, model_state, x, y, dropout_key
            )
        else:
            data_loss, (acc, model_state) = data_term(params, model_state, x, y, dropout_key)
        metrics = {"data_loss": data_loss, "accuracy": acc}
        return data_loss + penalty(params), (metrics, model_state)

    base = train.classifier(model, tx, example_input)
    return dataclasses.replace(base, make_step=train.gradient_step(objective))


# What the table reports per method and seed, and the history key it is read from.
MEASURES = {
    "train_acc": "train_eval/accuracy",
    "test_acc": "test/accuracy",
    "train_loss": "train_eval/loss",
    "test_loss": "test/loss",
}
GAPS = {"accuracy gap": ("train_acc", "test_acc"), "loss gap": ("test_loss", "train_loss")}


def run_methods(config, workdir, methods, splits):
    """Trains every method; early stopping reads the run of the same training techniques.

    Returns method -> (Result, per-seed measures incl. gaps and weights, early-stop epochs)."""
    evals = {"train_eval": splits.train, "val": splits.val, "test": splits.test}
    fitted, out = {}, {}
    for method in methods:
        techniques = techniques_of(method, config)
        training = techniques - {"early_stopping"}
        if training not in fitted:
            task = make_task(config, training, splits.train["x"][:1], splits.num_classes)
            print(f"--- {method}: {', '.join(sorted(techniques)) or 'no regularization'}")
            fitted[training] = train.fit(
                config, task, splits.train, workdir / method, eval_splits=evals
            )
        else:
            print(f"--- {method}: selects an epoch of an earlier training run")
        result, early = fitted[training], None
        if "early_stopping" in techniques:
            best, stop, measures = regularizers.replay_early_stopping(
                result.curve(f"val/{config.monitor}")[1].T,
                {name: result.curve(key)[1].T for name, key in MEASURES.items()},
                config.patience,
                "min" if config.monitor == "loss" else "max",
            )
            early = {"best": best, "stop": stop}
        else:
            measures = {name: result.final(key) for name, key in MEASURES.items()}
        measures.update({name: measures[a] - measures[b] for name, (a, b) in GAPS.items()})
        measures["test accuracy"] = measures["test_acc"]
        out[method] = (result, measures, early)
    return out


def sklearn_reference(config, splits) -> dict[str, dict[str, np.ndarray]]:
    """MLPClassifier with the same layers, ReLU and plain SGD, without and with L2, per seed.

    scikit-learn adds (alpha_sk / 2m) ||W||^2 to the mean loss of each minibatch of m
    examples, so alpha_sk = m alpha gives our (alpha/2) w^T w. Its minibatches keep the
    remainder of each epoch, so its step count differs slightly from ours.
    """
    m = config.batch_size or len(splits.train["y"])
    out = {}
    for name, alpha in (("none", 0.0), ("l2", config.l2_alpha * m)):
        scores = [
            baselines.mlp_scores(
                splits.train,
                {"train": splits.train, "test": splits.test},
                config.hidden,
                solver="sgd",
                seed=seed,
                max_iter=config.epochs,
                quiet=True,
                alpha=alpha,
                batch_size=m,
                learning_rate_init=config.lr,
                momentum=0.0,
                n_iter_no_change=config.epochs + 1,
            )
            for seed in range(config.seed, config.seed + config.seeds)
        ]
        train_acc, test_acc = (np.array([s[k] for s in scores]) for k in ("train", "test"))
        out[name] = {"train": train_acc, "test": test_acc, "gap": train_acc - test_acc}
    return out


# --- the comparison ---------------------------------------------------------------------------


def verdicts(methods, values) -> dict[str, dict[str, report.Comparison]]:
    """Each method against 'none', paired over seeds (same initial weights): each gap (lower
    is better: the method closes it) and the test accuracy (higher is better)."""
    rules = {"accuracy gap": False, "loss gap": False, "test accuracy": True}
    judge = report.compare
    return {
        k: {m: judge(values[m][k], values["none"][k], paired=True, higher_is_better=up,
                     names=(m, "none")) for m in methods if m != "none"}
        for k, up in rules.items()
    }  # fmt: skip


def settings_of(config) -> dict[str, str]:
    return {
        "l2": f"alpha = {config.l2_alpha}",
        "l1": f"alpha = {config.l1_alpha}, subgradient",
        "l1_proximal": f"alpha = {config.l1_alpha}, soft threshold",
        "dropout": f"keep {config.input_keep} in, {config.hidden_keep} hidden",
        "weight_noise": f"sigma = {config.weight_sigma}",
        "augmentation": f"shift <= {config.max_shift} px, rotation <= {config.max_degrees}°, "
        f"noise {config.pixel_noise}",
        "early_stopping": f"patience {config.patience}, val {config.monitor}",
        "combined": config.combined.replace(",", " + "),
    }


def train_and_evaluate(config, workdir):
    methods = check_methods(config)
    splits = data.load("digits", seed=config.data_seed, train_size=config.train_size)
    runs = run_methods(config, workdir, methods, splits)
    values = {m: measures for m, (_, measures, _) in runs.items()}
    early = {m: e for m, (_, _, e) in runs.items() if e is not None}
    reference = sklearn_reference(config, splits)
    judged = verdicts(methods, values) if "none" in methods else {}

    out = report.Report(workdir, "Regularization of an overfitting MLP on a small digits split")
    out.text(
        f"ReLU MLP {(64, *config.hidden, splits.num_classes)} trained on "
        f"**{len(splits.train['y'])}** digits (validation {len(splits.val['y'])}, test "
        f"{len(splits.test['y'])}) by plain SGD, eps = {config.lr}, batch {config.batch_size}, "
        f"{config.epochs} epochs ({runs[methods[0]][0].history[-1]['step']} steps) for every "
        f"method, {config.seeds} seeds (the same initial weights per seed across methods, so "
        f"every comparison is paired over seeds). Train accuracy and loss are measured on the "
        f"training examples in evaluation mode (no dropout, noise or augmentation). Early "
        f"stopping reports the weights of its best validation epoch: the patience rule of "
        f"`lexicon.train.early_stopping` is replayed on the validation curve recorded every "
        f"epoch. Stopping changes which weights are kept, not how they are trained, so "
        f"`early_stopping` reads the training run of `none` (and `combined` its own run)."
    )
    settings, ms = settings_of(config), report.mean_std
    out.table(
        ["method", "setting", "train acc.", "test acc.", "accuracy gap", "loss gap", "best / stop"],
        [
            (m, settings.get(m, ""), ms(v["train_acc"]), ms(v["test_acc"]))
            + (ms(v["accuracy gap"]), ms(v["loss gap"], 3))
            + ((f"{ms(early[m]['best'], 1)} / {ms(early[m]['stop'], 1)}" if m in early else ""),)
            for m, v in values.items()
        ],
        caption=f"Final accuracy and gaps (accuracy: train - test; loss: test - train "
        f"cross-entropy; best / stop: epochs of early stopping), mean ± std over {config.seeds} "
        "seeds",
    )
    for name in ("accuracy gap", "loss gap"):
        helped = [m for m, c in judged.get(name, {}).items() if c.holds]
        out.text(
            f"**{name.capitalize()}.** {len(helped)} of {len(judged.get(name, {}))} methods close "
            f"the {name} of the unregularized net (paired t-interval over seeds below 0): "
            f"{', '.join(helped) or 'none of them'}.\n\n"
            + "\n".join(f"- {name}: {c.sentence}" for c in judged.get(name, {}).values())
        )
    if judged:
        raised = [m for m, c in judged["test accuracy"].items() if c.holds]
        best = max(methods, key=lambda m: values[m]["test_acc"].mean())
        out.text(
            f"Test accuracy rises (paired t-interval above 0) with: "
            f"{', '.join(raised) or 'none of the methods'}. Best test accuracy: **{best}** "
            f"({ms(values[best]['test_acc'])}, against {ms(values['none']['test_acc'])} "
            f"without regularization).\n\n"
            + "\n".join(f"- test accuracy: {c.sentence}" for c in judged["test accuracy"].values())
        )
    m = config.batch_size or len(splits.train["y"])
    out.table(
        ["scikit-learn MLPClassifier (SGD)", "train acc.", "test acc.", "accuracy gap"],
        [
            (name if name == "none" else f"l2 (alpha_sk = m alpha = {config.l2_alpha * m:g})",)
            + (ms(ref["train"]), ms(ref["test"]), ms(ref["gap"]))
            for name, ref in reference.items()
        ],
        caption="Reference: the same comparison in scikit-learn (same layers, data, SGD steps)",
    )
    fig, axes = report.panels(3, size=(4.2, 3.4))
    for ax, panel in zip(axes, ("accuracy gap", "loss gap", "test accuracy")):
        none = values["none"][panel].mean() if "none" in values else None
        bars = {m: values[m][panel] for m in methods}
        report.plot_bars(bars, title=panel, baseline=none, baseline_label="none", ax=ax)
    out.figure(
        fig,
        "gaps",
        "accuracy gap, loss gap and test accuracy per method (mean ± std over seeds; dashed: none)",
    )
    out.write()
    return headline_figures(config, methods, values, early, reference, judged)


def headline_figures(config, methods, values, early, reference, judged) -> dict:
    """Test accuracy and both gaps per method, each held against 'none' with the verdict of
    its paired comparison ('below' a gap = closes it, 'above' in test accuracy = rises);
    'none' against scikit-learn; the early-stop epochs."""
    names = {"test_acc": "test_accuracy", "accuracy gap": "accuracy_gap", "loss gap": "loss_gap"}
    figures = {name: {} for name in names.values()}
    for method in methods:
        for key, name in names.items():
            ours = values[method][key]
            if method != "none" and judged:
                verdict = judged["test accuracy" if key == "test_acc" else key][method]
                ours = report.held_against(ours, values["none"][key], verdict, "no regularization")
            elif method == "none" and key == "test_acc":
                theirs = np.asarray(reference["none"]["test"])
                ours = report.Figure(
                    ours,
                    reference=float(theirs.mean()),
                    source="scikit-learn MLPClassifier, same layers, SGD",
                    tolerance=2 * float(max(ours.std(), theirs.std())),  # both vary by seed
                )
            figures[name][method] = ours
    if early:
        figures["best_epoch"] = {m: e["best"] for m, e in early.items()}
    return figures


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, RULES)
