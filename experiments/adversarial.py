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

import jax
import numpy as np

from lexicon import adversarial, cli, data, optim, train
from lexicon.nn.layers import MLP
from lexicon.report import Report, compare, held_against, mean_std, panels, plot_curves
from lexicon.rules import Choice, ConfigError, Items, Range, check_batch_size, positive, widths

MODES = ("standard", "adversarial")
DATASETS = ("digits", "mnist", "fashion_mnist")  # inputs scaled to [0, 1]
PIXEL_RANGE = (0.0, 1.0)


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
    "dataset": Choice(*DATASETS),
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


def check_epsilons(epsilons) -> tuple[float, ...]:
    values = tuple(float(e) for e in epsilons)
    if not values or any(not 0.0 <= e <= 1.0 for e in values):
        raise ConfigError(
            f"config.eval_epsilons={epsilons!r} must be a non-empty tuple of values in [0, 1]"
        )
    return values


# --- figures ----------------------------------------------------------------------------------


def plot_sweep(epsilons, sweeps, noise, train_epsilon):
    runs = {f"{m} training, FGSM": (epsilons, sweeps[m]) for m in MODES}
    runs.update({f"{m} training, random ±eps": (epsilons, noise[m]) for m in MODES})
    fig = plot_curves(runs, xlabel="attack budget epsilon (L-inf, pixels in [0, 1])")
    ax = fig.axes[0]
    ax.axvline(train_epsilon, color="k", ls="--", lw=1, label="training epsilon")
    ax.set(ylabel="test accuracy", ylim=(0, 1.02))
    ax.legend(fontsize=8)
    return fig


def plot_examples(x, y, shape, attacks: dict, epsilon):
    """Clean digits, each model's FGSM perturbation and the adversarial digit, with labels.

    attacks: mode -> (x_adv, clean predictions, adversarial predictions) for these digits.
    """
    columns = len(x)
    fig, flat = panels(5 * columns, columns, size=(1.25, 1.44))
    axes = np.asarray(flat).reshape(5, columns)
    rows = [("clean", x, None)]
    for mode, (x_adv, _, predicted) in attacks.items():
        rows.append((f"{mode}:\nperturbation", x_adv - x, None))
        rows.append((f"{mode}:\nadversarial", x_adv, predicted))
    for r, (name, images, predicted) in enumerate(rows):
        for c in range(columns):
            ax = axes[r, c]
            image = images[c].reshape(shape)
            if "perturbation" in name:
                ax.imshow(image, cmap="bwr", vmin=-epsilon, vmax=epsilon)
            else:
                ax.imshow(image, cmap="gray_r", vmin=0, vmax=1)
            if r == 0:
                labels = "/".join(str(clean[c]) for _, clean, _ in attacks.values())
                ax.set_title(f"y={y[c]} pred {labels}", fontsize=7)
            elif predicted is not None:
                color = "green" if predicted[c] == y[c] else "red"
                ax.set_title(f"pred {predicted[c]}", fontsize=8, color=color)
            ax.set(xticks=[], yticks=[])
            ax.grid(False)
        axes[r, 0].set_ylabel(name, fontsize=8)
    return fig


# --- the experiment ---------------------------------------------------------------------------


def train_and_evaluate(config, workdir):
    config = apply_preset(config)
    epsilons = check_epsilons(config.eval_epsilons)
    splits = data.load(config.dataset, seed=config.data_seed)
    x_test, y_test = splits.test["x"], splits.test["y"]
    classes = splits.num_classes
    model = MLP(features=(*config.hidden, classes), activation=config.activation)

    def apply_fn(params, x):
        return model.apply({"params": params}, x)

    results = {}
    for mode in MODES:
        print(f"--- {mode} training")
        weight = config.clean_weight if mode == "adversarial" else None
        task = adversarial.robust_classifier(model, optim.adam(config.lr), splits.train["x"][:1],
                                             config.epsilon, weight, PIXEL_RANGE)  # fmt: skip
        results[mode] = train.fit(
            config,
            task,
            splits.train,
            workdir / mode,
            eval_splits={"val": splits.val, "test": splits.test},
        )

    noise_key = jax.random.fold_in(train.stream(config.seed, "env"), 0)
    sweeps, noise = {}, {}
    for mode in MODES:
        sweeps[mode], noise[mode] = adversarial.robustness_sweep(
            apply_fn, results[mode].state.params, x_test, y_test, epsilons, noise_key, PIXEL_RANGE
        )
    clean = {mode: results[mode].final("test/accuracy") for mode in MODES}
    at_train = {
        mode: results[mode].final("test/fgsm_accuracy") for mode in MODES
    }  # FGSM at the training epsilon, from the last evaluation

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
    rows = []
    for i, eps in enumerate(epsilons):
        rows.append(
            (
                f"{eps:g}",
                *(mean_std(sweeps[mode][:, i]) for mode in MODES),
                *(mean_std(noise[mode][:, i]) for mode in MODES),
            )
        )
    report.table(
        [
            "epsilon",
            "standard, FGSM",
            "adversarial training, FGSM",
            "standard, random ±eps",
            "adversarial training, random ±eps",
        ],
        rows,
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
        mode: tuple(
            np.asarray(a) for a in attack(jax.tree.map(lambda a: a[0], results[mode].state.params))
        )
        for mode in MODES
    }
    shown = adversarial.fooled_first(y_test, *attacks["standard"][1:], config.examples)
    report.figure(
        plot_examples(
            x_test[shown],
            y_test[shown],
            image_shape(config.dataset),
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
    report.write()
    figures = {
        "clean_accuracy": clean,
        # under FGSM at the training budget, from the last evaluation
        "fgsm_accuracy": {
            "standard": at_train["standard"],
            "adversarial": held_against(  # 'above' is the report's 'holds'
                at_train["adversarial"],
                at_train["standard"],
                gain,
                "standard training; Goodfellow et al. 2015: adversarial training raises it",
            ),
        },
    }
    if trained:
        figures["random_sign_accuracy"] = {"standard": noise["standard"][:, trained[0]]}
    return figures


def image_shape(dataset: str) -> tuple[int, ...]:
    return {"digits": (8, 8), "mnist": (28, 28), "fashion_mnist": (28, 28)}[dataset]


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, RULES)
