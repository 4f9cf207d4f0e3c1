"""Curriculum learning on digits: easy-first vs random order vs hard-first, teacher-scored.

Curriculum learning (SPEC §4; Bengio et al. 2009) presents easy examples first and harder
ones later. Here "easy" is measured by a teacher: the training split is cut into K folds, a
small teacher net is trained on the other folds, and each example's difficulty is its
cross-entropy under the teachers that never saw it,

    d_i = mean over teacher seeds of -log p_teacher(y_i | x_i),   x_i held out,

so an example is hard when a model of the data could not predict it, not because a teacher
memorized it. The examples are sorted by d (optionally within each class, so that every
class is present from the first step), and a pacing function sets how much of the sorted
list is available at step t:

    pool(t) = n_0 + floor((N - n_0) min(t, T) / T),   n_0 = max(1, ceil(f_0 N)),

a linear ramp from the easiest fraction f_0 of the data to all N examples at step T. Each
step draws its minibatch uniformly (with replacement) from the first pool(t) examples,
inside the compiled step, with the step's key: a data-free train.fit, whose steps get no
batch. Four schedules share this sampler and all other settings:
    all data   pool(t) = N from the start (no curriculum; the usual training)
    random     pacing over a random order (the control: a growing pool, no ordering)
    easy-first pacing over the easy-to-hard order (the curriculum)
    hard-first pacing over the hard-to-easy order (the anti-curriculum)
Bengio et al.'s claim is that the curriculum speeds up early learning; the report compares
test accuracy at fixed step budgets.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy.stats import spearmanr

from lexicon import baselines, cli, curriculum, data, optim, runs, sweeping, train
from lexicon.curriculum import SCHEDULES
from lexicon.nn.layers import MLP
from lexicon.report import Report, compare, mean_std, panels, plot_curves, plot_images
from lexicon.report import figure as report_figure
from lexicon.rules import Choice, Range, check_batch_size, positive, probability, widths

LABELS = {
    "all": "all data (no pacing)",
    "random": "random order, paced",
    "easy_first": "easy-first (curriculum)",
    "hard_first": "hard-first (anti-curriculum)",
}
SWEEPABLE = ("lr",)  # --config.sweep='lr=0.02,0.05': every schedule's rates x seeds, one program


def get_config():
    config = train.defaults()
    config.seeds = 5
    config.epochs = 15  # training length, in passes' worth of steps (N / batch_size per epoch)
    config.batch_size = 32
    config.hidden = (64, 64)  # hidden ReLU layers of the student network
    config.lr = 0.05  # eps of plain SGD (Alg. 8.1) for the student
    config.start_fraction = 0.2  # f_0: fraction of the sorted data available at step 0
    config.ramp = 0.5  # T as a fraction of all training steps: pool(t) = N from then on
    config.balanced = True  # rank examples within their class, so every class is in the pool
    config.teacher_hidden = (32,)  # hidden ReLU layers of the teacher that scores difficulty
    config.teacher_epochs = 10  # epochs of each teacher
    config.teacher_lr = 0.01  # eps of the teachers' Adam (Alg. 8.7)
    config.teacher_folds = 2  # K: each example is scored by teachers trained on other folds
    return config


RULES = {
    "lr": positive(),
    "start_fraction": probability(),
    "ramp": Range(0, 1, open_lo=True),
    "teacher_epochs": Range(1, cli.MAX_EPOCHS),
    "teacher_lr": positive(),
    "teacher_folds": Range(2, 10),
    "balanced": Choice(True, False),
    "hidden": widths(),
    "teacher_hidden": widths(),
}


def check_config(config):
    """Cross-key rules; cli.run checks them before anything compiles."""
    n = cli.train_examples("digits", seed=config.data_seed)
    seen = n - -(-n // config.teacher_folds)  # a teacher trains on all folds but one
    check_batch_size(config, seen, of="training examples of a teacher's folds")


# --- the experiment ----------------------------------------------------------------------------


def student_task(config, ordered, pacing):
    """The student on ``ordered`` (easiest first), by SGD at config.lr (traced in a sweep)."""
    model = MLP(features=[*config.hidden, 10], activation="relu")
    return curriculum.paced_classifier(
        model, optim.sgd(config.lr), ordered, config.batch_size, pacing
    )


def budget_epochs(history) -> list[int]:
    """The evaluated epochs among 1, 2, 3, 5, 10, 20, ..., and the last one."""
    evaluated = [r["epoch"] for r in history if "test/accuracy" in r]
    marks = {1, 2, 3, 5} | {10 * 2**i for i in range(12)}
    return sorted({e for e in evaluated if e in marks} | {evaluated[-1]})


def plot_schedules(results, ramp_steps):
    curves = {LABELS[s]: r.curve("test/accuracy", x="step") for s, r in results.items()}
    fig = plot_curves(curves, ylabel="test accuracy", xlabel="step (log scale; dotted: the pool "
                      "holds all examples from here)")  # fmt: skip
    fig.axes[0].axvline(ramp_steps, color="grey", ls=":", lw=1)
    fig.axes[0].set_xscale("log")
    return fig


def plot_pacing(orders, difficulty, config, n, ramp_steps, total_steps):
    """pool(t) / N, and the mean difficulty of the pool each paced schedule samples from."""
    t = np.arange(total_steps + 1)
    pool = np.asarray(curriculum.pool_size(t, n, config.start_fraction, ramp_steps))
    fig, (left, right) = panels(2, size=(5, 3.4))
    left.plot(t, pool / n, color="k")
    left.set(xlabel="step", ylabel="pool(t) / N", title="pacing function")
    for i, (schedule, order) in enumerate(orders.items()):
        if schedule != "all":
            prefix_mean = np.cumsum(difficulty[order]) / np.arange(1, n + 1)
            right.plot(t, prefix_mean[pool - 1], label=LABELS[schedule], color=f"C{i}")
    right.set(xlabel="step", ylabel="mean teacher loss d of the pool", yscale="log")
    right.legend(fontsize=8)
    return fig


def plot_examples(x, difficulty, order, count: int = 10):
    """The easiest (first row) and hardest (second row) training digits with their d."""
    picks = np.concatenate([order[:count], order[::-1][:count]])
    titles = [f"{difficulty[i]:.2g}" for i in picks]
    return plot_images(
        x[picks].reshape(-1, 8, 8), columns=count, titles=titles, cmap="gray_r", size=1.1
    )


def train_and_evaluate(config, workdir):
    splits = data.load("digits", seed=config.data_seed)
    x, y = splits.train["x"], splits.train["y"]
    n = len(y)
    steps_per_epoch = train.steps_per_epoch(config, n)
    total_steps = steps_per_epoch * config.epochs
    ramp_steps = max(1, int(round(config.ramp * total_steps)))

    folds = curriculum.fold_ids(len(y), config.teacher_folds, config.data_seed)
    teachers = dict(
        hidden=config.teacher_hidden, lr=config.teacher_lr, epochs=config.teacher_epochs
    )
    difficulty = curriculum.teacher_difficulty(config, workdir, x, y, folds, **teachers)
    reference = baselines.held_out_log_loss(x, y, folds)  # scikit-learn's logistic regression
    agreement = float(spearmanr(difficulty, reference).statistic)
    easy_to_hard = curriculum.curriculum_order(difficulty, y, config.balanced)

    orders = {s: curriculum.schedule_order(s, easy_to_hard, config.data_seed) for s in SCHEDULES}
    # data-free: each of these steps draws its own minibatch
    student = runs.derived(config, steps_per_epoch=steps_per_epoch)
    results = {}
    for schedule, order in orders.items():
        pacing = None if schedule == "all" else (config.start_fraction, ramp_steps)
        task = functools.partial(
            student_task, ordered={"x": x[order], "y": y[order]}, pacing=pacing
        )
        evals = {"test": splits.test}
        results[schedule] = train.fit(student, task, None, workdir / schedule, eval_splits=evals)
    histories = {s: r.history for s, r in results.items()}

    budgets = budget_epochs(histories["all"])
    at = {
        s: {e: runs.value_at(h, "test/accuracy", e) for e in budgets} for s, h in histories.items()
    }
    # per seed: mean test accuracy over the evaluations made while the pool grows
    early = {s: runs.mean_until(h, "test/accuracy", ramp_steps) for s, h in histories.items()}
    final = {s: at[s][budgets[-1]] for s in SCHEDULES}
    # Every schedule starts from the same initializations: comparisons are paired over seeds.
    versus = {b: compare(early["easy_first"], early[b], paired=True, names=("easy-first", b))
              for b in ("random", "all", "hard_first")}  # fmt: skip
    holds = versus["random"].holds and versus["all"].holds
    lead = compare(
        final["easy_first"], final["random"], paired=True, names=("easy-first", "random")
    )

    ordering = "ranked within classes" if config.balanced else "ranked by d alone"
    report = Report(workdir, "Curriculum learning: easy-first, random and hard-first orders")
    report.text(
        f"Digits ({n} training examples). Student: ReLU MLP {tuple(config.hidden)}, plain SGD "
        f"(eps = {config.lr}), batch {config.batch_size}, {total_steps} steps, {config.seeds} "
        f"seeds (the same initializations for every schedule, so gains are paired per seed). "
        f"Difficulty d: held-out cross-entropy under {config.teacher_folds}-fold teachers "
        f"(ReLU MLP {tuple(config.teacher_hidden)}, {config.teacher_epochs} epochs, mean over "
        f"{config.seeds} teacher seeds); {ordering}. "
        f"Pacing: f_0 = {config.start_fraction}, the pool holds every example after "
        f"T = {ramp_steps} steps. Spearman correlation of d with the held-out loss of "
        f"scikit-learn's logistic regression on the same folds: **{agreement:.3f}** (an "
        "independent model ranks the examples alike)."
    )
    report.table(
        ["schedule", *(f"{e * steps_per_epoch} steps" for e in budgets), "early mean (ramp)"],
        [
            (LABELS[s], *(mean_std(at[s][e]) for e in budgets), mean_std(early[s]))
            for s in SCHEDULES
        ],
        caption="Test accuracy at fixed step budgets, mean ± std over seeds",
    )
    report.figure(
        plot_schedules(results, ramp_steps),
        "curves",
        "test accuracy during training (seed mean ± std)",
    )
    report.figure(
        plot_pacing(orders, difficulty, config, n, ramp_steps, total_steps),
        "pacing",
        "the pacing function and how hard the pool is under each order",
    )
    report.figure(
        plot_examples(x, difficulty, np.argsort(difficulty)),
        "examples",
        "the easiest (top) and hardest (bottom) training digits, with their teacher loss d",
    )
    report.text(
        "Bengio et al. (2009) claim that a curriculum speeds up early learning. Mean test "
        f"accuracy over the evaluations made during the ramp (first {ramp_steps} steps), "
        "paired over seeds:\n"
        + "\n".join(f"- against {b}: {c.sentence}" for b, c in versus.items())
        + f"\n\nThe claim **{'holds' if holds else 'does not hold'}** here (criterion: "
        "easy-first is higher than both random-order pacing and all-data training). At the end "
        f"({total_steps} steps) the test accuracies are "
        + ", ".join(f"{LABELS[s]} {mean_std(final[s])}" for s in SCHEDULES)
        + f"; there {lead.sentence}, so the curriculum's lead "
        f"{'lasts' if lead.holds else 'does not last'} to the end of training."
    )
    sweeping.note(report, config)
    report.write()
    return {
        "early_accuracy": early,
        "final_accuracy": {s: report_figure(r, "test/accuracy") for s, r in results.items()},
        "gain_vs_random": early["easy_first"] - early["random"],
        "gain_vs_all": early["easy_first"] - early["all"],
        "claim_holds": bool(holds),
        "difficulty_agreement": agreement,
    }


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, RULES)
