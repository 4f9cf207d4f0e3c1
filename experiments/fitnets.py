"""FitNets: a wide, shallow teacher trains a deep, thin student with hints and distillation.

A teacher net, wide and shallow, is trained first. A deep, thin student then learns from it
(SPEC §4, "FitNets"; Romero et al. 2015) in two stages:

1. Hint training. The student's middle ("guided") hidden layer v_g(x) is mapped by a learned
   linear regressor r(v) = W_r v + b_r to the size of the teacher's middle ("hint") hidden
   layer u_h(x), and the student's layers up to the guided one, with the regressor, minimize

       L_HT = 1/2 mean_n || u_h(x_n) - r(v_g(x_n)) ||^2.

   The layers above the guided one receive no gradient in this stage.
2. Knowledge distillation (Hinton et al. 2015). With p^T = softmax(z_teacher / T) and
   q^T = softmax(z_student / T) at temperature T, the whole student minimizes

       L_KD = alpha T^2 H(p^T, q^T) + (1 - alpha) H(y, softmax(z_student)),

   H(p, q) = -sum_c p_c log q_c. With the T^2 factor the soft term's gradient is
   T (q^T - p^T) per logit, which tends to (z_student - z_teacher) / C for large T (C
   classes, zero-mean logits), so it does not fade as T grows. Stage 2 starts from a fresh
   optimizer state (the two stages run through train.stages).

Three students with the same architecture and initializations are compared under the same
number of steps: from scratch (cross-entropy on labels only), distillation only (L_KD from
the start), and hints then distillation (L_HT for the first epochs, then L_KD).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from lexicon import cli, data, losses, optim, train
from lexicon.nn.layers import MLP
from lexicon.report import Figure, Report, band, mean_std
from lexicon.rules import (
    Choice,
    ConfigError,
    Range,
    check_batch_size,
    positive,
    probability,
    widths,
)

STUDENTS = ("scratch", "kd", "hints_kd")
LABELS = {
    "scratch": "student from scratch",
    "kd": "student + distillation",
    "hints_kd": "student + hints + distillation",
}


def get_config():
    config = train.defaults()
    config.seeds = 5
    config.epochs = 40  # total epochs of every student (hint stage included)
    config.batch_size = 32
    config.dataset = "digits"  # digits | mnist1d
    config.teacher_hidden = (512,)  # the wide, shallow teacher: its hidden ReLU layers
    config.teacher_epochs = 30  # epochs of the teacher
    config.student_hidden = (16,) * 8  # the deep, thin student: its hidden ReLU layers
    config.guided = 4  # the student's guided layer: the output of this hidden layer (1-based)
    config.hint_epochs = 10  # stage 1 (hint training) of the hints student
    config.temperature = 4.0  # T of the softened softmax
    config.alpha = 0.9  # weight of the soft (teacher) term in L_KD; 1 - alpha on the labels
    config.lr = 3e-3  # eps of Adam (Alg. 8.7), teacher and students
    config.train_size = 0  # first examples of the training split to keep; 0 = all
    return config


RULES = {
    "dataset": Choice("digits", "mnist1d"),
    "teacher_epochs": Range(1, cli.MAX_EPOCHS),
    "guided": Range(1),
    "hint_epochs": Range(0, cli.MAX_EPOCHS),
    "temperature": positive(),
    "alpha": probability(),
    "lr": positive(),
    "train_size": Range(0, 10_000_000),
    "teacher_hidden": widths(),
    "student_hidden": widths(),
}


def check_config(config):
    """Cross-key rules; cli.run checks them before anything compiles."""
    layers = len(config.student_hidden)
    if not 1 <= config.guided <= layers:
        raise ConfigError(
            f"config.guided={config.guided} must name a hidden layer of the student, in "
            f"[1, {layers}]"
        )
    n = cli.train_examples(config.dataset, seed=config.data_seed)
    check_batch_size(config, min(n, config.train_size or n))


# --- losses ------------------------------------------------------------------------------------


def hint_loss(predicted_hint, hint):
    """L_HT = 1/2 mean_n ||u_h(x_n) - r(v_g(x_n))||^2."""
    return 0.5 * losses.mean_squared_error(predicted_hint, hint)


def distillation_loss(student_logits, teacher_logits, labels, temperature: float, alpha: float):
    """L_KD = alpha T^2 H(p^T, q^T) + (1 - alpha) H(y, q), averaged over the batch.

    Returns (L_KD, soft term H(p^T, q^T), hard term H(y, q)).
    """
    soft_targets = jax.nn.softmax(teacher_logits / temperature)
    soft = losses.softmax_cross_entropy(student_logits / temperature, soft_targets)
    hard = train.cross_entropy(student_logits, labels)
    return alpha * temperature**2 * soft + (1 - alpha) * hard, soft, hard


# --- the networks ------------------------------------------------------------------------------


class Student(nn.Module):
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


# --- the students' stages ----------------------------------------------------------------------


def student_task(config, model, example_input, objective: str) -> train.Task:
    """A student trained on one objective: "labels" (cross-entropy), "hints" (L_HT) or
    "distill" (L_KD). Batches carry the teacher's logits and hint layer, computed once; every
    objective reports both losses."""
    tx = optim.adam(config.lr)

    def init(key):
        params = model.init(key, example_input)["params"]
        return train.TrainState.create(apply_fn=model.apply, params=params, tx=tx)

    def loss(params, model_state, batch, key):
        logits, predicted_hint = model.apply({"params": params}, batch["x"])
        hint = hint_loss(predicted_hint, batch["hint"])
        if objective == "labels":
            output = train.cross_entropy(logits, batch["y"])
        else:
            output = distillation_loss(
                logits, batch["teacher_logits"], batch["y"], config.temperature, config.alpha
            )[0]
        metrics = {"hint_loss": hint, "output_loss": output}
        metrics["accuracy"] = train.accuracy(logits, batch["y"])
        return (hint if objective == "hints" else output), (metrics, model_state)

    def evaluate(state, split):
        logits, predicted_hint = model.apply({"params": state.params}, split["x"])
        return {
            "accuracy": train.accuracy(logits, split["y"]),
            "loss": train.cross_entropy(logits, split["y"]),
            "hint_loss": hint_loss(predicted_hint, split["hint"]),
            "teacher_agreement": jnp.mean(
                jnp.argmax(logits, -1) == jnp.argmax(split["teacher_logits"], -1)
            ),
        }

    return train.Task(init=init, make_step=train.gradient_step(loss), evaluate=evaluate)


def plan(config, model, example_input, student: str, hint_epochs: int) -> list[train.Stage]:
    """The stages of a student, config.epochs in all: scratch trains on the labels, kd on L_KD;
    hints_kd spends its first hint_epochs on L_HT, then L_KD from a fresh Adam state."""

    def stage(objective, epochs, tx=None):
        task = student_task(config, model, example_input, objective)
        return train.Stage(objective, task, epochs, tx)

    if student == "scratch":
        return [stage("labels", config.epochs)]
    if student == "kd" or not hint_epochs:
        return [stage("distill", config.epochs)]
    distill = stage("distill", config.epochs - hint_epochs, optim.adam(config.lr))
    return [stage("hints", hint_epochs), distill]


def joined(results: dict) -> list[dict]:
    """One history over the stages of a student (train.stages counts epochs across them)."""
    return [record for result in results.values() for record in result.history]


# --- the experiment ----------------------------------------------------------------------------


def parameter_count(params) -> int:
    return int(sum(np.prod(p.shape) for p in jax.tree.leaves(params)))


def train_teacher(config, workdir, splits):
    """One teacher (seed config.seed); returns its model, params and test accuracy."""
    model = MLP(features=(*config.teacher_hidden, splits.num_classes), activation="relu")
    teacher_config = config.copy_and_resolve_references()
    teacher_config.seeds, teacher_config.epochs = 1, config.teacher_epochs
    task = train.classifier(model, optim.adam(config.lr), splits.train["x"][:1])
    result = train.fit(
        teacher_config, task, splits.train, workdir / "teacher", eval_splits={"test": splits.test}
    )
    params = jax.tree.map(lambda p: p[0], result.state.params)
    return model, params, float(result.final("test/accuracy")[0])


def reference_accuracy(config, splits) -> float:
    """scikit-learn's MLPClassifier with the student's layers, trained on the labels."""
    from sklearn.neural_network import MLPClassifier

    model = MLPClassifier(hidden_layer_sizes=tuple(config.student_hidden), max_iter=2000)
    model.set_params(random_state=0)
    model.fit(splits.train["x"], splits.train["y"])
    return float(model.score(splits.test["x"], splits.test["y"]))


def accuracy_at(history, epoch: int) -> np.ndarray:
    """Per-seed test accuracy at the last evaluation made at or before ``epoch``."""
    records = [r for r in history if "test/accuracy" in r and r["epoch"] <= epoch]
    return np.asarray(records[-1]["test/accuracy"])


def plot_curves(runs, hint_epochs):
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    for i, (name, history) in enumerate(runs.items()):
        records = [r for r in history if "test/accuracy" in r]
        epochs = [r["epoch"] for r in records]
        accuracy = np.array([r["test/accuracy"] for r in records]).T
        band(left, epochs, accuracy, LABELS[name], color=f"C{i}")
        if name == "hints_kd":
            hint = np.array([r["test/hint_loss"] for r in records]).T
            band(right, epochs, hint, LABELS[name], color=f"C{i}")
    for ax in (left, right):
        if hint_epochs:
            ax.axvline(hint_epochs, color="grey", ls=":", lw=1)
        ax.set_xlabel("epoch (dotted: end of the hint stage)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    left.set_ylabel("test accuracy")
    right.set_ylabel("test hint loss L_HT (regressor on the guided layer)")
    right.set_yscale("log")
    fig.tight_layout()
    return fig


def claim_line(name: str, gain: np.ndarray) -> str:
    mean, std = float(np.mean(gain)), float(np.std(gain))
    holds = "holds" if mean > std else ("is reversed" if mean < -std else "is not resolved")
    return f"{name}: gain {mean_std(gain)} test accuracy (paired over seeds), the claim {holds}"


def train_and_evaluate(config, workdir):
    hidden = tuple(config.student_hidden)
    if not 1 <= config.guided <= len(hidden):
        raise ConfigError(
            f"config.guided={config.guided} must name a hidden layer of the student, in "
            f"[1, {len(hidden)}]"
        )
    splits = data.load(config.dataset, seed=config.data_seed, train_size=config.train_size or None)
    if config.dataset == "mnist1d":
        splits = data.standardize(splits)
    num_classes = splits.num_classes

    teacher, teacher_params, teacher_accuracy = train_teacher(config, workdir, splits)
    layer = hint_layer_index(config.teacher_hidden)
    with_teacher = {}
    for name, split in splits._asdict().items():
        logits, hint = teacher_outputs(teacher, teacher_params, split["x"], layer)
        with_teacher[name] = {
            **split,
            "teacher_logits": np.asarray(logits),
            "hint": np.asarray(hint),
        }
    splits = splits._replace(**with_teacher)
    hint_size = splits.train["hint"].shape[1]

    student = Student(
        hidden=hidden, guided=config.guided, hint_size=hint_size, num_classes=num_classes
    )
    n = len(splits.train["y"])
    steps_per_epoch = train.steps_per_epoch(config, n)
    hint_epochs = min(config.hint_epochs, config.epochs - 1)
    runs, results, test = {}, {}, {"test": splits.test}
    for mode in STUDENTS:
        stages = plan(config, student, splits.train["x"][:1], mode, hint_epochs)
        staged = train.stages(config, stages, splits.train, workdir / mode, eval_splits=test)
        runs[mode], results[mode] = joined(staged), list(staged.values())[-1]
    accuracy = {m: results[m].final("test/accuracy") for m in STUDENTS}
    # The hints student trains its outputs for epochs - hint_epochs; the others, read at that
    # epoch, have had as many steps on the output loss (but no hint stage).
    output_epochs = config.epochs - hint_epochs
    same_output = {m: accuracy_at(runs[m], output_epochs) for m in ("scratch", "kd")}
    same_output["hints_kd"] = accuracy["hints_kd"]
    agreement = {m: results[m].final("test/teacher_agreement") for m in STUDENTS}
    final_hint = {m: results[m].final("test/hint_loss") for m in STUDENTS}
    reference = reference_accuracy(config, splits)

    student_params = jax.tree.map(lambda p: p[0], results["scratch"].state.params)
    student_size = parameter_count({k: v for k, v in student_params.items() if k != "regressor"})
    report = Report(workdir, "FitNets: hints and distillation from a wide, shallow teacher")
    report.text(
        f"`{config.dataset}` ({n} training examples). Teacher: ReLU MLP "
        f"{tuple(config.teacher_hidden)} ({parameter_count(teacher_params)} parameters); hint "
        f"= its hidden layer {layer + 1} ({hint_size} units). Student: ReLU MLP {hidden} "
        f"({student_size} parameters, regressor not counted); guided layer = hidden layer "
        f"{config.guided}, regressor {hidden[config.guided - 1]} -> {hint_size}. Adam (eps = "
        f"{config.lr}), batch {config.batch_size}; every student trains {config.epochs} epochs "
        f"({config.epochs * steps_per_epoch} steps), the hints student spending the first "
        f"{hint_epochs} on L_HT. Distillation: T = {config.temperature}, alpha = "
        f"{config.alpha}. {config.seeds} student seeds, the same initializations for the three "
        "students; one teacher."
    )
    report.table(
        [
            "network",
            f"test accuracy, same steps ({config.epochs} epochs)",
            f"test accuracy, same output-loss steps ({output_epochs} epochs)",
            "agreement with the teacher (test)",
            "test hint loss L_HT",
        ],
        [("teacher", f"{teacher_accuracy:.4f}", "", "1", "")]
        + [
            (
                LABELS[m],
                mean_std(accuracy[m]),
                mean_std(same_output[m]),
                mean_std(agreement[m]),
                mean_std(final_hint[m], 3) if m == "hints_kd" else "(regressor not trained)",
            )
            for m in STUDENTS
        ]
        + [("reference: sklearn MLPClassifier, student's layers", f"{reference:.4f}", "", "", "")],
        caption="After training, mean ± std over student seeds",
    )
    report.figure(
        plot_curves(runs, hint_epochs),
        "curves",
        "test accuracy and hint loss during training (seed mean ± std); after the hint stage "
        "nothing trains the regressor, so the rise of L_HT shows the guided layer leaving the "
        "hint as distillation takes over",
    )
    lines = [
        claim_line(
            "Hinton et al., distillation beats training on labels alone (same steps)",
            accuracy["kd"] - accuracy["scratch"],
        ),
        claim_line(
            "Romero et al., hints then distillation beat distillation alone (same steps)",
            accuracy["hints_kd"] - accuracy["kd"],
        ),
        claim_line(
            "Romero et al., the same with as many output-loss steps (hint stage extra)",
            same_output["hints_kd"] - same_output["kd"],
        ),
        claim_line(
            "hints + distillation against the student from scratch (same steps)",
            accuracy["hints_kd"] - accuracy["scratch"],
        ),
    ]
    report.text(
        "Claims at this scale (a claim holds when its mean gain exceeds its std over "
        "seeds):\n" + "\n".join(f"- {line}" for line in lines)
    )
    report.write()
    return {
        "teacher_accuracy": teacher_accuracy,
        "test_accuracy": {
            m: Figure(a, reference=reference, source="scikit-learn MLPClassifier, student layers")
            for m, a in accuracy.items()
        },
        "teacher_agreement": agreement,
        "hint_loss": final_hint,
        "same_output_steps_accuracy": same_output,
        "reference": reference,
    }


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, RULES)
