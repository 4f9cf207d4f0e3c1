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

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lexicon import baselines, data, losses, train
from lexicon.nn.cnn import LeNet5, lenet5_for
from lexicon.report import mean_std, panels, plot_curves
from lexicon.rules import Choice, ConfigError, Items, Names, Range, check_batch_size, positive

STAGES = ("c1", "s2", "c3", "s4", "f5", "f6")  # the outputs LeNet-5 sows, input to output
LAYERS = ("conv1", "conv2", "dense1", "dense2")  # its parameter groups below the classifier
LAYER_NAMES = Names(LAYERS, nothing="none", allow_empty=True)  # config.frozen, new_layers
RULES = {  # the rules of the setting's keys (pretraining and label counts)
    "lr": positive(),
    "split_at": Range(2, 8),
    "activation": Choice("tanh", "relu"),
    "label_counts": Items(Range(1, 10_000), kind=int),
}
TARGET_RULES = {  # and of the target task's keys
    **RULES,
    "target_lr": positive(),
    "target_steps": Range(1, 10_000_000),
    "frozen": LAYER_NAMES,
    "new_layers": LAYER_NAMES,
    "finetune_lr_scale": positive(),
    "feature_layer": Choice(*STAGES),
}


def defaults(target: bool = False):
    """The setting's config: ``train.defaults()`` plus the pretraining and the label counts;
    with ``target``, also the keys of the target task's methods (:func:`fit_target`)."""
    config = train.defaults()
    config.seeds = 5  # pretrained networks, and labelled subsets per label count (paired)
    config.epochs = 20  # pretraining epochs on the source task
    config.batch_size = 32  # pretraining minibatch
    config.lr = 3e-3  # Adam learning rate of the pretraining
    config.split_at = 5  # source task: digits below this; target: the rest, relabelled from 0
    config.label_counts = (5, 10, 25, 50, 100)  # labelled target examples per class
    config.activation = "relu"  # tanh | relu: activation of the LeNet-5
    if target:
        config.target_steps = 150  # full-batch Adam steps on the labelled target examples
        config.target_lr = 3e-3  # Adam learning rate on the target task
        config.frozen = "conv1"  # finetune: pretrained layers kept fixed, or none
        config.new_layers = "dense1,dense2"  # finetune: re-initialized layers (+ output), or none
        config.finetune_lr_scale = 1.0  # finetune: lr of the pretrained layers / target_lr
        config.feature_layer = "c3"  # c1 | s2 | c3 | s4 | f5 | f6: under the features head
        config.eval_every = 25  # target steps between evaluations of the target test split
    return config


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


def pretrained_setting(config, workdir):
    """(source, target, pretrained, labelled): the digits split into the two tasks (label
    counts checked), the LeNet-5s pretrained on the source task (``workdir/pretrain``) and
    every replica's labelled target data (:func:`labelled_data`)."""
    splits = data.load("digits", seed=config.data_seed, flatten=False)
    source, target = task_splits(splits, config.split_at)
    num_classes = int(target.train["y"].max() + 1)
    check_counts(config, target.train["y"], num_classes)
    pretrained = pretrain(config, source, workdir / "pretrain")
    return source, target, pretrained, labelled_data(config, target.train, num_classes)


def probe_layers(config, source, target, pretrained, labelled) -> dict[str, np.ndarray]:
    """:func:`linear_probes` of the pretrained LeNet-5s on every replica's labelled subset."""
    model = make_model(config, source.num_classes)
    return linear_probes(config, model, pretrained.state.params, target, labelled["weight"] > 0)


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


def stage_outputs(model: LeNet5, params, x: jax.Array) -> dict[str, np.ndarray]:
    """The flattened outputs (N, D) of every LeNet-5 stage, from one forward pass."""
    _, sown = model.apply({"params": params}, x, method="features", mutable=["intermediates"])
    return {k: np.asarray(v[0]).reshape(len(x), -1) for k, v in sown["intermediates"].items()}


def linear_probes(config, model, pretrained, target, masks) -> dict[str, np.ndarray]:
    """Test accuracy of logistic regression (scikit-learn) on raw pixels and on every stage.

    Each replica's classifier is fit on that replica's labelled subset, reading the stage
    outputs of the pretrained network of its seed. Returns name -> (label counts, seeds).
    """

    per_seed = []
    for seed in range(config.seeds):
        params = jax.tree.map(lambda p, s=seed: p[s], pretrained)
        splits = (target.train, target.test)
        outputs = [stage_outputs(model, params, jnp.asarray(s["x"])) for s in splits]
        stages = {"pixels": (target.train["x"], target.test["x"])}
        stages.update({stage: tuple(o[stage] for o in outputs) for stage in STAGES})
        per_seed.append(stages)
    scores = {name: [] for name in ("pixels", *STAGES)}
    for replica, mask in enumerate(masks):
        for name, (x, x_test) in per_seed[replica % config.seeds].items():
            labelled = {"x": x[mask], "y": target.train["y"][mask]}
            test = {"x": x_test, "y": target.test["y"]}
            scores[name].append(baselines.logistic_regression(labelled, test))
    return {name: per_count(v, config) for name, v in scores.items()}


def per_count(values, config) -> np.ndarray:
    """Per-replica values -> (label counts, seeds)."""
    return np.asarray(values).reshape(len(config.label_counts), config.seeds)


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


# --- the target task: from scratch, frozen features, fine-tuning ---------------------------


def optimizer(method: str, config) -> optax.GradientTransformation:
    """Adam per group of top-level parameters; optax.set_to_zero (no update) on frozen ones.

    Reads config.frozen and config.new_layers (names of LAYERS, or none), config.target_lr and
    config.finetune_lr_scale.

    scratch trains everything at target_lr. features trains only the new head. finetune
    trains the new output layer at target_lr and the pretrained layers that are not frozen at
    target_lr * finetune_lr_scale, so they move away from their pretrained values slowly.
    """
    frozen = set(LAYER_NAMES.parse(config.frozen))
    tuned = LAYER_NAMES.parse(config.new_layers) if method == "finetune" else ()
    new = {"head", "classifier", *tuned}

    def group(layer: str) -> str:
        if method == "scratch" or layer in new:
            return "new"
        return "frozen" if method == "features" or layer in frozen else "pretrained"

    def labels(params):
        return {k: jax.tree.map(lambda _, g=g: g, v) for k, v in params.items() for g in [group(k)]}

    rates = {"new": config.target_lr, "pretrained": config.target_lr * config.finetune_lr_scale}
    transforms = {name: optax.adam(lr) for name, lr in rates.items()}
    return optax.multi_transform({**transforms, "frozen": optax.set_to_zero()}, labels)


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
        per_example = losses.softmax_cross_entropy_with_integer_labels(
            logits, batch["y"], reduction="none"
        )
        hits = (jnp.argmax(logits, -1) == batch["y"]).astype(jnp.float32)
        total = jnp.sum(weight)
        loss = jnp.sum(weight * per_example) / total
        return loss, ({"accuracy": jnp.sum(weight * hits) / total}, model_state)

    def evaluate(state, split):
        logits = logits_of(state.params, split["x"])
        return {
            "loss": losses.softmax_cross_entropy_with_integer_labels(logits, split["y"]),
            "accuracy": train.accuracy(logits, split["y"]),
        }

    return train.Task(init=init, make_step=train.gradient_step(objective), evaluate=evaluate)


def reuse(config, method, state, pretrained):
    """The starting state of features and finetune: the replicas' fresh ``state`` with the
    pretrained layers (of seed r % seeds for replica r) in place of all but the new ones: the
    output layer and, to fine-tune, config.new_layers."""
    tuned = LAYER_NAMES.parse(config.new_layers) if method == "finetune" else ()
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


def fit_target(config, method, labelled, evals, pretrained, workdir):
    """Trains one method on every replica's labelled subset (full batch, config.target_steps
    steps), from a fresh network (scratch) or the pretrained one of each seed."""
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
