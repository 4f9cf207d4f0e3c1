"""Activations: a gallery with jax.grad derivatives, vanishing gradients in deep nets, dead ReLUs.

SPEC §3 (document 001): a unit computes a_i = g(in_i). Sigmoid and tanh saturate, so their
derivatives are small over most of the line (sigmoid' <= 1/4); backpropagation multiplies one
such factor per layer, and in a deep sigmoid network the gradient reaching the first layers
vanishes. ReLU has derivative 1 where it is active, but a unit whose input is negative on every
example gets no gradient at all and stops learning (a dead unit); absolute-value rectification
g(z) = |z|, leaky ReLU, PReLU and maxout are the document's remedies.

The experiment:
1. plots each activation and its derivative as ``jax.grad`` gives it, and checks the
   derivative against its closed form;
2. trains the same deep MLP (``depth`` hidden layers of ``width`` units, plain SGD,
   cross-entropy) on digits (``config.dataset``) with sigmoid, tanh, ReLU, |z|, leaky ReLU,
   PReLU and maxout units, ``config.seeds`` seeds each, and measures the gradient norm of every
   layer's weights at initialization, during training and at the end, and the final accuracy;
3. counts dead hidden units: units whose incoming weights get exactly zero gradient from every
   validation example (for ReLU these are the units that are never active).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from lexicon import cli, data, optim, train
from lexicon.gradient_flow import gradient_norm_task, unit_health
from lexicon.nn import activations
from lexicon.nn import init as initializers
from lexicon.nn.layers import MLP, Maxout, PReLU
from lexicon.report import Report, compare, mean_std, panels, plot_curves, scientific
from lexicon.report import figure as report_figure
from lexicon.rules import Choice, Range, check_batch_size, positive

NETWORKS = ("sigmoid", "tanh", "relu", "abs", "leaky_relu", "prelu", "maxout")
REMEDIES = ("abs", "leaky_relu", "prelu", "maxout")  # the document's remedies for dead units
SLOPED = ("sigmoid", "tanh", "relu", "abs")  # fixed units whose mean |g'(in)| is reported
RECTIFIERS = ("relu", "leaky_relu", "prelu")  # units that are "active" where in_i > 0
PRELU_SLOPE = PReLU().negative_slope_init  # the slope PReLU starts from (and the gallery shows)
# The gallery's maxout unit of one input: the max of three fixed lines a x + b.
MAXOUT_SLOPES, MAXOUT_OFFSETS = (-1.0, 0.5, 2.0), (-1.0, 0.0, -2.0)
SWEEPABLE = ("lr",)  # --config.sweep='lr=0.03,0.1': every network at each rate, one program each


def get_config():
    config = train.defaults()
    config.seeds = 3
    config.epochs = 15
    config.batch_size = 32
    config.depth = 10  # hidden layers of the deep network
    config.width = 32  # units per hidden layer
    config.lr = 0.1  # learning rate of plain SGD, the same for every activation
    config.init = "glorot_uniform"  # kernel initializer of every layer (lexicon.nn.init names)
    config.maxout_pieces = 2  # affine pieces per maxout unit
    config.dataset = "digits"  # digits | mnist1d (any dataset of lexicon.data)
    return config


RULES = {
    "depth": Range(1, 200),
    "width": Range(1, 4096),
    "lr": positive(),
    "init": Choice(*initializers.NAMES),
    "maxout_pieces": Range(1, 64),
    "dataset": Choice(*data.DATASETS),
}


def check_config(config):
    """Cross-key rules; cli.run checks them before anything compiles."""
    check_batch_size(config, cli.train_examples(config.dataset, seed=config.data_seed))


# --- 1. the gallery ---------------------------------------------------------------------------


def gallery_functions():
    """name -> (g, closed-form g') for every fixed activation, PReLU and a 3-piece maxout."""
    prelu = PReLU(per_feature=False)
    prelu_params = prelu.init(jax.random.key(0), jnp.zeros(1))
    maxout = Maxout(features=1, k=len(MAXOUT_SLOPES))
    kernel, bias = jnp.array([MAXOUT_SLOPES]), jnp.array(MAXOUT_OFFSETS)
    maxout_params = {"params": {"kernel": kernel, "bias": bias}}
    slopes, offsets = np.array(MAXOUT_SLOPES), np.array(MAXOUT_OFFSETS)
    return {
        **{n: (activations.get(n), *activations.DERIVATIVES[n]) for n in activations.NAMES},
        "prelu": (
            lambda x: prelu.apply(prelu_params, x[None])[0],
            lambda x: np.where(x >= 0, 1.0, PRELU_SLOPE),
            f"1 if x >= 0 else {PRELU_SLOPE} (initial slope)",
        ),
        "maxout (3 pieces)": (
            lambda x: maxout.apply(maxout_params, x[None, None])[0, 0],
            lambda x: slopes[np.argmax(slopes * x[:, None] + offsets, axis=1)],
            f"slope of the largest piece; pieces {MAXOUT_SLOPES} x + {MAXOUT_OFFSETS}",
        ),
    }


def plot_gallery(values, x):
    fig, axes = panels(len(values), columns=5, size=(3.2, 3.0), sharex=True)
    for ax, (name, (g, derivative, *_)) in zip(axes, values.items()):
        ax.plot(x, g, label="g(x)")
        ax.plot(x, derivative, "--", label="g'(x), jax.grad")
        ax.set_title(name)
        ax.axhline(0, color="grey", lw=0.5)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return fig


# --- 2. deep networks -------------------------------------------------------------------------


def run_network(config, splits, activation, workdir):
    """Trains one network from the states fit would start from, and measures its units at
    init and at the end (``run["dead_init"]``, ``run["gradient_norms_final"]``, ...)."""
    features = (*[config.width] * config.depth, splits.num_classes)
    pieces = config.maxout_pieces if activation == "maxout" else 1
    model = MLP(features, activation, kernel_init=config.init, maxout_pieces=config.maxout_pieces)

    def task(config):  # a builder: in a sweep, each grid point's rate enters traced
        return gradient_norm_task(model, optim.sgd(config.lr), splits.train["x"][:1])

    # The init stream per seed that fit uses, run eagerly on purpose: the eager primitives
    # compile once for every network of equal shapes, a jitted init costs seconds per network.
    init = jax.vmap(lambda seed: task(config).init(train.stream(seed, "init")))
    start = init(train.replica_seeds(config))
    evals = {"val": splits.val, "test": splits.test}
    result = train.fit(
        config, task, splits.train, workdir / activation, eval_splits=evals, initial_state=start
    )
    run = {"result": result}
    sloped = activation if activation in SLOPED else None  # mean |g'(in)| at init only
    for when, state, slope in (("init", start, sloped), ("final", result.state, None)):
        health = unit_health(model, state.params, splits.val, pieces, slope)
        run.update({f"{key}_{when}": value for key, value in health.items()})
    return run


# --- report -----------------------------------------------------------------------------------


def plot_gradient_norms(runs, config):
    fig, axes = panels(3, size=(5.3, 4.3))
    layers = np.arange(1, config.depth + 2)
    labels = {"xlabel": "layer (1 = input side)", "ylabel": "||dL/dW_l|| on validation"}
    titles = {"init": "at init", "final": f"after {config.epochs} epochs"}
    for ax, (when, title) in zip(axes, titles.items()):
        norms = {name: (layers, run[f"gradient_norms_{when}"]) for name, run in runs.items()}
        plot_curves(norms, title=title, ax=ax, log_y=True, **labels)
    first = {name: run["result"].curve("train/grad_norm_01") for name, run in runs.items()}
    ylabel = "||dL/dW_1||, mean over the epoch"
    return plot_curves(first, ylabel=ylabel, title="first layer", ax=axes[2], log_y=True)


def plot_accuracy_and_dead_units(runs):
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    accuracy = {name: run["result"].curve("val/accuracy") for name, run in runs.items()}
    plot_curves(accuracy, ylabel="validation accuracy", ax=axes[0])
    positions = np.arange(len(runs))
    for offset, key, label in ((-0.2, "dead_init", "at init"), (0.2, "dead_final", "at the end")):
        values = np.array([run[key] for run in runs.values()])
        axes[1].bar(
            positions + offset, values.mean(1), 0.4, yerr=values.std(1), capsize=3, label=label
        )
    axes[1].set_xticks(positions, list(runs), rotation=20)
    axes[1].set(ylabel="fraction of hidden units", title="dead units (no gradient on validation)")
    axes[1].legend()
    return fig


def vanishing_verdict(runs, depth: int) -> str:
    """What the measured gradient ratios at initialization say about vanishing gradients: is
    sigmoid's ratio (log10, paired seeds) lower than tanh's and ReLU's?"""
    logs = {n: np.log10(runs[n]["gradient_ratio_init"]) for n in ("sigmoid", "tanh", "relu")}
    means = {n: 10 ** float(np.mean(v)) for n, v in logs.items()}
    sentences = [
        compare(
            logs["sigmoid"], logs[n], paired=True, higher_is_better=False, names=("sigmoid", n)
        ).sentence
        for n in ("tanh", "relu")
    ]
    return (
        f"At initialization the first hidden layer gets {means['sigmoid']:.1e} times the "
        f"gradient norm of hidden layer {depth} with sigmoid units (geometric mean over seeds), "
        f"against {means['tanh']:.1e} with tanh and {means['relu']:.1e} with ReLU. log10 of "
        f"that ratio: {sentences[0]}; {sentences[1]}."
    )


def dead_unit_verdict(runs) -> str:
    """Whether ReLU ends with more dead units than the remedy that keeps the most."""
    worst = max(REMEDIES, key=lambda n: float(np.mean(runs[n]["dead_final"])))
    relu = runs["relu"]["dead_final"]
    verdict = compare(
        runs[worst]["dead_final"], relu, paired=True, higher_is_better=False, names=(worst, "relu")
    )
    relu_init = float(np.mean(runs["relu"]["dead_init"]))
    revived = (
        f" ReLU started with {relu_init:.1%} dead units: a unit dead on the validation set can "
        "come back when the layers below it change."
        if relu_init > float(np.mean(relu))
        else ""
    )
    return (
        f"After training, {float(np.mean(relu)):.1%} of the ReLU network's hidden units are "
        f"dead, against at most {float(np.mean(runs[worst]['dead_final'])):.1%} ({worst}) for "
        f"|z|, leaky ReLU, PReLU and maxout. Dead fraction: {verdict.sentence}." + revived
    )


def abs_verdict(runs) -> str:
    """Absolute-value rectification against ReLU: the size of g' at init, dead units, accuracy."""
    slopes = {n: float(np.mean(runs[n]["mean_slope_init"])) for n in ("abs", "relu")}
    dead = {n: float(np.mean(runs[n]["dead_final"])) for n in ("abs", "relu")}
    accuracy = [runs[n]["result"].final("test/accuracy") for n in ("abs", "relu")]
    verdict = compare(*accuracy, paired=True, names=("|z|", "relu"))
    return (
        f"Absolute-value rectification g(z) = |z| has |g'(z)| = 1 on both sides of 0: the mean "
        f"|g'(in)| over hidden units at init is {slopes['abs']:.3f} (ReLU {slopes['relu']:.3f}), "
        f"and {dead['abs']:.1%} of its units end dead (ReLU {dead['relu']:.1%}). Test accuracy: "
        f"{verdict.sentence}."
    )


def train_and_evaluate(config, workdir):
    x = np.linspace(-4, 4, 801)
    values = activations.derivative_table(gallery_functions(), x)
    splits = data.load(config.dataset, seed=config.data_seed)
    runs = {name: run_network(config, splits, name, workdir) for name in NETWORKS}
    sweep = runs["relu"]["result"].sweep  # in a sweep, tables and verdicts pool its points
    seeds = f"{config.seeds} seeds" + ("" if sweep is None else f" x the grid {config.sweep}")

    report = Report(workdir, "Activations: derivatives, vanishing gradients and dead units")
    report.figure(
        plot_gallery(values, x), "gallery", "each activation g and its derivative from jax.grad"
    )
    errors = {
        name: float(np.max(np.abs(auto - closed))) for name, (_, auto, closed, _) in values.items()
    }
    rows = [(name, f"{errors[name]:.1e}", formula) for name, (*_, formula) in values.items()]
    headers = ["activation", "largest abs(jax.grad - closed form) on [-4, 4]", "closed form"]
    report.table(headers, rows, caption="Derivatives: autodiff against the closed forms")
    report.text(
        f"Deep network: {config.depth} hidden layers of {config.width} units "
        f"({config.init} init, zero biases) and a linear output layer, trained on "
        f"`{config.dataset}` with cross-entropy and plain SGD (learning rate {config.lr}, "
        f"batch {config.batch_size}) for {config.epochs} epochs, {seeds} "
        "(mean ± std). Gradient norms are those of the full validation loss. Chance accuracy "
        f"is {1 / splits.num_classes:.2f}."
    )
    rows = [
        (
            name,
            mean_std(run["result"].final("val/accuracy"), 3),
            mean_std(run["result"].final("test/accuracy"), 3),
            scientific(run["gradient_ratio_init"]),
            scientific(run["gradient_ratio_final"]),
            mean_std(run["mean_slope_init"], 3) if "mean_slope_init" in run else "—",
        )
        for name, run in runs.items()
    ]
    report.table(
        [
            "activation",
            "val accuracy",
            "test accuracy",
            f"‖dL/dW_1‖ / ‖dL/dW_{config.depth}‖ at init",
            "same after training",
            "mean |g'(in)| over hidden units at init (max: sigmoid 0.25, tanh 1, relu 1; abs 1)",
        ],
        rows,
        caption="Vanishing gradients: first hidden layer against the last hidden layer",
    )
    report.figure(
        plot_gradient_norms(runs, config),
        "gradient_norms",
        "gradient norm of each layer's weights (log scale; seed mean ± std)",
    )
    report.text(vanishing_verdict(runs, config.depth))
    report.table(
        [
            "activation",
            "dead units at init",
            "dead units at the end",
            "never active at the end (in_i <= 0 on every validation example)",
        ],
        [
            (
                name,
                mean_std(run["dead_init"], 3),
                mean_std(run["dead_final"], 3),
                mean_std(run["never_active_final"], 3) if name in RECTIFIERS else "—",
            )
            for name, run in runs.items()
        ],
        caption="Dead hidden units: no validation example sends gradient to their weights",
    )
    report.figure(
        plot_accuracy_and_dead_units(runs),
        "accuracy_dead_units",
        "left: validation accuracy per epoch; right: fraction of dead hidden units",
    )
    report.text(dead_unit_verdict(runs))
    report.text(abs_verdict(runs))
    report.write()
    return {
        "max_derivative_error": max(errors.values()),
        **{
            f"test_accuracy/{n}": report_figure(r["result"], "test/accuracy")
            for n, r in runs.items()
        },
        **{f"gradient_ratio_init/{n}": r["gradient_ratio_init"] for n, r in runs.items()},
        **{f"dead_final/{n}": r["dead_final"] for n, r in runs.items()},
        **{f"mean_slope_init/{n}": r["mean_slope_init"] for n, r in runs.items() if n in SLOPED},
    }


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, RULES)
