"""Training the lexicon.nn autoencoders: one reconstruction task for every variant.

An encoder h = f(x) and a decoder r = g(h) minimize L(x, g(f(x))) (SPEC §6, documents 000-003),
here ||g(f(x)) - x||^2 per example, plus a penalty Omega on the code (sparse, contractive), or
on a corrupted input x~ (denoising), or layer by layer (greedy pretraining of a stack).
"""

from __future__ import annotations

import functools

import jax.numpy as jnp

from lexicon import losses, train


def autoencoder_task(model, tx, x, penalty=None, noise=None, layer=None) -> train.Task:
    """Minimizes ||g(f(x~)) - x||^2 + Omega per example for a lexicon.nn autoencoder (its
    ``encode`` and ``decode`` methods), initialized on ``x[:1]``. ``noise(key, x)`` gives x~
    (a denoising AE; otherwise x~ = x), ``penalty(params, x~, h)`` gives Omega (e.g. an L1, KL
    or contractive penalty of lexicon.regularizers). With ``layer``, the greedy loss of that
    layer of a StackedClassifier: its reconstruction of the code below it (no evaluation).
    Evaluation reports the test loss ||g(f(x)) - x||^2."""

    def init(key):
        params = model.init(key, x[:1])["params"]
        return train.TrainState.create(apply_fn=model.apply, params=params, tx=tx)

    def objective(params, model_state, batch, key):
        x, apply = batch["x"], functools.partial(model.apply, {"params": params})
        if layer is not None:
            below, r = apply(x, layer, method="layer_reconstruction")
            return losses.mean_squared_error(r, below), ({}, model_state)
        x_in = x if noise is None else noise(key, x)
        h = apply(x_in, method="encode")
        error = losses.mean_squared_error(apply(h, method="decode"), x)
        omega = jnp.zeros(()) if penalty is None else penalty(params, x_in, h)
        return error + omega, ({"error": error, "penalty": omega}, model_state)

    def evaluate(state, split):
        r = model.apply({"params": state.params}, split["x"])
        return {"loss": losses.mean_squared_error(r, split["x"])}

    return train.Task(init, train.gradient_step(objective), evaluate if layer is None else None)
