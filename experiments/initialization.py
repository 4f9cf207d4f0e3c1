"""Weight initialization in deep nets: zeros vs small normal vs Glorot vs He, tanh and ReLU.

A deep fully connected net h_l = a_{l-1} W_l + b_l, a_l = g(h_l) is started from four
initializations of its kernels (biases start at 0):
    zeros           W_ij = 0
    small normal    W_ij ~ N(0, 0.01^2), whatever the layer size
    Glorot uniform  W_ij ~ U(-sqrt(6 / (m + n)), sqrt(6 / (m + n)))   (document 001, SPEC §2)
    He normal       W_ij ~ N(0, 2 / m)
with m inputs and n outputs per unit. At initialization each pre-activation is a sum of m
products, so Var(h_l) = m Var(W_l) E[a_{l-1}^2]. In the linear regime of tanh this keeps the
variance when m Var(W) = 1 (Glorot with m = n); ReLU halves E[a^2] relative to Var(h), so it
needs m Var(W) = 2 (He). The large-width (mean-field) form of the same recursion,
q_l = m Var(W_l) E_{z ~ N(0, q_{l-1})}[g(z)^2], is the reference drawn next to the measured
variances. With zeros every unit of a layer computes the same value and receives the same
(here: zero) gradient, so the units never differ and the net stays at chance level.
"""

from __future__ import annotations

import numpy as np

from lexicon import baselines, cli, data, optim, train
from lexicon.nn import init as initializers
from lexicon.nn.layers import MLP
from lexicon.report import Figure, Report, mean_std, panels, plot_curves
from lexicon.report import figure as report_figure
from lexicon.rules import Choice, Range, check_batch_size, positive

INITS = ("zeros", "small_normal", "glorot_uniform", "he_normal")
ACTIVATIONS = ("tanh", "relu")
LABELS = {
    "zeros": "zeros",
    "small_normal": "small normal",
    "glorot_uniform": "Glorot uniform",
    "he_normal": "He normal",
}
SWEEPABLE = ("lr",)  # --config.sweep='lr=0.01,0.1': every net's rates x seeds as one program


def get_config():
    config = train.defaults()
    config.seeds = 3
    config.epochs = 20
    config.batch_size = 32
    config.depth = 10  # hidden layers of the deep net
    config.width = 64  # units per hidden layer
    config.activation = "both"  # tanh | relu | both
    config.init = "all"  # all | zeros | small_normal | glorot_uniform | he_normal
    config.small_stddev = 0.01  # standard deviation of the small-normal initialization
    config.lr = 0.05  # eps of plain SGD (Alg. 8.1)
    config.dataset = "digits"  # digits | mnist1d (standardized with training statistics)
    return config


RULES = {
    "depth": Range(1, 100),
    "width": Range(1, 16384),
    "activation": Choice("both", *ACTIVATIONS),
    "init": Choice("all", *INITS),
    "small_stddev": positive(),
    "lr": positive(),
    "dataset": Choice(*data.EMBEDDED),
}


def check_config(config):
    """Cross-key rules; cli.run checks them before anything compiles."""
    check_batch_size(config, cli.train_examples(config.dataset, seed=config.data_seed))


def make_task(config, splits, activation: str, init_name: str):
    """(model, Task): the deep net started from ``init_name``, trained by SGD at config.lr (a
    traced value in a sweep); evaluation adds the largest gap between two units of a layer."""
    kernel_init = initializers.get(init_name, small_stddev=config.small_stddev)
    features = [config.width] * config.depth + [splits.num_classes]
    model = MLP(features, activation, kernel_init=kernel_init)
    task = train.classifier(model, optim.sgd(config.lr), splits.train["x"][:1])

    def evaluate(state, split):
        return {
            **task.evaluate(state, split),
            "unit_spread": initializers.unit_spread(model, state.params, split["x"]),
        }

    return model, train.Task(init=task.init, make_step=task.make_step, evaluate=evaluate)


def run_one(config, workdir, splits, activation, init_name):
    """Measures one (activation, init) at initialization, trains it, measures it again."""
    model, task = make_task(config, splits, activation, init_name)
    # train.init_states gives the very nets train.fit starts from (every grid point of a sweep).
    act_var, grad_var = initializers.variances_at_init(
        model, train.init_states(config, task).params, splits.train["x"], splits.train["y"]
    )
    result = train.fit(
        config,
        lambda run: make_task(run, splits, activation, init_name)[1],
        splits.train,
        workdir / f"{activation}-{init_name}",
        eval_splits={"test": splits.test},
    )
    widths = [splits.train["x"].shape[1]] + [config.width] * config.depth
    kernel_vars = initializers.kernel_variances(init_name, widths, config.small_stddev)
    predicted = initializers.mean_field_variances(
        splits.train["x"], kernel_vars, config.width, activation
    )
    first, last = act_var[:, 0], act_var[:, -1]
    return {
        "activation_variance": act_var,  # (seeds, hidden layers)
        # Var(a_L) / Var(a_1) per seed (0 where the first layer is already exactly 0)
        "variance_ratio": np.where(first > 0, last / np.where(first > 0, first, 1.0), 0.0),
        "gradient_variance": grad_var,  # (seeds, hidden layers + output layer)
        "predicted_variance": predicted,
        "predicted_ratio": predicted[-1] / predicted[0] if predicted[0] > 0 else 0.0,
        "linear_gain": initializers.linear_gain(
            init_name, activation, config.width, config.small_stddev
        ),
        "test_accuracy": result.final("test/accuracy"),  # (grid points x seeds) in a sweep
        "train_accuracy": result.final("train/accuracy"),
        "unit_spread": result.final("test/unit_spread"),
        "result": result,
    }


def plot_variances(runs, activations):
    """Top row: activation variance per hidden layer (solid, measured; dashed, mean field).
    Bottom row: variance of the kernel gradients per layer. Log scale: zeros, exactly 0 at
    every layer, cannot be drawn."""
    fig, axes = panels(2 * len(activations), columns=len(activations), size=(5.5, 3.75))
    rows = (
        ("activation_variance", "hidden layer", "activation variance at init (dashed: mean field)"),
        ("gradient_variance", "layer (last = output layer)", "variance of dJ/dW at init"),
    )
    for column, activation in enumerate(activations):
        drawn = {i: r for (a, i), r in runs.items() if a == activation and i != "zeros"}
        for ax, (key, xlabel, title) in zip(axes[column :: len(activations)], rows):
            curves = {
                LABELS[i]: (np.arange(1, r[key].shape[1] + 1), r[key]) for i, r in drawn.items()
            }
            plot_curves(curves, xlabel=xlabel, title=f"{activation}: {title}", log_y=True, ax=ax)
            if not drawn:
                ax.text(
                    0.5, 0.5, "zeros: exactly 0 everywhere", transform=ax.transAxes, ha="center"
                )
        top = axes[column]
        for line, run in zip(top.lines, drawn.values()):
            top.plot(
                line.get_xdata(), run["predicted_variance"], "--", color=line.get_color(), lw=1
            )
    return fig


def findings(runs, chance: float) -> str:
    """What the measurements say, sentence by sentence, for the inits that were run."""
    lines = []
    for (activation, init_name), run in runs.items():
        ratio = run["variance_ratio"].mean()
        if init_name == "zeros":
            lines.append(
                f"- {activation}, zeros: largest gap between two units of a layer after training "
                f"{run['unit_spread'].max():.3g} (identical units), test accuracy "
                f"{run['test_accuracy'].mean():.4f}; the best constant prediction scores "
                f"{chance:.4f}."
            )
        else:
            lines.append(
                f"- {activation}, {LABELS[init_name]}: Var(a_L) / Var(a_1) = {ratio:.3g} "
                f"(mean field: {run['predicted_ratio']:.3g}; linear theory: "
                f"{run['linear_gain']:.3g} per layer), test accuracy "
                f"{run['test_accuracy'].mean():.4f}."
            )
    return "\n".join(lines)


def train_and_evaluate(config, workdir):
    splits = data.standardize(data.load(config.dataset, seed=config.data_seed))
    activations = ACTIVATIONS if config.activation == "both" else (config.activation,)
    inits = INITS if config.init == "all" else (config.init,)
    runs = {
        (activation, init_name): run_one(config, workdir, splits, activation, init_name)
        for activation in activations
        for init_name in inits
    }
    swept = next(iter(runs.values()))["result"].sweep is not None
    over = "seeds and grid points; per point: the sweep tables" if swept else "seeds"
    chance = baselines.majority_class_accuracy(splits.test["y"])

    report = Report(workdir, "Initialization of deep nets: zeros, small normal, Glorot, He")
    report.text(
        f"A {config.depth}-hidden-layer net of width {config.width} on standardized "
        f"`{config.dataset}`, trained by SGD (eps = {config.lr}, batch {config.batch_size}) "
        f"for {config.epochs} epochs with cross-entropy; {config.seeds} seeds. Small normal uses "
        f"stddev {config.small_stddev}. Variances are measured on the training split at "
        "initialization, over all examples and units of a layer. The zero initialization has "
        "variance exactly 0 everywhere and is left off the log-scale plot.\n\n"
        "References: the linear analysis (Glorot for tanh, He for ReLU) predicts a gain of "
        "m Var(W) per layer for tanh and m Var(W) / 2 for ReLU, i.e. exactly 1 for Glorot/tanh "
        "and He/ReLU; the mean-field recursion (dashed lines) adds the curvature of tanh. "
        "A net whose units never break their symmetry can only learn its output biases, i.e. "
        "predict one class whatever the input; the best constant prediction is the reference."
    )
    report.figure(
        plot_variances(runs, activations),
        "variances",
        "activation variance and weight-gradient variance per layer at initialization "
        "(seed mean ± std; dashed: mean-field prediction)",
    )
    report.table(
        [
            "activation",
            "init",
            "Var(a_1)",
            f"Var(a_{config.depth})",
            "ratio last / first (measured)",
            "ratio (mean field)",
            "gain per layer (linear theory)",
        ],
        [
            (
                activation,
                LABELS[init_name],
                f"{run['activation_variance'][:, 0].mean():.3g}",
                f"{run['activation_variance'][:, -1].mean():.3g}",
                f"{run['variance_ratio'].mean():.3g}",
                f"{run['predicted_ratio']:.3g}",
                f"{run['linear_gain']:.3g}",
            )
            for (activation, init_name), run in runs.items()
        ],
        caption="Activation variance at initialization (seed mean)",
    )
    report.table(
        [
            "activation",
            "init",
            "test accuracy",
            "train accuracy (last epoch's minibatches)",
            "largest gap between units",
        ],
        [
            (
                activation,
                LABELS[init_name],
                mean_std(run["test_accuracy"]),
                mean_std(run["train_accuracy"]),
                mean_std(run["unit_spread"], digits=3),
            )
            for (activation, init_name), run in runs.items()
        ],
        caption=(
            f"After training (mean ± std over {over}); the best constant prediction scores "
            f"{chance:.4f} on the test split"
        ),
    )
    report.text(findings(runs, chance))
    report.write()

    figures = {}
    for (activation, init_name), run in runs.items():
        name = f"{activation}/{init_name}"
        if init_name == "zeros":
            # Units that never break their symmetry: identical, no better than a constant.
            figures[f"{name}/unit_spread"] = Figure(
                run["unit_spread"], reference=0.0, source="identical units", tolerance=0.0
            )
            figures[f"{name}/test_accuracy"] = report_figure(  # one per grid point in a sweep
                run["result"], "test/accuracy", reference=chance, source="best constant prediction"
            )
        else:
            figures[f"{name}/variance_ratio"] = Figure(
                run["variance_ratio"],
                reference=run["predicted_ratio"],
                source="mean-field recursion",
                tolerance=0.5 * run["predicted_ratio"],  # within 50% of the mean field
            )
            figures[f"{name}/test_accuracy"] = report_figure(run["result"], "test/accuracy")
    return figures


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, RULES)
