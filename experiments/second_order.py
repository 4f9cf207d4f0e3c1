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

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.flatten_util import ravel_pytree

from lexicon import cli, optim, train
from lexicon.bench import median_time
from lexicon.optim import problems
from lexicon.optim.second_order import comparison, outcomes, plot_convergence, rate_table
from lexicon.report import Figure, Report
from lexicon.rules import Choice, ConfigError, Names, Range, positive, split_names

METHODS = ("newton", "newton_cg", "bfgs", "lbfgs", "cg_fr", "cg_pr")
CG_BETAS = {"cg_fr": "fletcher_reeves", "cg_pr": "polak_ribiere"}  # optim.nonlinear_cg's rules
SCIPY = "J* of scipy.optimize.minimize L-BFGS-B"  # the source of the reference optimum


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
    "classes": Choice("binary", "multiclass"),
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


# --- the problem (J above is problems.logistic_objective) and its starting points -----------------


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
    options = {"max_iter": config.max_iter}  # BFGS, L-BFGS and nonlinear CG
    if method in ("newton", "newton_cg"):
        options["max_iter"] = config.newton_max_iter
    if method == "lbfgs":
        options["memory_size"] = config.memory
    if method in CG_BETAS:
        minimize, options["beta"] = optim.nonlinear_cg, CG_BETAS[method]
    elif method in METHODS:
        minimize = getattr(optim, method)
    else:  # a first-order method on the full batch
        minimize = functools.partial(
            optim.minimize, optim.get(method, learning_rate=config.lr[method])
        )
        options["max_iter"] = config.first_order_max_iter

    def solve(params0, x, t, l2, tol):
        return minimize(problems.logistic_objective, params0, x, t, l2, tol=tol, **options)

    return jax.jit(jax.vmap(solve, in_axes=(0, None, None, None, None)))


# --- the experiment -----------------------------------------------------------------------------


@jax.enable_x64(True)
def train_and_evaluate(config, workdir):
    methods, first_order = split_names(config.methods), split_names(config.first_order)
    x_np, t_np, num_outputs = problems.digits_logistic(config.classes, config.data_seed)
    reference = problems.scipy_optimum(config.l2, x_np, t_np, num_outputs)
    problem = (jnp.asarray(x_np), jnp.asarray(t_np), jnp.asarray(config.l2))
    starts = initial_params(config, x_np.shape[1], num_outputs)
    theta_scipy = np.asarray(ravel_pytree(jax.tree.map(jnp.asarray, reference["params"]))[0])

    runs = {method: solver(config, method) for method in methods + first_order}
    results = {method: run(starts, *problem, config.tol) for method, run in runs.items()}
    seconds = {  # each run again, compiled: the median of config.repeats
        method: median_time(
            lambda run=run: jax.block_until_ready(run(starts, *problem, config.tol)), config.repeats
        )
        for method, run in runs.items()
    }
    histories = {method: results[method].params_history for method in methods}
    # e_k = ||theta_k - theta*||, theta* being Newton's own limit when Newton ran (iterated with
    # tol = 0, it is sharper than scipy's), else scipy's solution.
    limit = np.broadcast_to(theta_scipy, (config.seeds, theta_scipy.size))
    if "newton" in methods:
        polished = runs["newton"](starts, *problem, 0.0)
        histories["newton"], limit = polished.params_history, outcomes(polished, 0.0)["params"]
    errors = {m: np.linalg.norm(np.asarray(histories[m]) - limit[:, None], axis=2) for m in methods}

    table = comparison(results, seconds, config.tol, reference["objective"], theta_scipy, "scipy")
    headline = {"iterations": {}, "objective_gap": {}}
    for method, end in table["outcomes"].items():
        # iterations to ||g|| <= tol per seed, NaN where a seed did not get there
        headline["iterations"][method] = end["iterations"]
        # J - J*, held to the optimum to float64 precision at ||g|| <= 1e-8
        headline["objective_gap"][method] = Figure(end["gap"], 0.0, SCIPY, tolerance=1e-10)
    rows = [*table["rows"], reference_row("scipy L-BFGS-B", reference, reference, theta_scipy)]
    if set(methods) & set(CG_BETAS):
        cg = problems.scipy_optimum(config.l2, x_np, t_np, num_outputs, "CG", gtol=config.tol)
        rows.append(reference_row("scipy CG, Polak-Ribiere+", cg, reference, theta_scipy))

    report = Report(workdir, "Second-order methods: Newton, Newton-CG, BFGS, L-BFGS, CG")
    kind = "odd vs even digit" if num_outputs == 1 else "10-way softmax"
    report.text(
        f"L2-regularized logistic regression on the {len(t_np)} standardized training digits "
        f"({kind}, {theta_scipy.size} parameters, lambda = {config.l2:g}, float64), from "
        f"{config.seeds} starting points theta_0 ~ N(0, {config.init_scale:g}^2) solved together "
        f"under vmap. Every method stops once ||grad J|| <= {config.tol:g}. The reference optimum "
        f"J* = {reference['objective']:.12f} comes from scipy.optimize.minimize (L-BFGS-B) on a "
        "NumPy transcription of J and its gradient."
    )
    report.table(
        table["headers"],
        rows,
        caption=(
            f"Iterations and time to the tolerance (median of {config.repeats} runs after "
            "compiling; one vmapped run solves every seed)"
        ),
    )
    figure = plot_convergence(
        results,
        errors,
        config.tol,
        ratios_of="newton" if "newton" in errors else None,
        ratios_title="Newton: quadratic convergence",
        title="Convergence on L2-regularized logistic regression (seed mean ± std)",
    )
    report.figure(figure, "convergence", "gradient norm and error")
    if "newton" in errors:
        newton_table(report, errors["newton"], results["newton"], headline)
    report.write()
    return headline


def reference_row(label, solution, reference, theta_scipy):
    """A scipy solution's row of the table, from zero and not compiled; its gap to scipy's
    L-BFGS-B optimum (``reference``), 0 for that optimum itself."""
    theta = ravel_pytree(solution["params"])[0]
    return (
        f"**reference: {label} (NumPy, float64)**",
        f"{solution['iterations']} (one start at 0)",
        f"{solution['seconds'] * 1e3:.2f} (not compiled)",
        "",
        f"{solution['grad_norm']:.1e}",
        "0" if solution is reference else f"{solution['objective'] - reference['objective']:+.2e}",
        "0" if solution is reference else f"{np.linalg.norm(theta - theta_scipy):.1e}",
    )


def newton_table(report, errors, result, headline):
    """Seed 0's e_k with the ratios e_{k+1}/e_k (-> 0) and e_{k+1}/e_k^2 (bounded)."""
    table = rate_table(result, errors)
    report.text(
        "Newton's quadratic convergence (seed 0): e_k = ||theta_k - theta*||. The ratio "
        "e_{k+1}/e_k falls towards 0 and e_{k+1}/e_k^2 levels off at a constant C; a ratio is "
        f"left out (—) once e_k is at the rounding floor ({table['floor']:.0e})."
    )
    report.table(
        ["k", "||g_k||", "e_k", "e_{k+1} / e_k", "e_{k+1} / e_k^2"],
        table["rows"],
        caption="Newton's method, iterate by iterate",
    )
    # seed 0's last e_{k+1}/e_k (falls towards 0) and e_{k+1}/e_k^2 (levels off at C)
    if table["last"] is not None:
        headline["newton_rate"] = table["last"]


if __name__ == "__main__":
    cli.run(get_config, train_and_evaluate, RULES)
