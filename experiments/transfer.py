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
A LeNet-5 is pretrained on the source task (digits 0-4). The target task is digits 5-9,
relabelled 0-4, with only n labelled examples per class (n in config.label_counts). Frozen
layers get no update through optax.multi_transform with optax.set_to_zero, so their weights
stay exactly the pretrained ones.

Every (label count, seed) pair is one replica of a single vmapped program per method: replica
r uses label count label_counts[r // seeds], its own random labelled subset (drawn from its
key), and the pretrained network of seed r % seeds. The subsets are the replicas' own
training data (train.fit's per_replica): the target pool weighted 1 on the replica's labelled
examples and 0 elsewhere, one shape for every label count. The labelled subset is small, so
the target task trains full batch: each step sees every labelled example of the replica.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from matplotlib.ticker import NullLocator

from lexicon import cli, data, train
from lexicon.nn.cnn import LeNet5, lenet5_for
from lexicon.report import Report, band, mean_std
from lexicon.rules import Choice, ConfigError, Items, Names, Range, check_batch_size, positive

METHODS = ("scratch", "features", "finetune")
LAYERS = ("conv1", "conv2", "dense1", "dense2")
STAGES = ("c1", "s2", "c3", "s4", "f5", "f6")  # the outputs LeNet-5 sows, input to output
LABELS = {
    "scratch": "from scratch",
    "features": "frozen features + new linear head",
    "finetune": "pretrained, fine-tuned",
}


def get_config():
    config = train.defaults()
    config.seeds = 5  # pairs with each label count; 5 gives a paired win count per seed
    config.epochs = 20  # pretraining epochs on the source task
    config.batch_size = 32  # pretraining minibatch
    config.lr = 3e-3  # Adam learning rate of the pretraining
    config.split_at = 5  # source task: digits below this; target: the rest, relabelled from 0
    config.label_counts = (5, 10, 25, 50, 100)  # labelled target examples per class
    config.target_steps = 150  # full-batch Adam steps on the labelled target examples
    config.target_lr = 3e-3  # Adam learning rate on the target task
    config.frozen = "conv1"  # finetune: pretrained layers kept fixed, or none
    config.new_layers = "dense1,dense2"  # finetune: re-initialized layers (+ output), or none
    config.finetune_lr_scale = 1.0  # finetune: lr of the pretrained trainable layers / target_lr
    config.feature_layer = "c3"  # c1 | s2 | c3 | s4 | f5 | f6: the layer under the features head
    config.activation = "relu"  # tanh | relu: activation of the LeNet-5
    config.eval_every = 25  # target steps between evaluations of the target test split
    return config


RULES = {
    "lr": positive(),
    "target_lr": positive(),
    "split_at": Range(2, 8),
    "target_steps": Range(1, 10_000_000),
    "frozen": Names(LAYERS, nothing="none", allow_empty=True),
    "new_layers": Names(LAYERS, nothing="none", allow_empty=True),
    "finetune_lr_scale": positive(),
    "feature_layer": Choice(*STAGES),
    "activation": Choice("tanh", "relu"),
    "label_counts": Items(Range(1, 10_000), kind=int),
}


def check_config(config):
    """Cross-key rules; cli.run checks them before anything compiles."""
    splits = data.load("digits", seed=config.data_seed, flatten=False)
    source, target = task_splits(splits, config.split_at)
    check_counts(config, target.train["y"], int(target.train["y"].max() + 1))
    check_batch_size(config, len(source.train["y"]), of="training examples of the source task")


# --- tasks -------------------------------------------------------------------------------------


def make_model(config, num_classes: int) -> LeNet5:
    """LeNet-5 with "same" padding: 8x8 digits go 8 -> 4 -> 2 through the two conv stages."""
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


def layer_output(model: LeNet5, params, x: jax.Array, layer: str) -> jax.Array:
    """The flattened output (N, D) of one named LeNet-5 stage (c1, s2, c3, s4, f5, f6)."""
    _, sown = model.apply({"params": params}, x, method="features", mutable=["intermediates"])
    h = sown["intermediates"][layer][0]
    return h.reshape(h.shape[0], -1)


def optimizer(method: str, config) -> optax.GradientTransformation:
    """Adam per group of top-level parameters; optax.set_to_zero (no update) on frozen ones.

    scratch trains everything at target_lr. features trains only the new head. finetune
    trains the new output layer at target_lr and the pretrained layers that are not frozen at
    target_lr * finetune_lr_scale, so they move away from their pretrained values slowly.
    """
    frozen = set(RULES["frozen"].parse(config.frozen))
    new = {
        "head",
        "classifier",
        *(RULES["new_layers"].parse(config.new_layers) if method == "finetune" else ()),
    }

    def group(layer: str) -> str:
        if method == "scratch" or layer in new:
            return "new"
        if method == "features" or layer in frozen:
            return "frozen"
        return "pretrained"

    def tag(layer: str, subtree):
        name = group(layer)
        return jax.tree.map(lambda _: name, subtree)

    def labels(params):
        return {layer: tag(layer, subtree) for layer, subtree in params.items()}

    return optax.multi_transform(
        {
            "new": optax.adam(config.target_lr),
            "pretrained": optax.adam(config.target_lr * config.finetune_lr_scale),
            "frozen": optax.set_to_zero(),
        },
        labels,
    )


def target_task(config, method, model, num_classes, example) -> train.Task:
    """The Task of one method on the target task; it trains on the per-replica labelled_data.

    Parameters: scratch and finetune use the LeNet-5's own (classifier = the new output layer);
    features holds {"network": the LeNet-5, "head": a new linear layer on
    config.feature_layer}. ``init`` draws a fresh network; ``reuse`` then puts the pretrained
    layers in place for features and finetune.
    """
    head = nn.Dense(num_classes)

    def init(key):
        init_key, _ = jax.random.split(key)  # the other half draws the labelled subset
        params = model.init(init_key, example)["params"]
        if method == "features":
            width = layer_output(model, params, example, config.feature_layer).shape[-1]
            head_params = head.init(init_key, jnp.zeros((1, width)))["params"]
            params = {"network": params, "head": head_params}
        tx = optimizer(method, config)
        return train.TrainState.create(apply_fn=model.apply, params=params, tx=tx)

    def logits_of(params, x):
        if method == "features":
            h = layer_output(model, params["network"], x, config.feature_layer)
            return head.apply({"params": params["head"]}, h)
        return model.apply({"params": params}, x)

    def objective(params, model_state, batch, key):
        logits = logits_of(params, batch["x"])
        weight = batch["weight"]
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"])
        hits = (jnp.argmax(logits, -1) == batch["y"]).astype(jnp.float32)
        total = jnp.sum(weight)
        loss = jnp.sum(weight * losses) / total
        return loss, ({"accuracy": jnp.sum(weight * hits) / total}, model_state)

    def evaluate(state, split):
        logits = logits_of(state.params, split["x"])
        return {
            "loss": train.cross_entropy(logits, split["y"]),
            "accuracy": train.accuracy(logits, split["y"]),
        }

    return train.Task(init=init, make_step=train.gradient_step(objective), evaluate=evaluate)


def reuse(config, method, state, pretrained):
    """The starting state of features and finetune: the replicas' fresh ``state`` with the
    pretrained layers (of seed r % seeds for replica r) in place of all but the new ones: the
    output layer and, to fine-tune, config.new_layers."""
    tuned = RULES["new_layers"].parse(config.new_layers) if method == "finetune" else ()
    new = {"classifier", *tuned}
    reps = len(config.label_counts)
    old = {
        layer: jax.tree.map(lambda p: np.tile(p, (reps,) + (1,) * (p.ndim - 1)), params)
        for layer, params in pretrained.items()
        if layer not in new
    }
    params = {**state.params, **old}
    if method == "features":
        params = {**state.params, "network": {**state.params["network"], **old}}
    return train.start_optimizer(state.replace(params=params), state.tx)


# --- references --------------------------------------------------------------------------------


def linear_probes(config, model, pretrained, target, masks) -> dict[str, np.ndarray]:
    """Test accuracy of logistic regression (scikit-learn) on raw pixels and on every stage.

    Each replica's classifier is fit on that replica's labelled subset, reading the stage
    outputs of the pretrained network of its seed. Returns name -> (label counts, seeds).
    """
    from sklearn.linear_model import LogisticRegression

    def flat(x):
        return np.asarray(x).reshape(len(x), -1)

    per_seed = []
    for seed in range(config.seeds):
        params = jax.tree.map(lambda p, s=seed: p[s], pretrained)
        stages = {"pixels": (flat(target.train["x"]), flat(target.test["x"]))}
        for stage in STAGES:
            stages[stage] = tuple(
                flat(layer_output(model, params, jnp.asarray(split["x"]), stage))
                for split in (target.train, target.test)
            )
        per_seed.append(stages)
    scores = {name: [] for name in ("pixels", *STAGES)}
    for replica, mask in enumerate(masks):
        for name, (x, x_test) in per_seed[replica % config.seeds].items():
            probe = LogisticRegression(max_iter=2000).fit(x[mask], target.train["y"][mask])
            scores[name].append(probe.score(x_test, target.test["y"]))
    return {name: per_count(values, config) for name, values in scores.items()}


# --- the run -----------------------------------------------------------------------------------


def check_counts(config, pool_labels, num_classes):
    smallest = int(np.bincount(pool_labels, minlength=num_classes).min())
    if max(config.label_counts) > smallest or min(config.label_counts) < 1:
        raise ConfigError(
            f"config.label_counts={tuple(config.label_counts)} must lie in [1, {smallest}], "
            f"the labelled examples of the rarest target class"
        )


def pretrain(config, source, workdir):
    model = make_model(config, source.num_classes)
    task = train.classifier(model, optax.adam(config.lr), jnp.zeros((1, 8, 8, 1)))
    pre = config.copy_and_resolve_references()
    pre.eval_every = 1
    return train.fit(pre, task, source.train, workdir, eval_splits={"test": source.test})


def transfer(config, method, labelled, evals, pretrained, workdir):
    num_classes = int(labelled["y"].max() + 1)
    model = make_model(config, num_classes)
    task = target_task(config, method, model, num_classes, jnp.zeros((1, 8, 8, 1)))
    run = config.copy_and_resolve_references()
    run.seeds = len(config.label_counts) * config.seeds
    run.epochs = config.target_steps
    run.batch_size = 0  # full batch: every step sees the replica's whole pool, weighted
    run.parallel = "none" if config.parallel == "data" else config.parallel  # no shared batch
    start = None  # scratch: the task's init
    if method != "scratch":
        fresh = jax.vmap(lambda seed: task.init(train.stream(seed, "init")))
        start = reuse(config, method, jax.jit(fresh)(train.replica_seeds(run)), pretrained)
    return train.fit(
        run, task, labelled, workdir, eval_splits=evals, initial_state=start, per_replica=True
    )


def per_count(values, config) -> np.ndarray:
    """Per-replica values -> (label counts, seeds)."""
    return np.asarray(values).reshape(len(config.label_counts), config.seeds)


def figures(report, config, accuracy, probes, histories, pretrained_history):
    counts = list(config.label_counts)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    ax = axes[0]
    for method, values in accuracy.items():
        band(ax, counts, values.T, LABELS[method], marker="o")
    band(ax, counts, probes["pixels"].T, "logistic regression on pixels", marker="x", ls="--")
    ax.set_xscale("log")
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticks(counts, [str(c) for c in counts])
    ax.set_xlabel(f"labelled examples per class (target: digits {config.split_at}-9)")
    ax.set_ylabel("target test accuracy")
    ax.legend(fontsize=8)
    ax = axes[1]
    names = ["pixels", *STAGES]
    for i, n in enumerate(counts):
        band(ax, range(len(names)), np.stack([probes[k][i] for k in names], 1), f"{n} / class")
    ax.set_xticks(range(len(names)), names)
    ax.set_xlabel("pretrained layer under the linear probe (input to output)")
    ax.set_ylabel("target test accuracy")
    ax.legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    report.figure(
        fig,
        "accuracy_vs_labels",
        "left: target test accuracy against labels per class; right: logistic-regression "
        "probes of each pretrained layer (mean ± std over seeds)",
    )

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    epochs = [r["epoch"] for r in pretrained_history]
    band(axes[0], epochs, np.array([r["test/accuracy"] for r in pretrained_history]).T, "test")
    band(axes[0], epochs, np.array([r["train/accuracy"] for r in pretrained_history]).T, "train")
    axes[0].set_title(f"pretraining on digits 0-{config.split_at - 1}")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("accuracy")
    for method, history in histories.items():
        records = [r for r in history if "test/accuracy" in r]
        steps = [r["step"] for r in records]
        smallest = np.array([per_count(r["test/accuracy"], config)[0] for r in records]).T
        band(axes[1], steps, smallest, LABELS[method])
    axes[1].set_title(f"target task, {counts[0]} labels per class")
    axes[1].set_xlabel("full-batch step")
    axes[1].set_ylabel("target test accuracy")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    report.figure(fig, "curves", "learning curves: seed mean with a ±1 std band")


def verdict(config, accuracy) -> tuple[str, np.ndarray]:
    """Where each transfer method beats scratch (seed means), with paired wins per seed.

    The methods of one seed share the labelled subset, so seed s of a method is compared with
    seed s of scratch. Returns the sentence and, per label count, whether either method won.
    """
    scratch = accuracy["scratch"]
    sentences, wins = [], []
    for method in ("features", "finetune"):
        better = accuracy[method].mean(1) > scratch.mean(1)
        paired = (accuracy[method] > scratch).sum(1)
        wins.append(better)
        won = [
            f"{n} ({k}/{config.seeds} seeds)"
            for n, b, k in zip(config.label_counts, better, paired)
            if b
        ]
        lost = [str(n) for n, b in zip(config.label_counts, better) if not b]
        text = f"{LABELS[method]} beats training from scratch at " + (
            ", ".join(won) + " labels per class" if won else "no label count"
        )
        if won and lost:
            text += f" (not at {', '.join(lost)})"
        sentences.append(text)
    return "; ".join(sentences) + ".", np.logical_or(*wins)


def pixel_baseline(config, accuracy, probes) -> str:
    """How the trained networks compare with logistic regression on the raw pixels."""
    best = np.max([accuracy[m].mean(1) for m in METHODS], axis=0)
    pixels = probes["pixels"].mean(1)
    ahead = [str(n) for n, b, p in zip(config.label_counts, best, pixels) if p >= b]
    best_stage = [
        max(("pixels", *STAGES), key=lambda k, i=i: probes[k][i].mean())
        for i in range(len(config.label_counts))
    ]
    text = (
        "Logistic regression on the raw pixels matches or beats the best network at "
        + (", ".join(ahead) if ahead else "no")
        + f" of the {len(config.label_counts)} label counts."
    )
    return (
        text
        + " The best probe input per label count: "
        + ", ".join(f"{n}: {stage}" for n, stage in zip(config.label_counts, best_stage))
        + "."
    )


def describe_finetune(config) -> str:
    new = RULES["new_layers"].parse(config.new_layers)
    frozen = [n for n in RULES["frozen"].parse(config.frozen) if n not in new]
    tuned = [n for n in LAYERS if n not in new and n not in frozen]
    parts = [
        f"keeps {', '.join(frozen) or 'no layer'} fixed",
        f"fine-tunes {', '.join(tuned) or 'no pretrained layer'} at lr "
        f"{config.target_lr * config.finetune_lr_scale:g}",
        f"trains new {', '.join([*new, 'classifier'])}",
    ]
    return "Fine-tuning reuses the pretrained LeNet-5, " + ", ".join(parts) + "."


def train_and_evaluate(config, workdir):
    splits = data.load("digits", seed=config.data_seed, flatten=False)
    source, target = task_splits(splits, config.split_at)
    num_classes = int(target.train["y"].max() + 1)
    check_counts(config, target.train["y"], num_classes)

    pretrained = pretrain(config, source, workdir / "pretrain")
    params = pretrained.state.params
    labelled = labelled_data(config, target.train, num_classes)
    accuracy, histories = {}, {}
    for method in METHODS:
        result = transfer(config, method, labelled, {"test": target.test}, params, workdir / method)
        accuracy[method] = per_count(result.final("test/accuracy"), config)
        histories[method] = result.history
    model = make_model(config, source.num_classes)
    probes = linear_probes(config, model, params, target, labelled["weight"] > 0)
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
    report.text(sentence[0].upper() + sentence[1:] + " " + pixel_baseline(config, accuracy, probes))
    report.table(
        ["input of the probe", *(f"{n} / class" for n in config.label_counts)],
        [(name, *(mean_std(v) for v in probes[name])) for name in ("pixels", *STAGES)],
        caption="Linear probes: scikit-learn logistic regression on each pretrained layer's "
        "output, same labelled subsets (how well each layer transfers)",
    )
    figures(report, config, accuracy, probes, histories, pretrained.history)
    report.write()
    return {
        "accuracy": accuracy,
        "probes": probes,
        "source_accuracy": pretrained.final("test/accuracy"),
        "transfer_wins": wins,
    }


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, RULES)
