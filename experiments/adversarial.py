"""FGSM adversarial examples and adversarial training on digits (Goodfellow et al. 2015).

Small input changes chosen against the network make it misclassify (SPEC §4, document
001). The fast gradient sign method builds the change from one gradient of the loss with
respect to the input, inside an L-infinity ball of radius epsilon and the pixel range [0, 1]:
    x_adv = clip(x + epsilon sign(grad_x J(theta; x, y)), 0, 1).
Two MLPs with the same layers, data and steps are compared:
    standard      minimizes J(theta; x, y)
    adversarial   minimizes w J(theta; x, y) + (1 - w) J(theta; x_adv, y), with x_adv
                  recomputed by FGSM at the current weights for every minibatch and held
                  constant in the gradient (w = 0.5 in the paper)
and both are attacked by FGSM at a sweep of epsilons, each model with its own gradient. The
reference is the qualitative result of Goodfellow, Shlens and Szegedy (2015): adversarial
training at a budget epsilon raises the accuracy under an FGSM attack of that budget, at
little cost in clean accuracy, while random +-epsilon noise of the same size barely hurts
either model (it is the direction of the change that matters, not its size).
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from lexicon import adversarial, cli, data, optim, runs, sweeping, train
from lexicon.nn.layers import MLP
from lexicon.report import Report, compare, held_against, mean_std, plot_curves
from lexicon.report import figure as report_figure
from lexicon.rules import Choice, Items, Range, check_batch_size, positive, widths

MODES = ("standard", "adversarial")
IMAGE_SHAPES = {"digits": (8, 8), "mnist": (28, 28), "fashion_mnist": (28, 28)}  # in [0, 1]
PIXEL_RANGE = (0.0, 1.0)
# --config.sweep='clean_weight=0.3,0.5,0.7': both modes' grid points x seeds, one program each
SWEEPABLE = ("lr", "clean_weight")


def get_config():
    config = train.defaults()
    config.seeds = 3
    config.epochs = 30
    config.batch_size = 32
    config.hidden = (128, 128)  # widths of the hidden layers
    config.activation = "relu"  # relu | leaky_relu | tanh | sigmoid | prelu | maxout
    config.lr = 1e-3  # eps of Adam (Alg. 8.7)
    config.epsilon = 0.1  # FGSM budget used by adversarial training (L-inf, pixels in [0, 1])
    config.clean_weight = 0.5  # w in w J(x) + (1 - w) J(x_adv); the paper uses 0.5
    config.eval_epsilons = (0.0, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25)  # attack sweep
    config.dataset = "digits"  # digits | mnist | fashion_mnist (the last two: prepared TFDS)
    config.examples = 8  # test digits drawn in the figure of adversarial examples
    config.scale = "default"  # default | paper (MNIST, maxout, epsilon 0.25; see presets)
    return config


RULES = {
    "activation": Choice("relu", "leaky_relu", "tanh", "sigmoid", "prelu", "maxout"),
    "lr": positive(),
    "epsilon": Range(0, 1, open_lo=True),
    "clean_weight": Range(0, 1),
    "dataset": Choice(*IMAGE_SHAPES),
    "examples": Range(1, 16),
    "scale": Choice("default", "paper"),
    "hidden": widths(),
    "eval_epsilons": Items(Range(0, 1), kind=float),
}


def check_config(config):
    """Cross-key rules; cli.run checks them before anything compiles."""
    if config.scale == "default":
        check_batch_size(config, cli.train_examples(config.dataset, seed=config.data_seed))


def apply_preset(config):
    """The published setting of Goodfellow et al. (2015), section 6, as we read it."""
    paper = dict(dataset="mnist", activation="maxout", hidden=(1600, 1600), epsilon=0.25)
    paper.update(clean_weight=0.5, eval_epsilons=(0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3))
    paper.update(epochs=max(config.epochs, 50), batch_size=100)
    return cli.with_preset(config, paper, config.scale == "paper", get_config())


def make_task(config, model, example_input, mode):
    """Standard training, or adversarial training with w = config.clean_weight (traced in a
    sweep); both evaluate the accuracy under FGSM at config.epsilon."""
    weight = config.clean_weight if mode == "adversarial" else None
    return adversarial.robust_classifier(model, optim.adam(config.lr), example_input,
                                         config.epsilon, weight, PIXEL_RANGE)  # fmt: skip


# --- figures ----------------------------------------------------------------------------------


def plot_sweep(epsilons, sweeps, noise, train_epsilon):
    curves = {f"{m} training, FGSM": (epsilons, sweeps[m]) for m in MODES}
    curves.update({f"{m} training, random ±eps": (epsilons, noise[m]) for m in MODES})
    fig = plot_curves(curves, xlabel="attack budget epsilon (L-inf, pixels in [0, 1])")
    ax = fig.axes[0]
    ax.axvline(train_epsilon, color="k", ls="--", lw=1, label="training epsilon")
    ax.set(ylabel="test accuracy", ylim=(0, 1.02))
    ax.legend(fontsize=8)
    return fig


# --- the experiment ---------------------------------------------------------------------------


def train_and_evaluate(config, workdir):
    config = apply_preset(config)
    epsilons = tuple(float(e) for e in config.eval_epsilons)
    splits = data.load(config.dataset, seed=config.data_seed)
    x_test, y_test = splits.test["x"], splits.test["y"]
    classes = splits.num_classes
    model = MLP(features=(*config.hidden, classes), activation=config.activation)

    def apply_fn(params, x):
        return model.apply({"params": params}, x)

    results = {}
    for mode in MODES:
        print(f"--- {mode} training")
        task = functools.partial(make_task, model=model, example_input=splits.train["x"][:1],
                                 mode=mode)  # fmt: skip
        evals = {"val": splits.val, "test": splits.test}
        results[mode] = train.fit(config, task, splits.train, workdir / mode, eval_splits=evals)

    noise_key = jax.random.fold_in(train.stream(config.seed, "env"), 0)
    sweeps, noise = {}, {}
    for mode in MODES:
        sweeps[mode], noise[mode] = adversarial.robustness_sweep(
            apply_fn, results[mode].state.params, x_test, y_test, epsilons, noise_key, PIXEL_RANGE
        )
    clean = {mode: results[mode].final("test/accuracy") for mode in MODES}
    # FGSM at the training epsilon, from the last evaluation
    at_train = {mode: results[mode].final("test/fgsm_accuracy") for mode in MODES}

    # The two models of a seed share their initialization and minibatches: paired seeds.
    gain = compare(at_train["adversarial"], at_train["standard"], paired=True,
                   names=("adversarial training", "standard training"))  # fmt: skip
    verdict = (
        f"Accuracy under FGSM at the training budget epsilon = {config.epsilon}: "
        f"{gain.sentence}. The result of Goodfellow et al. (2015) "
        f"{'holds' if gain.holds else 'is not established'} here. Clean test accuracy goes "
        f"from {clean['standard'].mean():.3f} to {clean['adversarial'].mean():.3f}."
    )
    trained = [i for i, e in enumerate(epsilons) if np.isclose(e, config.epsilon)]
    if trained:
        random_acc = noise["standard"][:, trained[0]]
        direction = compare(random_acc, at_train["standard"], paired=True,
                            names=("random ±epsilon", "FGSM"))  # fmt: skip
        verdict += (
            f" Accuracy of the standard model under random ±epsilon noise of the same size "
            f"against FGSM: {direction.sentence}"
            + (": the direction of the change fools it, not its size." if direction.holds else ".")
        )

    report = Report(workdir, "FGSM adversarial examples and adversarial training")
    report.text(
        f"MLP {(x_test.shape[1], *config.hidden, classes)} ({config.activation}) on "
        f"`{config.dataset}` (pixels in [0, 1]), Adam eps = {config.lr}, batch "
        f"{config.batch_size}, {config.epochs} epochs, {config.seeds} seeds. Adversarial "
        f"training mixes clean and FGSM examples with w = {config.clean_weight} at epsilon = "
        f"{config.epsilon}. Every model is attacked with its own gradient (white box) on the "
        f"{len(y_test)} test examples."
    )
    report.text(verdict)
    names = ("standard", "adversarial training")
    report.table(
        ["epsilon", *(f"{m}, {a}" for a in ("FGSM", "random ±eps") for m in names)],
        [
            (f"{eps:g}", *(mean_std(table[m][:, i]) for table in (sweeps, noise) for m in MODES))
            for i, eps in enumerate(epsilons)
        ],
        caption=f"Test accuracy under attack (mean ± std over {config.seeds} seeds)",
    )
    report.figure(
        plot_sweep(epsilons, sweeps, noise, config.epsilon),
        "accuracy_vs_epsilon",
        "test accuracy against the attack budget (mean ± std band over seeds)",
    )
    # Both models share one compiled attack: same shapes, params as an argument.
    attack = jax.jit(lambda params: adversarial.attack(apply_fn, params, x_test, y_test,
                                                       config.epsilon, PIXEL_RANGE))  # fmt: skip
    attacks = {
        mode: tuple(np.asarray(a) for a in attack(runs.replica(results[mode].state.params)))
        for mode in MODES
    }
    shown = adversarial.fooled_first(y_test, *attacks["standard"][1:], config.examples)
    report.figure(
        adversarial.plot_examples(
            x_test[shown],
            y_test[shown],
            IMAGE_SHAPES[config.dataset],
            {mode: tuple(a[shown] for a in attacks[mode]) for mode in MODES},
            config.epsilon,
        ),
        "examples",
        f"test digits, those that fool the standard model first (seed {config.seed}): "
        f"clean (title: label, then the predictions of the standard / adversarially trained "
        f"model), each model's FGSM perturbation at epsilon = {config.epsilon} (red +, "
        f"blue -) and the adversarial digit with the model's prediction (red: wrong)",
    )
    for mode in MODES:
        report.text(f"Learning curves of the **{mode}** model (accuracy on clean and FGSM inputs):")
        report.learning_curves(
            results[mode].history,
            ["val/accuracy", "test/accuracy", "val/fgsm_accuracy", "test/fgsm_accuracy"],
            name=f"curves_{mode}",
        )
    sweeping.note(report, config)
    report.write()
    if results["standard"].sweep is not None:  # one figure per grid point
        keys = {"clean_accuracy": "test/accuracy", "fgsm_accuracy": "test/fgsm_accuracy"}
        return {k: {m: report_figure(results[m], key) for m in MODES} for k, key in keys.items()}
    figures = {"clean_accuracy": clean, "fgsm_accuracy": {"standard": at_train["standard"]}}
    # Under FGSM at the training budget, from the last evaluation; 'above' is the report's 'holds'.
    figures["fgsm_accuracy"]["adversarial"] = held_against(
        at_train["adversarial"],
        at_train["standard"],
        gain,
        "standard training; Goodfellow et al. 2015: adversarial training raises it",
    )
    if trained:
        figures["random_sign_accuracy"] = {"standard": noise["standard"][:, trained[0]]}
    return figures


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, RULES)
