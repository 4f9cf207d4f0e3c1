"""CNN architectures side by side: MLP, LeNet-5, VGG, ResNet, multi-stream; 1-D CNN on MNIST-1D.

A convolutional layer is convolution, activation and pooling (SPEC §5); its kernels are shared
across positions, so a CNN has far fewer weights than a dense layer on the same input and
builds in translation equivariance. The models (lexicon.nn.cnn):
    mlp          the flattened input through ReLU dense layers (no spatial prior)
    lenet5       C1 conv 5x5 -> S2 avg-pool -> C3 conv 5x5 -> S4 avg-pool -> F5 -> F6 -> output
    vgg          stages of 3x3 convs + ReLU closed by 2x2 max-pools, then dense layers
    resnet       residual blocks y = relu(F(x) + x), batch norm, global average pooling
    multistream  the image and its Sobel gradient magnitude in two conv streams, fused late
    cnn1d        the MNIST-1D baseline of Greydanus (2020): three stride-2 1-D convs, linear
on the embedded digits (8x8) and MNIST-1D (40-sample signals); mnist, fashion_mnist and cifar10
come through TFDS when a prepared copy exists. Every model is trained with Adam and
cross-entropy over vmapped seeds; the table gives parameters, test accuracy, and the time of
one jitted training step measured in the run. Pooling's invariance to small translations:
a 2x2 max-pool net and the same net downsampling by stride 2 alone are trained alike and fed
the test images shifted by one pixel; the report gives how far their features and accuracy move.

scale=paper is the published MNIST-1D protocol: Adam lr 1e-2, batch 100, no weight decay,
6000 steps on the 4,000 training signals, test accuracy on the 1,000 test signals; the
published test accuracies are CNN 94% and MLP 68% (logistic regression 32%).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

from lexicon import baselines, cli, data, train
from lexicon.bench import median_time
from lexicon.nn import cnn as nets
from lexicon.nn import conv
from lexicon.nn.layers import MLP
from lexicon.report import Figure, Report, compare, mean_std, plot_bars, plot_curves
from lexicon.rules import Choice, ConfigError, Names, Range, check_batch_size, positive, widths

IMAGE_MODELS = ("mlp", "lenet5", "vgg", "resnet", "multistream")
SIGNAL_MODELS = ("mlp", "cnn1d")
MODELS = (*IMAGE_MODELS, "cnn1d")
DATASETS = ("embedded", "digits", "mnist1d", *data.TFDS_IMAGES)
SCALES = ("default", "paper")
# The published MNIST-1D test accuracies (Greydanus 2020, "Scaling down deep learning",
# table of the mnist1d repository README): these are the reference, not our results.
PUBLISHED_MNIST1D = {"cnn1d": 0.94, "mlp": 0.68, "logistic regression": 0.32}
PAPER = {"lr": 1e-2, "batch_size": 100, "steps": 6000}


def get_config():
    config = train.defaults()
    config.seeds = 3
    config.epochs = 20
    config.batch_size = 64
    config.dataset = "embedded"  # embedded (digits, mnist1d) | digits | mnist1d | TFDS sets
    config.models = "all"  # all, or comma-separated: mlp,lenet5,vgg,resnet,multistream,cnn1d
    config.scale = "default"  # default | paper (MNIST-1D: Adam 1e-2, batch 100, 6000 steps)
    config.lr = 3e-3  # Adam learning rate
    config.hidden = (100, 100)  # hidden widths of the MLP
    config.activation = "relu"  # tanh (the 1998 LeNet-5) | relu: activation of LeNet-5
    config.timing_repeats = 20  # timed calls of the jitted training step; the median is reported
    config.conv_impl = "auto"  # auto (im2col on CPU, xla on GPU/TPU) | xla | im2col
    config.invariance = True  # max-pool vs stride-only nets under 1-pixel shifts (images)
    return config


RULES = {
    "dataset": Choice(*DATASETS),
    "models": Names(MODELS, everything="all"),
    "scale": Choice(*SCALES),
    "lr": positive(),
    "activation": Choice("tanh", "relu"),
    "timing_repeats": Range(1, 1000),
    "hidden": widths(),
    "conv_impl": Choice(*conv.CONV_IMPLS),
}


def check_config(config):
    """Cross-key rules; cli.run checks them before anything compiles."""
    datasets = datasets_of(config)
    plan = {dataset: models_for(config, dataset) for dataset in datasets}
    if not any(plan.values()):
        raise ConfigError(f"config.models={config.models!r} has no model for {config.dataset}")
    if config.scale == "default":
        for dataset in datasets:
            val_fraction = 0.0 if dataset == "mnist1d" else 0.1
            num_train = cli.train_examples(
                dataset, seed=config.data_seed, val_fraction=val_fraction
            )
            check_batch_size(config, num_train, of=f"{dataset} training examples")


# --- the models --------------------------------------------------------------------------------


class FlatMLP(nn.Module):
    """The MLP baseline: flattens images or signals and applies ReLU dense layers."""

    features: Sequence[int]

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        return MLP(tuple(self.features), activation="relu")(x.reshape(x.shape[0], -1), train)


def make_model(name: str, config, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """One model of MODELS for inputs of ``input_shape`` (one example, channels last)."""
    if name == "mlp":
        return FlatMLP((*config.hidden, num_classes))
    impl = config.conv_impl
    if name == "cnn1d":
        return nets.CNN1D(num_classes=num_classes, conv_impl=impl)
    if name == "lenet5":
        return nets.lenet5_for(min(input_shape[:2]), num_classes, config.activation, impl)
    if name == "vgg":
        return nets.VGGSmall(num_classes=num_classes, conv_impl=impl)
    if name == "resnet":
        return nets.ResNetSmall(num_classes=num_classes, use_batch_norm=True, conv_impl=impl)
    if name == "multistream":
        return nets.MultiStream(num_classes=num_classes, conv_impl=impl)
    raise ConfigError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")


def models_for(config, dataset: str) -> list[str]:
    """The requested models that fit the dataset (1-D CNN for signals, 2-D ones for images)."""
    fitting = SIGNAL_MODELS if dataset == "mnist1d" else IMAGE_MODELS
    names = RULES["models"].parse(config.models)
    if config.dataset != "embedded" and config.models != "all":
        wrong = [n for n in names if n not in fitting]
        if wrong:
            raise ConfigError(
                f"config.models has {', '.join(wrong)}, which does not fit {dataset}; "
                f"choose from {', '.join(fitting)}"
            )
    return [n for n in names if n in fitting]


# --- data and settings -------------------------------------------------------------------------


def datasets_of(config) -> list[str]:
    if config.scale == "paper":
        if config.dataset not in ("embedded", "mnist1d"):
            raise ConfigError(
                f"config.scale=paper is the published MNIST-1D setting; use dataset=mnist1d "
                f"(or embedded), not {config.dataset}"
            )
        return ["mnist1d"]
    return ["digits", "mnist1d"] if config.dataset == "embedded" else [config.dataset]


def load(config, dataset: str):
    """Seeded splits of images (N, H, W, C) or signals (N, 40, 1).

    MNIST-1D keeps the published protocol: all 4,000 training signals train, the 1,000 test
    signals test. Only the test split is evaluated, at every epoch, for every dataset.
    """
    val_fraction = 0.0 if dataset == "mnist1d" else 0.1
    return data.load(dataset, seed=config.data_seed, flatten=False, val_fraction=val_fraction)


def settings(config, num_train: int):
    """The training config of one dataset: the paper preset replaces lr, batch and epochs."""
    run = config.copy_and_resolve_references()
    if config.scale == "paper":
        run.lr, run.batch_size = PAPER["lr"], PAPER["batch_size"]
        run.epochs = math.ceil(PAPER["steps"] / (num_train // run.batch_size))
    return run


# --- measurements ------------------------------------------------------------------------------


def parameter_count(params) -> int:
    """Trainable parameters of one replica of a stacked (seeds, ...) params pytree."""
    return int(sum(math.prod(leaf.shape[1:]) for leaf in jax.tree.leaves(params)))


def step_time_ms(task, state, split: dict, config) -> float:
    """Median wall time (ms) of one jitted, vmapped training step on a resident batch.

    One call trains every seed's replica; ``state`` has the leading seed axis.
    """
    batch_size = config.batch_size or len(split["y"])  # 0 = full batch
    batch = jax.tree.map(lambda a: jnp.asarray(a[:batch_size]), split)
    seeds = np.arange(config.seed, config.seed + config.seeds)
    keys = jax.vmap(lambda s: train.stream(s, "step"))(seeds)
    step = jax.jit(jax.vmap(task.make_step(None), in_axes=(0, None, 0)))
    seconds = median_time(
        lambda: jax.block_until_ready(step(state, batch, keys)), config.timing_repeats
    )
    return 1000.0 * seconds


def logistic_reference(splits) -> float:
    """Test accuracy of scikit-learn's logistic regression on the flattened inputs."""
    return baselines.logistic_regression(splits.train, splits.test, standardize=True)


def train_model(name, config, splits, workdir) -> dict:
    input_shape = splits.train["x"].shape[1:]
    model = make_model(name, config, input_shape, splits.num_classes)
    task = train.classifier(model, optax.adam(config.lr), jnp.zeros((1, *input_shape)))
    start = time.perf_counter()
    result = train.fit(config, task, splits.train, workdir, eval_splits={"test": splits.test})
    wall = time.perf_counter() - start
    return {
        "model": name,
        "params": parameter_count(result.state.params),
        "test_accuracy": result.final("test/accuracy"),
        "curve": np.array([r["test/accuracy"] for r in result.history]).T,
        "epochs": [r["epoch"] for r in result.history],
        "steps": int(result.history[-1]["step"]),
        "step_ms": step_time_ms(task, result.state, splits.train, config),
        "wall_s": wall,
    }


# --- pooling and small translations ------------------------------------------------------------


def shift_study(config, splits, workdir) -> dict:
    """Max-pool vs stride-only nets (lexicon.nn.cnn.PoolingNet), trained alike; per seed, what
    1-pixel shifts of the test images do to them (lexicon.nn.cnn.shift_effects)."""
    x = jnp.asarray(splits.test["x"])
    y = np.asarray(splits.test["y"])
    out, impl = {}, config.conv_impl
    for downsample in ("max", "stride"):
        model = nets.PoolingNet(splits.num_classes, downsample=downsample, conv_impl=impl)
        task = train.classifier(model, optax.adam(config.lr), jnp.zeros((1, *x.shape[1:])))
        state = train.fit(config, task, splits.train, workdir / f"shift_{downsample}").state

        measure = functools.partial(nets.shift_effects, model, x=x, y=y)
        effects = jax.jit(jax.vmap(measure))({"params": state.params, **state.model_state})
        out[downsample] = {k: np.asarray(v) for k, v in effects.items()}
    return out


def shift_section(report: Report, dataset: str, shifts: dict) -> dict:
    """The table, the bars and the two paired verdicts of the shift study."""
    names = {"max": "2x2 max-pool", "stride": "stride 2, no pooling"}
    report.table(
        ["net", "feature change ||f(Tx)-f(x)||/||f(x)||", "test accuracy", "under 1-px shifts",
         "accuracy drop"],
        [(names[k], mean_std(v["feature_change"]), mean_std(v["accuracy"]),
          mean_std(v["shifted_accuracy"]), mean_std(v["accuracy_drop"]))
         for k, v in shifts.items()],
        caption=f"Pooling and 1-pixel translations ({dataset}, mean ± std over seeds)",
    )  # fmt: skip
    verdicts = {
        key: compare(shifts["max"][key], shifts["stride"][key], paired=False,
                     higher_is_better=False, names=("max-pool", "stride-only"))
        for key in ("feature_change", "accuracy_drop")
    }  # fmt: skip
    drop, change = verdicts["accuracy_drop"].sentence, verdicts["feature_change"].sentence
    report.text(f"Features: {change}. Accuracy drop under the shifts: {drop}.")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, key, label in zip(axes, ("feature_change", "accuracy_drop"),
                              ("relative feature change", "test accuracy drop")):  # fmt: skip
        plot_bars({names[k]: v[key] for k, v in shifts.items()}, ylabel=label, ax=ax)
    fig.tight_layout()
    report.figure(fig, "shift_invariance", "1-pixel shifts: max-pool vs stride-only (± 1 std)")
    return {k: {key: v[key] for key in verdicts} for k, v in shifts.items()}


# --- the run -----------------------------------------------------------------------------------


def published(dataset: str, model: str) -> str:
    if dataset == "mnist1d" and model in PUBLISHED_MNIST1D:
        return f"{PUBLISHED_MNIST1D[model]:.2f}"
    return ""


def figures(report: Report, runs: dict[str, list[dict]]) -> None:
    fig, axes = plt.subplots(1, len(runs), figsize=(5 * len(runs), 3.6), squeeze=False)
    for ax, (dataset, rows) in zip(axes[0], runs.items()):
        curves = {row["model"]: (row["epochs"], row["curve"]) for row in rows}
        plot_curves(curves, ylabel="test accuracy", title=dataset, ax=ax)
        ax.legend()
    fig.tight_layout()
    report.figure(fig, "curves", "test accuracy per epoch: seed mean with a ±1 std band")

    fig, axes = plt.subplots(1, len(runs), figsize=(5 * len(runs), 3.6), squeeze=False)
    for ax, (dataset, rows) in zip(axes[0], runs.items()):
        for row in rows:
            acc = row["test_accuracy"]
            ax.errorbar(row["params"], acc.mean(), yerr=acc.std(), fmt="o", capsize=3)
            ax.annotate(
                row["model"],
                (row["params"], acc.mean()),
                fontsize=8,
                textcoords="offset points",
                xytext=(4, 4),
            )
        ax.set_xscale("log")
        ax.set_title(dataset)
        ax.set_xlabel("trainable parameters")
        ax.set_ylabel("final test accuracy")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    report.figure(fig, "params_vs_accuracy", "final test accuracy (mean ± std) vs model size")


def train_and_evaluate(config, workdir):
    datasets = datasets_of(config)
    plan = {dataset: models_for(config, dataset) for dataset in datasets}
    if not any(plan.values()):
        raise ConfigError(f"config.models={config.models!r} has no model for {config.dataset}")
    runs, references, settings_of, shifts = {}, {}, {}, {}
    for dataset, names in plan.items():
        if not names:
            continue
        splits = load(config, dataset)
        run_config = settings(config, len(splits.train["y"]))
        settings_of[dataset] = run_config
        references[dataset] = logistic_reference(splits) if dataset in data.EMBEDDED else None
        runs[dataset] = [
            train_model(name, run_config, splits, workdir / dataset / name) for name in names
        ]
        if config.invariance and dataset != "mnist1d":
            shifts[dataset] = shift_study(run_config, splits, workdir / dataset)

    report = Report(workdir, "CNN architectures: MLP, LeNet-5, VGG, ResNet, multi-stream, 1-D CNN")
    report.text(
        "Each model trains with Adam on softmax cross-entropy, "
        f"{config.seeds} seeds vmapped in one program. "
        + " ".join(
            f"{d}: lr {c.lr:g}, batch {c.batch_size}, {c.epochs} epochs "
            f"({runs[d][0]['steps']} steps)."
            for d, c in settings_of.items()
        )
        + " Step time: median wall time of one jitted training step of all seeds on a "
        "resident batch, measured in this run on this machine (shared, so timings are noisy); "
        "train time includes compilation and the per-epoch test evaluation."
    )
    rows = []
    for dataset, results in runs.items():
        rows += [
            (dataset, r["model"], f"{r['params']:,}", mean_std(r["test_accuracy"]),
             published(dataset, r["model"]), f"{r['step_ms']:.2f}", f"{r['wall_s']:.1f}")
            for r in results
        ]  # fmt: skip
        if references[dataset] is not None:
            rows.append((dataset, "logistic regression (scikit-learn, this run)", "",
                         f"{references[dataset]:.4f}", published(dataset, "logistic regression"),
                         "", ""))  # fmt: skip
    report.table(
        ["dataset", "model", "params", f"test accuracy (mean ± std, {config.seeds} seeds)",
         "published (Greydanus 2020)", "step time, ms (this machine)", "train time, s"],
        rows,
        caption="Models side by side",
    )  # fmt: skip
    if "mnist1d" in runs:
        cnn = [r for r in runs["mnist1d"] if r["model"] == "cnn1d"]
        if cnn:
            gap = 100 * (cnn[0]["test_accuracy"].mean() - PUBLISHED_MNIST1D["cnn1d"])
            within = "within" if abs(gap) <= 3 else "outside"
            report.text(
                f"MNIST-1D CNN: {mean_std(cnn[0]['test_accuracy'])} against the published "
                f"{PUBLISHED_MNIST1D['cnn1d']:.2f}, a gap of {gap:+.1f} points ({within} 3 "
                f"points) at scale={config.scale}."
            )
    figures(report, runs)
    invariance = {d: shift_section(report, d, v) for d, v in shifts.items()}
    report.write()
    out = {"test_accuracy": headline_figures(runs, references)}
    return {**out, "shift_invariance": invariance} if invariance else out


def headline_figures(runs, references) -> dict:
    """Test accuracy per dataset and model (and scikit-learn's logistic regression), held
    against Greydanus (2020) on MNIST-1D within the 3 points the report allows."""
    out = {}
    for dataset, results in runs.items():
        rows = {r["model"]: r["test_accuracy"] for r in results}
        if references[dataset] is not None:
            rows["logistic_regression"] = references[dataset]
        out[dataset] = {}
        for model, values in rows.items():
            paper = PUBLISHED_MNIST1D.get(model.replace("_", " ")) if dataset == "mnist1d" else None
            out[dataset][model] = (
                values
                if paper is None
                else Figure(values, reference=paper, source="Greydanus 2020", tolerance=0.03)
            )
    return out


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, RULES)
