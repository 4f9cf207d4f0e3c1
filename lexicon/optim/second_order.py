"""Second-order methods of SPEC.md section 2: Newton (Algorithm 8.8), Newton-CG, BFGS, L-BFGS,
and nonlinear conjugate gradient (Fletcher-Reeves, Polak-Ribiere; SPEC §14).

The objective is the document's J(theta) = (1/m) sum_i L(f(x_i; theta), y_i): pass it as
``fun(params, *args)`` returning a scalar, with the 1/m average inside ``fun`` (so its gradient
is g and its Hessian is H = (1/m) hessian of sum_i L, as Alg 8.8 writes them). ``params`` is
any pytree; it is ravelled into one flat vector with ``jax.flatten_util.ravel_pytree`` and the
result is unravelled back. ``args`` (the data) are traced, not baked into the program.

Every minimizer runs as one compiled ``lax.while_loop``: it iterates while
``||g|| > tol`` and fewer than ``max_iter`` steps were taken, and records the iterate history in
fixed-size buffers of ``max_iter + 1`` rows (row k holds iterate k; rows after
``num_iterations`` are NaN). The compiled program is cached per (``fun``, ``max_iter``, options),
so pass the same function object to reuse it. ``keep_params_history=False`` drops the
(max_iter + 1) x n params buffer where n is large.

Tight tolerances such as 1e-8 need float64 (``jax.enable_x64``); in float32 the gradient norm
stalls near 1e-7 relative and the loop stops at ``max_iter``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

__all__ = [
    "BETAS",
    "LINE_SEARCHES",
    "OptimizeResult",
    "bfgs",
    "comparison",
    "conjugate_gradient",
    "convergence_ratios",
    "lbfgs",
    "newton",
    "newton_cg",
    "nonlinear_cg",
    "outcomes",
    "plot_convergence",
    "rate_table",
]

BETAS = ("fletcher_reeves", "polak_ribiere")
LINE_SEARCHES = ("wolfe", "exact")

Objective = Callable[..., jax.Array]


class OptimizeResult(NamedTuple):
    """The final iterate and the per-iteration history of a second-order minimizer.

    ``params`` has the structure of ``params0``. The histories have ``max_iter + 1`` rows;
    row k holds iterate k (row 0 the starting point) for k <= ``num_iterations`` and NaN after.
    """

    params: Any
    num_iterations: jax.Array  # int32 scalar, steps taken
    converged: jax.Array  # bool scalar, final ||g|| <= tol
    params_history: jax.Array  # (max_iter + 1, n) ravelled iterates
    loss_history: jax.Array  # (max_iter + 1,) J(theta_k)
    grad_norm_history: jax.Array  # (max_iter + 1,) ||g(theta_k)||_2


# --------------------------------------------------------------------------------------------
# Conjugate gradient
# --------------------------------------------------------------------------------------------


def conjugate_gradient(
    matvec: Callable[[jax.Array], jax.Array],
    b: jax.Array,
    *,
    tol: float = 1e-10,
    max_iter: int | None = None,
) -> jax.Array:
    """Solves A x = b for symmetric positive definite A given only x -> A x (Hestenes-Stiefel).

    Starting from x_0 = 0, r_0 = p_0 = b, each iteration does
    a = (r.r) / (p.A p);  x <- x + a p;  r' = r - a A p;  p <- r' + ((r'.r') / (r.r)) p,
    until ||r|| <= tol ||b|| or ``max_iter`` iterations. Exact arithmetic would converge in n
    iterations (the dimension), but rounding erodes the conjugacy of the directions on
    ill-conditioned systems, so the default is 10 n, as in ``scipy.sparse.linalg.cg``.

    If a direction of non-positive curvature (p.A p <= 0) appears, the iteration stops and
    returns the current x, or b itself if that happens at the first iteration (the truncated
    Newton-CG safeguard of Nocedal and Wright, Alg. 7.1: with b = -g the result is then still a
    descent direction).
    """
    max_iter = 10 * b.size if max_iter is None else max_iter
    threshold = tol * jnp.linalg.norm(b)

    def cond(carry):
        k, _, _, _, rs, negative_curvature = carry
        return (k < max_iter) & (jnp.sqrt(rs) > threshold) & ~negative_curvature

    def body(carry):
        k, x, r, p, rs, _ = carry
        ap = matvec(p)
        curvature = jnp.vdot(p, ap)
        negative_curvature = curvature <= 0
        a = jnp.where(negative_curvature, 0.0, rs / jnp.where(negative_curvature, 1.0, curvature))
        x_new = x + a * p
        r_new = r - a * ap
        rs_new = jnp.vdot(r_new, r_new)
        p_new = r_new + jnp.where(rs > 0, rs_new / jnp.where(rs > 0, rs, 1.0), 0.0) * p
        k_new = jnp.where(negative_curvature, k, k + 1)
        return k_new, x_new, r_new, p_new, rs_new, negative_curvature

    rs0 = jnp.vdot(b, b)
    init = (jnp.asarray(0, jnp.int32), jnp.zeros_like(b), b, b, rs0, jnp.asarray(False))
    steps, x, _, _, _, negative_curvature = jax.lax.while_loop(cond, body, init)
    return jnp.where(negative_curvature & (steps == 0), b, x)


# --------------------------------------------------------------------------------------------
# The common driver
# --------------------------------------------------------------------------------------------


class _Carry(NamedTuple):
    k: jax.Array
    x: jax.Array
    loss: jax.Array
    grad: jax.Array
    method_state: Any
    params_history: jax.Array
    loss_history: jax.Array
    grad_norm_history: jax.Array


def _iterate(step, x0, value_and_grad, method_state, tol, max_iter, keep_params) -> _Carry:
    """Runs ``step`` in a while_loop until ||g|| <= tol or max_iter steps, recording history.

    ``step(x, loss, grad, method_state) -> (x', loss', grad', method_state')``. Without
    ``keep_params`` the params history has zero columns.
    """
    loss0, grad0 = value_and_grad(x0)
    rows = max_iter + 1
    columns = x0.size if keep_params else 0
    carry = _Carry(
        k=jnp.asarray(0, jnp.int32),
        x=x0,
        loss=loss0,
        grad=grad0,
        method_state=method_state,
        params_history=jnp.full((rows, columns), jnp.nan, x0.dtype).at[0].set(x0[:columns]),
        loss_history=jnp.full((rows,), jnp.nan, loss0.dtype).at[0].set(loss0),
        grad_norm_history=jnp.full((rows,), jnp.nan, x0.dtype).at[0].set(jnp.linalg.norm(grad0)),
    )

    def cond(c: _Carry) -> jax.Array:
        return (c.k < max_iter) & (jnp.linalg.norm(c.grad) > tol)

    def body(c: _Carry) -> _Carry:
        x, loss, grad, method_state = step(c.x, c.loss, c.grad, c.method_state)
        k = c.k + 1
        return _Carry(
            k=k,
            x=x,
            loss=loss,
            grad=grad,
            method_state=method_state,
            params_history=c.params_history.at[k].set(x[:columns]),
            loss_history=c.loss_history.at[k].set(loss),
            grad_norm_history=c.grad_norm_history.at[k].set(jnp.linalg.norm(grad)),
        )

    return jax.lax.while_loop(cond, body, carry)


def _newton_step(f, value_and_grad, x0, options):
    del x0, options

    def step(x, loss, grad, method_state):
        del loss
        hessian = jax.hessian(f)(x)
        dx = jnp.linalg.solve(hessian, -grad)
        x_new = x + dx
        return (x_new, *value_and_grad(x_new), method_state)

    return step, ()


def _newton_cg_step(f, value_and_grad, x0, options):
    del x0
    cg_tol, cg_max_iter = options
    grad_f = jax.grad(f)

    def step(x, loss, grad, method_state):
        del loss

        def hessian_vector_product(v):
            return jax.jvp(grad_f, (x,), (v,))[1]

        dx = conjugate_gradient(hessian_vector_product, -grad, tol=cg_tol, max_iter=cg_max_iter)
        x_new = x + dx
        return (x_new, *value_and_grad(x_new), method_state)

    return step, ()


def _bfgs_step(f, value_and_grad, x0, options):
    c1, shrink, max_backtracks = options

    def armijo_step_size(x, loss, grad, direction):
        slope = jnp.vdot(grad, direction)

        def insufficient_decrease(carry):
            step_size, j = carry
            return (f(x + step_size * direction) > loss + c1 * step_size * slope) & (
                j < max_backtracks
            )

        def shrink_step(carry):
            step_size, j = carry
            return step_size * shrink, j + 1

        one = jnp.asarray(1.0, x.dtype)
        step_size, _ = jax.lax.while_loop(insufficient_decrease, shrink_step, (one, 0))
        return step_size

    def step(x, loss, grad, method_state):
        inverse_hessian, first = method_state  # M ~ H^{-1}
        direction = -inverse_hessian @ grad
        x_new = x + armijo_step_size(x, loss, grad, direction) * direction
        loss_new, grad_new = value_and_grad(x_new)
        s = x_new - x
        y = grad_new - grad
        sy = jnp.vdot(s, y)
        yy = jnp.vdot(y, y)
        curvature_ok = sy > 0
        safe_sy = jnp.where(curvature_ok, sy, 1.0)
        # Before the first update, rescale M_0 = I to (s.y / y.y) I (Nocedal and Wright,
        # eq. 6.20) so that the next line search's first trial step has about the right length.
        scaled = jnp.where(first & curvature_ok, safe_sy / jnp.where(yy > 0, yy, 1.0), 1.0)
        h = inverse_hessian * scaled
        rho = 1.0 / safe_sy
        hy = h @ y
        # M' = (I - rho s y^T) M (I - rho y s^T) + rho s s^T, expanded into outer products so
        # the update costs O(n^2) instead of two n x n matrix products.
        updated = (
            h
            - rho * (jnp.outer(s, hy) + jnp.outer(hy, s))
            + (rho * rho * jnp.vdot(y, hy) + rho) * jnp.outer(s, s)
        )
        new_inverse_hessian = jnp.where(curvature_ok, updated, inverse_hessian)
        return x_new, loss_new, grad_new, (new_inverse_hessian, jnp.asarray(False))

    # The state is (M, whether no update has been made yet).
    return step, (jnp.eye(x0.size, dtype=x0.dtype), jnp.asarray(True))


def _lbfgs_step(f, value_and_grad, x0, options):
    del value_and_grad
    (memory_size,) = options
    solver = optax.lbfgs(memory_size=memory_size)
    value_and_grad_from_state = optax.value_and_grad_from_state(f)

    def step(x, loss, grad, solver_state):
        updates, solver_state = solver.update(
            grad, solver_state, x, value=loss, grad=grad, value_fn=f
        )
        x_new = optax.apply_updates(x, updates)
        loss_new, grad_new = value_and_grad_from_state(x_new, state=solver_state)
        return x_new, loss_new, grad_new, solver_state

    return step, solver.init(x0)


def _exact_step_size(grad_f, x, direction, iterations):
    """argmin_a f(x + a p) by Newton's method on phi'(a) = g(x + a p).p from a = 0, with
    phi''(a) = p.H(x + a p) p a Hessian-vector product (``jax.jvp`` of the gradient): one
    iteration is exact on a quadratic. Stops where phi'' <= 0 (no minimum along p there)."""

    def derivatives(a):
        g, hp = jax.jvp(grad_f, (x + a * direction,), (direction,))
        return jnp.vdot(g, direction), jnp.vdot(direction, hp)

    def cond(carry):
        j, _, slope, curvature = carry
        return (j < iterations) & (curvature > 0) & (slope != 0)

    def body(carry):
        j, a, slope, curvature = carry
        a = a - slope / curvature
        return (j + 1, a, *derivatives(a))

    zero = jnp.zeros((), x.dtype)
    _, a, _, _ = jax.lax.while_loop(cond, body, (0, zero, *derivatives(zero)))
    return a


def _nonlinear_cg_step(f, value_and_grad, x0, options):
    line_search, c1, c2, max_line_steps, exact_iterations, fletcher_reeves, restart_every = options
    grad_f = jax.grad(f)
    wolfe = optax.scale_by_zoom_linesearch(
        max_linesearch_steps=max_line_steps,
        slope_rtol=c1,
        curv_rtol=c2,
        initial_guess_strategy="one",
    )

    def step(x, loss, grad, method_state):
        direction, since_restart, previous_loss = method_state
        slope = jnp.vdot(grad, direction)
        if line_search == "exact":
            x_new = x + _exact_step_size(grad_f, x, direction, exact_iterations) * direction
            loss_new, grad_new = value_and_grad(x_new)
        else:
            # First trial step a_0 = min(1, 2.02 (f_k - f_{k-1}) / phi'(0)) (Nocedal and
            # Wright, eq. 3.60, as scipy's CG does): the trial along a_0 p is step 1 of the
            # zoom search, which expands or shrinks it until the strong Wolfe conditions hold.
            initial = jnp.minimum(1.0, 2.02 * (loss - previous_loss) / slope)
            initial = jnp.where(jnp.isfinite(initial) & (initial > 0), initial, 1.0)
            updates, ls_state = wolfe.update(
                initial * direction, wolfe.init(x), x, value=loss, grad=grad, value_fn=f
            )
            x_new = x + updates
            loss_new, grad_new = optax.value_and_grad_from_state(f)(x_new, state=ls_state)
        grad_squared = jnp.vdot(grad, grad)
        safe = jnp.where(grad_squared > 0, grad_squared, 1.0)
        beta = jnp.where(
            fletcher_reeves,
            jnp.vdot(grad_new, grad_new) / safe,
            # Polak-Ribiere, kept >= 0 (PR+): a negative beta restarts along -g
            jnp.maximum(jnp.vdot(grad_new, grad_new - grad) / safe, 0.0),
        )
        since_restart = since_restart + 1
        restart = since_restart >= restart_every
        direction_new = -grad_new + jnp.where(restart, 0.0, beta) * direction
        # A direction that is not downhill (possible with an inexact search) restarts too.
        downhill = jnp.vdot(grad_new, direction_new) < 0
        direction_new = jnp.where(downhill, direction_new, -grad_new)
        since_restart = jnp.where(restart | ~downhill, 0, since_restart)
        return x_new, loss_new, grad_new, (direction_new, since_restart, loss)

    loss0, grad0 = value_and_grad(x0)
    # f_{-1} = f_0 + ||g_0|| / 2 makes the first trial step min(1, 1.01 / ||g_0||).
    return step, (-grad0, jnp.asarray(0, jnp.int32), loss0 + jnp.linalg.norm(grad0) / 2)


_STEP_BUILDERS = {
    "newton": _newton_step,
    "newton_cg": _newton_cg_step,
    "bfgs": _bfgs_step,
    "lbfgs": _lbfgs_step,
    "nonlinear_cg": _nonlinear_cg_step,
}


def _result(final: _Carry, unravel, tol) -> OptimizeResult:
    """The driver's final carry as the result every minimizer returns."""
    return OptimizeResult(
        params=unravel(final.x),
        num_iterations=final.k,
        converged=jnp.linalg.norm(final.grad) <= tol,
        params_history=final.params_history,
        loss_history=final.loss_history,
        grad_norm_history=final.grad_norm_history,
    )


@functools.partial(
    jax.jit, static_argnames=("method", "fun", "max_iter", "options", "keep_params_history")
)
def _minimize(
    method, fun, params0, args, tol, dynamic=(), *, max_iter, options, keep_params_history
) -> OptimizeResult:
    """``options`` are compiled in; ``dynamic`` (traced, so one program serves every value)
    follow them in the options the step builder gets."""
    x0, unravel = ravel_pytree(params0)

    def f(x):
        return fun(unravel(x), *args)

    value_and_grad = jax.value_and_grad(f)
    step, method_state = _STEP_BUILDERS[method](f, value_and_grad, x0, (*options, *dynamic))
    final = _iterate(step, x0, value_and_grad, method_state, tol, max_iter, keep_params_history)
    return _result(final, unravel, tol)


# --------------------------------------------------------------------------------------------
# Public minimizers
# --------------------------------------------------------------------------------------------


def minimize(
    tx: optax.GradientTransformation,
    fun: Objective,
    params0: Any,
    *args: Any,
    tol: float = 1e-8,
    max_iter: int = 1000,
    keep_params_history: bool = False,
) -> OptimizeResult:
    """Full-batch iterations of a first-order transform ``tx`` on the common driver, until
    ||grad J(theta_k)|| <= tol or ``max_iter`` steps: the first-order counterpart of
    :func:`newton` and :func:`bfgs`, with the same result and histories.

    For Nesterov methods the carried point is the look-ahead phi = theta + alpha v; the
    test, the histories and the result use theta (``evaluation_params``).
    """
    return _first_order(
        tx, fun, params0, args, tol, max_iter=max_iter, keep_params_history=keep_params_history
    )


@functools.partial(jax.jit, static_argnames=("tx", "fun", "max_iter", "keep_params_history"))
def _first_order(tx, fun, params0, args, tol, *, max_iter, keep_params_history):
    from lexicon.optim.first_order import evaluation_params

    x0, unravel = ravel_pytree(params0)

    def f(x):
        return fun(unravel(x), *args)

    value_and_grad = jax.value_and_grad(f)
    lookahead = evaluation_params(params0, tx.init(params0)) is not params0

    def step(x, loss, grad, state):
        phi, opt_state, grad_phi = state
        updates, opt_state = tx.update(unravel(grad_phi), opt_state, unravel(phi))
        phi_tree = optax.apply_updates(unravel(phi), updates)
        phi = ravel_pytree(phi_tree)[0]
        loss, grad_phi = value_and_grad(phi)
        theta, grad = phi, grad_phi
        if lookahead:
            theta = ravel_pytree(evaluation_params(phi_tree, opt_state))[0]
            loss, grad = value_and_grad(theta)
        return theta, loss, grad, (phi, opt_state, grad_phi)

    state = (x0, tx.init(params0), jax.grad(f)(x0))
    final = _iterate(step, x0, value_and_grad, state, tol, max_iter, keep_params_history)
    return _result(final, unravel, tol)


def newton(
    fun: Objective,
    params0: Any,
    *args: Any,
    tol: float = 1e-8,
    max_iter: int = 20,
    keep_params_history: bool = True,
) -> OptimizeResult:
    """Newton's method, Algorithm 8.8, with the exact Hessian.

    g = grad J(theta);  H = hessian J(theta) (``jax.hessian``, H = (1/m) hessian sum_i L);
    dtheta = -H^{-1} g, obtained by solving H dtheta = -g with ``jnp.linalg.solve`` (an LU
    solve; H^{-1} is never formed);  theta <- theta + dtheta.

    Pure steps, no line search, as in the document: near a minimum with positive definite H the
    gradient norm falls quadratically, ||g_{k+1}|| <= C ||g_k||^2. Cost per step: one n x n
    Hessian and solve, so keep n in the thousands at most.

    Args:
      fun: the objective J, ``fun(params, *args) -> scalar``.
      params0: the starting point theta_0, any pytree of float arrays.
      *args: extra arguments of ``fun`` (e.g. the data).
      tol: stop when ||g||_2 <= tol.
      max_iter: at most this many steps.
      keep_params_history: record every iterate in ``params_history``; with False that
        array has no columns (for large n, where max_iter x n floats would not fit).
    """
    return _minimize(
        "newton",
        fun,
        params0,
        args,
        jnp.asarray(tol),
        max_iter=max_iter,
        keep_params_history=keep_params_history,
        options=(),
    )


def newton_cg(
    fun: Objective,
    params0: Any,
    *args: Any,
    tol: float = 1e-8,
    max_iter: int = 20,
    cg_tol: float = 1e-10,
    cg_max_iter: int | None = None,
    keep_params_history: bool = True,
) -> OptimizeResult:
    """Newton-CG: the Newton step of Alg 8.8 with H d = -g solved by conjugate gradient.

    H is never formed: :func:`conjugate_gradient` only needs Hessian-vector products
    H v = d/dt grad J(theta + t v) at t = 0, computed as ``jax.jvp`` of ``jax.grad`` (forward
    over reverse), one gradient-sized pass per product. The inner solve stops at
    ||H d + g|| <= cg_tol ||g|| (or ``cg_max_iter`` products, default 10 n); with the default
    1e-10 the step is Newton's step to near machine precision. Arguments as :func:`newton`.
    """
    return _minimize(
        "newton_cg",
        fun,
        params0,
        args,
        jnp.asarray(tol),
        max_iter=max_iter,
        keep_params_history=keep_params_history,
        options=(cg_tol, cg_max_iter),
    )


def bfgs(
    fun: Objective,
    params0: Any,
    *args: Any,
    tol: float = 1e-6,
    max_iter: int = 200,
    c1: float = 1e-4,
    shrink: float = 0.5,
    max_backtracks: int = 40,
    keep_params_history: bool = True,
) -> OptimizeResult:
    """BFGS with the inverse-Hessian update and a backtracking (Armijo) line search.

    A quasi-Newton method: it keeps M ~ H^{-1} (n x n, M_0 = I) and steps along p = -M g.
    The step size a starts at 1 and is multiplied by ``shrink`` until the Armijo condition
    J(theta + a p) <= J(theta) + c1 a g.p holds (at most ``max_backtracks`` times). With
    s = theta' - theta, y = g' - g and rho = 1 / (y.s), the update is

        M' = (I - rho s y^T) M (I - rho y s^T) + rho s s^T,

    skipped when y.s <= 0 (Armijo alone does not guarantee positive curvature). Before the
    first update M_0 is rescaled to (y.s / y.y) I. Arguments as :func:`newton`, plus the line
    search constants.
    """
    return _minimize(
        "bfgs",
        fun,
        params0,
        args,
        jnp.asarray(tol),
        max_iter=max_iter,
        keep_params_history=keep_params_history,
        options=(c1, shrink, max_backtracks),
    )


def lbfgs(
    fun: Objective,
    params0: Any,
    *args: Any,
    tol: float = 1e-6,
    max_iter: int = 200,
    memory_size: int = 10,
    keep_params_history: bool = True,
) -> OptimizeResult:
    """Limited-memory BFGS, using optax's implementation (``optax.lbfgs``).

    L-BFGS keeps only the last ``memory_size`` pairs (s, y) and applies the BFGS inverse-Hessian
    approximation to g by the two-loop recursion, so memory is O(memory_size n) instead of
    O(n^2). The optax solver is used as is, with its default zoom line search (strong Wolfe
    conditions); this function drives it in a compiled while_loop, reusing the value and
    gradient that the line search already computed (``optax.value_and_grad_from_state``).
    Arguments as :func:`newton`.
    """
    return _minimize(
        "lbfgs",
        fun,
        params0,
        args,
        jnp.asarray(tol),
        max_iter=max_iter,
        keep_params_history=keep_params_history,
        options=(memory_size,),
    )


def nonlinear_cg(
    fun: Objective,
    params0: Any,
    *args: Any,
    beta: str = "polak_ribiere",
    line_search: str = "wolfe",
    restart_every: int | None = None,
    tol: float = 1e-6,
    max_iter: int = 1000,
    c1: float = 1e-4,
    c2: float = 0.1,
    max_linesearch_steps: int = 30,
    exact_iterations: int = 20,
    keep_params_history: bool = True,
) -> OptimizeResult:
    """Nonlinear conjugate gradient (Fletcher and Reeves 1964; Polak and Ribiere 1969), the
    optimizer that document 001 names beside Newton and BFGS (SPEC §14).

    From p_0 = -g_0, each iteration does

        a_k = a line search along p_k;  theta_{k+1} = theta_k + a_k p_k;
        p_{k+1} = -g_{k+1} + beta_{k+1} p_k,  with
        beta^FR = (g_{k+1}.g_{k+1}) / (g_k.g_k)   (``beta="fletcher_reeves"``),
        beta^PR = max(0, g_{k+1}.(g_{k+1} - g_k) / (g_k.g_k))   (``"polak_ribiere"``, PR+).

    Restarts (p = -g): every ``restart_every`` iterations (default n, the dimension), where
    PR's beta would be negative, and where p_{k+1} is not a descent direction.

    ``line_search="wolfe"``: optax's zoom search for the strong Wolfe conditions
    f(theta + a p) <= f + c1 a g.p and |g(theta + a p).p| <= c2 |g.p| (c2 = 0.1 < 1/2 keeps
    Fletcher-Reeves' directions downhill; Nocedal and Wright, Lemma 5.6), whose first trial is
    a_0 = min(1, 2.02 (f_k - f_{k-1}) / g_k.p_k). ``line_search="exact"``: a_k minimizes
    f along p_k, by ``exact_iterations`` Newton steps on the slope g(theta + a p).p (exact
    after one on a quadratic). On a convex quadratic f = 1/2 theta^T A theta - b^T theta
    with the exact search, g_{k+1}.g_k = 0, so both betas equal linear CG's
    (r_{k+1}.r_{k+1}) / (r_k.r_k): the iterates are those of linear conjugate gradient and
    end in at most n iterations. Other arguments as :func:`newton`.
    """
    if beta not in BETAS:
        raise ValueError(f"beta must be one of {BETAS}, got {beta!r}")
    if line_search not in LINE_SEARCHES:
        raise ValueError(f"line_search must be one of {LINE_SEARCHES}, got {line_search!r}")
    return _minimize(
        "nonlinear_cg",
        fun,
        params0,
        args,
        jnp.asarray(tol),
        # The beta rule and the restart period are traced: both rules share one program.
        (
            jnp.asarray(beta == "fletcher_reeves"),
            jnp.asarray(restart_every or ravel_pytree(params0)[0].size, jnp.int32),
        ),
        max_iter=max_iter,
        keep_params_history=keep_params_history,
        options=(line_search, c1, c2, max_linesearch_steps, exact_iterations),
    )


# --------------------------------------------------------------------------------------------
# Reading the results of a batch of runs
# --------------------------------------------------------------------------------------------


def outcomes(result: OptimizeResult, tol: float) -> dict[str, np.ndarray]:
    """Where each run of a batch ended, on the host: ``result`` holds runs on a leading axis
    (a minimizer vmapped over starting points).

    Per run: ``iterations``, the first k with ||g_k|| <= tol (NaN where no iterate got there);
    ``steps``, the iterations taken; ``loss`` and ``grad_norm``, J and ||g|| at the last
    iterate; ``params``, the last iterate ravelled (runs, n) in ``ravel_pytree``'s order.
    """
    norms = np.asarray(result.grad_norm_history)
    steps = np.asarray(result.num_iterations)
    runs = np.arange(len(steps))
    reached = np.nan_to_num(norms, nan=np.inf) <= tol
    return {
        "iterations": np.where(reached.any(axis=1), reached.argmax(axis=1), np.nan),
        "steps": steps,
        "loss": np.asarray(result.loss_history)[runs, steps],
        "grad_norm": norms[runs, steps],
        "params": np.asarray(jax.vmap(lambda p: ravel_pytree(p)[0])(result.params)),
    }


def convergence_ratios(errors, floor: float = 1e-13):
    """The rates of convergence of error sequences e_k = ||theta_k - theta*||, (runs, k).

    Returns (e_{k+1}/e_k, e_{k+1}/e_k^2, the floor used), each ratio NaN where e_k or e_{k+1}
    lies at or below the rounding floor ``floor`` max(1, max e). Linear convergence keeps the
    first ratio below a constant r < 1; superlinear drives it to 0; quadratic convergence
    (Newton's near theta*, e_{k+1} <= C e_k^2) keeps the second bounded by C.
    """
    errors = np.asarray(errors)
    floor = floor * max(1.0, float(np.nanmax(errors)))
    valid = (errors[:, :-1] > floor) & (errors[:, 1:] > floor)
    previous = np.where(valid, errors[:, :-1], 1.0)
    return (
        np.where(valid, errors[:, 1:] / previous, np.nan),
        np.where(valid, errors[:, 1:] / previous**2, np.nan),
        floor,
    )


def rate_table(result: OptimizeResult, errors, run: int = 0) -> dict:
    """One run of a batch iterate by iterate, for a report: its errors e_k (``errors``, (runs,
    k)) beside ``result``'s gradient norms, from k = 0 to its last iteration.

    Returns ``rows`` of (k, ||g_k||, e_k, e_{k+1}/e_k, e_{k+1}/e_k^2), formatted, with "—" for a
    ratio left out at the rounding ``floor`` of :func:`convergence_ratios`; the ``floor``; and
    ``last``, the last pair of finite ratios as {"linear", "quadratic"} (None if none): near
    theta*, e_{k+1}/e_k -> 0 and e_{k+1}/e_k^2 -> C for a quadratically convergent method.
    """
    linear, squared, floor = convergence_ratios(errors)
    linear, squared = linear[run], squared[run]
    steps = int(np.asarray(result.num_iterations)[run])
    norms = np.asarray(result.grad_norm_history)[run]

    def ratio(value) -> str:
        return "—" if not np.isfinite(value) else f"{value:.3e}"

    rows = [
        (k, f"{norms[k]:.3e}", f"{errors[run, k]:.3e}", ratio(linear[k]), ratio(squared[k]))
        for k in range(steps + 1)
    ]
    kept = np.flatnonzero(np.isfinite(squared[: steps + 1]))
    last = {"linear": linear[kept[-1]], "quadratic": squared[kept[-1]]} if kept.size else None
    return {"rows": rows, "floor": floor, "last": last}


def plot_convergence(results: dict, errors: dict, tol: float, *, ratios_of=None, **titles):
    """How minimizers run from a batch of starts converge, three panels against the iteration:
    ||grad J(theta_k)|| of every ``results`` entry (name -> OptimizeResult, runs on a leading
    axis) with the tolerance ``tol``, and e_k = ||theta_k - theta*|| of every ``errors`` entry
    (name -> (runs, k)), both on log-log axes as the mean ± std over runs; then the ratios
    e_{k+1}/e_k and e_{k+1}/e_k^2 of ``errors[ratios_of]`` run by run (:func:`convergence_ratios`),
    that panel left empty without ``ratios_of``. ``titles``: ``title`` (the figure's) and
    ``ratios_title``. Returns the matplotlib figure."""
    from lexicon.report import panels, plot_curves

    fig, axes = panels(3, size=(16 / 3, 4.2))
    spans = {m: np.arange(int(np.max(r.num_iterations)) + 1) for m, r in results.items()}
    norms = {m: (k + 1, np.asarray(results[m].grad_norm_history)[:, k]) for m, k in spans.items()}
    plot_curves(norms, xlabel="iteration k + 1", ylabel="||grad J(theta_k)||", ax=axes[0])
    distances = {m: (spans[m] + 1, e[:, spans[m]]) for m, e in errors.items()}
    ylabel = "e_k = ||theta_k - theta*||"
    plot_curves(distances, xlabel="iteration k + 1", ylabel=ylabel, ax=axes[1])
    axes[0].axhline(tol, color="k", ls=":", lw=1, label="tolerance")
    for ax in axes[:2]:
        ax.set(xscale="log", yscale="log")
    if ratios_of is not None:
        linear, squared, _ = convergence_ratios(errors[ratios_of])
        k = np.arange(linear.shape[1])
        for run in range(len(linear)):
            first = run == 0
            axes[2].plot(k, linear[run], "o-", color="C0", label="e_{k+1}/e_k" if first else None)
            axes[2].plot(
                k, squared[run], "s-", color="C3", label="e_{k+1}/e_k^2" if first else None
            )
        title = titles.get("ratios_title", "")
        axes[2].set(yscale="log", xlabel="k", ylabel="ratio", title=title)
        axes[2].set_xlim(-0.5, np.isfinite(linear).any(axis=0).nonzero()[0].max() + 0.5)
    for ax in axes:
        ax.legend(fontsize=7)
    fig.suptitle(titles.get("title", ""))
    return fig


def comparison(results: dict, seconds: dict, tol: float, objective, theta, name="ref") -> dict:
    """Minimizers side by side against a known optimum J* = ``objective`` at the flat ``theta``
    (in ``ravel_pytree``'s order; found by ``name``), for a report's table.

    ``results``: method -> OptimizeResult of a batch of runs (runs on a leading axis), each
    timed in ``seconds`` (method -> wall time of the whole batch). Returns ``headers`` and one
    row per method: the iterations to ||g|| <= tol (mean ± std over runs, or how many runs
    got there in how many iterations), the wall time in ms, µs per iteration of the slowest
    run, the worst final ||g||, the mean J - J* and the largest ||theta - theta*||; and
    ``outcomes``, method -> :func:`outcomes` with ``gap``, J - J* per run, added.
    """
    from lexicon.report import mean_std

    rows, found = [], {}
    for method, result in results.items():
        end = found[method] = outcomes(result, tol)
        end["gap"] = end["loss"] - objective
        reached, taken = np.isfinite(end["iterations"]), int(end["steps"].max())
        count = f"not reached in {taken} ({int(reached.sum())}/{len(reached)} seeds)"
        rows.append(
            (
                method,
                mean_std(end["iterations"], 1) if reached.all() else count,
                f"{seconds[method] * 1e3:.2f}",
                f"{seconds[method] / max(taken, 1) * 1e6:.1f}",
                f"{np.nanmax(end['grad_norm']):.1e}",
                f"{np.mean(end['gap']):+.2e}",
                f"{np.max(np.linalg.norm(end['params'] - theta, axis=1)):.1e}",
            )
        )
    headers = [
        "method",
        f"iterations to ||g|| <= {tol:g}",
        "wall time, ms (all seeds)",
        "µs / iteration",
        "final ||g|| (worst seed)",
        f"J - J*({name})",
        f"max ||theta - theta_{name}||",
    ]
    return {"headers": headers, "rows": rows, "outcomes": found}
