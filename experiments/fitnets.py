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

import jax
import numpy as np

from lexicon import baselines, cli, data, optim, train
from lexicon.distillation import GuidedStudent, hint_layer_index, plan, with_teacher
from lexicon.nn.layers import MLP
from lexicon.report import Figure, Report, compare, mean_std, panels, plot_curves
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
    return baselines.mlp_classifier(splits.train, splits.test, config.student_hidden, seed=0)


def accuracy_at(history, epoch: int) -> np.ndarray:
    """Per-seed test accuracy at the last evaluation made at or before ``epoch``."""
    records = [r for r in history if "test/accuracy" in r and r["epoch"] <= epoch]
    return np.asarray(records[-1]["test/accuracy"])


def plot_students(results, hint_epochs):
    """Test accuracy of every student, and the hints student's test hint loss, per epoch."""
    fig, (left, right) = panels(2, size=(5.5, 3.8))
    accuracy = {LABELS[m]: joined_curve(r, "test/accuracy") for m, r in results.items()}
    plot_curves(accuracy, ylabel="test accuracy", ax=left)
    hint = {LABELS["hints_kd"]: joined_curve(results["hints_kd"], "test/hint_loss")}
    plot_curves(hint, ylabel="test hint loss L_HT (regressor on the guided layer)", ax=right)
    right.set_yscale("log")
    for ax in (left, right):
        if hint_epochs:
            ax.axvline(hint_epochs, color="grey", ls=":", lw=1)
        ax.set_xlabel("epoch (dotted: end of the hint stage)")
        ax.legend(fontsize=8)
    return fig


def joined_curve(staged: dict, key: str):
    """(epochs, values (seeds, points)) of ``key`` over the stages of one student."""
    parts = [result.curve(key) for result in staged.values()]
    return np.concatenate([x for x, _ in parts]), np.concatenate([v for _, v in parts], axis=1)


def claim_line(name: str, a, b, names) -> str:
    """A claim that student ``a`` beats ``b``: paired over seeds (the same initializations)."""
    verdict = compare(a, b, paired=True, names=names)
    holds = {"holds": "holds", "reversed": "is reversed"}.get(verdict.verdict, "is not resolved")
    return f"{name}: {verdict.sentence}; the claim {holds}"


def train_and_evaluate(config, workdir):
    hidden = tuple(config.student_hidden)
    check_config(config)
    splits = data.load(config.dataset, seed=config.data_seed, train_size=config.train_size or None)
    if config.dataset == "mnist1d":
        splits = data.standardize(splits)
    num_classes = splits.num_classes

    teacher, teacher_params, teacher_accuracy = train_teacher(config, workdir, splits)
    layer = hint_layer_index(config.teacher_hidden)
    splits = with_teacher(splits, teacher, teacher_params, layer)
    hint_size = splits.train["hint"].shape[1]

    student = GuidedStudent(hidden, config.guided, hint_size, num_classes)
    n = len(splits.train["y"])
    steps_per_epoch = train.steps_per_epoch(config, n)
    hint_epochs = min(config.hint_epochs, config.epochs - 1)
    runs, results, staged, test = {}, {}, {}, {"test": splits.test}
    for mode in STUDENTS:
        stages = plan(student, splits.train["x"][:1], mode, config.epochs, hint_epochs,
                      config.lr, temperature=config.temperature, alpha=config.alpha)  # fmt: skip
        staged[mode] = train.stages(config, stages, splits.train, workdir / mode, eval_splits=test)
        runs[mode], results[mode] = joined(staged[mode]), list(staged[mode].values())[-1]
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
        plot_students(staged, hint_epochs),
        "curves",
        "test accuracy and hint loss during training (seed mean ± std); after the hint stage "
        "nothing trains the regressor, so the rise of L_HT shows the guided layer leaving the "
        "hint as distillation takes over",
    )
    same = {"same steps": accuracy, "same output-loss steps": same_output}
    claims = {  # claim -> (student, against, budget)
        "Hinton et al., distillation beats labels alone": ("kd", "scratch", "same steps"),
        "Romero et al., hints then distillation beat it": ("hints_kd", "kd", "same steps"),
        "Romero et al., the same (hint stage extra)": ("hints_kd", "kd", "same output-loss steps"),
        "hints + distillation against the scratch student": ("hints_kd", "scratch", "same steps"),
    }  # fmt: skip
    lines = [
        claim_line(f"{name} ({steps})", same[steps][a], same[steps][b], (a, b))
        for name, (a, b, steps) in claims.items()
    ]
    report.text(
        "Claims at this scale (a claim holds when the paired t-interval of its gain over "
        "seeds lies above 0):\n" + "\n".join(f"- {line}" for line in lines)
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
