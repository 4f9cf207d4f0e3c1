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

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

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
