"""Greedy supervised layer-wise pretraining (document 001; SPEC §14), and frozen layers.

The document's recipe splits the training of a deep net into parts solved one at a time: train
hidden layer 1 with an output head on the labels; freeze it; add hidden layer 2 with a new
head and train only these two; and so on up to layer L; then fine-tune every layer together
(the last head on top). [add] The supervised variant follows Bengio et al. 2007, "Greedy
layer-wise training of deep networks", section 4.

``DeepClassifier(depth=k)`` is the net cut at hidden layer k, read out by head k. Every depth
has the same parameters (all L layers and L heads exist from the start), so the stages of a
plan pass one state along and differ only in which head makes the logits and which parameters
``freeze`` lets the optimizer change.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import optax

from lexicon import train
from lexicon.nn import activations
from lexicon.nn import init as initializers

TRAIN, FROZEN = "train", "frozen"


def layer_name(k: int) -> str:
    """Hidden layer k (1-based) in the params."""
    return f"layer_{k}"


def head_name(k: int) -> str:
    """The output head read on top of hidden layer k (1-based)."""
    return f"head_{k}"


class DeepClassifier(nn.Module):
    """h_k = g(W_k h_{k-1} + b_k), h_0 = x; logits = V_d h_d + c_d read by head d = ``depth``.

    Attributes:
      hidden: widths of the L hidden layers.
      num_classes: outputs of every head.
      activation: g, a name from :data:`lexicon.nn.activations.NAMES`.
      depth: d, the hidden layer the logits are read from (0 or None: L).
      kernel_init: initializer name from :data:`lexicon.nn.init.NAMES` (Glorot by default).

    Initialization creates all L layers and L heads whatever ``depth`` is, so every depth
    shares one parameter tree and one seed gives the same parameters at every depth.
    """

    hidden: Sequence[int]
    num_classes: int
    activation: str = "sigmoid"
    depth: int | None = None
    kernel_init: str = "glorot_uniform"

    @nn.compact
    def __call__(self, x, train: bool = False):
        del train  # no dropout or batch norm
        g = activations.get(self.activation)
        kernel_init = initializers.get(self.kernel_init)
        depth = self.depth or len(self.hidden)
        layers = [
            nn.Dense(width, kernel_init=kernel_init, name=layer_name(k + 1))
            for k, width in enumerate(self.hidden)
        ]
        heads = [
            nn.Dense(self.num_classes, kernel_init=kernel_init, name=head_name(k + 1))
            for k in range(len(self.hidden))
        ]
        h = x.reshape(x.shape[0], -1)
        logits = None
        for k, layer in enumerate(layers):
            if k >= depth and not self.is_initializing():
                break
            h = g(layer(h))
            head_logits = heads[k](h)
            if k + 1 == depth:
                logits = head_logits
        return logits


def labels(params, trainable: Callable[[str], bool]):
    """The tree of ``params`` with TRAIN on every leaf of a top-level module for which
    ``trainable(name)`` holds, FROZEN elsewhere (the labels of ``optax.multi_transform``)."""
    return {
        name: jax.tree.map(lambda _, name=name: TRAIN if trainable(name) else FROZEN, sub)
        for name, sub in params.items()
    }


def freeze(tx: optax.GradientTransformation, trainable: Callable[[str], bool]):
    """``tx`` on the modules where ``trainable(name)`` holds; the others get a zero update
    (``optax.set_to_zero``), so they stay bitwise as they were."""
    return optax.multi_transform(
        {TRAIN: tx, FROZEN: optax.set_to_zero()}, lambda params: labels(params, trainable)
    )


def greedy_plan(
    model: DeepClassifier,
    make_tx: Callable[[], optax.GradientTransformation],
    example_input,
    *,
    layer_epochs: int,
    fine_tune_epochs: int,
) -> list[train.Stage]:
    """The stages of greedy supervised pretraining of ``model`` (its ``depth`` is ignored).

    Stage ``layer_k`` (k = 1 .. L) trains layer k and head k on the labels through the frozen
    layers 1 .. k-1, for ``layer_epochs``; stage ``fine_tune`` then trains every layer and
    head L together, for ``fine_tune_epochs`` (none if 0). Each stage starts a fresh
    optimizer state from ``make_tx()``; heads 1 .. L-1 are left frozen in the fine-tune.
    """
    depth = len(model.hidden)
    plan = []
    for k in range(1, depth + 1):
        trainable = {layer_name(k), head_name(k)}
        tx = freeze(make_tx(), trainable.__contains__)
        task = train.classifier(model.clone(depth=k), tx, example_input)
        plan.append(train.Stage(layer_name(k), task, layer_epochs, tx))
    if fine_tune_epochs:
        plan.append(
            train.Stage("fine_tune", *end_to_end(model, make_tx, example_input, fine_tune_epochs))
        )
    return plan


def end_to_end(model, make_tx, example_input, epochs: int):
    """(task, epochs, tx) of training every layer and the last head together: the fine-tune
    stage, and the end-to-end baseline when it is the only stage."""
    depth = len(model.hidden)
    trainable = {layer_name(k) for k in range(1, depth + 1)} | {head_name(depth)}
    tx = freeze(make_tx(), trainable.__contains__)
    return train.classifier(model.clone(depth=depth), tx, example_input), epochs, tx
