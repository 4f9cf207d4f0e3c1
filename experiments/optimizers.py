"""First-order optimizers (Alg 8.1-8.7) on a convex and a non-convex classification problem.

Every optimizer of ``lexicon.optim`` (SPEC §2) trains, over ``config.seeds`` vmapped seeds:
  logreg    multiclass logistic regression on digits, J = mean cross-entropy + (lambda/2)||W||^2
            (convex). Reference: the optimum of the same J found by scikit-learn's
            LogisticRegression (C = 1 / (lambda N), unpenalized intercept).
  mlp       a ReLU MLP on MNIST-1D (non-convex).
Each optimizer's block in the config is data (``optim.from_config``). Nesterov's methods carry
the look-ahead point theta + alpha v; their evaluations use theta (``optim.evaluation_params``).
The paths on 2-D functions, the batch size and the decay of the rate are the studies of
optimizer_paths.py, batch_size.py and lr_decay.py.
"""

from __future__ import annotations

import math

import numpy as np

from lexicon import cli, data, optim, sweeping, train
from lexicon.nn.layers import MLP
from lexicon.optim import problems, studies
from lexicon.optim.problems import HYPERPARAMS
from lexicon.report import Report, mean_std
from lexicon.rules import Choice, Names, check, check_batch_size, positive, split_names, widths

PARTS = ("logreg", "mlp")
SCALES = ("default", "paper")
# The MNIST-1D repository's reference notebook trains its MLP with minibatches of 100 for
# 8,000 steps; scale=paper applies that batch and length to the MLP part.
PAPER_MLP_BATCH, PAPER_MLP_STEPS = 100, 8000
# The rate of each optimizer on both problems, picked from a 1e-4..1 grid (Adam: published 1e-3).
RATES = {
    "sgd": 0.3,
    "momentum": 0.03,
    "nesterov": 0.03,
    "ema_momentum": 0.3,
    "adagrad": 0.1,
    "rmsprop": 3e-3,
    "rmsprop_nesterov": 3e-4,
    "adam": 1e-3,
}


def get_config():
    config = train.defaults()
    config.seeds = 3
    config.epochs = 20  # passes over the data
    config.batch_size = 32  # minibatch size m
    config.parts = ",".join(PARTS)  # studies to run: logreg, mlp
    config.optimizers = ",".join(optim.NAMES)  # comma-separated names from lexicon.optim.NAMES
    config.scale = "default"  # default | paper (MLP: batch 100, 8,000 steps, as MNIST-1D's repo)
    config.l2 = 1e-3  # lambda of the logistic regression's (lambda/2)||W||^2 (biases free)
    config.hidden = (100, 100)  # hidden ReLU layers of the MNIST-1D MLP
    # One block per optimizer: lr and its hyperparameters (lexicon.optim.problems.HYPERPARAMS).
    problems.add_blocks(config, {name: {"lr": rate} for name, rate in RATES.items()})
    return config


# --config.sweep='sgd.lr=0.1,0.3;adam.rho1=0.8,0.9': every fit at every grid point
SWEEPABLE = tuple(f"{name}.{key}" for name in optim.NAMES for key in ("lr", *HYPERPARAMS[name]))

RULES = {
    "parts": Names(PARTS),
    "optimizers": Names(optim.NAMES),
    "scale": Choice(*SCALES),
    "l2": positive(),
    "hidden": widths(),
    **problems.block_rules(("lr",)),
}


def check_config(config):
    """Cross-key rules; cli.run checks them before anything compiles."""
    parts = set(split_names(config.parts))
    if "logreg" in parts:
        n = cli.train_examples("digits", seed=config.data_seed)
        check_batch_size(config, n, of="digits training examples")
    if "mlp" in parts and config.scale == "default":
        n = cli.train_examples("mnist1d", seed=config.data_seed)
        check_batch_size(config, n, of="MNIST-1D training examples")


def fit_all(config, names, problem):
    """Every optimizer at its block's rate, at minibatch size config.batch_size; the blocks
    are read inside the program, so a sweep over their keys trains every grid point."""
    return {
        name: problem.fit(
            lambda config, name=name: problems.optimizer(config, name),
            f"{name}_lr{config[name].lr:g}",
            batch_size=config.batch_size,
        )
        for name in names
    }


def logreg_section(config, names, report) -> dict:
    logreg, optimum = problems.logistic_problem(config, report.workdir)
    runs = fit_all(config, names, logreg)
    n_train = len(logreg.splits.train["y"])
    settings = {name: [problems.describe(config[name])] for name in names}
    rows = studies.objective_rows(runs, optimum, settings)
    solver = f"lbfgs, C = 1/(lambda N) = {1 / (config.l2 * n_train):.4g}, tol 1e-10"
    reference = ["**reference: sklearn LogisticRegression**", solver, f"{optimum['objective']:.5f}"]
    rows.append(reference + ["0", f"{optimum['test_accuracy']:.4f}"])
    report.text(
        f"## (a) Logistic regression on digits (convex)\n\nJ = mean cross-entropy + "
        f"(lambda/2)||W||^2, lambda = {config.l2:g}, on the {n_train} standardized training "
        f"digits, minibatch m = {config.batch_size}, {config.epochs} epochs. J* is the same J "
        "(NumPy float64) at scikit-learn's solution."
    )
    report.table(
        ["optimizer", "hyperparameters", "final J", "J - J*", "test accuracy"],
        rows,
        caption="Final training objective and test accuracy (mean ± std over seeds)",
    )
    twin = equivalence_note(config, runs)
    if twin:
        report.text(twin)
    accuracy = {name: run.final["test_accuracy"] for name, run in runs.items()}
    report.figure(
        studies.curves_and_bars(
            problems.gap_curves(runs, optimum),
            accuracy,
            "Logistic regression on digits (convex)",
            ylabel=f"J - J* (floor {problems.GAP_FLOOR:g})",
            baseline=optimum["test_accuracy"],
            baseline_label="sklearn optimum",
        ),
        "logreg",
        "gap to the sklearn optimum per epoch (mean ± std band); final test accuracy",
    )
    # final J per seed against scikit-learn's J*: 'matches' once within seed noise
    held = {"reference": optimum["objective"], "source": "scikit-learn LogisticRegression J*"}
    # a sweep: one figure per grid point
    return {n: sweeping.figure(r.result, r.final["objective"], **held) for n, r in runs.items()}


def equivalence_note(config, runs) -> str:
    """EMA momentum with lambda, beta is heavy-ball momentum with eps = lambda (1 - beta),
    alpha = beta (substitute u = lambda v); when the configs match, report how close they ran."""
    ema, heavy = config.ema_momentum, config.momentum
    same = math.isclose(ema.beta, heavy.alpha) and math.isclose(ema.lr * (1 - ema.beta), heavy.lr)
    if not ({"momentum", "ema_momentum"} <= set(runs) and same):
        return ""
    objective = {name: runs[name].final["objective"] for name in ("ema_momentum", "momentum")}
    difference = np.abs(objective["ema_momentum"] - objective["momentum"])
    return (
        f"ema_momentum (lambda = {ema.lr:g}, beta = {ema.beta:g}) and momentum (eps = "
        f"{heavy.lr:g}, alpha = {heavy.alpha:g}) are one algorithm: with u = lambda v the EMA "
        "update becomes u <- beta u + lambda (1 - beta) g. Their final J differ by at most "
        f"{difference.max():.1e} (float32 rounding)."
    )


def mlp_section(config, names, report) -> dict:
    mnist = data.standardize(data.load("mnist1d", seed=config.data_seed))
    model = MLP(features=(*config.hidden, mnist.num_classes), activation="relu")

    def paper(run_config):
        if config.scale == "paper":
            run_config.batch_size = PAPER_MLP_BATCH
            batches = len(mnist.train["y"]) // PAPER_MLP_BATCH
            run_config.epochs = math.ceil(PAPER_MLP_STEPS / batches)

    mlp = problems.Problem(config, "mlp", model, mnist, None, report.workdir, False, paper)
    runs = fit_all(config, names, mlp)
    epochs = runs[names[0]].result.history[-1]["epoch"]
    rows = [
        (
            name,
            problems.describe(config[name]),
            mean_std(run.final["loss"]),
            mean_std(run.final["test_accuracy"]),
        )
        for name, run in runs.items()
    ]
    report.text(
        f"## (b) MLP on MNIST-1D (non-convex)\n\nReLU MLP {tuple(config.hidden)}, "
        f"{len(mnist.train['y'])} training signals, {epochs} epochs ({config.scale} scale). "
        "There is no known optimum here; the curves compare the speed of the optimizers."
    )
    report.table(
        ["optimizer", "hyperparameters", "final training loss", "test accuracy"],
        rows,
        caption="Final metrics (mean ± std over seeds)",
    )
    losses = {name: run.result.curve("train/loss") for name, run in runs.items()}
    accuracy = {name: run.final["test_accuracy"] for name, run in runs.items()}
    title = f"MLP {tuple(config.hidden)} on MNIST-1D (non-convex)"
    report.figure(
        studies.curves_and_bars(
            losses, accuracy, title, ylabel="training loss (mean over the epoch)"
        ),
        "mlp",
        "minibatch training loss per epoch (mean ± std band); final test accuracy",
    )
    return {n: run.final["test_accuracy"].tolist() for n, run in runs.items()}


def train_and_evaluate(config, workdir):
    check(config, {key: RULES[key] for key in ("parts", "optimizers")})
    parts, names = split_names(config.parts), split_names(config.optimizers)
    report = Report(
        workdir, "First-order optimizers: SGD, momentum, Nesterov, AdaGrad, RMSProp, Adam"
    )
    report.text(
        f"Optimizers: {', '.join(names)}; {config.seeds} seeds trained together (vmap). Curves "
        "show the seed mean with a ±1 std band; tables give mean ± std over seeds. Nesterov "
        "methods are evaluated at theta, not at the carried look-ahead point."
    )
    headline: dict = {}
    if "logreg" in parts:
        headline["logreg_objective"] = logreg_section(config, names, report)
    if "mlp" in parts:
        headline["mlp_test_accuracy"] = mlp_section(config, names, report)
    report.write()
    return headline


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, RULES)
