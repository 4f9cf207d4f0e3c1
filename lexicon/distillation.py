"""FitNets: hint training and knowledge distillation of a deep, thin student.

A deep, thin student learns from a trained teacher (SPEC §4, "FitNets"; Romero et al. 2015):
first its layers up to the guided one, with a linear regressor r(v) = W_r v + b_r, minimize
the hint loss L_HT = 1/2 mean_n || u_h(x_n) - r(v_g(x_n)) ||^2 against the teacher's hint
layer u_h; then the whole student minimizes the distillation loss of Hinton et al. (2015),
L_KD = alpha T^2 H(p^T, q^T) + (1 - alpha) H(y, softmax(z_student)) (lexicon.losses).
:class:`GuidedStudent` is the student cut at its guided layer, :func:`student_task` one
stage's task, :func:`plan` the stages of the usual students.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from lexicon import losses, optim, runs, train
from lexicon.losses import distillation_loss, hint_loss
from lexicon.nn.layers import MLP


class GuidedStudent(nn.Module):
    """A deep, thin MLP cut at the guided layer, with the hint regressor on the side.

    Returns (logits, r(v_g(x))); the regressor is used only by the hint loss.
    """

    hidden: tuple[int, ...]
    guided: int
    hint_size: int
    num_classes: int = 10

    @nn.compact
    def __call__(self, x, train: bool = False):
        guided = MLP(
            features=self.hidden[: self.guided],
            activation="relu",
            output_activation="relu",
            name="lower",
        )(x)
        logits = MLP(
            features=(*self.hidden[self.guided :], self.num_classes),
            activation="relu",
            name="upper",
        )(guided)
        return logits, nn.Dense(self.hint_size, name="regressor")(guided)


def hint_layer_index(hidden) -> int:
    """The middle hidden layer (0-based) of a net, where the hint is read."""
    return (len(hidden) - 1) // 2


def teacher_outputs(model, params, x, layer: int):
    """(logits, activations of hidden layer ``layer``) of the teacher MLP."""
    logits, state = model.apply({"params": params}, x, mutable=["intermediates"])
    return logits, state["intermediates"]["activations"][layer]


def with_teacher(splits, model, params, layer: int):
    """``splits`` with the teacher's logits ("teacher_logits") and hidden layer ``layer``
    ("hint") added to every split, computed once."""
    added = {}
    for name, split in splits._asdict().items():
        logits, hint = teacher_outputs(model, params, split["x"], layer)
        added[name] = {**split, "teacher_logits": np.asarray(logits), "hint": np.asarray(hint)}
    return splits._replace(**added)


def student_task(
    model, tx, example_input, objective: str, temperature: float = 1.0, alpha: float = 0.5
) -> train.Task:
    """A :class:`GuidedStudent` trained on one objective: "labels" (cross-entropy), "hints"
    (L_HT) or "distill" (L_KD at ``temperature``, weight ``alpha`` on the soft term). Batches
    carry the teacher's logits and hint layer (:func:`with_teacher`); every objective reports
    both losses, and evaluation the agreement with the teacher."""

    def init(key):
        params = model.init(key, example_input)["params"]
        return train.TrainState.create(apply_fn=model.apply, params=params, tx=tx)

    def loss(params, model_state, batch, key):
        logits, predicted_hint = model.apply({"params": params}, batch["x"])
        hint = hint_loss(predicted_hint, batch["hint"])
        if objective == "labels":
            output = losses.softmax_cross_entropy_with_integer_labels(logits, batch["y"])
        else:
            output = distillation_loss(
                logits, batch["teacher_logits"], batch["y"], temperature, alpha
            )[0]
        metrics = {"hint_loss": hint, "output_loss": output}
        metrics["accuracy"] = train.accuracy(logits, batch["y"])
        return (hint if objective == "hints" else output), (metrics, model_state)

    def evaluate(state, split):
        logits, predicted_hint = model.apply({"params": state.params}, split["x"])
        return {
            "accuracy": train.accuracy(logits, split["y"]),
            "loss": losses.softmax_cross_entropy_with_integer_labels(logits, split["y"]),
            "hint_loss": hint_loss(predicted_hint, split["hint"]),
            "teacher_agreement": jnp.mean(
                jnp.argmax(logits, -1) == jnp.argmax(split["teacher_logits"], -1)
            ),
        }

    return train.Task(init=init, make_step=train.gradient_step(loss), evaluate=evaluate)


def plan(
    model, example_input, student: str, epochs: int, hint_epochs: int, lr: float, **distill
) -> list[train.Stage]:
    """The train.stages of a student trained by Adam(lr), ``epochs`` in all: "scratch" trains
    on the labels, "kd" on L_KD; "hints_kd" spends its first ``hint_epochs`` on L_HT, then
    L_KD from a fresh Adam state. ``distill``: temperature and alpha of L_KD."""

    def stage(objective, epochs, tx=None):
        task = student_task(model, optim.adam(lr), example_input, objective, **distill)
        return train.Stage(objective, task, epochs, tx)

    if student == "scratch":
        return [stage("labels", epochs)]
    if student == "kd" or not hint_epochs:
        return [stage("distill", epochs)]
    return [stage("hints", hint_epochs), stage("distill", epochs - hint_epochs, optim.adam(lr))]


def fit_teacher(
    config, hidden, data: dict, workdir, *, lr: float, epochs: int, num_classes: int = 10, **fit
):
    """A ReLU MLP teacher with hidden layers ``hidden``, trained on the labels of ``data`` by
    Adam(lr) for ``epochs`` epochs through ``train.fit`` (``fit``: its keyword arguments, such
    as eval_splits). It does not depend on the students' keys, so it stays out of a grid sweep
    (config.sweep). Returns (model, Result)."""
    model = MLP(features=(*hidden, num_classes), activation="relu")
    task = train.classifier(model, optim.adam(lr), data["x"][:1])
    teacher_config = runs.derived(config, epochs=epochs, sweep="")
    return model, train.fit(teacher_config, task, data, workdir, **fit)
