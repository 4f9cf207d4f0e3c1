"""Builders of pure training steps ``step(state, batch, key) -> (state, metrics)``.

A step factory takes the name of the device axis (or None) and returns the step. With an
axis name the step averages its gradients, metrics and model state over the devices with
``lax.pmean``: one per-device function serves every mapper (shard_map or pmap).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
from jax import lax

Metrics = dict[str, jax.Array]
Step = Callable[[Any, Any, jax.Array], tuple[Any, Metrics]]
StepFactory = Callable[[str | None], Step]
# loss_fn(params, model_state, batch, key) -> (loss, (metrics, new_model_state))
LossFn = Callable[..., tuple[jax.Array, tuple[Metrics, Any]]]


def mean_over(axis_name: str | None, tree):
    """Averages a pytree over a device axis; the identity when there is none."""
    return tree if axis_name is None else lax.pmean(tree, axis_name)


def gradient_step(loss_fn: LossFn, *, grad_metrics: Callable | None = None) -> StepFactory:
    """A step that differentiates ``loss_fn`` with jax.grad and applies the optimizer.

    ``grad_metrics(grads) -> dict`` adds statistics of the (device-averaged) gradients to the
    step's metrics, e.g. the gradient norm of every layer.
    """

    def make(axis_name: str | None = None) -> Step:
        def step(state, batch, key):
            grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
            (loss, (metrics, model_state)), grads = grad_fn(
                state.params, state.model_state, batch, key
            )
            grads, model_state = mean_over(axis_name, (grads, model_state))
            metrics = mean_over(axis_name, {"loss": loss, **metrics})
            if grad_metrics is not None:
                metrics = {**metrics, **grad_metrics(grads)}
            return state.apply_gradients(grads, model_state=model_state), metrics

        return step

    return make
