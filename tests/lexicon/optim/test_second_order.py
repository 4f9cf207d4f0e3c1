"""Newton (Alg 8.8), Newton-CG, BFGS and L-BFGS.

References: NumPy float64 transcriptions (Newton's iteration with the analytic Hessian of
binary logistic regression, the BFGS inverse-Hessian update, Hestenes-Stiefel CG),
``np.linalg.solve``, analytic minima (a quadratic, Rosenbrock), and the strong convexity
bound ||theta - theta*|| <= ||g(theta)|| / lam of an L2-regularized objective.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.datasets import load_digits

from lexicon import optim
from lexicon.optim.second_order import (
    comparison,
    convergence_ratios,
    outcomes,
    plot_convergence,
    rate_table,
)

L2 = 1e-2


# --------------------------------------------------------------------------------------------
# Multiclass logistic regression on sklearn digits, J = mean cross-entropy + (L2/2) ||theta||^2
# --------------------------------------------------------------------------------------------


def digits_objective(params, x, y_onehot):
    logits = x @ params["w"] + params["b"]
    cross_entropy = -jnp.mean(jnp.sum(y_onehot * jax.nn.log_softmax(logits), axis=1))
    squared_norm = jnp.sum(params["w"] ** 2) + jnp.sum(params["b"] ** 2)
    return cross_entropy + 0.5 * L2 * squared_norm


@pytest.fixture(scope="module")
def digits_runs():
    """All four methods on digits, run once in float64; results come back as NumPy."""
    x, y = load_digits(return_X_y=True)
    x = x / 16.0  # pixel values 0..16 scaled to [0, 1]
    y_onehot = np.eye(10)[y]
    with jax.enable_x64(True):
        params0 = {"w": jnp.zeros((64, 10)), "b": jnp.zeros(10)}
        data = (jnp.asarray(x), jnp.asarray(y_onehot))
        runs = {
            "newton": optim.newton(digits_objective, params0, *data, tol=1e-8, max_iter=15),
            "newton_cg": optim.newton_cg(digits_objective, params0, *data, tol=1e-6),
            "bfgs": optim.bfgs(digits_objective, params0, *data, tol=1e-6, max_iter=200),
            "lbfgs": optim.lbfgs(digits_objective, params0, *data, tol=1e-6, max_iter=300),
        }
        runs = jax.device_get(runs)
        final_losses = {
            name: float(digits_objective(run.params, *data)) for name, run in runs.items()
        }
    return runs, final_losses


def test_newton_reaches_1e_minus_8_with_a_quadratic_rate(digits_runs):
    runs, final_losses = digits_runs
    run = runs["newton"]
    k = int(run.num_iterations)
    assert bool(run.converged) and k <= 15
    norms = run.grad_norm_history[: k + 1]
    assert norms[-1] <= 1e-8
    assert final_losses["newton"] == pytest.approx(run.loss_history[k], rel=1e-14)
    # The last three steps: e_{k+1} <= C e_k^2 with a bounded C, while e_{k+1}/e_k -> 0.
    last = norms[-4:]
    quadratic_constants = last[1:] / last[:-1] ** 2
    linear_ratios = last[1:] / last[:-1]
    assert np.all(quadratic_constants <= 20.0), quadratic_constants
    assert np.all(np.diff(linear_ratios) < 0) and linear_ratios[-1] < 1e-4, linear_ratios
    # Each step decreases J (the problem is strictly convex and Newton lands near the minimum).
    assert np.all(np.diff(run.loss_history[: k + 1]) < 0)


@pytest.mark.parametrize("name", ["newton_cg", "bfgs", "lbfgs"])
def test_other_methods_agree_with_newtons_optimum(digits_runs, name):
    runs, final_losses = digits_runs
    run, reference = runs[name], runs["newton"]
    k = int(run.num_iterations)
    final_grad_norm = run.grad_norm_history[k]
    assert bool(run.converged) and final_grad_norm <= 1e-6
    # J is L2-strongly convex, so ||theta - theta*|| <= ||g(theta)|| / L2 and
    # 0 <= J(theta) - J(theta*) <= ||g||^2 / (2 L2); Newton's theta* has ||g|| <= 1e-8.
    distance = np.sqrt(sum(np.sum((run.params[p] - reference.params[p]) ** 2) for p in ("w", "b")))
    assert distance <= (final_grad_norm + 1e-8) / L2
    gap = final_losses[name] - final_losses["newton"]
    assert -1e-13 <= gap <= final_grad_norm**2 / (2 * L2) + 1e-13


def test_newton_cg_takes_newtons_steps(digits_runs):
    runs, _ = digits_runs
    k = int(runs["newton_cg"].num_iterations)
    np.testing.assert_allclose(
        runs["newton_cg"].params_history[: k + 1],
        runs["newton"].params_history[: k + 1],
        rtol=0,
        atol=1e-8,
    )


def test_history_buffers(digits_runs):
    runs, _ = digits_runs
    for run in runs.values():
        k = int(run.num_iterations)
        rows = run.loss_history.shape[0]
        assert run.params_history.shape == (rows, 650)
        np.testing.assert_array_equal(run.params_history[0], 0.0)
        assert np.all(np.isfinite(run.loss_history[: k + 1]))
        assert np.all(np.isnan(run.loss_history[k + 1 :]))
        assert np.all(np.isnan(run.grad_norm_history[k + 1 :]))
        np.testing.assert_array_equal(
            run.params_history[k], np.concatenate([run.params["b"], run.params["w"].ravel()])
        )
        assert run.params["w"].shape == (64, 10) and run.params["b"].shape == (10,)


# --------------------------------------------------------------------------------------------
# Newton against a NumPy transcription of Alg 8.8
# --------------------------------------------------------------------------------------------


def test_newton_matches_literal_transcription(x64):
    rng = np.random.default_rng(3)
    m, dim = 80, 4
    x = rng.normal(size=(m, dim))
    y = (rng.uniform(size=m) < 1 / (1 + np.exp(-x @ rng.normal(size=dim)))).astype(float)
    lam = 0.1

    def objective(theta, x, y):
        z = x @ theta
        return jnp.mean(jnp.logaddexp(0.0, z) - y * z) + 0.5 * lam * theta @ theta

    # Alg 8.8 with g = (1/m) X^T (p - y) + lam theta and H = (1/m) X^T diag(p (1 - p)) X + lam I.
    theta = np.zeros(dim)
    thetas = [theta]
    for _ in range(6):
        p = 1 / (1 + np.exp(-x @ theta))
        g = x.T @ (p - y) / m + lam * theta
        h = x.T @ np.diag(p * (1 - p)) @ x / m + lam * np.eye(dim)
        h_inverse = np.linalg.inv(h)
        delta_theta = -h_inverse @ g
        theta = theta + delta_theta
        thetas.append(theta)

    run = optim.newton(
        objective, jnp.zeros(dim), jnp.asarray(x), jnp.asarray(y), tol=0.0, max_iter=6
    )
    assert int(run.num_iterations) == 6
    np.testing.assert_allclose(run.params_history, np.stack(thetas), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(run.params, thetas[-1], rtol=1e-12)


def test_newton_solves_a_quadratic_in_one_step(x64):
    rng = np.random.default_rng(4)
    q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    a = q @ np.diag(np.logspace(0, 3, 5)) @ q.T
    b = rng.normal(size=5)

    def objective(theta):
        return 0.5 * theta @ jnp.asarray(a) @ theta - jnp.asarray(b) @ theta

    for run in (
        optim.newton(objective, jnp.ones(5), tol=1e-9),
        optim.newton_cg(objective, jnp.ones(5), tol=1e-9, cg_tol=1e-14),
    ):
        assert int(run.num_iterations) == 1
        np.testing.assert_allclose(run.params, np.linalg.solve(a, b), rtol=1e-9)


# --------------------------------------------------------------------------------------------
# Conjugate gradient
# --------------------------------------------------------------------------------------------


def test_conjugate_gradient_solves_spd_systems(x64):
    rng = np.random.default_rng(5)
    q, _ = np.linalg.qr(rng.normal(size=(30, 30)))
    a = q @ np.diag(np.logspace(0, 3, 30)) @ q.T
    b = rng.normal(size=30)
    matvec = lambda v: jnp.asarray(a) @ v
    solve = jax.jit(lambda b: optim.conjugate_gradient(matvec, b, tol=1e-12))
    np.testing.assert_allclose(solve(jnp.asarray(b)), np.linalg.solve(a, b), rtol=1e-9)
    np.testing.assert_array_equal(solve(jnp.zeros(30)), np.zeros(30))
    # Iterate by iterate the same as a literal transcription of Hestenes-Stiefel CG.
    x, r = np.zeros(30), b.copy()
    p = r.copy()
    for _ in range(10):
        step = (r @ r) / (p @ a @ p)
        x = x + step * p
        r_new = r - step * (a @ p)
        p = r_new + (r_new @ r_new) / (r @ r) * p
        r = r_new
    ours = optim.conjugate_gradient(matvec, jnp.asarray(b), tol=0.0, max_iter=10)
    np.testing.assert_allclose(ours, x, rtol=1e-10)
    # Limited iterations: after one step x is the exact line minimizer along b.
    one_step = optim.conjugate_gradient(lambda v: jnp.asarray(a) @ v, jnp.asarray(b), max_iter=1)
    np.testing.assert_allclose(one_step, (b @ b) / (b @ a @ b) * b, rtol=1e-12)


def test_conjugate_gradient_stops_on_negative_curvature(x64):
    a = jnp.diag(jnp.asarray([1.0, -2.0, 3.0]))
    # b.A.b < 0 at the first step: b itself comes back (with b = -g, a descent direction).
    b = jnp.asarray([0.1, 1.0, 0.1])
    np.testing.assert_array_equal(optim.conjugate_gradient(lambda v: a @ v, b), b)
    # Positive curvature first, negative later: the iterate before it comes back.
    b = jnp.asarray([1.0, 0.3, 0.0])
    first = (b @ b) / (b @ a @ b) * b
    np.testing.assert_allclose(optim.conjugate_gradient(lambda v: a @ v, b), first, rtol=1e-12)


# --------------------------------------------------------------------------------------------
# BFGS
# --------------------------------------------------------------------------------------------


def rosenbrock(theta):
    return jnp.sum(100.0 * (theta[1:] - theta[:-1] ** 2) ** 2 + (1.0 - theta[:-1]) ** 2)


def test_params_history_can_be_left_out(x64):
    # The history buffers are shared by all four methods (one driver loop).
    run = optim.newton_cg(
        rosenbrock, jnp.asarray([0.5, 0.5]), max_iter=3, keep_params_history=False
    )
    assert run.params_history.shape == (4, 0)
    assert run.loss_history.shape == (4,) and np.all(np.isfinite(run.loss_history))
    assert int(run.num_iterations) == 3


def test_bfgs_minimizes_rosenbrock(x64):
    """A non-convex valley (curvature updates may be skipped); minimum (1, ..., 1), J = 0."""
    run = optim.bfgs(rosenbrock, jnp.asarray([-1.2, 1.0, -0.5, 0.8]), tol=1e-8, max_iter=500)
    assert bool(run.converged)
    np.testing.assert_allclose(run.params, np.ones(4), atol=1e-7)
    assert float(run.loss_history[int(run.num_iterations)]) <= 1e-14


def test_bfgs_first_steps_match_literal_transcription(x64):
    """Two BFGS iterations on a quadratic, the update written as the textbook product."""
    rng = np.random.default_rng(6)
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    a = q @ np.diag([1.0, 2.0, 5.0, 10.0]) @ q.T
    theta0 = rng.normal(size=4)

    def j(theta):
        return 0.5 * theta @ a @ theta

    def armijo(theta, g, p, c1=1e-4, shrink=0.5):
        step = 1.0
        while j(theta + step * p) > j(theta) + c1 * step * g @ p:
            step *= shrink
        return step

    theta, m, first = theta0, np.eye(4), True
    thetas = [theta]
    for _ in range(3):
        g = a @ theta
        p = -m @ g
        theta_new = theta + armijo(theta, g, p) * p
        s, y = theta_new - theta, a @ theta_new - g
        if first:
            m = (s @ y) / (y @ y) * np.eye(4)
            first = False
        rho = 1 / (y @ s)
        identity = np.eye(4)
        m = (identity - rho * np.outer(s, y)) @ m @ (identity - rho * np.outer(y, s)) + rho * (
            np.outer(s, s)
        )
        theta = theta_new
        thetas.append(theta)

    run = optim.bfgs(
        lambda t: 0.5 * t @ jnp.asarray(a) @ t, jnp.asarray(theta0), tol=0.0, max_iter=3
    )
    np.testing.assert_allclose(run.params_history, np.stack(thetas), rtol=1e-10, atol=1e-13)


# --------------------------------------------------------------------------------------------
# Nonlinear conjugate gradient (Fletcher-Reeves, Polak-Ribiere)
# --------------------------------------------------------------------------------------------


def test_nonlinear_cg_on_a_quadratic_with_exact_search_is_linear_cg(x64):
    """f = 1/2 x^T A x - b^T x: both betas give linear CG's iterates and stop within n steps."""
    n = 6
    rng = np.random.default_rng(7)
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    a = q @ np.diag(np.logspace(0, 2, n)) @ q.T
    b, x0 = rng.normal(size=n), rng.normal(size=n)
    # Linear CG from x0, transcribed: r = b - A x, a_k = r.r / p.A p, beta = r'.r' / r.r.
    x, r = x0.copy(), b - a @ x0
    p, iterates = r.copy(), [x0.copy()]
    for _ in range(n):
        step = (r @ r) / (p @ a @ p)
        x = x + step * p
        r_new = r - step * (a @ p)
        p = r_new + (r_new @ r_new) / (r @ r) * p
        r = r_new
        iterates.append(x.copy())
    a_j, b_j = jnp.asarray(a), jnp.asarray(b)
    for beta in optim.BETAS:
        run = optim.nonlinear_cg(
            lambda t: 0.5 * t @ a_j @ t - b_j @ t,
            jnp.asarray(x0),
            beta=beta,
            line_search="exact",
            tol=1e-9,
            max_iter=3 * n,
        )
        k = int(run.num_iterations)
        # n steps in exact arithmetic; in float64 the n-th gradient may stop just above tol.
        assert bool(run.converged) and k <= n + 1, (beta, k)
        m = min(k, n)
        np.testing.assert_allclose(run.params_history[: m + 1], iterates[: m + 1], atol=1e-9)
        np.testing.assert_allclose(run.params, np.linalg.solve(a, b), rtol=1e-9)


def rosenbrock_numpy(t):
    """f = sum_i 100 (t_{i+1} - t_i^2)^2 + (1 - t_i)^2 and its gradient, transcribed."""
    inner = t[1:] - t[:-1] ** 2
    grad = np.zeros_like(t)
    grad[:-1] = -400.0 * t[:-1] * inner - 2.0 * (1.0 - t[:-1])
    grad[1:] += 200.0 * inner
    return np.sum(100.0 * inner**2 + (1.0 - t[:-1]) ** 2), grad


START = np.array([-1.2, 1.0, -0.5, 0.8])


def test_nonlinear_cg_directions_follow_the_beta_formulas(x64):
    """On Rosenbrock (not a quadratic), each step theta_{k+1} - theta_k is a positive multiple
    of the transcribed direction p_k = -g_k + beta_k p_{k-1}, restarted every 3 iterations."""
    for beta_rule in optim.BETAS:
        run = optim.nonlinear_cg(
            rosenbrock, jnp.asarray(START), beta=beta_rule, restart_every=3, tol=0.0, max_iter=1000
        )
        thetas = np.asarray(run.params_history)
        g_old, p = None, None
        for k in range(10):
            g = rosenbrock_numpy(thetas[k])[1]
            if k % 3 == 0:
                p = -g
            else:
                if beta_rule == "fletcher_reeves":
                    beta = (g @ g) / (g_old @ g_old)
                else:
                    beta = max(0.0, g @ (g - g_old) / (g_old @ g_old))
                p = -g + beta * p
                assert g @ p < 0  # no descent restart in these ten steps
            step = thetas[k + 1] - thetas[k]
            scale = (step @ p) / (p @ p)
            assert scale > 0, (beta_rule, k)
            np.testing.assert_allclose(step, scale * p, rtol=1e-7, atol=1e-12)
            g_old = g


def test_nonlinear_cg_agrees_with_scipy_cg_on_rosenbrock(x64):
    """scipy.optimize.minimize(method="CG") (Polak-Ribiere+) to the same gradient tolerance."""
    import scipy.optimize

    reference = scipy.optimize.minimize(
        rosenbrock_numpy, START, jac=True, method="CG", options={"gtol": 1e-7}
    )
    assert reference.success
    for beta in optim.BETAS:
        run = optim.nonlinear_cg(rosenbrock, jnp.asarray(START), beta=beta, tol=1e-7)
        k = int(run.num_iterations)
        assert bool(run.converged) and k <= 2 * reference.nit, (beta, k, reference.nit)
        np.testing.assert_allclose(run.params, reference.x, atol=2e-6)
        assert float(run.loss_history[k]) <= 1e-12
    with pytest.raises(ValueError, match="beta"):
        optim.nonlinear_cg(rosenbrock, jnp.asarray(START), beta="hestenes")


def test_outcomes_read_a_vmapped_batch_of_runs(x64):
    """Per run: the first k with ||g_k|| <= tol (NaN if none), J and ||g|| at the last iterate."""
    starts = jnp.asarray([[1.0, 1.0], [-1.2, 1.0]])  # at the minimum; 4 steps short of it
    runs = jax.vmap(lambda s: optim.newton(rosenbrock, s, tol=1e-8, max_iter=4))(starts)
    norms = np.asarray(runs.grad_norm_history)
    found = outcomes(runs, 1e-3)
    for i in range(len(starts)):
        steps = int(runs.num_iterations[i])
        below = np.flatnonzero(norms[i, : steps + 1] <= 1e-3)
        expected = below[0] if below.size else np.nan
        np.testing.assert_equal(found["iterations"][i], expected)
        assert found["steps"][i] == steps and found["grad_norm"][i] == norms[i, steps]
        assert found["loss"][i] == runs.loss_history[i, steps]
        assert found["loss"][i] == pytest.approx(float(rosenbrock(found["params"][i])), rel=1e-12)
    np.testing.assert_equal(found["iterations"], [0.0, np.nan])


def test_convergence_ratios_of_linear_and_quadratic_sequences():
    linear = 0.5 ** np.arange(7)  # e_{k+1} = e_k / 2
    quadratic = 2.0 ** -(2.0 ** np.arange(7))  # e_{k+1} = e_k^2: 2^-1, 2^-2, 2^-4, ..., 2^-64
    ratio, squared, floor = convergence_ratios(np.stack([linear, quadratic]))
    assert floor == 1e-13
    np.testing.assert_allclose(ratio[0], 0.5)
    np.testing.assert_allclose(squared[1, :5], 1.0)
    np.testing.assert_allclose(ratio[1, :5], quadratic[1:6] / quadratic[:5])
    assert np.isnan(squared[1, 5]) and np.isnan(ratio[1, 5])  # e_6 = 2^-64 < the floor 1e-13
    _, _, floor = convergence_ratios(np.array([[30.0, 3.0]]))
    assert floor == pytest.approx(3e-12)


def test_rate_table_and_the_convergence_figure(x64):
    """Newton on Rosenbrock from two starts: the table's rows are the histories and the ratios
    of convergence_ratios, run by run; the figure has the three panels."""
    starts = jnp.asarray([[-1.2, 1.0], [0.5, 0.2]])
    runs = jax.vmap(lambda s: optim.newton(rosenbrock, s, tol=1e-10, max_iter=12))(starts)
    limit = np.asarray(runs.params)
    errors = np.linalg.norm(np.asarray(runs.params_history) - limit[:, None], axis=2)
    linear, squared, floor = convergence_ratios(errors)
    table = rate_table(runs, errors, run=1)
    steps = int(runs.num_iterations[1])
    assert len(table["rows"]) == steps + 1 and table["floor"] == floor
    for k, row in enumerate(table["rows"]):
        assert row[0] == k and row[1] == f"{float(runs.grad_norm_history[1, k]):.3e}"
        assert row[2] == f"{errors[1, k]:.3e}"
        assert row[3] == ("—" if np.isnan(linear[1, k]) else f"{linear[1, k]:.3e}")
    kept = np.flatnonzero(np.isfinite(squared[1, : steps + 1]))
    assert table["last"] == {"linear": linear[1, kept[-1]], "quadratic": squared[1, kept[-1]]}
    assert table["last"]["linear"] < 0.1  # Newton is superlinear at the end
    figure = plot_convergence({"newton": runs}, {"newton": errors}, 1e-10, ratios_of="newton")
    assert len(figure.axes) == 3 and len(figure.axes[2].lines) == 4  # 2 ratios x 2 runs
    assert [ax.get_xscale() for ax in figure.axes[:2]] == ["log", "log"]


def test_comparison_rows_against_a_known_optimum(x64):
    """Newton reaches the tolerance from both starts, 3 steps of gradient descent do not."""
    starts = jnp.asarray([[1.0, 1.0], [-1.2, 1.0]])
    results = {
        "newton": jax.vmap(lambda s: optim.newton(rosenbrock, s, tol=1e-8, max_iter=30))(starts),
        "sgd": jax.vmap(
            lambda s: optim.minimize(optim.sgd(1e-3), rosenbrock, s, tol=1e-8, max_iter=3)
        )(starts),
    }
    seconds = {"newton": 0.002, "sgd": 0.003}
    table = comparison(results, seconds, 1e-8, 0.0, np.ones(2), name="exact")
    assert table["headers"][1] == "iterations to ||g|| <= 1e-08"
    assert table["headers"][5:] == ["J - J*(exact)", "max ||theta - theta_exact||"]
    newton, sgd = table["rows"]
    end = table["outcomes"]["newton"]
    mean, std = end["iterations"].mean(), end["iterations"].std()
    assert newton[0] == "newton" and newton[1] == f"{mean:.1f} ± {std:.1f}"
    assert newton[2] == "2.00" and newton[3] == f"{0.002 / end['steps'].max() * 1e6:.1f}"
    assert sgd[1] == "not reached in 3 (1/2 seeds)"  # the start at (1, 1) is already there
    np.testing.assert_array_equal(end["gap"], end["loss"])  # J* = 0
    assert float(newton[6]) < 1e-6 and float(sgd[6]) > 0.1
