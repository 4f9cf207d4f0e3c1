"""The train state every experiment carries through lexicon.train."""

from __future__ import annotations

from typing import Any

import jax
import optax
from flax import struct


class TrainState(struct.PyTreeNode):
    """Parameters, optimizer state and the step counter of one training run.

    ``model_state`` holds non-trained collections such as batch-norm running averages
    (``{"batch_stats": ...}``); it is an empty dict for models without any. ``apply_fn`` and
    ``tx`` are static: they are code, not data, so a vmapped stack of states over seeds shares
    them.
    """

    step: jax.Array
    params: Any
    opt_state: optax.OptState
    model_state: Any
    apply_fn: Any = struct.field(pytree_node=False)
    tx: optax.GradientTransformation = struct.field(pytree_node=False)

    @classmethod
    def create(cls, *, apply_fn, params, tx, model_state=None) -> TrainState:
        return cls(
            step=jax.numpy.zeros((), jax.numpy.int32),
            params=params,
            opt_state=tx.init(params),
            model_state={} if model_state is None else model_state,
            apply_fn=apply_fn,
            tx=tx,
        )

    def apply_gradients(self, grads, **changes) -> TrainState:
        """One optimizer update: theta <- theta + tx(g)."""
        updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
        params = optax.apply_updates(self.params, updates)
        return self.replace(step=self.step + 1, params=params, opt_state=opt_state, **changes)
