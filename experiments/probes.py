"""Which layer transfers: linear probes of every stage of a pretrained LeNet-5.

Document 001 (SPEC §5): the first layers of a network learn general features and the last
ones features specific to its task, which is why transfer reuses the lower layers. A linear
probe measures how general a layer is: logistic regression (scikit-learn) trained on the
layer's outputs to solve the new task. Here a LeNet-5 pretrained on digits 0-4 (as in
experiments/transfer.py, with lexicon.transfer) is probed at every stage (c1, s2, c3, s4, f5,
f6) on digits 5-9 with n labelled images per class (the same labelled subsets as transfer's
replicas), next to the raw pixels. experiments/transfer.py reports the same section.
"""

from __future__ import annotations

from lexicon import cli, data, train
from lexicon.report import Report
from lexicon.rules import Choice, Items, Range, positive
from lexicon.transfer import (
    check_config as check_config,  # cli.run checks the setting's cross-key rules
)
from lexicon.transfer import (
    check_counts,
    labelled_data,
    linear_probes,
    make_model,
    pretrain,
    probe_section,
    task_splits,
)


def get_config():
    config = train.defaults()
    config.seeds = 5  # pretrained networks, and labelled subsets per label count
    config.epochs = 20  # pretraining epochs on the source task
    config.batch_size = 32  # pretraining minibatch
    config.lr = 3e-3  # Adam learning rate of the pretraining
    config.split_at = 5  # source task: digits below this; target: the rest, relabelled from 0
    config.label_counts = (5, 10, 25, 50, 100)  # labelled target examples per class
    config.activation = "relu"  # tanh | relu: activation of the LeNet-5
    return config


RULES = {
    "lr": positive(),
    "split_at": Range(2, 8),
    "activation": Choice("tanh", "relu"),
    "label_counts": Items(Range(1, 10_000), kind=int),
}


def train_and_evaluate(config, workdir):
    splits = data.load("digits", seed=config.data_seed, flatten=False)
    source, target = task_splits(splits, config.split_at)
    num_classes = int(target.train["y"].max() + 1)
    check_counts(config, target.train["y"], num_classes)
    pretrained = pretrain(config, source, workdir / "pretrain")
    masks = labelled_data(config, target.train, num_classes)["weight"] > 0
    model = make_model(config, source.num_classes)
    probes = linear_probes(config, model, pretrained.state.params, target, masks)
    report = Report(workdir, "Linear probes of a pretrained LeNet-5")
    probe_section(report, config, probes)
    report.write()
    return {"probes": probes}


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, RULES)
