"""One MLP classifier trained under any set of document 001's regularization techniques.

The setting shared by the regularization studies (SPEC §4): a ReLU network with far more
weights than training examples, trained on a deliberately small part of the digits training
split, with the same SGD learning rate, steps and initial weights per seed for every method.
A method is a set of techniques:
    l2              weight decay, w <- (1 - eps alpha) w - eps grad J, i.e. J + (alpha/2) w^T w
    l1              J + alpha ||w||_1 by subgradient descent, grad = alpha sign(w) + grad J
    l1_proximal     the same objective by proximal SGD: w <- soft_threshold(w - eps grad J,
                    eps alpha), which sets small weights to exactly 0
    dropout         unit outputs times a fresh Bernoulli mask per minibatch (inverted scaling)
    weight_noise    the loss is evaluated at w + sigma z, z ~ N(0, I), drawn anew every step
    augmentation    every training image is rotated, noised (and shifted) anew every step
    early_stopping  the weights of the epoch with the best validation loss, where a patience
                    rule would have stopped training (replayed on the recorded curves)
'none' is plain SGD and 'combined' the techniques of ``config.combined``. Penalties and
noise act on the weights (kernels) only. :func:`fit_methods` trains each distinct set of
training techniques once: stopping changes which weights are kept, not how they are trained.
"""

from __future__ import annotations

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lexicon import baselines, cli, data, optim, regularizers, report, sweeping, train
from lexicon.data import augment
from lexicon.losses import softmax_cross_entropy_with_integer_labels
from lexicon.nn.dropout import DropoutMLP
from lexicon.rules import Choice, ConfigError, Names, Range, positive, split_names, widths
from lexicon.train import sweep as sweeps

TECHNIQUES = ("l2", "l1", "l1_proximal", "dropout", "weight_noise", "augmentation")
TECHNIQUES += ("early_stopping",)
METHODS = ("none", *TECHNIQUES, "combined")
MONITORS = ("loss", "accuracy")
# Keys a sweep may change (lexicon.train.sweep): each reaches the compiled step only as a number.
SWEEPABLE = ("lr", "l2_alpha", "l1_alpha", "weight_sigma", "max_degrees", "pixel_noise")


def defaults():
    """The shared config of the regularization studies (``train.defaults()`` plus the
    setting and every technique's hyperparameters)."""
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
    """Cross-key rules of :func:`defaults`; an experiment's check_config calls them."""
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
    """The techniques of a method: none of them, one, or config.combined's."""
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


def classifier_task(config, techniques: frozenset[str], example_input, classes: int) -> train.Task:
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
        if "weight_noise" in techniques:  # sigma may be a traced (swept) value
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


def replay(config, result, tracked: dict[str, str]):
    """The patience rule (config.patience on the validation config.monitor) replayed on a
    run's recorded curves: per seed, (best epoch, stop epoch, name -> the history key's value
    at the best epoch) for every ``name: key`` of ``tracked``."""
    return regularizers.replay_early_stopping(
        result.curve(f"val/{config.monitor}")[1].T,
        {name: result.curve(key)[1].T for name, key in tracked.items()},
        config.patience,
        "min" if config.monitor == "loss" else "max",
    )


def fit_methods(config, workdir, methods, splits):
    """Trains every method; early stopping reads the run of the same training techniques.

    Returns method -> (Result, per-seed measures incl. gaps and weights, early-stop epochs)."""
    evals = {"train_eval": splits.train, "val": splits.val, "test": splits.test}
    fitted, out = {}, {}
    for method in methods:
        techniques = techniques_of(method, config)
        training = techniques - {"early_stopping"}
        if training not in fitted:
            # A task builder, so that a sweep builds each grid point's task with its own values.
            task = functools.partial(
                classifier_task,
                techniques=training,
                example_input=splits.train["x"][:1],
                classes=splits.num_classes,
            )
            print(f"--- {method}: {', '.join(sorted(techniques)) or 'no regularization'}")
            fitted[training] = train.fit(
                config, task, splits.train, workdir / method, eval_splits=evals
            )
        else:
            print(f"--- {method}: selects an epoch of an earlier training run")
        result, early = fitted[training], None
        if "early_stopping" in techniques:
            best, stop, measures = replay(config, result, MEASURES)
            early = {"best": best, "stop": stop}
        else:
            measures = {name: result.final(key) for name, key in MEASURES.items()}
        measures.update({name: measures[a] - measures[b] for name, (a, b) in GAPS.items()})
        measures["test accuracy"] = measures["test_acc"]
        out[method] = (result, measures, early)
    return out


def run_methods(config, workdir):
    """(splits, fit_methods' runs) of config.methods on the setting's small digits split."""
    methods = check_methods(config)
    splits = data.load("digits", seed=config.data_seed, train_size=config.train_size)
    return splits, fit_methods(config, workdir, methods, splits)


def per_point(result, values, **held) -> report.Figure | dict[str, report.Figure]:
    """Per-replica ``values`` of a run as ``report.figure`` gives its final metrics: as they
    are, or a Figure if ``held`` (reference, source, tolerance), or one Figure per grid point of
    a sweep, without a verdict."""
    if result.sweep is None and not held:
        return values
    return sweeping.figure(result, values, **held)


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


def settings_of(config) -> dict[str, str]:
    """Each method's hyperparameters in words, for the reports' tables ("swept" for the keys
    of a sweep, whose values are in its table)."""
    grid = sweeps.parse(config.get("sweep", ""))
    c = {k: "swept" if grid and k in grid.keys else config[k] for k in config}
    return {
        "l2": f"alpha = {c['l2_alpha']}",
        "l1": f"alpha = {c['l1_alpha']}, subgradient",
        "l1_proximal": f"alpha = {c['l1_alpha']}, soft threshold",
        "dropout": f"keep {c['input_keep']} in, {c['hidden_keep']} hidden",
        "weight_noise": f"sigma = {c['weight_sigma']}",
        "augmentation": f"shift <= {c['max_shift']} px, rotation <= {c['max_degrees']}°, "
        f"noise {c['pixel_noise']}",
        "early_stopping": f"patience {config.patience}, val {config.monitor}",
        "combined": config.combined.replace(",", " + "),
    }
