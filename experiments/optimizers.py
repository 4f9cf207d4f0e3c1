"""First-order optimizers (Alg 8.1-8.7) on convex, non-convex and 2-D problems; batch size; decay.

Every optimizer of ``lexicon.optim`` (SPEC §2) trains, over ``config.seeds`` vmapped seeds:
  logreg    multiclass logistic regression on digits, J = mean cross-entropy + (lambda/2)||W||^2
            (convex). Reference: the optimum of the same J found by scikit-learn's
            LogisticRegression (C = 1 / (lambda N), unpenalized intercept).
  mlp       a ReLU MLP on MNIST-1D (non-convex).
  surfaces  two 2-D functions with known minima: an ill-conditioned quadratic
            f = 1/2 (u^2 + kappa v^2) in axes (u, v) rotated from (x, y), minimum f = 0 at the
            origin, and Rosenbrock's f = (1 - x)^2 + 100 (y - x^2)^2, minimum f = 0 at (1, 1).
            Seed i starts from a fixed point nudged by N(0, jitter^2) noise.
Two studies use plain SGD (Alg 8.1) on the logistic regression:
  batch     full batch (m = N), minibatch (m) and one example per step (m = 1); and the gradient
            noise E||g_B - g||^2 of a random minibatch B of size m around the full gradient g at
            fixed parameters. Drawing B without replacement from the N examples,
            E||g_B - g||^2 = (sigma^2 / m) (N - m) / (N - 1), sigma^2 = (1/N) sum_i ||g_i - g||^2:
            the 1/m law with its finite-population correction.
  decay     the linear schedule eps_k = (1 - a) eps_0 + a eps_tau, a = k / tau (constant after
            tau), with eps_tau = 1% of eps_0 as document 001 suggests, against the constant eps_0.

Nesterov's methods carry the look-ahead point theta + alpha v (see lexicon.optim); their
evaluations and paths use theta itself (``optim.nesterov_theta``). Runs that two studies share
(the SGD minibatch run, for instance) are trained once.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import pathlib

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import ml_collections
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from lexicon import cli, data, optim, regularizers, train
from lexicon.nn.layers import MLP
from lexicon.report import Figure, Report, band, mean_std
from lexicon.rules import (
    Choice,
    ConfigError,
    Items,
    Names,
    Range,
    check_batch_size,
    nonnegative,
    positive,
    probability,
    split_names,
    widths,
)

PARTS = ("logreg", "mlp", "surfaces", "batch", "decay")
LOOKAHEAD = ("nesterov", "rmsprop_nesterov")  # optimizers that carry theta + alpha v
LR_KEYS = ("lr", "lr_quadratic", "lr_rosenbrock")
SCALES = ("default", "paper")
# The MNIST-1D repository's reference notebook trains its MLP with minibatches of 100 for
# 8,000 steps; scale=paper applies that batch and length to the MLP part.
PAPER_MLP_BATCH, PAPER_MLP_STEPS = 100, 8000
GAP_FLOOR = 1e-7  # J - J* is drawn on a log axis, clipped below at this value


def get_config():
    config = train.defaults()
    config.seeds = 3
    config.epochs = 20  # passes over the data (logreg, mlp, batch and decay)
    config.batch_size = 32  # m of every minibatch run (0 = full batch, 1 = one example)
    config.parts = ",".join(PARTS)  # studies to run: logreg, mlp, surfaces, batch, decay
    config.optimizers = ",".join(optim.NAMES)  # comma-separated names from lexicon.optim.NAMES
    config.scale = "default"  # default | paper (MLP: batch 100, 8,000 steps, as MNIST-1D's repo)
    config.l2 = 1e-3  # lambda of the logistic regression's (lambda/2)||W||^2 (biases free)
    config.hidden = (100, 100)  # hidden ReLU layers of the MNIST-1D MLP

    # One block per optimizer. lr is the rate on logreg and mlp (picked from a 1e-4..1 grid,
    # except Adam's published 1e-3); the 2-D functions have their own rates.
    config.sgd = ml_collections.ConfigDict()
    config.sgd.lr = 0.3  # eps of SGD (Alg 8.1); also the rate of the batch-size study
    config.sgd.lr_quadratic = 0.035  # eps on the 2-D quadratic
    config.sgd.lr_rosenbrock = 2e-3  # eps on Rosenbrock
    config.momentum = ml_collections.ConfigDict()
    config.momentum.lr = 0.03  # eps of momentum (Alg 8.2)
    config.momentum.alpha = 0.9  # alpha, the velocity's decay
    config.momentum.lr_quadratic = 5e-3  # eps on the 2-D quadratic
    config.momentum.lr_rosenbrock = 1e-3  # eps on Rosenbrock
    config.nesterov = ml_collections.ConfigDict()
    config.nesterov.lr = 0.03  # eps of Nesterov momentum (Alg 8.3)
    config.nesterov.alpha = 0.9  # alpha, the velocity's decay
    config.nesterov.lr_quadratic = 5e-3  # eps on the 2-D quadratic
    config.nesterov.lr_rosenbrock = 1e-3  # eps on Rosenbrock
    config.ema_momentum = ml_collections.ConfigDict()
    config.ema_momentum.lr = 0.3  # lambda of EMA momentum (document 000)
    config.ema_momentum.beta = 0.9  # beta, the moving average's decay
    config.ema_momentum.lr_quadratic = 0.035  # lambda on the 2-D quadratic
    config.ema_momentum.lr_rosenbrock = 2e-3  # lambda on Rosenbrock
    config.adagrad = ml_collections.ConfigDict()
    config.adagrad.lr = 0.1  # eps of AdaGrad (Alg 8.4)
    config.adagrad.delta = 1e-7  # delta, outside the square root
    config.adagrad.lr_quadratic = 1.0  # eps on the 2-D quadratic
    config.adagrad.lr_rosenbrock = 0.5  # eps on Rosenbrock
    config.rmsprop = ml_collections.ConfigDict()
    config.rmsprop.lr = 3e-3  # eps of RMSProp (Alg 8.5)
    config.rmsprop.rho = 0.9  # rho, decay of the squared-gradient average
    config.rmsprop.delta = 1e-6  # delta, inside the square root
    config.rmsprop.lr_quadratic = 0.02  # eps on the 2-D quadratic
    config.rmsprop.lr_rosenbrock = 3e-3  # eps on Rosenbrock
    config.rmsprop_nesterov = ml_collections.ConfigDict()
    config.rmsprop_nesterov.lr = 3e-4  # eps of RMSProp with Nesterov momentum (Alg 8.6)
    config.rmsprop_nesterov.rho = 0.9  # rho, decay of the squared-gradient average
    config.rmsprop_nesterov.alpha = 0.9  # alpha, the velocity's decay
    config.rmsprop_nesterov.delta = 0.0  # delta inside the root (the algorithm has none)
    config.rmsprop_nesterov.lr_quadratic = 5e-3  # eps on the 2-D quadratic
    config.rmsprop_nesterov.lr_rosenbrock = 1e-3  # eps on Rosenbrock
    config.adam = ml_collections.ConfigDict()
    config.adam.lr = 1e-3  # eps of Adam (Alg 8.7; published 0.001)
    config.adam.rho1 = 0.9  # rho1, decay of the first moment (published 0.9)
    config.adam.rho2 = 0.999  # rho2, decay of the second moment (published 0.999)
    config.adam.delta = 1e-8  # delta, inside the root (published 1e-8)
    config.adam.lr_quadratic = 0.1  # eps on the 2-D quadratic
    config.adam.lr_rosenbrock = 0.05  # eps on Rosenbrock

    config.condition = 50.0  # kappa, ratio of the quadratic's two curvatures
    config.angle = 30.0  # rotation of the quadratic's axes in degrees (0: axis-aligned)
    config.quadratic_steps = 300  # iterations on the quadratic
    config.rosenbrock_steps = 2000  # iterations on Rosenbrock
    config.jitter = 0.05  # std of the per-seed nudge of the starting point (0: one start)
    config.surface_tol = 1e-6  # a path has reached the minimum once f <= this
    config.noise_batches = (1, 4, 16, 64, 256)  # minibatch sizes m of the gradient-noise study
    config.noise_draws = 256  # random minibatches per size for E||g_B - g||^2
    config.decay_lr = 1.0  # eps_0 of the schedule study (SGD on the logistic regression)
    config.decay_epochs = 100  # tau spans this many epochs (the document: hundreds of passes)
    config.decay_final = 0.01  # eps_tau / eps_0 (the document suggests 1%)
    return config


RULES = {
    "parts": Names(PARTS),
    "optimizers": Names(optim.NAMES),
    "scale": Choice(*SCALES),
    "l2": positive(),
    "condition": Range(1.0),
    "angle": Range(-180.0, 180.0),
    "quadratic_steps": Range(1, 10_000_000),
    "rosenbrock_steps": Range(1, 10_000_000),
    "jitter": nonnegative(),
    "surface_tol": positive(),
    "noise_draws": Range(2, 100_000),
    "decay_lr": positive(),
    "decay_epochs": Range(1, cli.MAX_EPOCHS),
    "decay_final": Range(0.0, 1.0),
    **{f"{name}.{key}": positive() for name in optim.NAMES for key in LR_KEYS},
    "momentum.alpha": probability(),
    "nesterov.alpha": probability(),
    "ema_momentum.beta": probability(),
    "adagrad.delta": nonnegative(),
    "rmsprop.rho": Range(0.0, 1.0, open_hi=True),
    "rmsprop.delta": nonnegative(),
    "rmsprop_nesterov.rho": Range(0.0, 1.0, open_hi=True),
    "rmsprop_nesterov.alpha": probability(),
    "rmsprop_nesterov.delta": nonnegative(),
    "adam.rho1": Range(0.0, 1.0, open_hi=True),  # 1 would divide by 1 - rho1^t = 0
    "adam.rho2": Range(0.0, 1.0, open_hi=True),
    "adam.delta": nonnegative(),
    "hidden": widths(),
    "noise_batches": Items(Range(1, 1_000_000), kind=int),
}


def check_config(config):
    """Cross-key rules; cli.run checks them before anything compiles."""
    parts = set(split_names(config.parts))
    if parts & {"logreg", "batch", "decay"}:  # the logistic regression on digits
        n = cli.train_examples("digits", seed=config.data_seed)
        check_batch_size(config, n, of="digits training examples")
        if "batch" in parts and max(config.noise_batches) > n:
            raise ConfigError(
                f"config.noise_batches={tuple(config.noise_batches)} must lie in [1, {n}], the "
                f"digits training examples"
            )
    if "mlp" in parts and config.scale == "default":
        n = cli.train_examples("mnist1d", seed=config.data_seed)
        check_batch_size(config, n, of="MNIST-1D training examples")


def make_optimizer(config, name: str, learning_rate) -> optax.GradientTransformation:
    """``optim.get(name)`` with ``learning_rate`` and the block's other hyperparameters."""
    hyperparams = {k: v for k, v in config[name].items() if k not in LR_KEYS}
    return optim.get(name, learning_rate=learning_rate, **hyperparams)


def describe(config, name: str) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in config[name].items() if k not in LR_KEYS[1:])


def sci(values) -> str:
    """'mean ± std' in scientific notation."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    return f"{values.mean():.3e} ± {values.std():.1e}"


def finish(fig, axes, title: str):
    for ax in np.ravel(axes):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    return fig


# --- classification runs ------------------------------------------------------------------------


@dataclasses.dataclass
class Run:
    result: train.Result
    final: dict  # per-seed values after training: loss and objective (train), test accuracy


class Problem:
    """A classifier, its data and its fits, memoized so that studies share identical runs.

    ``track_objective`` evaluates J on the whole training split after every epoch (for the
    curves of J - J*); otherwise the curves are the per-epoch means of the minibatch losses.
    Final metrics come from one compiled scorer shared by every fit of the problem.
    """

    def __init__(self, config, name, model, splits, penalty, workdir, track_objective):
        self.config, self.name, self.model, self.splits = config, name, model, splits
        self.penalty, self.workdir, self.track = penalty, workdir, track_objective
        self.runs: dict[tuple, Run] = {}

        @jax.jit
        def score(params, x, y):
            def one(p):
                logits = model.apply({"params": p}, x)
                loss = train.cross_entropy(logits, y)
                objective = loss if penalty is None else loss + penalty(p)
                return {"loss": loss, "objective": objective, "accuracy": train.accuracy(logits, y)}

            return jax.vmap(one)(params)

        self.score = score

    def fit(self, optimizer, rate, *, batch_size, epochs=None, tag="") -> Run:
        """Trains ``optimizer`` at ``rate`` (a float or a schedule named by ``tag``)."""
        epochs = epochs or self.config.epochs
        key = (optimizer, tag or rate, batch_size, epochs)
        if key in self.runs:
            return self.runs[key]
        lookahead = optimizer in LOOKAHEAD
        tx = make_optimizer(self.config, optimizer, rate)
        task = train.classifier(self.model, tx, self.splits.train["x"][:1], penalty=self.penalty)
        task = dataclasses.replace(task, evaluate=self._evaluate_at_theta(task, lookahead))
        run_config = self.config.copy_and_resolve_references()
        run_config.batch_size, run_config.epochs = batch_size, epochs
        if self.name == "mlp" and self.config.scale == "paper":
            run_config.batch_size = PAPER_MLP_BATCH
            batches = len(self.splits.train["y"]) // PAPER_MLP_BATCH
            run_config.epochs = math.ceil(PAPER_MLP_STEPS / batches)
        rate_name = tag or f"lr{rate:g}"
        name = f"{self.name}_{optimizer}_{rate_name}_m{batch_size}_e{epochs}"
        evals = {"full": self.splits.train} if self.track else {}
        result = train.fit(
            run_config, task, self.splits.train, self.workdir / name, eval_splits=evals
        )
        params = result.state.params
        if lookahead:
            params = jax.vmap(optim.nesterov_theta)(params, result.state.opt_state)
        on_train = self.score(params, self.splits.train["x"], self.splits.train["y"])
        on_test = self.score(params, self.splits.test["x"], self.splits.test["y"])
        final = {
            "loss": np.asarray(on_train["loss"]),
            "objective": np.asarray(on_train["objective"]),
            "test_accuracy": np.asarray(on_test["accuracy"]),
        }
        self.runs[key] = Run(result, final)
        return self.runs[key]

    def _evaluate_at_theta(self, task, lookahead):
        def evaluate(state, split):
            params = state.params
            if lookahead:
                params = optim.nesterov_theta(state.params, state.opt_state)
            metrics = task.evaluate(state.replace(params=params), split)
            if self.penalty is not None:
                metrics["objective"] = metrics["loss"] + self.penalty(params)
            return metrics

        return evaluate


def curve(result: train.Result, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(epochs, values of shape (seeds, epochs)) of a recorded metric."""
    records = [r for r in result.history if key in r]
    return np.array([r["epoch"] for r in records]), np.array([r[key] for r in records]).T


def logreg_objective(w, b, x, y, l2) -> float:
    """J = (1/N) sum_i -log softmax(x_i W + b)_{y_i} + (lambda/2)||W||^2, in NumPy float64."""
    z = np.asarray(x, np.float64) @ np.asarray(w, np.float64) + np.asarray(b, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(len(y)), y].mean() + 0.5 * l2 * np.sum(np.square(w)))


def sklearn_optimum(config, splits) -> dict:
    """scikit-learn's LogisticRegression on the same objective: J* and its test accuracy.

    sklearn minimizes C sum_i L_i + (1/2)||W||^2; dividing by C N gives our J with
    lambda = 1 / (C N), hence C = 1 / (lambda N).
    """
    from sklearn.linear_model import LogisticRegression

    x, y = splits.train["x"].astype(np.float64), splits.train["y"]
    model = LogisticRegression(C=1.0 / (config.l2 * len(x)), tol=1e-10, max_iter=10_000)
    model.fit(x, y)
    return {
        "objective": logreg_objective(model.coef_.T, model.intercept_, x, y, config.l2),
        "test_accuracy": float(model.score(splits.test["x"], splits.test["y"])),
        "w": model.coef_.T,
        "b": model.intercept_,
    }


# --- (a) logistic regression, (b) MLP -----------------------------------------------------------


def logreg_section(config, names, logreg, optimum, report) -> dict:
    runs = {n: logreg.fit(n, config[n].lr, batch_size=config.batch_size) for n in names}
    n_train = len(logreg.splits.train["y"])
    rows = [
        (
            name,
            describe(config, name),
            mean_std(run.final["objective"], 5),
            sci(run.final["objective"] - optimum["objective"]),
            mean_std(run.final["test_accuracy"]),
        )
        for name, run in runs.items()
    ]
    rows.append(
        (
            "**reference: sklearn LogisticRegression**",
            f"lbfgs, C = 1/(lambda N) = {1 / (config.l2 * n_train):.4g}, tol 1e-10",
            f"{optimum['objective']:.5f}",
            "0",
            f"{optimum['test_accuracy']:.4f}",
        )
    )
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
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, run in runs.items():
        epochs, objective = curve(run.result, "full/objective")
        band(axes[0], epochs, np.maximum(objective - optimum["objective"], GAP_FLOOR), name)
    axes[0].set(yscale="log", xlabel="epoch", ylabel=f"J - J* (floor {GAP_FLOOR:g})")
    accuracy = [run.final["test_accuracy"] for run in runs.values()]
    axes[1].bar(range(len(runs)), [a.mean() for a in accuracy], yerr=[a.std() for a in accuracy])
    axes[1].axhline(optimum["test_accuracy"], color="k", ls="--", label="sklearn optimum")
    axes[1].set_xticks(range(len(runs)), list(runs), rotation=30, ha="right", fontsize=7)
    axes[1].set(ylabel="test accuracy", ylim=(min(a.min() for a in accuracy) - 0.05, 1.0))
    report.figure(
        finish(fig, axes, "Logistic regression on digits (convex)"),
        "logreg",
        "gap to the sklearn optimum per epoch (mean ± std band); final test accuracy",
    )
    return {n: run.final["objective"].tolist() for n, run in runs.items()}


def equivalence_note(config, runs) -> str:
    """EMA momentum with lambda, beta is heavy-ball momentum with eps = lambda (1 - beta),
    alpha = beta (substitute u = lambda v); when the configs match, report how close they ran."""
    if not {"momentum", "ema_momentum"} <= set(runs):
        return ""
    ema, heavy = config.ema_momentum, config.momentum
    if not (
        math.isclose(ema.beta, heavy.alpha) and math.isclose(ema.lr * (1 - ema.beta), heavy.lr)
    ):
        return ""
    difference = np.abs(
        runs["ema_momentum"].final["objective"] - runs["momentum"].final["objective"]
    )
    return (
        f"ema_momentum (lambda = {ema.lr:g}, beta = {ema.beta:g}) and momentum (eps = "
        f"{heavy.lr:g}, alpha = {heavy.alpha:g}) are one algorithm: with u = lambda v the EMA "
        "update becomes u <- beta u + lambda (1 - beta) g. Their final J differ by at most "
        f"{difference.max():.1e} (float32 rounding)."
    )


def mlp_section(config, names, mlp, report) -> dict:
    runs = {n: mlp.fit(n, config[n].lr, batch_size=config.batch_size) for n in names}
    epochs = runs[names[0]].result.history[-1]["epoch"]
    rows = [
        (
            name,
            describe(config, name),
            mean_std(run.final["loss"]),
            mean_std(run.final["test_accuracy"]),
        )
        for name, run in runs.items()
    ]
    report.text(
        f"## (b) MLP on MNIST-1D (non-convex)\n\nReLU MLP {tuple(config.hidden)}, "
        f"{len(mlp.splits.train['y'])} training signals, {epochs} epochs ({config.scale} scale). "
        "There is no known optimum here; the curves compare the speed of the optimizers."
    )
    report.table(
        ["optimizer", "hyperparameters", "final training loss", "test accuracy"],
        rows,
        caption="Final metrics (mean ± std over seeds)",
    )
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, run in runs.items():
        band(axes[0], *curve(run.result, "train/loss"), name)
    axes[0].set(yscale="log", xlabel="epoch", ylabel="training loss (mean over the epoch)")
    accuracy = [run.final["test_accuracy"] for run in runs.values()]
    axes[1].bar(range(len(runs)), [a.mean() for a in accuracy], yerr=[a.std() for a in accuracy])
    axes[1].set_xticks(range(len(runs)), list(runs), rotation=30, ha="right", fontsize=7)
    axes[1].set(ylabel="test accuracy", ylim=(0, 1))
    axes[1].plot([], [], " ", label="bars: mean ± std")
    report.figure(
        finish(fig, axes, f"MLP {tuple(config.hidden)} on MNIST-1D (non-convex)"),
        "mlp",
        "minibatch training loss per epoch (mean ± std band); final test accuracy",
    )
    return {n: run.final["test_accuracy"].tolist() for n, run in runs.items()}


# --- (c) 2-D test functions ---------------------------------------------------------------------


def quadratic(theta, condition, angle_degrees):
    """f = 1/2 (u^2 + kappa v^2) with (u, v) the coordinates (x, y) rotated by the angle."""
    angle = math.radians(angle_degrees)
    u = math.cos(angle) * theta[0] + math.sin(angle) * theta[1]
    v = -math.sin(angle) * theta[0] + math.cos(angle) * theta[1]
    return 0.5 * (u**2 + condition * v**2)


def rosenbrock(theta):
    """f = (1 - x)^2 + 100 (y - x^2)^2; minimum f = 0 at (1, 1)."""
    return (1.0 - theta[0]) ** 2 + 100.0 * (theta[1] - theta[0] ** 2) ** 2


def surfaces(config) -> dict:
    """name -> (f, start, known minimizer, steps, plotting window (x0, x1, y0, y1))."""
    return {
        "quadratic": (
            functools.partial(quadratic, condition=config.condition, angle_degrees=config.angle),
            np.array([-2.0, 1.5]),
            np.zeros(2),
            config.quadratic_steps,
            (-2.5, 2.5, -2.0, 2.0),
        ),
        "rosenbrock": (
            rosenbrock,
            np.array([-1.2, 1.0]),
            np.ones(2),
            config.rosenbrock_steps,
            (-2.0, 2.0, -1.0, 3.0),
        ),
    }


def descend(f, tx, start, *, steps: int, lookahead: bool):
    """The iterates theta_0 .. theta_steps of ``tx`` on f, as a (steps + 1, 2) array."""

    def step(carry, _):
        params, opt_state = carry
        updates, opt_state = tx.update(jax.grad(f)(params), opt_state, params)
        params = optax.apply_updates(params, updates)
        theta = optim.nesterov_theta(params, opt_state) if lookahead else params
        return (params, opt_state), theta

    _, path = jax.lax.scan(step, (start, tx.init(start)), None, length=steps)
    return jnp.concatenate([start[None], path])


def surfaces_section(config, names, report) -> dict:
    """Every optimizer on both functions, all seeds, as one compiled program."""
    table = surfaces(config)
    seeds = jnp.arange(config.seed, config.seed + config.seeds)
    nudges = jax.vmap(lambda s: jax.random.normal(train.stream(s, "init"), (2,)))(seeds)

    def all_paths(nudges):
        paths = {}
        for surface, (f, start, _, steps, _) in table.items():
            starts = jnp.asarray(start, jnp.float32) + config.jitter * nudges
            for name in names:
                tx = make_optimizer(config, name, config[name][f"lr_{surface}"])
                one = functools.partial(descend, f, tx, steps=steps, lookahead=name in LOOKAHEAD)
                path = jax.vmap(one)(starts)  # (seeds, steps + 1, 2)
                paths[surface, name] = (path, jax.vmap(jax.vmap(f))(path))
        return paths

    paths = jax.tree.map(np.asarray, jax.jit(all_paths)(nudges))
    rows, finals = [], {}
    for name in names:
        row = [name]
        for surface, (_, _, minimum, _, _) in table.items():
            path, values = paths[surface, name]
            distance = np.linalg.norm(path[:, -1] - minimum, axis=1)
            row += [sci(values[:, -1]), sci(distance), steps_to(values, config.surface_tol)]
            finals.setdefault(surface, {})[name] = values[:, -1].tolist()
        rows.append(row)
    rows.append(["**reference: known minimum**", "0", "0, at (0, 0)", "", "0", "0, at (1, 1)", ""])
    tol = f"steps to f <= {config.surface_tol:g}"
    report.text(
        f"## (c) 2-D test functions\n\nQuadratic with condition number kappa = "
        f"{config.condition:g}, axes rotated by {config.angle:g} degrees, start (-2, 1.5), "
        f"{config.quadratic_steps} steps; Rosenbrock from (-1.2, 1), {config.rosenbrock_steps} "
        f"steps. Seed i starts from that point plus N(0, {config.jitter:g}^2) noise; the figure "
        "draws seed 0. Each optimizer has its own rate per function (`lr_quadratic`, "
        "`lr_rosenbrock`)."
    )
    report.table(
        ["optimizer", "quadratic: final f", "dist. to min", tol]
        + ["Rosenbrock: final f", "dist. to (1, 1)", tol],
        rows,
        caption="Final value and distance to the known minimizer (mean ± std over the starts)",
    )
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    colors = plt.get_cmap("tab10")
    for ax, (surface, (f, start, minimum, _, window)) in zip(axes, table.items()):
        gx, gy = np.meshgrid(np.linspace(*window[:2], 300), np.linspace(*window[2:], 300))
        fz = np.asarray(jax.vmap(jax.vmap(f))(jnp.stack([gx, gy], axis=-1)))
        levels = np.geomspace(max(fz.min(), 1e-2), fz.max(), 30)
        ax.contour(gx, gy, fz, levels=levels, colors="0.7", linewidths=0.5)
        for i, name in enumerate(names):
            path = paths[surface, name][0][0]
            ax.plot(path[:, 0], path[:, 1], lw=1.2, color=colors(i), label=name)
        ax.plot(*start, "ko", ms=5, label="start (seed 0)")
        ax.plot(*minimum, "r*", ms=14, label="known minimum")
        ax.set(xlim=window[:2], ylim=window[2:], xlabel="x", ylabel="y")
        ax.set_title(surface)
    report.figure(
        finish(fig, axes, "Optimizer paths on the 2-D test functions (seed 0)"),
        "surfaces",
        "optimizer paths on the contours of f (log-spaced levels)",
    )
    return finals


def steps_to(values, tol) -> str:
    """First step at which each seed's f reaches ``tol``, as mean ± std over seeds."""
    reached = np.asarray(values) <= tol
    if not reached.any(axis=1).all():
        return f"not reached ({int(reached.any(axis=1).sum())}/{len(reached)} seeds)"
    return mean_std(reached.argmax(axis=1), digits=1)


# --- batch size and gradient noise --------------------------------------------------------------


def gradient_noise(data_loss, params, x, y, batch_sizes, draws: int, key):
    """E||g_B - g||^2 over random minibatches of each size m, and the 1/m law's prediction.

    g is the full-batch gradient of the data loss (the penalty's gradient is the same for
    every B and cancels). Minibatches are drawn without replacement, as lexicon.train does.
    Returns (measured, predicted, standard error of measured) with predicted =
    (sigma^2/m)(N-m)/(N-1) and sigma^2 = (1/N) sum_i ||g_i - g||^2 from the per-example
    gradients g_i.
    """

    def flat_grad(xb, yb):
        return ravel_pytree(jax.grad(data_loss)(params, xb, yb))[0]

    n = x.shape[0]
    full = flat_grad(x, y)
    per_example = jax.vmap(lambda xi, yi: flat_grad(xi[None], yi[None]))(x, y)
    sigma2 = jnp.mean(jnp.sum((per_example - full) ** 2, axis=1))
    measured, predicted, standard_errors = [], [], []
    for m in batch_sizes:

        def squared_deviation(k, m=m):
            batch = jax.random.permutation(k, n)[:m]
            return jnp.sum((flat_grad(x[batch], y[batch]) - full) ** 2)

        deviations = jax.vmap(squared_deviation)(jax.random.split(key, draws))
        measured.append(jnp.mean(deviations))
        standard_errors.append(jnp.std(deviations) / jnp.sqrt(draws))
        predicted.append(sigma2 / m * (n - m) / (n - 1))
    return jnp.stack(measured), jnp.stack(predicted), jnp.stack(standard_errors)


def batch_section(config, logreg, optimum, report) -> Figure:
    """SGD at full batch, minibatch and one example; the gradient noise at fixed parameters."""
    n = len(logreg.splits.train["y"])
    minibatch = f"minibatch m={config.batch_size or n}"
    batch_sizes = {"full batch": 0, minibatch: config.batch_size, "one example": 1}
    runs = {
        label: logreg.fit("sgd", config.sgd.lr, batch_size=batch_size)
        for label, batch_size in batch_sizes.items()
    }
    regimes = {label: batch_size or n for label, batch_size in batch_sizes.items()}
    rows = [
        (
            label,
            regimes[label],
            n // regimes[label],
            run.result.history[-1]["step"],
            mean_std(run.final["objective"], 5),
            sci(run.final["objective"] - optimum["objective"]),
        )
        for label, run in runs.items()
    ]
    report.text(
        f"## Batch size\n\nSGD (eps = {config.sgd.lr:g}) on the logistic regression, "
        f"{config.epochs} epochs at each batch size: full batch (deterministic gradient), "
        "minibatch, and one example per step (stochastic, online)."
    )
    report.table(
        ["regime", "m", "updates / epoch", "updates", "final J", "J - J*"],
        rows,
        caption="Batch, minibatch and stochastic gradient descent (mean ± std over seeds)",
    )
    gaps = {
        label: np.mean(run.final["objective"] - optimum["objective"]) for label, run in runs.items()
    }
    closest, farthest = min(gaps, key=gaps.get), max(gaps, key=gaps.get)
    report.text(
        f"Measured: after the same {config.epochs} passes over the data the {closest} run is "
        f"closest to J*, and the {farthest} run farthest."
    )

    def data_loss(params, xb, yb):
        return train.cross_entropy(logreg.model.apply({"params": params}, xb), yb)

    seeds = jnp.arange(config.seed, config.seed + config.seeds)
    tx = optim.sgd(config.sgd.lr)
    task = train.classifier(logreg.model, tx, logreg.splits.train["x"][:1])
    at = {
        "initial": jax.vmap(lambda s: task.init(train.stream(s, "init")).params)(seeds),
        "trained": runs[minibatch].result.state.params,
    }
    keys = jax.vmap(lambda s: jax.random.fold_in(train.stream(s, "data"), 2**20))(seeds)
    x, y = jnp.asarray(logreg.splits.train["x"]), jnp.asarray(logreg.splits.train["y"])
    sizes = tuple(sorted({int(m) for m in config.noise_batches if 1 <= int(m) <= n}))
    noise = jax.jit(
        jax.vmap(lambda p, k: gradient_noise(data_loss, p, x, y, sizes, config.noise_draws, k))
    )
    measured = {where: tuple(map(np.asarray, noise(p, keys))) for where, p in at.items()}
    noise_rows = []
    for i, m in enumerate(sizes):
        row = [m]
        for observed, law, _ in measured.values():
            row += [sci(observed[:, i]), sci(law[:, i]), mean_std(observed[:, i] / law[:, i], 3)]
        noise_rows.append(row)
    report.text(
        f"Gradient noise at fixed parameters: E||g_B - g||^2 averaged over {config.noise_draws} "
        "random minibatches per size (drawn without replacement), against the 1/m law "
        "(sigma^2/m)(N-m)/(N-1) with sigma^2 from the per-example gradients; at the initial "
        "parameters and at the end of the minibatch run."
    )
    report.table(
        ["m", "measured (initial)", "1/m law (initial)", "ratio"]
        + ["measured (trained)", "1/m law (trained)", "ratio"],
        noise_rows,
        caption="Variance of the minibatch gradient vs the 1/m law (mean ± std over seeds)",
    )
    fig, axes = plt.subplots(1, 3, figsize=(16, 4))
    for label, run in runs.items():
        epochs, objective = curve(run.result, "full/objective")
        gap = np.maximum(objective - optimum["objective"], GAP_FLOOR)
        band(axes[0], epochs, gap, label)
        band(axes[1], epochs * (n // regimes[label]), gap, label)
    axes[0].set(yscale="log", xlabel="epoch (examples seen / N)", ylabel="J - J*")
    axes[1].set(xscale="log", yscale="log", xlabel="parameter updates", ylabel="J - J*")
    for (where, (observed, law, _)), marker in zip(measured.items(), "os"):
        band(axes[2], sizes, observed, f"measured, {where} parameters", marker=marker)
        axes[2].plot(sizes, law.mean(axis=0), "k--", lw=1)
    axes[2].plot([], [], "k--", lw=1, label="1/m law (sigma^2/m)(N-m)/(N-1)")
    axes[2].set(xscale="log", yscale="log", xlabel="minibatch size m", ylabel="E||g_B - g||^2")
    report.figure(
        finish(fig, axes, "SGD on the logistic regression: batch size and gradient noise"),
        "batch_size",
        "J - J* per epoch and per update; minibatch gradient variance against m",
    )
    ratios = np.concatenate([observed / law for observed, law, _ in measured.values()], axis=1)
    errors = np.concatenate([error / law for _, law, error in measured.values()], axis=1)
    within = np.abs(ratios - 1) <= 2 * errors
    report.text(
        f"Measured: over every m, seed and both parameter points the ratio measured / law lies in "
        f"[{ratios.min():.3f}, {ratios.max():.3f}] (mean {ratios.mean():.3f}); {int(within.sum())}"
        f" of {within.size} ratios are within two standard errors of 1 (the sampling error of "
        f"the {config.noise_draws}-draw average, median {np.median(errors):.3f} relative)."
    )
    return Figure(
        float(ratios.mean()),
        reference=1.0,
        source="the 1/m law",
        tolerance=2 * float(np.median(errors)),  # two standard errors of one ratio
    )


# --- linear decay -------------------------------------------------------------------------------


def decay_section(config, logreg, optimum, report) -> dict:
    """SGD at the constant eps_0 against the linear decay to eps_tau over the whole run."""
    n = len(logreg.splits.train["y"])
    tau = config.decay_epochs * (n // (config.batch_size or n))
    eps0, eps_tau = config.decay_lr, config.decay_final * config.decay_lr
    schedule = optim.linear_decay(eps0, eps_tau, tau)
    fit = functools.partial(logreg.fit, batch_size=config.batch_size, epochs=config.decay_epochs)
    runs = {"constant": fit("sgd", eps0), "linear decay": fit("sgd", schedule, tag="decay")}
    rows = [
        (
            label,
            f"{eps0:g}" if label == "constant" else f"{eps0:g} -> {eps_tau:g} over {tau} steps",
            mean_std(run.final["objective"], 5),
            sci(run.final["objective"] - optimum["objective"]),
            mean_std(run.final["test_accuracy"]),
        )
        for label, run in runs.items()
    ]
    report.text(
        f"## Linear learning-rate decay\n\nSGD on the logistic regression, m = "
        f"{config.batch_size}, {config.decay_epochs} epochs; eps_tau = {config.decay_final:g} "
        "eps_0 and tau = the whole run. The claim under test: with a constant rate the "
        "minibatch noise keeps SGD moving around the optimum at a distance that grows with eps, "
        "while a decaying rate lets it settle closer."
    )
    report.table(
        ["schedule", "eps", "final J", "J - J*", "test accuracy"],
        rows,
        caption="Constant rate vs linear decay (mean ± std over seeds)",
    )
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for label, run in runs.items():
        epochs, objective = curve(run.result, "full/objective")
        band(axes[0], epochs, np.maximum(objective - optimum["objective"], GAP_FLOOR), label)
    steps = np.arange(tau + 1)
    axes[1].plot(steps, np.full(steps.shape, eps0), label="constant")
    axes[1].plot(steps, np.asarray(schedule(steps)), label="linear decay")
    axes[0].set(yscale="log", xlabel="epoch", ylabel="J - J*")
    axes[1].set(xlabel="step k", ylabel="eps_k")
    report.figure(
        finish(fig, axes, "SGD on the logistic regression: constant rate vs linear decay"),
        "decay",
        "J - J* per epoch (mean ± std band), and the two schedules",
    )
    gaps = {
        label: float(np.mean(r.final["objective"] - optimum["objective"]))
        for label, r in runs.items()
    }
    report.text(
        f"Measured: the {min(gaps, key=gaps.get)} run ends closer to J* (mean J - J*: constant "
        f"{gaps['constant']:.2e}, linear decay {gaps['linear decay']:.2e})."
    )
    return gaps


# --- the experiment -----------------------------------------------------------------------------


def train_and_evaluate(config, workdir):
    workdir = pathlib.Path(workdir)
    for key in ("parts", "optimizers"):
        message = RULES[key].check(key, config[key])
        if message:
            raise ConfigError(message)
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
    if {"logreg", "batch", "decay"} & set(parts):
        digits = data.standardize(data.load("digits", seed=config.data_seed))
        optimum = sklearn_optimum(config, digits)
        model = MLP(features=(digits.num_classes,), activation="identity")

        def penalty(params):
            return regularizers.l2_penalty(params, config.l2)

        logreg = Problem(config, "logreg", model, digits, penalty, workdir, track_objective=True)
    if "logreg" in parts:
        objectives = logreg_section(config, names, logreg, optimum, report)
        # final J per seed against scikit-learn's J*: 'matches' once within seed noise
        headline["logreg_objective"] = {
            name: Figure(
                values,
                reference=optimum["objective"],
                source="scikit-learn LogisticRegression J*",
            )
            for name, values in objectives.items()
        }
    if "mlp" in parts:
        mnist = data.standardize(data.load("mnist1d", seed=config.data_seed))
        model = MLP(features=(*config.hidden, mnist.num_classes), activation="relu")
        mlp = Problem(config, "mlp", model, mnist, None, workdir, track_objective=False)
        headline["mlp_test_accuracy"] = mlp_section(config, names, mlp, report)
    if "surfaces" in parts:
        # final f per start against the known minimum f = 0, reached once f <= surface_tol
        headline["final_f"] = {
            surface: {
                name: Figure(
                    values, reference=0.0, source="known minimum", tolerance=config.surface_tol
                )
                for name, values in finals.items()
            }
            for surface, finals in surfaces_section(config, names, report).items()
        }
    if "batch" in parts:
        headline["noise_ratio"] = batch_section(config, logreg, optimum, report)
    if "decay" in parts:
        gaps = decay_section(config, logreg, optimum, report)
        headline["decay_gap"] = {
            "constant": gaps["constant"],
            # 'below': the decaying rate settles closer to J* than the constant one
            "linear_decay": Figure(
                gaps["linear decay"], reference=gaps["constant"], source="constant rate"
            ),
        }
    report.write()
    return headline


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, RULES)
