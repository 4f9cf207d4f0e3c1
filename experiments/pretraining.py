"""Greedy supervised pretraining of a deep saturating net vs training it end to end.

Document 001 (SPEC §14) splits a hard problem into parts solved one at a time: train hidden
layer 1 with an output head on the labels; freeze it and add layer 2 with a new head, trained
alone on top of the frozen layer 1; and so on to layer L; then fine-tune every layer together
(``lexicon.greedy``; the supervised form of Bengio et al. 2007). The net is deep and
saturating (L sigmoid or tanh layers, Glorot's initialization, plain SGD), where end-to-end
training suffers from gradients that shrink layer after layer (SPEC §15), and where
pretraining is meant to help.

Both schedules train the same net from the same initialization, on the same minibatches, for
the same number of steps: greedy spends ``layer_epochs`` on each of the L layers and
``fine_tune_epochs`` on the whole net; end to end trains the whole net for all of those
epochs. Seed i of both shares its initialization and data order, so the comparison is paired.
"""

from __future__ import annotations

import numpy as np

from lexicon import baselines, cli, data, optim, train
from lexicon.greedy import DeepClassifier, end_to_end, greedy_plan
from lexicon.report import Figure, Report, compare, held_against, mean_std, panels, plot_curves
from lexicon.rules import Choice, Range, check_batch_size, positive, widths

DATASETS = ("digits", "mnist1d")
ACTIVATIONS = ("sigmoid", "tanh")


def get_config():
    config = train.defaults()
    config.seeds = 5
    config.batch_size = 32
    config.dataset = "digits"  # digits (8x8, 1258 training images) | mnist1d (40-d signals)
    config.hidden = (64, 64, 64, 64, 64, 64)  # widths of the L hidden layers
    config.activation = "sigmoid"  # sigmoid | tanh: the saturating units
    config.optimizer = "sgd"  # a name from lexicon.optim.NAMES
    config.lr = 0.5  # its learning rate, every stage
    config.layer_epochs = 5  # greedy: epochs of each layer with its head
    config.fine_tune_epochs = 20  # greedy: epochs of the whole net at the end
    config.mlp_reference = True  # scikit-learn's MLPClassifier (same layers) as reference
    return config


RULES = {
    "dataset": Choice(*DATASETS),
    "hidden": widths(4096, 32),
    "activation": Choice(*ACTIVATIONS),
    "optimizer": Choice(*optim.NAMES),
    "lr": positive(),
    "layer_epochs": Range(1, 10_000),
    "fine_tune_epochs": Range(0, 10_000),
}


def check_config(config):
    """The batch fits the training split (sizes known before loading)."""
    check_batch_size(config, {"digits": 1258, "mnist1d": 3600}[config.dataset])


def total_epochs(config) -> int:
    """The epochs both schedules train for: L layer stages and the fine-tune."""
    return len(config.hidden) * config.layer_epochs + config.fine_tune_epochs


def schedules(config, splits):
    """name -> list of train.Stage: greedy (L layer stages, then the fine-tune) and end to end
    (one stage of every epoch), from the same model and optimizer."""
    model = DeepClassifier(
        hidden=tuple(config.hidden), num_classes=splits.num_classes, activation=config.activation
    )

    def make_tx():
        return optim.get(config.optimizer, learning_rate=config.lr)

    example = splits.train["x"][:1]
    greedy = greedy_plan(
        model,
        make_tx,
        example,
        layer_epochs=config.layer_epochs,
        fine_tune_epochs=config.fine_tune_epochs,
    )
    whole = train.Stage("end_to_end", *end_to_end(model, make_tx, example, total_epochs(config)))
    return {"greedy": greedy, "end_to_end": [whole]}


def joined_curve(staged: dict, key: str):
    """(epochs, values (seeds, points)) of ``key`` over the stages of one schedule."""
    parts = [result.curve(key) for result in staged.values()]
    return np.concatenate([x for x, _ in parts]), np.concatenate([v for _, v in parts], axis=1)


def stage_rows(config, staged):
    """Per greedy stage: which parameters train, epochs, and the head's accuracies at its end."""
    rows = []
    for name, result in staged.items():
        what = (
            f"layer {name.split('_')[1]} + head {name.split('_')[1]} (below it frozen)"
            if name.startswith("layer_")
            else f"all {len(config.hidden)} layers + head {len(config.hidden)}"
        )
        rows.append(
            (
                name,
                what,
                int(result.history[-1]["epoch"]),
                mean_std(result.final("train/accuracy"), 3),
                mean_std(result.final("test/accuracy"), 3),
            )
        )
    return rows


def train_and_evaluate(config, workdir):
    check_config(config)
    splits = data.load(config.dataset, seed=config.data_seed)
    if config.dataset == "mnist1d":
        splits = data.standardize(splits)
    evals = {"train": splits.train, "test": splits.test}
    staged = {
        name: train.stages(config, plan, splits.train, workdir / name, eval_splits=evals)
        for name, plan in schedules(config, splits).items()
    }
    final = {name: list(runs.values())[-1] for name, runs in staged.items()}
    accuracy = {name: final[name].final("test/accuracy") for name in staged}
    loss = {name: final[name].final("train/loss") for name in staged}
    depth = len(config.hidden)
    pretrained_only = staged["greedy"][f"layer_{depth}"].final("test/accuracy")

    names = ("greedy + fine-tune", "end to end")
    verdicts = {
        "test accuracy": compare(
            accuracy["greedy"], accuracy["end_to_end"], paired=True, names=names
        ),
        "training loss": compare(
            loss["greedy"], loss["end_to_end"], paired=True, higher_is_better=False, names=names
        ),
    }
    reference = None
    if config.mlp_reference:
        reference = baselines.mlp_classifier(
            splits.train,
            splits.test,
            tuple(config.hidden),
            activation="logistic" if config.activation == "sigmoid" else "tanh",
        )

    report = Report(workdir, "Greedy supervised pretraining vs end-to-end training")
    report.text(
        f"{config.dataset}: a net of {depth} {config.activation} layers "
        f"{tuple(config.hidden)} (Glorot initialization), {config.optimizer} with learning rate "
        f"{config.lr:g}, minibatches of {config.batch_size}, {config.seeds} seeds. Greedy: "
        f"{config.layer_epochs} epochs per layer (layer k and its own head trained on top of "
        f"the frozen layers below), then {config.fine_tune_epochs} epochs of fine-tuning all "
        f"layers; end to end: the whole net for the same {total_epochs(config)} epochs, from "
        "the same initialization and minibatches (paired seeds)."
    )
    report.table(
        ["stage", "trains", "last epoch", "train accuracy", "test accuracy"],
        stage_rows(config, staged["greedy"]),
        caption="Greedy stages: the accuracy of each stage's head at the end of the stage",
    )
    rows = [
        ("greedy, layer stages only", mean_std(pretrained_only, 3), ""),
        ("greedy + fine-tune", mean_std(accuracy["greedy"], 3), mean_std(loss["greedy"], 4)),
        ("end to end", mean_std(accuracy["end_to_end"], 3), mean_std(loss["end_to_end"], 4)),
    ]
    if reference is not None:
        rows.append(("**reference: scikit-learn MLPClassifier (adam)**", f"{reference:.3f}", ""))
    report.table(
        ["schedule", "test accuracy", "final training loss"],
        rows,
        caption=f"After {total_epochs(config)} epochs (mean ± std over seeds)",
    )
    report.text("\n".join(f"- {key}: {verdict.sentence}." for key, verdict in verdicts.items()))
    fig, (left, right) = panels(2, size=(5.5, 3.8))
    for key, ax, label in (("test/accuracy", left, "test accuracy"), ("train/loss", right, "")):
        curves = {n: joined_curve(staged[name], key) for n, name in zip(names, staged)}
        plot_curves(curves, ylabel=label or "training loss (the stage's head)", ax=ax)
        for k in range(1, depth + 1):
            ax.axvline(k * config.layer_epochs, color="grey", ls=":", lw=0.8)
        ax.set_xlabel("epoch (dotted: a greedy stage ends)")
    right.set_yscale("log")
    report.figure(fig, "curves", "greedy (each stage's own head) and end-to-end training")
    report.write()
    # greedy's test accuracy held against end to end's (paired verdict), and both beside the
    # reference MLP
    source = "scikit-learn MLPClassifier, same layers" if reference is not None else ""
    return {
        "greedy_vs_end_to_end": held_against(
            accuracy["greedy"],
            accuracy["end_to_end"],
            verdicts["test accuracy"],
            "end-to-end training, same net, init and minibatches",
        ),
        "test_accuracy": {
            name: Figure(values, reference=reference, source=source)
            for name, values in accuracy.items()
        },
        "pretrained_only": pretrained_only,
        "verdicts": {key: verdict.verdict for key, verdict in verdicts.items()},
    }


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, RULES)
