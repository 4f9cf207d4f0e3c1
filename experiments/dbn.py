"""Deep belief networks (SPEC.md §7, document 001): greedy RBM pretraining, then backprop.

The document's recipe: train an RBM on the data (Gaussian-Bernoulli on continuous inputs),
fix it, train the next, binary-binary, RBM on samples of its hidden layer, repeat; finally
put the outputs on top and fine-tune everything with backprop. Here the DBN is pretrained on
every training image without its label, then fine-tuned as a classifier on a few labelled
images per class, and set against the same network trained from random initialization on
the same labels, seed by seed, at several label counts.
"""

from __future__ import annotations

import math

import numpy as np
import optax

from lexicon import cli, data, report, sweeping, train
from lexicon.nn import dbn, rbm
from lexicon.report import Report, compare, mean_std
from lexicon.rules import Choice, ConfigError, Items, Range, nonnegative, positive, widths

DATASETS = ("mnist5k", "digits")
FIRST_LAYERS = ("gaussian", "bernoulli")
# --config.sweep='finetune_lr=3e-4,1e-3,3e-3': the fine-tuning of every label count, from the
# same pretrained stacks (the RBMs train once: their keys set the layers each grid point shares)
SWEEPABLE = ("finetune_lr",)


def get_config():
    config = train.defaults()
    config.seeds = 3
    config.batch_size = 50  # examples per step, pretraining and fine-tuning
    config.dataset = "mnist5k"  # mnist5k | digits (grey levels)
    config.first_layer = "gaussian"  # gaussian (standardized inputs) | bernoulli (grey in [0, 1])
    config.sizes = (256, 256)  # hidden widths of the RBM stack
    config.pretrain_epochs = 10  # epochs of each RBM
    config.lr = 0.05  # CD learning rate of the binary-binary RBMs
    config.gaussian_lr = 0.005  # of a Gaussian-Bernoulli first layer (the guide: 1-2 orders less)
    config.weight_decay = 1e-4  # weight cost on w (Hinton's guide)
    config.k = 1  # Gibbs steps of CD-k in pretraining
    config.labels_per_class = (10, 50, 100)  # labelled images per class for fine-tuning
    config.finetune_steps = 300  # Adam steps of the classifier
    config.finetune_lr = 1e-3  # its Adam learning rate
    return config


RULES = {
    "dataset": Choice(*DATASETS),
    "first_layer": Choice(*FIRST_LAYERS),
    "sizes": widths(max_width=4096, max_layers=6),
    "pretrain_epochs": Range(1),
    "lr": positive(),
    "gaussian_lr": positive(),
    "weight_decay": nonnegative(),
    "k": Range(1, 1000),
    "labels_per_class": Items(Range(1, 300), kind=int),
    "finetune_steps": Range(1, 1_000_000),
    "finetune_lr": positive(),
}


def check_config(config):
    if config.batch_size == 0 or config.batch_size > 1000:
        raise ConfigError(f"config.batch_size={config.batch_size}: give a minibatch in [1, 1000]")
    smallest = 125 if config.dataset == "digits" else 300  # images per class in the train split
    if max(config.labels_per_class) > smallest:
        raise ConfigError(
            f"config.labels_per_class={tuple(config.labels_per_class)}: {config.dataset} has "
            f"about {smallest} training images of its rarest class; stay at or below it"
        )


def load(config):
    """Grey images; standardized (one mean and scale for all pixels) for a Gaussian first layer,
    so that the unit variance of p(v | h) fits the data's spread."""
    splits = data.load(config.dataset, seed=config.data_seed)
    if config.first_layer == "gaussian":
        splits = data.standardize(splits, per_feature=False)
    return splits


def pretrain(config, splits, workdir, rep):
    """Greedy layer-wise RBM training (one train.fit per layer) on every training image."""
    run = config.copy_and_resolve_references()
    run.epochs = config.pretrain_epochs
    run = sweeping.without(run)  # the swept fine-tuning keys do not reach the RBMs

    def tx_for(i):
        steps = train.steps_per_epoch(run, len(splits.train["x"]))
        lr = (
            config.gaussian_lr
            if dbn.layer_visible(i, config.first_layer) == "gaussian"
            else config.lr
        )
        return rbm.practical_guide(steps, lr, config.weight_decay)

    layers, results = dbn.pretrain(
        run,
        splits.train["x"],
        config.sizes,
        workdir / "pretrain",
        tx_for=tx_for,
        first_visible=config.first_layer,
        k=config.k,
        eval_x=splits.test["x"],
    )
    curves = {f"RBM {i + 1}": r.curve("test/reconstruction") for i, r in enumerate(results)}
    rep.figure(
        report.plot_curves(curves, ylabel="test reconstruction error", log_y=True),
        "pretraining",
        "greedy pretraining: each RBM's reconstruction error of its own (test) input, "
        "sum over units of (v - E[v | p(h | v)])^2",
    )
    return layers


def fine_tune(config, splits, layers, workdir):
    """Per label count: test accuracy of the pretrained and of the random-init network."""
    classes = splits.num_classes
    model = dbn.DBNClassifier(tuple(config.sizes), classes)

    def task(run):  # a task builder: a sweep's grid point gets its traced Adam rate
        return train.classifier(model, optax.adam(run.finetune_lr), splits.train["x"][:1])

    accuracy = {"pretrained": [], "random init": []}
    for n in config.labels_per_class:
        few = data.per_class_subsets(splits.train, n, train.replica_seeds(config), seed=n)
        run = config.copy_and_resolve_references()
        run.batch_size = min(config.batch_size, n * classes)
        per_epoch = train.steps_per_epoch(run, n * classes)
        run.epochs = run.eval_every = math.ceil(config.finetune_steps / per_epoch)
        args = {"eval_splits": {"test": splits.test}, "per_replica": True}
        start = dbn.fine_tune_state(run, task(run), layers)  # per seed, shared by grid points
        tuned = train.fit(run, task, few, workdir / f"pretrained/n{n}", initial_state=start, **args)
        scratch = train.fit(run, task, few, workdir / f"random/n{n}", **args)
        accuracy["pretrained"].append(tuned.final("test/accuracy"))
        accuracy["random init"].append(scratch.final("test/accuracy"))
    return accuracy


def train_and_evaluate(config, workdir):
    splits = load(config)
    rep = Report(workdir, "Deep belief network: greedy RBM pretraining, backprop fine-tuning")
    stack = "-".join(map(str, (splits.train["x"].shape[1], *config.sizes)))
    rep.text(
        f"A {stack} DBN on `{config.dataset}` ({len(splits.train['x'])} training images, "
        f"{len(splits.test['x'])} test): a {config.first_layer}-visible first RBM "
        f"{'on standardized pixels' if config.first_layer == 'gaussian' else 'on grey levels'}"
        f", binary RBMs above, each trained by CD-{config.k} for {config.pretrain_epochs} "
        f"epochs on samples of the fixed layer below (Hinton's guide: momentum 0.5 then 0.9, "
        f"weight cost {config.weight_decay}; lr {config.gaussian_lr} for a Gaussian layer, "
        f"{config.lr} for binary ones). Then a softmax layer on top, and the sigmoid net is "
        f"fine-tuned by Adam ({config.finetune_lr}, {config.finetune_steps} steps) on a few "
        f"labelled images per class, against the same net from random init on the same "
        f"labels; {config.seeds} seeds."
    )
    sweeping.note(rep, config)
    layers = pretrain(config, splits, workdir, rep)
    accuracy = fine_tune(config, splits, layers, workdir)
    ns = list(config.labels_per_class)
    curves = {k: (ns, np.stack(v, 1)) for k, v in accuracy.items()}
    rep.figure(
        report.plot_curves(curves, xlabel="labels per class", ylabel="test accuracy"),
        "fine_tuning",
        "test accuracy after fine-tuning: DBN-pretrained vs random init (mean ± std)",
    )
    pre, scratch = accuracy["pretrained"], accuracy["random init"]
    verdicts = [
        compare(a, b, paired=True, names=("pretrained", "random init"))
        for a, b in zip(pre, scratch)
    ]
    rows = [(n, mean_std(a), mean_std(b)) for n, a, b in zip(ns, pre, scratch)]
    rep.table(
        ["labels per class", "DBN-pretrained", "random init"],
        rows,
        caption="test accuracy, mean ± std over seeds",
    )
    lines = [f"- {n} labels per class: {v.sentence}" for n, v in zip(ns, verdicts)]
    rep.text("Pretrained vs random init (paired seeds):\n" + "\n".join(lines))
    rep.write()
    figures = {}
    for n, a, b in zip(ns, pre, scratch):  # one figure per grid point in a sweep
        figures[f"accuracy_{n}/pretrained"] = sweeping.figure(
            config,
            a,
            reference=float(np.mean(b)),
            claim="at_least",
            source="the same net from random init, same labels",
        )
        figures[f"accuracy_{n}/random_init"] = sweeping.figure(config, b)
    return figures


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, RULES)
