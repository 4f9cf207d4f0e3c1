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

from lexicon import baselines, cli, data, rules, runs, train
from lexicon.distillation import GuidedStudent, fit_teacher, hint_layer_index, plan, with_teacher
from lexicon.report import Figure, Report, compare, mean_std, panels, plot_curves

LABELS = {
    "scratch": "student from scratch",
    "kd": "student + distillation",
    "hints_kd": "student + hints + distillation",
}
STUDENTS = tuple(LABELS)


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
    config.reference = True  # also fit scikit-learn's MLPClassifier with the student's layers
    return config


RULES = {
    "dataset": rules.Choice("digits", "mnist1d"),
    "teacher_epochs": rules.Range(1, cli.MAX_EPOCHS),
    "guided": rules.Range(1),
    "hint_epochs": rules.Range(0, cli.MAX_EPOCHS),
    "temperature": rules.positive(),
    "alpha": rules.probability(),
    "lr": rules.positive(),
    "train_size": rules.Range(0, 10_000_000),
    "teacher_hidden": rules.widths(),
    "student_hidden": rules.widths(),
}


def check_config(config):
    """Cross-key rules; cli.run checks them before anything compiles."""
    layers = len(config.student_hidden)
    if not 1 <= config.guided <= layers:
        raise rules.ConfigError(
            f"config.guided={config.guided} must name a hidden layer of the student, in "
            f"[1, {layers}]"
        )
    n = cli.train_examples(config.dataset, seed=config.data_seed)
    rules.check_batch_size(config, min(n, config.train_size or n))


# --- the experiment ----------------------------------------------------------------------------


def plot_students(results, hint_epochs):
    """Test accuracy of every student, and the hints student's test hint loss, per epoch."""
    fig, (left, right) = panels(2, size=(5.5, 3.8))
    accuracy = {LABELS[m]: runs.joined_curve(r, "test/accuracy") for m, r in results.items()}
    plot_curves(accuracy, ylabel="test accuracy", ax=left)
    hint = {LABELS["hints_kd"]: runs.joined_curve(results["hints_kd"], "test/hint_loss")}
    plot_curves(hint, ylabel="test hint loss L_HT (regressor on the guided layer)", ax=right)
    right.set_yscale("log")
    for ax in (left, right):
        if hint_epochs:
            ax.axvline(hint_epochs, color="grey", ls=":", lw=1)
        ax.set_xlabel("epoch (dotted: end of the hint stage)")
        ax.legend(fontsize=8)
    return fig


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

    # One teacher (seed config.seed).
    teacher, result = fit_teacher(runs.derived(config, seeds=1), config.teacher_hidden,
                                  splits.train, workdir / "teacher", lr=config.lr,
                                  epochs=config.teacher_epochs, num_classes=splits.num_classes,
                                  eval_splits={"test": splits.test})  # fmt: skip
    teacher_params = runs.replica(result.state.params)
    teacher_accuracy = float(result.final("test/accuracy")[0])
    layer = hint_layer_index(config.teacher_hidden)
    splits = with_teacher(splits, teacher, teacher_params, layer)
    hint_size = splits.train["hint"].shape[1]

    student = GuidedStudent(hidden, config.guided, hint_size, splits.num_classes)
    n = len(splits.train["y"])
    steps_per_epoch = train.steps_per_epoch(config, n)
    hint_epochs = min(config.hint_epochs, config.epochs - 1)
    staged, test = {}, {"test": splits.test}
    for mode in STUDENTS:
        stages = plan(student, splits.train["x"][:1], mode, config.epochs, hint_epochs,
                      config.lr, temperature=config.temperature, alpha=config.alpha)  # fmt: skip
        staged[mode] = train.stages(config, stages, splits.train, workdir / mode, eval_splits=test)
    results = {m: list(staged[m].values())[-1] for m in STUDENTS}  # the last stage of each
    accuracy = {m: results[m].final("test/accuracy") for m in STUDENTS}
    # The hints student trains its outputs for epochs - hint_epochs; the others, read at that
    # epoch, have had as many steps on the output loss (but no hint stage).
    output_epochs = config.epochs - hint_epochs
    same_output = {
        m: runs.value_at(runs.joined(staged[m]), "test/accuracy", output_epochs)
        for m in ("scratch", "kd")
    }
    same_output["hints_kd"] = accuracy["hints_kd"]
    agreement = {m: results[m].final("test/teacher_agreement") for m in STUDENTS}
    final_hint = {m: results[m].final("test/hint_loss") for m in STUDENTS}
    # scikit-learn's MLPClassifier with the student's layers, trained on the labels
    reference = (
        baselines.mlp_classifier(splits.train, splits.test, config.student_hidden, seed=0)
        if config.reference
        else None
    )

    student_params = runs.replica(results["scratch"].state.params)
    student_size = runs.parameter_count(
        {k: v for k, v in student_params.items() if k != "regressor"}
    )
    report = Report(workdir, "FitNets: hints and distillation from a wide, shallow teacher")
    report.text(
        f"`{config.dataset}` ({n} training examples). Teacher: ReLU MLP "
        f"{tuple(config.teacher_hidden)} ({runs.parameter_count(teacher_params)} parameters); hint "
        f"= its hidden layer {layer + 1} ({hint_size} units). Student: ReLU MLP {hidden} "
        f"({student_size} parameters, regressor not counted); guided layer = hidden layer "
        f"{config.guided}, regressor {hidden[config.guided - 1]} -> {hint_size}. Adam (eps = "
        f"{config.lr}), batch {config.batch_size}; every student trains {config.epochs} epochs "
        f"({config.epochs * steps_per_epoch} steps), the hints student spending the first "
        f"{hint_epochs} on L_HT. Distillation: T = {config.temperature}, alpha = "
        f"{config.alpha}. {config.seeds} student seeds, the same initializations for the three "
        "students; one teacher."
    )
    rows = [("teacher", f"{teacher_accuracy:.4f}", "", "1", "")] + [
        (
            LABELS[m],
            mean_std(accuracy[m]),
            mean_std(same_output[m]),
            mean_std(agreement[m]),
            mean_std(final_hint[m], 3) if m == "hints_kd" else "(regressor not trained)",
        )
        for m in STUDENTS
    ]
    if config.reference:
        name = "reference: sklearn MLPClassifier, student's layers"
        rows.append((name, f"{reference:.4f}", "", "", ""))
    report.table(
        [
            "network",
            f"test accuracy, same steps ({config.epochs} epochs)",
            f"test accuracy, same output-loss steps ({output_epochs} epochs)",
            "agreement with the teacher (test)",
            "test hint loss L_HT",
        ],
        rows,
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
