"""Losses: cross-entropy learns faster than MSE on saturating outputs; MSE is Gaussian likelihood.

SPEC §3 (documents 001 and 002).

Classification. A sigmoid output o = sigmoid(z) trained with the squared error
E = 1/2 (o - t)^2 gets the gradient dE/dz = (o - t) o (1 - o): when the unit is confidently
wrong (o near 0 while t = 1) the factor o (1 - o) makes it vanish, and learning stalls. With the
cross-entropy E = -[t log o + (1 - t) log(1 - o)] the factor cancels and dE/dz = o - t, which is
largest exactly there; a softmax output with cross-entropy gives p - t in the same way. The
experiment plots both gradients against z (jax.grad next to the closed forms), and trains the
same sigmoid-hidden-layer classifier on digits three ways (sigmoid outputs + MSE, sigmoid
outputs + cross-entropy, softmax + cross-entropy) with the same SGD, counting the steps each
needs to reach a target validation accuracy.

Regression, MSE as Gaussian maximum likelihood, is the study of experiments/likelihood.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lexicon import cli, data, losses, optim, sweeping, train
from lexicon.nn.layers import MLP
from lexicon.report import Figure, Report, compare, mean_std, panels, plot_curves
from lexicon.report import figure as report_figure
from lexicon.rules import Choice, Range, check_batch_size, positive


def get_config():
    config = train.defaults()
    config.seeds = 3
    config.epochs = 30  # passes of the classifiers over the training split
    config.batch_size = 32
    config.hidden = 32  # sigmoid hidden units of the classifier
    config.lr = 0.5  # plain SGD learning rate, the same for every classification loss
    config.target_accuracy = 0.8  # validation accuracy whose first crossing is timed
    config.dataset = "digits"  # digits | mnist1d (any dataset of lexicon.data)
    return config


RULES = {
    "hidden": Range(1, 4096),
    "lr": positive(),
    "target_accuracy": Range(0, 1, open_lo=True),
    "dataset": Choice(*data.DATASETS),
}


SWEEPABLE = ("lr",)  # --config.sweep='lr=0.1,0.5': each classifier's rates x seeds, one program


def check_config(config):
    """Cross-key rules; cli.run checks them before anything compiles."""
    check_batch_size(config, cli.train_examples(config.dataset, seed=config.data_seed))


CLASSIFIERS = {  # the loss of each classifier, and its name in results.json
    "sigmoid outputs + MSE": (losses.sigmoid_squared_error_with_integer_labels, "sigmoid_mse"),
    "sigmoid outputs + cross-entropy": (
        losses.sigmoid_cross_entropy_with_integer_labels,
        "sigmoid_ce",
    ),
    "softmax + cross-entropy": (losses.softmax_cross_entropy_with_integer_labels, "softmax_ce"),
}


def output_gradients(z: np.ndarray, target: float):
    """dE/dz of one sigmoid output at logits z: (jax.grad MSE, jax.grad CE) in float32."""

    def squared(v):
        return 0.5 * (jax.nn.sigmoid(v) - target) ** 2

    def cross_entropy(v):
        return losses.binary_cross_entropy_with_logits(v, jnp.float32(target))

    z = jnp.asarray(z, jnp.float32)
    grads = (jax.jit(jax.vmap(jax.grad(loss)))(z) for loss in (squared, cross_entropy))
    return tuple(np.asarray(g, np.float64) for g in grads)


def closed_form_gradients(z: np.ndarray, target: float):
    """The documents' dE/dz: MSE (o - t) o (1 - o), cross-entropy o - t, in float64."""
    o = 1 / (1 + np.exp(-np.asarray(z, np.float64)))
    return (o - target) * o * (1 - o), o - target


def steps_to_target(result, target: float) -> np.ndarray:
    """Per seed, the training steps done when validation accuracy first reached ``target``
    (measured after every epoch); NaN where it never did."""
    steps, accuracy = result.curve("val/accuracy", x="step")
    reached = accuracy >= target
    return np.where(reached.any(axis=1), steps[reached.argmax(axis=1)], np.nan)


def speed_verdict(steps: dict, mean_accuracy: dict) -> str:
    """Whether cross-entropy learns faster than MSE on the same sigmoid outputs: the mean
    validation accuracy over the epochs (the area under the learning curve), paired over
    seeds (same initial weights), and the steps each needed to reach the target."""
    mse, ce = "sigmoid outputs + MSE", "sigmoid outputs + cross-entropy"
    verdict = compare(mean_accuracy[ce], mean_accuracy[mse], paired=True, names=("CE", "MSE"))
    ratio = ""
    if np.isfinite(steps[mse]).all() and np.isfinite(steps[ce]).all():
        ratio = f" On average MSE needed {steps[mse].mean() / steps[ce].mean():.1f} times as "
        ratio += "many steps to the target."
    return (
        f"The documents' claim that cross-entropy learns faster than MSE "
        f"{'holds' if verdict.holds else 'is not established'} here: with the same sigmoid "
        f"outputs, mean validation accuracy over the epochs: {verdict.sentence}.{ratio}"
    )


def run_classifier(config, splits, name, workdir):
    def task(config):  # a builder: the rate is traced in a sweep
        model = MLP(features=(config.hidden, splits.num_classes), activation="sigmoid")
        tx = optim.sgd(config.lr)
        return train.classifier(model, tx, splits.train["x"][:1], loss=CLASSIFIERS[name][0])

    return train.fit(
        config,
        task,
        splits.train,
        workdir / name.replace(" + ", "_").replace(" ", "_"),
        eval_splits={"val": splits.val, "test": splits.test},
    )


# --- report -----------------------------------------------------------------------------------


def plot_saturation(z, gradients, closed):
    fig, axes = panels(2, size=(6, 4))
    (mse, ce), (mse_closed, ce_closed) = gradients, closed
    ax = axes[0]
    ax.plot(z, np.abs(mse), label="MSE: jax.grad")
    ax.plot(z, np.abs(mse_closed), "k:", label="(o - t) o (1 - o)")
    ax.plot(z, np.abs(ce), label="cross-entropy: jax.grad")
    ax.plot(z, np.abs(ce_closed), "k--", lw=0.8, label="o - t")
    ax.axvspan(z.min(), -2, color="red", alpha=0.08, label="confidently wrong")
    ax.set(xlabel="logit z (target t = 1)", ylabel="|dE/dz|", yscale="log")
    ax.set_title("gradient reaching the output's pre-activation")
    o = 1 / (1 + np.exp(-z))
    axes[1].plot(z, 0.5 * (o - 1) ** 2, label="MSE 1/2 (o - t)^2")
    axes[1].plot(z, -np.log(o), label="cross-entropy -log o")
    axes[1].set(xlabel="logit z (target t = 1)", ylabel="loss", yscale="log", title="the losses")
    for ax in axes:
        ax.legend(fontsize=8)
    return fig


def plot_classifiers(results, config):
    fig, axes = panels(2, size=(6, 4))
    moving = {}
    for name, result in results.items():
        per_step = np.concatenate([m["accuracy"] for m in result.step_metrics], axis=1)
        window = max(1, per_step.shape[1] // 60)
        smooth = [np.convolve(row, np.ones(window) / window, mode="valid") for row in per_step]
        moving[name] = (np.arange(window, per_step.shape[1] + 1), np.array(smooth))
    curves = {name: r.curve("val/accuracy", x="step") for name, r in results.items()}
    plot_curves(curves, xlabel="training step", ylabel="validation accuracy", ax=axes[0])
    axes[0].axhline(config.target_accuracy, color="k", lw=0.8, ls="--", label="target")
    plot_curves(moving, xlabel="training step", ylabel="minibatch accuracy (moving average)",
                ax=axes[1])  # fmt: skip
    for ax in axes:
        ax.set_ylim(0, 1)
        ax.legend(fontsize=8)
    return fig


def train_and_evaluate(config, workdir):
    z = np.linspace(-10, 10, 401)
    gradients = output_gradients(z, 1.0)
    closed = closed_form_gradients(z, 1.0)
    gradient_error = max(float(np.max(np.abs(a - c))) for a, c in zip(gradients, closed))

    splits = data.load(config.dataset, seed=config.data_seed)
    results = {name: run_classifier(config, splits, name, workdir) for name in CLASSIFIERS}
    steps = {n: steps_to_target(r, config.target_accuracy) for n, r in results.items()}
    mean_accuracy = {n: r.curve("val/accuracy")[1].mean(axis=1) for n, r in results.items()}

    report = Report(workdir, "Losses: MSE against cross-entropy on saturating outputs")
    probes = np.array([-10.0, -5.0, -2.0, 0.0, 2.0, 5.0])
    (mse, ce), (mse_closed, ce_closed) = (
        output_gradients(probes, 1),
        closed_form_gradients(probes, 1),
    )
    report.table(
        ["z", "o = sigmoid(z)", "MSE dE/dz (jax.grad)", "(o - t) o (1 - o)", "CE dE/dz", "o - t"],
        [
            (f"{v:g}", f"{o:.2e}", *(f"{c:.3e}" for c in columns))
            for v, o, *columns in zip(
                probes, 1 / (1 + np.exp(-probes)), mse, mse_closed, ce, ce_closed
            )
        ],
        caption="Gradient at the output's pre-activation, target t = 1 (largest |jax.grad - "
        f"closed form| over z in [-10, 10]: {gradient_error:.1e})",
    )
    report.figure(
        plot_saturation(z, gradients, closed),
        "saturation",
        "a confidently wrong sigmoid output (z << 0, t = 1): MSE's gradient vanishes, "
        "cross-entropy's does not",
    )
    report.text(
        f"Classifier: {splits.train['x'].shape[1]} inputs, {config.hidden} sigmoid hidden "
        f"units, {splits.num_classes} outputs, trained on `{config.dataset}` with plain SGD "
        f"(learning rate {config.lr} for every loss, batch {config.batch_size}, "
        f"{results[next(iter(results))].history[0]['step']} steps per epoch) for "
        f"{config.epochs} epochs, {config.seeds} seeds (mean ± std; the same initial weights "
        "per seed for every loss). Validation accuracy is measured after every epoch, so the "
        "steps to the target are multiples of the steps per epoch."
    )
    sweeping.note(report, config)
    target = f"{config.target_accuracy:g}"
    rows = []
    for name, r in results.items():
        reached = steps[name][np.isfinite(steps[name])]
        finals = (mean_accuracy[name], r.final("val/accuracy"), r.final("test/accuracy"))
        rows.append(
            (name, f"{reached.size} / {len(steps[name])}")
            + (mean_std(reached, 1) if reached.size else "never",)
            + tuple(mean_std(v, 3) for v in finals)
        )
    report.table(
        ["loss", f"seeds reaching {target}", f"steps to validation accuracy {target}"]
        + ["mean val accuracy over the epochs", "final val accuracy", "final test accuracy"],
        rows,
        caption="Which loss learns faster",
    )
    report.text(speed_verdict(steps, mean_accuracy))
    report.figure(
        plot_classifiers(results, config),
        "classifiers",
        "left: validation accuracy after every epoch; right: minibatch accuracy per step",
    )

    report.write()
    short = {name: short for name, (_, short) in CLASSIFIERS.items()}
    return {
        # equal up to float32 rounding
        "gradient_error": Figure(gradient_error, reference=0.0, tolerance=1e-5,
                                 source="closed forms (o - t) o (1 - o) and o - t"),
        # dE/dz at z = -10 with target 1: MSE's vanishes, cross-entropy's stays near -1
        "saturated_gradient": {"mse": gradients[0][0], "cross_entropy": gradients[1][0]},
        # NaN where a seed never reached the target; one figure per grid point in a sweep
        "steps_to_target": {short[n]: sweeping.figure(results[n], s) for n, s in steps.items()},
        "test_accuracy": {short[n]: report_figure(r, "test/accuracy") for n, r in results.items()},
    }  # fmt: skip


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, RULES)
