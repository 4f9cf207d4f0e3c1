"""Adversarial examples (FGSM) and adversarial training (SPEC.md section 4).

Document 001: small, deliberately chosen changes to an input can make a network misclassify
it, and training on such examples reduces the error, on the assumption that different classes
live in different regions so a small perturbation should not change the class. The fast
gradient sign method (Goodfellow, Shlens and Szegedy, 2015) builds the perturbation from one
gradient:

    x_adv = clip(x + epsilon * sign(grad_x L(x, y)), lo, hi)

Each coordinate moves by exactly epsilon (or 0 where the gradient is exactly 0), so
||x_adv - x||_inf = epsilon before clipping. Adversarial training minimizes

    J~ = w * J(theta; x, y) + (1 - w) * J(theta; x_adv, y)

with x_adv treated as a constant input (no gradient flows through the attack).
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lexicon import train
from lexicon.losses import softmax_cross_entropy_with_integer_labels

PyTree = Any


def per_example_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """The default attack loss: -log softmax(logits)_y per example
    (``losses.softmax_cross_entropy_with_integer_labels`` without reduction)."""
    return softmax_cross_entropy_with_integer_labels(logits, labels, reduction="none")


def fgsm_perturbation(
    input_loss: Callable[[jax.Array], jax.Array], x: jax.Array, epsilon: float
) -> jax.Array:
    """delta = epsilon * sign(grad_x input_loss(x)); every entry is -epsilon, 0 or +epsilon.

    ``input_loss`` maps the (batched) input to a scalar. Summing per-example losses rather
    than averaging them gives each example's input gradient without a 1/m factor, and the sign
    is the same either way.
    """
    return epsilon * jnp.sign(jax.grad(input_loss)(x))


def fgsm(
    apply_fn: Callable[[PyTree, jax.Array], jax.Array],
    params: PyTree,
    x: jax.Array,
    labels: jax.Array,
    epsilon: float,
    loss_fn: Callable[[jax.Array, jax.Array], jax.Array] = per_example_cross_entropy,
    clip_range: tuple[float, float] | None = None,
) -> jax.Array:
    """Fast gradient sign method: x_adv = clip(x + epsilon * sign(grad_x L(f(x), y)), lo, hi).

    Args:
      apply_fn: model ``apply_fn(params, x) -> outputs`` (e.g. ``model.apply``).
      params: model parameters (held fixed; no gradient is taken with respect to them).
      x: batch of inputs.
      labels: targets passed to ``loss_fn``.
      epsilon: size of the L-infinity perturbation.
      loss_fn: per-example loss ``loss_fn(outputs, labels)``; summed over the batch.
      clip_range: optional (lo, hi) valid input range; None leaves x_adv unclipped.

    Returns:
      x_adv with the shape and dtype of x.
    """

    def input_loss(inputs):
        return jnp.sum(loss_fn(apply_fn(params, inputs), labels))

    x_adv = x + fgsm_perturbation(input_loss, x, epsilon)
    if clip_range is not None:
        x_adv = jnp.clip(x_adv, clip_range[0], clip_range[1])
    return x_adv


def adversarial_training_loss(
    apply_fn: Callable[[PyTree, jax.Array], jax.Array],
    params: PyTree,
    x: jax.Array,
    labels: jax.Array,
    epsilon: float,
    clean_weight: float = 0.5,
    loss_fn: Callable[[jax.Array, jax.Array], jax.Array] = per_example_cross_entropy,
    clip_range: tuple[float, float] | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Mixed clean/adversarial loss w * J(x, y) + (1 - w) * J(x_adv, y), batch means.

    x_adv is :func:`fgsm` at the current params, wrapped in ``stop_gradient`` so the
    gradient with respect to params is w * grad J(x) + (1 - w) * grad J(x_adv) at fixed
    x_adv. Returns ``(loss, metrics)`` with metrics ``clean_loss`` and ``adversarial_loss``,
    ready for ``jax.value_and_grad(..., has_aux=True)``.
    """
    x_adv = jax.lax.stop_gradient(
        fgsm(apply_fn, params, x, labels, epsilon, loss_fn=loss_fn, clip_range=clip_range)
    )
    clean_loss = jnp.mean(loss_fn(apply_fn(params, x), labels))
    adversarial_loss = jnp.mean(loss_fn(apply_fn(params, x_adv), labels))
    loss = clean_weight * clean_loss + (1.0 - clean_weight) * adversarial_loss
    return loss, {"clean_loss": clean_loss, "adversarial_loss": adversarial_loss}


# --- Attacking a classifier and training it against the attack --------------------------------


def accuracy_under_fgsm(apply_fn, params, x, y, epsilon, clip_range=(0.0, 1.0)):
    """Accuracy on x_adv = clip(x + epsilon sign(grad_x J), lo, hi): the model attacks itself
    with its own gradient (white box)."""
    x_adv = fgsm(apply_fn, params, x, y, epsilon, clip_range=clip_range)
    return train.accuracy(apply_fn(params, x_adv), y)


def accuracy_under_random_signs(apply_fn, params, x, y, epsilon, key, clip_range=(0.0, 1.0)):
    """Accuracy on clip(x + epsilon s, lo, hi) with random signs s: FGSM's size, no direction."""
    signs = jax.random.rademacher(key, x.shape, x.dtype)
    noisy = jnp.clip(x + epsilon * signs, *clip_range)
    return train.accuracy(apply_fn(params, noisy), y)


def robustness_sweep(apply_fn, params, x, y, epsilons, key, clip_range=(0.0, 1.0)):
    """(seeds, epsilons) accuracies under FGSM and under random signs of the same budgets, for
    replicated ``params`` (leading seed axis); one compiled program."""
    eps_array = jnp.asarray(epsilons, jnp.float32)

    @jax.jit
    def sweep(params):
        def per_seed(p):
            fgsm_acc = jax.vmap(
                lambda e: accuracy_under_fgsm(apply_fn, p, x, y, e, clip_range=clip_range)
            )
            noise_acc = jax.vmap(
                lambda e: accuracy_under_random_signs(
                    apply_fn, p, x, y, e, key, clip_range=clip_range
                )
            )
            return fgsm_acc(eps_array), noise_acc(eps_array)

        return jax.vmap(per_seed)(params)

    return tuple(np.asarray(a) for a in sweep(params))


def attack(apply_fn, params, x, y, epsilon, clip_range=(0.0, 1.0)):
    """One model's FGSM inputs and its predictions on the clean and the adversarial inputs."""
    x_adv = fgsm(apply_fn, params, x, y, epsilon, clip_range=clip_range)
    return x_adv, apply_fn(params, x).argmax(-1), apply_fn(params, x_adv).argmax(-1)


def fooled_first(y, clean_predictions, adversarial_predictions, count: int) -> np.ndarray:
    """Indices of ``count`` examples to show: first those the attack turns from right to
    wrong, then the rest in order."""
    fooled = (clean_predictions == y) & (adversarial_predictions != y)
    order = np.concatenate([np.flatnonzero(fooled), np.flatnonzero(~fooled)])
    return order[: min(count, len(y))]


def adversarial_objective(model, epsilon, clean_weight=0.5, clip_range=(0.0, 1.0)):
    """loss_fn(params, model_state, batch, key) of adversarial training for lexicon.train.

    J~ = w J(x, y) + (1 - w) J(x_adv, y), x_adv = FGSM(x) at the current params, held
    constant; metrics: clean_loss, adversarial_loss and accuracy on the clean batch.
    """

    def apply_fn(params, x):
        return model.apply({"params": params}, x)

    def objective(params, model_state, batch, key):
        del key  # FGSM is deterministic
        loss, parts = adversarial_training_loss(
            apply_fn,
            params,
            batch["x"],
            batch["y"],
            epsilon,
            clean_weight=clean_weight,
            clip_range=clip_range,
        )
        acc = train.accuracy(apply_fn(params, batch["x"]), batch["y"])
        return loss, ({**parts, "accuracy": acc}, model_state)

    return objective


def robust_classifier(
    model, tx, example_input, epsilon, clean_weight=None, clip_range=(0.0, 1.0)
) -> train.Task:
    """A classifier task whose evaluation adds ``fgsm_accuracy``, the accuracy under FGSM at
    ``epsilon``; trained on the plain loss (``clean_weight`` None) or adversarially
    (:func:`adversarial_objective` with w = ``clean_weight``)."""
    base = train.classifier(model, tx, example_input)

    def apply_fn(params, x):
        return model.apply({"params": params}, x)

    def evaluate(state, split):
        metrics = base.evaluate(state, split)
        metrics["fgsm_accuracy"] = accuracy_under_fgsm(
            apply_fn, state.params, split["x"], split["y"], epsilon, clip_range=clip_range
        )
        return metrics

    if clean_weight is None:
        return dataclasses.replace(base, evaluate=evaluate)
    objective = adversarial_objective(model, epsilon, clean_weight, clip_range)
    return train.Task(init=base.init, make_step=train.gradient_step(objective), evaluate=evaluate)


def plot_examples(x, y, shape, attacks: dict, epsilon):
    """A figure of attacked images: the clean images (x, flat, reshaped to ``shape``; title:
    the label y and each model's prediction), then per model its perturbation x_adv - x (red +,
    blue -, at most epsilon) and its adversarial image with its prediction (red: wrong).

    attacks: model name -> (x_adv, clean predictions, adversarial predictions) for these images.
    """
    from lexicon.report import panels

    columns = len(x)
    fig, flat = panels((1 + 2 * len(attacks)) * columns, columns, size=(1.25, 1.44))
    axes = np.asarray(flat).reshape(-1, columns)
    gray = dict(cmap="gray_r", vmin=0, vmax=1)
    signed = dict(cmap="bwr", vmin=-epsilon, vmax=epsilon)
    rows = [("clean", x, None, gray)]
    for mode, (x_adv, _, predicted) in attacks.items():
        rows.append((f"{mode}:\nperturbation", x_adv - x, None, signed))
        rows.append((f"{mode}:\nadversarial", x_adv, predicted, gray))
    for r, (name, images, predicted, style) in enumerate(rows):
        for c, ax in enumerate(axes[r]):
            ax.imshow(images[c].reshape(shape), **style)
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
