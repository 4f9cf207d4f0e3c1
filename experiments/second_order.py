"""Second-order methods (Newton Alg 8.8, Newton-CG, BFGS, L-BFGS, nonlinear CG) vs first-order.

The problem is L2-regularized logistic regression on the standardized digits, in float64:
    binary      J(w, b) = (1/N) sum_i BCE(sigmoid(x_i w + b), t_i) + (lambda/2)(||w||^2 + b^2),
                t_i = 1 for an odd digit (65 parameters);
    multiclass  J(W, b) = (1/N) sum_i -log softmax(x_i W + b)_{y_i}
                          + (lambda/2)(||W||^2 + ||b||^2)   (650 parameters).
The biases are penalized too, so J is strictly convex with one minimizer theta* (for the softmax,
adding one constant to every class's bias changes nothing, and the Hessian would be singular
along that direction without the penalty).

Every method of lexicon.optim runs from the same starting points (one per seed, vmapped) until
||grad J(theta_k)||_2 <= tol: Newton (theta <- theta - H^{-1} g with the exact Hessian),
Newton-CG (H d = -g solved by conjugate gradient on Hessian-vector products), BFGS (inverse-
Hessian update, Armijo backtracking), L-BFGS (optax), nonlinear conjugate gradient (cg_fr:
Fletcher-Reeves, cg_pr: Polak-Ribiere+, strong Wolfe line search, restarts every n iterations;
no Hessian, only gradients, p_{k+1} = -g_{k+1} + beta p_k), and full-batch first-order methods
(SGD is then gradient descent; momentum; Adam ...).

Newton converges quadratically: with e_k = ||theta_k - theta*||, near theta* it obeys
e_{k+1} <= C e_k^2, so e_{k+1}/e_k -> 0 while e_{k+1}/e_k^2 stays bounded. theta* is Newton's
own limit (iterated with tol = 0 until rounding stops it).

Reference: scipy.optimize.minimize(method="L-BFGS-B") on a NumPy float64 transcription of J and
its gradient; every method's final J is reported against scipy's. Wall times are medians of
``config.repeats`` runs measured after compiling; one run solves all seeds at once (one vmapped
program, which iterates until its slowest seed stops).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import ml_collections
import numpy as np
from jax.flatten_util import ravel_pytree

from lexicon import cli, data, losses, optim, train
from lexicon.optim import problems
from lexicon.report import Figure, Report, band, mean_std
from lexicon.rules import Choice, ConfigError, Names, Range, positive, split_names

METHODS = ("newton", "newton_cg", "bfgs", "lbfgs", "cg_fr", "cg_pr")
CG_BETAS = {"cg_fr": "fletcher_reeves", "cg_pr": "polak_ribiere"}  # optim.nonlinear_cg's rules
CLASSES = ("binary", "multiclass")


def get_config():
    config = train.defaults()  # every shared key; the solvers use seed, seeds and data_seed
    config.seed = 0  # seed of the first starting point; seed i uses seed + i
    config.seeds = 3  # starting points theta_0 ~ N(0, init_scale^2), solved together (vmap)
    config.data_seed = 0  # seed of the train/validation/test split of digits
    config.classes = "binary"  # binary (odd vs even digit, 65 params) | multiclass (650 params)
    config.l2 = 1e-3  # lambda of (lambda/2)||theta||^2, weights and biases
    config.init_scale = 0.01  # standard deviation of the starting points
    config.tol = 1e-8  # stop once ||grad J||_2 <= tol
    config.methods = ",".join(METHODS)  # second-order methods to run (comma-separated)
    config.newton_max_iter = 30  # iteration cap of Newton and Newton-CG
    config.max_iter = 1000  # iteration cap of BFGS, L-BFGS and nonlinear CG
    config.memory = 10  # L-BFGS memory: (s, y) pairs kept
    config.first_order = "sgd,momentum,adam"  # full-batch methods from lexicon.optim.NAMES
    config.first_order_max_iter = 20000  # iteration cap of the first-order methods
    config.lr = ml_collections.ConfigDict()
    config.lr.sgd = 1.0  # eps of gradient descent (Alg 8.1 on the full batch)
    config.lr.momentum = 1.0  # eps of momentum (Alg 8.2, alpha = 0.9)
    config.lr.nesterov = 1.0  # eps of Nesterov momentum (Alg 8.3, alpha = 0.9)
    config.lr.ema_momentum = 10.0  # lambda of EMA momentum (document 000, beta = 0.9)
    config.lr.adagrad = 0.1  # eps of AdaGrad (Alg 8.4)
    config.lr.rmsprop = 1e-3  # eps of RMSProp (Alg 8.5)
    config.lr.rmsprop_nesterov = 1e-4  # eps of RMSProp with Nesterov momentum (Alg 8.6)
    config.lr.adam = 0.01  # eps of Adam (Alg 8.7; rho1, rho2, delta at the published values)
    config.repeats = 3  # timed runs after compiling; the median is reported
    return config


RULES = {
    "classes": Choice(*CLASSES),
    "l2": positive(),
    "init_scale": Range(0.0),
    "tol": positive(),
    "methods": Names(METHODS, allow_empty=True),
    "newton_max_iter": Range(1, 1000),
    "max_iter": Range(1, 100_000),
    "memory": Range(1, 1000),
    "first_order": Names(optim.NAMES, allow_empty=True),
    "first_order_max_iter": Range(1, 10_000_000),
    "repeats": Range(1, 100),
    **{f"lr.{name}": positive() for name in optim.NAMES},
}


def check_config(config):
    """Cross-key rules; cli.run checks them before anything compiles."""
    if not split_names(config.methods) + split_names(config.first_order):
        raise ConfigError("config.methods and config.first_order are both empty; name a method")


# --- the problem ------------------------------------------------------------------------------


def load_problem(config):
    """Standardized digits (float64) and targets: odd/even (binary) or the digit (multiclass)."""
    splits = data.standardize(data.load("digits", seed=config.data_seed))
    x = splits.train["x"].astype(np.float64)
    y = splits.train["y"]
    targets = (y % 2).astype(np.int32) if config.classes == "binary" else y
    return x, targets, (1 if config.classes == "binary" else splits.num_classes)


def objective(params, x, t, l2):
    """J(theta) = mean cross-entropy + (lambda/2)||theta||^2; binary when w is a vector."""
    z = x @ params["w"] + params["b"]
    if params["w"].ndim == 1:
        data_term = losses.binary_cross_entropy_with_logits(z, t)
    else:
        data_term = losses.softmax_cross_entropy_with_integer_labels(z, t)
    return data_term + 0.5 * l2 * (jnp.sum(params["w"] ** 2) + jnp.sum(params["b"] ** 2))


def initial_params(config, num_features, num_outputs):
    """One starting point per seed: theta_0 ~ N(0, init_scale^2), with a leading seed axis."""
    shape = (num_features,) if num_outputs == 1 else (num_features, num_outputs)

    def draw(seed):
        key_w, key_b = jax.random.split(train.stream(seed, "init"))
        return {
            "w": config.init_scale * jax.random.normal(key_w, shape, jnp.float64),
            "b": config.init_scale * jax.random.normal(key_b, shape[1:], jnp.float64),
        }

    return jax.vmap(draw)(jnp.arange(config.seed, config.seed + config.seeds))


# --- the methods --------------------------------------------------------------------------------


def solver(config, method: str):
    """A jitted ``(starts, x, t, l2, tol) -> OptimizeResult`` over the seed axis of ``starts``."""
    if method in METHODS:
        options = {"max_iter": config.newton_max_iter}
        if method in ("bfgs", "lbfgs", *CG_BETAS):
            options = {"max_iter": config.max_iter}
        if method == "lbfgs":
            options["memory_size"] = config.memory
        if method in CG_BETAS:
            options["beta"] = CG_BETAS[method]
        minimize = optim.nonlinear_cg if method in CG_BETAS else getattr(optim, method)

        def solve(params0, x, t, l2, tol):
            return minimize(objective, params0, x, t, l2, tol=tol, **options)

    else:
        tx = optim.get(method, learning_rate=config.lr[method])
        max_iter = config.first_order_max_iter

        def solve(params0, x, t, l2, tol):
            return optim.minimize(tx, objective, params0, x, t, l2, tol=tol, max_iter=max_iter)

    return jax.jit(jax.vmap(solve, in_axes=(0, None, None, None, None)))


def timed(run, *args, repeats: int):
    """(result, median seconds of ``repeats`` runs), all measured after a compiling run."""
    result = jax.block_until_ready(run(*args))
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(run(*args))
        seconds.append(time.perf_counter() - start)
    return result, float(np.median(seconds))


def newton_errors(run_newton, starts, x, t, l2):
    """e_k = ||theta_k - theta*|| per seed, theta* being Newton's limit (tol = 0)."""
    polished = run_newton(starts, x, t, l2, 0.0)
    history = np.asarray(polished.params_history)  # (seeds, rows, n)
    limit = np.asarray(jax.vmap(lambda p: ravel_pytree(p)[0])(polished.params))
    return np.linalg.norm(history - limit[:, None], axis=2), limit


def iterations_to(norms, tol) -> tuple[np.ndarray, np.ndarray]:
    """Per seed: the first k with ||g_k|| <= tol (or -1), and whether it was reached."""
    reached = np.nan_to_num(norms, nan=np.inf) <= tol
    return np.where(reached.any(axis=1), reached.argmax(axis=1), -1), reached.any(axis=1)


# --- the experiment -----------------------------------------------------------------------------


def train_and_evaluate(config, workdir):
    methods, first_order = split_names(config.methods), split_names(config.first_order)
    for key, rule in (("methods", RULES["methods"]), ("first_order", RULES["first_order"])):
        message = rule.check(key, config[key])
        if message:
            raise ConfigError(message)
    if not methods + first_order:
        raise ConfigError("config.methods and config.first_order are both empty; name a method")
    with jax.enable_x64(True):
        return _run(config, workdir, methods, first_order)


def _run(config, workdir, methods, first_order):
    x_np, t_np, num_outputs = load_problem(config)
    reference = problems.scipy_optimum(config.l2, x_np, t_np, num_outputs)
    x, t, l2 = jnp.asarray(x_np), jnp.asarray(t_np), jnp.asarray(config.l2)
    starts = initial_params(config, x_np.shape[1], num_outputs)
    theta_scipy = np.asarray(ravel_pytree(jax.tree.map(jnp.asarray, reference["params"]))[0])
    size = theta_scipy.size

    results, seconds, errors = {}, {}, {}
    for method in methods + first_order:
        run = solver(config, method)
        results[method], seconds[method] = timed(
            run, starts, x, t, l2, config.tol, repeats=config.repeats
        )
        if method == "newton":
            errors["newton"], limit = newton_errors(run, starts, x, t, l2)
    # Errors of the other second-order methods, from Newton's limit when it ran (it is sharper
    # than scipy's), else from scipy's solution.
    limit = limit if "newton" in errors else np.broadcast_to(theta_scipy, (config.seeds, size))
    for method in methods:
        if method != "newton":
            history = np.asarray(results[method].params_history)
            errors[method] = np.linalg.norm(history - limit[:, None], axis=2)

    rows, headline = [], {"iterations": {}, "objective_gap": {}}
    for method, result in results.items():
        norms = np.asarray(result.grad_norm_history)
        iterations, reached = iterations_to(norms, config.tol)
        taken = np.asarray(result.num_iterations)
        final = np.asarray(result.loss_history)[np.arange(config.seeds), taken]
        final_theta = np.asarray(jax.vmap(lambda p: ravel_pytree(p)[0])(result.params))
        if reached.all():
            count = mean_std(iterations, 1)
        else:
            count = f"not reached in {int(taken.max())} ({int(reached.sum())}/{config.seeds} seeds)"
        rows.append(
            (
                method,
                count,
                f"{seconds[method] * 1e3:.2f}",
                f"{seconds[method] / max(int(taken.max()), 1) * 1e6:.1f}",
                f"{np.nanmax(norms[np.arange(config.seeds), taken]):.1e}",
                f"{np.mean(final - reference['objective']):+.2e}",
                f"{np.max(np.linalg.norm(final_theta - theta_scipy, axis=1)):.1e}",
            )
        )
        # iterations to ||g|| <= tol per seed, NaN where a seed did not get there
        headline["iterations"][method] = np.where(reached, iterations, np.nan)
        headline["objective_gap"][method] = Figure(
            final - reference["objective"],
            reference=0.0,
            source="J* of scipy.optimize.minimize L-BFGS-B",
            tolerance=1e-10,  # the optimum to float64 precision at ||g|| <= 1e-8
        )
    rows.append(
        (
            "**reference: scipy L-BFGS-B (NumPy, float64)**",
            f"{reference['iterations']} (one start at 0)",
            f"{reference['seconds'] * 1e3:.2f} (not compiled)",
            "",
            f"{reference['grad_norm']:.1e}",
            "0",
            "0",
        )
    )

    if set(methods) & set(CG_BETAS):
        cg = problems.scipy_optimum(config.l2, x_np, t_np, num_outputs, "CG", gtol=config.tol)
        rows.append(
            (
                "**reference: scipy CG, Polak-Ribiere+ (NumPy, float64)**",
                f"{cg['iterations']} (one start at 0)",
                f"{cg['seconds'] * 1e3:.2f} (not compiled)",
                "",
                f"{cg['grad_norm']:.1e}",
                f"{cg['objective'] - reference['objective']:+.2e}",
                f"{np.linalg.norm(ravel_pytree(cg['params'])[0] - theta_scipy):.1e}",
            )
        )
    report = Report(workdir, "Second-order methods: Newton, Newton-CG, BFGS, L-BFGS, CG")
    problem = "odd vs even digit" if num_outputs == 1 else "10-way softmax"
    report.text(
        f"L2-regularized logistic regression on the {len(t_np)} standardized training digits "
        f"({problem}, {size} parameters, lambda = {config.l2:g}, float64), from {config.seeds} "
        f"starting points theta_0 ~ N(0, {config.init_scale:g}^2) solved together under vmap. "
        f"Every method stops once ||grad J|| <= {config.tol:g}. The reference optimum J* = "
        f"{reference['objective']:.12f} comes from scipy.optimize.minimize (L-BFGS-B) on a NumPy "
        "transcription of J and its gradient."
    )
    report.table(
        [
            "method",
            f"iterations to ||g|| <= {config.tol:g}",
            "wall time, ms (all seeds)",
            "µs / iteration",
            "final ||g|| (worst seed)",
            "J - J*(scipy)",
            "max ||theta - theta_scipy||",
        ],
        rows,
        caption=(
            f"Iterations and time to the tolerance (median of {config.repeats} runs after "
            "compiling; one vmapped run solves every seed)"
        ),
    )
    report.figure(
        convergence_figure(results, errors, config), "convergence", "gradient norm and error"
    )
    if "newton" in errors:
        newton_table(report, errors["newton"], results["newton"], headline)
    report.write()
    return headline


def newton_ratios(e):
    """e_{k+1}/e_k and e_{k+1}/e_k^2 per seed and k, NaN once e_k or e_{k+1} is at the rounding
    floor 1e-13 max(1, max e); and that floor."""
    floor = 1e-13 * max(1.0, float(np.nanmax(e)))
    valid = (e[:, :-1] > floor) & (e[:, 1:] > floor)
    previous = np.where(valid, e[:, :-1], 1.0)
    return (
        np.where(valid, e[:, 1:] / previous, np.nan),
        np.where(valid, e[:, 1:] / previous**2, np.nan),
        floor,
    )


def newton_table(report, errors, result, headline):
    """Seed 0's e_k with the ratios e_{k+1}/e_k (-> 0) and e_{k+1}/e_k^2 (bounded)."""
    e = errors[0]
    norms = np.asarray(result.grad_norm_history)[0]
    linear, squared, floor = newton_ratios(errors)
    linear, squared = linear[0], squared[0]
    steps = int(result.num_iterations[0])
    rows = [
        (k, f"{norms[k]:.3e}", f"{e[k]:.3e}", fmt(linear[k]), fmt(squared[k]))
        for k in range(steps + 1)
    ]
    kept = np.isfinite(squared[: steps + 1])
    quadratic, linears = squared[: steps + 1][kept].tolist(), linear[: steps + 1][kept].tolist()
    report.text(
        "Newton's quadratic convergence (seed 0): e_k = ||theta_k - theta*||. The ratio "
        "e_{k+1}/e_k falls towards 0 and e_{k+1}/e_k^2 levels off at a constant C; a ratio is "
        f"left out (—) once e_k is at the rounding floor ({floor:.0e})."
    )
    report.table(
        ["k", "||g_k||", "e_k", "e_{k+1} / e_k", "e_{k+1} / e_k^2"],
        rows,
        caption="Newton's method, iterate by iterate",
    )
    # seed 0's last e_{k+1}/e_k (falls towards 0) and e_{k+1}/e_k^2 (levels off at C)
    if quadratic:
        headline["newton_rate"] = {"linear": linears[-1], "quadratic": quadratic[-1]}


def fmt(value) -> str:
    return "—" if not np.isfinite(value) else f"{value:.3e}"


def convergence_figure(results, errors, config):
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
    colors = plt.get_cmap("tab10")
    for i, (method, result) in enumerate(results.items()):
        norms = np.asarray(result.grad_norm_history)
        last = int(np.max(result.num_iterations))
        k = np.arange(last + 1)
        band(axes[0], k + 1, norms[:, : last + 1], method, color=colors(i))
        if method in errors:
            band(axes[1], k + 1, errors[method][:, : last + 1], method, color=colors(i))
    axes[0].axhline(config.tol, color="k", ls=":", lw=1, label="tolerance")
    axes[0].set(xscale="log", yscale="log", xlabel="iteration k + 1", ylabel="||grad J(theta_k)||")
    axes[1].set(
        xscale="log", yscale="log", xlabel="iteration k + 1", ylabel="e_k = ||theta_k - theta*||"
    )
    if "newton" in errors:
        e = errors["newton"]
        linear, squared, _ = newton_ratios(e)
        k = np.arange(e.shape[1] - 1)
        for seed in range(e.shape[0]):
            label = seed == 0
            axes[2].plot(k, linear[seed], "o-", color="C0", label="e_{k+1}/e_k" if label else None)
            axes[2].plot(
                k, squared[seed], "s-", color="C3", label="e_{k+1}/e_k^2" if label else None
            )
        axes[2].set(yscale="log", xlabel="k", ylabel="ratio", title="Newton: quadratic convergence")
        axes[2].set_xlim(-0.5, np.isfinite(linear).any(axis=0).nonzero()[0].max() + 0.5)
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Convergence on L2-regularized logistic regression (seed mean ± std)")
    return fig


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, RULES)
