"""How gradients flow through the layers of a deep classifier: per-layer norms and dead units.

SPEC §3 (document 001). Backpropagation multiplies one factor g'(in_i) per layer, so with
saturating units (sigmoid' <= 1/4) the gradient reaching the first layers vanishes; a
rectified unit whose input is negative on every example gets no gradient at all (a dead
unit). The pieces here measure both on any ``lexicon.nn.layers.MLP`` classifier:

* :func:`gradient_norm_task`: ``train.classifier``'s task whose step also logs
  ||dL/dW_l||_F of every layer, as metrics ``grad_norm_01``, ``grad_norm_02``, ...;
* :func:`unit_health`: on a whole split, per seed, the gradient norm of every layer, the
  ratio ||dL/dW_1|| / ||dL/dW_depth|| that shows a vanishing gradient, the fraction of dead
  and of never-active hidden units, and the mean |g'(in_i)|.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lexicon import losses, train
from lexicon.nn import activations


def gradient_norm_task(model, tx: optax.GradientTransformation, example_input) -> train.Task:
    """``train.classifier``'s task for a model without dropout or batch statistics, with a
    step on the mean softmax cross-entropy that also logs every layer's gradient norm
    (``train.gradient_step``'s grad_metrics hook, :func:`activations.layer_gradient_norms`)."""

    def loss_fn(params, model_state, batch, key):
        del key  # the model has no dropout
        logits = model.apply({"params": params}, batch["x"])
        loss = losses.softmax_cross_entropy_with_integer_labels(logits, batch["y"])
        return loss, ({"accuracy": train.accuracy(logits, batch["y"])}, model_state)

    base = train.classifier(model, tx, example_input)
    step = train.gradient_step(loss_fn, grad_metrics=activations.layer_gradient_norms)
    return train.Task(init=base.init, make_step=step, evaluate=base.evaluate)


def unit_health(model, params, split: dict, pieces: int = 1, activation: str | None = None):
    """What the hidden units of an MLP classifier do on ``split``, per seed (leading axis of
    ``params``), as NumPy arrays:

    gradient_norms (seeds, depth + 1): ||dL/dW_l||_F of the full-split loss, output layer last;
    gradient_ratio (seeds,): ||dL/dW_1|| / ||dL/dW_depth||, the first hidden layer's gradient
      norm over the last hidden layer's;
    dead (seeds,): fraction of hidden units to whose incoming weights no example sends any
      gradient (``activations.unit_activity`` is 0);
    never_active (seeds,): fraction of hidden units with in_i <= 0 on every example (for a
      rectifier, the units that are never active);
    mean_slope (seeds,), only for a fixed ``activation`` g (a name of ``activations.NAMES``):
      the mean of |g'(in_i)|, as ``jax.grad`` gives it, over hidden units and examples.
    ``pieces``: affine pieces per unit of a maxout network (1 otherwise).
    """
    found = activations.classifier_diagnostics(model, params, split, pieces)
    found = jax.tree.map(np.asarray, found)
    pre = found["pre_activations"]  # (seeds, depth, examples, units)
    health = {
        "gradient_norms": found["gradient_norms"],
        "gradient_ratio": found["gradient_norms"][:, 0] / found["gradient_norms"][:, -2],
        "dead": (found["activity"] == 0).mean(axis=(1, 2)),
        "never_active": np.all(pre <= 0, axis=2).mean(axis=(1, 2)),
    }
    if activation is not None:
        slope = jnp.abs(jax.vmap(jax.grad(activations.get(activation)))(jnp.ravel(pre)))
        health["mean_slope"] = np.asarray(slope).reshape(len(pre), -1).mean(axis=1)
    return health
