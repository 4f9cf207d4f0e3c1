"""Multi-task learning: a shared trunk with two heads on digits, single-task vs multi-task.

One network computes a shared representation h = trunk(x) (an MLP) and two heads read it:
task 1 is the digit class (10 ways, logits W_1 h + b_1) and task 2 a property of the digit
(2 ways, logits W_2 h + b_2): "has a closed loop" (0, 6, 8, 9), the parity, or the >= 5 bit.
Training minimizes

    J(theta) = w_1 L_1 + w_2 L_2,   L_t = mean cross-entropy of head t,

so single-task training of task 1 is (w_1, w_2) = (1, 0), of task 2 is (0, 1), and
multi-task training is (1, lambda) (SPEC §4, "multi-task learning"; Caruana 1997). The head
whose weight is 0 receives no gradient, so with lambda = 0 the run is the single-task run
step for step. The comparison is made with a small training set, where a second task's
gradients through the shared trunk act as extra supervision, and repeated on the whole
training split, where they should matter less. A sweep of lambda shows how the weight of the
second task moves the accuracy of the first.
"""

from __future__ import annotations

import numpy as np

from lexicon import cli, data, multitask, optim, rules, runs, sweeping, train
from lexicon.report import Report, compare, mean_std, plot_curves
from lexicon.report import figure as report_figure

WORDS = {"holds": "helps", "reversed": "hurts", "undecided": "makes no clear difference"}
SWEEPABLE = ("lr",)  # --config.sweep='lr=3e-3,1e-2': every run's rates x seeds as one program


def get_config():
    config = train.defaults()
    config.seeds = 5
    config.epochs = 150  # passes over the small training set (the full split gets equal steps)
    config.batch_size = 32
    config.eval_every = 5  # epochs between evaluations of the test split (learning curves)
    config.train_size = 100  # examples in the small training set (the first of the train split)
    config.compare_full = True  # also compare single- vs multi-task on the whole train split
    config.second_task = "loop"  # loop | parity | ge5: the binary task of head 2
    config.trunk = (64, 64)  # widths of the shared hidden layers
    config.activation = "relu"  # relu | tanh | sigmoid: nonlinearity of the trunk
    config.lr = 1e-3  # eps of Adam (Alg. 8.7)
    config.weight = 1.0  # lambda of the multi-task run: J = L_1 + lambda L_2
    config.lambdas = (0.0, 0.1, 0.3, 1.0, 3.0, 10.0)  # the weights of the lambda study (small set)
    return config


RULES = {
    "train_size": rules.Range(10),
    "second_task": rules.Choice(*multitask.SECOND_TASKS),
    "activation": rules.Choice(*multitask.SKLEARN_ACTIVATIONS),
    "lr": rules.positive(),
    "weight": rules.nonnegative(),
    "trunk": rules.widths(),
    "lambdas": rules.Items(rules.nonnegative(), kind=float),
}


def check_config(config):
    """Cross-key rules; cli.run checks them before anything compiles."""
    n = cli.train_examples("digits", seed=config.data_seed)
    if config.train_size >= n:
        raise rules.ConfigError(
            f"config.train_size={config.train_size} must be smaller than the {n} training examples"
        )
    rules.check_batch_size(config, config.train_size, of="examples of config.train_size")


# --- runs -------------------------------------------------------------------------------------


def run(config, workdir, name, splits, weights, epochs):
    """Trains config.seeds replicas with loss weights (w_1, w_2); returns their results."""
    model = multitask.TwoHeadNet(trunk=tuple(config.trunk), activation=config.activation)

    def task(run):  # a builder: the rate is traced in a sweep
        return multitask.two_task_classifier(
            model, optim.adam(run.lr), splits.train["x"][:1], *weights
        )

    eval_every = max(1, round(config.eval_every * epochs / config.epochs))
    run_config = runs.derived(config, epochs=epochs, eval_every=eval_every)
    evals = {"test": splits.test}
    result = train.fit(run_config, task, splits.train, workdir / name, eval_splits=evals)
    tests = {f"test{t}": result.final(f"test/task{t}_accuracy") for t in (1, 2)}
    return {"result": result, **tests}


def paired_gain(multi, single) -> str:
    """Mean ± std over seeds of (multi - single); seeds share their initialization."""
    return mean_std(np.asarray(multi) - np.asarray(single))


def plot_sweep(lambdas, sweep, single_2):
    x = np.arange(len(lambdas))
    curves = {
        "task 1 (digit class)": (x, np.stack([sweep[w]["test1"] for w in lambdas], axis=1)),
        "task 2": (x, np.stack([sweep[w]["test2"] for w in lambdas], axis=1)),
    }
    fig = plot_curves(curves, xlabel="lambda (weight of task 2; 0 = single-task 1)")
    ax = fig.axes[0]
    ax.axhline(np.mean(single_2), color="C1", ls=":", lw=1, label="task 2 single-task")
    ax.set_xticks(x, [f"{w:g}" for w in lambdas])
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=8)
    return fig


def train_and_evaluate(config, workdir):
    check_config(config)
    lambdas = sorted({float(w) for w in config.lambdas} | {0.0, float(config.weight)})
    full = data.load("digits", seed=config.data_seed)
    full = full._replace(
        **{k: multitask.with_second_task(s, config.second_task) for k, s in full._asdict().items()}
    )
    small = full._replace(train={k: v[: config.train_size] for k, v in full.train.items()})
    budget = max(1, train.steps_per_epoch(config, config.train_size)) * config.epochs

    sweep = {
        w: run(config, workdir, f"small/lambda={w:g}", small, (1.0, w), config.epochs)
        for w in lambdas
    }
    single_1, multi = sweep[0.0], sweep[float(config.weight)]
    single_2 = run(config, workdir, "small/single-task-2", small, (0.0, 1.0), config.epochs)
    sizes = {"small": (small, single_1, multi, single_2)}
    if config.compare_full:
        n = len(full.train["y"])
        epochs = max(1, round(budget / max(1, train.steps_per_epoch(config, n))))
        runs_full = {"single-task-1": (1.0, 0.0), "multi-task": (1.0, config.weight)}
        runs_full["single-task-2"] = (0.0, 1.0)
        sizes["full"] = (full, *(run(config, workdir, f"full/{name}", full, weights, epochs)
                                 for name, weights in runs_full.items()))  # fmt: skip
    # scikit-learn MLPClassifier with the same hidden layers, one net per task (single-task)
    ref_1, ref_2 = multitask.reference_accuracies(
        small, config.trunk, config.activation, max_iter=3000
    )

    report = Report(workdir, "Multi-task learning: a shared trunk with two heads")
    report.text(
        f"Digits; trunk {tuple(config.trunk)} ({config.activation}) shared by head 1 (digit "
        f"class) and head 2 ({multitask.SECOND_TASKS[config.second_task]}). Adam (eps = "
        f"{config.lr}), batch {config.batch_size}, {budget} steps for every run; {config.seeds} "
        f"seeds (the same initializations in every run, so gains are paired per seed). Multi-task "
        f"uses J = L_1 + {config.weight:g} L_2. Test accuracy at the end of training."
    )
    rows = [
        (f"{size} ({len(sp.train['y'])})", task, mean_std(one[k]), mean_std(m[k]))
        + (paired_gain(m[k], one[k]),)
        for size, (sp, s1, m, s2) in sizes.items()
        for task, one, k in (("task 1: digit class", s1, "test1"), ("task 2", s2, "test2"))
    ]
    report.table(
        ["training set", "task", "single-task", "multi-task", "gain (multi - single, paired)"],
        rows,
        caption="Test accuracy, mean ± std over seeds",
    )
    report.table(
        ["task", "sklearn MLPClassifier, same layers, single-task, small training set"],
        [("task 1: digit class", f"{ref_1:.4f}"), ("task 2", f"{ref_2:.4f}")],
        caption="Reference",
    )
    curves = {
        "single-task 1": single_1["result"].curve("test/task1_accuracy"),
        f"multi-task (lambda={config.weight:g})": multi["result"].curve("test/task1_accuracy"),
    }
    title = f"task 1, {config.train_size} training examples"
    report.figure(
        plot_curves(curves, ylabel="test accuracy", title=title),
        "task1_curves",
        "test accuracy of task 1 during training (seed mean ± std)",
    )
    report.figure(
        plot_sweep(lambdas, sweep, single_2["test2"]),
        "lambda_sweep",
        f"test accuracy against lambda in J = L_1 + lambda L_2 ({config.train_size} training "
        "examples; seed mean ± std)",
    )
    report.table(
        ["lambda", "task 1 test accuracy", "task 2 test accuracy", "task 1 gain vs lambda = 0"],
        [
            (f"{w:g}", mean_std(sweep[w]["test1"]), mean_std(sweep[w]["test2"]))
            + (paired_gain(sweep[w]["test1"], single_1["test1"]),)
            for w in lambdas
        ],
        caption="Sweep of the weight of task 2 (small training set)",
    )
    best = max(lambdas, key=lambda w: np.mean(sweep[w]["test1"]))
    # Multi- against single-task, paired over seeds (the same initializations).
    judged = {size: [compare(m[k], single[k], paired=True, names=("multi-task", "single-task"))
                     for single, k in ((s1, "test1"), (s2, "test2"))]
              for size, (_, s1, m, s2) in sizes.items()}  # fmt: skip
    lines = [
        f"- {size} training set ({len(sizes[size][0].train['y'])} examples): on task 1 "
        f"multi-task {WORDS[judged[size][0].verdict]} ({judged[size][0].sentence}); on task 2 "
        f"it {WORDS[judged[size][1].verdict]} ({judged[size][1].sentence})."
        for size in sizes
    ]
    lines.append(f"- The best lambda for task 1 in the sweep is {best:g}.")
    report.text(
        "Caruana's claim is that a related task learned through a shared representation "
        "improves generalization, most when data are scarce. Here the labels of task 2 are a "
        "function of the digit class, so they carry no information that the digit labels "
        "lack; whatever multi-task training changes comes from how the second loss shapes the "
        "shared trunk. Measured here (a gain counts when its paired t-interval over seeds "
        "lies above 0):\n" + "\n".join(lines)
    )
    sweeping.note(report, config)
    report.write()
    source = "scikit-learn MLPClassifier, same layers, single-task"
    figures = {}  # in a sweep: one figure per grid point
    for size, (_, s1, m, s2) in sizes.items():
        prefix = "" if size == "small" else f"{size}/"
        for i, (t, single, reference) in enumerate(((1, s1, ref_1), (2, s2, ref_2))):
            key = f"test/task{t}_accuracy"
            # the reference is fit on the small training set
            held = dict(reference=reference, source=source) if size == "small" else {}
            figures[f"{prefix}task{t}/single"] = report_figure(single["result"], key, **held)
            # 'above' exactly when the report says multi-task helps
            figures[f"{prefix}task{t}/multi"] = runs.held_figure(
                m["result"], key, single[f"test{t}"], judged[size][i], "single-task, same seeds"
            )
    figures["task1_by_lambda"] = {
        f"{w:g}": report_figure(sweep[w]["result"], "test/task1_accuracy") for w in lambdas
    }
    return figures


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, RULES)
