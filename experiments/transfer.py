"""Transfer learning: pretrain on digits 0-4, then learn 5-9 from a few labels three ways.

The two recipes of the documents (SPEC §5, document 001; document 003 adds the few-data case):
    features   use an intermediate layer of the pretrained network as fixed features and train
               only a new linear output layer on them (feature extraction); by default the
               output of the last conv layer (c3);
    finetune   reuse some pretrained layers and fine-tune the layers of interest: by default
               the conv layers are reused, conv1 stays fixed, conv2 (the top reused layer) is
               fine-tuned, and new dense layers F5, F6 and a new output layer are trained;
against the baseline
    scratch    the same LeNet-5 trained from a random initialization on the new task only.
A LeNet-5 is pretrained on digits 0-4; the target task is digits 5-9, relabelled 0-4, with
only n labelled examples per class (n in config.label_counts). Frozen layers get no update
(optax.set_to_zero): their weights stay exactly the pretrained ones. Which pretrained layer
transfers best is the study of experiments/probes.py, reported here too.

Every (label count, seed) pair is one replica of a single vmapped program per method: replica
r uses label count label_counts[r // seeds], its own random labelled subset (drawn from its
key), and the pretrained network of seed r % seeds. The subsets are the replicas' own
training data (train.fit's per_replica): the target pool weighted 1 on the replica's labelled
examples and 0 elsewhere, one shape for every label count. The labelled subset is small, so
the target task trains full batch: each step sees every labelled example of the replica.
"""

from __future__ import annotations

import numpy as np
from matplotlib.ticker import NullLocator

from lexicon import cli
from lexicon import transfer as setting
from lexicon.report import Report, compare, mean_std, panels, plot_curves

METHODS = ("scratch", "features", "finetune")
LABELS = {
    "scratch": "from scratch",
    "features": "frozen features + new linear head",
    "finetune": "pretrained, fine-tuned",
}


def get_config():
    return setting.defaults(target=True)  # the keys and their meaning: lexicon.transfer.defaults


RULES = setting.TARGET_RULES
check_config = setting.check_config  # cli.run checks the setting's cross-key rules


def figures(report, config, accuracy, probes, results, pretrained):
    counts = list(config.label_counts)
    fig, (left,) = panels(1, size=(5.5, 3.8))
    runs = {LABELS[m]: (counts, values.T) for m, values in accuracy.items()}
    runs["logistic regression on pixels"] = (counts, probes["pixels"].T)
    plot_curves(runs, ylabel="target test accuracy", ax=left)
    xlabel = f"labelled examples per class (target: digits {config.split_at}-9)"
    left.set(xscale="log", xlabel=xlabel)
    left.xaxis.set_minor_locator(NullLocator())
    left.set_xticks(counts, [str(c) for c in counts])
    report.figure(
        fig,
        "accuracy_vs_labels",
        "target test accuracy against labels per class (mean ± std over seeds)",
    )
    fig, (left, right) = panels(2, size=(5, 3.6))
    runs = {split: pretrained.curve(f"{split}/accuracy") for split in ("test", "train")}
    title = f"pretraining on digits 0-{config.split_at - 1}"
    plot_curves(runs, ylabel="accuracy", title=title, ax=left)
    smallest = {}  # the replicas of the first label count
    for method, result in results.items():
        steps, values = result.curve("test/accuracy", x="step")
        smallest[LABELS[method]] = (steps, values[: config.seeds])
    title = f"target task, {counts[0]} labels per class"
    plot_curves(
        smallest, xlabel="full-batch step", ylabel="target test accuracy", title=title, ax=right
    )
    report.figure(fig, "curves", "learning curves: seed mean with a ±1 std band")


def verdict(config, accuracy) -> tuple[str, np.ndarray]:
    """Where each transfer method beats scratch, paired over seeds: the methods of one seed
    share the labelled subset, so seed s of a method is compared with seed s of scratch.
    Returns the sentences and, per label count, whether either method's claim holds."""
    sentences, wins = [], []
    for method in ("features", "finetune"):
        judged = [
            compare(ours, theirs, paired=True, names=(method, "scratch"))
            for ours, theirs in zip(accuracy[method], accuracy["scratch"])
        ]
        wins.append([c.holds for c in judged])
        won = [str(n) for n, c in zip(config.label_counts, judged) if c.holds]
        sentences.append(
            f"{LABELS[method]} beats training from scratch at "
            + (", ".join(won) + " labels per class" if won else "no label count")
            + ":\n"
            + "\n".join(
                f"  - {n} per class: {c.sentence}" for n, c in zip(config.label_counts, judged)
            )
        )
    return "- " + "\n- ".join(sentences), np.logical_or(*wins)


def pixel_baseline(config, accuracy, probes) -> str:
    """How the best network of each label count compares with logistic regression on the raw
    pixels, paired over seeds (the same labelled subsets)."""
    lines, ahead = [], []
    for i, n in enumerate(config.label_counts):
        best = max(METHODS, key=lambda m: accuracy[m][i].mean())
        c = compare(probes["pixels"][i], accuracy[best][i], paired=True, names=("pixels", best))
        ahead += [str(n)] if c.verdict != "reversed" else []
        stage = max(("pixels", *setting.STAGES), key=lambda k: probes[k][i].mean())
        lines.append(f"  - {n} per class: {c.sentence}; the best probe input: {stage}")
    return (
        "Logistic regression on the raw pixels matches or beats the best network (its paired "
        f"interval is not below 0) at {', '.join(ahead) or 'no'} of the "
        f"{len(config.label_counts)} label counts:\n" + "\n".join(lines)
    )


def describe_finetune(config) -> str:
    new = RULES["new_layers"].parse(config.new_layers)
    frozen = [n for n in RULES["frozen"].parse(config.frozen) if n not in new]
    tuned = [n for n in setting.LAYERS if n not in new and n not in frozen]
    parts = [
        f"keeps {', '.join(frozen) or 'no layer'} fixed",
        f"fine-tunes {', '.join(tuned) or 'no pretrained layer'} at lr "
        f"{config.target_lr * config.finetune_lr_scale:g}",
        f"trains new {', '.join([*new, 'classifier'])}",
    ]
    return "Fine-tuning reuses the pretrained LeNet-5, " + ", ".join(parts) + "."


def train_and_evaluate(config, workdir):
    source, target, pretrained, labelled = setting.pretrained_setting(config, workdir)
    params, evals = pretrained.state.params, {"test": target.test}
    results = {
        m: setting.fit_target(config, m, labelled, evals, params, workdir / m) for m in METHODS
    }
    accuracy = {m: setting.per_count(r.final("test/accuracy"), config) for m, r in results.items()}
    probes = setting.probe_layers(config, source, target, pretrained, labelled)
    sentence, wins = verdict(config, accuracy)

    report = Report(workdir, "Transfer learning: digits 0-4 to digits 5-9 with few labels")
    report.text(
        f"LeNet-5 ({config.activation}) pretrained for {config.epochs} epochs on digits "
        f"0-{config.split_at - 1} ({len(source.train['y'])} training images): source test "
        f"accuracy {mean_std(pretrained.final('test/accuracy'))}. The target task is digits "
        f"{config.split_at}-9 relabelled from 0; each replica draws its own n labelled images "
        f"per class from the {len(target.train['y'])} target training images (the same subset "
        f"for every method) and trains {config.target_steps} full-batch Adam steps "
        f"(lr {config.target_lr:g}). Test: the {len(target.test['y'])} target test images. "
        f"Frozen features: a new linear layer on the pretrained {config.feature_layer} output. "
        + describe_finetune(config)
    )
    report.table(
        ["labels per class", *(LABELS[m] for m in METHODS), "logistic regression on pixels"],
        [
            (n, *(mean_std(accuracy[m][i]) for m in METHODS), mean_std(probes["pixels"][i]))
            for i, n in enumerate(config.label_counts)
        ],
        caption=f"Target test accuracy (mean ± std over {config.seeds} seeds)",
    )
    report.text(sentence + "\n\n" + pixel_baseline(config, accuracy, probes))
    setting.probe_section(report, config, probes)
    figures(report, config, accuracy, probes, results, pretrained)
    report.write()
    return {
        "accuracy": accuracy,
        "probes": probes,
        "source_accuracy": pretrained.final("test/accuracy"),
        "transfer_wins": wins,
    }


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, RULES)
