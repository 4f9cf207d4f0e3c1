"""Deep belief networks (SPEC.md §7, document 001): greedy stacking of RBMs, then backprop.

The document's recipe:
1. train an RBM on the data, Gaussian-Bernoulli on continuous inputs (``first_visible=
   "gaussian"``, unit variance, so the inputs should be standardized) or binary-binary;
2. fix it, and train the next, binary-binary, RBM on samples of its hidden layer;
3. repeat for every layer (``pretrain``: one ``lexicon.train.fit`` per layer; the frozen
   layers below ride in the new layer's state, and every step draws h ~ p(h | layer below)
   afresh, layer by layer, from the minibatch);
4. put an output layer on top and fine-tune the whole stack with backprop as a classifier
   (``DBNClassifier``: each RBM becomes a sigmoid layer with kernel w and bias a, the
   deterministic p(h = 1 | v) of the layer; ``with_pretrained`` copies them in).
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import numpy as np

from lexicon import train
from lexicon.nn import rbm


class DBNClassifier(nn.Module):
    """Sigmoid layers ``layer_i`` of the given widths, then a linear ``head`` (logits): the
    feed-forward net a DBN's weights initialize. Layer i computes p(h_i = 1 | h_(i-1)) of the
    i-th RBM when its kernel is that RBM's w and its bias that RBM's a."""

    sizes: Sequence[int]
    classes: int

    @nn.compact
    def __call__(self, x, train: bool = False):
        del train  # no dropout or batch norm: the same in training and evaluation
        for i, width in enumerate(self.sizes):
            x = nn.sigmoid(nn.Dense(width, name=f"layer_{i}")(x))
        return nn.Dense(self.classes, name="head")(x)


def with_pretrained(params: dict, layers: Sequence[dict]) -> dict:
    """The classifier's params with layer i's kernel = w and bias = a of RBM i (works on
    single or seed-stacked params alike); the head keeps its own initialization."""
    out = dict(params)
    for i, layer in enumerate(layers):
        out[f"layer_{i}"] = {"kernel": layer["w"], "bias": layer["a"]}
    return out


def layer_visible(index: int, first_visible: str) -> str:
    """The visible units of RBM ``index``: the first layer's kind, then binary."""
    return first_visible if index == 0 else "bernoulli"


def pretrain(
    config,
    x: np.ndarray,
    sizes: Sequence[int],
    workdir,
    *,
    tx_for: Callable[[int], object],
    first_visible: str = "bernoulli",
    k: int = 1,
    persistent: bool = False,
    chains: int = 100,
    eval_x: np.ndarray | None = None,
    log=print,
) -> tuple[tuple[dict, ...], list[train.Result]]:
    """Greedy layer-wise training of the RBM stack ``x.shape[1] -> sizes[0] -> sizes[1] ...``.

    Each layer is one ``train.fit`` of ``config`` (seeds, epochs, batch size) in
    ``workdir/layer_i``; its state starts from the layer's own init with the trained layers
    below, fixed, in ``state.below`` (seed-stacked, so replica s stacks on replica s's
    layers). ``tx_for(i)`` gives layer i's optimizer. Returns the seed-stacked parameters of
    every layer and the Result of each fit."""
    # The guide's first visible biases: the data's base rates (binary) or its mean (Gaussian).
    x_bias = rbm.base_rate_bias(x) if first_visible == "bernoulli" else x.mean(axis=0)
    layers: tuple[dict, ...] = ()
    results = []
    for i, hidden in enumerate(sizes):
        visible = layer_visible(i, first_visible)
        visible_size = x.shape[1] if i == 0 else sizes[i - 1]
        task = rbm.task(
            visible_size,
            hidden,
            tx_for(i),
            visible=visible,
            k=k,
            persistent=persistent,
            chains=chains,
            visible_bias=x_bias if i == 0 else None,
        )
        start = train.init_states(config, task).replace(below=layers)
        splits = None if eval_x is None else {"test": {"x": eval_x}}
        result = train.fit(
            config,
            task,
            {"x": x},
            pathlib.Path(workdir) / f"layer_{i}",
            initial_state=start,
            eval_splits=splits,
            log=log,
        )
        layers = layers + (result.state.params,)
        results.append(result)
    return layers, results


def fine_tune_state(config, classifier_task, layers: Sequence[dict]):
    """The classifier's initial states for ``config``'s replicas with the pretrained layers
    copied in (replica s gets seed s's stack) and a fresh optimizer state."""
    state = train.init_states(config, classifier_task)
    params = with_pretrained(state.params, layers)
    return train.start_optimizer(state.replace(params=params), state.tx)


def mean_field_codes(layers: Sequence[dict], x) -> jax.Array:
    """p(h = 1 | .) propagated deterministically up the stack (one replica's layers)."""
    return rbm.propagate_up(layers, x)
