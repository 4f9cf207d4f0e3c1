"""Multi-task learning: a shared trunk with two heads, trained on a weighted sum of losses.

One network computes a shared representation h = trunk(x) and two heads read it (SPEC §4,
"multi-task learning"; Caruana 1997); training minimizes J = w_1 L_1 + w_2 L_2 with L_t the
mean cross-entropy of head t, so (1, 0) and (0, 1) are the single-task runs. On digits the
second task is a binary property of the digit class: "has a closed loop" (0, 6, 8, 9), the
parity, or the >= 5 bit (:func:`second_labels`).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from lexicon import train
from lexicon.losses import softmax_cross_entropy_with_integer_labels
from lexicon.nn.layers import MLP

SECOND_TASKS = {  # name -> what the binary label of task 2 says about the digit
    "loop": "has a closed loop (0, 6, 8, 9)",
    "parity": "digit is odd",
    "ge5": "digit is >= 5",
}
LOOP_DIGITS = (0, 6, 8, 9)
SKLEARN_ACTIVATIONS = {"relu": "relu", "tanh": "tanh", "sigmoid": "logistic"}  # ours -> theirs


def second_labels(digit_labels, task: str):
    """The binary label of task 2 as a function of the digit class (int32, 0 or 1)."""
    digit_labels = jnp.asarray(digit_labels)
    if task == "loop":
        label = jnp.isin(digit_labels, jnp.asarray(LOOP_DIGITS))
    elif task == "parity":
        label = digit_labels % 2 == 1
    elif task == "ge5":
        label = digit_labels >= 5
    else:
        raise ValueError(f"unknown second task {task!r}; choose one of {', '.join(SECOND_TASKS)}")
    return label.astype(jnp.int32)


def with_second_task(split: dict, task: str) -> dict:
    """The split with "y2", the label of the binary ``task``, beside the digit class "y"."""
    return {**split, "y2": np.asarray(second_labels(split["y"], task))}


class TwoHeadNet(nn.Module):
    """h = trunk(x) shared; returns (logits of task 1, logits of task 2)."""

    trunk: tuple[int, ...]
    activation: str
    num_classes: int = 10
    num_classes_2: int = 2

    @nn.compact
    def __call__(self, x, train: bool = False):
        h = MLP(
            features=self.trunk,
            activation=self.activation,
            output_activation=self.activation,
            name="trunk",
        )(x)
        return (
            nn.Dense(self.num_classes, name="head_1")(h),
            nn.Dense(self.num_classes_2, name="head_2")(h),
        )


def multitask_loss(logits_1, logits_2, y1, y2, w1: float, w2: float):
    """J = w_1 L_1 + w_2 L_2 with L_t the mean cross-entropy of head t; returns (J, L_1, L_2)."""
    loss_1 = softmax_cross_entropy_with_integer_labels(logits_1, y1)
    loss_2 = softmax_cross_entropy_with_integer_labels(logits_2, y2)
    return w1 * loss_1 + w2 * loss_2, loss_1, loss_2


def two_task_classifier(model, tx, example_input, w1: float, w2: float) -> train.Task:
    """A Task training both heads of a :class:`TwoHeadNet` with loss w_1 L_1 + w_2 L_2 on
    batches with "y" (task 1) and "y2" (task 2); it reports the loss and accuracy of both."""

    def init(key):
        params = model.init(key, example_input)["params"]
        return train.TrainState.create(apply_fn=model.apply, params=params, tx=tx)

    def metrics_of(params, batch):
        logits_1, logits_2 = model.apply({"params": params}, batch["x"])
        total, loss_1, loss_2 = multitask_loss(logits_1, logits_2, batch["y"], batch["y2"], w1, w2)
        return total, {
            "task1_loss": loss_1,
            "task2_loss": loss_2,
            "task1_accuracy": train.accuracy(logits_1, batch["y"]),
            "task2_accuracy": train.accuracy(logits_2, batch["y2"]),
        }

    def objective(params, model_state, batch, key):
        total, metrics = metrics_of(params, batch)
        return total, (metrics, model_state)

    def evaluate(state, split):
        return metrics_of(state.params, split)[1]

    return train.Task(init=init, make_step=train.gradient_step(objective), evaluate=evaluate)


def reference_accuracies(splits, hidden, activation: str, **options) -> tuple[float, float]:
    """Single-task references: scikit-learn's MLPClassifier with the hidden layers ``hidden``
    and the trunk's ``activation`` (relu, tanh or sigmoid), one net per task ("y", then "y2"),
    fitted on ``splits.train`` and scored on ``splits.test`` (``options``: those of
    ``baselines.mlp_classifier``)."""
    from lexicon import baselines

    def task(split, key):
        return {"x": split["x"], "y": split[key]}

    return tuple(
        baselines.mlp_classifier(
            task(splits.train, key),
            task(splits.test, key),
            hidden,
            activation=SKLEARN_ACTIVATIONS[activation],
            **options,
        )
        for key in ("y", "y2")
    )
