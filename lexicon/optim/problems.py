"""The problems the optimizer studies share: 2-D test functions, the penalized logistic
regression and its scikit-learn optimum, the gradient-noise law, classifiers trained at theta,
and the per-optimizer config blocks as data.

Each optimizer study (experiments/optimizers.py, optimizer_paths.py, batch_size.py,
lr_decay.py) reads alone; what they have in common lives here.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from lexicon import losses, train
from lexicon.optim.first_order import NAMES, evaluation_params, from_config
from lexicon.optim.second_order import minimize
from lexicon.rules import Range, nonnegative, positive, probability

# Each optimizer's hyperparameters besides its learning rates (SPEC §2; Adam's are published).
HYPERPARAMS: dict[str, dict[str, float]] = {
    "sgd": {},
    "momentum": {"alpha": 0.9},  # the velocity's decay (Alg 8.2)
    "nesterov": {"alpha": 0.9},  # (Alg 8.3)
    "ema_momentum": {"beta": 0.9},  # the moving average's decay (document 000)
    "adagrad": {"delta": 1e-7},  # outside the square root (Alg 8.4)
    "rmsprop": {"rho": 0.9, "delta": 1e-6},  # delta inside the root (Alg 8.5)
    "rmsprop_nesterov": {"rho": 0.9, "alpha": 0.9, "delta": 0.0},  # the algorithm has none
    "adam": {"rho1": 0.9, "rho2": 0.999, "delta": 1e-8},  # Alg 8.7, published values
}

HYPERPARAM_RULES = {
    "alpha": probability(),
    "beta": probability(),
    "delta": nonnegative(),
    "rho": Range(0.0, 1.0, open_hi=True),
    "rho1": Range(0.0, 1.0, open_hi=True),  # 1 would divide by 1 - rho1^t = 0
    "rho2": Range(0.0, 1.0, open_hi=True),
}


def add_blocks(config, rates: dict[str, dict[str, float]]) -> None:
    """One block per optimizer in ``config``: its ``rates`` (e.g. ``{"lr": 0.3}``) first, then
    its :data:`HYPERPARAMS`; ``optim.from_config(name, config[name], rate_key=...)`` reads it."""
    for name in NAMES:
        config[name] = ml_collections.ConfigDict({**rates[name], **HYPERPARAMS[name]})


def block_rules(rate_keys: tuple[str, ...]) -> dict:
    """The RULES of the blocks that :func:`add_blocks` writes: rates positive, every
    hyperparameter in its range."""
    rules = {f"{name}.{key}": positive() for name in NAMES for key in rate_keys}
    for name, hyperparams in HYPERPARAMS.items():
        rules.update({f"{name}.{key}": HYPERPARAM_RULES[key] for key in hyperparams})
    return rules


def optimizer(config, name: str, rate_key: str = "lr", rate=None, rate_keys=("lr",)):
    """``optim.from_config`` on the block of ``name``: the rate under ``rate_key`` (or ``rate``,
    a float or a schedule, in its place) and the block's hyperparameters."""
    block = dict(config[name].items())
    if rate is not None:
        block[rate_key] = rate
    return from_config(name, block, rate_key=rate_key, skip=tuple(k for k in rate_keys))


def describe(block, rate_keys=("lr",), keep: str = "lr") -> str:
    """'lr=0.03, alpha=0.9': a block's rate ``keep`` and hyperparameters."""
    return ", ".join(f"{k}={v:g}" for k, v in block.items() if k == keep or k not in rate_keys)


def sci(values) -> str:
    """'mean ± std' in scientific notation."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    return f"{values.mean():.3e} ± {values.std():.1e}"


# --- 2-D test functions -------------------------------------------------------------------------


def quadratic(theta, condition, angle_degrees):
    """f = 1/2 (u^2 + kappa v^2) with (u, v) the coordinates (x, y) rotated by the angle."""
    angle = math.radians(angle_degrees)
    u = math.cos(angle) * theta[0] + math.sin(angle) * theta[1]
    v = -math.sin(angle) * theta[0] + math.cos(angle) * theta[1]
    return 0.5 * (u**2 + condition * v**2)


def rosenbrock(theta):
    """f = (1 - x)^2 + 100 (y - x^2)^2; minimum f = 0 at (1, 1)."""
    return (1.0 - theta[0]) ** 2 + 100.0 * (theta[1] - theta[0] ** 2) ** 2


def descend(f, tx, start, *, steps: int):
    """The iterates theta_0 .. theta_steps of ``tx`` on f and f at each, as ((steps + 1, 2),
    (steps + 1,)) arrays: ``optim.minimize`` with no stopping test (Nesterov methods at theta)."""
    result = minimize(tx, f, start, tol=-1.0, max_iter=steps, keep_params_history=True)
    return result.params_history, result.loss_history


def steps_to(values, tol) -> str:
    """First step at which each seed's f reaches ``tol``, as mean ± std over seeds."""
    from lexicon.report import mean_std

    reached = np.asarray(values) <= tol
    if not reached.any(axis=1).all():
        return f"not reached ({int(reached.any(axis=1).sum())}/{len(reached)} seeds)"
    return mean_std(reached.argmax(axis=1), digits=1)


# --- the penalized logistic regression ----------------------------------------------------------


def logreg_objective(w, b, x, y, l2) -> float:
    """J = (1/N) sum_i -log softmax(x_i W + b)_{y_i} + (lambda/2)||W||^2, in NumPy float64."""
    z = np.asarray(x, np.float64) @ np.asarray(w, np.float64) + np.asarray(b, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(len(y)), y].mean() + 0.5 * l2 * np.sum(np.square(w)))


def sklearn_optimum(l2: float, splits) -> dict:
    """scikit-learn's LogisticRegression on the same objective: J* and its test accuracy.

    sklearn minimizes C sum_i L_i + (1/2)||W||^2; dividing by C N gives our J with
    lambda = 1 / (C N), hence C = 1 / (lambda N).
    """
    from sklearn.linear_model import LogisticRegression

    x, y = splits.train["x"].astype(np.float64), splits.train["y"]
    model = LogisticRegression(C=1.0 / (l2 * len(x)), tol=1e-10, max_iter=10_000)
    model.fit(x, y)
    return {
        "objective": logreg_objective(model.coef_.T, model.intercept_, x, y, l2),
        "test_accuracy": float(model.score(splits.test["x"], splits.test["y"])),
        "w": model.coef_.T,
        "b": model.intercept_,
    }


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


# --- classifiers trained by each optimizer ------------------------------------------------------


@dataclasses.dataclass
class Run:
    result: train.Result
    final: dict  # per-seed values after training: loss and objective (train), test accuracy


class Problem:
    """A classifier, its data and its fits, memoized so that a study's parts share runs.

    Every evaluation, and the final scores, use theta (``optim.evaluation_params``), not a
    Nesterov look-ahead. ``track_objective`` evaluates J on the whole training split after
    every epoch (for curves of J - J*); otherwise the curves are the per-epoch means of the
    minibatch losses. ``schedule(config)`` may change a run's batch size and epochs (a paper
    preset).
    """

    def __init__(self, config, name, model, splits, penalty, workdir, track_objective, resize=None):
        self.config, self.name, self.model, self.splits = config, name, model, splits
        self.penalty, self.workdir, self.track = penalty, workdir, track_objective
        self.resize = resize
        self.runs: dict[tuple, Run] = {}

        @jax.jit
        def score(params, x, y):
            def one(p):
                logits = model.apply({"params": p}, x)
                loss = losses.softmax_cross_entropy_with_integer_labels(logits, y)
                objective = loss if penalty is None else loss + penalty(p)
                return {"loss": loss, "objective": objective, "accuracy": train.accuracy(logits, y)}

            return jax.vmap(one)(params)

        self.score = score

    def fit(self, optimizer, label: str, *, batch_size, epochs=None) -> Run:
        """Trains ``optimizer`` (named ``label``, e.g. "sgd_lr0.3") at minibatch size
        ``batch_size``: an optax transform, or a builder ``config -> transform``.

        With a builder, ``train.fit`` gets a task builder, so a sweep of the config
        (``config.sweep``) trains every grid point x seed as one program: inside it the
        builder sees the swept keys as traced values, and the run's final scores and curves
        have one row per replica (point g, seed s at g * seeds + s). Runs are memoized in
        ``self.runs`` under (label, batch_size, epochs)."""
        epochs = epochs or self.config.epochs
        key = (label, batch_size, epochs)
        if key in self.runs:
            return self.runs[key]
        build = optimizer if callable(optimizer) else lambda config: optimizer
        first = self.splits.train["x"][:1]

        def task(config):
            built = train.classifier(self.model, build(config), first, penalty=self.penalty)
            return dataclasses.replace(built, evaluate=self._evaluate_at_theta(built))

        run_config = self.config.copy_and_resolve_references()
        run_config.batch_size, run_config.epochs = batch_size, epochs
        if self.resize is not None:
            self.resize(run_config)
        name = f"{self.name}_{label}_m{batch_size}_e{epochs}"
        evals = {"full": self.splits.train} if self.track else {}
        result = train.fit(
            run_config, task, self.splits.train, self.workdir / name, eval_splits=evals
        )
        params = jax.vmap(evaluation_params)(result.state.params, result.state.opt_state)
        on_train = self.score(params, self.splits.train["x"], self.splits.train["y"])
        on_test = self.score(params, self.splits.test["x"], self.splits.test["y"])
        final = {
            "loss": np.asarray(on_train["loss"]),
            "objective": np.asarray(on_train["objective"]),
            "test_accuracy": np.asarray(on_test["accuracy"]),
        }
        self.runs[key] = Run(result, final)
        return self.runs[key]

    def _evaluate_at_theta(self, task):
        def evaluate(state, split):
            params = evaluation_params(state.params, state.opt_state)
            metrics = task.evaluate(state.replace(params=params), split)
            if self.penalty is not None:
                metrics["objective"] = metrics["loss"] + self.penalty(params)
            return metrics

        return evaluate


GAP_FLOOR = 1e-7  # J - J* is drawn on a log axis, clipped below at this value


def gap_curves(runs: dict, optimum: dict) -> dict:
    """label -> (epochs, J - J* of shape (seeds, epochs), clipped below at GAP_FLOOR)."""
    curves = {}
    for label, run in runs.items():
        epochs, objective = run.result.curve("full/objective")
        curves[label] = (epochs, np.maximum(objective - optimum["objective"], GAP_FLOOR))
    return curves


def logistic_problem(config, workdir):
    """Multiclass logistic regression on the standardized digits, J = mean cross-entropy +
    (lambda/2)||W||^2 (lambda = ``config.l2``, biases free), with J tracked every epoch;
    returns (problem, scikit-learn optimum)."""
    from lexicon import data, regularizers
    from lexicon.nn.layers import MLP

    digits = data.standardize(data.load("digits", seed=config.data_seed))
    model = MLP(features=(digits.num_classes,), activation="identity")

    def penalty(params):
        return regularizers.l2_penalty(params, config.l2)

    problem = Problem(config, "logreg", model, digits, penalty, workdir, track_objective=True)
    return problem, sklearn_optimum(config.l2, digits)


# --- the fully penalized logistic regression of the second-order study -------------------------


def logistic_value_and_grad(theta, x, t, l2, num_outputs):
    """J and its gradient in NumPy float64 on the flat vector theta = [w.ravel(), b], for the
    logistic regression with every parameter penalized (biases too).

    binary:     z = x w + b, J = mean(log(1 + e^z) - t z) + (lambda/2)||theta||^2,
                dJ/dw = x^T (sigmoid(z) - t) / N + lambda w,
                dJ/db = mean(sigmoid(z) - t) + lambda b.
    multiclass: z = x W + b, J = mean(logsumexp(z) - z_y) + (lambda/2)||theta||^2,
                dJ/dW = x^T (softmax(z) - Y) / N + lambda W, Y one-hot.
    """
    n, d = x.shape
    if num_outputs == 1:
        w, b = theta[:d], theta[d]
        z = x @ w + b
        value = np.mean(np.logaddexp(0.0, z) - t * z)
        residual = 0.5 * (1.0 + np.tanh(0.5 * z)) - t  # sigmoid(z) - t without overflow
        grad = np.concatenate([x.T @ residual / n, [residual.mean()]])
    else:
        w, b = theta[: d * num_outputs].reshape(d, num_outputs), theta[d * num_outputs :]
        z = x @ w + b
        z_max = z.max(axis=1, keepdims=True)
        log_norm = z_max[:, 0] + np.log(np.exp(z - z_max).sum(axis=1))
        value = np.mean(log_norm - z[np.arange(n), t])
        residual = np.exp(z - log_norm[:, None])
        residual[np.arange(n), t] -= 1.0
        grad = np.concatenate([(x.T @ residual / n).ravel(), residual.mean(axis=0)])
    return value + 0.5 * l2 * theta @ theta, grad + l2 * theta


def logistic_objective(params, x, t, l2):
    """J(theta) = mean cross-entropy + (lambda/2)||theta||^2 in JAX, biases penalized too: the
    twin of :func:`logistic_value_and_grad` on ``{"w", "b"}``. Binary (sigmoid, t in {0, 1})
    when ``params["w"]`` is a vector, a softmax over the columns of W otherwise."""
    z = x @ params["w"] + params["b"]
    if params["w"].ndim == 1:
        data_term = losses.binary_cross_entropy_with_logits(z, t)
    else:
        data_term = losses.softmax_cross_entropy_with_integer_labels(z, t)
    return data_term + 0.5 * l2 * (jnp.sum(params["w"] ** 2) + jnp.sum(params["b"] ** 2))


def digits_logistic(classes: str, data_seed: int):
    """The standardized digits' training split in float64 and its targets: the odd digits
    against the even ones (``classes="binary"``, t = 1 for odd) or the digit itself
    (``"multiclass"``); returns (x, t, num_outputs), num_outputs 1 for binary."""
    from lexicon import data

    splits = data.standardize(data.load("digits", seed=data_seed))
    x = splits.train["x"].astype(np.float64)
    y = splits.train["y"]
    if classes == "binary":
        return x, (y % 2).astype(np.int32), 1
    return x, y, splits.num_classes


def scipy_optimum(
    l2: float, x, t, num_outputs: int, method: str = "L-BFGS-B", gtol: float = 1e-12
) -> dict:
    """scipy's L-BFGS-B (or ``method="CG"``, its Polak-Ribiere+ conjugate gradient, stopped at
    ||g||_2 <= gtol) on :func:`logistic_value_and_grad`, from zero, to a gradient near
    rounding: its parameters, J*, final gradient norm, iterations and wall time."""
    import time

    import scipy.optimize

    size = x.shape[1] * num_outputs + num_outputs
    start = time.perf_counter()
    solution = scipy.optimize.minimize(
        logistic_value_and_grad,
        np.zeros(size),
        args=(x, t, l2, num_outputs),
        jac=True,
        method=method,
        options={"maxiter": 100_000, "maxfun": 200_000, "gtol": gtol, "ftol": 1e-16}
        if method == "L-BFGS-B"
        else {"maxiter": 100_000, "gtol": gtol, "norm": 2},
    )
    seconds = time.perf_counter() - start
    d = x.shape[1]
    w, b = solution.x[: d * num_outputs], solution.x[d * num_outputs :]
    params = {"w": w if num_outputs == 1 else w.reshape(d, num_outputs)}
    params["b"] = b[0] if num_outputs == 1 else b
    return {
        "params": params,
        "objective": float(solution.fun),
        "grad_norm": float(np.linalg.norm(solution.jac)),
        "iterations": int(solution.nit),
        "seconds": seconds,
    }


# --- hard landscapes: a local minimum, a plateau, a saddle, a cliff (000, 001; SPEC §14) ---------


def tilted_double_well(theta, tilt=0.3):
    """f = (x^2 - 1)^2 + tilt x + y^2 / 2: two minima near x = -1 (global, f ~ -tilt) and x = +1
    (local, f ~ +tilt), a barrier near x = 0 between them."""
    return (theta[0] ** 2 - 1.0) ** 2 + tilt * theta[0] + 0.5 * theta[1] ** 2


def plateau(theta, width=1.0):
    """f = 1 - exp(-(x^2 + y^2) / (2 width^2)): minimum 0 at the origin, and far from it a
    plateau (f ~ 1) whose gradient r/width^2 exp(-r^2 / (2 width^2)) all but vanishes."""
    return 1.0 - jnp.exp(-(theta[0] ** 2 + theta[1] ** 2) / (2.0 * width**2))


def saddle(theta):
    """f = x^2/2 - y^2/2 + y^4/4: a saddle at the origin (Hessian diag(1, -1)) between the two
    minima (0, +-1), f = -1/4."""
    return 0.5 * theta[0] ** 2 - 0.5 * theta[1] ** 2 + 0.25 * theta[1] ** 4


def cliff(theta, height=10.0, width=0.02, position=1.5):
    """f = (x^2 + y^2)/2 + height sigmoid((x - position) / width): a bowl (minimum near the
    origin) with a cliff at x = position, where f drops by ``height`` over a few ``width``s
    and the gradient reaches height / (4 width)."""
    return 0.5 * (theta[0] ** 2 + theta[1] ** 2) + height * jax.nn.sigmoid(
        (theta[0] - position) / width
    )


def centered_noise(key, examples: int, scale: float) -> jax.Array:
    """xi_1 .. xi_N ~ N(0, scale^2 I_2), shifted to mean exactly 0 (the per-example terms of
    :func:`noisy_descend`)."""
    xi = scale * jax.random.normal(key, (examples, 2))
    return xi - xi.mean(axis=0)


def noisy_descend(f, tx, start, noise, key, batch_size, *, steps: int):
    """Minibatch descent on J(theta) = (1/N) sum_i f_i(theta), f_i = f(theta) + xi_i . theta.

    With the xi_i centered, J = f, and a minibatch B of m examples (drawn without replacement,
    afresh each step from ``key``) has gradient grad f(theta) + mean_{i in B} xi_i: the full
    gradient plus noise of covariance (s^2 / m)(N - m)/(N - 1) (the 1/m law of
    :func:`gradient_noise`), zero at m = N, where this is full-batch gradient descent.
    ``batch_size`` may be traced (the first m of a permutation, as weights 1/m), so one
    program serves every m. Returns the iterates (steps + 1, 2) and f at each."""
    grad_f = jax.grad(f)
    n = noise.shape[0]
    weights = (jnp.arange(n) < batch_size) / batch_size  # 1/m on the first m drawn

    def step(carry, step_key):
        theta, state = carry
        g = grad_f(theta) + weights @ noise[jax.random.permutation(step_key, n)]
        updates, state = tx.update(g, state, theta)
        theta = optax.apply_updates(theta, updates)
        return (theta, state), theta

    _, path = jax.lax.scan(step, (start, tx.init(start)), jax.random.split(key, steps))
    path = jnp.concatenate([start[None], path])
    return path, jax.vmap(f)(path)


def descend_all(f, tx, starts, *, steps: int):
    """:func:`descend` from every start (seeds, 2): (paths (seeds, steps + 1, 2), f along)."""
    return jax.vmap(functools.partial(descend, f, tx, steps=steps))(starts)


def minibatch_runs(f, learning_rate, starts, seeds, *, examples, scale, batch_sizes, steps):
    """m -> (paths (seeds, steps + 1, 2), f along them) of SGD on the finite sum of
    :func:`noisy_descend` for every minibatch size m in ``batch_sizes``, one program. Seed s
    starts at its row of ``starts`` and draws its N = ``examples`` terms xi_i (std ``scale``)
    from its "data" stream and its minibatches from its "step" stream, the same at every m
    (so the sizes compare paired)."""
    from lexicon.optim.first_order import sgd

    noise = jax.vmap(lambda s: centered_noise(train.stream(s, "data"), examples, scale))(seeds)
    keys = jax.vmap(lambda s: train.stream(s, "step"))(seeds)
    one = functools.partial(noisy_descend, f, sgd(learning_rate), steps=steps)
    per_seed = jax.vmap(one, in_axes=(0, 0, 0, None))
    paths, values = jax.vmap(lambda m: per_seed(starts, noise, keys, m))(jnp.asarray(batch_sizes))
    return {m: (paths[i], values[i]) for i, m in enumerate(batch_sizes)}


def first_step(event) -> np.ndarray:
    """Per seed: the first step at which ``event`` (seeds, steps + 1) holds, or NaN."""
    event = np.asarray(event)
    return np.where(event.any(axis=1), event.argmax(axis=1), np.nan)


def rate(event) -> str:
    """'k/S': the seeds where a per-seed boolean holds."""
    return f"{int(np.sum(event))}/{np.size(event)}"


def steps_text(steps) -> str:
    """'mean ± std' of the finite per-seed step counts, or 'never'."""
    steps = np.asarray(steps, dtype=np.float64)
    kept = steps[np.isfinite(steps)]
    from lexicon.report import mean_std

    return mean_std(kept, 1) if kept.size else "never"


def draw_paths(ax, f, window, paths: dict, *, title="", log_levels=False, seed: int = 0):
    """Contours of the 2-D ``f`` over ``window`` (x0, x1, y0, y1) and one seed's path of each
    label of ``paths`` (label -> (seeds, steps + 1, 2)), from its start (a black dot)."""
    gx, gy = np.meshgrid(np.linspace(*window[:2], 300), np.linspace(*window[2:], 300))
    fz = np.asarray(jax.vmap(jax.vmap(f))(jnp.stack([gx, gy], axis=-1)))
    levels = np.geomspace(max(fz.min(), 1e-2), fz.max(), 30) if log_levels else 30
    ax.contour(gx, gy, fz, levels=levels, colors="0.7", linewidths=0.5)
    for i, (label, path) in enumerate(paths.items()):
        marker = "." if len(path[seed]) < 30 else None
        ax.plot(*path[seed].T, lw=1.1, color=f"C{i}", label=label, marker=marker)
    ax.plot(*next(iter(paths.values()))[seed, 0], "ko", ms=5, label=f"start (seed {seed})")
    ax.set(xlim=window[:2], ylim=window[2:], xlabel="x", ylabel="y", title=title)
    ax.grid(alpha=0.3)


def last_finite(values) -> np.ndarray:
    """Per seed (row), the last finite entry: a history whose tail is NaN after it stopped."""
    values = np.asarray(values, dtype=np.float64)
    last = np.where(np.isfinite(values), np.arange(values.shape[1]), -1).max(axis=1)
    return values[np.arange(len(values)), np.maximum(last, 0)]
