"""Ready-made tasks for the common case: a Flax classifier trained by gradient descent."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from lexicon.losses import softmax_cross_entropy_with_integer_labels
from lexicon.train.loop import Task
from lexicon.train.state import TrainState
from lexicon.train.steps import gradient_step


def accuracy(logits, labels):
    return jnp.mean(jnp.argmax(logits, -1) == labels)


def apply_model(model, params, model_state, x, *, train: bool, key=None):
    """Runs ``model`` in train or eval mode; returns (outputs, updated model_state).

    In train mode the model gets a 'dropout' rng and may update its mutable collections
    (batch-norm statistics); in eval mode it is deterministic.
    """
    variables = {"params": params, **model_state}
    if not train:
        return model.apply(variables, x, train=False), model_state
    rngs = {"dropout": key} if key is not None else {}
    if model_state:
        out, updated = model.apply(variables, x, train=True, rngs=rngs, mutable=list(model_state))
        return out, {**model_state, **updated}
    return model.apply(variables, x, train=True, rngs=rngs), model_state


def evaluate_in_chunks(fn, split: dict, chunk: int):
    """Averages per-example metrics ``fn(batch) -> dict of (n,) arrays`` over a split.

    Large splits are evaluated ``chunk`` examples at a time with lax.map, so evaluating a
    CNN on 10,000 images does not hold all activations at once; the last chunk is padded
    and the padding is left out of the mean.
    """
    n = len(jax.tree.leaves(split)[0])
    if n <= chunk:
        return jax.tree.map(jnp.mean, fn(split))
    pad = (-n) % chunk
    padded = jax.tree.map(
        lambda a: jnp.concatenate([a, jnp.zeros((pad, *a.shape[1:]), a.dtype)]), split
    )
    chunks = jax.tree.map(lambda a: a.reshape(-1, chunk, *a.shape[1:]), padded)
    values = jax.lax.map(fn, chunks)
    mask = jnp.arange(n + pad) < n
    return jax.tree.map(lambda v: jnp.sum(v.reshape(-1) * mask) / n, values)


def classifier(
    model,
    tx: optax.GradientTransformation,
    example_input,
    *,
    loss: Callable = softmax_cross_entropy_with_integer_labels,
    penalty: Callable | None = None,
    eval_chunk: int = 2048,
) -> Task:
    """A Task training ``model(x, train=...) -> logits`` on integer labels.

    loss(logits, labels) -> scalar, cross-entropy by default. penalty(params) -> scalar is
    added to the training loss (a regularizer such as (alpha/2) w^T w). Metrics: loss (the
    data term), accuracy; evaluation reports the same on a whole split.
    """

    def init(key):
        params_key, dropout_key = jax.random.split(key)
        variables = model.init(
            {"params": params_key, "dropout": dropout_key}, example_input, train=False
        )
        params = variables.pop("params")
        return TrainState.create(
            apply_fn=model.apply, params=params, tx=tx, model_state=dict(variables)
        )

    def objective(params, model_state, batch, key):
        logits, model_state = apply_model(
            model, params, model_state, batch["x"], train=True, key=key
        )
        data_loss = loss(logits, batch["y"])
        total = data_loss if penalty is None else data_loss + penalty(params)
        return total, (
            {"data_loss": data_loss, "accuracy": accuracy(logits, batch["y"])},
            model_state,
        )

    def evaluate(state, split):
        def per_example(batch):
            logits, _ = apply_model(model, state.params, state.model_state, batch["x"], train=False)
            return {
                "loss": jax.vmap(loss)(logits[:, None], batch["y"][:, None]),
                "accuracy": (jnp.argmax(logits, -1) == batch["y"]).astype(jnp.float32),
            }

        return evaluate_in_chunks(per_example, split, eval_chunk)

    return Task(init=init, make_step=gradient_step(objective), evaluate=evaluate)
