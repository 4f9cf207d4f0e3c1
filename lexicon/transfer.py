"""Transfer learning on digits: source and target tasks, few-label replicas, linear probes.

The setting of the transfer studies (SPEC §5, document 001; document 003 adds the few-data
case): a LeNet-5 is pretrained on the digits below ``split_at`` (the source task); the target
task is the other digits, relabelled from 0, learned from n labelled images per class. Every
(label count, seed) pair is one replica: :func:`labelled_data` gives replica r the target pool
weighted 1 on its own labelled subset (drawn from its init key) and 0 elsewhere, one shape for
every label count. A linear probe measures how general a pretrained layer is: logistic
regression (scikit-learn) trained on the layer's outputs to solve the target task.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lexicon import baselines, data, train
from lexicon.nn.cnn import LeNet5, lenet5_for
from lexicon.report import mean_std, panels, plot_curves
from lexicon.rules import ConfigError, check_batch_size

STAGES = ("c1", "s2", "c3", "s4", "f5", "f6")  # the outputs LeNet-5 sows, input to output


def make_model(config, num_classes: int) -> LeNet5:
    """LeNet-5 (config.activation) with "same" padding: 8x8 digits go 8 -> 4 -> 2."""
    return lenet5_for(8, num_classes, config.activation)


def task_splits(splits, split_at: int):
    """(source, target) Splits: digits < split_at, and the rest with labels minus split_at."""

    def part(split, source):
        keep = split["y"] < split_at if source else split["y"] >= split_at
        return {"x": split["x"][keep], "y": split["y"][keep] - (0 if source else split_at)}

    return tuple(data.Splits(*(part(s, source) for s in splits)) for source in (True, False))


def labelled_mask(key, labels: jax.Array, per_class, num_classes: int) -> jax.Array:
    """1.0 on ``per_class`` uniformly drawn examples of every class, 0.0 elsewhere."""
    scores = jax.random.uniform(key, labels.shape)
    mask = jnp.zeros(labels.shape, bool)
    for c in range(num_classes):
        in_class = labels == c
        rank = jnp.argsort(jnp.argsort(jnp.where(in_class, scores, jnp.inf)))
        mask = mask | (in_class & (rank < per_class))
    return mask.astype(jnp.float32)


def labelled_data(config, pool, num_classes: int) -> dict:
    """Per-replica training data: replica r's copy of the target pool, with "weight" 1.0 on
    label_counts[r // seeds] examples per class (drawn from its init key) and 0.0 elsewhere."""
    replicas = len(config.label_counts) * config.seeds
    weights = [
        labelled_mask(
            jax.random.split(train.stream(config.seed + r, "init"))[1],
            jnp.asarray(pool["y"]),
            config.label_counts[r // config.seeds],
            num_classes,
        )
        for r in range(replicas)
    ]
    copies = {k: np.broadcast_to(v, (replicas, *np.shape(v))) for k, v in pool.items()}
    return {**copies, "weight": np.asarray(weights)}


def check_config(config):
    """The setting's cross-key rules (label counts, pretraining batch); before any compile."""
    splits = data.load("digits", seed=config.data_seed, flatten=False)
    source, target = task_splits(splits, config.split_at)
    check_counts(config, target.train["y"], int(target.train["y"].max() + 1))
    check_batch_size(config, len(source.train["y"]), of="training examples of the source task")


def check_counts(config, pool_labels, num_classes):
    """Every label count must lie in [1, examples of the rarest target class]."""
    smallest = int(np.bincount(pool_labels, minlength=num_classes).min())
    if max(config.label_counts) > smallest or min(config.label_counts) < 1:
        raise ConfigError(
            f"config.label_counts={tuple(config.label_counts)} must lie in [1, {smallest}], "
            f"the labelled examples of the rarest target class"
        )


def pretrain(config, source, workdir):
    """LeNet-5 trained on the source task by Adam (config.lr), evaluated every epoch."""
    model = make_model(config, source.num_classes)
    task = train.classifier(model, optax.adam(config.lr), jnp.zeros((1, 8, 8, 1)))
    pre = config.copy_and_resolve_references()
    pre.eval_every = 1
    return train.fit(pre, task, source.train, workdir, eval_splits={"test": source.test})


def layer_output(model: LeNet5, params, x: jax.Array, layer: str) -> jax.Array:
    """The flattened output (N, D) of one named LeNet-5 stage (c1, s2, c3, s4, f5, f6)."""
    _, sown = model.apply({"params": params}, x, method="features", mutable=["intermediates"])
    h = sown["intermediates"][layer][0]
    return h.reshape(h.shape[0], -1)


def linear_probes(config, model, pretrained, target, masks) -> dict[str, np.ndarray]:
    """Test accuracy of logistic regression (scikit-learn) on raw pixels and on every stage.

    Each replica's classifier is fit on that replica's labelled subset, reading the stage
    outputs of the pretrained network of its seed. Returns name -> (label counts, seeds).
    """

    per_seed = []
    for seed in range(config.seeds):
        params = jax.tree.map(lambda p, s=seed: p[s], pretrained)
        stages = {"pixels": (target.train["x"], target.test["x"])}
        for stage in STAGES:  # its outputs (baselines flattens them)
            stages[stage] = tuple(
                np.asarray(layer_output(model, params, jnp.asarray(split["x"]), stage))
                for split in (target.train, target.test)
            )
        per_seed.append(stages)
    scores = {name: [] for name in ("pixels", *STAGES)}
    for replica, mask in enumerate(masks):
        for name, (x, x_test) in per_seed[replica % config.seeds].items():
            labelled = {"x": x[mask], "y": target.train["y"][mask]}
            test = {"x": x_test, "y": target.test["y"]}
            scores[name].append(baselines.logistic_regression(labelled, test))
    counts = len(config.label_counts)
    return {name: np.asarray(v).reshape(counts, config.seeds) for name, v in scores.items()}


def probe_section(report, config, probes) -> None:
    """The probes' table and figure: accuracy per input of the probe and label count."""
    counts, names = list(config.label_counts), ["pixels", *STAGES]
    report.table(
        ["input of the probe", *(f"{n} / class" for n in counts)],
        [(name, *(mean_std(v) for v in probes[name])) for name in names],
        caption="Linear probes: scikit-learn logistic regression on each pretrained layer's "
        "output, same labelled subsets (how well each layer transfers)",
    )
    stages = np.arange(len(names))
    by_count = {
        f"{n} / class": (stages, np.stack([probes[k][i] for k in names], 1))
        for i, n in enumerate(counts)
    }
    fig, (ax,) = panels(1, size=(5.5, 3.8))
    plot_curves(by_count, ylabel="target test accuracy", ax=ax)
    ax.set_xticks(stages, names)
    ax.set_xlabel("pretrained layer under the linear probe (input to output)")
    report.figure(fig, "probes", "logistic-regression probes of each pretrained layer "
                  "(mean ± std over seeds)")  # fmt: skip
