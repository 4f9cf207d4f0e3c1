"""Early stopping on a validation metric as a pure-functional state (SPEC.md section 4).

Document 001 stops training before it overfits by holding out part of the training set as a
validation set and deciding from it when to stop. The state below records the best
validation metric seen so far, the params and the step where it was seen, and how many
evaluations have passed without improvement; once that count reaches ``patience`` the
``should_stop`` flag is raised. Restoring the best params is ``state.best_params``.

The update uses only ``jnp.where`` (no Python branching on values), so it runs in plain
Python, under ``jax.jit``, inside ``lax.scan`` over epochs and under ``jax.vmap`` over seeds.
Because a scanned loop cannot break, the state *freezes* once ``should_stop`` is set: later
updates change nothing, so the recorded best params and step are those of the stopped run.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

PyTree = Any


class EarlyStoppingState(NamedTuple):
    """Pytree state of early stopping.

    Attributes:
      best_metric: best validation metric so far (+inf / -inf before the first update).
      best_params: params recorded at the best step.
      best_step: step of the best metric (-1 before the first update), int32.
      patience_count: evaluations since the last improvement, int32.
      should_stop: True once patience_count reached the patience; stays True.
    """

    best_metric: jax.Array
    best_params: PyTree
    best_step: jax.Array
    patience_count: jax.Array
    should_stop: jax.Array


class EarlyStopping(NamedTuple):
    """An (init, update) pair, in the manner of ``optax.GradientTransformation``."""

    init: Callable[[PyTree], EarlyStoppingState]
    update: Callable[[EarlyStoppingState, jax.Array, PyTree, jax.Array], EarlyStoppingState]


def early_stopping(patience: int, min_delta: float = 0.0, mode: str = "min") -> EarlyStopping:
    """Build early stopping that watches a metric to minimize (``mode='min'``) or maximize.

    An update with metric m at step t counts as an improvement when
    m < best_metric - min_delta (``'min'``) or m > best_metric + min_delta (``'max'``); a NaN
    metric never improves. On improvement the metric, params and step are recorded and the
    patience counter resets to 0; otherwise the counter grows by 1, and ``should_stop``
    becomes True when it reaches ``patience``.

    Args:
      patience: number of evaluations without improvement to tolerate (>= 1).
      min_delta: minimum change that counts as an improvement (>= 0).
      mode: ``'min'`` (e.g. validation loss) or ``'max'`` (e.g. validation accuracy).
    """
    if patience < 1:
        raise ValueError(f"patience must be >= 1, got {patience}")
    if min_delta < 0:
        raise ValueError(f"min_delta must be >= 0, got {min_delta}")
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be one of 'min', 'max', got {mode!r}")
    sign = 1.0 if mode == "min" else -1.0

    def init(params: PyTree) -> EarlyStoppingState:
        return EarlyStoppingState(
            best_metric=jnp.asarray(sign * jnp.inf, jnp.float32),
            best_params=params,
            best_step=jnp.asarray(-1, jnp.int32),
            patience_count=jnp.zeros([], jnp.int32),
            should_stop=jnp.zeros([], bool),
        )

    def update(
        state: EarlyStoppingState, metric: jax.Array, params: PyTree, step: jax.Array
    ) -> EarlyStoppingState:
        metric = jnp.asarray(metric, state.best_metric.dtype)
        # Comparing sign * metric turns 'max' into 'min'; NaN compares False, so never improves.
        improved = sign * metric < sign * state.best_metric - min_delta
        improved = improved & ~state.should_stop
        waited = jnp.where(state.should_stop, state.patience_count, state.patience_count + 1)
        patience_count = jnp.where(improved, 0, waited).astype(jnp.int32)
        return EarlyStoppingState(
            best_metric=jnp.where(improved, metric, state.best_metric),
            best_params=jax.tree.map(
                lambda new, old: jnp.where(improved, new, old), params, state.best_params
            ),
            best_step=jnp.where(improved, jnp.asarray(step, jnp.int32), state.best_step),
            patience_count=patience_count,
            should_stop=state.should_stop | (patience_count >= patience),
        )

    return EarlyStopping(init, update)


def restore_best_params(state: EarlyStoppingState) -> PyTree:
    """The params recorded at the best validation step."""
    return state.best_params
